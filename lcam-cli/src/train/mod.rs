//! `lcam train`: schedules, model specs, and (with a backend feature) the training loop.

pub mod model;
pub mod schedule;
