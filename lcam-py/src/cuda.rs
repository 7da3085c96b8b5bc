//! `CudaGroup`: lcam-cuda's fused kernels stepping one parameter group's CUDA tensors in place,
//! queued on torch's current CUDA stream (feature `cuda`).
//!
//! A [`CudaLcam`] owns the group's momentum buffers and a device-side controller; one step is
//! one multi-tensor launch plus a single-thread launch that reads the loss from device memory
//! and decides the next momentum — no host synchronisation. `lcam.torch` keeps one `CudaGroup`
//! per param group; every group observes the same loss at every step (and every
//! `start_epoch`), so their controllers stay identical: one phase for the whole optimizer.
//! A non-finite loss makes the device skip the whole step (parameters and buffers untouched)
//! and count it in `rejected_losses`; the host only learns it at the next read-back.
//!
//! # Safety argument
//!
//! [`CudaLcam::step_raw`] takes raw device addresses. `lcam.torch` passes `data_ptr()` of
//! contiguous f32/f64 tensors of the group's dtype on `cuda:ordinal` (checked in Python with
//! the element counts, which are checked again here against the shapes given at construction),
//! and keeps them referenced until the call returns; the kernels are queued on torch's current
//! stream — the stream the producers (backward, loss) ran on and on which torch's caching
//! allocator reuses freed memory, so the kernels see finished inputs and their inputs are not
//! recycled before they ran. Written memory (parameters) must be pairwise disjoint and not
//! overlap a gradient or the loss: checked here before anything is queued; the momentum
//! buffers are lcam-cuda's own allocations.
#![allow(unsafe_code)]

use lcam_core::{ControllerState, LcamConfig, LcamState, TensorData};
use lcam_cuda::cudarc::driver::CudaContext;
use lcam_cuda::cudarc::driver::sys::{CUdeviceptr, CUstream};
use lcam_cuda::{CudaLcam, KernelScalar, LcamCudaError};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::controller::{config, parse_phase, phase_str, state_dict};
use crate::core_err;
use crate::cpu::{Range, check_disjoint};

fn cuda_err(e: LcamCudaError) -> PyErr {
    match e {
        LcamCudaError::Core(e) => core_err(e),
        other => PyRuntimeError::new_err(format!("lcam-cuda: {other}")),
    }
}

#[derive(Debug)]
enum Inner {
    F32(CudaLcam<f32>),
    F64(CudaLcam<f64>),
}

/// `(lr, weight_decay, momentum_below, momentum_above, initial_momentum, dampening, nesterov)`.
type ConfigArgs = (f64, f64, f64, f64, f64, f64, bool);
/// What `CudaGroup.state()` returns: the controller dict and the buffers' bytes.
type StateOut<'py> = (Bound<'py, PyDict>, Vec<Option<Bound<'py, PyBytes>>>);
/// `(epoch, count, sum, steps_below, phase)`.
type ControllerArgs = (u64, u64, f64, u64, Option<String>);

/// lcam-cuda's `CudaLcam` over one param group's CUDA tensors (see the module documentation).
///
/// `CudaGroup(ordinal, stream, is_f64, shapes, config, controller, buffers)`: `stream` is
/// `torch.cuda.current_stream().cuda_stream`; `config` and `controller` as [`ConfigArgs`] and
/// [`ControllerArgs`]; `buffers[i]` is `None` or `(address, numel)` of a contiguous CPU copy of
/// tensor `i`'s momentum buffer in the group's dtype, copied during the call.
#[pyclass(module = "lcam._lcam", name = "CudaGroup", unsendable)]
#[derive(Debug)]
pub(crate) struct CudaGroup {
    inner: Inner,
    lens: Vec<usize>,
    f64: bool,
}

fn host_buffer<F: KernelScalar>(
    i: usize,
    b: Option<(usize, usize)>,
    shape: &[usize],
) -> PyResult<Option<TensorData<F>>> {
    let Some((addr, n)) = b else {
        return Ok(None);
    };
    let len: usize = shape.iter().product();
    if n != len {
        return Err(PyValueError::new_err(format!(
            "the momentum buffer of parameter {i} has {n} elements, the parameter {len}"
        )));
    }
    let data = if n == 0 {
        Vec::new()
    } else {
        if addr == 0 || !addr.is_multiple_of(std::mem::align_of::<F>()) {
            return Err(PyValueError::new_err(format!(
                "the momentum buffer of parameter {i}: address {addr:#x} null or unaligned"
            )));
        }
        // SAFETY: `lcam.torch` passes the address and element count of a contiguous CPU tensor
        // of dtype `F` it holds alive during this call (with the GIL held); it is only read.
        unsafe { std::slice::from_raw_parts(addr as *const F, n) }.to_vec()
    };
    Ok(Some(TensorData {
        shape: shape.to_vec(),
        data,
    }))
}

fn build<F: KernelScalar>(
    ordinal: usize,
    stream: usize,
    shapes: &[Vec<usize>],
    config: LcamConfig,
    controller: ControllerState,
    buffers: &[Option<(usize, usize)>],
) -> PyResult<CudaLcam<F>> {
    if buffers.len() != shapes.len() {
        return Err(PyValueError::new_err(format!(
            "{} buffers for {} parameters",
            buffers.len(),
            shapes.len()
        )));
    }
    let buffers = buffers
        .iter()
        .zip(shapes)
        .enumerate()
        .map(|(i, (&b, s))| host_buffer::<F>(i, b, s))
        .collect::<PyResult<Vec<_>>>()?;
    let state = LcamState {
        format: LcamState::<F>::FORMAT.to_string(),
        dtype: F::DTYPE.to_string(),
        config,
        controller,
        buffers,
        groups: None,
    };
    lcam_cuda::nvrtc::require_driver().map_err(cuda_err)?;
    let ctx = CudaContext::new(ordinal).map_err(|e| cuda_err(e.into()))?;
    // SAFETY: `stream` is torch's current stream on `cuda:ordinal`, a stream of the device's
    // primary context (which `CudaContext::new` retains, as torch does); torch keeps its
    // streams alive for the life of the process, and work is ordered by queueing on it.
    let stream = unsafe { ctx.wrap_borrowed_stream(stream as CUstream) };
    CudaLcam::from_state(stream, &state, shapes).map_err(cuda_err)
}

fn step_as<F: KernelScalar>(
    opt: &mut CudaLcam<F>,
    lr: f64,
    params: &[CUdeviceptr],
    grads: &[Option<CUdeviceptr>],
    loss: CUdeviceptr,
    loss_is_f64: bool,
) -> PyResult<()> {
    opt.set_lr(lr).map_err(cuda_err)?;
    // SAFETY: see the module documentation (addresses and lengths checked by the caller and
    // by `CudaGroup::step`, written memory disjoint, torch's current stream).
    let r = unsafe {
        if loss_is_f64 {
            opt.step_raw::<f64>(params, grads, loss)
        } else {
            opt.step_raw::<f32>(params, grads, loss)
        }
    };
    r.map_err(cuda_err)
}

fn controller_of<F: KernelScalar>(opt: &CudaLcam<F>) -> PyResult<LcamState<F>> {
    opt.state().map_err(cuda_err)
}

#[pymethods]
impl CudaGroup {
    #[new]
    fn new(
        ordinal: usize,
        stream: usize,
        is_f64: bool,
        shapes: Vec<Vec<usize>>,
        config_args: ConfigArgs,
        controller: ControllerArgs,
        buffers: Vec<Option<(usize, usize)>>,
    ) -> PyResult<Self> {
        let (lr, wd, below, above, initial, damp, nesterov) = config_args;
        let cfg = config(lr, wd, below, above, initial, damp, nesterov)?;
        let (epoch, count, sum, steps_below, phase) = controller;
        let ctl = ControllerState {
            epoch,
            count,
            sum,
            steps_below,
            phase: parse_phase(phase.as_deref())?,
        };
        let inner = if is_f64 {
            Inner::F64(build(ordinal, stream, &shapes, cfg, ctl, &buffers)?)
        } else {
            Inner::F32(build(ordinal, stream, &shapes, cfg, ctl, &buffers)?)
        };
        Ok(Self {
            inner,
            lens: shapes.iter().map(|s| s.iter().product()).collect(),
            f64: is_f64,
        })
    }

    /// `step(lr, params, grads, loss, loss_is_f64)`: queues one step. `params[i]` / `grads[i]`
    /// are the device addresses of tensor `i` and of its gradient (0: no gradient this step),
    /// `numels[i]` their element counts, `loss` the address of a one-element f32/f64 tensor.
    #[allow(clippy::too_many_arguments)]
    fn step(
        &mut self,
        lr: f64,
        params: Vec<u64>,
        grads: Vec<u64>,
        numels: Vec<usize>,
        loss: u64,
        loss_is_f64: bool,
    ) -> PyResult<()> {
        let n = self.lens.len();
        if params.len() != n || grads.len() != n || numels != self.lens {
            return Err(PyValueError::new_err(format!(
                "the param group changed: {n} tensors of {:?} elements expected",
                self.lens
            )));
        }
        if loss == 0 {
            return Err(PyValueError::new_err("the loss has no device address"));
        }
        let size = if self.f64 { 8 } else { 4 };
        let mut written = Vec::with_capacity(n);
        let mut read = Vec::with_capacity(n + 1);
        for (i, (&p, &g)) in params.iter().zip(&grads).enumerate() {
            let bytes = self.lens[i] * size;
            if g == 0 {
                continue;
            }
            if bytes > 0 && p == 0 {
                return Err(PyValueError::new_err(format!(
                    "parameter {i}: null address"
                )));
            }
            let (p, g) = (p as usize, g as usize);
            written.push(Range {
                start: p,
                end: p + bytes,
                what: format!("parameter {i}"),
            });
            read.push(Range {
                start: g,
                end: g + bytes,
                what: format!("the gradient of parameter {i}"),
            });
        }
        let l = loss as usize;
        read.push(Range {
            start: l,
            end: l + if loss_is_f64 { 8 } else { 4 },
            what: "the loss".into(),
        });
        check_disjoint(written, &read)?;
        let grads: Vec<Option<CUdeviceptr>> = grads
            .iter()
            .map(|&g| (g != 0).then_some(g as CUdeviceptr))
            .collect();
        let params: Vec<CUdeviceptr> = params.iter().map(|&p| p as CUdeviceptr).collect();
        match &mut self.inner {
            Inner::F32(o) => step_as(o, lr, &params, &grads, loss, loss_is_f64),
            Inner::F64(o) => step_as(o, lr, &params, &grads, loss, loss_is_f64),
        }
    }

    /// Queues the epoch reset (a no-op on the device while the epoch observed nothing).
    fn start_epoch(&mut self) -> PyResult<()> {
        match &mut self.inner {
            Inner::F32(o) => o.start_epoch(),
            Inner::F64(o) => o.start_epoch(),
        }
        .map_err(cuda_err)
    }

    /// `{"epoch", "steps", "steps_below", "mean_loss", "fraction_below", "momentum", "phase",
    /// "rejected_losses"}` read back from the device (synchronises with the stream).
    fn epoch_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = match &self.inner {
            Inner::F32(o) => o.diagnostics(),
            Inner::F64(o) => o.diagnostics(),
        }
        .map_err(cuda_err)?;
        let out = PyDict::new(py);
        out.set_item("epoch", d.epoch.epoch)?;
        out.set_item("steps", d.epoch.steps)?;
        out.set_item("steps_below", d.epoch.steps_below)?;
        out.set_item("mean_loss", d.epoch.mean_loss)?;
        out.set_item("fraction_below", d.epoch.fraction_below())?;
        out.set_item("momentum", d.momentum)?;
        out.set_item("phase", phase_str(d.phase))?;
        out.set_item("rejected_losses", d.rejected_losses)?;
        Ok(out)
    }

    /// `(controller, buffers)` read back from the device (synchronises): the controller state as
    /// `Controller.state()`, and per tensor `None` or its momentum buffer as native-endian bytes.
    fn state<'py>(&self, py: Python<'py>) -> PyResult<StateOut<'py>> {
        fn bytes<'py, F: KernelScalar>(
            py: Python<'py>,
            s: &LcamState<F>,
            to_bytes: fn(&F) -> Vec<u8>,
        ) -> Vec<Option<Bound<'py, PyBytes>>> {
            s.buffers
                .iter()
                .map(|b| {
                    b.as_ref().map(|b| {
                        let raw: Vec<u8> = b.data.iter().flat_map(to_bytes).collect();
                        PyBytes::new(py, &raw)
                    })
                })
                .collect()
        }
        match &self.inner {
            Inner::F32(o) => {
                let s = controller_of(o)?;
                Ok((
                    state_dict(py, &s.controller)?,
                    bytes(py, &s, |v| v.to_ne_bytes().to_vec()),
                ))
            }
            Inner::F64(o) => {
                let s = controller_of(o)?;
                Ok((
                    state_dict(py, &s.controller)?,
                    bytes(py, &s, |v| v.to_ne_bytes().to_vec()),
                ))
            }
        }
    }
}
