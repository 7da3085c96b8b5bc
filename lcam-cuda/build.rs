//! Build script of lcam-cuda. Nothing here links CUDA: libcuda and libnvrtc are dlopened at run
//! time by cudarc.
//!
//! 1. With the `host-emulation` feature, compiles `kernels/lcam.cu` for the host (through
//!    `kernels/host_emulation.cpp` and the shim `kernels/host_shim.h`) with the `cc` crate,
//!    warnings as errors and `-ffp-contract=off`, into a static library for `emulated`.
//! 2. Finds the NVRTC that the provisioned torch install ships (`$LIBTORCH/../nvidia/cu13/lib`,
//!    else the project cache's venv) and gives this package's *test* binaries an old-style
//!    DT_RPATH to it (`--disable-new-dtags`: with a RUNPATH, libnvrtc would load but not find
//!    `libnvrtc-builtins`). `LCAM_CUDA_NVRTC_DIR` tells the tests where it was found (empty
//!    when it was not).

use std::path::{Path, PathBuf};

/// The NVRTC library directory of a torch install rooted at `site_packages`.
fn nvrtc_dir_in(site_packages: &Path) -> Option<PathBuf> {
    let dir = site_packages.join("nvidia").join("cu13").join("lib");
    dir.join("libnvrtc.so.13").exists().then_some(dir)
}

/// `$LIBTORCH` (the `torch` package directory) or the project cache's torch venv.
fn find_nvrtc_dir() -> Option<PathBuf> {
    if let Some(torch) = std::env::var_os("LIBTORCH")
        && let Some(site) = Path::new(&torch).parent()
        && let Some(dir) = nvrtc_dir_in(site)
    {
        return Some(dir);
    }
    let cache = match (std::env::var_os("LCAM_CACHE_DIR"), std::env::var_os("HOME")) {
        (Some(d), _) => PathBuf::from(d),
        (None, Some(home)) => PathBuf::from(home).join(".cache").join("lcam"),
        (None, None) => return None,
    };
    let lib = std::fs::read_dir(cache).ok()?;
    for venv in lib.flatten() {
        if !venv.file_name().to_string_lossy().starts_with("torch-") {
            continue;
        }
        let Ok(pythons) = std::fs::read_dir(venv.path().join("lib")) else {
            continue;
        };
        for py in pythons.flatten() {
            if let Some(dir) = nvrtc_dir_in(&py.path().join("site-packages")) {
                return Some(dir);
            }
        }
    }
    None
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=kernels");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LCAM_CACHE_DIR");

    if std::env::var_os("CARGO_FEATURE_HOST_EMULATION").is_some() {
        cc::Build::new()
            .cpp(true)
            .file("kernels/host_emulation.cpp")
            .std("c++17")
            .warnings(true)
            .extra_warnings(true)
            .warnings_into_errors(true)
            .flag_if_supported("-ffp-contract=off")
            .compile("lcam_cuda_emulation");
    }

    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    match find_nvrtc_dir() {
        Some(dir) if target_os == "linux" => {
            println!(
                "cargo:rustc-link-arg-tests=-Wl,--disable-new-dtags,-rpath,{}",
                dir.display()
            );
            println!("cargo:rustc-env=LCAM_CUDA_NVRTC_DIR={}", dir.display());
        }
        _ => println!("cargo:rustc-env=LCAM_CUDA_NVRTC_DIR="),
    }
}
