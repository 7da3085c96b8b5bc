//! [`replay`]: a trace (`lcam-trace/1`) replayed with the tch optimizer.

use lcam_core::{DType, GroupBuilder, Phase, ReplayTarget, Trace, Trajectory};
use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};
use crate::optimizer::{Group, Lcam};

fn to_tensor(shape: &[usize], data: &[f64], kind: Kind, device: Device) -> Result<Tensor> {
    let shape = shape
        .iter()
        .map(|&d| i64::try_from(d))
        .collect::<Result<Vec<i64>, _>>()
        .map_err(|_| tch::TchError::Shape(format!("shape {shape:?} does not fit i64")))?;
    // f64 → f32 rounds to nearest, as lcam-core's replay and PyTorch do.
    Ok(Tensor::f_from_slice(data)?
        .f_reshape(shape)?
        .f_to_kind(kind)?
        .f_to_device(device)?)
}

/// Replays `trace` with [`Lcam`] on `device` (`f32` traces as `Kind::Float`, `f64` as
/// `Kind::Double`), exactly as lcam-core's reference replay does: a step whose epoch differs
/// from the previous step's starts a new epoch, each step sets its learning rate, a `null`
/// gradient skips the tensor. Returns the final parameters (widened to f64), the momentum used
/// at each step and the phase decided after each step, ready for [`Trajectory::compare`].
///
/// ```no_run
/// let text = std::fs::read_to_string("fixtures/golden/quadratic_f32_cifar10.trace.json")?;
/// let trace = lcam_core::Trace::from_json(&text)?;
/// let got = lcam_tch::replay(&trace, tch::Device::Cpu)?;
/// println!("{}", got.to_json_pretty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn replay(trace: &Trace, device: Device) -> Result<Trajectory, Error> {
    trace.replay_with(|trace| Target::new(trace, device))
}

/// [`Lcam`] over tch tensors as a replay target of lcam-core's [`Trace::replay_with`].
struct Target {
    opt: Lcam,
    params: Vec<Tensor>,
    shapes: Vec<Vec<usize>>,
    kind: Kind,
    device: Device,
}

impl Target {
    fn new(trace: &Trace, device: Device) -> Result<Self> {
        let kind = match trace.dtype {
            DType::F32 => Kind::Float,
            DType::F64 => Kind::Double,
        };
        let params = trace
            .params
            .iter()
            .map(|p| to_tensor(&p.shape, &p.data, kind, device))
            .collect::<Result<Vec<_>>>()?;
        // Trace names need not be unique: build without the name check (names only matter to
        // state files, which a replay does not write).
        let opt = Lcam::unchecked(
            trace
                .params
                .iter()
                .zip(&params)
                .map(|(p, t)| (p.name.clone(), t.shallow_clone()))
                .collect(),
            trace.config,
        )?;
        let opt = if trace.groups.is_empty() {
            opt
        } else {
            let groups = trace
                .groups
                .iter()
                .map(|g| Group::indices(&g.name, g.params.iter().copied()).with_options_of(g))
                .collect();
            opt.with_groups(groups)?
        };
        Ok(Self {
            opt,
            params,
            shapes: trace.params.iter().map(|p| p.shape.clone()).collect(),
            kind,
            device,
        })
    }
}

impl ReplayTarget for Target {
    type Error = Error;
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
            .map(|(g, shape)| {
                g.as_ref()
                    .map(|g| to_tensor(shape, g, self.kind, self.device))
                    .transpose()
            })
            .collect::<Result<Vec<_>>>()?;
        let r = self.opt.step_with_grads(&grads, loss)?;
        Ok((r.momentum, r.phase))
    }
    fn params(&mut self) -> Result<Vec<Vec<f64>>> {
        self.params
            .iter()
            .map(|t| {
                let flat = t
                    .f_detach()?
                    .f_to_device(Device::Cpu)?
                    .f_to_kind(Kind::Double)?
                    .f_reshape([-1])?;
                Ok(Vec::<f64>::try_from(&flat)?)
            })
            .collect()
    }
}
