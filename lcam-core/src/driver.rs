//! The LCAM step, written once: [`Driver`] runs the sequence of SPEC §1–2 over any adapter's
//! tensors through the small [`StepKernel`] trait, with [`ParamGroup`]s (per-group learning
//! rate, weight decay, dampening and Nesterov; one controller, so every group switches momentum
//! together — SPEC §2).

use serde::{Deserialize, Serialize};

use crate::config::{LcamConfig, check_lr};
use crate::controller::{ControllerState, EpochStats, Phase, PhasedMomentum};
use crate::error::{LcamError, Result};
use crate::math::StepParams;
use crate::optimizer::StepReport;

/// A parameter group as a user writes it: a name, the indices of its parameters (in the
/// optimizer's parameter order), and the options it overrides; an option left `None` takes the
/// configuration's value (PyTorch's param-group defaults).
///
/// Parameters that no group lists form an implicit group named `default` with the
/// configuration's options, placed after the listed groups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamGroup {
    /// Name used in errors and state files; unique among the groups.
    pub name: String,
    /// Indices of the group's parameters; none may appear in another group.
    pub params: Vec<usize>,
    /// Learning rate (default: the configuration's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    /// Weight decay (default: the configuration's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_decay: Option<f64>,
    /// Dampening (default: the configuration's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dampening: Option<f64>,
    /// Nesterov (default: the configuration's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nesterov: Option<bool>,
}

impl ParamGroup {
    /// A group of `params` with every option taken from the configuration.
    pub fn new(name: impl Into<String>, params: Vec<usize>) -> Self {
        Self {
            name: name.into(),
            params,
            lr: None,
            weight_decay: None,
            dampening: None,
            nesterov: None,
        }
    }
}

/// The option builders of a parameter group, written once for every adapter's group type
/// ([`ParamGroup`] itself, lcam-tch's `Group`, lcam-burn's `BurnGroup`): a type that gives
/// access to its [`ParamGroup`] options gets `with_lr`, `with_weight_decay`, `with_dampening`,
/// `with_nesterov` and `with_options_of`.
///
/// ```
/// use lcam_core::{GroupBuilder, ParamGroup};
/// let g = ParamGroup::new("no_decay", vec![1, 3]).with_weight_decay(0.0).with_lr(0.05);
/// assert_eq!((g.weight_decay, g.lr, g.dampening), (Some(0.0), Some(0.05), None));
/// ```
pub trait GroupBuilder: Sized {
    /// The options this group sets (an adapter's selector decides its parameters).
    fn options_mut(&mut self) -> &mut ParamGroup;

    /// This group's learning rate.
    fn with_lr(mut self, lr: f64) -> Self {
        self.options_mut().lr = Some(lr);
        self
    }

    /// This group's weight decay (`0.0`: no decay, e.g. for batch-norm weights and biases).
    fn with_weight_decay(mut self, weight_decay: f64) -> Self {
        self.options_mut().weight_decay = Some(weight_decay);
        self
    }

    /// This group's dampening.
    fn with_dampening(mut self, dampening: f64) -> Self {
        self.options_mut().dampening = Some(dampening);
        self
    }

    /// This group's Nesterov switch.
    fn with_nesterov(mut self, nesterov: bool) -> Self {
        self.options_mut().nesterov = Some(nesterov);
        self
    }

    /// Every option of `g`, set or not (not its name or parameters): how a trace's groups
    /// become an adapter's.
    fn with_options_of(mut self, g: &ParamGroup) -> Self {
        let o = self.options_mut();
        o.lr = g.lr;
        o.weight_decay = g.weight_decay;
        o.dampening = g.dampening;
        o.nesterov = g.nesterov;
        self
    }
}

impl GroupBuilder for ParamGroup {
    fn options_mut(&mut self) -> &mut ParamGroup {
        self
    }
}

/// The resolved options of one group: what its step parameters are made of.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupOptions {
    /// Learning rate η ≥ 0.
    pub lr: f64,
    /// Weight decay λ ≥ 0.
    pub weight_decay: f64,
    /// Dampening τ ∈ [0, 1].
    pub dampening: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
}

impl GroupOptions {
    /// The options of `config` (the implicit default group).
    pub fn of(config: &LcamConfig) -> Self {
        Self {
            lr: config.lr,
            weight_decay: config.weight_decay,
            dampening: config.dampening,
            nesterov: config.nesterov,
        }
    }

    /// `config` with these options: the configuration whose validation checks them (SPEC §1's
    /// rules, the controller's momenta included: Nesterov needs every momentum > 0).
    pub fn apply_to(&self, config: &LcamConfig) -> LcamConfig {
        LcamConfig {
            lr: self.lr,
            weight_decay: self.weight_decay,
            dampening: self.dampening,
            nesterov: self.nesterov,
            ..*config
        }
    }

    /// The step parameters of this group for a step with `momentum`.
    pub fn step_params(&self, momentum: f64) -> StepParams {
        StepParams {
            lr: self.lr,
            weight_decay: self.weight_decay,
            momentum,
            dampening: self.dampening,
            nesterov: self.nesterov,
        }
    }
}

/// Named, resolved groups over a fixed number of parameters: each group's options and each
/// parameter's group. Built by [`Groups::resolve`] (or [`Groups::single`]), which checks every
/// rule, so a `Groups` is always consistent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Groups {
    names: Vec<String>,
    options: Vec<GroupOptions>,
    of_param: Vec<usize>,
}

/// The name of the implicit group of the parameters no group lists.
pub const DEFAULT_GROUP: &str = "default";

fn group_err(group: &str, message: String) -> LcamError {
    LcamError::InvalidGroup {
        group: group.to_string(),
        message,
    }
}

impl Groups {
    /// One group, `default`, holding all `n_params` parameters with `config`'s options.
    pub fn single(config: &LcamConfig, n_params: usize) -> Self {
        Self {
            names: vec![DEFAULT_GROUP.to_string()],
            options: vec![GroupOptions::of(config)],
            of_param: vec![0; n_params],
        }
    }

    /// Resolves `groups` over `n_params` parameters: options default to `config`'s, parameters
    /// no group lists form a last group named `default`. Errors ([`LcamError::InvalidGroup`],
    /// naming the group and the parameter or option): an empty group, a parameter index out of
    /// range, a parameter in two groups (or twice in one), two groups with one name, an option
    /// out of its range (as [`LcamConfig::validate`] would reject it).
    pub fn resolve(config: &LcamConfig, n_params: usize, groups: &[ParamGroup]) -> Result<Self> {
        if groups.is_empty() {
            return Ok(Self::single(config, n_params));
        }
        let mut of_param: Vec<Option<usize>> = vec![None; n_params];
        let mut names: Vec<String> = Vec::with_capacity(groups.len() + 1);
        let mut options = Vec::with_capacity(groups.len() + 1);
        for (g, group) in groups.iter().enumerate() {
            let name = group.name.as_str();
            if name.is_empty() {
                return Err(group_err(&format!("#{g}"), "the group has no name".into()));
            }
            if names.iter().any(|n| n == name) {
                return Err(group_err(name, "two groups have this name".into()));
            }
            if group.params.is_empty() {
                return Err(group_err(name, "the group has no parameters".into()));
            }
            for &p in &group.params {
                let Some(slot) = of_param.get_mut(p) else {
                    return Err(group_err(
                        name,
                        format!("parameter {p} does not exist ({n_params} parameters)"),
                    ));
                };
                if let Some(other) = slot {
                    return Err(group_err(
                        name,
                        format!(
                            "parameter {p} is already in group `{}`",
                            names_or(&names, *other, name)
                        ),
                    ));
                }
                *slot = Some(g);
            }
            let base = GroupOptions::of(config);
            let o = GroupOptions {
                lr: group.lr.unwrap_or(base.lr),
                weight_decay: group.weight_decay.unwrap_or(base.weight_decay),
                dampening: group.dampening.unwrap_or(base.dampening),
                nesterov: group.nesterov.unwrap_or(base.nesterov),
            };
            o.apply_to(config).validate().map_err(|e| match e {
                LcamError::InvalidConfig {
                    field,
                    value,
                    expected,
                } => group_err(name, format!("`{field}` = {value} ({expected})")),
                other => other,
            })?;
            names.push(name.to_string());
            options.push(o);
        }
        let rest = groups.len();
        let mut has_rest = false;
        let of_param = of_param
            .into_iter()
            .map(|g| {
                g.unwrap_or_else(|| {
                    has_rest = true;
                    rest
                })
            })
            .collect();
        if has_rest {
            if names.iter().any(|n| n == DEFAULT_GROUP) {
                return Err(group_err(
                    DEFAULT_GROUP,
                    "the name is reserved for the parameters no group lists, and some are left"
                        .into(),
                ));
            }
            names.push(DEFAULT_GROUP.to_string());
            options.push(GroupOptions::of(config));
        }
        Ok(Self {
            names,
            options,
            of_param,
        })
    }

    /// Checks a deserialized value (a state file): every parameter's group exists, every
    /// group's options pass `config`'s validation, names are unique.
    pub fn validate(&self, config: &LcamConfig, n_params: usize) -> Result<()> {
        let bad = |message: String| LcamError::InvalidState {
            location: "groups".into(),
            message,
        };
        if self.names.len() != self.options.len() || self.names.is_empty() {
            return Err(bad(format!(
                "{} names for {} option sets",
                self.names.len(),
                self.options.len()
            )));
        }
        if self.of_param.len() != n_params {
            return Err(bad(format!(
                "{} parameter entries, expected {n_params}",
                self.of_param.len()
            )));
        }
        if let Some(p) = self.of_param.iter().position(|&g| g >= self.names.len()) {
            return Err(bad(format!("parameter {p} is in no group")));
        }
        for (i, (n, o)) in self.names.iter().zip(&self.options).enumerate() {
            if self.names[..i].contains(n) {
                return Err(bad(format!("two groups are named `{n}`")));
            }
            o.apply_to(config)
                .validate()
                .map_err(|e| bad(format!("group `{n}`: {e}")))?;
        }
        Ok(())
    }

    /// The number of groups.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Always `false`: there is at least one group.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The groups' names.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The groups' options.
    pub fn options(&self) -> &[GroupOptions] {
        &self.options
    }

    /// Each parameter's group index.
    pub fn of_param(&self) -> &[usize] {
        &self.of_param
    }

    /// The number of parameters.
    pub fn n_params(&self) -> usize {
        self.of_param.len()
    }

    /// `true` when there is one group.
    pub fn is_single(&self) -> bool {
        self.names.len() == 1
    }

    /// Each group's step parameters for a step with `momentum`.
    pub fn step_params(&self, momentum: f64) -> Vec<StepParams> {
        self.options
            .iter()
            .map(|o| o.step_params(momentum))
            .collect()
    }

    /// Each parameter's step parameters (what a per-tensor update loop wants).
    pub fn per_param(&self, groups: &[StepParams]) -> Vec<StepParams> {
        self.of_param.iter().map(|&g| groups[g]).collect()
    }
}

fn names_or(names: &[String], i: usize, fallback: &str) -> String {
    names
        .get(i)
        .cloned()
        .unwrap_or_else(|| fallback.to_string())
}

/// What an adapter supplies to [`Driver::step`]: the update of its tensors with the step
/// parameters of each group (`groups[g]` for the parameters of group `g`; every group has the
/// same momentum).
///
/// A kernel must check everything that can be wrong with its inputs (gradient shapes, dtypes,
/// devices) before it writes anything, and return an error having changed nothing: the driver
/// then leaves the controller untouched too.
pub trait StepKernel {
    /// The adapter's error type.
    type Error: From<LcamError>;
    /// Applies one update.
    fn apply(&mut self, groups: &[StepParams]) -> std::result::Result<(), Self::Error>;
}

/// The LCAM optimizer's state machine, independent of any tensor type: the configuration, the
/// parameter groups and the one [`PhasedMomentum`] controller, with the start-epoch policy.
/// Every adapter's optimizer is a `Driver` plus a [`StepKernel`] over its tensors.
///
/// One step is, in this order and nowhere else: check the loss
/// ([`PhasedMomentum::check_loss`]; a NaN or infinite loss is [`LcamError::NonFiniteLoss`] and
/// nothing changes), build each group's [`StepParams`] with the momentum in force, let the kernel
/// apply the update (it checks its own inputs before writing anything), let the controller
/// observe the loss and decide the next step's momentum, report what was used and decided.
///
/// ```
/// use lcam_core::{Driver, GroupBuilder, LcamConfig, LcamError, ParamGroup, StepKernel, StepParams};
///
/// /// Two scalar parameters: `w` (decayed) and `b` (group `no_decay`).
/// struct Scalars { p: [f64; 2], g: [f64; 2], b: [Option<f64>; 2], group_of: Vec<usize> }
/// impl StepKernel for Scalars {
///     type Error = LcamError;
///     fn apply(&mut self, groups: &[StepParams]) -> Result<(), LcamError> {
///         for i in 0..2 {
///             let h = &groups[self.group_of[i]];
///             let g = self.g[i] + h.weight_decay * self.p[i];
///             let b = self.b[i].map_or(g, |b| h.momentum * b + (1.0 - h.dampening) * g);
///             self.b[i] = Some(b);
///             self.p[i] -= h.lr * b;
///         }
///         Ok(())
///     }
/// }
///
/// let config = LcamConfig::new(0.1, 5e-4, 0.9, 0.95)?;
/// let mut driver = Driver::with_groups(
///     config,
///     2,
///     &[ParamGroup::new("no_decay", vec![1]).with_weight_decay(0.0)],
/// )?;
/// let group_of = driver.groups().of_param().to_vec();
/// assert_eq!(group_of, [1, 0]); // `w` fell into the implicit default group, listed last
/// let mut k = Scalars { p: [1.0, 1.0], g: [0.5, 0.5], b: [None; 2], group_of };
/// driver.start_epoch();
/// let report = driver.step(2.0, &mut k)?;
/// assert_eq!(report.momentum, 0.95); // the initial momentum of LcamConfig::new
/// assert!(k.p[0] < k.p[1]); // only `w` was decayed
/// # Ok::<(), LcamError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Driver {
    config: LcamConfig,
    groups: Groups,
    controller: PhasedMomentum,
    /// Each group's configured rate, for [`Driver::reset_lr`].
    base_lrs: Vec<f64>,
}

fn lrs(groups: &Groups) -> Vec<f64> {
    groups.options().iter().map(|o| o.lr).collect()
}

impl Driver {
    /// A driver for `n_params` parameters in one group, after validating `config`.
    pub fn new(config: LcamConfig, n_params: usize) -> Result<Self> {
        let config = config.validate()?;
        let groups = Groups::single(&config, n_params);
        Ok(Self {
            base_lrs: lrs(&groups),
            groups,
            controller: PhasedMomentum::new(&config),
            config,
        })
    }

    /// A driver for `n_params` parameters in `groups` (see [`Groups::resolve`]).
    pub fn with_groups(config: LcamConfig, n_params: usize, groups: &[ParamGroup]) -> Result<Self> {
        let config = config.validate()?;
        let groups = Groups::resolve(&config, n_params, groups)?;
        Ok(Self {
            base_lrs: lrs(&groups),
            groups,
            controller: PhasedMomentum::new(&config),
            config,
        })
    }

    /// Replaces the groups over `n_params` parameters (see [`Groups::resolve`]), keeping the
    /// configuration and the controller: only before the first step. `holds_state`: the
    /// adapter already holds momentum buffers (e.g. loaded from a state file), which also
    /// refuses. Errors: [`LcamError::InvalidGroup`] naming the (first) group.
    pub fn regroup(
        &mut self,
        n_params: usize,
        groups: &[ParamGroup],
        holds_state: bool,
    ) -> Result<()> {
        if holds_state
            || self.controller.epoch_stats().steps > 0
            || self.controller.phase().is_some()
        {
            return Err(group_err(
                groups.first().map_or("", |g| g.name.as_str()),
                "groups are set before the first step".into(),
            ));
        }
        self.groups = Groups::resolve(&self.config, n_params, groups)?;
        self.base_lrs = lrs(&self.groups);
        Ok(())
    }

    /// A driver continuing from saved parts (a state file): the configuration, the groups (as
    /// saved; `None` for a one-group state of before groups existed) and the controller state.
    pub fn from_parts(
        config: LcamConfig,
        groups: Option<Groups>,
        n_params: usize,
        controller: ControllerState,
    ) -> Result<Self> {
        let config = config.validate()?;
        let groups = match groups {
            Some(g) => {
                g.validate(&config, n_params)?;
                g
            }
            None => Groups::single(&config, n_params),
        };
        Ok(Self {
            controller: PhasedMomentum::from_state(&config, controller)?,
            base_lrs: lrs(&groups),
            groups,
            config,
        })
    }

    /// One LCAM step (the sequence in the module documentation): `loss` is the batch's
    /// mean-reduced loss, observed after `kernel` applied the update with the momentum in force.
    /// On any error nothing has changed.
    pub fn step<K: StepKernel>(
        &mut self,
        loss: f64,
        kernel: &mut K,
    ) -> std::result::Result<StepReport, K::Error> {
        self.controller.check_loss(loss)?;
        let momentum = self.controller.momentum();
        let params = self.groups.step_params(momentum);
        kernel.apply(&params)?;
        let phase = self.controller.observe(loss)?;
        Ok(StepReport {
            momentum,
            lr: params[0].lr,
            phase,
        })
    }

    /// Checks that a step would accept `loss`, changing nothing.
    pub fn check_loss(&self, loss: f64) -> Result<()> {
        self.controller.check_loss(loss)
    }

    /// Starts a new epoch: the controller's running mean is reset, its last decision carried
    /// over. While the current epoch has observed no loss this is a no-op, so a loop may call it
    /// at the top of every epoch (the first included, and again after a restore at an epoch
    /// boundary).
    pub fn start_epoch(&mut self) {
        if self.controller.epoch_stats().steps > 0 {
            self.controller.start_epoch();
        }
    }

    /// Sets the learning rate of every group (a schedule's job). An invalid rate is
    /// [`LcamError::InvalidConfig`] (field `lr`) and changes nothing.
    pub fn set_lr(&mut self, lr: f64) -> Result<()> {
        check_lr("lr", lr)?;
        self.config.lr = lr;
        for o in &mut self.groups.options {
            o.lr = lr;
        }
        Ok(())
    }

    /// Every group back to the rate it was configured with (its own, else the
    /// configuration's; for a restored state, the rates saved with it).
    pub fn reset_lr(&mut self) {
        for (o, &lr) in self.groups.options.iter_mut().zip(&self.base_lrs) {
            o.lr = lr;
        }
        if self.groups.is_single() {
            self.config.lr = self.base_lrs[0];
        }
    }

    /// Sets the learning rate of group `group` (an index into [`Groups::names`]).
    pub fn set_group_lr(&mut self, group: usize, lr: f64) -> Result<()> {
        let Some(name) = self.groups.names.get(group) else {
            return Err(group_err(
                &format!("#{group}"),
                format!("no such group ({} groups)", self.groups.len()),
            ));
        };
        check_lr("lr", lr).map_err(|e| group_err(name, e.to_string()))?;
        self.groups.options[group].lr = lr;
        if self.groups.is_single() {
            self.config.lr = lr;
        }
        Ok(())
    }

    /// Replaces the controller's state (restoring a checkpoint).
    pub fn restore_controller(&mut self, state: ControllerState) -> Result<()> {
        self.controller = PhasedMomentum::from_state(&self.config, state)?;
        Ok(())
    }

    /// The configuration (its `lr` is the last rate [`Driver::set_lr`] gave every group).
    pub fn config(&self) -> &LcamConfig {
        &self.config
    }

    /// The parameter groups.
    pub fn groups(&self) -> &Groups {
        &self.groups
    }

    /// The phase controller.
    pub fn controller(&self) -> &PhasedMomentum {
        &self.controller
    }

    /// The momentum the next step will use.
    pub fn momentum(&self) -> f64 {
        self.controller.momentum()
    }

    /// The last phase decision (`None` before any loss was observed).
    pub fn phase(&self) -> Option<Phase> {
        self.controller.phase()
    }

    /// Diagnostics of the current epoch.
    pub fn epoch_stats(&self) -> EpochStats {
        self.controller.epoch_stats()
    }

    /// The first group's current learning rate.
    pub fn lr(&self) -> f64 {
        self.groups.options[0].lr
    }
}
