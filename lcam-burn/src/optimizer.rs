//! [`LcamOptimizer`]: LCAM for Burn modules, with the batch loss as a required argument.

use burn::config::Config;
use burn::module::{Module, ParamId};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::Tensor;
use lcam_core::{Driver, EpochStats, GroupBuilder, Groups, LcamConfig, Phase, PhasedMomentum};

use crate::error::{LcamBurnError, Result};
use crate::kernel::{LcamTensorOptimizer, LrFrom, ModuleKernel, SharedStep};

/// Configuration of an [`LcamOptimizer`], Burn style: `LcamBurnConfig::new(below, above)`, the
/// `with_*` builders, then [`LcamBurnConfig::init`], which validates.
///
/// The learning rate is not part of it: as with every Burn optimizer it is given to each
/// [`LcamOptimizer::step`]. Dampening defaults to 0 as in PyTorch (Burn's own `MomentumConfig`
/// defaults to 0.1; that default is deliberately not inherited). A configuration written `A/B` in
/// the paper is `new(A, B)`: `A` after a batch below the epoch's running mean, `B` otherwise.
#[derive(Config, Debug)]
pub struct LcamBurnConfig {
    /// Momentum used on the step after a batch whose loss was below the epoch's running mean.
    pub momentum_below: f64,
    /// Momentum used on the step after a batch whose loss was at or above the running mean.
    pub momentum_above: f64,
    /// Coupled L2 weight decay λ ≥ 0, added to the gradient before momentum.
    #[config(default = 0.0)]
    pub weight_decay: f64,
    /// Momentum before any loss was observed; `None` means `momentum_above` (the phase of an
    /// epoch's first batch).
    pub initial_momentum: Option<f64>,
    /// Dampening τ ∈ [0, 1] (not applied on a tensor's first step).
    #[config(default = 0.0)]
    pub dampening: f64,
    /// Nesterov momentum; requires `dampening == 0` and every momentum `> 0`.
    #[config(default = false)]
    pub nesterov: bool,
}

impl LcamBurnConfig {
    /// The same hyper-parameters as a core [`LcamConfig`] (its `lr` is not used: Burn passes the
    /// learning rate to each step).
    pub fn from_lcam(config: &LcamConfig) -> Self {
        Self {
            momentum_below: config.momentum_below,
            momentum_above: config.momentum_above,
            weight_decay: config.weight_decay,
            initial_momentum: Some(config.initial_momentum),
            dampening: config.dampening,
            nesterov: config.nesterov,
        }
    }

    /// The validated core configuration (`lr` 0 until the first step sets it).
    pub fn to_lcam(&self) -> Result<LcamConfig> {
        Ok(LcamConfig {
            lr: 0.0,
            weight_decay: self.weight_decay,
            momentum_below: self.momentum_below,
            momentum_above: self.momentum_above,
            initial_momentum: self.initial_momentum.unwrap_or(self.momentum_above),
            dampening: self.dampening,
            nesterov: self.nesterov,
        }
        .validate()?)
    }

    /// Validates the configuration and builds the optimizer.
    pub fn init(&self) -> Result<LcamOptimizer> {
        LcamOptimizer::new(self.to_lcam()?)
    }
}

/// A batch loss as [`LcamOptimizer::step`] accepts it: a host number, or a Burn tensor holding
/// exactly one element (such as the result of `.mean()`), read back as `f64`.
pub trait BatchLoss {
    /// The loss as `f64`; a tensor with more or fewer than one element is
    /// [`LcamBurnError::NonScalarLoss`].
    fn to_f64(self) -> Result<f64>;
}

impl BatchLoss for f64 {
    fn to_f64(self) -> Result<f64> {
        Ok(self)
    }
}

impl BatchLoss for f32 {
    fn to_f64(self) -> Result<f64> {
        Ok(f64::from(self))
    }
}

impl<const D: usize> BatchLoss for &Tensor<D> {
    fn to_f64(self) -> Result<f64> {
        self.clone().to_f64()
    }
}

impl<const D: usize> BatchLoss for Tensor<D> {
    fn to_f64(self) -> Result<f64> {
        let shape = self.shape();
        if shape.num_elements() != 1 {
            return Err(LcamBurnError::NonScalarLoss {
                shape: shape.to_vec(),
            });
        }
        // A float loss widens exactly to f64 (as PyTorch's `loss.item()` does).
        self.try_into_scalar::<f64>()
            .map_err(|e| LcamBurnError::LossRead {
                message: format!("{e:?}"),
            })
    }
}

/// A failed [`LcamOptimizer::step`]: the error and the module, handed back untouched.
///
/// `?` converts it into [`LcamBurnError`] (dropping the module).
#[derive(Debug)]
pub struct StepError<M> {
    /// Why the step was refused.
    pub error: LcamBurnError,
    /// The module exactly as it was given.
    pub module: M,
}

impl<M> std::fmt::Display for StepError<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LCAM step refused, nothing changed: {}", self.error)
    }
}

impl<M: std::fmt::Debug> std::error::Error for StepError<M> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl<M> From<StepError<M>> for LcamBurnError {
    fn from(e: StepError<M>) -> Self {
        e.error
    }
}

/// LCAM for Burn: SGD with momentum (PyTorch semantics, lcam-core's [`lcam_core::sgd_update`])
/// whose momentum is set by one [`PhasedMomentum`] controller for all parameters.
///
/// Internally a [`ModuleOptimizer`] walks the module and keeps one momentum buffer per parameter
/// (keyed by [`burn::module::ParamId`], as for Burn's own optimizers); this type owns it together
/// with the controller, so that a step cannot be taken without the batch loss.
///
/// Each epoch: [`start_epoch`](Self::start_epoch), then per batch
/// `model = optim.step(lr, model, grads, &loss)?`.
pub struct LcamOptimizer {
    driver: Driver,
    /// One per group of the driver (the last: parameters no group lists).
    shared: Vec<SharedStep>,
    /// The listed parameters: `ids[i]` is lcam-core's parameter `i` (the driver has one more,
    /// standing for every parameter no group lists).
    ids: Vec<ParamId>,
    inner: ModuleOptimizer,
}

/// A parameter group of an [`LcamOptimizer`] (see [`LcamOptimizer::with_groups`]): Burn
/// parameters by [`ParamId`], with options that override the configuration's. Every group
/// switches momentum with the others (one controller).
#[derive(Debug, Clone)]
pub struct BurnGroup {
    ids: Vec<ParamId>,
    options: lcam_core::ParamGroup,
}

impl BurnGroup {
    /// The parameters `ids` (e.g. `module.bias.id` of each layer).
    pub fn new(name: &str, ids: impl IntoIterator<Item = ParamId>) -> Self {
        Self {
            ids: ids.into_iter().collect(),
            options: lcam_core::ParamGroup::new(name, Vec::new()),
        }
    }
}

/// `with_lr` (used by [`LcamOptimizer::step_grouped`]; [`LcamOptimizer::step`] gives every
/// group the step's rate), `with_weight_decay`, `with_dampening`, `with_nesterov`
/// (lcam-core's builders).
impl GroupBuilder for BurnGroup {
    fn options_mut(&mut self) -> &mut lcam_core::ParamGroup {
        &mut self.options
    }
}

impl std::fmt::Debug for LcamOptimizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LcamOptimizer")
            .field("driver", &self.driver)
            .finish_non_exhaustive()
    }
}

impl LcamOptimizer {
    /// An optimizer for a (validated) core configuration; its `lr` is only the initial value of
    /// [`LcamOptimizer::lr`], each step bringing its own.
    pub fn new(config: LcamConfig) -> Result<Self> {
        let config = config.validate()?;
        Ok(Self::assemble(config, PhasedMomentum::new(&config)))
    }

    pub(crate) fn assemble(config: LcamConfig, controller: PhasedMomentum) -> Self {
        let mut driver = Driver::new(config, 1).unwrap_or_else(|_| unreachable!("validated"));
        // Cannot fail: the state comes from a controller of this configuration.
        let _ = driver.restore_controller(controller.state());
        let shared = shared_steps(&driver);
        let inner = module_optimizer(&driver, &shared, &[]);
        Self {
            shared,
            driver,
            ids: Vec::new(),
            inner,
        }
    }

    /// The optimizer with parameter groups (call it before the first step): each group's
    /// parameters take its options, the others the configuration's (group `default`). Errors
    /// ([`lcam_core::LcamError::InvalidGroup`] naming the group and the parameter): a parameter in two
    /// groups, an empty group, an option out of range; a call after a step.
    pub fn with_groups(mut self, groups: Vec<BurnGroup>) -> Result<Self> {
        let mut ids: Vec<ParamId> = Vec::new();
        let core: Vec<lcam_core::ParamGroup> = groups
            .iter()
            .map(|g| {
                let params = g
                    .ids
                    .iter()
                    .map(|id| {
                        ids.iter().position(|x| x == id).unwrap_or_else(|| {
                            ids.push(*id);
                            ids.len() - 1
                        })
                    })
                    .collect();
                lcam_core::ParamGroup {
                    params,
                    ..g.options.clone()
                }
            })
            .collect();
        // One more parameter than listed: it stands for every parameter no group lists.
        self.driver.regroup(ids.len() + 1, &core, false)?;
        self.shared = shared_steps(&self.driver);
        self.ids = ids;
        self.inner = self.fresh_inner();
        Ok(self)
    }

    /// Restores the groups of a record (as [`LcamOptimizer::group_parts`] gave them).
    pub(crate) fn restore_groups(&mut self, ids: Vec<ParamId>, groups: Groups) -> Result<()> {
        let driver = Driver::from_parts(
            *self.driver.config(),
            Some(groups),
            ids.len() + 1,
            self.driver.controller().state(),
        )?;
        self.shared = shared_steps(&driver);
        self.driver = driver;
        self.ids = ids;
        Ok(())
    }

    /// The listed parameters' ids and the groups (`None` for one group), for a record.
    pub(crate) fn group_parts(&self) -> Option<(Vec<u64>, Groups)> {
        let g = self.driver.groups();
        (!g.is_single()).then(|| (self.ids.iter().map(ParamId::val).collect(), g.clone()))
    }

    /// The parameter groups (one, `default`, unless [`LcamOptimizer::with_groups`] set others).
    pub fn groups(&self) -> &Groups {
        self.driver.groups()
    }

    /// Every group back to its configured rate, for [`LcamOptimizer::step_grouped`].
    pub fn reset_lr(&mut self) {
        self.driver.reset_lr();
    }

    /// Sets group `group`'s learning rate for [`LcamOptimizer::step_grouped`].
    pub fn set_group_lr(&mut self, group: usize, lr: f64) -> Result<()> {
        Ok(self.driver.set_group_lr(group, lr)?)
    }

    /// A fresh internal `ModuleOptimizer` bound to this optimizer's groups: one per-tensor
    /// optimizer per group, each listed group's parameters matched by id (the record loader
    /// fills it).
    /// A Burn optimizer with no momentum buffers yet, over this optimizer's groups.
    pub(crate) fn fresh_inner(&self) -> ModuleOptimizer {
        module_optimizer(&self.driver, &self.shared, &self.ids)
    }

    pub(crate) fn inner(&self) -> &ModuleOptimizer {
        &self.inner
    }

    pub(crate) fn set_inner(&mut self, inner: ModuleOptimizer) {
        self.inner = inner;
    }

    /// One LCAM step: updates every parameter of `module` that has a gradient in `grads` with
    /// the momentum in force (SPEC §1), then observes `loss` — the batch's mean-reduced loss —
    /// to decide the next step's momentum (SPEC §2). `lr` is this step's learning rate.
    ///
    /// Errors, with the optimizer unchanged and the module handed back in [`StepError`]: a loss
    /// tensor that is not a single element, a NaN or infinite loss, an invalid `lr`.
    pub fn step<M: Module>(
        &mut self,
        lr: f64,
        module: M,
        grads: GradientsParams,
        loss: impl BatchLoss,
    ) -> std::result::Result<M, StepError<M>> {
        // The loss is checked before the rate is set, so that a bad one changes nothing (the
        // driver checks it again as the first act of its step).
        let checked = loss.to_f64().and_then(|loss| {
            self.driver.check_loss(loss)?;
            Ok(loss)
        });
        let loss = match checked {
            Ok(v) => v,
            Err(error) => return Err(StepError { error, module }),
        };
        if let Err(error) = self.driver.set_lr(lr) {
            return Err(StepError {
                error: error.into(),
                module,
            });
        }
        self.apply_step(module, grads, loss)
    }

    /// One LCAM step at each group's current learning rate ([`BurnGroup::with_lr`],
    /// [`LcamOptimizer::set_group_lr`]); otherwise as [`LcamOptimizer::step`] (which first
    /// gives every group the step's rate).
    pub fn step_grouped<M: Module>(
        &mut self,
        module: M,
        grads: GradientsParams,
        loss: impl BatchLoss,
    ) -> std::result::Result<M, StepError<M>> {
        match loss.to_f64() {
            Ok(loss) => self.apply_step(module, grads, loss),
            Err(error) => Err(StepError { error, module }),
        }
    }

    /// The driver's step (which checks the loss first) with Burn's optimizer as the kernel.
    fn apply_step<M: Module>(
        &mut self,
        module: M,
        grads: GradientsParams,
        loss: f64,
    ) -> std::result::Result<M, StepError<M>> {
        let inner = &mut self.inner;
        // Burn's rate argument is not read (each group's optimizer takes its own).
        let lr = self.driver.lr();
        phased_step(
            &mut self.driver,
            &self.shared,
            loss,
            module,
            grads,
            |m, g| inner.step(lr, m, g),
        )
    }

    /// Starts a new epoch: the controller's running mean is reset, its last decision carried
    /// over. A no-op while the current epoch has observed no loss, so a loop may call it at the
    /// top of every epoch (including the first, and after loading a record).
    pub fn start_epoch(&mut self) {
        self.driver.start_epoch();
    }

    /// The momentum the next step will use.
    pub fn momentum(&self) -> f64 {
        self.driver.momentum()
    }

    /// The last phase decision (`None` before any loss was observed).
    pub fn phase(&self) -> Option<Phase> {
        self.driver.phase()
    }

    /// Diagnostics of the current epoch.
    pub fn epoch_stats(&self) -> EpochStats {
        self.driver.epoch_stats()
    }

    /// The phase controller.
    pub fn controller(&self) -> &PhasedMomentum {
        self.driver.controller()
    }

    /// The configuration; its `lr` is the learning rate of the last step.
    pub fn config(&self) -> &LcamConfig {
        self.driver.config()
    }

    /// The learning rate of the last step (initially the configuration's).
    pub fn lr(&self) -> f64 {
        self.driver.lr()
    }
}

/// The LCAM step around a Burn optimizer's step (shared by [`LcamOptimizer::step`] and the
/// `Learner` hook): lcam-core's [`Driver`] runs the sequence, `step` (a `ModuleOptimizer` step,
/// fed the step parameters through `shared`) updates the module. On an error the module comes
/// back unchanged in [`StepError`].
pub(crate) fn phased_step<M>(
    driver: &mut Driver,
    shared: &[SharedStep],
    loss: f64,
    module: M,
    grads: GradientsParams,
    step: impl FnMut(M, GradientsParams) -> M,
) -> std::result::Result<M, StepError<M>> {
    let mut kernel = ModuleKernel {
        shared,
        module: Some(module),
        grads: Some(grads),
        step,
    };
    let result = driver.step(loss, &mut kernel);
    match (result, kernel.module) {
        (Ok(_), Some(module)) => Ok(module),
        (Err(error), Some(module)) => Err(StepError { error, module }),
        (_, None) => unreachable!("the kernel hands the module back"),
    }
}

/// Burn's optimizer over `driver`'s groups: one [`LcamTensorOptimizer`] per listed group (its
/// parameters of `ids`), the last (`default`) for every other parameter.
fn module_optimizer(driver: &Driver, shared: &[SharedStep], ids: &[ParamId]) -> ModuleOptimizer {
    let groups = driver.groups();
    let last = groups.len() - 1;
    let mut inner = ModuleOptimizer::from(LcamTensorOptimizer::new(
        shared[last].clone(),
        LrFrom::Driver,
    ));
    for (g, step) in shared.iter().enumerate().take(last) {
        let ids: Vec<ParamId> = groups
            .of_param()
            .iter()
            .zip(ids)
            .filter(|(k, _)| **k == g)
            .map(|(_, id)| *id)
            .collect();
        inner = inner.with_group(
            burn::module::ParamGroup::from_ids(ids),
            LcamTensorOptimizer::new(step.clone(), LrFrom::Driver),
            None,
        );
    }
    inner
}

/// One shared step-parameter cell per group of `driver`.
fn shared_steps(driver: &Driver) -> Vec<SharedStep> {
    driver
        .groups()
        .step_params(driver.momentum())
        .into_iter()
        .map(SharedStep::of)
        .collect()
}
