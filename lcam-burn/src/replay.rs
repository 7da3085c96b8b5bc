//! [`replay`]: a `lcam-trace/1` document replayed with Burn, for `lcam replay --adapter burn`.

use burn::module::{Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{DType as BurnDType, Device, Tensor, TensorData};
use lcam_core::trace::TRAJECTORY_FORMAT;
use lcam_core::{DType, LcamError, NamedTensor, Trace, Trajectory};

use crate::error::{LcamBurnError, Result};
use crate::optimizer::LcamOptimizer;

fn replay_err(location: impl Into<String>, message: impl Into<String>) -> LcamBurnError {
    LcamBurnError::Replay {
        location: location.into(),
        message: message.into(),
    }
}

/// Replays `trace` with [`LcamOptimizer`] on Burn's pure-Rust CPU backend (flex), in the
/// trace's dtype (f32 traces on f32 tensors, f64 traces on f64 tensors).
///
/// Each step goes through the whole Burn path — `ModuleOptimizer` over a module of parameters,
/// gradients in `GradientsParams` (an absent gradient is simply not registered) — with the
/// trace's per-step learning rate and an epoch started whenever the trace's epoch changes.
#[cfg(feature = "flex")]
pub fn replay(trace: &Trace) -> Result<Trajectory> {
    replay_on(trace, &Device::flex())
}

/// As [`replay`], on any Burn device that supports the trace's dtype.
pub fn replay_on(trace: &Trace, device: &Device) -> Result<Trajectory> {
    trace.validate()?;
    let dtype = match trace.dtype {
        DType::F32 => BurnDType::F32,
        DType::F64 => BurnDType::F64,
    };
    if !device.supports_dtype(dtype) {
        return Err(replay_err(
            "dtype",
            format!("device {device:?} does not support {dtype:?}"),
        ));
    }
    let tensor = |data: &[f64]| -> Tensor<1> {
        let n = data.len();
        let data = match trace.dtype {
            DType::F32 => TensorData::new(data.iter().map(|&v| v as f32).collect::<Vec<_>>(), [n]),
            DType::F64 => TensorData::new(data.to_vec(), [n]),
        };
        Tensor::from_data(data, (device, dtype))
    };
    // The parameters flattened to rank 1 (the update is element-wise), one Param each, with
    // autodiff enabled as in training (Burn's optimizer requires it); gradients are plain
    // tensors, as `GradientsParams::from_grads` yields them.
    let mut module: Vec<Param<Tensor<1>>> = trace
        .params
        .iter()
        .map(|p| Param::from_tensor(tensor(&p.data).autodiff()))
        .collect();
    let ids: Vec<ParamId> = module.iter().map(|p| p.id).collect();
    let mut optim = LcamOptimizer::new(trace.config)?;
    let mut momenta = Vec::with_capacity(trace.steps.len());
    let mut phases = Vec::with_capacity(trace.steps.len());
    for step in trace.resolved_steps() {
        let s = step.index;
        if step.starts_epoch {
            optim.start_epoch();
        }
        let mut grads = GradientsParams::new();
        for (id, g) in ids.iter().zip(step.grads) {
            if let Some(g) = g {
                grads.register(*id, tensor(g));
            }
        }
        momenta.push(optim.momentum());
        module = optim
            .step(step.lr, module, grads, step.loss)
            .map_err(|e| match e.error {
                LcamBurnError::Core(LcamError::NonFiniteLoss { .. }) => {
                    replay_err(format!("steps[{s}].loss"), e.error.to_string())
                }
                other => other,
            })?;
        phases.push(
            optim
                .phase()
                .ok_or_else(|| replay_err(format!("steps[{s}]"), "no phase decided"))?,
        );
    }
    let params = trace
        .params
        .iter()
        .zip(&module)
        .enumerate()
        .map(|(i, (p, value))| {
            let data = value
                .val()
                .try_into_data()
                .map_err(|e| replay_err(format!("params[{i}]"), format!("{e:?}")))?;
            let data = data.iter::<f64>().collect::<Vec<f64>>();
            Ok(NamedTensor {
                name: p.name.clone(),
                shape: p.shape.clone(),
                data,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Trajectory {
        format: TRAJECTORY_FORMAT.to_string(),
        params,
        momenta,
        phases,
    })
}
