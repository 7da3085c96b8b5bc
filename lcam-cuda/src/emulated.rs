//! The kernels of `kernels/lcam.cu`, compiled for the host (feature `host-emulation`) and run
//! over an emulated grid: every (block, thread) pair in turn, with `threadIdx`, `blockIdx`,
//! `blockDim` and `gridDim` set by the shim `kernels/host_shim.h`.
//!
//! [`HostLcam`] drives them exactly as [`crate::CudaLcam`] drives the GPU — the same pointer
//! table, the same device-side controller, the same launch sequence (step kernel, then the
//! single-thread controller kernel; the epoch-reset kernel) — with host memory standing in for
//! device memory. It is how this crate tests its kernels without a GPU, and what
//! `lcam replay --adapter cuda-host` runs.
//!
//! ```
//! use lcam_core::LcamConfig;
//! use lcam_cuda::emulated::HostLcam;
//!
//! let mut params = vec![vec![1.0_f32, -2.0, 3.0]];
//! let mut opt = HostLcam::<f32>::new(LcamConfig::cifar10(), &[vec![3]])?;
//! opt.start_epoch();
//! for loss in [2.0_f64, 1.0, 3.0] {
//!     let grad = params[0].clone();
//!     opt.step(&mut params, &[Some(&grad)], &loss)?;
//! }
//! let d = opt.diagnostics();
//! assert_eq!(d.epoch.steps, 3);
//! assert_eq!(d.momentum, 0.95); // 3.0 ≥ mean 2.0: above → μ_above of 0.9/0.95
//! # Ok::<(), lcam_cuda::LcamCudaError>(())
//! ```
#![allow(unsafe_code)]

use std::ffi::c_void;

use lcam_core::{Driver, Groups, LcamConfig, LcamState, ParamGroup};

use crate::error::Result;
use crate::layout::{
    DeviceController, Diagnostics, GroupScalars, KernelScalar, LaunchShape, LossScalar,
    StepPointers, TensorEntry, build_table, check_len, regrouped,
};
use crate::state;

type StepFn = unsafe extern "C" fn(
    u32,
    u32,
    *const TensorEntry,
    u64,
    u64,
    u64,
    *const u32,
    *const DeviceController,
    *const c_void,
    i32,
    GroupScalars,
);

unsafe extern "C" {
    fn lcam_emu_step_f32(
        grid: u32,
        block: u32,
        table: *const TensorEntry,
        n_tensors: u64,
        total_chunks: u64,
        chunk: u64,
        has_buf: *const u32,
        ctl: *const DeviceController,
        loss: *const c_void,
        loss_is_f64: i32,
        groups: GroupScalars,
    );
    fn lcam_emu_step_f64(
        grid: u32,
        block: u32,
        table: *const TensorEntry,
        n_tensors: u64,
        total_chunks: u64,
        chunk: u64,
        has_buf: *const u32,
        ctl: *const DeviceController,
        loss: *const c_void,
        loss_is_f64: i32,
        groups: GroupScalars,
    );
    fn lcam_emu_observe(
        ctl: *mut DeviceController,
        table: *const TensorEntry,
        n_tensors: u64,
        has_buf: *mut u32,
        loss: *const c_void,
        loss_is_f64: i32,
    );
    fn lcam_emu_start_epoch(ctl: *mut DeviceController);
    fn lcam_emu_sizeof_tensor() -> u64;
    fn lcam_emu_sizeof_controller() -> u64;
    fn lcam_emu_sizeof_groups() -> u64;
}

/// `sizeof(LcamTensor)`, `sizeof(LcamController)` and `sizeof(LcamGroups)` as the C++
/// compiler laid them out (the tests check them against the Rust mirrors).
pub fn c_struct_sizes() -> (usize, usize, usize) {
    // SAFETY: argument-less functions returning a constant.
    let (t, c, g) = unsafe {
        (
            lcam_emu_sizeof_tensor(),
            lcam_emu_sizeof_controller(),
            lcam_emu_sizeof_groups(),
        )
    };
    (t as usize, c as usize, g as usize)
}

fn step_fn<F: KernelScalar>() -> StepFn {
    if F::STEP_KERNEL == "lcam_step_f32" {
        lcam_emu_step_f32
    } else {
        lcam_emu_step_f64
    }
}

/// LCAM on the host-compiled CUDA kernels. Same semantics and API shape as
/// [`crate::CudaLcam`], with `Vec`s for device memory; parameters are flat (row-major).
#[derive(Debug, Clone)]
pub struct HostLcam<F: KernelScalar> {
    /// Configuration, groups and learning rates (the phase is decided by the kernels).
    driver: Driver,
    /// Whether a step ran or buffers were loaded (groups are set before).
    started: bool,
    shapes: Vec<Vec<usize>>,
    lens: Vec<usize>,
    buffers: Vec<Vec<F>>,
    has_buf: Vec<u32>,
    ctl: DeviceController,
    launch: LaunchShape,
}

impl<F: KernelScalar> HostLcam<F> {
    /// An optimizer for parameters of `shapes`, after validating `config`.
    pub fn new(config: LcamConfig, shapes: &[Vec<usize>]) -> Result<Self> {
        let driver = Driver::new(config, shapes.len())?;
        let lens: Vec<usize> = shapes.iter().map(|s| s.iter().product()).collect();
        Ok(Self {
            ctl: DeviceController::new(driver.config(), None)?,
            driver,
            started: false,
            buffers: lens.iter().map(|&n| vec![F::default(); n]).collect(),
            has_buf: vec![0; lens.len()],
            shapes: shapes.to_vec(),
            lens,
            launch: LaunchShape::default(),
        })
    }

    /// Uses another grid/block/chunk shape (tests use small chunks and grids to exercise the
    /// grid-stride and chunk loops).
    pub fn with_launch(mut self, launch: LaunchShape) -> Result<Self> {
        self.launch = launch.check()?;
        Ok(self)
    }

    /// The optimizer with parameter groups (before the first step), as
    /// [`crate::CudaLcam::with_groups`].
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

    /// Sets every group's learning rate for the following steps.
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

    /// Starts a new epoch (the epoch-reset kernel; a no-op while the epoch observed nothing).
    pub fn start_epoch(&mut self) {
        // SAFETY: `ctl` is a valid, exclusively borrowed controller.
        unsafe { lcam_emu_start_epoch(&mut self.ctl) }
    }

    /// One step: the multi-tensor kernel over every parameter with a gradient, then the
    /// controller kernel, which reads `loss` (as the GPU path reads it from device memory).
    /// Counts and lengths are checked first; nothing changes on error.
    pub fn step<L: LossScalar>(
        &mut self,
        params: &mut [Vec<F>],
        grads: &[Option<&[F]>],
        loss: &L,
    ) -> Result<()> {
        let n = self.lens.len();
        if params.len() != n {
            return Err(crate::LcamCudaError::CountMismatch {
                what: "parameters",
                got: params.len(),
                expected: n,
            });
        }
        for (i, p) in params.iter().enumerate() {
            check_len(i, "parameter", p.len(), self.lens[i])?;
        }
        if grads.len() != n {
            return Err(crate::LcamCudaError::CountMismatch {
                what: "gradients",
                got: grads.len(),
                expected: n,
            });
        }
        for (i, g) in grads.iter().enumerate() {
            if let Some(g) = g {
                check_len(i, "gradient", g.len(), self.lens[i])?;
            }
        }
        let ptrs = StepPointers {
            param: params.iter_mut().map(|p| p.as_mut_ptr() as u64).collect(),
            grad: grads.iter().map(|g| g.map(|g| g.as_ptr() as u64)).collect(),
            buf: self
                .buffers
                .iter_mut()
                .map(|b| b.as_mut_ptr() as u64)
                .collect(),
        };
        let groups = self.driver.groups();
        let (table, total_chunks) =
            build_table(&self.lens, groups.of_param(), &ptrs, self.launch.chunk)?;
        let scalars = GroupScalars::of(groups)?;
        let loss_ptr = (loss as *const L).cast::<c_void>();
        // SAFETY: every address in `table` points into a live, distinct allocation of `len`
        // elements of `F` (checked above), `params` and `self.buffers` are exclusively
        // borrowed and `grads` borrowed for the call; `loss` is a valid `L`.
        unsafe {
            step_fn::<F>()(
                self.launch.grid(total_chunks),
                self.launch.block,
                table.as_ptr(),
                table.len() as u64,
                total_chunks,
                self.launch.chunk,
                self.has_buf.as_ptr(),
                &self.ctl,
                loss_ptr,
                L::IS_F64,
                scalars,
            );
            lcam_emu_observe(
                &mut self.ctl,
                table.as_ptr(),
                table.len() as u64,
                self.has_buf.as_mut_ptr(),
                loss_ptr,
                L::IS_F64,
            );
        }
        self.started = true;
        Ok(())
    }

    /// The controller's diagnostics.
    pub fn diagnostics(&self) -> Diagnostics {
        self.ctl.diagnostics()
    }

    /// The momentum buffers (`None` for tensors without one yet).
    pub fn buffers(&self) -> Vec<Option<&[F]>> {
        self.buffers
            .iter()
            .zip(&self.has_buf)
            .map(|(b, &h)| (h != 0).then_some(b.as_slice()))
            .collect()
    }

    /// The full state (lcam-core's `lcam-state/1`).
    pub fn state(&self) -> LcamState<F> {
        let buffers = self
            .buffers()
            .into_iter()
            .map(|b| b.map(<[F]>::to_vec))
            .collect();
        state::save(
            self.driver.config(),
            self.driver.groups(),
            &self.ctl,
            &self.shapes,
            buffers,
        )
    }

    /// Restores an optimizer for parameters of `shapes` (validated as lcam-core does).
    pub fn from_state(state: &LcamState<F>, shapes: &[Vec<usize>]) -> Result<Self> {
        let loaded = state::load(state, shapes)?;
        let mut opt = Self::new(loaded.config, shapes)?;
        opt.driver = Driver::from_parts(
            loaded.config,
            loaded.groups,
            shapes.len(),
            loaded.controller.state(),
        )?;
        opt.ctl = loaded.controller;
        for (i, b) in loaded.buffers.into_iter().enumerate() {
            if let Some(b) = b {
                opt.buffers[i] = b;
                opt.has_buf[i] = 1;
                opt.started = true;
            }
        }
        Ok(opt)
    }
}
