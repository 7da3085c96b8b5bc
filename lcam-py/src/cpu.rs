//! `cpu_step`: one LCAM step over CPU tensors, in place, through lcam-core.
//!
//! Python (`lcam/torch.py`) describes each tensor by its address, element count and dtype; this
//! module checks everything it can check about that memory, then runs lcam-core's update on it.
//!
//! # Safety argument
//!
//! The update builds `&mut [F]` / `&[F]` slices from addresses that come from Python. This is
//! sound when, for the duration of [`cpu_step`]:
//!
//! 1. every address is the start of a live allocation of at least `numel` elements of the
//!    stated dtype — `lcam.torch` passes `data_ptr()` and `numel()` of contiguous, strided,
//!    f32/f64 CPU tensors (checked in Python before the call: dtype, layout, device,
//!    contiguity, equal element counts of parameter, gradient and buffer) and holds references
//!    to all of them in local variables until the call returns;
//! 2. nothing else reads or writes that memory meanwhile — the GIL is held for the whole call
//!    (it is never released here), so no Python code runs that could free, resize or touch the
//!    tensors; as with torch's own in-place ops, C++ threads working on the same tensors at the
//!    same time would be a data race in torch too;
//! 3. no two slices overlap where one is mutable — checked here ([`check_disjoint`]):
//!    parameters and momentum buffers (written) are pairwise disjoint and no gradient (read)
//!    overlaps any of them; a violation (two parameters viewing the same storage, a gradient
//!    aliasing its parameter) is a `ValueError` before anything is written;
//! 4. addresses are non-null and aligned for the dtype and `numel · size` fits `isize` —
//!    checked here.
//!
//! Only Python's half of (1) is trusted, which is why the function is private to the package
//! (`lcam._lcam.cpu_step`, called by `lcam.torch.LCAM.step`).
#![allow(unsafe_code)]

use lcam_core::ndarray::Array1;
use lcam_core::{Scalar, StepParams, fused_update_slices, sgd_update};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use rayon::prelude::*;

use crate::controller::config;

/// One tensor of a step, as Python describes it: `(group, index, param address, gradient
/// address, buffer address (0: none), numel, is_f64, buffer_initialised)`.
type Entry = (usize, usize, usize, usize, usize, usize, bool, bool);

/// One group's hyper-parameters: `(lr, weight_decay, dampening, nesterov)`.
type Hyper = (f64, f64, f64, bool);

/// A step's tensors hold at least this many elements in total before they are spread over
/// rayon's pool (lcam-core's threshold for `sgd_update_all`).
const PARALLEL_MIN: usize = 1 << 15;

/// One tensor's update, checked.
#[derive(Debug, Clone, Copy)]
struct Job {
    group: usize,
    index: usize,
    param: usize,
    grad: usize,
    /// The momentum buffer (`None` when μ = 0: PyTorch leaves it untouched).
    buf: Option<usize>,
    /// The buffer is fresh memory: this is the tensor's first step (`b = g`).
    first: bool,
    len: usize,
    f64: bool,
    h: StepParams,
}

fn where_(group: usize, index: usize) -> String {
    format!("parameter {index} of param group {group}")
}

impl Job {
    fn new(e: Entry, groups: &[Hyper], momentum: f64) -> PyResult<Option<Self>> {
        let (group, index, param, grad, buf, len, f64_, initialised) = e;
        let Some(&(lr, weight_decay, dampening, nesterov)) = groups.get(group) else {
            return Err(PyValueError::new_err(format!(
                "{}: there are only {} param groups",
                where_(group, index),
                groups.len()
            )));
        };
        if len == 0 {
            return Ok(None);
        }
        let size = if f64_ { 8 } else { 4 };
        let bytes = len
            .checked_mul(size)
            .filter(|&b| b <= isize::MAX as usize)
            .ok_or_else(|| {
                PyValueError::new_err(format!("{}: {len} elements", where_(group, index)))
            })?;
        let check = |what: &str, addr: usize| -> PyResult<()> {
            if addr == 0 || !addr.is_multiple_of(size) || addr.checked_add(bytes).is_none() {
                return Err(PyValueError::new_err(format!(
                    "{}: {what} address {addr:#x} is null, unaligned or out of range",
                    where_(group, index)
                )));
            }
            Ok(())
        };
        check("the parameter's", param)?;
        check("the gradient's", grad)?;
        let buf = if momentum != 0.0 {
            check("the momentum buffer's", buf)?;
            Some(buf)
        } else {
            None
        };
        Ok(Some(Self {
            group,
            index,
            param,
            grad,
            buf,
            first: !initialised,
            len,
            f64: f64_,
            h: StepParams {
                lr,
                weight_decay,
                momentum,
                dampening,
                nesterov,
            },
        }))
    }

    fn bytes(&self) -> usize {
        self.len * if self.f64 { 8 } else { 4 }
    }

    fn run(&self) -> Result<(), String> {
        if self.f64 {
            self.run_as::<f64>()
        } else {
            self.run_as::<f32>()
        }
    }

    fn run_as<F: Scalar>(&self) -> Result<(), String> {
        // SAFETY: see the module documentation: live, aligned memory of `len` elements of `F`
        // (checked by `Job::new` and by the Python caller), not aliased by any other slice of
        // this step where one is mutable (`check_disjoint`), untouched by anyone else while
        // the GIL is held.
        let p = unsafe { std::slice::from_raw_parts_mut(self.param as *mut F, self.len) };
        // SAFETY: as above (read only; may overlap other gradients, never a written slice).
        let g = unsafe { std::slice::from_raw_parts(self.grad as *const F, self.len) };
        match self.buf {
            Some(b) => {
                // SAFETY: as above.
                let b = unsafe { std::slice::from_raw_parts_mut(b as *mut F, self.len) };
                if self.first {
                    first_step(p, g, b, &self.h)
                } else if fused_update_slices(p, g, Some(b), &self.h) {
                    Ok(())
                } else {
                    Err(self.failed())
                }
            }
            None if fused_update_slices(p, g, None, &self.h) => Ok(()),
            None => Err(self.failed()),
        }
    }

    fn failed(&self) -> String {
        format!(
            "{}: lcam-core's update refused the tensor (internal error)",
            where_(self.group, self.index)
        )
    }
}

/// A tensor's first step with μ ≠ 0: lcam-core's [`sgd_update`] without a buffer (which creates
/// it as a copy of the decayed gradient, SPEC §1), on copies of the data; results are written
/// back to the parameter and to the new buffer's memory.
fn first_step<F: Scalar>(p: &mut [F], g: &[F], b: &mut [F], h: &StepParams) -> Result<(), String> {
    let mut param = Array1::from(p.to_vec());
    let grad = Array1::from(g.to_vec());
    let mut buffer = None;
    sgd_update(&mut param, &grad, &mut buffer, h);
    let (Some(pv), Some(bv)) = (param.as_slice(), buffer.as_ref().and_then(|b| b.as_slice()))
    else {
        return Err("lcam-core's first step created no momentum buffer (internal error)".into());
    };
    p.copy_from_slice(pv);
    b.copy_from_slice(bv);
    Ok(())
}

/// A byte range of a step's memory and what it is, for the error message.
pub(crate) struct Range {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) what: String,
}

/// `written` ranges pairwise disjoint, and none of `read` overlapping a written one; the error
/// names both culprits. (Reads may overlap each other.)
pub(crate) fn check_disjoint(mut written: Vec<Range>, read: &[Range]) -> PyResult<()> {
    written.retain(|r| r.end > r.start);
    written.sort_by_key(|r| r.start);
    for w in written.windows(2) {
        if w[0].end > w[1].start {
            return Err(PyValueError::new_err(format!(
                "{} and {} share memory: LCAM updates tensors in place and needs them disjoint \
                 (clone one of them)",
                w[0].what, w[1].what
            )));
        }
    }
    // Disjoint and sorted by start: the ends are sorted too.
    for r in read.iter().filter(|r| r.end > r.start) {
        let k = written.partition_point(|w| w.end <= r.start);
        if let Some(w) = written.get(k)
            && w.start < r.end
        {
            return Err(PyValueError::new_err(format!(
                "{} shares memory with {}: it would change while being read",
                r.what, w.what
            )));
        }
    }
    Ok(())
}

/// The memory a step writes (parameters, buffers) and reads (gradients).
fn ranges(jobs: &[Job]) -> (Vec<Range>, Vec<Range>) {
    let mut written = Vec::with_capacity(2 * jobs.len());
    let mut read = Vec::with_capacity(jobs.len());
    for j in jobs {
        let n = j.bytes();
        let at = where_(j.group, j.index);
        written.push(Range {
            start: j.param,
            end: j.param + n,
            what: at.clone(),
        });
        if let Some(b) = j.buf {
            written.push(Range {
                start: b,
                end: b + n,
                what: format!("the momentum buffer of {at}"),
            });
        }
        read.push(Range {
            start: j.grad,
            end: j.grad + n,
            what: format!("the gradient of {at}"),
        });
    }
    (written, read)
}

/// `cpu_step(entries, groups, momentum)`: one LCAM update (SPEC §1) of every tensor in
/// `entries` (see [`Entry`]; entry `group` indexes `groups`, each `(lr, weight_decay,
/// dampening, nesterov)`), with the momentum `momentum` in force. Everything is checked before
/// the first element is written; a `ValueError` names the parameter and group. Does not touch
/// the controller: `lcam.torch` observes the loss afterwards.
///
/// Must only be called by `lcam.torch` (see the module's safety argument).
#[pyfunction]
pub(crate) fn cpu_step(entries: Vec<Entry>, groups: Vec<Hyper>, momentum: f64) -> PyResult<()> {
    for (i, &(lr, weight_decay, dampening, nesterov)) in groups.iter().enumerate() {
        config(
            lr,
            weight_decay,
            momentum,
            momentum,
            momentum,
            dampening,
            nesterov,
        )
        .map_err(|e| PyValueError::new_err(format!("param group {i}: {e}")))?;
    }
    let mut jobs = Vec::with_capacity(entries.len());
    for e in entries {
        if let Some(j) = Job::new(e, &groups, momentum)? {
            jobs.push(j);
        }
    }
    let (written, read) = ranges(&jobs);
    check_disjoint(written, &read)?;
    let total: usize = jobs.iter().map(|j| j.len).sum();
    let result = if total >= PARALLEL_MIN && jobs.len() > 1 {
        jobs.par_iter().try_for_each(Job::run)
    } else {
        jobs.iter().try_for_each(Job::run)
    };
    result.map_err(PyRuntimeError::new_err)
}
