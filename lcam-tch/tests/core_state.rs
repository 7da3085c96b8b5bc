//! lcam-core's state format as the interchange format: an lcam-tch optimizer exports its state
//! (`Lcam::core_state`), lcam-core's `Lcam` (or a fresh lcam-tch optimizer,
//! `Lcam::load_core_state`) continues from it bit-identically; a state for another model is a
//! typed error that changes nothing. This is what `CudaStep` (feature `cuda`) uses to move the
//! state between the host-controlled and the device-controlled step.

mod common;

use common::{batches, bit_identical, data, loss, model, named};
use lcam_core::ndarray::{ArrayD, IxDyn};
use lcam_tch::{Error, Lcam, LcamConfig};
use tch::{Device, Kind, Tensor};

const HIDDEN: i64 = 32;

fn to_array(t: &Tensor) -> ArrayD<f32> {
    let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
    let n = t.numel();
    let mut v = vec![0f32; n];
    t.contiguous().copy_data(&mut v, n);
    ArrayD::from_shape_vec(IxDyn(&shape), v).expect("shape")
}

/// Trains 1.5 epochs with lcam-tch, then continues twice: (a) lcam-tch itself, (b) a fresh
/// lcam-tch optimizer over a copy of the model loaded with `core_state` — and (c) lcam-core
/// over ndarray copies of the parameters, fed the gradients libtorch computes on (a)'s way.
#[test]
fn core_state_round_trip_continues_bit_identically() {
    let (x, y) = data(Device::Cpu, Kind::Float);
    let (vs_a, net_a) = model(0, Device::Cpu, Kind::Float, HIDDEN);
    let mut opt = Lcam::new(&vs_a, LcamConfig::cifar10()).expect("optimizer");
    opt.start_epoch();
    for (bx, by) in batches(&x, &y, 0) {
        opt.backward_step(&loss(&net_a, &bx, &by)).expect("step");
    }
    opt.start_epoch();
    let second = batches(&x, &y, 1);
    let (first_half, rest) = second.split_at(7);
    for (bx, by) in first_half {
        opt.backward_step(&loss(&net_a, bx, by)).expect("step");
    }
    opt.set_lr(0.03).expect("lr");
    let state = opt.core_state::<f32>().expect("export");
    assert_eq!(state.dtype, "f32");
    assert_eq!(state.controller.count, 7);
    assert!(state.buffers.iter().all(Option::is_some));

    // (b) a fresh lcam-tch optimizer over a copy of the model.
    let (mut vs_b, net_b) = model(7, Device::Cpu, Kind::Float, HIDDEN);
    vs_b.copy(&vs_a).expect("copy");
    let mut opt_b = Lcam::new(&vs_b, LcamConfig::cifar100()).expect("optimizer");
    opt_b.load_core_state(&state).expect("import");
    assert_eq!(opt_b.lr(), 0.03);
    assert_eq!(opt_b.epoch_stats(), opt.epoch_stats());
    assert_eq!(opt_b.momentum(), opt.momentum());

    // (c) lcam-core over the same values.
    let mut core_params: Vec<ArrayD<f32>> = named(&vs_a).iter().map(|(_, t)| to_array(t)).collect();
    let mut core = lcam_core::Lcam::from_state(&state, &core_params).expect("core import");

    for (bx, by) in rest {
        let l = loss(&net_a, bx, by);
        opt.zero_grad();
        l.backward();
        let grads: Vec<Option<ArrayD<f32>>> = named(&vs_a)
            .iter()
            .map(|(_, t)| Some(to_array(&t.grad())))
            .collect();
        core.step(&mut core_params, &grads, l.double_value(&[]))
            .expect("core step");
        opt.step(&l).expect("step");
        opt_b.backward_step(&loss(&net_b, bx, by)).expect("step");
    }
    assert!(bit_identical(&vs_a, &vs_b), "lcam-tch from the core state");
    for ((name, t), c) in named(&vs_a).iter().zip(&core_params) {
        assert_eq!(&to_array(t), c, "lcam-core from the core state: `{name}`");
    }
    assert_eq!(core.epoch_stats(), opt.epoch_stats());
    assert_eq!(
        opt_b.core_state::<f32>().expect("export"),
        opt.core_state::<f32>().expect("export")
    );
}

#[test]
fn a_core_state_for_another_model_changes_nothing() {
    let (vs, _net) = model(0, Device::Cpu, Kind::Float, HIDDEN);
    let mut opt = Lcam::new(&vs, LcamConfig::cifar10()).expect("optimizer");
    let before = format!("{opt:?}");

    // A buffer of the wrong shape for `fc1.bias` (the first parameter by name, 32 elements).
    let mut state = opt.core_state::<f32>().expect("export");
    state.buffers[0] = Some(lcam_core::TensorData {
        shape: vec![8, 16],
        data: vec![0.0; 128],
    });
    let err = opt.load_core_state(&state).expect_err("shape mismatch");
    assert!(matches!(err, Error::Core(_)), "{err}");
    assert!(err.to_string().contains("buffers[0]"), "{err}");
    assert_eq!(format!("{opt:?}"), before);

    // One buffer entry short: another model.
    let mut state = opt.core_state::<f32>().expect("export");
    state.buffers.pop();
    let err = opt.load_core_state(&state).expect_err("count mismatch");
    assert!(err.to_string().contains("buffers"), "{err}");
    assert_eq!(format!("{opt:?}"), before);

    let wrong_dtype = opt.core_state::<f64>().expect_err("f32 parameters");
    assert!(
        wrong_dtype.to_string().contains("fc1.bias"),
        "{wrong_dtype}"
    );
}
