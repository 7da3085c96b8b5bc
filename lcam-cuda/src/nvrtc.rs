//! Run-time compilation of `kernels/lcam.cu` with NVRTC (dlopened by cudarc), and the probes
//! that turn a missing CUDA library into a typed error instead of cudarc's panic.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};

use cudarc::nvrtc::{Ptx, result, sys};

use crate::error::{LcamCudaError, Result};

/// The CUDA C source of every kernel.
pub const KERNEL_SOURCE: &str = include_str!("../kernels/lcam.cu");

/// The `extern "C"` kernels of [`KERNEL_SOURCE`].
pub const KERNEL_NAMES: [&str; 4] = [
    "lcam_step_f32",
    "lcam_step_f64",
    "lcam_observe",
    "lcam_start_epoch",
];

/// Errors unless libnvrtc can be loaded (cudarc would panic on first use).
pub fn require_nvrtc() -> Result<()> {
    // SAFETY: only tries to dlopen the candidate names.
    if unsafe { sys::is_culib_present() } {
        Ok(())
    } else {
        Err(LcamCudaError::LibraryMissing {
            what: "NVRTC",
            candidates: candidates("nvrtc"),
            hint: "NVRTC 13 ships with the CUDA 13 toolkit and in the torch wheel's \
                   site-packages/nvidia/cu13/lib (give the binary a DT_RPATH to it with \
                   -Wl,--disable-new-dtags,-rpath,<dir>, or set LD_LIBRARY_PATH)",
        })
    }
}

/// Errors unless the CUDA driver library (libcuda) can be loaded.
pub fn require_driver() -> Result<()> {
    // SAFETY: only tries to dlopen the candidate names.
    if unsafe { cudarc::driver::sys::is_culib_present() } {
        Ok(())
    } else {
        Err(LcamCudaError::LibraryMissing {
            what: "driver",
            candidates: candidates("cuda"),
            hint: "libcuda comes with the NVIDIA driver: this machine has no usable GPU driver",
        })
    }
}

/// The file names cudarc tries for `lib`, without repeats.
fn candidates(lib: &str) -> Vec<String> {
    let mut names = cudarc::get_lib_name_candidates(lib);
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

/// NVRTC's architecture option for a compute capability (`sm_XY`); CUDA 13 supports 7.5 and
/// newer.
pub fn arch_for(major: i32, minor: i32) -> Option<&'static str> {
    Some(match (major, minor) {
        (7, 5) => "sm_75",
        (8, 0) => "sm_80",
        (8, 6) => "sm_86",
        (8, 7) => "sm_87",
        (8, 9) => "sm_89",
        (9, 0) => "sm_90",
        (10, 0) => "sm_100",
        (10, 3) => "sm_103",
        (11, 0) => "sm_110",
        (12, 0) => "sm_120",
        (12, 1) => "sm_121",
        _ => return None,
    })
}

/// The options every compilation uses: `--fmad=false` so that only the kernels' explicit
/// `fma` calls fuse (lcam-core's `mul_add`), as lcam-core rounds.
pub fn options(arch: &str) -> Vec<String> {
    vec![
        format!("--gpu-architecture={arch}"),
        "--fmad=false".to_string(),
        "--std=c++17".to_string(),
    ]
}

/// Compiles [`KERNEL_SOURCE`] to PTX for `arch` (`sm_80`, `sm_90`, ...), failing on any error
/// *or warning* (the log is returned in the error).
pub fn compile(arch: &str) -> Result<Ptx> {
    compile_source(KERNEL_SOURCE, arch)
}

/// Compiles CUDA C `source` to PTX for `arch` with [`options`], failing on any error *or
/// warning*.
pub fn compile_source(source: &str, arch: &str) -> Result<Ptx> {
    require_nvrtc()?;
    let fail = |message: String, log: String| LcamCudaError::Compile {
        arch: arch.to_string(),
        message,
        log,
    };
    let src = CString::new(source).map_err(|e| fail(e.to_string(), String::new()))?;
    let name = c"lcam.cu";
    let prog = result::create_program(&src, Some(name))
        .map_err(|e| fail(format!("cannot create the program: {e:?}"), String::new()))?;
    let opts = options(arch);
    // SAFETY: `prog` is a live program, destroyed once below on every path.
    let compiled = unsafe { result::compile_program(prog, &opts) };
    let log = unsafe { result::get_program_log(prog) }
        .map(|raw| {
            // SAFETY: NVRTC's log is NUL-terminated.
            unsafe { CStr::from_ptr(raw.as_ptr()) }
                .to_string_lossy()
                .trim()
                .to_string()
        })
        .unwrap_or_default();
    let ptx = match compiled {
        Ok(()) => unsafe { result::get_ptx(prog) }.map_err(|e| format!("get_ptx: {e:?}")),
        Err(e) => Err(format!("compilation failed ({e:?}) with {opts:?}")),
    };
    // SAFETY: `prog` is not used afterwards.
    let _ = unsafe { result::destroy_program(prog) };
    let ptx = ptx.map_err(|m| fail(m, log.clone()))?;
    if log.to_lowercase().contains("warning") {
        return Err(fail(format!("warnings with {opts:?}"), log));
    }
    let bytes: Vec<u8> = ptx
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    let text = String::from_utf8(bytes).map_err(|e| fail(e.to_string(), log))?;
    Ok(Ptx::from_src(text))
}
