//! The one error type of `lcam-cuda`.

use thiserror::Error;

/// Everything that can go wrong in `lcam-cuda`. Input errors (counts, lengths, null pointers)
/// are found on the host *before* any launch; nothing is then changed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LcamCudaError {
    /// An error of lcam-core: configuration, learning rate, state or trace.
    #[error(transparent)]
    Core(#[from] lcam_core::LcamError),
    /// A CUDA library could not be loaded (no driver / no GPU, or no NVRTC).
    #[error(
        "cannot load the CUDA {what} library: looked for {} through the dynamic loader \
         (LD_LIBRARY_PATH, the binary's DT_RPATH, /etc/ld.so.cache); {hint}",
        candidates.join(", ")
    )]
    LibraryMissing {
        /// `"driver"` (libcuda, comes with the NVIDIA driver) or `"NVRTC"` (libnvrtc).
        what: &'static str,
        /// The file names cudarc tries, in order.
        candidates: Vec<String>,
        /// Where such a library is usually found.
        hint: &'static str,
    },
    /// The CUDA driver reported an error (no device, out of memory, launch failure, ...).
    #[error("CUDA driver: {0}")]
    Driver(#[from] cudarc::driver::DriverError),
    /// NVRTC failed to compile the kernels, or warned.
    #[error("NVRTC ({arch}): {message}\n{log}")]
    Compile {
        /// The target architecture (`sm_90`, ...).
        arch: String,
        /// What failed.
        message: String,
        /// NVRTC's log.
        log: String,
    },
    /// The number of tensors passed does not match the optimizer's.
    #[error("count mismatch: {what} has {got} entries, expected {expected}")]
    CountMismatch {
        /// Which list (`parameters`, `gradients`, ...).
        what: &'static str,
        /// Entries given.
        got: usize,
        /// Entries expected.
        expected: usize,
    },
    /// A tensor's length does not match its parameter's.
    #[error(
        "length mismatch for the {what} of tensor {tensor}: {got} elements, expected {expected}"
    )]
    LengthMismatch {
        /// Index of the parameter tensor.
        tensor: usize,
        /// `parameter`, `gradient`, `loss`, ...
        what: &'static str,
        /// Its length.
        got: usize,
        /// The expected length.
        expected: usize,
    },
    /// A raw device pointer is null.
    #[error("null device pointer: the {what} of tensor {tensor}")]
    NullPointer {
        /// Index of the parameter tensor (0 for the loss).
        tensor: usize,
        /// `parameter`, `gradient` or `loss`.
        what: &'static str,
    },
    /// A non-finite batch loss was rejected on the device: its step was skipped.
    #[error("{count} non-finite loss(es) rejected on the device (their steps were skipped)")]
    RejectedLoss {
        /// How many losses were rejected so far.
        count: u64,
    },
}

/// `Result` with [`LcamCudaError`].
pub type Result<T, E = LcamCudaError> = std::result::Result<T, E>;
