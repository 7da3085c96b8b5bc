//! The trace format (`lcam-trace/1`), its replay, and the trajectory format (`lcam-trajectory/1`).
//!
//! A trace records what an optimizer was fed — configuration, initial parameters, and per step
//! the epoch, learning rate, batch loss and gradients — so that any adapter can replay it and
//! every adapter's trajectory can be compared with the same golden fixtures:
//!
//! ```text
//! {"format":"lcam-trace/1", "dtype":"f32"|"f64",
//!  "config": {LcamConfig fields},
//!  "params": [{"name":"w","shape":[4,3],"data":[...row-major...]}, ...],
//!  "steps": [{"epoch":0, "lr":0.1, "loss":2.30, "grads":[[...row-major...] | null, ...]}, ...]}
//! ```
//!
//! An optional `"groups"` list (parameter groups: `{"name", "params": [indices], "lr"?,
//! "weight_decay"?, "dampening"?, "nesterov"?}`, see [`crate::ParamGroup`]) gives parameters
//! their own options; one phase controller drives them all.
//!
//! `lr` is optional and holds for its step only (default: every group's configured rate, which
//! is `config.lr` without groups); a step whose `epoch` differs from the previous step's
//! starts a new epoch before its loss is observed (epochs never decrease); `null` means no
//! gradient for that tensor on that step. A replay yields
//! `{"format":"lcam-trajectory/1", "params":[…], "momenta":[…], "phases":[…]}`: the final
//! parameters, the momentum in force at each step and the phase decided after each step.

use ndarray::{ArrayD, IxDyn};
use serde::{Deserialize, Serialize};

use crate::config::LcamConfig;
use crate::controller::Phase;
use crate::driver::{Groups, ParamGroup};
use crate::error::{LcamError, Result};
use crate::math::Scalar;
use crate::optimizer::Lcam;

/// Format tag of a trace.
pub const TRACE_FORMAT: &str = "lcam-trace/1";
/// Format tag of a trajectory.
pub const TRAJECTORY_FORMAT: &str = "lcam-trajectory/1";

/// Element type of a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    /// 32-bit floats.
    F32,
    /// 64-bit floats.
    F64,
}

impl DType {
    /// The relative tolerance an implementation must meet on a golden fixture of this dtype:
    /// 1e-6 for f32, 1e-12 for f64 (see [`Trajectory::compare`]).
    pub fn tolerance(self) -> f64 {
        match self {
            DType::F32 => 1e-6,
            DType::F64 => 1e-12,
        }
    }

    /// `"f32"` or `"f64"`.
    pub fn as_str(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
        }
    }
}

/// A named tensor as data. In a trace of dtype `f32`, every value is exactly representable as
/// an `f32` (it is the `f32` widened to `f64`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedTensor {
    /// The parameter's name.
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Row-major elements.
    pub data: Vec<f64>,
}

impl NamedTensor {
    /// The data as an ndarray of element type `F`.
    pub fn to_array<F: Scalar>(&self) -> Result<ArrayD<F>> {
        to_array(&self.shape, &self.data, &self.name)
    }

    /// A named tensor from an ndarray (widened to `f64`).
    pub fn from_array<F: Scalar>(name: &str, a: &ArrayD<F>) -> Self {
        Self {
            name: name.to_string(),
            shape: a.shape().to_vec(),
            data: a.iter().map(|v| v.as_f64()).collect(),
        }
    }
}

/// The number of elements of `shape`, `None` when it overflows `usize` (untrusted input).
pub(crate) fn shape_elements(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

/// [`shape_elements`] for an error message.
pub(crate) fn describe_elements(shape: &[usize]) -> String {
    shape_elements(shape).map_or_else(|| "more than usize::MAX".to_string(), |n| n.to_string())
}

fn to_array<F: Scalar>(shape: &[usize], data: &[f64], location: &str) -> Result<ArrayD<F>> {
    ArrayD::from_shape_vec(IxDyn(shape), data.iter().map(|&v| F::of_f64(v)).collect()).map_err(
        |_| LcamError::InvalidTrace {
            location: location.to_string(),
            message: format!(
                "{} elements, shape {shape:?} needs {}",
                data.len(),
                describe_elements(shape)
            ),
        },
    )
}

/// One recorded step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceStep {
    /// Epoch index; a change starts a new epoch.
    pub epoch: u64,
    /// Learning rate of this step (default: `config.lr`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    /// The batch loss observed after this step.
    pub loss: f64,
    /// One entry per parameter: its gradient (row-major) or `null`.
    pub grads: Vec<Option<Vec<f64>>>,
}

/// A step of a trace with the format's rules applied (see [`Trace::resolved_steps`]).
#[derive(Debug, Clone, Copy)]
pub struct ResolvedStep<'a> {
    /// 0-based index in `steps`.
    pub index: usize,
    /// This step's epoch differs from the previous step's: start a new epoch before it.
    pub starts_epoch: bool,
    /// The step's learning rate for every group; `None`: each group's configured rate (its
    /// own, else `config.lr`).
    pub lr: Option<f64>,
    /// The batch loss observed after the step.
    pub loss: f64,
    /// One entry per parameter: its gradient (row-major) or `None`.
    pub grads: &'a [Option<Vec<f64>>],
}

/// A validated `lcam-trace/1` document. Build it with [`Trace::from_json`] or [`Trace::new`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trace {
    /// Always [`TRACE_FORMAT`].
    pub format: String,
    /// Element type.
    pub dtype: DType,
    /// Optimizer configuration.
    pub config: LcamConfig,
    /// Initial parameters.
    pub params: Vec<NamedTensor>,
    /// The steps, in order.
    pub steps: Vec<TraceStep>,
    /// Parameter groups (indices into `params`; see [`Groups::resolve`]). Absent: one group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<ParamGroup>,
}

impl Trace {
    /// A trace from its parts, validated.
    pub fn new(
        dtype: DType,
        config: LcamConfig,
        params: Vec<NamedTensor>,
        steps: Vec<TraceStep>,
    ) -> Result<Self> {
        let t = Self {
            format: TRACE_FORMAT.to_string(),
            dtype,
            config,
            params,
            steps,
            groups: Vec::new(),
        };
        t.validate()?;
        Ok(t)
    }

    /// The trace with parameter groups, validated.
    pub fn with_groups(mut self, groups: Vec<ParamGroup>) -> Result<Self> {
        self.groups = groups;
        self.validate()?;
        Ok(self)
    }

    /// Parses and validates a trace. Errors name the offending location
    /// (`params[1].data`, `steps[3].grads[0]`, `config.momentum_below`, …).
    pub fn from_json(text: &str) -> Result<Self> {
        // Check the tag and dtype first, so that a wrong document gets the clearest message.
        let raw: serde_json::Value = serde_json::from_str(text).map_err(|e| LcamError::Parse {
            what: "trace",
            message: e.to_string(),
        })?;
        let tag = raw.get("format").and_then(|v| v.as_str());
        if tag != Some(TRACE_FORMAT) {
            return Err(LcamError::InvalidTrace {
                location: "format".into(),
                message: format!(
                    "{}, expected \"{TRACE_FORMAT}\"",
                    raw.get("format")
                        .map_or("missing".to_string(), |v| v.to_string())
                ),
            });
        }
        let dtype = raw.get("dtype");
        if !matches!(dtype.and_then(|v| v.as_str()), Some("f32" | "f64")) {
            return Err(LcamError::InvalidTrace {
                location: "dtype".into(),
                message: format!(
                    "{}, expected \"f32\" or \"f64\"",
                    dtype.map_or("missing".to_string(), |v| v.to_string())
                ),
            });
        }
        let trace: Trace = serde_json::from_value(raw).map_err(|e| LcamError::Parse {
            what: "trace",
            message: e.to_string(),
        })?;
        trace.validate()?;
        Ok(trace)
    }

    /// Serialises the trace as JSON.
    pub fn to_json(&self) -> String {
        // A Trace holds only strings, numbers and lists: serialisation cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Checks every consistency rule of the format.
    pub fn validate(&self) -> Result<()> {
        let bad = |location: String, message: String| LcamError::InvalidTrace { location, message };
        if self.format != TRACE_FORMAT {
            return Err(bad(
                "format".into(),
                format!("\"{}\", expected \"{TRACE_FORMAT}\"", self.format),
            ));
        }
        self.config.validate().map_err(|e| match e {
            LcamError::InvalidConfig {
                field,
                value,
                expected,
            } => bad(
                format!("config.{field}"),
                format!("{value}, expected {expected}"),
            ),
            other => other,
        })?;
        Groups::resolve(&self.config, self.params.len(), &self.groups).map_err(|e| match e {
            LcamError::InvalidGroup { group, message } => {
                bad("groups".into(), format!("group `{group}`: {message}"))
            }
            other => other,
        })?;
        let lens: Vec<Option<usize>> = self
            .params
            .iter()
            .map(|p| shape_elements(&p.shape))
            .collect();
        for (i, p) in self.params.iter().enumerate() {
            if Some(p.data.len()) != lens[i] {
                return Err(bad(
                    format!("params[{i}].data (`{}`)", p.name),
                    format!(
                        "{} elements, shape {:?} needs {}",
                        p.data.len(),
                        p.shape,
                        describe_elements(&p.shape)
                    ),
                ));
            }
            self.check_values(&p.data, || format!("params[{i}].data (`{}`)", p.name))?;
        }
        let mut prev_epoch = None;
        for (s, step) in self.steps.iter().enumerate() {
            if let Some(lr) = step.lr
                && !(lr.is_finite() && lr >= 0.0)
            {
                return Err(bad(
                    format!("steps[{s}].lr"),
                    format!("{lr}, expected a finite value >= 0"),
                ));
            }
            if let Some(prev) = prev_epoch
                && step.epoch < prev
            {
                return Err(bad(
                    format!("steps[{s}].epoch"),
                    format!("{} after epoch {prev}: epochs never decrease", step.epoch),
                ));
            }
            prev_epoch = Some(step.epoch);
            if !step.loss.is_finite() {
                return Err(bad(
                    format!("steps[{s}].loss"),
                    format!("{}, expected a finite loss", step.loss),
                ));
            }
            if step.grads.len() != self.params.len() {
                return Err(bad(
                    format!("steps[{s}].grads"),
                    format!(
                        "{} entries, expected {} (one per parameter, null for none)",
                        step.grads.len(),
                        self.params.len()
                    ),
                ));
            }
            for (i, g) in step.grads.iter().enumerate() {
                if let Some(g) = g {
                    let loc = || format!("steps[{s}].grads[{i}] (`{}`)", self.params[i].name);
                    if Some(g.len()) != lens[i] {
                        return Err(bad(
                            loc(),
                            format!(
                                "{} elements, parameter shape {:?} needs {}",
                                g.len(),
                                self.params[i].shape,
                                describe_elements(&self.params[i].shape)
                            ),
                        ));
                    }
                    self.check_values(g, loc)?;
                }
            }
        }
        Ok(())
    }

    fn check_values(&self, data: &[f64], location: impl Fn() -> String) -> Result<()> {
        for (j, &v) in data.iter().enumerate() {
            let ok = match self.dtype {
                DType::F64 => v.is_finite(),
                DType::F32 => (v as f32).is_finite(),
            };
            if !ok {
                return Err(LcamError::InvalidTrace {
                    location: format!("{}[{j}]", location()),
                    message: format!("{v} is not a finite {}", self.dtype.as_str()),
                });
            }
        }
        Ok(())
    }

    /// The steps as an optimizer must take them: every adapter's replay walks these, so the
    /// format's rules (epoch boundaries, default lr) live here only.
    pub fn resolved_steps(&self) -> impl Iterator<Item = ResolvedStep<'_>> {
        let mut prev_epoch = None;
        self.steps.iter().enumerate().map(move |(index, step)| {
            let starts_epoch = prev_epoch.is_some_and(|e| e != step.epoch);
            prev_epoch = Some(step.epoch);
            ResolvedStep {
                index,
                starts_epoch,
                lr: step.lr,
                loss: step.loss,
                grads: &step.grads,
            }
        })
    }

    /// Replays the trace with the reference ndarray optimizer, in the trace's dtype.
    pub fn replay(&self) -> Result<Trajectory> {
        match self.dtype {
            DType::F32 => self.replay_with(CoreTarget::<f32>::new),
            DType::F64 => self.replay_with(CoreTarget::<f64>::new),
        }
    }

    /// The replay, once for every adapter: validates the trace, builds the adapter's target
    /// with `make` (which holds its own copy of `params`, in its dtype, with the trace's
    /// configuration and groups), walks [`Trace::resolved_steps`] — a new epoch where the epoch
    /// changes, the step's learning rate when it has one, the step — and collects the momentum
    /// used and the phase decided per step and the final parameters.
    pub fn replay_with<T: ReplayTarget>(
        &self,
        make: impl FnOnce(&Trace) -> std::result::Result<T, T::Error>,
    ) -> std::result::Result<Trajectory, T::Error> {
        self.validate()?;
        let mut target = make(self)?;
        let mut momenta = Vec::with_capacity(self.steps.len());
        let mut phases = Vec::with_capacity(self.steps.len());
        for step in self.resolved_steps() {
            if step.starts_epoch {
                target.start_epoch()?;
            }
            // The format's rule: a step's `lr` holds for that step only; without one, every
            // group runs at its configured rate (its own, else `config.lr`).
            match step.lr {
                Some(lr) => target.set_lr(lr)?,
                None => target.reset_lr()?,
            }
            let (momentum, phase) = target.step(step.index, step.grads, step.loss)?;
            momenta.push(momentum);
            phases.push(phase);
        }
        let finals = target.params()?;
        if finals.len() != self.params.len() {
            return Err(LcamError::CountMismatch {
                what: "replayed parameters".into(),
                got: finals.len(),
                expected: self.params.len(),
            }
            .into());
        }
        Ok(Trajectory {
            format: TRAJECTORY_FORMAT.to_string(),
            params: self
                .params
                .iter()
                .zip(finals)
                .map(|(p, data)| NamedTensor {
                    name: p.name.clone(),
                    shape: p.shape.clone(),
                    data,
                })
                .collect(),
            momenta,
            phases,
        })
    }
}

/// An adapter's side of [`Trace::replay_with`]: an optimizer with its own copy of the trace's
/// parameters. Each adapter's implementation is a thin binding (upload, step, download).
pub trait ReplayTarget {
    /// The adapter's error type.
    type Error: From<LcamError>;
    /// Starts a new epoch.
    fn start_epoch(&mut self) -> std::result::Result<(), Self::Error>;
    /// Sets the learning rate of every group.
    fn set_lr(&mut self, lr: f64) -> std::result::Result<(), Self::Error>;
    /// Every group back to its configured rate (the group's own, else the configuration's).
    fn reset_lr(&mut self) -> std::result::Result<(), Self::Error>;
    /// Step `index` with these gradients (row-major as in the trace; `None`: no gradient) and
    /// this loss; returns the momentum the step used and the phase decided after it.
    fn step(
        &mut self,
        index: usize,
        grads: &[Option<Vec<f64>>],
        loss: f64,
    ) -> std::result::Result<(f64, Phase), Self::Error>;
    /// The parameters now, row-major, widened to f64, in the trace's order.
    fn params(&mut self) -> std::result::Result<Vec<Vec<f64>>, Self::Error>;
}

/// The reference optimizer ([`Lcam`] over ndarray) as a replay target.
struct CoreTarget<F: Scalar> {
    opt: Lcam<F>,
    params: Vec<ArrayD<F>>,
    shapes: Vec<(String, Vec<usize>)>,
}

impl<F: Scalar> CoreTarget<F> {
    fn new(trace: &Trace) -> Result<Self> {
        let params = trace
            .params
            .iter()
            .map(NamedTensor::to_array::<F>)
            .collect::<Result<Vec<_>>>()?;
        let shapes: Vec<Vec<usize>> = trace.params.iter().map(|p| p.shape.clone()).collect();
        Ok(Self {
            opt: Lcam::with_groups(trace.config, &shapes, &trace.groups)?,
            params,
            shapes: trace
                .params
                .iter()
                .map(|p| (p.name.clone(), p.shape.clone()))
                .collect(),
        })
    }
}

impl<F: Scalar> ReplayTarget for CoreTarget<F> {
    type Error = LcamError;
    fn start_epoch(&mut self) -> Result<()> {
        self.opt.start_epoch();
        Ok(())
    }
    fn set_lr(&mut self, lr: f64) -> Result<()> {
        self.opt.set_lr(lr)
    }
    fn reset_lr(&mut self) -> Result<()> {
        self.opt.reset_lr();
        Ok(())
    }
    fn step(&mut self, _: usize, grads: &[Option<Vec<f64>>], loss: f64) -> Result<(f64, Phase)> {
        let grads = grads
            .iter()
            .zip(&self.shapes)
            .map(|(g, (name, shape))| {
                g.as_ref()
                    .map(|g| to_array::<F>(shape, g, name))
                    .transpose()
            })
            .collect::<Result<Vec<_>>>()?;
        let r = self.opt.step(&mut self.params, &grads, loss)?;
        Ok((r.momentum, r.phase))
    }
    fn params(&mut self) -> Result<Vec<Vec<f64>>> {
        Ok(self
            .params
            .iter()
            .map(|a| a.iter().map(|v| v.as_f64()).collect())
            .collect())
    }
}

/// The result of replaying a trace (`lcam-trajectory/1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trajectory {
    /// Always [`TRAJECTORY_FORMAT`].
    pub format: String,
    /// Final parameters.
    pub params: Vec<NamedTensor>,
    /// The momentum in force at each step.
    pub momenta: Vec<f64>,
    /// The phase decided after each step.
    pub phases: Vec<Phase>,
}

/// How far a trajectory is from an expected one; see [`Trajectory::compare`].
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// Largest relative error over all parameter tensors: per tensor,
    /// `max|actual − expected| / max|expected|` (0 when both are all zero).
    pub max_rel_err: f64,
    /// The tensor with the largest error.
    pub worst_tensor: String,
    /// Momenta and phases agree exactly, and names and shapes match.
    pub structure_matches: bool,
    /// First structural difference, if any.
    pub mismatch: Option<String>,
}

impl Comparison {
    /// Structure matches and `max_rel_err ≤ tol`.
    pub fn passes(&self, tol: f64) -> bool {
        self.structure_matches && self.max_rel_err <= tol
    }
}

impl Trajectory {
    /// Parses a trajectory document.
    pub fn from_json(text: &str) -> Result<Self> {
        let t: Trajectory = serde_json::from_str(text).map_err(|e| LcamError::Parse {
            what: "trajectory",
            message: e.to_string(),
        })?;
        if t.format != TRAJECTORY_FORMAT {
            return Err(LcamError::InvalidTrace {
                location: "format".into(),
                message: format!("\"{}\", expected \"{TRAJECTORY_FORMAT}\"", t.format),
            });
        }
        Ok(t)
    }

    /// Serialises as pretty JSON (floats printed shortest-round-trip).
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Compares with an expected trajectory (e.g. a PyTorch golden fixture).
    pub fn compare(&self, expected: &Trajectory) -> Comparison {
        let mut mismatch = None;
        if self.params.len() != expected.params.len() {
            mismatch = Some(format!(
                "{} parameter tensors, expected {}",
                self.params.len(),
                expected.params.len()
            ));
        } else if self.momenta != expected.momenta {
            let k = first_diff(&self.momenta, &expected.momenta);
            mismatch = Some(format!("momenta differ first at step {k}"));
        } else if self.phases != expected.phases {
            let k = first_diff(&self.phases, &expected.phases);
            mismatch = Some(format!("phases differ first at step {k}"));
        }
        let mut max_rel_err = 0.0_f64;
        let mut worst_tensor = String::new();
        for (a, e) in self.params.iter().zip(&expected.params) {
            if a.name != e.name || a.shape != e.shape || a.data.len() != e.data.len() {
                mismatch.get_or_insert_with(|| {
                    format!(
                        "tensor `{}` {:?} vs expected `{}` {:?}",
                        a.name, a.shape, e.name, e.shape
                    )
                });
                continue;
            }
            let scale = e.data.iter().fold(0.0_f64, |m, v| m.max(v.abs()));
            let diff = a
                .data
                .iter()
                .zip(&e.data)
                .fold(0.0_f64, |m, (x, y)| m.max((x - y).abs()));
            let rel = if diff == 0.0 {
                0.0
            } else if scale == 0.0 || diff.is_nan() {
                f64::INFINITY
            } else {
                diff / scale
            };
            if rel > max_rel_err || worst_tensor.is_empty() {
                max_rel_err = max_rel_err.max(rel);
                worst_tensor = a.name.clone();
            }
        }
        Comparison {
            max_rel_err,
            worst_tensor,
            structure_matches: mismatch.is_none(),
            mismatch,
        }
    }
}

fn first_diff<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()))
}

/// A golden fixture: a trace and the trajectory PyTorch produced for it
/// (`<name>.trace.json`, `<name>.expected.json`, listed in `manifest.json`).
#[derive(Debug, Clone)]
pub struct Fixture {
    /// Scenario name.
    pub name: String,
    /// What the optimizer is fed.
    pub trace: Trace,
    /// What PyTorch produced.
    pub expected: Trajectory,
}

impl Fixture {
    /// Compares `actual` with the expected trajectory at the dtype's tolerance; `Err` says why
    /// it fails.
    pub fn check(&self, actual: &Trajectory) -> std::result::Result<Comparison, String> {
        let c = actual.compare(&self.expected);
        let tol = self.trace.dtype.tolerance();
        if c.passes(tol) {
            Ok(c)
        } else {
            Err(format!(
                "{}: {} (max relative error {:.3e} in `{}`, tolerance {tol:e})",
                self.name,
                c.mismatch
                    .as_deref()
                    .unwrap_or("parameters out of tolerance"),
                c.max_rel_err,
                c.worst_tensor
            ))
        }
    }
}

impl Fixture {
    /// Bit equality with the expected trajectory: the same structure, momenta and phases, and
    /// every parameter element the same value bit for bit (`to_bits`; f32 trajectories are
    /// stored widened to f64, exactly). `Err` names the first differing element.
    pub fn check_bit_exact(&self, actual: &Trajectory) -> std::result::Result<(), String> {
        let c = actual.compare(&self.expected);
        if let Some(m) = c.mismatch {
            return Err(format!("{}: {m}", self.name));
        }
        for (a, e) in actual.params.iter().zip(&self.expected.params) {
            if let Some(i) = a
                .data
                .iter()
                .zip(&e.data)
                .position(|(x, y)| x.to_bits() != y.to_bits())
            {
                return Err(format!(
                    "{}: `{}`[{i}] is {:e}, PyTorch's is {:e} (not bit-exact)",
                    self.name, a.name, a.data[i], e.data[i]
                ));
            }
        }
        Ok(())
    }
}

/// Loads every fixture listed in `dir/manifest.json` (`{"scenarios":[{"name":…},…]}`).
pub fn load_fixtures(dir: &std::path::Path) -> Result<Vec<Fixture>> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).map_err(|e| LcamError::InvalidTrace {
            location: path.display().to_string(),
            message: e.to_string(),
        })
    };
    let manifest: serde_json::Value =
        serde_json::from_str(&read("manifest.json")?).map_err(|e| LcamError::Parse {
            what: "fixture manifest",
            message: e.to_string(),
        })?;
    let names = manifest["scenarios"]
        .as_array()
        .ok_or_else(|| LcamError::InvalidTrace {
            location: format!("{}/manifest.json: scenarios", dir.display()),
            message: "missing list".into(),
        })?;
    names
        .iter()
        .map(|s| {
            let name = s["name"].as_str().ok_or_else(|| LcamError::InvalidTrace {
                location: format!("{}/manifest.json: scenarios[].name", dir.display()),
                message: "missing".into(),
            })?;
            Ok(Fixture {
                name: name.to_string(),
                trace: Trace::from_json(&read(&format!("{name}.trace.json"))?)?,
                expected: Trajectory::from_json(&read(&format!("{name}.expected.json"))?)?,
            })
        })
        .collect()
}
