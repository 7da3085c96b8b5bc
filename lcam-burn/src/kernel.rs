//! The per-tensor half: [`UpdateTensor`] for Burn tensors and the `burn::optim::Optimizer` that
//! [`burn::optim::ModuleOptimizer`] drives. Both are crate-private: the public entry point is
//! [`crate::LcamOptimizer`], whose step requires the batch loss.

use std::sync::{Arc, PoisonError, RwLock};

use burn::optim::{GradientsParams, LearningRate, Optimizer, RecordState, StateSink, StateSource};
use burn::tensor::{Device, Tensor};
use lcam_core::{LcamConfig, StepKernel, StepParams, UpdateTensor, sgd_update};

use crate::error::LcamBurnError;

/// The leaf name of the momentum buffer in a record (`"{param_id}.momentum"`).
pub(crate) const BUFFER_LEAF: &str = "momentum";

/// A Burn float tensor seen through lcam-core's [`UpdateTensor`], so that the order of the
/// update's operations lives in [`sgd_update`] only.
///
/// Burn tensors are immutable handles: every operation yields a new tensor (the backend reuses
/// the storage in place when the handle is unique, as flex does), so `&mut self` methods replace
/// the handle.
#[derive(Debug, Clone)]
pub(crate) struct BurnTensor<const D: usize>(pub(crate) Tensor<D>);

impl<const D: usize> UpdateTensor for BurnTensor<D> {
    fn dims(&self) -> Vec<usize> {
        self.0.dims().to_vec()
    }

    fn duplicate(&self) -> Self {
        // Burn tensors are values: a clone is never aliased by a later in-place write.
        self.clone()
    }

    /// `self + alpha·other`. Burn has no fused multiply-add tensor op, so this rounds twice
    /// (`alpha·other`, then the sum) where PyTorch's `add(…, alpha=)` rounds once; the scalar is
    /// rounded to the tensor's dtype first, as PyTorch does.
    fn add_scaled(&mut self, other: &Self, alpha: f64) {
        let scaled = other.0.clone().mul_scalar(alpha);
        self.0 = self.0.clone().add(scaled);
    }

    fn scale(&mut self, alpha: f64) {
        self.0 = self.0.clone().mul_scalar(alpha);
    }

    /// The primitives' exact sequence of Burn ops, but moving each tensor into the op that
    /// consumes it (the primitives work through `&mut self` and must clone, so every op
    /// allocates): Burn then reuses a uniquely held buffer in place. Same ops in the same order,
    /// so the same values bit for bit.
    fn fused_update(&mut self, grad: &Self, buffer: &mut Option<Self>, h: &StepParams) -> bool {
        if h.momentum != 0.0 && buffer.is_none() {
            // The first step creates the buffer: left to the primitives.
            return false;
        }
        // `grad` as a placeholder: a reference-count bump, not a copy.
        let p = std::mem::replace(&mut self.0, grad.0.clone());
        let g = if h.weight_decay != 0.0 {
            grad.0.clone().add(p.clone().mul_scalar(h.weight_decay))
        } else {
            grad.0.clone()
        };
        let d = match buffer.take() {
            Some(BurnTensor(b)) if h.momentum != 0.0 => {
                let b = b
                    .mul_scalar(h.momentum)
                    .add(g.clone().mul_scalar(1.0 - h.dampening));
                let d = if h.nesterov {
                    g.add(b.clone().mul_scalar(h.momentum))
                } else {
                    b.clone()
                };
                *buffer = Some(BurnTensor(b));
                d
            }
            // μ = 0: the buffer, if any, is left untouched.
            other => {
                *buffer = other;
                g
            }
        };
        self.0 = p.add(d.mul_scalar(-h.lr));
        true
    }
}

/// Per-parameter state: the momentum buffer. A parameter without state has not had its first
/// step (SPEC §1: `b = g` then), or has only been stepped with momentum 0.
#[derive(Debug, Clone)]
pub(crate) struct LcamTensorState<const D: usize> {
    pub(crate) momentum: Tensor<D>,
}

impl<const D: usize> RecordState for LcamTensorState<D> {
    fn state_flatten(&self, prefix: &str, out: &mut StateSink) {
        out.push_tensor(prefix, BUFFER_LEAF, self.momentum.to_data());
    }

    /// Unlike `#[derive(RecordState)]`, which creates tensors in the device's default float
    /// dtype, this keeps the recorded dtype, so that f64 buffers continue bit-identically.
    fn state_unflatten(prefix: &str, src: &mut StateSource, device: &Device) -> Option<Self> {
        let data = src.take_tensor(prefix, BUFFER_LEAF)?;
        if data.rank() != D {
            return None;
        }
        let dtype = data.dtype();
        Some(Self {
            momentum: Tensor::from_data(data, (device, dtype)),
        })
    }
}

/// The step parameters of the step in progress (all but the learning rate, which Burn passes
/// to every tensor step), shared between the owner of lcam-core's `Driver` ([`crate::LcamOptimizer`],
/// the `Learner` hook), which sets them before each step, and the per-tensor optimizer that
/// `ModuleOptimizer` holds.
#[derive(Debug, Clone)]
pub(crate) struct SharedStep(Arc<RwLock<StepParams>>);

impl SharedStep {
    pub(crate) fn new(config: &LcamConfig) -> Self {
        Self::of(StepParams {
            lr: config.lr,
            weight_decay: config.weight_decay,
            momentum: config.initial_momentum,
            dampening: config.dampening,
            nesterov: config.nesterov,
        })
    }

    pub(crate) fn of(h: StepParams) -> Self {
        Self(Arc::new(RwLock::new(h)))
    }

    pub(crate) fn set(&self, h: StepParams) {
        // Plain data: a panic elsewhere while the lock was held leaves it usable.
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = h;
    }

    pub(crate) fn get(&self) -> StepParams {
        *self.0.read().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Where a tensor step's learning rate comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LrFrom {
    /// Burn's `ModuleLearningRate` (the `Learner`'s scheduler).
    Burn,
    /// The group's rate in lcam-core's `Driver` (an [`crate::LcamOptimizer`]: `step(lr, …)`
    /// sets every group's rate to `lr`, `set_group_lr` one group's).
    Driver,
}

/// LCAM's per-tensor step for `ModuleOptimizer`: [`sgd_update`] with the step parameters in
/// force (one instance per parameter group).
#[derive(Debug, Clone)]
pub(crate) struct LcamTensorOptimizer {
    step: SharedStep,
    lr_from: LrFrom,
}

impl LcamTensorOptimizer {
    pub(crate) fn new(step: SharedStep, lr_from: LrFrom) -> Self {
        Self { step, lr_from }
    }
}

/// lcam-core's [`StepKernel`] for a Burn module: publishes each group's step parameters to
/// its [`LcamTensorOptimizer`], then lets `step` (a `ModuleOptimizer` step, which picks each
/// parameter's optimizer by group) update the module.
pub(crate) struct ModuleKernel<'a, M, S: FnMut(M, GradientsParams) -> M> {
    /// One per group, in the `Driver`'s group order.
    pub(crate) shared: &'a [SharedStep],
    pub(crate) module: Option<M>,
    pub(crate) grads: Option<GradientsParams>,
    pub(crate) step: S,
}

impl<M, S: FnMut(M, GradientsParams) -> M> StepKernel for ModuleKernel<'_, M, S> {
    type Error = LcamBurnError;

    fn apply(&mut self, groups: &[StepParams]) -> Result<(), LcamBurnError> {
        for (shared, h) in self.shared.iter().zip(groups) {
            shared.set(*h);
        }
        if let (Some(m), Some(g)) = (self.module.take(), self.grads.take()) {
            self.module = Some((self.step)(m, g));
        }
        Ok(())
    }
}

impl Optimizer for LcamTensorOptimizer {
    type State<const D: usize> = LcamTensorState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let h = match self.lr_from {
            LrFrom::Burn => StepParams {
                lr,
                ..self.step.get()
            },
            LrFrom::Driver => self.step.get(),
        };
        let mut param = BurnTensor(tensor);
        let mut buffer = state.map(|s| BurnTensor(s.momentum));
        sgd_update(&mut param, &BurnTensor(grad), &mut buffer, &h);
        (param.0, buffer.map(|b| LcamTensorState { momentum: b.0 }))
    }

    fn to_device<const D: usize>(mut state: Self::State<D>, device: &Device) -> Self::State<D> {
        state.momentum = state.momentum.to_device(device);
        state
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    /// The primitives only: what `fused_update` must equal bit for bit.
    struct Prim(BurnTensor<1>);

    impl UpdateTensor for Prim {
        fn dims(&self) -> Vec<usize> {
            self.0.dims()
        }
        fn duplicate(&self) -> Self {
            Prim(self.0.duplicate())
        }
        fn add_scaled(&mut self, other: &Self, alpha: f64) {
            self.0.add_scaled(&other.0, alpha);
        }
        fn scale(&mut self, alpha: f64) {
            self.0.scale(alpha);
        }
    }

    fn tensor(n: usize, seed: u32) -> Tensor<1> {
        let v: Vec<f32> = (0..n)
            .map(|i| ((i as u32).wrapping_mul(2_654_435_761) ^ seed) as f32 / u32::MAX as f32 - 0.5)
            .collect();
        Tensor::from_data(TensorData::new(v, [n]), &Device::flex())
    }

    fn bits(t: &Tensor<1>) -> Vec<u32> {
        t.to_data()
            .iter::<f32>()
            .map(f32::to_bits)
            .collect::<Vec<_>>()
    }

    #[test]
    fn fused_update_is_bit_identical_to_the_primitives() {
        for (wd, mu, damp, nesterov) in [
            (5e-4, 0.9, 0.0, false),
            (0.0, 0.95, 0.1, false),
            (1e-3, 0.9, 0.0, true),
            (5e-4, 0.0, 0.0, false),
        ] {
            let h = StepParams {
                lr: 0.1,
                weight_decay: wd,
                momentum: mu,
                dampening: damp,
                nesterov,
            };
            let mut fused = BurnTensor(tensor(1000, 1));
            let mut prim = Prim(BurnTensor(tensor(1000, 1)));
            let (mut bf, mut bp) = (None, None);
            for k in 0..4 {
                let g = tensor(1000, 100 + k);
                sgd_update(&mut fused, &BurnTensor(g.clone()), &mut bf, &h);
                sgd_update(&mut prim, &Prim(BurnTensor(g)), &mut bp, &h);
            }
            assert_eq!(bits(&fused.0), bits(&prim.0.0), "params, {h:?}");
            assert_eq!(
                bf.map(|b: BurnTensor<1>| bits(&b.0)),
                bp.map(|b: Prim| bits(&b.0.0)),
                "buffers, {h:?}"
            );
        }
    }
}
