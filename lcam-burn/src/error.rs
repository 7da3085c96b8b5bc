//! The one error type of `lcam-burn`.

use thiserror::Error;

/// Everything that can go wrong in `lcam-burn`. Each variant names its culprit. A call that
/// returns an error has changed nothing: a refused [`crate::LcamOptimizer::step`] hands the
/// module back untouched in a [`crate::StepError`], and a record that fails to load leaves no
/// optimizer behind.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LcamBurnError {
    /// An error of the core (invalid configuration, non-finite loss, invalid learning rate, …).
    #[error(transparent)]
    Core(#[from] lcam_core::LcamError),
    /// The batch loss handed to a step is a tensor with more than one element.
    #[error("the batch loss must be a scalar: got a tensor of shape {shape:?}")]
    NonScalarLoss {
        /// The loss tensor's shape.
        shape: Vec<usize>,
    },
    /// `LcamHook::optimize` ran without a `record_loss` since the previous step.
    #[error(
        "no batch loss recorded for this step: call `LcamHook::record_loss` in `TrainStep::step`"
    )]
    NoLoss,
    /// The batch loss tensor could not be read back from its device.
    #[error("cannot read the batch loss: {message}")]
    LossRead {
        /// The backend's message.
        message: String,
    },
    /// An optimizer record could not be read or written (I/O error, not a burnpack file,
    /// truncated or corrupt data).
    #[error("cannot {action} LCAM record{}: {message}", path.as_ref().map(|p| format!(" `{p}`")).unwrap_or_default())]
    RecordIo {
        /// `"read"` or `"write"`.
        action: &'static str,
        /// The file, when there is one.
        path: Option<String>,
        /// The underlying message.
        message: String,
    },
    /// A record does not fit the optimizer or module it is loaded into (another model, other
    /// shapes or dtypes, another format). Nothing was loaded.
    #[error("LCAM record does not fit: {location}: {message}")]
    RecordMismatch {
        /// Where in the record (`format`, `config`, `tensors[3] (`17.momentum`)`, …).
        location: String,
        /// What is wrong, with the expected value.
        message: String,
    },
    /// A trace could not be replayed with Burn (tensor creation or read-back failed).
    #[error("burn replay failed at {location}: {message}")]
    Replay {
        /// Where (`params[1]`, `steps[4]`, …).
        location: String,
        /// What failed.
        message: String,
    },
}

/// `Result` with [`LcamBurnError`].
pub type Result<T, E = LcamBurnError> = std::result::Result<T, E>;
