//! Every kernel compiles to PTX with NVRTC for sm_80 and sm_90, without errors or warnings.
//!
//! libnvrtc comes from the torch install (build.rs gives this binary a DT_RPATH to it). When it
//! cannot be loaded the tests fail if `LIBTORCH` was set at build time (the install is meant to
//! be there) and are reported as skipped otherwise.

use lcam_cuda::nvrtc;

/// `true` when NVRTC can be used; panics with the typed error when it should have been there.
fn nvrtc_or_skip(test: &str) -> bool {
    match nvrtc::require_nvrtc() {
        Ok(()) => true,
        Err(e) => {
            let dir = env!("LCAM_CUDA_NVRTC_DIR");
            if option_env!("LIBTORCH").is_some() || !dir.is_empty() {
                panic!("{test}: {e} (build.rs found the NVRTC directory `{dir}`)");
            }
            lcam_testkit::skip(lcam_testkit::Need::Gpu, test, &format!("{e}"));
            false
        }
    }
}

fn compiles_for(arch: &str) {
    if !nvrtc_or_skip(&format!("compiles_for_{arch}")) {
        return;
    }
    let ptx = nvrtc::compile(arch).unwrap_or_else(|e| panic!("{e}"));
    let text = ptx.to_src();
    for name in nvrtc::KERNEL_NAMES {
        assert!(
            text.contains(&format!(".entry {name}(")),
            "{arch}: kernel `{name}` missing from the PTX"
        );
    }
    assert!(
        text.contains(&format!(".target {arch}")),
        "{arch}: wrong target"
    );
    // `--fmad=false`: the only fused multiply-adds are the explicit ones.
    assert!(text.contains("fma.rn.f32") && text.contains("fma.rn.f64"));
}

#[test]
fn compiles_for_sm_80() {
    compiles_for("sm_80");
}

#[test]
fn compiles_for_sm_90() {
    compiles_for("sm_90");
}

/// The compile options forbid contracting `a·b + c` into a fused multiply-add (`--fmad=false`):
/// a probe kernel through the production options keeps a separate multiply and add. Dropping
/// the option makes NVRTC emit `fma.rn.f32` here, and this test fail.
#[test]
fn no_implicit_fused_multiply_add() {
    if !nvrtc_or_skip("no_implicit_fused_multiply_add") {
        return;
    }
    let probe = r#"extern "C" __global__ void k(float *x, const float *a, const float *b, const float *c) {
        unsigned i = threadIdx.x; x[i] = a[i] * b[i] + c[i]; }"#;
    let text = nvrtc::compile_source(probe, "sm_90")
        .unwrap_or_else(|e| panic!("{e}"))
        .to_src();
    assert!(!text.contains("fma."), "an implicit fma:\n{text}");
    assert!(
        text.contains("mul.rn.f32") && text.contains("add.rn.f32"),
        "{text}"
    );
}

#[test]
fn a_warning_is_an_error() {
    if !nvrtc_or_skip("a_warning_is_an_error") {
        return;
    }
    let clean = r#"extern "C" __global__ void k(float *x) { x[threadIdx.x] = 1.0f; }"#;
    nvrtc::compile_source(clean, "sm_90").unwrap_or_else(|e| panic!("{e}"));
    let warns = r#"extern "C" __global__ void k(float *x) { int unused; x[0] = 1.0f; }"#;
    let err = nvrtc::compile_source(warns, "sm_90").expect_err("a warning must fail");
    assert!(err.to_string().contains("warning"), "{err}");
    let broken = r#"extern "C" __global__ void k(float *x) { x[0] = y; }"#;
    let err = nvrtc::compile_source(broken, "sm_90").expect_err("an error must fail");
    assert!(err.to_string().contains("compilation failed"), "{err}");
}
