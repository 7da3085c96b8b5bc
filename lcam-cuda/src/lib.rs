//! # lcam-cuda
//!
//! Loss-Controlled Asymmetric Momentum (LCAM) as raw CUDA kernels, compiled at run time by
//! NVRTC and launched through [cudarc](https://docs.rs/cudarc) — with the phase decided **on
//! the device**, so that a training step never waits for the GPU (the authors' demo calls
//! `loss.item()` every step).
//!
//! The kernels compute lcam-core's update ([`lcam_core::sgd_update`], SPEC §1, written out there)
//! for every parameter tensor with a gradient, with the momentum read from device memory, in
//! exactly lcam-core's order of operations and roundings: each of lcam-core's `mul_add`s is an
//! explicit `fma` (`fma(p, λ, ∇)`, `fma(g, 1 − τ, μ·b)`, `fma(b, μ, g)`, `fma(d, −η, p)`) and
//! nothing else fuses (NVRTC's `--fmad=false`), so results are bit-identical to lcam-core on the
//! host-compiled kernels and match it to 1e-6 (f32) / 1e-12 (f64) relative on a GPU. Then, on the
//! device, the phase rule of [`lcam_core::PhasedMomentum`] (SPEC §2) with the batch loss read from
//! device memory (f32 or f64) and the controller in device memory.
//!
//! A non-finite loss (or one overflowing the running sum) skips the whole step on the device
//! and is counted in [`Diagnostics::rejected_losses`] — lcam-core's `Lcam::step` returns an
//! error and changes nothing.
//!
//! ## Kernels (`kernels/lcam.cu`)
//! - `lcam_step_f32`, `lcam_step_f64`: one launch for all tensors — a table of
//!   [`TensorEntry`] (addresses, length, chunk prefix sum), chunks of [`LaunchShape::chunk`]
//!   elements, blocks striding over the chunks; each entry names its parameter group, and the
//!   launch carries every group's η, λ, 1 − τ and Nesterov switch by value ([`GroupScalars`],
//!   at most [`MAX_GROUPS`] groups: lcam-core's [`lcam_core::Driver`] resolves them, one phase
//!   for all);
//! - `lcam_observe`: one thread; marks the stepped tensors' buffers as initialised, folds the
//!   loss in and sets the next momentum;
//! - `lcam_start_epoch`: one thread; resets the running mean (the last decision carries over).
//!
//! ## Layers
//! - [`CudaLcam`]: the GPU optimizer, owning form over `CudaSlice`s and an `unsafe` form over
//!   foreign device pointers ([`CudaLcam::step_raw`]); state save/load in lcam-core's
//!   `lcam-state/1` format;
//! - [`emulated`] (feature `host-emulation`, default): the *same* `.cu` source compiled for the
//!   host with a small shim and run over an emulated grid — how the kernels are tested without
//!   a GPU, and `lcam replay --adapter cuda-host`;
//! - [`nvrtc`]: run-time compilation and the library probes (a missing libcuda or libnvrtc is a
//!   typed [`LcamCudaError::LibraryMissing`], never a panic).
//!
//! ```
//! # #[cfg(feature = "host-emulation")] {
//! // The host-emulated kernels replaying a PyTorch golden fixture:
//! let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/golden");
//! for f in lcam_core::load_fixtures(&dir)? {
//!     let got = lcam_cuda::replay_host(&f.trace)?;
//!     f.check(&got).map_err(|e| lcam_core::LcamError::InvalidTrace { location: f.name.clone(), message: e })?;
//! }
//! # }
//! # Ok::<(), lcam_cuda::LcamCudaError>(())
//! ```
#![warn(missing_docs)]

#[cfg(feature = "host-emulation")]
pub mod emulated;
mod error;
mod gpu;
mod layout;
pub mod nvrtc;
mod replay;
mod state;

pub use error::{LcamCudaError, Result};
pub use gpu::{CudaLcam, default_stream, host_reads};
pub use layout::{
    DeviceController, Diagnostics, GroupScalars, KernelScalar, LaunchShape, LossScalar, MAX_GROUPS,
    TensorEntry,
};
pub use replay::replay;
#[cfg(feature = "host-emulation")]
pub use replay::{replay_host, replay_host_with};

/// Re-export of the cudarc version this crate's API uses.
pub use cudarc;
