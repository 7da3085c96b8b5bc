//! `Controller`: lcam-core's [`PhasedMomentum`] for Python, and the configuration check.

use lcam_core::{ControllerState, LcamConfig, Phase, PhasedMomentum};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::core_err;

/// A validated [`LcamConfig`] from its fields (lcam-core's rules and messages).
pub(crate) fn config(
    lr: f64,
    weight_decay: f64,
    momentum_below: f64,
    momentum_above: f64,
    initial_momentum: f64,
    dampening: f64,
    nesterov: bool,
) -> PyResult<LcamConfig> {
    LcamConfig {
        lr,
        weight_decay,
        momentum_below,
        momentum_above,
        initial_momentum,
        dampening,
        nesterov,
    }
    .validate()
    .map_err(core_err)
}

/// `validate_config(lr, weight_decay, momentum_below, momentum_above, initial_momentum,
/// dampening, nesterov)`: raises `ValueError` naming the first field out of range (SPEC §1).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub(crate) fn validate_config(
    lr: f64,
    weight_decay: f64,
    momentum_below: f64,
    momentum_above: f64,
    initial_momentum: f64,
    dampening: f64,
    nesterov: bool,
) -> PyResult<()> {
    config(
        lr,
        weight_decay,
        momentum_below,
        momentum_above,
        initial_momentum,
        dampening,
        nesterov,
    )
    .map(|_| ())
}

/// `"below"` / `"above"` / `None`, as in lcam-core's trajectory format.
pub(crate) fn phase_str(p: Option<Phase>) -> Option<&'static str> {
    p.map(Phase::as_str)
}

/// The inverse of [`phase_str`].
pub(crate) fn parse_phase(p: Option<&str>) -> PyResult<Option<Phase>> {
    match p {
        None => Ok(None),
        Some("below") => Ok(Some(Phase::Below)),
        Some("above") => Ok(Some(Phase::Above)),
        Some(other) => Err(PyValueError::new_err(format!(
            "controller phase {other:?}: expected \"below\", \"above\" or None"
        ))),
    }
}

/// A controller state as the dict `LCAM.state_dict()` stores.
pub(crate) fn state_dict<'py>(
    py: Python<'py>,
    s: &ControllerState,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("epoch", s.epoch)?;
    d.set_item("count", s.count)?;
    d.set_item("sum", s.sum)?;
    d.set_item("steps_below", s.steps_below)?;
    d.set_item("phase", phase_str(s.phase))?;
    Ok(d)
}

/// The LCAM phase controller (lcam-core's `PhasedMomentum`, SPEC §2): one per optimizer.
///
/// `Controller(momentum_below, momentum_above, initial_momentum)`; `observe(loss)` folds a batch
/// loss into the epoch's running mean (f64) and decides the momentum of the next step.
#[pyclass(module = "lcam._lcam", name = "Controller")]
#[derive(Debug, Clone)]
pub(crate) struct Controller {
    config: LcamConfig,
    inner: PhasedMomentum,
}

#[pymethods]
impl Controller {
    #[new]
    fn new(momentum_below: f64, momentum_above: f64, initial_momentum: f64) -> PyResult<Self> {
        let config = config(
            0.0,
            0.0,
            momentum_below,
            momentum_above,
            initial_momentum,
            0.0,
            false,
        )?;
        Ok(Self {
            inner: PhasedMomentum::new(&config),
            config,
        })
    }

    /// μ_below.
    #[getter]
    fn momentum_below(&self) -> f64 {
        self.config.momentum_below
    }

    /// μ_above.
    #[getter]
    fn momentum_above(&self) -> f64 {
        self.config.momentum_above
    }

    /// The momentum before any loss was observed.
    #[getter]
    fn initial_momentum(&self) -> f64 {
        self.config.initial_momentum
    }

    /// The momentum in force for the next step.
    fn momentum(&self) -> f64 {
        self.inner.momentum()
    }

    /// The last decision: `"below"`, `"above"` or `None` before any loss was observed.
    fn phase(&self) -> Option<&'static str> {
        phase_str(self.inner.phase())
    }

    /// Raises `NonFiniteLossError` if `observe(loss)` would refuse `loss`; changes nothing.
    fn check_loss(&self, loss: f64) -> PyResult<()> {
        self.inner.check_loss(loss).map_err(core_err)
    }

    /// Folds `loss` into the epoch's running mean and returns the phase it decides.
    fn observe(&mut self, loss: f64) -> PyResult<&'static str> {
        self.inner
            .observe(loss)
            .map(Phase::as_str)
            .map_err(core_err)
    }

    /// Starts a new epoch (resets the running mean, keeps the last decision); a no-op while the
    /// current epoch observed no loss, as lcam-core's `Lcam::start_epoch`.
    fn start_epoch(&mut self) {
        if self.inner.epoch_stats().steps > 0 {
            self.inner.start_epoch();
        }
    }

    /// `{"epoch", "steps", "steps_below", "mean_loss", "fraction_below", "momentum", "phase"}`.
    fn epoch_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.inner.epoch_stats();
        let d = PyDict::new(py);
        d.set_item("epoch", s.epoch)?;
        d.set_item("steps", s.steps)?;
        d.set_item("steps_below", s.steps_below)?;
        d.set_item("mean_loss", s.mean_loss)?;
        d.set_item("fraction_below", s.fraction_below())?;
        d.set_item("momentum", self.inner.momentum())?;
        d.set_item("phase", phase_str(self.inner.phase()))?;
        Ok(d)
    }

    /// `{"epoch", "count", "sum", "steps_below", "phase"}`: everything needed to continue
    /// bit-identically (`sum` is the f64 `S_k`).
    fn state<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        state_dict(py, &self.inner.state())
    }

    /// Restores a state from `state()`'s fields (validated by lcam-core: a finite sum,
    /// `steps_below <= count`); raises `ValueError` and changes nothing when it is invalid.
    #[pyo3(signature = (epoch, count, sum, steps_below, phase))]
    fn set_state(
        &mut self,
        epoch: u64,
        count: u64,
        sum: f64,
        steps_below: u64,
        phase: Option<&str>,
    ) -> PyResult<()> {
        let state = ControllerState {
            epoch,
            count,
            sum,
            steps_below,
            phase: parse_phase(phase)?,
        };
        self.inner = PhasedMomentum::from_state(&self.config, state).map_err(core_err)?;
        Ok(())
    }

    fn __repr__(&self) -> String {
        let s = self.inner.state();
        format!(
            "Controller(momentum_below={}, momentum_above={}, initial_momentum={}, epoch={}, \
             count={}, phase={:?})",
            self.config.momentum_below,
            self.config.momentum_above,
            self.config.initial_momentum,
            s.epoch,
            s.count,
            phase_str(s.phase)
        )
    }
}

/// `preset(name)`: lcam-core's preset configurations (`"cifar10"`: `LcamConfig::cifar10()`,
/// `"cifar100"`: `LcamConfig::cifar100()`) as a dict of `LCAM`'s keyword arguments.
#[pyfunction]
pub(crate) fn preset<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyDict>> {
    let c = match name {
        "cifar10" => LcamConfig::cifar10(),
        "cifar100" => LcamConfig::cifar100(),
        other => {
            return Err(PyValueError::new_err(format!(
                "unknown preset {other:?}: expected \"cifar10\" or \"cifar100\""
            )));
        }
    };
    let d = PyDict::new(py);
    d.set_item("lr", c.lr)?;
    d.set_item("weight_decay", c.weight_decay)?;
    d.set_item("momentum_below", c.momentum_below)?;
    d.set_item("momentum_above", c.momentum_above)?;
    d.set_item("initial_momentum", c.initial_momentum)?;
    d.set_item("dampening", c.dampening)?;
    d.set_item("nesterov", c.nesterov)?;
    Ok(d)
}
