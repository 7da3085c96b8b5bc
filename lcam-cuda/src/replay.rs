//! Replaying a `lcam-trace/1` document through the kernels: [`crate::replay`] on a GPU,
//! [`crate::replay_host`] on the host-emulated kernels. Both walk
//! [`lcam_core::Trace::resolved_steps`] as every adapter does, and read the controller back
//! after each step to record the momentum used and the phase decided (a replay wants them; a
//! training loop does not).

use lcam_core::trace::TRAJECTORY_FORMAT;
use lcam_core::{DType, LcamConfig, LcamError, NamedTensor, Trace, Trajectory};

use crate::error::{LcamCudaError, Result};
use crate::layout::{Diagnostics, KernelScalar};

/// What a replay needs from an optimizer and its memory.
pub(crate) trait Target<F: KernelScalar> {
    /// A tensor in the target's memory.
    type Tensor;
    fn upload(&mut self, data: &[F]) -> Result<Self::Tensor>;
    fn download(&mut self, t: &Self::Tensor) -> Result<Vec<F>>;
    fn start_epoch(&mut self) -> Result<()>;
    fn set_lr(&mut self, lr: f64) -> Result<()>;
    /// One step; `loss` is placed in the target's memory as an f64 first.
    fn step(
        &mut self,
        params: &mut [Self::Tensor],
        grads: &[Option<Self::Tensor>],
        loss: f64,
    ) -> Result<()>;
    fn diagnostics(&mut self) -> Result<Diagnostics>;
}

fn replay_err(location: String, message: String) -> LcamCudaError {
    LcamCudaError::Core(LcamError::InvalidTrace { location, message })
}

/// Replays `trace` in element type `F` on the target built by `make(config, shapes)`.
pub(crate) fn replay_on<F: KernelScalar, T: Target<F>>(
    trace: &Trace,
    make: impl FnOnce(LcamConfig, &[Vec<usize>]) -> Result<T>,
) -> Result<Trajectory> {
    trace.validate()?;
    let shapes: Vec<Vec<usize>> = trace.params.iter().map(|p| p.shape.clone()).collect();
    let mut target = make(trace.config, &shapes)?;
    let to_f = |data: &[f64]| -> Vec<F> { data.iter().map(|&v| F::of_f64(v)).collect() };
    let mut params = trace
        .params
        .iter()
        .map(|p| target.upload(&to_f(&p.data)))
        .collect::<Result<Vec<_>>>()?;
    let mut momenta = Vec::with_capacity(trace.steps.len());
    let mut phases = Vec::with_capacity(trace.steps.len());
    for step in trace.resolved_steps() {
        let s = step.index;
        if step.starts_epoch {
            target.start_epoch()?;
        }
        target.set_lr(step.lr)?;
        let grads = step
            .grads
            .iter()
            .map(|g| g.as_ref().map(|g| target.upload(&to_f(g))).transpose())
            .collect::<Result<Vec<_>>>()?;
        target.step(&mut params, &grads, step.loss)?;
        let d = target.diagnostics()?;
        if d.rejected_losses > 0 {
            return Err(replay_err(
                format!("steps[{s}].loss"),
                format!("{} rejected on the device", step.loss),
            ));
        }
        let (Some(momentum), Some(phase)) = (d.last_momentum, d.phase) else {
            return Err(replay_err(format!("steps[{s}]"), "no phase decided".into()));
        };
        momenta.push(momentum);
        phases.push(phase);
    }
    let params = trace
        .params
        .iter()
        .zip(&params)
        .map(|(p, t)| {
            Ok(NamedTensor {
                name: p.name.clone(),
                shape: p.shape.clone(),
                data: target
                    .download(t)?
                    .iter()
                    .take(p.data.len())
                    .map(|v| v.as_f64())
                    .collect(),
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

#[cfg(feature = "host-emulation")]
mod host {
    use super::*;
    use crate::emulated::HostLcam;

    impl<F: KernelScalar> Target<F> for HostLcam<F> {
        type Tensor = Vec<F>;
        fn upload(&mut self, data: &[F]) -> Result<Vec<F>> {
            Ok(data.to_vec())
        }
        fn download(&mut self, t: &Vec<F>) -> Result<Vec<F>> {
            Ok(t.clone())
        }
        fn start_epoch(&mut self) -> Result<()> {
            HostLcam::start_epoch(self);
            Ok(())
        }
        fn set_lr(&mut self, lr: f64) -> Result<()> {
            HostLcam::set_lr(self, lr)
        }
        fn step(
            &mut self,
            params: &mut [Vec<F>],
            grads: &[Option<Vec<F>>],
            loss: f64,
        ) -> Result<()> {
            let grads: Vec<Option<&[F]>> = grads.iter().map(|g| g.as_deref()).collect();
            HostLcam::step(self, params, &grads, &loss)
        }
        fn diagnostics(&mut self) -> Result<Diagnostics> {
            Ok(HostLcam::diagnostics(self))
        }
    }

    /// Replays `trace` on the host-compiled kernels ([`HostLcam`]) in the trace's dtype, with
    /// `launch` (tests pass small chunks). The result compares with PyTorch's golden
    /// trajectories at [`DType::tolerance`].
    pub fn replay_host_with(trace: &Trace, launch: crate::LaunchShape) -> Result<Trajectory> {
        fn run<F: KernelScalar>(trace: &Trace, launch: crate::LaunchShape) -> Result<Trajectory> {
            replay_on::<F, HostLcam<F>>(trace, |c, s| HostLcam::new(c, s)?.with_launch(launch))
        }
        match trace.dtype {
            DType::F32 => run::<f32>(trace, launch),
            DType::F64 => run::<f64>(trace, launch),
        }
    }

    /// [`replay_host_with`] with the default launch shape: what
    /// `lcam replay --adapter cuda-host` runs.
    pub fn replay_host(trace: &Trace) -> Result<Trajectory> {
        replay_host_with(trace, crate::LaunchShape::default())
    }
}

#[cfg(feature = "host-emulation")]
pub use host::{replay_host, replay_host_with};

mod gpu {
    use cudarc::driver::CudaSlice;

    use super::*;
    use crate::gpu::{CudaLcam, default_stream};

    impl<F: KernelScalar> Target<F> for CudaLcam<F> {
        type Tensor = CudaSlice<F>;
        fn upload(&mut self, data: &[F]) -> Result<CudaSlice<F>> {
            // cudarc cannot allocate 0 elements: keep one, unused.
            if data.is_empty() {
                return Ok(self.stream().alloc_zeros::<F>(1)?);
            }
            Ok(self.stream().clone_htod(data)?)
        }
        fn download(&mut self, t: &CudaSlice<F>) -> Result<Vec<F>> {
            Ok(self.stream().clone_dtoh(t)?)
        }
        fn start_epoch(&mut self) -> Result<()> {
            CudaLcam::start_epoch(self)
        }
        fn set_lr(&mut self, lr: f64) -> Result<()> {
            CudaLcam::set_lr(self, lr)
        }
        fn step(
            &mut self,
            params: &mut [CudaSlice<F>],
            grads: &[Option<CudaSlice<F>>],
            loss: f64,
        ) -> Result<()> {
            let loss = self.stream().clone_htod(&[loss])?;
            let grads: Vec<Option<&CudaSlice<F>>> = grads.iter().map(Option::as_ref).collect();
            CudaLcam::step(self, params, &grads, &loss)
        }
        fn diagnostics(&mut self) -> Result<Diagnostics> {
            CudaLcam::diagnostics(self)
        }
    }

    /// Replays `trace` on GPU `ordinal` with [`CudaLcam`] in the trace's dtype. Without a
    /// driver or NVRTC: [`LcamCudaError::LibraryMissing`], saying which library was looked for.
    pub fn replay(trace: &Trace, ordinal: usize) -> Result<Trajectory> {
        let stream = default_stream(ordinal)?;
        crate::nvrtc::require_nvrtc()?;
        fn run<F: KernelScalar>(
            trace: &Trace,
            stream: std::sync::Arc<cudarc::driver::CudaStream>,
        ) -> Result<Trajectory> {
            replay_on::<F, CudaLcam<F>>(trace, |c, s| CudaLcam::new(stream, c, s))
        }
        match trace.dtype {
            DType::F32 => run::<f32>(trace, stream),
            DType::F64 => run::<f64>(trace, stream),
        }
    }
}

pub use gpu::replay;
