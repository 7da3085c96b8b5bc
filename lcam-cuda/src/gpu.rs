//! [`CudaLcam`]: the fused LCAM step on a GPU, through cudarc.
#![allow(unsafe_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cudarc::driver::sys::CUdeviceptr;
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, DevicePtrMut, LaunchConfig,
    PushKernelArg,
};
use lcam_core::{Driver, Groups, LcamConfig, LcamState, ParamGroup};

use crate::error::{LcamCudaError, Result};
use crate::layout::{
    DeviceController, Diagnostics, GroupScalars, KernelScalar, LaunchShape, LossScalar,
    StepPointers, TensorEntry, build_table, check_len, regrouped,
};
use crate::nvrtc;
use crate::state;

/// Device-to-host reads made by [`CudaLcam`] in this process.
static HOST_READS: AtomicU64 = AtomicU64::new(0);

/// How many device-to-host reads [`CudaLcam`] has made in this process so far — each one
/// waits for the stream, so it is a host synchronisation: one per [`CudaLcam::diagnostics`],
/// one per buffer (plus two) per [`CudaLcam::state`]. [`CudaLcam::step`] makes none; the GPU
/// check (`gpu_bench`) asserts that over a 100-step loop.
pub fn host_reads() -> u64 {
    HOST_READS.load(Ordering::Relaxed)
}

/// A device-to-host copy, counted by [`host_reads`].
fn read_back<T: cudarc::driver::DeviceRepr>(
    stream: &Arc<CudaStream>,
    src: &CudaSlice<T>,
) -> Result<Vec<T>> {
    HOST_READS.fetch_add(1, Ordering::Relaxed);
    Ok(stream.clone_dtoh(src)?)
}

/// The default stream of GPU `ordinal`, after checking that the driver library loads (a
/// typed [`LcamCudaError::LibraryMissing`] instead of cudarc's panic).
pub fn default_stream(ordinal: usize) -> Result<Arc<CudaStream>> {
    nvrtc::require_driver()?;
    Ok(CudaContext::new(ordinal)?.default_stream())
}

/// LCAM on a GPU: one multi-tensor kernel launch updates every parameter with a gradient
/// (SPEC §1, the momentum read from device memory), then a single-thread kernel reads the batch
/// loss from device memory and decides the next momentum (SPEC §2). The controller lives on the
/// device; a step never synchronises with the host. [`CudaLcam::diagnostics`] and
/// [`CudaLcam::state`] read back on request.
///
/// The configuration, the parameter groups and the learning rates are lcam-core's
/// [`Driver`]'s; each group's scalars travel by value in the step launch (at most
/// [`crate::MAX_GROUPS`] groups), the controller is the device's (the driver's stays unused).
/// The pointer table is copied to the device only when it changes (the first step, or when
/// the set of gradients or their addresses change).
///
/// ```no_run
/// use lcam_core::LcamConfig;
/// use lcam_cuda::CudaLcam;
///
/// let stream = lcam_cuda::default_stream(0)?; // typed error without a GPU
/// let mut params = vec![stream.clone_htod(&[1.0_f32, -2.0, 3.0])?];
/// let mut opt = CudaLcam::<f32>::new(stream.clone(), LcamConfig::cifar10(), &[vec![3]])?;
/// opt.start_epoch()?;
/// let grad = stream.clone_htod(&[0.5_f32, 0.5, 0.5])?;
/// let loss = stream.clone_htod(&[2.3_f32])?; // e.g. written by the loss kernel
/// opt.step(&mut params, &[Some(&grad)], &loss)?; // no host synchronisation
/// println!("{:?}", opt.diagnostics()?); // one synchronisation, on request
/// # Ok::<(), lcam_cuda::LcamCudaError>(())
/// ```
#[derive(Debug)]
pub struct CudaLcam<F: KernelScalar> {
    stream: Arc<CudaStream>,
    step_fn: CudaFunction,
    observe_fn: CudaFunction,
    epoch_fn: CudaFunction,
    /// Configuration, groups and learning rates (the phase is decided on the device).
    driver: Driver,
    /// Whether a step was queued or buffers were loaded (groups are set before).
    started: bool,
    shapes: Vec<Vec<usize>>,
    lens: Vec<usize>,
    buffers: Vec<CudaSlice<F>>,
    has_buf: CudaSlice<u32>,
    ctl: CudaSlice<DeviceController>,
    table: CudaSlice<TensorEntry>,
    uploaded: Option<Vec<TensorEntry>>,
    launch: LaunchShape,
}

impl<F: KernelScalar> CudaLcam<F> {
    /// An optimizer for parameters of `shapes` whose work is queued on `stream`: validates
    /// `config`, compiles the kernels with NVRTC for the device's architecture, and allocates
    /// the (zeroed) momentum buffers and the controller.
    pub fn new(stream: Arc<CudaStream>, config: LcamConfig, shapes: &[Vec<usize>]) -> Result<Self> {
        let driver = Driver::new(config, shapes.len())?;
        let config = *driver.config();
        let ctx = stream.context().clone();
        let (major, minor) = ctx.compute_capability()?;
        let arch = nvrtc::arch_for(major, minor).ok_or_else(|| LcamCudaError::Compile {
            arch: format!("compute capability {major}.{minor}"),
            message: "not supported by NVRTC 13 (7.5 and newer)".into(),
            log: String::new(),
        })?;
        let module = ctx.load_module(nvrtc::compile(arch)?)?;
        let lens: Vec<usize> = shapes.iter().map(|s| s.iter().product()).collect();
        let buffers = lens
            .iter()
            .map(|&n| stream.alloc_zeros::<F>(n.max(1)))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let ctl = stream.clone_htod(&[DeviceController::new(&config, None)?])?;
        Ok(Self {
            step_fn: module.load_function(F::STEP_KERNEL)?,
            observe_fn: module.load_function("lcam_observe")?,
            epoch_fn: module.load_function("lcam_start_epoch")?,
            has_buf: stream.alloc_zeros::<u32>(lens.len().max(1))?,
            table: stream.alloc_zeros::<TensorEntry>(lens.len().max(1))?,
            uploaded: None,
            buffers,
            ctl,
            driver,
            started: false,
            shapes: shapes.to_vec(),
            lens,
            launch: LaunchShape::default(),
            stream,
        })
    }

    /// Uses another grid/block/chunk shape.
    pub fn with_launch(mut self, launch: LaunchShape) -> Result<Self> {
        self.launch = launch.check()?;
        Ok(self)
    }

    /// The stream the optimizer queues its work on.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// The optimizer with parameter groups (before the first step): lcam-core's
    /// [`Driver::regroup`] — per-group learning rate, weight decay, dampening and Nesterov, one
    /// phase for all. At most [`crate::MAX_GROUPS`] groups, `default` included.
    pub fn with_groups(mut self, groups: &[ParamGroup]) -> Result<Self> {
        self.set_groups(groups)?;
        Ok(self)
    }

    /// Sets the parameter groups in place (before the first step), as
    /// [`Self::with_groups`]; on error nothing changes.
    pub fn set_groups(&mut self, groups: &[ParamGroup]) -> Result<()> {
        self.driver = regrouped(&self.driver, self.lens.len(), groups, self.started)?;
        Ok(())
    }

    /// The configuration (its `lr` is the current learning rate).
    pub fn config(&self) -> &LcamConfig {
        self.driver.config()
    }

    /// The parameter groups.
    pub fn groups(&self) -> &Groups {
        self.driver.groups()
    }

    /// Sets every group's learning rate for the following steps (a kernel argument: no
    /// transfer).
    pub fn set_lr(&mut self, lr: f64) -> Result<()> {
        Ok(self.driver.set_lr(lr)?)
    }

    /// Sets group `group`'s learning rate (an index into [`Groups::names`]).
    pub fn set_group_lr(&mut self, group: usize, lr: f64) -> Result<()> {
        Ok(self.driver.set_group_lr(group, lr)?)
    }

    /// Every group back to its configured learning rate.
    pub fn reset_lr(&mut self) {
        self.driver.reset_lr();
    }

    /// Queues the epoch-reset kernel (a no-op on the device while the epoch observed nothing).
    pub fn start_epoch(&mut self) -> Result<()> {
        let mut b = self.stream.launch_builder(&self.epoch_fn);
        b.arg(&mut self.ctl);
        // SAFETY: the kernel's one argument is the controller it was written for.
        unsafe { b.launch(single_thread()) }?;
        Ok(())
    }

    /// One step over parameters and gradients owned by cudarc. `loss` holds the batch loss in
    /// its first element (f32 or f64), typically written by the loss kernel: it is read by the
    /// kernels, never by the host. Counts and lengths are checked before anything is queued.
    pub fn step<L: LossScalar>(
        &mut self,
        params: &mut [CudaSlice<F>],
        grads: &[Option<&CudaSlice<F>>],
        loss: &CudaSlice<L>,
    ) -> Result<()> {
        let n = self.lens.len();
        if params.len() != n {
            return Err(LcamCudaError::CountMismatch {
                what: "parameters",
                got: params.len(),
                expected: n,
            });
        }
        if grads.len() != n {
            return Err(LcamCudaError::CountMismatch {
                what: "gradients",
                got: grads.len(),
                expected: n,
            });
        }
        // cudarc cannot allocate 0 elements: an empty tensor may come as any slice.
        for (i, p) in params.iter().enumerate() {
            if self.lens[i] > 0 {
                check_len(i, "parameter", p.len(), self.lens[i])?;
            }
        }
        for (i, g) in grads.iter().enumerate() {
            if let Some(g) = g
                && self.lens[i] > 0
            {
                check_len(i, "gradient", g.len(), self.lens[i])?;
            }
        }
        if loss.is_empty() {
            return Err(LcamCudaError::LengthMismatch {
                tensor: 0,
                what: "loss",
                got: 0,
                expected: 1,
            });
        }
        let stream = self.stream.clone();
        // The guards record the reads/writes on `stream` once the launches are queued.
        let mut guards = Vec::with_capacity(2 * n + 1);
        let mut param = Vec::with_capacity(n);
        for p in params.iter_mut() {
            let (ptr, g) = p.device_ptr_mut(&stream);
            param.push(ptr);
            guards.push(g);
        }
        let mut grad = Vec::with_capacity(n);
        for g in grads {
            grad.push(g.map(|g| {
                let (ptr, guard) = g.device_ptr(&stream);
                guards.push(guard);
                ptr
            }));
        }
        let (loss_ptr, guard) = loss.device_ptr(&stream);
        guards.push(guard);
        let result = self.queue(param, grad, loss_ptr, L::IS_F64);
        drop(guards);
        result
    }

    /// One step over device memory owned by someone else (e.g. tch CUDA tensors), stepped in
    /// place without copies: `params[i]` and `grads[i]` are device addresses of `F` arrays of
    /// the `i`-th shape's length, `loss` of one `L`. Null pointers and count mismatches are
    /// errors before anything is queued.
    ///
    /// # Safety
    /// Every address must be a live allocation in this optimizer's context of at least the
    /// tensor's length, parameters must not overlap each other, the gradients or the
    /// buffers, and the caller must order the producing work (the backward pass, the loss)
    /// before this optimizer's stream — e.g. by using the framework's stream (see
    /// `CudaContext::wrap_borrowed_stream`) — and keep the memory alive until the queued
    /// kernels have run.
    pub unsafe fn step_raw<L: LossScalar>(
        &mut self,
        params: &[CUdeviceptr],
        grads: &[Option<CUdeviceptr>],
        loss: CUdeviceptr,
    ) -> Result<()> {
        if loss == 0 {
            return Err(LcamCudaError::NullPointer {
                tensor: 0,
                what: "loss",
            });
        }
        self.queue(params.to_vec(), grads.to_vec(), loss, L::IS_F64)
    }

    fn queue(
        &mut self,
        param: Vec<u64>,
        grad: Vec<Option<u64>>,
        loss: u64,
        loss_is_f64: i32,
    ) -> Result<()> {
        let stream = self.stream.clone();
        let mut guards = Vec::with_capacity(self.buffers.len());
        let mut buf = Vec::with_capacity(self.buffers.len());
        for b in &mut self.buffers {
            let (ptr, g) = b.device_ptr_mut(&stream);
            buf.push(ptr);
            guards.push(g);
        }
        let ptrs = StepPointers { param, grad, buf };
        let groups = self.driver.groups();
        let (table, total_chunks) =
            build_table(&self.lens, groups.of_param(), &ptrs, self.launch.chunk)?;
        let scalars = GroupScalars::of(groups)?;
        if !table.is_empty() && self.uploaded.as_ref() != Some(&table) {
            stream.memcpy_htod(&table, &mut self.table)?;
            self.uploaded = Some(table.clone());
        }
        let n_tensors = table.len() as u64;
        if total_chunks > 0 {
            let cfg = LaunchConfig {
                grid_dim: (self.launch.grid(total_chunks), 1, 1),
                block_dim: (self.launch.block, 1, 1),
                shared_mem_bytes: 0,
            };
            let mut b = stream.launch_builder(&self.step_fn);
            b.arg(&self.table)
                .arg(&n_tensors)
                .arg(&total_chunks)
                .arg(&self.launch.chunk)
                .arg(&self.has_buf)
                .arg(&self.ctl)
                .arg(&loss)
                .arg(&loss_is_f64)
                .arg(&scalars);
            // SAFETY: the arguments match `lcam_step_{f32,f64}` in kernels/lcam.cu; the table's
            // addresses were checked (non-null, lengths) or vouched for by `step_raw`'s caller.
            unsafe { b.launch(cfg) }?;
        }
        let mut b = stream.launch_builder(&self.observe_fn);
        b.arg(&mut self.ctl)
            .arg(&self.table)
            .arg(&n_tensors)
            .arg(&mut self.has_buf)
            .arg(&loss)
            .arg(&loss_is_f64);
        // SAFETY: the arguments match `lcam_observe`; it reads `n_tensors` table entries.
        unsafe { b.launch(single_thread()) }?;
        drop(guards);
        self.started = true;
        Ok(())
    }

    /// Reads the controller back (synchronises with the stream).
    pub fn diagnostics(&self) -> Result<Diagnostics> {
        Ok(self.read_controller()?.diagnostics())
    }

    fn read_controller(&self) -> Result<DeviceController> {
        let v = read_back(&self.stream, &self.ctl)?;
        v.first().copied().ok_or(LcamCudaError::LengthMismatch {
            tensor: 0,
            what: "controller",
            got: 0,
            expected: 1,
        })
    }

    /// The full state (lcam-core's `lcam-state/1`), read back from the device.
    pub fn state(&self) -> Result<LcamState<F>> {
        let ctl = self.read_controller()?;
        let flags = read_back(&self.stream, &self.has_buf)?;
        let mut buffers = Vec::with_capacity(self.buffers.len());
        for (i, b) in self.buffers.iter().enumerate() {
            buffers.push(if flags.get(i).copied().unwrap_or(0) != 0 {
                let mut v = read_back(&self.stream, b)?;
                v.truncate(self.lens[i]);
                Some(v)
            } else {
                None
            });
        }
        Ok(state::save(
            self.driver.config(),
            self.driver.groups(),
            &ctl,
            &self.shapes,
            buffers,
        ))
    }

    /// Restores an optimizer on `stream` for parameters of `shapes` (validated as lcam-core
    /// does).
    pub fn from_state(
        stream: Arc<CudaStream>,
        state: &LcamState<F>,
        shapes: &[Vec<usize>],
    ) -> Result<Self> {
        let loaded = state::load(state, shapes)?;
        let mut opt = Self::new(stream.clone(), loaded.config, shapes)?;
        opt.driver = Driver::from_parts(
            loaded.config,
            loaded.groups,
            shapes.len(),
            loaded.controller.state(),
        )?;
        opt.started = loaded.buffers.iter().any(Option::is_some);
        let mut flags = vec![0u32; shapes.len().max(1)];
        for (i, b) in loaded.buffers.iter().enumerate() {
            if let Some(b) = b
                && !b.is_empty()
            {
                stream.memcpy_htod(b, &mut opt.buffers[i])?;
            }
            flags[i] = u32::from(b.is_some());
        }
        stream.memcpy_htod(&flags, &mut opt.has_buf)?;
        stream.memcpy_htod(&[loaded.controller], &mut opt.ctl)?;
        Ok(opt)
    }
}

fn single_thread() -> LaunchConfig {
    LaunchConfig {
        grid_dim: (1, 1, 1),
        block_dim: (1, 1, 1),
        shared_mem_bytes: 0,
    }
}
