//! Library half of `lcam-cli`: CIFAR data pipeline, crash-safe output, and the commands behind
//! the `lcam` binary.
#![warn(missing_docs)]

pub mod data;
pub mod output;
pub mod train;
