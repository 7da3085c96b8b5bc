//! [`UpdateTensor`] for tch tensors: the four primitive operations that lcam-core's
//! [`sgd_update`](lcam_core::sgd_update) needs, as in-place libtorch ops.

use lcam_core::UpdateTensor;
use tch::Tensor;

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
}
