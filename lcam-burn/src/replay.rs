//! [`replay`]: a `lcam-trace/1` document replayed with Burn, for `lcam replay --adapter burn`.

use burn::module::{Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{DType as BurnDType, Device, Tensor, TensorData};
use lcam_core::{DType, GroupBuilder, LcamError, Phase, ReplayTarget, Trace, Trajectory};

use crate::error::{LcamBurnError, Result};
use crate::optimizer::{BurnGroup, LcamOptimizer};

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
    trace.replay_with(|trace| Target::new(trace, device))
}

/// [`LcamOptimizer`] over a module of rank-1 parameters: lcam-core's [`ReplayTarget`].
struct Target {
    optim: LcamOptimizer,
    module: Vec<Param<Tensor<1>>>,
    ids: Vec<ParamId>,
    /// This step's rate for every group (`None`: each group's configured rate).
    lr: Option<f64>,
    dtype: DType,
    device: Device,
}

impl Target {
    fn new(trace: &Trace, device: &Device) -> Result<Self> {
        let burn_dtype = burn_dtype(trace.dtype);
        if !device.supports_dtype(burn_dtype) {
            return Err(replay_err(
                "dtype",
                format!("device {device:?} does not support {burn_dtype:?}"),
            ));
        }
        // The parameters flattened to rank 1 (the update is element-wise), one Param each, with
        // autodiff enabled as in training (Burn's optimizer requires it); gradients are plain
        // tensors, as `GradientsParams::from_grads` yields them.
        let module: Vec<Param<Tensor<1>>> = trace
            .params
            .iter()
            .map(|p| Param::from_tensor(tensor(&p.data, trace.dtype, device).autodiff()))
            .collect();
        let ids: Vec<ParamId> = module.iter().map(|p| p.id).collect();
        let mut optim = LcamOptimizer::new(trace.config)?;
        if !trace.groups.is_empty() {
            optim = optim.with_groups(
                trace
                    .groups
                    .iter()
                    .map(|g| {
                        BurnGroup::new(&g.name, g.params.iter().map(|&i| ids[i])).with_options_of(g)
                    })
                    .collect(),
            )?;
        }
        Ok(Self {
            ids,
            module,
            optim,
            lr: None,
            dtype: trace.dtype,
            device: device.clone(),
        })
    }
}

fn burn_dtype(dtype: DType) -> BurnDType {
    match dtype {
        DType::F32 => BurnDType::F32,
        DType::F64 => BurnDType::F64,
    }
}

fn tensor(data: &[f64], dtype: DType, device: &Device) -> Tensor<1> {
    let n = data.len();
    let data = match dtype {
        DType::F32 => TensorData::new(data.iter().map(|&v| v as f32).collect::<Vec<_>>(), [n]),
        DType::F64 => TensorData::new(data.to_vec(), [n]),
    };
    Tensor::from_data(data, (device, burn_dtype(dtype)))
}

impl ReplayTarget for Target {
    type Error = LcamBurnError;
    fn start_epoch(&mut self) -> Result<()> {
        self.optim.start_epoch();
        Ok(())
    }
    fn set_lr(&mut self, lr: f64) -> Result<()> {
        self.lr = Some(lr);
        Ok(())
    }
    fn reset_lr(&mut self) -> Result<()> {
        self.lr = None;
        self.optim.reset_lr();
        Ok(())
    }
    fn step(&mut self, s: usize, grads: &[Option<Vec<f64>>], loss: f64) -> Result<(f64, Phase)> {
        let mut g = GradientsParams::new();
        for (id, grad) in self.ids.iter().zip(grads) {
            if let Some(grad) = grad {
                g.register(*id, tensor(grad, self.dtype, &self.device));
            }
        }
        let momentum = self.optim.momentum();
        let module = std::mem::take(&mut self.module);
        // A step without a rate runs each group at its configured one (`step_grouped`).
        let stepped = match self.lr {
            Some(lr) => self.optim.step(lr, module, g, loss),
            None => self.optim.step_grouped(module, g, loss),
        };
        self.module = match stepped {
            Ok(m) => m,
            Err(e) => {
                self.module = e.module;
                return Err(match e.error {
                    LcamBurnError::Core(LcamError::NonFiniteLoss { .. }) => {
                        replay_err(format!("steps[{s}].loss"), e.error.to_string())
                    }
                    other => other,
                });
            }
        };
        let phase = self
            .optim
            .phase()
            .ok_or_else(|| replay_err(format!("steps[{s}]"), "no phase decided"))?;
        Ok((momentum, phase))
    }
    fn params(&mut self) -> Result<Vec<Vec<f64>>> {
        self.module
            .iter()
            .enumerate()
            .map(|(i, value)| {
                let data = value
                    .val()
                    .try_into_data()
                    .map_err(|e| replay_err(format!("params[{i}]"), format!("{e:?}")))?;
                Ok(data.iter::<f64>().collect())
            })
            .collect()
    }
}
