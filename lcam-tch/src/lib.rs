//! # lcam-tch
//!
//! Loss-Controlled Asymmetric Momentum (LCAM; Zhang et al., *Asymmetric Momentum: A Rethinking
//! of Gradient Descent*, arXiv 2309.02130) for [tch](https://docs.rs/tch) (libtorch 2.13):
//! SGD with momentum whose momentum switches between two values depending on whether the last
//! batch loss was below the running mean loss of the epoch. A drop-in replacement for
//! `nn::Sgd`, on CPU and CUDA.
//!
//! The math is lcam-core's and is written out there, once: the update of every parameter with a
//! gradient (PyTorch `torch.optim.SGD` semantics, SPEC §1) in
//! [`sgd_update`](lcam_core::sgd_update) — run here with in-place libtorch ops under `no_grad`,
//! bit-identical to libtorch's own SGD — and the phase rule (SPEC §2) in
//! [`PhasedMomentum`](lcam_core::PhasedMomentum). This crate only binds them to tch tensors.
//!
//! Swapping `nn::Sgd` for LCAM: build the optimizer over the `VarStore`, call `start_epoch` at
//! the top of each epoch, and pass the loss to `step`:
//!
//! ```
//! # use tch::{nn, nn::Module, Device, Kind, Tensor};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let vs = nn::VarStore::new(Device::cuda_if_available());
//! let net = nn::linear(vs.root(), 4, 1, Default::default());
//! // was: let mut opt = nn::Sgd { momentum: 0.9, wd: 5e-4, ..Default::default() }.build(&vs, 0.1)?;
//! let mut opt = lcam_tch::Lcam::new(&vs, lcam_tch::LcamConfig::cifar10())?;
//! # let (x, y) = (Tensor::randn([8, 4], (Kind::Float, vs.device())), Tensor::zeros([8, 1], (Kind::Float, vs.device())));
//! for _epoch in 0..2 {
//!     opt.start_epoch(); // new: resets the running mean of the losses
//!     let loss = net.forward(&x).mse_loss(&y, tch::Reduction::Mean);
//!     opt.backward_step(&loss)?; // was: opt.backward_step(&loss); the loss now drives μ
//! }
//! # assert_eq!(opt.epoch_stats().steps, 1);
//! # Ok(()) }
//! ```
//!
//! Beyond `nn::Sgd`: [`Lcam::save`] / [`Lcam::load`] write and restore the whole optimizer
//! state (buffers and controller) to one file with bit-identical continuation, and
//! [`replay`] runs lcam-core's golden traces through this adapter.
//!
//! ## Linking libtorch
//!
//! tch needs a libtorch: set `LIBTORCH` to its directory (for a pip-installed torch,
//! `…/site-packages/torch`), or `LIBTORCH_USE_PYTORCH=1` with the python whose torch to use
//! first on `PATH`. This crate's build script gives its own tests, examples and doctests an
//! rpath to that libtorch and keeps `libtorch_cuda.so` linked (else `tch::Cuda::is_available()`
//! is silently false); a binary crate using lcam-tch needs the same lines in its own build
//! script (see this crate's `build.rs`).
#![warn(missing_docs)]

#[cfg(feature = "cuda")]
pub mod cuda;
mod error;
mod kernel;
mod optimizer;
mod replay;
mod state;

#[cfg(feature = "cuda")]
pub use cuda::CudaStep;
pub use error::{Error, Result};
pub use optimizer::{Group, Lcam, Loss};
pub use replay::replay;
pub use state::{CoreScalar, STATE_FORMAT, STATE_FORMAT_V1};

pub use lcam_core::{EpochStats, GroupBuilder, Groups, LcamConfig, Phase, StepReport};

/// Re-export of the tch version this crate's API uses.
pub use tch;
