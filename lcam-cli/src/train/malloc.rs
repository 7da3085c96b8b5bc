//! glibc allocator settings for training (Linux/glibc only).
//!
//! A training step allocates and frees the same large activation and gradient buffers every
//! step (8 MB per activation of WRN-16-1 at batch 128). With glibc's defaults such buffers are
//! `mmap`ed and `munmap`ed or trimmed from the heap top again and again, and every step pays
//! for page faults and zeroed pages: measured on the 2-core CI machine, `lcam train --backend
//! tch --model wrn-16-1` ran at ≈ 590–660 img/s with the defaults and ≈ 690–765 img/s with
//! freed memory kept (BENCHMARKS.md). [`keep_freed_memory`] raises the mmap threshold to its
//! maximum (32 MiB) and disables trimming, as PyTorch users do with `GLIBC_TUNABLES`; the cost
//! is that the process keeps its peak heap until it exits.

/// Keeps freed memory in glibc's heap (see the module docs), unless the user configured the
/// allocator through `GLIBC_TUNABLES` or `MALLOC_*_` variables, or asked for glibc's defaults
/// with `LCAM_MALLOC=system` (how `cargo xtask bench --train` measures the difference).
/// Returns whether it did.
pub fn keep_freed_memory() -> bool {
    let user_set = std::env::var_os("LCAM_MALLOC").is_some_and(|v| v == "system")
        || std::env::var_os("GLIBC_TUNABLES")
            .is_some_and(|v| v.to_string_lossy().contains("malloc"))
        || std::env::vars_os().any(|(k, _)| {
            let k = k.to_string_lossy();
            k.starts_with("MALLOC_") && k.ends_with('_')
        });
    if user_set {
        return false;
    }
    apply()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn apply() -> bool {
    // glibc refuses an mmap threshold above HEAP_MAX_SIZE / 2 (32 MiB on 64-bit).
    const MMAP_THRESHOLD: libc::c_int = 32 << 20;
    // SAFETY: `mallopt` only changes glibc's allocator parameters; it takes the allocator's
    // own lock and may be called at any time from any thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn apply() -> bool {
    false
}
