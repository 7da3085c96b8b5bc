//! [`Lcam`]: the reference LCAM optimizer over ndarray arrays.

use ndarray::{ArrayD, IxDyn};
use serde::{Deserialize, Serialize};

use crate::config::LcamConfig;
use crate::controller::{ControllerState, EpochStats, Phase, PhasedMomentum};
use crate::driver::{Driver, Groups, ParamGroup, StepKernel};
use crate::error::{LcamError, Result};
use crate::math::{Scalar, StepParams, UpdateTensor, sgd_update_grouped};

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
    /// The parameter groups; absent when there is one (every state written before groups
    /// existed, and every one-group state since, has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Groups>,
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
    driver: Driver,
    shapes: Vec<Vec<usize>>,
    buffers: Vec<Option<ArrayD<F>>>,
}

/// [`Lcam`]'s kernel: the checks of one step's tensors, then the multi-tensor update.
struct NdKernel<'a, F: Scalar> {
    shapes: &'a [Vec<usize>],
    group_of: &'a [usize],
    params: &'a mut [ArrayD<F>],
    grads: &'a [Option<ArrayD<F>>],
    buffers: &'a mut [Option<ArrayD<F>>],
}

impl<F: Scalar> StepKernel for NdKernel<'_, F> {
    type Error = LcamError;

    fn apply(&mut self, groups: &[StepParams]) -> Result<()> {
        check_shapes(self.shapes, self.params)?;
        if self.grads.len() != self.params.len() {
            return Err(LcamError::CountMismatch {
                what: "gradients".into(),
                got: self.grads.len(),
                expected: self.params.len(),
            });
        }
        for (i, g) in self.grads.iter().enumerate() {
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
        sgd_update_grouped(self.params, self.grads, self.buffers, groups, self.group_of)
    }
}

fn check_shapes<F: Scalar>(shapes: &[Vec<usize>], params: &[ArrayD<F>]) -> Result<()> {
    if params.len() != shapes.len() {
        return Err(LcamError::CountMismatch {
            what: "parameters".into(),
            got: params.len(),
            expected: shapes.len(),
        });
    }
    for (i, (p, s)) in params.iter().zip(shapes).enumerate() {
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

impl<F: Scalar> Lcam<F> {
    /// An optimizer for parameters shaped like `params`, after validating `config`.
    pub fn new(config: LcamConfig, params: &[ArrayD<F>]) -> Result<Self> {
        Self::with_shapes(config, &shapes_of(params))
    }

    /// An optimizer for parameters of `shapes` (no parameter needed), after validating
    /// `config`.
    pub fn with_shapes(config: LcamConfig, shapes: &[Vec<usize>]) -> Result<Self> {
        Self::with_groups(config, shapes, &[])
    }

    /// An optimizer for parameters of `shapes` in parameter groups (indices into `shapes`;
    /// the parameters no group lists form the group `default`, see [`Groups::resolve`]).
    ///
    /// ```
    /// use lcam_core::{GroupBuilder, Lcam, LcamConfig, ParamGroup};
    /// // weights 0 and 2 decay, biases 1 and 3 do not
    /// let shapes = vec![vec![4, 3], vec![4], vec![2, 4], vec![2]];
    /// let opt = Lcam::<f32>::with_groups(
    ///     LcamConfig::cifar10(),
    ///     &shapes,
    ///     &[ParamGroup::new("no_decay", vec![1, 3]).with_weight_decay(0.0)],
    /// )?;
    /// assert_eq!(opt.groups().names(), ["no_decay", "default"]);
    /// # Ok::<(), lcam_core::LcamError>(())
    /// ```
    pub fn with_groups(
        config: LcamConfig,
        shapes: &[Vec<usize>],
        groups: &[ParamGroup],
    ) -> Result<Self> {
        Ok(Self {
            driver: Driver::with_groups(config, shapes.len(), groups)?,
            shapes: shapes.to_vec(),
            buffers: vec![None; shapes.len()],
        })
    }

    /// The configuration (its `lr` is the current learning rate).
    pub fn config(&self) -> &LcamConfig {
        self.driver.config()
    }

    /// The parameter groups.
    pub fn groups(&self) -> &Groups {
        self.driver.groups()
    }

    /// The phase controller.
    pub fn controller(&self) -> &PhasedMomentum {
        self.driver.controller()
    }

    /// The momentum the next step will use.
    pub fn momentum(&self) -> f64 {
        self.driver.momentum()
    }

    /// The last phase decision.
    pub fn phase(&self) -> Option<Phase> {
        self.driver.phase()
    }

    /// Diagnostics of the current epoch.
    pub fn epoch_stats(&self) -> EpochStats {
        self.driver.epoch_stats()
    }

    /// The momentum buffers (`None` for tensors that never had a gradient).
    pub fn buffers(&self) -> &[Option<ArrayD<F>>] {
        &self.buffers
    }

    /// Current learning rate (of the first group).
    pub fn lr(&self) -> f64 {
        self.driver.lr()
    }

    /// Sets the learning rate of every group for the following steps (a schedule's job).
    pub fn set_lr(&mut self, lr: f64) -> Result<()> {
        self.driver.set_lr(lr)
    }

    /// Every group back to its configured rate ([`Driver::reset_lr`]).
    pub fn reset_lr(&mut self) {
        self.driver.reset_lr();
    }

    /// Sets the learning rate of one group (an index into [`Groups::names`]).
    pub fn set_group_lr(&mut self, group: usize, lr: f64) -> Result<()> {
        self.driver.set_group_lr(group, lr)
    }

    /// Starts a new epoch: the controller's running mean is reset. While the current epoch has
    /// observed no loss this is a no-op, so a loop may call it at the top of every epoch
    /// (including the first, and again after a restore at an epoch boundary).
    pub fn start_epoch(&mut self) {
        self.driver.start_epoch();
    }

    /// One step: updates every parameter that has a gradient with the momentum in force (and
    /// its group's options), then observes `loss` (the batch's mean-reduced loss) to decide the
    /// next momentum.
    ///
    /// Errors, with nothing changed: a non-finite loss, a gradient count or shape that does not
    /// match the parameters.
    pub fn step(
        &mut self,
        params: &mut [ArrayD<F>],
        grads: &[Option<ArrayD<F>>],
        loss: f64,
    ) -> Result<StepReport> {
        let Self {
            driver,
            shapes,
            buffers,
        } = self;
        let group_of = driver.groups().of_param().to_vec();
        driver.step(
            loss,
            &mut NdKernel {
                shapes,
                group_of: &group_of,
                params,
                grads,
                buffers,
            },
        )
    }

    /// The full state, for saving.
    pub fn state(&self) -> LcamState<F> {
        LcamState {
            format: LcamState::<F>::FORMAT.to_string(),
            dtype: F::DTYPE.to_string(),
            config: *self.driver.config(),
            controller: self.driver.controller().state(),
            buffers: self
                .buffers
                .iter()
                .map(|b| b.as_ref().map(TensorData::from_array))
                .collect(),
            groups: (!self.driver.groups().is_single()).then(|| self.driver.groups().clone()),
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
        let mut opt = Self {
            driver: Driver::from_parts(
                state.config,
                state.groups.clone(),
                shapes.len(),
                state.controller,
            )?,
            shapes: shapes.to_vec(),
            buffers: vec![None; shapes.len()],
        };
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
