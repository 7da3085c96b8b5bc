//! # lcam-cuda
//!
//! Loss-Controlled Asymmetric Momentum (LCAM) as raw CUDA kernels, compiled at run time by
//! NVRTC and launched through [cudarc](https://docs.rs/cudarc) — with the phase decided **on
//! the device**, so that a training step never waits for the GPU (the authors' demo calls
//! `loss.item()` every step).
//!
//! For every parameter tensor `p` with gradient `∇` (PyTorch `torch.optim.SGD`, SPEC §1), with
//! the momentum μ read from device memory:
//!
//! ```text
//! g = ∇ + λ·p                                  (fma(p, λ, ∇), only when λ ≠ 0)
//! b = g                    first step of the tensor (a copy)
//! b = μ·b + (1 − τ)·g      later steps           (fma(g, 1 − τ, μ·b))
//! d = g + μ·b if nesterov else b               (fma(b, μ, g))
//! p = p − η·d                                  (fma(d, −η, p))
//! ```
//!
//! (when μ = 0: `p = p − η·g`, the buffer untouched), in exactly lcam-core's order of
//! operations and roundings (`fma` where lcam-core uses `mul_add`, NVRTC's `--fmad=false`), so
//! f32 results match lcam-core to 1e-6 relative and f64 to 1e-12. Then, on the device, with
//! the batch loss `ℓ_k` read from device memory (f32 or f64) and the controller in device
//! memory (SPEC §2):
//!
//! ```text
//! S_k = S_{k−1} + ℓ_k  (f64)     m_k = S_k / k
//! μ_next = μ_below if ℓ_k < m_k else μ_above
//! ```
//!
//! A non-finite loss (or one overflowing `S_k`) skips the whole step on the device and is
//! counted in [`Diagnostics::rejected_losses`] — lcam-core's `Lcam::step` returns an error and
//! changes nothing.
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
