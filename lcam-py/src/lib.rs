//! # lcam-py
//!
//! The native half of the Python package `lcam`: [pyo3](https://pyo3.rs) bindings that let
//! `lcam.torch.LCAM` (a `torch.optim.Optimizer`, in `python/lcam/torch.py`) step PyTorch tensors
//! in place with lcam-core — without linking libtorch. Python hands over raw memory (a tensor's
//! `data_ptr()`, its element count and dtype); this crate never sees a `torch.Tensor`.
//!
//! The math is not here. The update of every tensor (PyTorch `torch.optim.SGD` semantics, SPEC
//! §1) is lcam-core's [`lcam_core::fused_update_slices`] (and [`lcam_core::sgd_update`] for a
//! tensor's first step, which creates its momentum buffer); the phase rule (SPEC §2) is
//! lcam-core's [`lcam_core::PhasedMomentum`] (both written out there).
//!
//! Module `lcam._lcam`:
//! - `Controller`: [`PhasedMomentum`](lcam_core::PhasedMomentum) (one per optimizer, shared by
//!   all parameter groups), with its state as a dict for `state_dict()`;
//! - `preset(name)`: lcam-core's `LcamConfig::cifar10()` / `cifar100()` as keyword arguments;
//! - `validate_config(...)`: lcam-core's [`LcamConfig::validate`](lcam_core::LcamConfig::validate);
//! - `cpu_step(entries, groups, momentum)`: one step over CPU tensors (see `cpu.rs` for the
//!   safety argument);
//! - `CudaGroup` (feature `cuda`): lcam-cuda's `CudaLcam` over the
//!   tensors of one parameter group, queued on torch's current CUDA stream;
//! - `NonFiniteLossError` (a `ValueError`), `HAS_CUDA`, `__version__`.
#![warn(missing_docs)]

use pyo3::prelude::*;

mod controller;
mod cpu;
#[cfg(feature = "cuda")]
mod cuda;

pyo3::create_exception!(
    _lcam,
    NonFiniteLossError,
    pyo3::exceptions::PyValueError,
    "A NaN or infinite batch loss (or one whose sum with the epoch's losses overflows): the \
     step was refused and nothing changed."
);

/// lcam-core's errors as Python exceptions: a non-finite loss is [`NonFiniteLossError`], every
/// other error (configuration, state) a `ValueError` with lcam-core's message.
pub(crate) fn core_err(e: lcam_core::LcamError) -> PyErr {
    match e {
        lcam_core::LcamError::NonFiniteLoss { .. } => NonFiniteLossError::new_err(e.to_string()),
        _ => pyo3::exceptions::PyValueError::new_err(e.to_string()),
    }
}

/// The extension module `lcam._lcam`.
#[pymodule]
fn _lcam(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<controller::Controller>()?;
    m.add_function(wrap_pyfunction!(controller::validate_config, m)?)?;
    m.add_function(wrap_pyfunction!(controller::preset, m)?)?;
    m.add_function(wrap_pyfunction!(cpu::cpu_step, m)?)?;
    #[cfg(feature = "cuda")]
    m.add_class::<cuda::CudaGroup>()?;
    m.add(
        "NonFiniteLossError",
        m.py().get_type::<NonFiniteLossError>(),
    )?;
    m.add("HAS_CUDA", cfg!(feature = "cuda"))?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
