//! A small real tch model on synthetic data, shared by the integration tests.
#![allow(dead_code)]

use std::sync::{Mutex, MutexGuard};

use tch::{Device, Kind, Tensor, nn, nn::Module};

/// libtorch's random generator is global and tests run in parallel threads: every seeded
/// generation holds this lock, so that a test's model and data never depend on another test.
static RNG: Mutex<()> = Mutex::new(());

pub fn rng_lock() -> MutexGuard<'static, ()> {
    RNG.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Inputs, classes.
pub const IN: i64 = 16;
pub const CLASSES: i64 = 4;
pub const BATCH: i64 = 32;
pub const BATCHES: i64 = 16;

/// A 16 → 32 → 32 → 4 MLP with ReLU, its parameters named `fc1.weight`, `fc1.bias`, ….
pub fn mlp(p: &nn::Path, hidden: i64) -> nn::Sequential {
    nn::seq()
        .add(nn::linear(p / "fc1", IN, hidden, Default::default()))
        .add_fn(|x| x.relu())
        .add(nn::linear(p / "fc2", hidden, hidden, Default::default()))
        .add_fn(|x| x.relu())
        .add(nn::linear(p / "fc3", hidden, CLASSES, Default::default()))
}

/// A var store on `device` with `kind`, initialised from `seed`, and its model.
pub fn model(seed: i64, device: Device, kind: Kind, hidden: i64) -> (nn::VarStore, nn::Sequential) {
    let _rng = rng_lock();
    tch::manual_seed(seed);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let net = mlp(&vs.root(), hidden);
    if kind == Kind::Double {
        vs.double();
    }
    vs.set_device(device);
    (vs, net)
}

/// `BATCH · BATCHES` synthetic samples labelled by a random linear teacher plus noise.
pub fn data(device: Device, kind: Kind) -> (Tensor, Tensor) {
    let _rng = rng_lock();
    tch::manual_seed(1234);
    let n = BATCH * BATCHES;
    let x = Tensor::randn([n, IN], (Kind::Float, Device::Cpu));
    let teacher = Tensor::randn([IN, CLASSES], (Kind::Float, Device::Cpu));
    let noise = Tensor::randn([n, CLASSES], (Kind::Float, Device::Cpu)) * 0.5;
    let y = (x.matmul(&teacher) + noise).argmax(-1, false);
    (x.to_kind(kind).to_device(device), y.to_device(device))
}

/// The batches of an epoch, in a fixed shuffled order (same for every run).
pub fn batches(x: &Tensor, y: &Tensor, epoch: i64) -> Vec<(Tensor, Tensor)> {
    let _rng = rng_lock();
    tch::manual_seed(100 + epoch);
    let perm = Tensor::randperm(BATCH * BATCHES, (Kind::Int64, Device::Cpu)).to_device(x.device());
    (0..BATCHES)
        .map(|b| {
            let idx = perm.narrow(0, b * BATCH, BATCH);
            (x.index_select(0, &idx), y.index_select(0, &idx))
        })
        .collect()
}

pub fn loss(net: &nn::Sequential, x: &Tensor, y: &Tensor) -> Tensor {
    net.forward(x).cross_entropy_for_logits(y)
}

/// `(name, tensor)` of every variable, sorted by name.
pub fn named(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Per tensor `max|a − b| / max|b|`, the largest over tensors, with the tensor's name.
pub fn max_rel_err(a: &nn::VarStore, b: &nn::VarStore) -> (f64, String) {
    let (a, b) = (named(a), named(b));
    assert_eq!(a.len(), b.len());
    let mut worst = (0.0, String::new());
    for ((na, ta), (nb, tb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        let diff = (ta - tb).abs().max().double_value(&[]);
        let scale = tb.abs().max().double_value(&[]);
        let rel = if diff == 0.0 { 0.0 } else { diff / scale };
        if rel >= worst.0 {
            worst = (rel, na.clone());
        }
    }
    worst
}

/// Every variable of `a` equals `b`'s bit for bit.
pub fn bit_identical(a: &nn::VarStore, b: &nn::VarStore) -> bool {
    named(a)
        .iter()
        .zip(&named(b))
        .all(|((na, ta), (nb, tb))| na == nb && ta.equal(tb))
}
