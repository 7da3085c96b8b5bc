//! [`replay`]: a trace (`lcam-trace/1`) replayed with the tch optimizer.

use lcam_core::trace::TRAJECTORY_FORMAT;
use lcam_core::{DType, NamedTensor, Trace, Trajectory};
use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};
use crate::optimizer::Lcam;

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

fn to_named(name: &str, t: &Tensor) -> Result<NamedTensor> {
    let flat = t
        .f_detach()?
        .f_to_device(Device::Cpu)?
        .f_to_kind(Kind::Double)?
        .f_reshape([-1])?;
    Ok(NamedTensor {
        name: name.to_string(),
        shape: t
            .size()
            .iter()
            .map(|&d| usize::try_from(d).unwrap_or(0))
            .collect(),
        data: Vec::<f64>::try_from(&flat)?,
    })
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
    trace.validate()?;
    let kind = match trace.dtype {
        DType::F32 => Kind::Float,
        DType::F64 => Kind::Double,
    };
    let params = trace
        .params
        .iter()
        .map(|p| Ok((p.name.clone(), to_tensor(&p.shape, &p.data, kind, device)?)))
        .collect::<Result<Vec<_>>>()?;
    // Trace names need not be unique: build without the name check (names only matter to
    // state files, which a replay does not write).
    let mut opt = Lcam::unchecked(
        params
            .iter()
            .map(|(n, t)| (n.clone(), t.shallow_clone()))
            .collect(),
        trace.config.validate()?,
    );
    let mut momenta = Vec::with_capacity(trace.steps.len());
    let mut phases = Vec::with_capacity(trace.steps.len());
    for step in trace.resolved_steps() {
        if step.starts_epoch {
            opt.start_epoch();
        }
        opt.set_lr(step.lr)?;
        let grads = step
            .grads
            .iter()
            .zip(&trace.params)
            .map(|(g, p)| {
                g.as_ref()
                    .map(|g| to_tensor(&p.shape, g, kind, device))
                    .transpose()
            })
            .collect::<Result<Vec<_>>>()?;
        let report = opt.step_with_grads(&grads, step.loss)?;
        momenta.push(report.momentum);
        phases.push(report.phase);
    }
    Ok(Trajectory {
        format: TRAJECTORY_FORMAT.to_string(),
        params: params
            .iter()
            .map(|(n, t)| to_named(n, t))
            .collect::<Result<Vec<_>>>()?,
        momenta,
        phases,
    })
}
