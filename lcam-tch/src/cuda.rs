//! [`CudaStep`]: lcam-cuda's fused kernels stepping tch CUDA tensors in place (feature `cuda`).
//!
//! [`Lcam::step`] updates each parameter with a handful of libtorch ops and reads the loss on
//! the host to decide the next momentum (one device synchronisation per step, as the authors'
//! demo with its `loss.item()`). [`CudaStep`] hands the same parameters to lcam-cuda's
//! [`CudaLcam`]: one multi-tensor kernel for the update (SPEC §1) and one single-thread kernel
//! that reads the loss from device memory and decides the momentum (SPEC §2), both queued
//! behind libtorch's backward pass on the same stream — no host synchronisation, no copy.
//!
//! ## Streams
//! tch never changes libtorch's current CUDA stream, which is then the device's legacy default
//! stream; [`CudaStep`] queues on cudarc's default stream of the same primary context — the
//! same stream. Gradients and the loss are produced before the step on that stream, and memory
//! libtorch's caching allocator reuses afterwards is reused on that stream, so the kernels see
//! finished inputs and nobody overwrites them before they ran. (Code that sets another current
//! stream through libtorch's C++ API must synchronise it with the default stream first.)
//!
//! ## State
//! The state lives on the device; [`CudaStep::sync_to`] copies it (buffers, controller,
//! learning rate) into an [`Lcam`] over the same parameters, whose [`Lcam::save`] writes the
//! usual `lcam-tch-state/1` file, and [`CudaStep::new`] starts from an [`Lcam`]'s state (fresh
//! or [`Lcam::load`]ed). A checkpoint is the same file whichever step wrote it.
//!
//! ```no_run
//! use tch::{nn, nn::Module, Device, Kind, Tensor};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let vs = nn::VarStore::new(Device::Cuda(0));
//! let net = nn::linear(vs.root(), 4, 1, Default::default());
//! let mut opt = lcam_tch::Lcam::new(&vs, lcam_tch::LcamConfig::cifar10())?;
//! let mut step = lcam_tch::CudaStep::new(&opt)?; // typed error without a GPU or NVRTC
//! let (x, y) = (Tensor::randn([8, 4], (Kind::Float, vs.device())), Tensor::zeros([8, 1], (Kind::Float, vs.device())));
//! for _epoch in 0..2 {
//!     step.start_epoch()?;
//!     let loss = net.forward(&x).mse_loss(&y, tch::Reduction::Mean);
//!     step.backward_step(&loss)?; // queued; the host does not wait
//! }
//! println!("{:?}", step.diagnostics()?); // one synchronisation, on request
//! step.sync_to(&mut opt)?;
//! opt.save("optimizer.lcam")?;
//! # Ok(()) }
//! ```
#![allow(unsafe_code)]

use lcam_core::EpochStats;
use lcam_cuda::cudarc::driver::sys::CUdeviceptr;
use lcam_cuda::{CudaLcam, Diagnostics};
use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};
use crate::optimizer::Lcam;

/// LCAM on tch CUDA tensors through lcam-cuda's fused kernels: f32 parameters, contiguous, on
/// one CUDA device. See the [module documentation](self) for streams and state.
pub struct CudaStep {
    inner: CudaLcam<f32>,
    names: Vec<String>,
    params: Vec<Tensor>,
    ordinal: usize,
}

impl std::fmt::Debug for CudaStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaStep")
            .field("device", &self.ordinal)
            .field("params", &self.names.len())
            .field("config", self.inner.config())
            .finish_non_exhaustive()
    }
}

fn tensor_err(tensor: &str, message: String) -> Error {
    Error::Tensor {
        tensor: tensor.to_string(),
        message,
    }
}

/// The device address of a tensor that must be a contiguous f32/f64 tensor on `cuda:ordinal`.
fn address(name: &str, what: &str, t: &Tensor, ordinal: usize, kinds: &[Kind]) -> Result<u64> {
    if t.device() != Device::Cuda(ordinal) {
        return Err(tensor_err(
            name,
            format!("{what} on {:?}, expected cuda:{ordinal}", t.device()),
        ));
    }
    if !kinds.contains(&t.kind()) {
        return Err(tensor_err(
            name,
            format!("{what} has dtype {:?}, expected one of {kinds:?}", t.kind()),
        ));
    }
    if !t.is_contiguous() {
        return Err(tensor_err(
            name,
            format!("{what} is not contiguous (strides {:?})", t.stride()),
        ));
    }
    Ok(t.data_ptr() as usize as u64)
}

impl CudaStep {
    /// Takes `opt`'s parameters, configuration (with its current learning rate), parameter
    /// groups (at most [`lcam_cuda::MAX_GROUPS`]), controller and momentum buffers onto the GPU. Every parameter must be a contiguous f32 tensor on one
    /// CUDA device ([`Error::Tensor`] names the first that is not — checked before the driver
    /// is touched); a missing driver or NVRTC is [`Error::Cuda`].
    pub fn new(opt: &Lcam) -> Result<Self> {
        let mut names = Vec::new();
        let mut params = Vec::new();
        let mut shapes = Vec::new();
        let mut ordinal = None;
        for (name, p) in opt.names().zip(opt.params()) {
            let Device::Cuda(n) = p.device() else {
                return Err(tensor_err(
                    name,
                    format!("on {:?}: the CUDA step needs CUDA tensors", p.device()),
                ));
            };
            let n = *ordinal.get_or_insert(n);
            address(name, "the parameter", p, n, &[Kind::Float])?;
            names.push(name.to_string());
            params.push(p.shallow_clone());
            shapes.push(p.size().iter().map(|&d| d as usize).collect::<Vec<_>>());
        }
        let ordinal = ordinal.unwrap_or(0);
        let state = opt.core_state::<f32>()?;
        let stream = lcam_cuda::default_stream(ordinal)?;
        let inner = CudaLcam::from_state(stream, &state, &shapes)?;
        Ok(Self {
            inner,
            names,
            params,
            ordinal,
        })
    }

    /// Copies the state (buffers, controller, learning rate) back into `opt`, which must be
    /// the optimizer this one was built from (or one over the same parameters). Synchronises
    /// with the device.
    pub fn sync_to(&self, opt: &mut Lcam) -> Result<()> {
        opt.load_core_state(&self.inner.state()?)
    }

    /// The configuration (its `lr` is the current learning rate).
    pub fn config(&self) -> &lcam_core::LcamConfig {
        self.inner.config()
    }

    /// Sets the learning rate of the following steps (a kernel argument: no transfer).
    pub fn set_lr(&mut self, lr: f64) -> Result<()> {
        self.inner.set_lr(lr)?;
        Ok(())
    }

    /// Starts a new epoch on the device (the running mean is reset; a no-op while the epoch
    /// observed nothing, so a loop may call it at the top of every epoch).
    pub fn start_epoch(&mut self) -> Result<()> {
        self.inner.start_epoch()?;
        Ok(())
    }

    /// Zeroes the gradients (in place, as [`Lcam::zero_grad`]).
    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.zero_grad();
        }
    }

    /// `zero_grad`, `loss.backward()`, then [`CudaStep::step`]: nothing waits for the GPU.
    pub fn backward_step(&mut self, loss: &Tensor) -> Result<()> {
        self.check_loss(loss)?;
        self.zero_grad();
        loss.f_backward()?;
        self.step(loss)
    }

    /// One step with the gradients in the parameters' `.grad()`, deciding the next momentum
    /// from `loss` (the batch's mean-reduced loss: a one-element f32/f64 CUDA tensor, read by
    /// the kernels, never by the host). Parameters without a gradient are skipped.
    ///
    /// A non-finite loss cannot be refused here (the host never sees it): the device skips
    /// the whole step and counts it in [`Diagnostics::rejected_losses`].
    pub fn step(&mut self, loss: &Tensor) -> Result<()> {
        let loss_ptr = self.check_loss(loss)?;
        let mut params = Vec::with_capacity(self.params.len());
        let mut grads = Vec::with_capacity(self.params.len());
        // Keeps the gradient handles alive until the kernels are queued.
        let mut held = Vec::with_capacity(self.params.len());
        for (name, p) in self.names.iter().zip(&self.params) {
            params.push(address(
                name,
                "the parameter",
                p,
                self.ordinal,
                &[Kind::Float],
            )?);
            let g = p.grad();
            if g.defined() {
                if g.size() != p.size() {
                    return Err(tensor_err(
                        name,
                        format!("gradient shape {:?}, expected {:?}", g.size(), p.size()),
                    ));
                }
                grads.push(Some(address(
                    name,
                    "the gradient",
                    &g,
                    self.ordinal,
                    &[Kind::Float],
                )?));
                held.push(g);
            } else {
                grads.push(None);
            }
        }
        let loss_is_f64 = loss.kind() == Kind::Double;
        // SAFETY: every address is the storage of a live, contiguous f32 tensor of its
        // parameter's length on `cuda:ordinal` (checked above); parameters are distinct
        // VarStore variables and never alias gradients or lcam-cuda's own buffers. The
        // tensors' producers (backward, loss) ran on libtorch's current stream, which is the
        // legacy default stream the kernels are queued on (module docs), and their memory is
        // only reused on that stream, after the kernels.
        unsafe {
            if loss_is_f64 {
                self.inner
                    .step_raw::<f64>(&params, &grads, loss_ptr as CUdeviceptr)?;
            } else {
                self.inner
                    .step_raw::<f32>(&params, &grads, loss_ptr as CUdeviceptr)?;
            }
        }
        drop(held);
        Ok(())
    }

    fn check_loss(&self, loss: &Tensor) -> Result<u64> {
        if loss.numel() != 1 {
            return Err(Error::NonScalarLoss { shape: loss.size() });
        }
        address(
            "loss",
            "the loss",
            loss,
            self.ordinal,
            &[Kind::Float, Kind::Double],
        )
    }

    /// The controller's view: momentum, last phase, this epoch's statistics, steps, rejected
    /// losses (synchronises with the device).
    pub fn diagnostics(&self) -> Result<Diagnostics> {
        Ok(self.inner.diagnostics()?)
    }

    /// This epoch's statistics, as [`Lcam::epoch_stats`] (synchronises with the device).
    pub fn epoch_stats(&self) -> Result<EpochStats> {
        Ok(self.diagnostics()?.epoch)
    }
}
