//! # lcam-burn
//!
//! Loss-Controlled Asymmetric Momentum (LCAM; Zhang et al., arXiv 2309.02130) as a Burn 0.22
//! optimizer: SGD with momentum (PyTorch semantics) whose momentum switches between two values
//! depending on whether the last batch loss was below the epoch's running mean. The rule is
//! lcam-core's [`PhasedMomentum`](lcam_core::PhasedMomentum) and the update lcam-core's
//! [`sgd_update`](lcam_core::sgd_update); this crate binds them to Burn tensors and modules.
//!
//! ```
//! use burn::{nn::LinearConfig, optim::GradientsParams, tensor::{Device, Tensor}};
//! let device = Device::flex().autodiff();
//! let mut model = LinearConfig::new(3, 1).init(&device);
//! let mut optim = lcam_burn::LcamBurnConfig::new(0.95, 0.9).init()?; // μ_below / μ_above
//! optim.start_epoch();
//! let loss = model.forward(Tensor::<2>::ones([4, 3], &device)).powf_scalar(2.0).mean();
//! let grads = GradientsParams::from_grads(loss.backward(), &model);
//! model = optim.step(0.1, model, grads, &loss)?; // the batch loss is a required argument
//! assert_eq!(optim.momentum(), 0.9); // an epoch's first batch is never below its own mean
//! # Ok::<(), lcam_burn::LcamBurnError>(())
//! ```
//!
//! The math is lcam-core's and is written out there, once: the update of every parameter with a
//! gradient (SPEC §1) in [`lcam_core::sgd_update`], run here with Burn tensor ops, and the phase
//! rule (SPEC §2) in [`lcam_core::PhasedMomentum`].
//!
//! ## Pieces
//!
//! - [`LcamBurnConfig`] (Burn `Config`: `new(below, above)`, `with_*`, [`init`](LcamBurnConfig::init)).
//! - [`LcamOptimizer`]: [`step(lr, module, grads, loss)`](LcamOptimizer::step) — Burn's
//!   `ModuleOptimizer::step` plus the loss — [`start_epoch`](LcamOptimizer::start_epoch),
//!   [`momentum`](LcamOptimizer::momentum), [`phase`](LcamOptimizer::phase),
//!   [`epoch_stats`](LcamOptimizer::epoch_stats); records with
//!   [`save`](LcamOptimizer::save) / [`load`](LcamOptimizer::load).
//! - [`replay`]: a golden trace replayed on Burn's flex backend (`lcam replay --adapter burn`).
//!
//! ## Backends
//!
//! Any Burn device: the tensors carry their device, and the optimizer state follows the
//! parameters. Feature `flex` (default) is Burn's pure-Rust CPU backend; feature `cuda` enables
//! Burn's CUDA backend (`Device::cuda(0)`). Autodiff is always on (`Device::….autodiff()`).
//!
//! ## Burn's `Learner`
//!
//! `burn-train`'s `Learner` owns a plain `ModuleOptimizer` and calls
//! `TrainStep::optimize(optim, lr, grads)` without the loss. [`learner_optimizer`] returns the
//! `ModuleOptimizer` to give it and an [`LcamHook`] for the model: `record_loss` in
//! `TrainStep::step`, [`LcamHook::optimize`] in `TrainStep::optimize` (the momentum in force is
//! applied, then the loss observed; epochs every `steps_per_epoch` steps). The hook's sequence is
//! tested bit-identical to [`LcamOptimizer::step`]. For a hand-written loop, see
//! `examples/burn_train_mlp.rs`.
//!
//! Burn's CUDA backend (feature `cuda`) cannot be compiled on a machine without internet access:
//! cubecl-cuda 0.11 builds cubecl-llvm, whose build script downloads a prebuilt LLVM 23 bundle.
#![warn(missing_docs)]

mod error;
mod kernel;
mod learner;
mod optimizer;
mod record;
mod replay;

pub use error::{LcamBurnError, Result};
pub use learner::{LcamHook, learner_optimizer};
pub use optimizer::{BatchLoss, BurnGroup, LcamBurnConfig, LcamOptimizer, StepError};
pub use record::RECORD_FORMAT;
#[cfg(feature = "flex")]
pub use replay::replay;
pub use replay::replay_on;

/// Re-export of the lcam-core version this crate's API uses.
pub use lcam_core;
/// The group option builders (`with_weight_decay`, ...) of [`BurnGroup`].
pub use lcam_core::GroupBuilder;
