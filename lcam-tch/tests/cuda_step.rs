//! `CudaStep` (feature `cuda`): lcam-cuda's fused kernels on tch's CUDA tensors. Without a
//! GPU only the input checks run; with one, the device-controlled step is compared with
//! lcam-tch's own step over two epochs, and its state round-trips through an lcam-tch state
//! file.
#![cfg(feature = "cuda")]

mod common;

use common::{batches, data, loss, model, named};
use lcam_tch::{CudaStep, Error, Lcam, LcamConfig};
use tch::{Device, Kind};

const HIDDEN: i64 = 32;

#[test]
fn cpu_parameters_are_refused_before_the_driver_is_touched() {
    let (vs, _net) = model(0, Device::Cpu, Kind::Float, HIDDEN);
    let opt = Lcam::new(&vs, LcamConfig::cifar10()).expect("optimizer");
    let err = CudaStep::new(&opt).expect_err("CPU tensors");
    assert!(matches!(err, Error::Tensor { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("fc1.bias") && msg.contains("CUDA tensors"),
        "{msg}"
    );
}

#[test]
fn f64_parameters_are_refused() {
    if !tch::Cuda::is_available() {
        lcam_testkit::skip(
            lcam_testkit::Need::Gpu,
            "f64_parameters_are_refused",
            "no CUDA device (tch::Cuda::is_available() is false)",
        );
        return;
    }
    let (vs, _net) = model(0, Device::Cuda(0), Kind::Double, HIDDEN);
    let opt = Lcam::new(&vs, LcamConfig::cifar10()).expect("optimizer");
    let err = CudaStep::new(&opt).expect_err("f64");
    assert!(err.to_string().contains("Double"), "{err}");
}

/// Two epochs of lcam-tch's step and of `CudaStep` from the same start: same parameters to
/// f32 rounding (the update is the same arithmetic; libtorch's CUDA ops and the fused kernel
/// may round differently), same controller statistics; the exported state continues in
/// lcam-tch.
#[test]
fn matches_lcam_tch_on_cuda() {
    if !tch::Cuda::is_available() {
        lcam_testkit::skip(
            lcam_testkit::Need::Gpu,
            "matches_lcam_tch_on_cuda",
            "no CUDA device (tch::Cuda::is_available() is false)",
        );
        return;
    }
    let dev = Device::Cuda(0);
    let (x, y) = data(dev, Kind::Float);
    let (vs_a, net_a) = model(0, dev, Kind::Float, HIDDEN);
    let (vs_b, net_b) = model(0, dev, Kind::Float, HIDDEN);
    let mut native = Lcam::new(&vs_a, LcamConfig::cifar10()).expect("optimizer");
    let mut host = Lcam::new(&vs_b, LcamConfig::cifar10()).expect("optimizer");
    let mut fused = CudaStep::new(&host).expect("CUDA step");
    for epoch in 0..2 {
        native.start_epoch();
        fused.start_epoch().expect("epoch");
        for (bx, by) in batches(&x, &y, epoch) {
            native
                .backward_step(&loss(&net_a, &bx, &by))
                .expect("native step");
            fused
                .backward_step(&loss(&net_b, &bx, &by))
                .expect("fused step");
        }
        let d = fused.diagnostics().expect("diagnostics");
        assert_eq!(d.rejected_losses, 0);
        assert_eq!(d.epoch.steps, native.epoch_stats().steps);
        // Losses may differ in the last bits, which can flip a near-tie: allow one decision.
        assert!(
            d.epoch
                .steps_below
                .abs_diff(native.epoch_stats().steps_below)
                <= 1
        );
    }
    for ((name, a), (_, b)) in named(&vs_a).iter().zip(&named(&vs_b)) {
        let diff = (a - b).abs().max().double_value(&[]);
        let scale = a.abs().max().double_value(&[]).max(1e-3);
        assert!(
            diff / scale < 1e-4,
            "`{name}`: max |Δ| {diff:e} (scale {scale:e})"
        );
    }
    fused.sync_to(&mut host).expect("state back to lcam-tch");
    assert_eq!(host.epoch_stats(), fused.epoch_stats().expect("stats"));
    let dir = tempfile::tempdir().expect("dir");
    host.save(dir.path().join("opt.lcam")).expect("save");
    let mut again = Lcam::new(&vs_b, LcamConfig::cifar100()).expect("optimizer");
    again.load(dir.path().join("opt.lcam")).expect("load");
    assert_eq!(
        again.core_state::<f32>().expect("state"),
        host.core_state::<f32>().expect("state")
    );
}
