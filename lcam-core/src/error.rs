//! The one error type of `lcam-core`.

use thiserror::Error;

/// Everything that can go wrong in `lcam-core`. Each variant names its culprit
/// (the field, tensor, step or value) so that a user can fix the input.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum LcamError {
    /// A configuration field is out of its valid range (SPEC §1).
    #[error("invalid config: `{field}` = {value} ({expected})")]
    InvalidConfig {
        /// The serde name of the offending field.
        field: &'static str,
        /// The offending value, as written.
        value: String,
        /// What the field accepts.
        expected: &'static str,
    },
    /// A batch loss is NaN or infinite; it is never folded into the running mean (SPEC §2).
    #[error(
        "non-finite loss {loss} at step {step} of epoch {epoch}: the running mean is left unchanged"
    )]
    NonFiniteLoss {
        /// The offending loss.
        loss: f64,
        /// Epoch index of the controller.
        epoch: u64,
        /// 1-based index the batch would have had within the epoch.
        step: u64,
    },
    /// Two tensors that must have the same shape do not.
    #[error("shape mismatch for {what} of tensor `{tensor}`: got {got:?}, expected {expected:?}")]
    ShapeMismatch {
        /// Name (or index) of the parameter tensor.
        tensor: String,
        /// Which companion tensor disagrees (`gradient`, `momentum buffer`, ...).
        what: &'static str,
        /// Its shape.
        got: Vec<usize>,
        /// The parameter's shape.
        expected: Vec<usize>,
    },
    /// The number of tensors passed does not match the number of parameters.
    #[error("count mismatch: {what} has {got} entries, expected {expected}")]
    CountMismatch {
        /// Which list is wrong (`gradients`, `buffers`, ...).
        what: String,
        /// Entries given.
        got: usize,
        /// Entries expected.
        expected: usize,
    },
    /// A parameter group is inconsistent: empty, unknown or shared parameter, option out of
    /// range, duplicate name.
    #[error("invalid parameter group `{group}`: {message}")]
    InvalidGroup {
        /// The group's name (`#i` for an unnamed group, by position).
        group: String,
        /// What is wrong, naming the parameter or option.
        message: String,
    },
    /// A trace or trajectory document is malformed or inconsistent.
    #[error("invalid trace: {location}: {message}")]
    InvalidTrace {
        /// Where in the document (`params[1].data`, `steps[3].grads[0]`, ...).
        location: String,
        /// What is wrong, with the expected value.
        message: String,
    },
    /// A saved optimizer state does not fit the optimizer or parameters it is loaded into.
    #[error("invalid optimizer state: {location}: {message}")]
    InvalidState {
        /// Where in the state (`buffers[2]`, `controller.count`, ...).
        location: String,
        /// What is wrong.
        message: String,
    },
    /// A JSON document could not be parsed.
    #[error("cannot parse {what}: {message}")]
    Parse {
        /// What was being parsed.
        what: &'static str,
        /// The parser's message (with line and column).
        message: String,
    },
}

/// `Result` with [`LcamError`].
pub type Result<T, E = LcamError> = std::result::Result<T, E>;
