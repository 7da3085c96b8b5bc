//! Real-GPU tests: the kernels on a device against lcam-core. Reported as skipped (and passing)
//! when no CUDA driver is present.
#![allow(unsafe_code)] // `CudaLcam::step_raw`

use lcam_core::ndarray::{ArrayD, IxDyn};
use lcam_core::{Lcam, LcamConfig, load_fixtures};
use lcam_cuda::{CudaLcam, LcamCudaError};

fn gpu_or_skip(test: &str) -> bool {
    match lcam_cuda::nvrtc::require_driver() {
        Ok(()) => true,
        Err(e) => {
            lcam_testkit::skip(
                lcam_testkit::Need::Gpu,
                test,
                &format!("no CUDA driver ({e})"),
            );
            false
        }
    }
}

#[test]
fn golden_fixtures_on_the_gpu() {
    if !gpu_or_skip("golden_fixtures_on_the_gpu") {
        return;
    }
    let dir = lcam_testkit::fixtures("golden");
    let fixtures = load_fixtures(&dir).expect("fixtures");
    assert!(!fixtures.is_empty());
    for f in &fixtures {
        let got = lcam_cuda::replay(&f.trace, 0).unwrap_or_else(|e| panic!("{}: {e}", f.name));
        f.check(&got).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn gpu_step_matches_core_and_state_round_trips() {
    if !gpu_or_skip("gpu_step_matches_core_and_state_round_trips") {
        return;
    }
    let stream = lcam_cuda::default_stream(0).expect("stream");
    let config = LcamConfig::cifar10().with_dampening(0.1).expect("config");
    let lens = [70_001usize, 3, 0, 65_536];
    let shapes: Vec<Vec<usize>> = lens.iter().map(|&n| vec![n]).collect();
    let data = |n: usize, seed: f32| -> Vec<f32> {
        (0..n).map(|i| (i as f32 * 0.37 + seed).sin()).collect()
    };
    let mut core_params: Vec<ArrayD<f32>> = lens
        .iter()
        .map(|&n| ArrayD::from_shape_vec(IxDyn(&[n]), data(n, 1.0)).expect("shape"))
        .collect();
    let mut core = Lcam::new(config, &core_params).expect("core");
    let mut params: Vec<_> = lens
        .iter()
        .map(|&n| stream.clone_htod(&data(n.max(1), 1.0)).expect("upload"))
        .collect();
    let mut opt = CudaLcam::<f32>::new(stream.clone(), config, &shapes).expect("optimizer");
    for (k, loss) in [2.0f32, 1.0, 1.5, 0.5, 3.0].into_iter().enumerate() {
        let grads_host: Vec<Vec<f32>> = lens.iter().map(|&n| data(n, k as f32)).collect();
        let grads: Vec<_> = grads_host
            .iter()
            .map(|g| {
                stream
                    .clone_htod(&if g.is_empty() { vec![0.0] } else { g.clone() })
                    .expect("upload")
            })
            .collect();
        let grad_refs: Vec<_> = grads.iter().map(Some).collect();
        let loss_dev = stream.clone_htod(&[loss]).expect("loss");
        opt.step(&mut params, &grad_refs, &loss_dev).expect("step");
        let core_grads: Vec<_> = grads_host
            .iter()
            .map(|g| Some(ArrayD::from_shape_vec(IxDyn(&[g.len()]), g.clone()).expect("shape")))
            .collect();
        core.step(&mut core_params, &core_grads, f64::from(loss))
            .expect("core step");
    }
    assert_eq!(opt.diagnostics().expect("diag").momentum, core.momentum());
    for (p, c) in params.iter().zip(&core_params) {
        let got = stream.clone_dtoh(p).expect("download");
        for (a, b) in got.iter().zip(c.iter()) {
            assert!((a - b).abs() <= 1e-6 * b.abs().max(1.0), "{a} vs {b}");
        }
    }
    let state = opt.state().expect("state");
    assert_eq!(state.controller, core.state().controller);
    let reloaded = CudaLcam::<f32>::from_state(stream, &state, &shapes).expect("reload");
    assert_eq!(reloaded.state().expect("state"), state);
}

#[test]
fn null_pointers_are_refused_before_any_launch() {
    if !gpu_or_skip("null_pointers_are_refused_before_any_launch") {
        return;
    }
    let stream = lcam_cuda::default_stream(0).expect("stream");
    let mut opt = CudaLcam::<f32>::new(stream, LcamConfig::cifar10(), &[vec![4]]).expect("opt");
    // SAFETY: null pointers are refused before anything is queued.
    let err = unsafe { opt.step_raw::<f32>(&[0], &[Some(0)], 1) };
    assert!(matches!(
        err,
        Err(LcamCudaError::NullPointer {
            tensor: 0,
            what: "parameter"
        })
    ));
    let err = unsafe { opt.step_raw::<f32>(&[8], &[Some(8)], 0) };
    assert!(matches!(
        err,
        Err(LcamCudaError::NullPointer { what: "loss", .. })
    ));
}

#[test]
fn without_a_driver_replay_is_a_typed_error() {
    if lcam_cuda::nvrtc::require_driver().is_ok() {
        lcam_testkit::skip(
            lcam_testkit::Need::NoGpu,
            "without_a_driver_replay_is_a_typed_error",
            "a CUDA driver is present",
        );
        return;
    }
    let dir = lcam_testkit::fixtures("golden");
    let f = &load_fixtures(&dir).expect("fixtures")[0];
    let err = lcam_cuda::replay(&f.trace, 0).expect_err("no driver");
    let msg = err.to_string();
    assert!(matches!(
        err,
        LcamCudaError::LibraryMissing { what: "driver", .. }
    ));
    assert!(msg.contains("libcuda.so"), "{msg}");
}
