//! [`Lcam`]: the LCAM optimizer over tch tensors.

use std::collections::HashSet;

use lcam_core::{
    Driver, EpochStats, GroupBuilder, Groups, LcamConfig, LcamError, ParamGroup, Phase,
    PhasedMomentum, StepKernel, StepParams, StepReport, sgd_update,
};
use tch::{Device, Kind, Tensor, nn};

use crate::error::{Error, Result};
use crate::kernel::TchTensor;

/// The batch loss passed to [`Lcam::step`]: a scalar tensor (as returned by a mean-reduced loss
/// function, on any device) or a plain number.
///
/// Built implicitly through `From`: `opt.step(&loss)` or `opt.step(loss_value)`.
#[derive(Debug, Clone, Copy)]
pub enum Loss<'a> {
    /// A tensor with exactly one element (any shape such as `[]` or `[1]`, any dtype, any
    /// device); its value is read as `f64` like PyTorch's `loss.item()`.
    Tensor(&'a Tensor),
    /// The loss as a number.
    Value(f64),
}

impl<'a> From<&'a Tensor> for Loss<'a> {
    fn from(t: &'a Tensor) -> Self {
        Loss::Tensor(t)
    }
}

impl From<f64> for Loss<'_> {
    fn from(v: f64) -> Self {
        Loss::Value(v)
    }
}

impl From<f32> for Loss<'_> {
    fn from(v: f32) -> Self {
        Loss::Value(f64::from(v))
    }
}

impl Loss<'_> {
    /// The loss as `f64`; a tensor with other than one element is [`Error::NonScalarLoss`].
    pub fn value(&self) -> Result<f64> {
        match *self {
            Loss::Value(v) => Ok(v),
            Loss::Tensor(t) => {
                if !t.defined() {
                    return Err(tensor_err("loss", "the tensor is undefined".into()));
                }
                let shape = t.size();
                if shape.iter().product::<i64>() != 1 {
                    return Err(Error::NonScalarLoss { shape });
                }
                Ok(t.f_detach()?
                    .f_reshape([] as [i64; 0])?
                    .f_double_value(&[])?)
            }
        }
    }
}

/// One parameter as the optimizer holds it: a shallow clone (sharing storage) of the user's
/// tensor, and its momentum buffer.
pub(crate) struct Slot {
    pub(crate) name: String,
    pub(crate) param: TchTensor,
    pub(crate) buffer: Option<TchTensor>,
}

/// LCAM for tch: SGD with momentum (PyTorch `torch.optim.SGD` semantics) whose momentum is set
/// before every step by lcam-core's [`PhasedMomentum`] from the batch losses of the epoch.
///
/// The update of every parameter with a gradient and the phase rule are written out once, in
/// lcam-core: [`lcam_core::sgd_update`] (SPEC §1) and [`PhasedMomentum`] (SPEC §2).
///
/// The optimizer holds shallow clones of the parameters (the update is in place, under
/// `no_grad`) and one momentum buffer per parameter, created on its first step on the
/// parameter's device with its dtype; a buffer follows its parameter if the parameter is later
/// moved or cast. Parameters without a gradient are skipped (value and buffer untouched).
///
/// The step sequence (loss check, step parameters, update, phase decision) is lcam-core's
/// [`Driver`]; this type is that driver plus the tch kernel. Parameter groups ([`Group`]) give
/// parameters their own learning rate, weight decay, dampening or Nesterov — all switching
/// momentum together.
pub struct Lcam {
    pub(crate) driver: Driver,
    pub(crate) slots: Vec<Slot>,
}

/// How a [`Group`] picks its parameters.
enum Select {
    Names(Vec<String>),
    Indices(Vec<usize>),
    Matching(Box<dyn Fn(&str) -> bool>),
}

/// A parameter group for [`Lcam::with_groups`]: parameters picked by name (explicitly, or by a
/// predicate over the `VarStore` paths), with options that override the configuration's.
/// Parameters no group picks keep the configuration's options (group `default`).
///
/// ```
/// # use tch::{nn, Device};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let vs = nn::VarStore::new(Device::Cpu);
/// let _net = nn::linear(vs.root() / "fc", 4, 2, Default::default());
/// use lcam_tch::GroupBuilder as _; // with_weight_decay, with_lr, ...
/// let opt = lcam_tch::Lcam::new(&vs, lcam_tch::LcamConfig::cifar10())?.with_groups(vec![
///     lcam_tch::Group::matching("no_decay", |name| name.ends_with(".bias")).with_weight_decay(0.0),
/// ])?;
/// assert_eq!(opt.groups().names(), ["no_decay", "default"]);
/// # Ok(()) }
/// ```
pub struct Group {
    select: Select,
    options: ParamGroup,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let select = match &self.select {
            Select::Names(n) => format!("names {n:?}"),
            Select::Indices(i) => format!("indices {i:?}"),
            Select::Matching(_) => "a predicate".into(),
        };
        f.debug_struct("Group")
            .field("select", &select)
            .field("options", &self.options)
            .finish()
    }
}

/// `with_lr`, `with_weight_decay`, `with_dampening`, `with_nesterov` (lcam-core's builders).
impl GroupBuilder for Group {
    fn options_mut(&mut self) -> &mut ParamGroup {
        &mut self.options
    }
}

impl Group {
    /// The parameters named `names` (every name must exist).
    pub fn names<S: Into<String>>(group: &str, names: impl IntoIterator<Item = S>) -> Self {
        Self {
            select: Select::Names(names.into_iter().map(Into::into).collect()),
            options: ParamGroup::new(group, Vec::new()),
        }
    }

    /// The parameters at these positions in the optimizer's order ([`Lcam::names`]).
    pub fn indices(group: &str, indices: impl IntoIterator<Item = usize>) -> Self {
        Self {
            select: Select::Indices(indices.into_iter().collect()),
            options: ParamGroup::new(group, Vec::new()),
        }
    }

    /// The parameters whose name satisfies `pred` (at least one must).
    pub fn matching(group: &str, pred: impl Fn(&str) -> bool + 'static) -> Self {
        Self {
            select: Select::Matching(Box::new(pred)),
            options: ParamGroup::new(group, Vec::new()),
        }
    }

    /// The core group over `names` (the optimizer's parameter names, in order).
    fn resolve(&self, names: &[&str]) -> Result<ParamGroup> {
        let params = match &self.select {
            Select::Names(wanted) => wanted
                .iter()
                .map(|w| {
                    names.iter().position(|n| n == w).ok_or_else(|| {
                        Error::Core(LcamError::InvalidGroup {
                            group: self.options.name.clone(),
                            message: format!("no parameter is named `{w}`"),
                        })
                    })
                })
                .collect::<Result<Vec<_>>>()?,
            Select::Indices(i) => i.clone(),
            Select::Matching(pred) => (0..names.len()).filter(|&i| pred(names[i])).collect(),
        };
        Ok(ParamGroup {
            params,
            ..self.options.clone()
        })
    }
}

/// The tch kernel of one step: checks, then the per-tensor update with each group's
/// parameters.
struct TchKernel<'a> {
    slots: &'a mut [Slot],
    grads: &'a [Option<Tensor>],
    group_of: &'a [usize],
}

impl StepKernel for TchKernel<'_> {
    type Error = Error;

    fn apply(&mut self, groups: &[StepParams]) -> Result<()> {
        if self.grads.len() != self.slots.len() {
            return Err(LcamError::CountMismatch {
                what: "gradients".into(),
                got: self.grads.len(),
                expected: self.slots.len(),
            }
            .into());
        }
        // Validate everything (and prepare buffers that must follow a moved or cast
        // parameter) before touching any tensor.
        let mut moved: Vec<Option<TchTensor>> = Vec::with_capacity(self.slots.len());
        for (s, g) in self.slots.iter().zip(self.grads) {
            let p = &s.param.0;
            let Some(g) = g else {
                moved.push(None);
                continue;
            };
            check_like(&s.name, "gradient", g, p)?;
            if g.is_sparse() {
                return Err(tensor_err(
                    &s.name,
                    "sparse gradients are not supported".into(),
                ));
            }
            moved.push(match &s.buffer {
                Some(b) if b.0.device() != p.device() || b.0.kind() != p.kind() => {
                    Some(TchTensor(b.0.f_to_device(p.device())?.f_to_kind(p.kind())?))
                }
                _ => None,
            });
        }
        tch::no_grad(|| {
            for (((s, g), m), &k) in self
                .slots
                .iter_mut()
                .zip(self.grads)
                .zip(moved)
                .zip(self.group_of)
            {
                if let Some(g) = g {
                    if m.is_some() {
                        s.buffer = m;
                    }
                    let g = TchTensor(g.detach());
                    sgd_update(&mut s.param, &g, &mut s.buffer, &groups[k]);
                }
            }
        });
        Ok(())
    }
}

impl std::fmt::Debug for Lcam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lcam")
            .field("config", self.driver.config())
            .field("groups", self.driver.groups())
            .field("controller", &self.driver.controller().state())
            .field(
                "params",
                &self
                    .slots
                    .iter()
                    .map(|s| (s.name.as_str(), s.param.0.size(), s.buffer.is_some()))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn tensor_err(tensor: &str, message: String) -> Error {
    Error::Tensor {
        tensor: tensor.to_string(),
        message,
    }
}

impl Lcam {
    /// An optimizer over the trainable variables of `vs` (those `nn::Sgd` would train, frozen
    /// or not), in the order of their names, after validating `config`.
    pub fn new(vs: &nn::VarStore, config: LcamConfig) -> Result<Self> {
        let vars = vs
            .variables_
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut named: Vec<(&String, &Tensor)> = vars.named_variables.iter().collect();
        named.sort_by(|a, b| a.0.cmp(b.0));
        // `trainable_variables` holds shallow clones without names: match them by storage.
        let mut taken = vec![false; named.len()];
        for var in &vars.trainable_variables {
            let t = &var.tensor;
            let found = named.iter().enumerate().position(|(i, (_, n))| {
                !taken[i]
                    && n.data_ptr() == t.data_ptr()
                    && n.size() == t.size()
                    && n.kind() == t.kind()
            });
            if let Some(i) = found {
                taken[i] = true;
            }
        }
        let params = named
            .iter()
            .zip(&taken)
            .filter(|(_, t)| **t)
            .map(|((name, t), _)| ((*name).clone(), t.shallow_clone()))
            .collect();
        drop(vars);
        Self::with_names(params, config)
    }

    /// An optimizer over a plain list of tensors, named `"0"`, `"1"`, … in errors and state
    /// files. The tensors' storage is shared: the optimizer updates them in place.
    pub fn from_tensors(params: Vec<Tensor>, config: LcamConfig) -> Result<Self> {
        Self::with_names(
            params
                .into_iter()
                .enumerate()
                .map(|(i, t)| (i.to_string(), t))
                .collect(),
            config,
        )
    }

    /// An optimizer over named tensors (names must be unique; they identify the tensors in
    /// errors and state files).
    pub fn with_names(params: Vec<(String, Tensor)>, config: LcamConfig) -> Result<Self> {
        let mut seen = HashSet::new();
        for (name, t) in &params {
            if !seen.insert(name.as_str()) {
                return Err(tensor_err(
                    name,
                    "the name is used by two parameters".into(),
                ));
            }
            if !t.defined() {
                return Err(tensor_err(name, "the tensor is undefined".into()));
            }
            if !t.is_floating_point() {
                return Err(tensor_err(
                    name,
                    format!("dtype {:?}, expected a floating-point dtype", t.kind()),
                ));
            }
        }
        Self::unchecked(params, config)
    }

    /// `params` without the name checks (a replay's trace names need not be unique).
    pub(crate) fn unchecked(params: Vec<(String, Tensor)>, config: LcamConfig) -> Result<Self> {
        Ok(Self {
            driver: Driver::new(config, params.len())?,
            slots: params
                .into_iter()
                .map(|(name, t)| Slot {
                    name,
                    param: TchTensor(t.shallow_clone()),
                    buffer: None,
                })
                .collect(),
        })
    }

    /// The optimizer with parameter groups (call it before the first step): each [`Group`]'s
    /// parameters take its options, the rest the configuration's (group `default`). Errors
    /// ([`LcamError::InvalidGroup`], naming the group and the parameter): a name no parameter
    /// has, a group that picks nothing, a parameter in two groups, an option out of range; a
    /// call after a step.
    pub fn with_groups(mut self, groups: Vec<Group>) -> Result<Self> {
        let names: Vec<&str> = self.slots.iter().map(|s| s.name.as_str()).collect();
        let resolved = groups
            .iter()
            .map(|g| g.resolve(&names))
            .collect::<Result<Vec<_>>>()?;
        let holds_state = self.slots.iter().any(|s| s.buffer.is_some());
        self.driver.regroup(names.len(), &resolved, holds_state)?;
        Ok(self)
    }

    /// The configuration (its `lr` is the current learning rate).
    pub fn config(&self) -> &LcamConfig {
        self.driver.config()
    }

    /// The parameter groups (one, `default`, unless [`Lcam::with_groups`] set others).
    pub fn groups(&self) -> &Groups {
        self.driver.groups()
    }

    /// The phase controller (lcam-core's, the only implementation of the rule).
    pub fn controller(&self) -> &PhasedMomentum {
        self.driver.controller()
    }

    /// The momentum the next step will use.
    pub fn momentum(&self) -> f64 {
        self.driver.momentum()
    }

    /// The last phase decision (`None` before any loss was observed).
    pub fn phase(&self) -> Option<Phase> {
        self.driver.phase()
    }

    /// Diagnostics of the current epoch: steps, steps below the mean, running mean loss.
    pub fn epoch_stats(&self) -> EpochStats {
        self.driver.epoch_stats()
    }

    /// Current learning rate (of the first group).
    pub fn lr(&self) -> f64 {
        self.driver.lr()
    }

    /// Sets the learning rate of every group for the following steps (a schedule's job). An
    /// invalid rate (NaN, negative, infinite) is an error and changes nothing.
    pub fn set_lr(&mut self, lr: f64) -> Result<()> {
        Ok(self.driver.set_lr(lr)?)
    }

    /// Every group back to its configured rate (lcam-core's [`Driver::reset_lr`]).
    pub fn reset_lr(&mut self) {
        self.driver.reset_lr();
    }

    /// Sets the learning rate of group `group` (an index into [`Groups::names`]).
    pub fn set_group_lr(&mut self, group: usize, lr: f64) -> Result<()> {
        Ok(self.driver.set_group_lr(group, lr)?)
    }

    /// Starts a new epoch: the running mean of the losses is reset, the last decision carries
    /// over. A no-op while the current epoch has observed no loss, so a loop may call it at the
    /// top of every epoch (lcam-core's [`Driver::start_epoch`]).
    pub fn start_epoch(&mut self) {
        self.driver.start_epoch();
    }

    /// The parameters' names, in the optimizer's order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.slots.iter().map(|s| s.name.as_str())
    }

    /// The parameters (shallow clones sharing storage with the caller's tensors), in order.
    pub fn params(&self) -> impl Iterator<Item = &Tensor> {
        self.slots.iter().map(|s| &s.param.0)
    }

    /// The momentum buffer of the parameter `name` (`None` before its first step, or when no
    /// parameter has that name).
    pub fn buffer(&self, name: &str) -> Option<&Tensor> {
        self.slots
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| s.buffer.as_ref())
            .map(|b| &b.0)
    }

    /// Zeroes the gradients of the parameters (like `zero_grad(set_to_none=False)`: a zeroed
    /// gradient is still a gradient, so the next step applies weight decay and momentum to it).
    pub fn zero_grad(&mut self) {
        for s in &mut self.slots {
            s.param.0.zero_grad();
        }
    }

    /// `zero_grad`, `loss.backward()`, then [`Lcam::step`] with that loss (as tch's
    /// `Optimizer::backward_step`).
    pub fn backward_step(&mut self, loss: &Tensor) -> Result<StepReport> {
        self.driver.check_loss(Loss::Tensor(loss).value()?)?;
        self.zero_grad();
        loss.f_backward()?;
        self.step(loss)
    }

    /// One step with the gradients accumulated in the parameters (`.grad()`, as after
    /// `loss.backward()`), then observes `loss` — the batch's mean-reduced loss, a required
    /// argument — to decide the next step's momentum.
    ///
    /// Errors, with nothing changed: a loss that is not a scalar ([`Error::NonScalarLoss`]) or
    /// not finite ([`lcam_core::LcamError::NonFiniteLoss`]), a gradient whose shape, dtype or
    /// device differs from its parameter's, or a sparse gradient.
    pub fn step<'a>(&mut self, loss: impl Into<Loss<'a>>) -> Result<StepReport> {
        let grads: Vec<Option<Tensor>> = self
            .slots
            .iter()
            .map(|s| {
                let g = s.param.0.grad();
                g.defined().then_some(g)
            })
            .collect();
        self.step_with_grads(&grads, loss)
    }

    /// One step with explicit gradients, one entry per parameter in the optimizer's order
    /// (`None`: that parameter is skipped, its value and buffer untouched). Same errors as
    /// [`Lcam::step`], plus a gradient count that differs from the parameter count.
    pub fn step_with_grads<'a>(
        &mut self,
        grads: &[Option<Tensor>],
        loss: impl Into<Loss<'a>>,
    ) -> Result<StepReport> {
        let loss = loss.into().value()?;
        let Self { driver, slots } = self;
        let group_of = driver.groups().of_param().to_vec();
        driver.step(
            loss,
            &mut TchKernel {
                slots,
                grads,
                group_of: &group_of,
            },
        )
    }
}

/// Checks that `t` (the `what` of parameter `name`) has `p`'s shape, dtype and device.
pub(crate) fn check_like(name: &str, what: &str, t: &Tensor, p: &Tensor) -> Result<()> {
    if t.size() != p.size() {
        return Err(tensor_err(
            name,
            format!(
                "{what} has shape {:?}, the parameter has {:?}",
                t.size(),
                p.size()
            ),
        ));
    }
    if t.kind() != p.kind() {
        return Err(tensor_err(
            name,
            format!(
                "{what} has dtype {:?}, the parameter has {:?}",
                t.kind(),
                p.kind()
            ),
        ));
    }
    if t.device() != p.device() {
        return Err(tensor_err(
            name,
            format!(
                "{what} is on {}, the parameter on {}",
                device_name(t.device()),
                device_name(p.device())
            ),
        ));
    }
    Ok(())
}

pub(crate) fn device_name(d: Device) -> String {
    match d {
        Device::Cpu => "cpu".into(),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}"),
    }
}

pub(crate) fn kind_name(k: Kind) -> String {
    format!("{k:?}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use lcam_core::UpdateTensor;

    #[test]
    fn dims_of_the_kernel_tensor() {
        let t = TchTensor(Tensor::zeros([2, 3], (Kind::Float, Device::Cpu)));
        assert_eq!(t.dims(), vec![2, 3]);
    }
}
