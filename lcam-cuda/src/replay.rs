//! Replaying a `lcam-trace/1` document through the kernels: [`crate::replay`] on a GPU,
//! [`crate::replay_host`] on the host-emulated kernels. Both are lcam-core's one replay loop
//! ([`lcam_core::Trace::replay_with`]) over a [`Target`], which reads the controller back after
//! each step to record the momentum used and the phase decided (a replay wants them; a training
//! loop does not).

use lcam_core::{DType, LcamConfig, LcamError, ParamGroup, Phase, ReplayTarget, Trace, Trajectory};

use crate::error::{LcamCudaError, Result};
use crate::layout::{Diagnostics, KernelScalar};

/// What a replay needs from an optimizer and its memory.
pub(crate) trait Target<F: KernelScalar> {
    /// A tensor in the target's memory.
    type Tensor;
    fn upload(&mut self, data: &[F]) -> Result<Self::Tensor>;
    fn download(&mut self, t: &Self::Tensor) -> Result<Vec<F>>;
    fn start_epoch(&mut self) -> Result<()>;
    fn set_groups(&mut self, groups: &[ParamGroup]) -> Result<()>;
    fn set_lr(&mut self, lr: f64) -> Result<()>;
    fn reset_lr(&mut self) -> Result<()>;
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

/// A [`Target`] with the trace's parameters in its memory: lcam-core's [`ReplayTarget`].
struct Replayed<F: KernelScalar, T: Target<F>> {
    target: T,
    params: Vec<T::Tensor>,
    lens: Vec<usize>,
    _f: std::marker::PhantomData<F>,
}

fn to_f<F: KernelScalar>(data: &[f64]) -> Vec<F> {
    data.iter().map(|&v| F::of_f64(v)).collect()
}

impl<F: KernelScalar, T: Target<F>> ReplayTarget for Replayed<F, T> {
    type Error = LcamCudaError;
    fn start_epoch(&mut self) -> Result<()> {
        self.target.start_epoch()
    }
    fn set_lr(&mut self, lr: f64) -> Result<()> {
        self.target.set_lr(lr)
    }
    fn reset_lr(&mut self) -> Result<()> {
        self.target.reset_lr()
    }
    fn step(&mut self, s: usize, grads: &[Option<Vec<f64>>], loss: f64) -> Result<(f64, Phase)> {
        let grads = grads
            .iter()
            .map(|g| g.as_ref().map(|g| self.target.upload(&to_f(g))).transpose())
            .collect::<Result<Vec<_>>>()?;
        self.target.step(&mut self.params, &grads, loss)?;
        // A replay wants what each step used and decided; a training loop does not read them.
        let d = self.target.diagnostics()?;
        if d.rejected_losses > 0 {
            return Err(replay_err(
                format!("steps[{s}].loss"),
                format!("{loss} rejected on the device"),
            ));
        }
        let (Some(momentum), Some(phase)) = (d.last_momentum, d.phase) else {
            return Err(replay_err(format!("steps[{s}]"), "no phase decided".into()));
        };
        Ok((momentum, phase))
    }
    fn params(&mut self) -> Result<Vec<Vec<f64>>> {
        self.params
            .iter()
            .zip(&self.lens)
            .map(|(t, &n)| {
                Ok(self
                    .target
                    .download(t)?
                    .iter()
                    .take(n)
                    .map(|v| v.as_f64())
                    .collect())
            })
            .collect()
    }
}

/// Replays `trace` in element type `F` on the target built by `make(config, shapes)`, through
/// lcam-core's one replay loop ([`Trace::replay_with`]).
pub(crate) fn replay_on<F: KernelScalar, T: Target<F>>(
    trace: &Trace,
    make: impl FnOnce(LcamConfig, &[Vec<usize>]) -> Result<T>,
) -> Result<Trajectory> {
    trace.replay_with(|trace| {
        let shapes: Vec<Vec<usize>> = trace.params.iter().map(|p| p.shape.clone()).collect();
        let mut target = make(trace.config, &shapes)?;
        if !trace.groups.is_empty() {
            target.set_groups(&trace.groups)?;
        }
        let params = trace
            .params
            .iter()
            .map(|p| target.upload(&to_f(&p.data)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Replayed {
            target,
            params,
            lens: trace.params.iter().map(|p| p.data.len()).collect(),
            _f: std::marker::PhantomData,
        })
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
        fn set_groups(&mut self, groups: &[ParamGroup]) -> Result<()> {
            HostLcam::set_groups(self, groups)
        }
        fn set_lr(&mut self, lr: f64) -> Result<()> {
            HostLcam::set_lr(self, lr)
        }
        fn reset_lr(&mut self) -> Result<()> {
            HostLcam::reset_lr(self);
            Ok(())
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
        fn set_groups(&mut self, groups: &[ParamGroup]) -> Result<()> {
            CudaLcam::set_groups(self, groups)
        }
        fn set_lr(&mut self, lr: f64) -> Result<()> {
            CudaLcam::set_lr(self, lr)
        }
        fn reset_lr(&mut self) -> Result<()> {
            CudaLcam::reset_lr(self);
            Ok(())
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
