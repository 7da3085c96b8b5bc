//! Test helpers: a small MLP, deterministic synthetic data, parameter/gradient extraction.
#![allow(dead_code)]

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::nn::{Linear, LinearConfig};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData, activation::relu};

/// A two-layer perceptron.
#[derive(Module, Debug)]
pub struct Mlp {
    pub l1: Linear,
    pub l2: Linear,
}

impl Mlp {
    pub fn new(device: &Device) -> Self {
        Self {
            l1: LinearConfig::new(4, 8).init(device),
            l2: LinearConfig::new(8, 1).init(device),
        }
    }

    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.l2.forward(relu(self.l1.forward(x)))
    }

    /// Mean squared error on a batch.
    pub fn loss(&self, x: Tensor<2>, y: Tensor<2>) -> Tensor<1> {
        (self.forward(x) - y).powf_scalar(2.0).mean()
    }
}

/// Deterministic pseudo-random numbers in [-1, 1) (a 64-bit LCG).
pub struct Lcg(u64);

impl Lcg {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(6364136223846793005).wrapping_add(1))
    }
    pub fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// `batches` batches of 16 samples: x ∈ [-1, 1)^4, y = x0·x1 − 0.5·x2 + 0.1·noise.
pub fn dataset(seed: u64, batches: usize, device: &Device) -> Vec<(Tensor<2>, Tensor<2>)> {
    let mut rng = Lcg::new(seed);
    (0..batches)
        .map(|_| {
            let mut xs = Vec::with_capacity(16 * 4);
            let mut ys = Vec::with_capacity(16);
            for _ in 0..16 {
                let x: Vec<f32> = (0..4).map(|_| rng.next()).collect();
                ys.push(x[0] * x[1] - 0.5 * x[2] + 0.1 * rng.next());
                xs.extend(x);
            }
            (
                Tensor::from_data(TensorData::new(xs, [16, 4]), device),
                Tensor::from_data(TensorData::new(ys, [16, 1]), device),
            )
        })
        .collect()
}

/// Every float parameter in visiting order: id, shape, values, and the gradient if `grads` has
/// one.
pub struct Extract<'a> {
    pub grads: Option<&'a GradientsParams>,
    pub params: Vec<Extracted>,
}

pub struct Extracted {
    pub id: ParamId,
    pub shape: Vec<usize>,
    pub value: Vec<f32>,
    pub grad: Option<Vec<f32>>,
}

impl ModuleVisitor for Extract<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        let grad = self
            .grads
            .and_then(|g| g.get::<D>(param.id))
            .map(|g| g.into_data().try_to_vec::<f32>().expect("f32 gradient"));
        self.params.push(Extracted {
            id: param.id,
            shape: value.dims().to_vec(),
            value: value
                .into_data()
                .try_to_vec::<f32>()
                .expect("f32 parameter"),
            grad,
        });
    }
}

pub fn extract<M: Module>(module: &M, grads: Option<&GradientsParams>) -> Vec<Extracted> {
    let mut v = Extract {
        grads,
        params: Vec::new(),
    };
    module.visit(&mut v);
    v.params
}

/// The raw bits of every parameter, for bit-exact comparisons.
pub fn bits<M: Module>(module: &M) -> Vec<Vec<u32>> {
    extract(module, None)
        .into_iter()
        .map(|p| p.value.iter().map(|v| v.to_bits()).collect())
        .collect()
}
