//! # lcam-core
//!
//! Loss-Controlled Asymmetric Momentum (LCAM; Zhang et al., *Asymmetric Momentum: A Rethinking
//! of Gradient Descent*, arXiv 2309.02130) without any ML framework: SGD with momentum whose
//! momentum coefficient switches between two values depending on whether the last batch loss
//! was below the running mean loss of the epoch.
//!
//! For every parameter `p` with gradient `∇` (PyTorch `torch.optim.SGD` semantics):
//!
//! ```text
//! g = ∇ + λ·p
//! b = g                      (a tensor's first step)      b = μ·b + (1 − τ)·g   (later steps)
//! d = g + μ·b if nesterov else b
//! p = p − η·d
//! ```
//!
//! and after each step, with the batch loss `ℓ_k` and the epoch's running mean
//! `m_k = (ℓ_1 + … + ℓ_k) / k`, the next step's momentum is `μ_below` if `ℓ_k < m_k`, else
//! `μ_above`.
//!
//! The crate has three layers, each usable alone:
//! - [`PhasedMomentum`]: the phase controller — the only implementation of the rule, which every
//!   adapter (tch, Burn, CUDA) reuses;
//! - [`sgd_update`] over the [`UpdateTensor`] trait: the update math, written once;
//! - [`Lcam`]: a reference optimizer over ndarray arrays (f32, f64) with save/restore, and the
//!   [`trace`] format that pins every adapter to the same golden trajectories.
//!
//! ```
//! use lcam_core::{Lcam, LcamConfig};
//! use ndarray::{arr1, ArrayD};
//!
//! let mut params: Vec<ArrayD<f64>> = vec![arr1(&[1.0, -2.0]).into_dyn()];
//! let mut opt = Lcam::new(LcamConfig::cifar100().with_weight_decay(0.0)?, &params)?;
//! opt.start_epoch();
//! for loss in [3.0, 1.0, 2.0] {
//!     let grads = vec![Some(params[0].clone())];
//!     let report = opt.step(&mut params, &grads, loss)?;  // the loss is required
//!     println!("used μ = {}, next phase {:?}", report.momentum, report.phase);
//! }
//! assert_eq!(opt.momentum(), 0.9); // 2.0 ≥ mean 2.0: above → μ_above of 0.93/0.9
//! # Ok::<(), lcam_core::LcamError>(())
//! ```
#![warn(missing_docs)]

mod config;
mod controller;
mod driver;
mod error;
mod math;
mod optimizer;
pub mod trace;

pub use config::LcamConfig;
pub use controller::{ControllerState, EpochStats, Phase, PhasedMomentum};
pub use driver::{
    DEFAULT_GROUP, Driver, GroupBuilder, GroupOptions, Groups, ParamGroup, StepKernel,
};
pub use error::{LcamError, Result};
pub use math::{
    Scalar, StepParams, UpdateTensor, fused_update_slices, sgd_update, sgd_update_all,
    sgd_update_grouped,
};
pub use optimizer::{Lcam, LcamState, StepReport, TensorData};
pub use trace::{
    Comparison, DType, Fixture, NamedTensor, ReplayTarget, Trace, TraceStep, Trajectory,
    load_fixtures,
};

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// Re-export of the ndarray version this crate's API uses.
pub use ndarray;
