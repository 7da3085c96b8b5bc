//! The one error type of `lcam-tch`.

use std::path::PathBuf;

use lcam_core::LcamError;
use tch::TchError;
use thiserror::Error;

/// Everything that can go wrong in `lcam-tch`. Each variant names its culprit (the tensor, the
/// file and the place in it, the value) so that a user can fix the input. An operation that
/// returns an error has changed nothing.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// An error of the framework-agnostic core: an invalid configuration or learning rate, a
    /// non-finite loss ([`LcamError::NonFiniteLoss`]), an invalid controller state.
    #[error(transparent)]
    Core(#[from] LcamError),
    /// The loss passed to a step is not a scalar (a tensor with exactly one element).
    #[error(
        "the loss must be a scalar tensor (exactly one element), got a tensor of shape {shape:?}"
    )]
    NonScalarLoss {
        /// The shape of the tensor passed as loss.
        shape: Vec<i64>,
    },
    /// A parameter, its gradient or the list of parameters does not fit the optimizer.
    #[error("tensor `{tensor}`: {message}")]
    Tensor {
        /// The parameter's name (a `VarStore` path, or its index for a plain list).
        tensor: String,
        /// What is wrong, with the expected value.
        message: String,
    },
    /// A state file is corrupt, truncated, or was saved from another model or optimizer.
    #[error("invalid LCAM state file {}: {location}: {message}", path.display())]
    State {
        /// The file.
        path: PathBuf,
        /// Where in the file: `file`, `metadata`, `config.lr`, or the tensor (e.g.
        /// `momentum_buffer.fc1.weight`, `params[2] (fc1.weight)`).
        location: String,
        /// What is wrong, with the expected value.
        message: String,
    },
    /// A file could not be read or written.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was attempted (`read`, `create a temporary file next to`, ...).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// libtorch reported an error (e.g. out of device memory).
    #[error("libtorch: {0}")]
    Torch(#[from] TchError),
    /// lcam-cuda reported an error: no driver or NVRTC, a compilation or launch failure, a
    /// state it cannot hold (feature `cuda`).
    #[cfg(feature = "cuda")]
    #[error("CUDA step: {0}")]
    Cuda(#[from] lcam_cuda::LcamCudaError),
}

/// `Result` with [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
