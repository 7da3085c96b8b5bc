//! [`UpdateTensor`] for tch tensors: the four primitive operations that lcam-core's
//! [`sgd_update`](lcam_core::sgd_update) needs, as in-place libtorch ops.

use lcam_core::{StepParams, UpdateTensor, fused_update_slices};
use tch::{Device, Kind, Tensor};

/// A tch tensor seen by lcam-core's update kernel (a newtype: the orphan rule forbids
/// implementing lcam-core's trait for tch's type directly). In-place operations on it act on
/// the wrapped tensor's storage, so a shallow clone of a parameter updates the parameter.
///
/// The operations panic only where libtorch fails on tensors that the optimizer has already
/// checked (same shape, dtype and device), i.e. on out-of-memory.
#[derive(Debug)]
pub(crate) struct TchTensor(pub(crate) Tensor);

impl UpdateTensor for TchTensor {
    fn dims(&self) -> Vec<usize> {
        self.0
            .size()
            .iter()
            .map(|&d| usize::try_from(d).unwrap_or(0))
            .collect()
    }

    /// `torch.clone(t).detach()`.
    fn duplicate(&self) -> Self {
        TchTensor(self.0.detach().copy())
    }

    /// `self.add_(other, alpha=alpha)`.
    ///
    /// tch exposes `add_` without its `alpha` argument, and `add_(other * alpha)` rounds twice.
    /// `addcmul_(other, alpha_tensor)` (value 1) computes `self + 1·other·alpha` with the same
    /// rounding as PyTorch's `add(…, alpha=)` kernel: checked bit for bit against `torch.add`
    /// (torch 2.13 CPU, f32 and f64, 2 million elements of sizes 1…100 000, under each of the
    /// AVX512, AVX2 and DEFAULT CPU capabilities), by the golden fixtures and by the test
    /// against libtorch's own SGD. `alpha` is rounded to the tensor's dtype first, as PyTorch
    /// rounds a Python float.
    fn add_scaled(&mut self, other: &Self, alpha: f64) {
        let alpha = Tensor::scalar_tensor(alpha, (self.0.kind(), self.0.device()));
        let _ = self.0.addcmul_(&other.0, &alpha);
    }

    /// `self.mul_(alpha)`.
    fn scale(&mut self, alpha: f64) {
        let _ = self.0.g_mul_scalar_(alpha);
    }

    /// One pass over the storage of CPU tensors (f32/f64, contiguous, distinct storages) with
    /// lcam-core's [`fused_update_slices`]: 20 bytes per f32 parameter and no libtorch
    /// dispatch, instead of ≈ 8 dispatches and a temporary per tensor. Anything else (CUDA,
    /// other dtypes, strided views, the buffer-creating first step) takes the primitives.
    fn fused_update(&mut self, grad: &Self, buffer: &mut Option<Self>, h: &StepParams) -> bool {
        let (p, g) = (&self.0, &grad.0);
        let plain = |t: &Tensor| t.device() == Device::Cpu && t.is_contiguous() && !t.is_sparse();
        if !plain(p) || !plain(g) || p.kind() != g.kind() || p.numel() != g.numel() {
            return false;
        }
        let b = match buffer {
            Some(b) if plain(&b.0) && b.0.kind() == p.kind() && b.0.numel() == p.numel() => {
                Some(&b.0)
            }
            Some(_) => return false,
            None if h.momentum == 0.0 => None,
            None => return false,
        };
        let n = p.numel();
        let (pp, gp) = (p.data_ptr(), g.data_ptr());
        let bp = b.map(Tensor::data_ptr);
        if n == 0 {
            return true;
        }
        // Distinct storages only: the slices below must not alias.
        if pp == gp || bp.is_some_and(|b| b == pp || b == gp) || pp.is_null() || gp.is_null() {
            return false;
        }
        match p.kind() {
            Kind::Float => run::<f32>(pp, gp, bp, n, h),
            Kind::Double => run::<f64>(pp, gp, bp, n, h),
            _ => false,
        }
    }
}

/// The fused update over raw CPU storage.
#[allow(unsafe_code)]
fn run<F: lcam_core::Scalar>(
    p: *mut std::ffi::c_void,
    g: *mut std::ffi::c_void,
    b: Option<*mut std::ffi::c_void>,
    n: usize,
    h: &StepParams,
) -> bool {
    // SAFETY: `fused_update` checked that each pointer is the non-null data pointer of a
    // contiguous CPU tensor of `n` elements of `F`'s dtype, and that the three storages are
    // distinct (no aliasing between the mutable and shared slices). The tensors outlive this
    // call (borrowed by the caller), and the optimizer holds the only handles that write them.
    let (param, grad, buffer) = unsafe {
        (
            std::slice::from_raw_parts_mut(p.cast::<F>(), n),
            std::slice::from_raw_parts(g.cast::<F>().cast_const(), n),
            b.map(|b| std::slice::from_raw_parts_mut(b.cast::<F>(), n)),
        )
    };
    fused_update_slices(param, grad, buffer, h)
}
