//! The SGD-with-momentum update of SPEC §1, written once over a small tensor trait.
//!
//! An adapter implements [`UpdateTensor`] for its tensor type (four primitive operations) and
//! calls [`sgd_update`]; the order of operations — and so PyTorch's exact semantics — lives here
//! only. [`Scalar`] is the element type of the ndarray reference implementation (`f32`, `f64`).

use ndarray::{Array, Dimension, ScalarOperand, Zip};
use num_traits::Float;
use rayon::prelude::*;
use serde::{Serialize, de::DeserializeOwned};

/// The hyper-parameters of one step as the kernel sees them: the momentum is the one in force
/// (from [`crate::PhasedMomentum::momentum`]) and `lr` the one of this step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepParams {
    /// Learning rate η.
    pub lr: f64,
    /// Coupled weight decay λ.
    pub weight_decay: f64,
    /// Momentum μ in force for this step.
    pub momentum: f64,
    /// Dampening τ.
    pub dampening: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
}

/// The primitive operations [`sgd_update`] needs from a tensor type.
///
/// Scalars arrive as `f64` and are rounded to the tensor's dtype first, as PyTorch does with a
/// Python float. `add_scaled` is `self + alpha·other` with one rounding where the hardware fuses
/// it (PyTorch's CPU and CUDA `add(…, alpha=)` kernels use a fused multiply-add).
pub trait UpdateTensor: Sized {
    /// The tensor's shape.
    fn dims(&self) -> Vec<usize>;
    /// A deep copy (PyTorch's `clone().detach()`).
    fn duplicate(&self) -> Self;
    /// `self ← self + alpha·other` (PyTorch's `self.add_(other, alpha=alpha)`).
    fn add_scaled(&mut self, other: &Self, alpha: f64);
    /// `self ← alpha·self` (PyTorch's `self.mul_(alpha)`).
    fn scale(&mut self, alpha: f64);
    /// The whole of [`sgd_update`] for `self` as the parameter, in one pass over memory, for
    /// tensor types that can (the ndarray implementation does, when a buffer exists): the result
    /// must be exactly — bit for bit — that of the primitive sequence. Returns `false` (the
    /// default) to have [`sgd_update`] run the primitives instead.
    ///
    /// A step with a buffer then moves the minimum, 20 bytes per f32 parameter (read `p`, `g`,
    /// `b`; write `p`, `b`), instead of the primitives' ≈ 52.
    fn fused_update(&mut self, grad: &Self, buffer: &mut Option<Self>, h: &StepParams) -> bool {
        let _ = (grad, buffer, h);
        false
    }
}

/// One SGD-with-momentum update of a single tensor, exactly as `torch.optim.SGD`
/// (single-tensor path) computes it:
///
/// ```text
/// g = ∇ + λ·p                            (only when λ ≠ 0)
/// if μ ≠ 0:
///     b = g                if no buffer yet (a copy; no (1 − τ) factor)
///     b = μ·b + (1 − τ)·g  otherwise
///     d = g + μ·b          if nesterov
///     d = b                otherwise
/// else:
///     d = g                (the buffer, if any, is left untouched, as in PyTorch)
/// p = p − η·d
/// ```
///
/// The caller skips tensors without a gradient (their buffer and value stay untouched) and
/// checks shapes; this function assumes `param`, `grad` and `buffer` agree.
pub fn sgd_update<T: UpdateTensor>(
    param: &mut T,
    grad: &T,
    buffer: &mut Option<T>,
    h: &StepParams,
) {
    if param.fused_update(grad, buffer, h) {
        return;
    }
    let mut decayed = None;
    if h.weight_decay != 0.0 {
        let mut g = grad.duplicate();
        g.add_scaled(param, h.weight_decay);
        decayed = Some(g);
    }
    let g = decayed.as_ref().unwrap_or(grad);
    if h.momentum == 0.0 {
        param.add_scaled(g, -h.lr);
        return;
    }
    let b = match buffer {
        Some(b) => {
            b.scale(h.momentum);
            b.add_scaled(g, 1.0 - h.dampening);
            b
        }
        None => buffer.insert(g.duplicate()),
    };
    if h.nesterov {
        let mut d = g.duplicate();
        d.add_scaled(b, h.momentum);
        param.add_scaled(&d, -h.lr);
    } else {
        param.add_scaled(b, -h.lr);
    }
}

/// Element types of the ndarray reference implementation: `f32` and `f64`.
pub trait Scalar:
    Float + ScalarOperand + Serialize + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static
{
    /// The dtype tag used in traces (`"f32"`, `"f64"`).
    const DTYPE: &'static str;
    /// Rounds an `f64` to this type (round-to-nearest-even).
    fn of_f64(x: f64) -> Self;
    /// Widens to `f64` (exact).
    fn as_f64(self) -> f64;
}

impl Scalar for f32 {
    const DTYPE: &'static str = "f32";
    fn of_f64(x: f64) -> Self {
        x as f32
    }
    fn as_f64(self) -> f64 {
        f64::from(self)
    }
}

impl Scalar for f64 {
    const DTYPE: &'static str = "f64";
    fn of_f64(x: f64) -> Self {
        x
    }
    fn as_f64(self) -> f64 {
        self
    }
}

impl<F: Scalar, D: Dimension> UpdateTensor for Array<F, D> {
    fn dims(&self) -> Vec<usize> {
        self.shape().to_vec()
    }

    fn duplicate(&self) -> Self {
        self.clone()
    }

    fn add_scaled(&mut self, other: &Self, alpha: f64) {
        let a = F::of_f64(alpha);
        Zip::from(self)
            .and(other)
            .for_each(|s, &o| *s = o.mul_add(a, *s));
    }

    fn scale(&mut self, alpha: f64) {
        let a = F::of_f64(alpha);
        self.mapv_inplace(|v| v * a);
    }

    fn fused_update(&mut self, grad: &Self, buffer: &mut Option<Self>, h: &StepParams) -> bool {
        if h.momentum == 0.0 {
            if let (Some(p), Some(g)) = (self.as_slice_mut(), grad.as_slice()) {
                return fused_update_slices(p, g, None, h);
            }
            let k = Fused::<F>::new(h);
            Zip::from(&mut *self)
                .and(grad)
                .for_each(|p, &g| k.plain(p, g));
            return true;
        }
        // The first step copies the gradient into a new buffer: rare, left to the primitives.
        let Some(b) = buffer.as_mut() else {
            return false;
        };
        if let (Some(p), Some(g), Some(b)) =
            (self.as_slice_mut(), grad.as_slice(), b.as_slice_mut())
        {
            return fused_update_slices(p, g, Some(b), h);
        }
        let k = Fused::<F>::new(h);
        Zip::from(&mut *self)
            .and(grad)
            .and(b)
            .for_each(|p, &g, b| k.momentum(p, g, b));
        true
    }
}

/// [`sgd_update`] over contiguous memory in one pass — for adapters whose tensors expose their
/// storage (lcam-tch on CPU): `buffer` is the existing momentum buffer, or `None` for a step
/// with μ = 0. Large slices are split over rayon's thread pool. The result is bit for bit that
/// of the primitive sequence (property-tested). Returns `false`, changing nothing, when it does
/// not apply: μ ≠ 0 without a buffer (the first step creates it: use [`sgd_update`]) or slices
/// of different lengths.
pub fn fused_update_slices<F: Scalar>(
    param: &mut [F],
    grad: &[F],
    buffer: Option<&mut [F]>,
    h: &StepParams,
) -> bool {
    let k = Fused::<F>::new(h);
    let n = param.len();
    if grad.len() != n {
        return false;
    }
    match buffer {
        None if h.momentum == 0.0 => {
            if n >= PARALLEL_MIN {
                param
                    .par_chunks_mut(CHUNK)
                    .zip(grad.par_chunks(CHUNK))
                    .for_each(|(p, g)| plain_slices(&k, p, g));
            } else {
                plain_slices(&k, param, grad);
            }
            true
        }
        Some(b) if h.momentum != 0.0 && b.len() == n => {
            if n >= PARALLEL_MIN {
                param
                    .par_chunks_mut(CHUNK)
                    .zip(grad.par_chunks(CHUNK))
                    .zip(b.par_chunks_mut(CHUNK))
                    .for_each(|((p, g), b)| momentum_slices(&k, p, g, b));
            } else {
                momentum_slices(&k, param, grad, b);
            }
            true
        }
        _ => false,
    }
}

/// [`sgd_update`] over many ndarray tensors — PyTorch's multi-tensor ("foreach") SGD step:
/// entry `i` of `grads` (`None`: skipped, value and buffer untouched) and `buffers` belongs to
/// `params[i]`. Once the tensors hold at least 2^15 elements in total they are spread over
/// rayon's thread pool (and large ones split further); the update is element-wise, so the
/// result is bit for bit that of a sequential loop. [`crate::Lcam::step`] is this plus the
/// controller.
///
/// Errors, changing nothing: `grads` or `buffers` of another length than `params`
/// ([`LcamError::CountMismatch`](crate::LcamError::CountMismatch)). Shapes are the caller's
/// contract (`Lcam::step` checks them).
pub fn sgd_update_all<F: Scalar>(
    params: &mut [ndarray::ArrayD<F>],
    grads: &[Option<ndarray::ArrayD<F>>],
    buffers: &mut [Option<ndarray::ArrayD<F>>],
    h: &StepParams,
) -> crate::Result<()> {
    sgd_update_grouped(params, grads, buffers, &[*h], &vec![0; params.len()])
}

/// [`sgd_update_all`] with parameter groups: tensor `i` is updated with `groups[group_of[i]]`.
///
/// Errors, changing nothing: `grads`, `buffers` or `group_of` of another length than `params`
/// ([`LcamError::CountMismatch`](crate::LcamError::CountMismatch)), a group index out of range
/// ([`LcamError::InvalidGroup`](crate::LcamError::InvalidGroup)).
pub fn sgd_update_grouped<F: Scalar>(
    params: &mut [ndarray::ArrayD<F>],
    grads: &[Option<ndarray::ArrayD<F>>],
    buffers: &mut [Option<ndarray::ArrayD<F>>],
    groups: &[StepParams],
    group_of: &[usize],
) -> crate::Result<()> {
    for (what, got) in [
        ("gradients", grads.len()),
        ("buffers", buffers.len()),
        ("group indices", group_of.len()),
    ] {
        if got != params.len() {
            return Err(crate::LcamError::CountMismatch {
                what: what.into(),
                got,
                expected: params.len(),
            });
        }
    }
    if let Some(i) = group_of.iter().position(|&g| g >= groups.len()) {
        return Err(crate::LcamError::InvalidGroup {
            group: format!("#{}", group_of[i]),
            message: format!("parameter {i} names it, there are {} groups", groups.len()),
        });
    }
    let mut jobs: Vec<_> = params
        .iter_mut()
        .zip(grads)
        .zip(buffers)
        .zip(group_of)
        .filter_map(|(((p, g), b), &k)| g.as_ref().map(|g| (p, g, b, &groups[k])))
        .collect();
    let elements: usize = jobs.iter().map(|(p, _, _, _)| p.len()).sum();
    if elements >= PARALLEL_MIN && jobs.len() > 1 {
        // Many small tensors (WRN-16-1: 43 tensors, most below the per-tensor threshold).
        jobs.par_iter_mut()
            .for_each(|(p, g, b, h)| sgd_update(&mut **p, *g, &mut **b, h));
    } else {
        for (p, g, b, h) in jobs {
            sgd_update(p, g, b, h);
        }
    }
    Ok(())
}

/// Tensors with at least this many elements are updated on rayon's thread pool, in chunks of
/// [`CHUNK`] elements (element-wise, so the result does not depend on the split).
const PARALLEL_MIN: usize = 1 << 15;
/// Elements per parallel task (64 KiB of f32 per array).
const CHUNK: usize = 1 << 14;

/// The hyper-parameters of one fused update, rounded to the element type as the primitives
/// round them: `add_scaled(o, a)` is `o.mul_add(a, s)`, `scale(a)` is `s * a`.
#[derive(Debug, Clone, Copy)]
struct Fused<F> {
    neg_lr: F,
    wd: Option<F>,
    mu: F,
    keep: F,
    nesterov: bool,
}

impl<F: Scalar> Fused<F> {
    fn new(h: &StepParams) -> Self {
        Fused {
            neg_lr: F::of_f64(-h.lr),
            wd: (h.weight_decay != 0.0).then(|| F::of_f64(h.weight_decay)),
            mu: F::of_f64(h.momentum),
            keep: F::of_f64(1.0 - h.dampening),
            nesterov: h.nesterov,
        }
    }

    /// `g + λ·p` (or `g`).
    #[inline(always)]
    fn decay(&self, p: F, g: F) -> F {
        match self.wd {
            Some(wd) => p.mul_add(wd, g),
            None => g,
        }
    }

    /// μ = 0: `p ← p − η·g`.
    #[inline(always)]
    fn plain(&self, p: &mut F, g: F) {
        *p = self.decay(*p, g).mul_add(self.neg_lr, *p);
    }

    /// With a buffer: `b ← μ·b + (1 − τ)·g`, `p ← p − η·(b or g + μ·b)`.
    #[inline(always)]
    fn momentum(&self, p: &mut F, g: F, b: &mut F) {
        let g = self.decay(*p, g);
        *b = g.mul_add(self.keep, *b * self.mu);
        let d = if self.nesterov {
            b.mul_add(self.mu, g)
        } else {
            *b
        };
        *p = d.mul_add(self.neg_lr, *p);
    }
}

#[inline(always)]
fn momentum_generic<F: Scalar>(k: &Fused<F>, p: &mut [F], g: &[F], b: &mut [F]) {
    for ((p, &g), b) in p.iter_mut().zip(g).zip(b.iter_mut()) {
        k.momentum(p, g, b);
    }
}

#[inline(always)]
fn plain_generic<F: Scalar>(k: &Fused<F>, p: &mut [F], g: &[F]) {
    for (p, &g) in p.iter_mut().zip(g) {
        k.plain(p, g);
    }
}

// `mul_add` is one instruction only where the CPU has FMA; the x86-64 baseline lacks it, and the
// generic loop then calls a (correctly rounded, much slower) software fma per operation. Both
// give the same bits, so the dispatch below changes speed only.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn momentum_fma<F: Scalar>(k: &Fused<F>, p: &mut [F], g: &[F], b: &mut [F]) {
    momentum_generic(k, p, g, b);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn plain_fma<F: Scalar>(k: &Fused<F>, p: &mut [F], g: &[F]) {
    plain_generic(k, p, g);
}

#[cfg(target_arch = "x86_64")]
fn has_fma() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

fn momentum_slices<F: Scalar>(k: &Fused<F>, p: &mut [F], g: &[F], b: &mut [F]) {
    #[cfg(target_arch = "x86_64")]
    if has_fma() {
        // SAFETY: the CPU supports AVX2 and FMA, checked at run time just above.
        #[allow(unsafe_code)]
        unsafe {
            momentum_fma(k, p, g, b)
        };
        return;
    }
    momentum_generic(k, p, g, b);
}

fn plain_slices<F: Scalar>(k: &Fused<F>, p: &mut [F], g: &[F]) {
    #[cfg(target_arch = "x86_64")]
    if has_fma() {
        // SAFETY: the CPU supports AVX2 and FMA, checked at run time just above.
        #[allow(unsafe_code)]
        unsafe {
            plain_fma(k, p, g)
        };
        return;
    }
    plain_generic(k, p, g);
}
