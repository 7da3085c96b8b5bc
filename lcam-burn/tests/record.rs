//! Records: save → load → continue is bit-identical to never stopping; a record that does not
//! fit, or a corrupt file, is a typed error.

mod common;

use burn::module::{Param, ParamId};
use burn::optim::{GradientsParams, SgdConfig, momentum::MomentumConfig};
use burn::tensor::{DType, Device, Tensor, TensorData};
use common::{Mlp, bits, dataset};
use lcam_burn::{LcamBurnConfig, LcamBurnError, LcamOptimizer};

fn train(
    optim: &mut LcamOptimizer,
    mut model: Mlp,
    data: &[(Tensor<2>, Tensor<2>)],
    epochs: std::ops::Range<usize>,
) -> Mlp {
    for epoch in epochs {
        optim.start_epoch();
        for (x, y) in data.iter().take(5 + epoch % 3) {
            let loss = model.loss(x.clone(), y.clone());
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(0.05, model, grads, &loss).expect("step");
        }
    }
    model
}

#[test]
fn save_load_continue_is_bit_identical_f32_mlp() {
    let device = Device::flex().autodiff();
    let data = dataset(3, 8, &device);
    let mut optim = LcamBurnConfig::new(0.95, 0.9)
        .with_weight_decay(5e-4)
        .init()
        .expect("config");
    let model = train(&mut optim, Mlp::new(&device), &data, 0..3);
    // Stop mid-epoch: a partial epoch, then save.
    let model = {
        let (x, y) = &data[0];
        let loss = model.loss(x.clone(), y.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        optim.step(0.05, model, grads, &loss).expect("step")
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("optim.bpk");
    optim.save(&path).expect("save");
    let mut restored = LcamOptimizer::load(&path, &model).expect("load");
    assert_eq!(restored.config(), optim.config());
    assert_eq!(restored.controller(), optim.controller());

    let (x, y) = &data[1];
    let mut a = model.clone();
    let mut b = model;
    for _ in 0..3 {
        for (o, m) in [(&mut optim, &mut a), (&mut restored, &mut b)] {
            let loss = m.loss(x.clone(), y.clone());
            let grads = GradientsParams::from_grads(loss.backward(), &*m);
            *m = o.step(0.05, m.clone(), grads, &loss).expect("step");
        }
    }
    let a = train(&mut optim, a, &data, 3..6);
    let b = train(&mut restored, b, &data, 3..6);
    assert_eq!(bits(&a), bits(&b), "parameters differ after resuming");
    assert_eq!(optim.controller(), restored.controller());
    assert_eq!(optim.epoch_stats(), restored.epoch_stats());
}

/// A module of rank-1 f64 parameters with explicit ids, and a step on `loss = ½‖p − t‖²`.
fn f64_params(ids: &[ParamId], lens: &[usize], dtype: DType) -> Vec<Param<Tensor<1>>> {
    let device = Device::flex().autodiff();
    ids.iter()
        .zip(lens)
        .map(|(id, &n)| {
            let v: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin()).collect();
            let t = Tensor::from_data(TensorData::new(v, [n]), (&device, dtype));
            Param::initialized(*id, t)
        })
        .collect()
}

fn quad_step(optim: &mut LcamOptimizer, m: Vec<Param<Tensor<1>>>) -> Vec<Param<Tensor<1>>> {
    let mut grads = GradientsParams::new();
    let mut loss = 0.0;
    for (k, p) in m.iter().enumerate() {
        let g = p.val().sub_scalar(0.25 * k as f64);
        loss += 0.5 * g.clone().powf_scalar(2.0).sum().into_scalar::<f64>();
        grads.register(p.id, g);
    }
    optim.step(0.1, m, grads, loss).expect("step")
}

fn f64_bits(m: &[Param<Tensor<1>>]) -> Vec<Vec<u64>> {
    m.iter()
        .map(|p| {
            let d = p.val().into_data();
            assert_eq!(d.dtype(), DType::F64);
            d.try_to_vec::<f64>()
                .expect("f64")
                .iter()
                .map(|v| v.to_bits())
                .collect()
        })
        .collect()
}

#[test]
fn save_load_continue_is_bit_identical_f64() {
    let ids = [ParamId::new(), ParamId::new()];
    let mut m = f64_params(&ids, &[5, 3], DType::F64);
    let mut optim = LcamBurnConfig::new(0.9, 0.95)
        .with_dampening(0.1)
        .with_weight_decay(1e-3)
        .init()
        .expect("config");
    for _ in 0..2 {
        optim.start_epoch();
        for _ in 0..4 {
            m = quad_step(&mut optim, m);
        }
    }
    let bytes = optim.to_bytes().expect("to_bytes");
    let mut restored = LcamOptimizer::from_bytes(bytes, &m).expect("from_bytes");
    let mut a = m.clone();
    let mut b = m;
    for _ in 0..2 {
        optim.start_epoch();
        restored.start_epoch();
        for _ in 0..5 {
            a = quad_step(&mut optim, a);
            b = quad_step(&mut restored, b);
        }
    }
    assert_eq!(f64_bits(&a), f64_bits(&b));
    assert_eq!(optim.controller(), restored.controller());
}

fn assert_mismatch(r: Result<LcamOptimizer, LcamBurnError>, needle: &str) {
    match r {
        Err(LcamBurnError::RecordMismatch { location, message }) => {
            let text = format!("{location}: {message}");
            assert!(text.contains(needle), "`{text}` lacks `{needle}`");
        }
        other => panic!("expected RecordMismatch containing `{needle}`, got {other:?}"),
    }
}

#[test]
fn mismatched_records_are_rejected() {
    let ids = [ParamId::new(), ParamId::new()];
    let mut m = f64_params(&ids, &[5, 3], DType::F64);
    let mut optim = LcamBurnConfig::new(0.9, 0.95).init().expect("config");
    optim.start_epoch();
    m = quad_step(&mut optim, m);
    let bytes = optim.to_bytes().expect("to_bytes");
    assert!(LcamOptimizer::from_bytes(bytes.clone(), &m).is_ok());

    // Another model: other parameter ids.
    let other = f64_params(&[ParamId::new(), ParamId::new()], &[5, 3], DType::F64);
    assert_mismatch(
        LcamOptimizer::from_bytes(bytes.clone(), &other),
        "not in this module",
    );
    // Same ids, other shapes.
    let reshaped = f64_params(&ids, &[5, 4], DType::F64);
    assert_mismatch(LcamOptimizer::from_bytes(bytes.clone(), &reshaped), "shape");
    // Same ids and shapes, other dtype.
    let f32s = f64_params(&ids, &[5, 3], DType::F32);
    assert_mismatch(LcamOptimizer::from_bytes(bytes.clone(), &f32s), "dtype");
    // An MLP record does not fit a vector of parameters.
    let device = Device::flex().autodiff();
    let mlp = Mlp::new(&device);
    assert_mismatch(LcamOptimizer::from_bytes(bytes, &mlp), "not in this module");
}

#[test]
fn a_plain_burn_sgd_record_is_not_an_lcam_record() {
    let device = Device::flex().autodiff();
    let data = dataset(5, 1, &device);
    let model = Mlp::new(&device);
    let mut sgd = SgdConfig::new()
        .with_momentum(Some(MomentumConfig::new()))
        .init();
    let (x, y) = &data[0];
    let loss = model.loss(x.clone(), y.clone());
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let model = sgd.step(0.1, model, grads);
    let bytes = sgd.into_bytes().expect("sgd record");
    assert_mismatch(
        LcamOptimizer::from_bytes(bytes, &model),
        "not an LCAM record",
    );
}

#[test]
fn corrupt_or_missing_files_are_io_errors() {
    let ids = [ParamId::new()];
    let mut m = f64_params(&ids, &[4], DType::F64);
    let mut optim = LcamBurnConfig::new(0.9, 0.95).init().expect("config");
    m = quad_step(&mut optim, m);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("optim.bpk");
    optim.save(&path).expect("save");
    let good = std::fs::read(&path).expect("read back");

    let is_io = |r: Result<LcamOptimizer, LcamBurnError>| {
        matches!(r, Err(LcamBurnError::RecordIo { action: "read", .. }))
    };
    assert!(is_io(LcamOptimizer::load(
        dir.path().join("absent.bpk"),
        &m
    )));
    std::fs::write(&path, b"not a burnpack file").expect("write");
    assert!(is_io(LcamOptimizer::load(&path, &m)));
    std::fs::write(&path, &good[..good.len() / 2]).expect("write");
    let truncated = LcamOptimizer::load(&path, &m);
    assert!(
        truncated.is_err(),
        "a truncated record loaded: {truncated:?}"
    );
    std::fs::write(&path, &good).expect("write");
    assert!(LcamOptimizer::load(&path, &m).is_ok());
}
