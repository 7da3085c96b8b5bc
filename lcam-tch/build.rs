//! Gives every binary of this package (tests, examples, doctests) an rpath to libtorch, so that
//! they run without `LD_LIBRARY_PATH`, and keeps `libtorch_cuda.so` linked so that
//! `tch::Cuda::is_available()` sees a GPU (the linker's `--as-needed` would drop it silently).
//!
//! `DEP_TCH_LIBTORCH_LIB` is published by torch-sys (`links = "tch"`) to the build scripts of the
//! packages that depend on it *directly*. Any package with binaries or tests linking tch needs
//! this same script (copy [`libtorch_link_args`] verbatim).

use std::path::Path;

/// The `cargo:` lines that give a package's binaries an rpath to the libtorch directory `lib_dir`
/// (what torch-sys linked against) and keep `libtorch_cuda.so` linked when it exists.
fn libtorch_link_args(lib_dir: &str, target_os: &str) -> Vec<String> {
    let mut lines = Vec::new();
    if target_os == "linux" || target_os == "macos" {
        lines.push(format!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}"));
    }
    if target_os == "linux" && Path::new(lib_dir).join("libtorch_cuda.so").exists() {
        lines.push("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed".to_string());
    }
    lines
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    match std::env::var("DEP_TCH_LIBTORCH_LIB") {
        Ok(dir) => {
            for line in libtorch_link_args(&dir, &target_os) {
                println!("{line}");
            }
        }
        Err(_) => println!(
            "cargo:warning=torch-sys did not report its libtorch directory \
             (DEP_TCH_LIBTORCH_LIB): binaries will need LD_LIBRARY_PATH"
        ),
    }
}
