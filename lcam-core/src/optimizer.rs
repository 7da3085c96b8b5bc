//! [`Lcam`]: the reference LCAM optimizer over ndarray arrays.

use ndarray::{ArrayD, IxDyn};
use serde::{Deserialize, Serialize};

use crate::config::{LcamConfig, check_lr};
use crate::controller::{ControllerState, EpochStats, Phase, PhasedMomentum};
use crate::error::{LcamError, Result};
use crate::math::{Scalar, StepParams, UpdateTensor, sgd_update_all};

/// What one [`Lcam::step`] did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepReport {
    /// The momentum the step used.
    pub momentum: f64,
    /// The learning rate the step used.
    pub lr: f64,
    /// The phase decided from this step's loss, which sets the next step's momentum.
    pub phase: Phase,
}

/// A tensor as plain data: shape plus row-major elements (the trace and state format).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorData<F> {
    /// Shape.
    pub shape: Vec<usize>,
    /// Row-major elements; `data.len()` is the product of `shape`.
    pub data: Vec<F>,
}

impl<F: Scalar> TensorData<F> {
    /// Copies an array (in row-major order).
    pub fn from_array(a: &ArrayD<F>) -> Self {
        Self {
            shape: a.shape().to_vec(),
            data: a.iter().copied().collect(),
        }
    }

    /// Builds the array; `location` names the tensor in the error when the length is wrong.
    pub fn to_array(&self, location: &str) -> Result<ArrayD<F>> {
        ArrayD::from_shape_vec(IxDyn(&self.shape), self.data.clone()).map_err(|_| {
            LcamError::InvalidState {
                location: location.to_string(),
                message: format!(
                    "data has {} elements, shape {:?} needs {}",
                    self.data.len(),
                    self.shape,
                    crate::trace::describe_elements(&self.shape)
                ),
            }
        })
    }
}

/// The complete, serialisable state of an [`Lcam`] optimizer: configuration (with the current
/// learning rate), controller and momentum buffers. Restoring it and continuing is bit-identical
/// to never stopping (with a float-exact format such as serde_json's `float_roundtrip`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LcamState<F> {
    /// Always [`LcamState::FORMAT`].
    pub format: String,
    /// Element type tag, `"f32"` or `"f64"`.
    pub dtype: String,
    /// The configuration, `lr` being the current learning rate.
    pub config: LcamConfig,
    /// The phase controller.
    pub controller: ControllerState,
    /// Per-parameter momentum buffer (`None` until the tensor's first step).
    pub buffers: Vec<Option<TensorData<F>>>,
}

impl<F> LcamState<F> {
    /// The format tag of this state version.
    pub const FORMAT: &'static str = "lcam-state/1";
}

/// LCAM over ndarray arrays: SGD with momentum (SPEC §1) whose momentum is set by a
/// [`PhasedMomentum`] controller (SPEC §2). It owns the buffers and the controller; the caller
/// owns the parameters.
///
/// Each [`Lcam::step`] takes the batch loss as a required argument: it applies the update with
/// the momentum in force, then observes the loss to decide the next step's momentum.
///
/// ```
/// use lcam_core::{Lcam, LcamConfig};
/// use ndarray::{ArrayD, IxDyn};
///
/// let mut params = vec![ArrayD::<f32>::from_elem(IxDyn(&[2]), 1.0)];
/// let mut opt = Lcam::new(LcamConfig::new(0.1, 0.0, 0.95, 0.9)?, &params)?;
/// for _epoch in 0..3 {
///     opt.start_epoch();
///     for _batch in 0..4 {
///         // loss = ½‖p‖², ∇ = p
///         let loss = 0.5 * params[0].mapv(|v| v * v).sum() as f64;
///         let grads = vec![Some(params[0].clone())];
///         opt.step(&mut params, &grads, loss)?;
///     }
/// }
/// assert!(params[0][0] < 0.5);
/// # Ok::<(), lcam_core::LcamError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Lcam<F: Scalar> {
    config: LcamConfig,
    controller: PhasedMomentum,
    shapes: Vec<Vec<usize>>,
    buffers: Vec<Option<ArrayD<F>>>,
}

impl<F: Scalar> Lcam<F> {
    /// An optimizer for parameters shaped like `params`, after validating `config`.
    pub fn new(config: LcamConfig, params: &[ArrayD<F>]) -> Result<Self> {
        Self::with_shapes(config, &shapes_of(params))
    }

    /// An optimizer for parameters of `shapes` (no parameter needed), after validating
    /// `config`.
    pub fn with_shapes(config: LcamConfig, shapes: &[Vec<usize>]) -> Result<Self> {
        let config = config.validate()?;
        Ok(Self {
            controller: PhasedMomentum::new(&config),
            config,
            shapes: shapes.to_vec(),
            buffers: vec![None; shapes.len()],
        })
    }

    /// The configuration (its `lr` is the current learning rate).
    pub fn config(&self) -> &LcamConfig {
        &self.config
    }

    /// The phase controller.
    pub fn controller(&self) -> &PhasedMomentum {
        &self.controller
    }

    /// The momentum the next step will use.
    pub fn momentum(&self) -> f64 {
        self.controller.momentum()
    }

    /// The last phase decision.
    pub fn phase(&self) -> Option<Phase> {
        self.controller.phase()
    }

    /// Diagnostics of the current epoch.
    pub fn epoch_stats(&self) -> EpochStats {
        self.controller.epoch_stats()
    }

    /// The momentum buffers (`None` for tensors that never had a gradient).
    pub fn buffers(&self) -> &[Option<ArrayD<F>>] {
        &self.buffers
    }

    /// Current learning rate.
    pub fn lr(&self) -> f64 {
        self.config.lr
    }

    /// Sets the learning rate of the following steps (a schedule's job).
    pub fn set_lr(&mut self, lr: f64) -> Result<()> {
        check_lr("lr", lr)?;
        self.config.lr = lr;
        Ok(())
    }

    /// Starts a new epoch: the controller's running mean is reset. While the current epoch has
    /// observed no loss this is a no-op, so a loop may call it at the top of every epoch
    /// (including the first, and again after a restore at an epoch boundary).
    pub fn start_epoch(&mut self) {
        if self.controller.epoch_stats().steps > 0 {
            self.controller.start_epoch();
        }
    }

    /// One step: updates every parameter that has a gradient with the momentum in force, then
    /// observes `loss` (the batch's mean-reduced loss) to decide the next momentum.
    ///
    /// Errors, with nothing changed: a non-finite loss, a gradient count or shape that does not
    /// match the parameters.
    pub fn step(
        &mut self,
        params: &mut [ArrayD<F>],
        grads: &[Option<ArrayD<F>>],
        loss: f64,
    ) -> Result<StepReport> {
        self.controller.check_loss(loss)?;
        self.check_params(params)?;
        if grads.len() != params.len() {
            return Err(LcamError::CountMismatch {
                what: "gradients".into(),
                got: grads.len(),
                expected: params.len(),
            });
        }
        for (i, g) in grads.iter().enumerate() {
            if let Some(g) = g
                && g.shape() != self.shapes[i].as_slice()
            {
                return Err(LcamError::ShapeMismatch {
                    tensor: format!("param {i}"),
                    what: "gradient",
                    got: g.dims(),
                    expected: self.shapes[i].clone(),
                });
            }
        }
        let h = StepParams {
            lr: self.config.lr,
            weight_decay: self.config.weight_decay,
            momentum: self.controller.momentum(),
            dampening: self.config.dampening,
            nesterov: self.config.nesterov,
        };
        sgd_update_all(params, grads, &mut self.buffers, &h)?;
        let phase = self.controller.observe(loss)?;
        Ok(StepReport {
            momentum: h.momentum,
            lr: h.lr,
            phase,
        })
    }

    fn check_params(&self, params: &[ArrayD<F>]) -> Result<()> {
        if params.len() != self.shapes.len() {
            return Err(LcamError::CountMismatch {
                what: "parameters".into(),
                got: params.len(),
                expected: self.shapes.len(),
            });
        }
        for (i, (p, s)) in params.iter().zip(&self.shapes).enumerate() {
            if p.shape() != s.as_slice() {
                return Err(LcamError::ShapeMismatch {
                    tensor: format!("param {i}"),
                    what: "parameter",
                    got: p.dims(),
                    expected: s.clone(),
                });
            }
        }
        Ok(())
    }

    /// The full state, for saving.
    pub fn state(&self) -> LcamState<F> {
        LcamState {
            format: LcamState::<F>::FORMAT.to_string(),
            dtype: F::DTYPE.to_string(),
            config: self.config,
            controller: self.controller.state(),
            buffers: self
                .buffers
                .iter()
                .map(|b| b.as_ref().map(TensorData::from_array))
                .collect(),
        }
    }

    /// Restores an optimizer for parameters shaped like `params` from a saved state. Every
    /// inconsistency (format, dtype, config, buffer count or shape) is an error naming the
    /// culprit; nothing is half-loaded.
    pub fn from_state(state: &LcamState<F>, params: &[ArrayD<F>]) -> Result<Self> {
        Self::from_state_shapes(state, &shapes_of(params))
    }

    /// [`Lcam::from_state`] for parameters of `shapes` — how adapters whose parameters are not
    /// ndarray arrays (lcam-tch, lcam-cuda) validate and unpack a state without materialising
    /// their parameters on the host.
    pub fn from_state_shapes(state: &LcamState<F>, shapes: &[Vec<usize>]) -> Result<Self> {
        let bad = |location: &str, message: String| LcamError::InvalidState {
            location: location.to_string(),
            message,
        };
        if state.format != LcamState::<F>::FORMAT {
            return Err(bad(
                "format",
                format!("`{}`, expected `{}`", state.format, LcamState::<F>::FORMAT),
            ));
        }
        if state.dtype != F::DTYPE {
            return Err(bad(
                "dtype",
                format!("`{}`, expected `{}`", state.dtype, F::DTYPE),
            ));
        }
        let mut opt = Self::with_shapes(state.config, shapes)?;
        opt.controller = PhasedMomentum::from_state(&opt.config, state.controller)?;
        if state.buffers.len() != shapes.len() {
            return Err(bad(
                "buffers",
                format!(
                    "{} entries, expected {} (one per parameter)",
                    state.buffers.len(),
                    shapes.len()
                ),
            ));
        }
        for (i, b) in state.buffers.iter().enumerate() {
            if let Some(b) = b {
                let loc = format!("buffers[{i}]");
                let a = b.to_array(&loc)?;
                if a.shape() != opt.shapes[i].as_slice() {
                    return Err(bad(
                        &loc,
                        format!("shape {:?}, parameter has {:?}", a.shape(), opt.shapes[i]),
                    ));
                }
                opt.buffers[i] = Some(a);
            }
        }
        Ok(opt)
    }
}

fn shapes_of<F>(params: &[ArrayD<F>]) -> Vec<Vec<usize>> {
    params.iter().map(|p| p.shape().to_vec()).collect()
}
