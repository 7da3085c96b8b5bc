//! Parameter groups in lcam-burn: picked by `ParamId`, each group's options used (closed form),
//! bad groups typed errors, groups kept by the record. PyTorch's param-group fixtures are in
//! `golden.rs`.

use burn::module::{Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{DType, Device, Tensor, TensorData};
use lcam_burn::{BurnGroup, GroupBuilder, LcamBurnError, LcamOptimizer};
use lcam_core::{LcamConfig, LcamError};

fn module(device: &Device) -> Vec<Param<Tensor<1>>> {
    [[1.0f64, -2.0], [0.5, 4.0], [3.0, -1.0]]
        .iter()
        .map(|v| {
            Param::from_tensor(
                Tensor::from_data(TensorData::new(v.to_vec(), [2]), (device, DType::F64))
                    .autodiff(),
            )
        })
        .collect()
}

fn values(m: &[Param<Tensor<1>>]) -> Vec<Vec<f64>> {
    m.iter()
        .map(|p| p.val().to_data().iter::<f64>().collect())
        .collect()
}

fn zero_grads(m: &[Param<Tensor<1>>], device: &Device) -> GradientsParams {
    let mut g = GradientsParams::new();
    for p in m {
        g.register(
            p.id,
            Tensor::<1>::from_data(TensorData::new(vec![0.0f64; 2], [2]), (device, DType::F64)),
        );
    }
    g
}

fn device() -> Device {
    Device::flex()
}

/// With zero gradients only weight decay moves a parameter: `p ← p − η·λ·p` (first step),
/// unchanged in a group without decay.
#[test]
fn each_group_takes_its_own_options() {
    let d = device();
    let m = module(&d);
    let config = LcamConfig::new(0.1, 0.1, 0.9, 0.95).expect("config");
    let mut opt = LcamOptimizer::new(config)
        .expect("opt")
        .with_groups(vec![
            BurnGroup::new("no_decay", [m[1].id]).with_weight_decay(0.0),
        ])
        .expect("groups");
    assert_eq!(opt.groups().names(), ["no_decay", "default"]);
    let before = values(&m);
    let g = zero_grads(&m, &d);
    let m = opt.step(0.1, m, g, 1.0).expect("step");
    let after = values(&m);
    assert_eq!(after[1], before[1]);
    for i in [0, 2] {
        for (a, b) in after[i].iter().zip(&before[i]) {
            assert_eq!(*a, b - 0.1 * (0.1 * b));
        }
    }
}

fn invalid_group(r: Result<LcamOptimizer, LcamBurnError>) -> (String, String) {
    match r {
        Err(LcamBurnError::Core(LcamError::InvalidGroup { group, message })) => (group, message),
        other => panic!("expected InvalidGroup, got {other:?}"),
    }
}

#[test]
fn bad_groups_name_the_group_and_the_parameter() {
    let config = LcamConfig::cifar10();
    let (a, b) = (ParamId::new(), ParamId::new());
    let (g, m) = invalid_group(
        LcamOptimizer::new(config)
            .expect("opt")
            .with_groups(vec![BurnGroup::new("x", [a]), BurnGroup::new("y", [b, a])]),
    );
    assert_eq!(g, "y");
    assert!(m.contains("is already in group `x`"), "{m}");
    let (g, m) = invalid_group(
        LcamOptimizer::new(config)
            .expect("opt")
            .with_groups(vec![BurnGroup::new("empty", [])]),
    );
    assert_eq!(
        (g.as_str(), m.as_str()),
        ("empty", "the group has no parameters")
    );
    let (g, m) = invalid_group(
        LcamOptimizer::new(config)
            .expect("opt")
            .with_groups(vec![BurnGroup::new("x", [a]).with_weight_decay(-1.0)]),
    );
    assert_eq!(g, "x");
    assert!(m.contains("`weight_decay` = -1"), "{m}");
}

#[test]
fn groups_are_set_before_the_first_step() {
    let d = device();
    let m = module(&d);
    let mut opt = LcamOptimizer::new(LcamConfig::cifar10()).expect("opt");
    let g = zero_grads(&m, &d);
    let m = opt.step(0.1, m, g, 1.0).expect("step");
    let (_, msg) = invalid_group(opt.with_groups(vec![BurnGroup::new("x", [m[0].id])]));
    assert_eq!(msg, "groups are set before the first step");
}

/// The record keeps the groups: saved after a step, loaded, and continued, it is bit-identical
/// to the optimizer that never stopped.
#[test]
fn groups_survive_the_record() {
    let d = device();
    let m = module(&d);
    let groups = |m: &[Param<Tensor<1>>]| {
        vec![
            BurnGroup::new("no_decay", [m[1].id]).with_weight_decay(0.0),
            BurnGroup::new("damped", [m[2].id]).with_dampening(0.5),
        ]
    };
    let mut opt = LcamOptimizer::new(LcamConfig::cifar10())
        .expect("opt")
        .with_groups(groups(&m))
        .expect("groups");
    let grads = |m: &[Param<Tensor<1>>]| {
        let mut g = GradientsParams::new();
        for (k, p) in m.iter().enumerate() {
            let v = vec![0.3 * (k as f64 + 1.0), -0.2];
            g.register(
                p.id,
                Tensor::<1>::from_data(TensorData::new(v, [2]), (&d, DType::F64)),
            );
        }
        g
    };
    let g = grads(&m);
    let m = opt.step(0.1, m, g, 1.0).expect("step");
    let bytes = opt.to_bytes().expect("record");
    let mut back = LcamOptimizer::from_bytes(bytes, &m).expect("load");
    assert_eq!(back.groups(), opt.groups());
    let m2 = m.clone();
    let a = opt.step(0.1, m, grads(&m2), 0.5).expect("step");
    let b = back.step(0.1, m2.clone(), grads(&m2), 0.5).expect("step");
    assert_eq!(values(&a), values(&b));
}
