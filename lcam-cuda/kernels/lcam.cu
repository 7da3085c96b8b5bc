// LCAM kernels (lcam-cuda). Compiled twice from this one source:
//  - for the GPU by NVRTC at run time (src/nvrtc.rs), with `--fmad=false`;
//  - for the host by the `cc` crate (kernels/host_emulation.cpp includes kernels/host_shim.h
//    first, which defines LCAM_HOST_EMULATION, `__global__`, `threadIdx`, ...).
// No headers are included here: NVRTC has none, the host shim provides what is needed.
//
// Every rounding mirrors lcam-core's `sgd_update` over ndarray: `add_scaled(o, a)` is
// `fma(o, a, self)` (Rust's `mul_add`), `scale(a)` is a plain multiply, and each f64
// hyper-parameter is rounded to the tensor's type first. `--fmad=false` (and
// `-ffp-contract=off` on the host) keep the compilers from fusing anything else.

// One parameter tensor of a step. Addresses are 64-bit integers so that the layout is the same
// for the device, the host emulation and Rust (`TensorEntry` in src/layout.rs).
struct LcamTensor {
    unsigned long long param;       // T*, updated in place
    unsigned long long grad;        // const T*
    unsigned long long buf;         // T*, the momentum buffer
    unsigned long long len;         // elements
    unsigned long long first_chunk; // chunks of all earlier entries (prefix sum)
    unsigned long long slot;        // index of this tensor's `has_buf` flag
    unsigned long long group;       // index of its parameter group in `LcamGroups`
};

// The most parameter groups one optimizer may have (their scalars travel by value in the
// launch: no transfer, no synchronisation when a learning rate changes).
#define LCAM_MAX_GROUPS 8

// Each group's step parameters (`GroupScalars` in src/layout.rs), passed by value.
struct LcamGroups {
    double lr[LCAM_MAX_GROUPS];
    double wd[LCAM_MAX_GROUPS];
    double one_minus_dampening[LCAM_MAX_GROUPS];
    int nesterov[LCAM_MAX_GROUPS];
};

// The phase controller of SPEC §2, resident in device memory (`DeviceController` in Rust).
struct LcamController {
    double sum;                       // S_k, f64
    double momentum;                  // in force for the next step
    double momentum_below;
    double momentum_above;
    double used_momentum;             // momentum the last applied step used
    unsigned long long epoch;
    unsigned long long count;         // k
    unsigned long long steps_below;
    long long phase;                  // -1: none yet, 0: below, 1: above
    unsigned long long rejected;      // non-finite losses seen (their steps were skipped)
    unsigned long long steps;         // steps applied in total
};

__device__ __forceinline__ float lcam_fma(float a, float b, float c) { return fmaf(a, b, c); }
__device__ __forceinline__ double lcam_fma(double a, double b, double c) { return fma(a, b, c); }

// Finite (not NaN, not ±inf), without relying on a math header.
__device__ __forceinline__ bool lcam_finite(double x) { return x - x == 0.0; }

__device__ __forceinline__ double lcam_load_loss(const void *loss, int loss_is_f64) {
    return loss_is_f64 ? *(const double *)loss : (double)*(const float *)loss;
}

// `PhasedMomentum::check_loss`: a loss the controller would reject skips the whole step.
__device__ __forceinline__ bool lcam_accepts(const LcamController *ctl, double loss) {
    return lcam_finite(loss) && lcam_finite(ctl->sum + loss);
}

// One element of SPEC §1, in lcam-core's operation order.
template <typename T>
__device__ __forceinline__ void lcam_update(T *param, const T *grad, T *buf, unsigned long long i,
                                            bool has_buf, double mu, double lr, double wd,
                                            double one_minus_dampening, int nesterov) {
    T p = param[i];
    T g = grad[i];
    if (wd != 0.0) {
        g = lcam_fma(p, (T)wd, g);             // g = ∇ + λ·p
    }
    if (mu == 0.0) {
        param[i] = lcam_fma(g, (T)(-lr), p);   // p = p − η·g; the buffer is untouched
        return;
    }
    T b;
    if (has_buf) {
        b = buf[i] * (T)mu;                    // b = μ·b
        b = lcam_fma(g, (T)one_minus_dampening, b); //   + (1 − τ)·g
    } else {
        b = g;                                 // first step: a copy
    }
    buf[i] = b;
    T d = nesterov ? lcam_fma(b, (T)mu, g) : b; // d = g + μ·b | b
    param[i] = lcam_fma(d, (T)(-lr), p);       // p = p − η·d
}

// The multi-tensor step. Each entry is cut into chunks of `chunk` elements; block b takes the
// global chunks b, b + gridDim.x, ... and its threads stride over the chunk's elements.
template <typename T>
__device__ __forceinline__ void lcam_step(const LcamTensor *table, unsigned long long n_tensors,
                                          unsigned long long total_chunks,
                                          unsigned long long chunk,
                                          const unsigned int *has_buf,
                                          const LcamController *ctl, const void *loss,
                                          int loss_is_f64, const LcamGroups &groups) {
    if (!lcam_accepts(ctl, lcam_load_loss(loss, loss_is_f64))) {
        return;
    }
    const double mu = ctl->momentum;
    for (unsigned long long c = blockIdx.x; c < total_chunks; c += gridDim.x) {
        // The last entry whose first chunk is <= c (entries of length 0 own no chunk).
        unsigned long long lo = 0, hi = n_tensors;
        while (lo + 1 < hi) {
            unsigned long long mid = lo + (hi - lo) / 2;
            if (table[mid].first_chunk <= c) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        const LcamTensor e = table[lo];
        const unsigned long long start = (c - e.first_chunk) * chunk;
        unsigned long long end = start + chunk;
        if (end > e.len) {
            end = e.len;
        }
        const bool hb = has_buf[e.slot] != 0;
        const unsigned long long g = e.group;
        const double lr = groups.lr[g];
        const double wd = groups.wd[g];
        const double one_minus_dampening = groups.one_minus_dampening[g];
        const int nesterov = groups.nesterov[g];
        for (unsigned long long i = start + threadIdx.x; i < end; i += blockDim.x) {
            lcam_update<T>((T *)e.param, (const T *)e.grad, (T *)e.buf, i, hb, mu, lr, wd,
                           one_minus_dampening, nesterov);
        }
    }
}

extern "C" __global__ void lcam_step_f32(const LcamTensor *table, unsigned long long n_tensors,
                                         unsigned long long total_chunks,
                                         unsigned long long chunk, const unsigned int *has_buf,
                                         const LcamController *ctl, const void *loss,
                                         int loss_is_f64, LcamGroups groups) {
    lcam_step<float>(table, n_tensors, total_chunks, chunk, has_buf, ctl, loss, loss_is_f64,
                     groups);
}

extern "C" __global__ void lcam_step_f64(const LcamTensor *table, unsigned long long n_tensors,
                                         unsigned long long total_chunks,
                                         unsigned long long chunk, const unsigned int *has_buf,
                                         const LcamController *ctl, const void *loss,
                                         int loss_is_f64, LcamGroups groups) {
    lcam_step<double>(table, n_tensors, total_chunks, chunk, has_buf, ctl, loss, loss_is_f64,
                      groups);
}

// After the step, one thread: marks the stepped tensors as having a buffer (when the step used
// a momentum ≠ 0), folds the loss into the running mean and decides the next momentum
// (`PhasedMomentum::observe`). A rejected loss changes nothing but the `rejected` counter.
extern "C" __global__ void lcam_observe(LcamController *ctl, const LcamTensor *table,
                                        unsigned long long n_tensors, unsigned int *has_buf,
                                        const void *loss, int loss_is_f64) {
    if (threadIdx.x != 0 || blockIdx.x != 0) {
        return;
    }
    const double l = lcam_load_loss(loss, loss_is_f64);
    if (!lcam_accepts(ctl, l)) {
        ctl->rejected += 1;
        return;
    }
    const double mu = ctl->momentum;
    ctl->used_momentum = mu;
    ctl->steps += 1;
    if (mu != 0.0) {
        for (unsigned long long t = 0; t < n_tensors; ++t) {
            has_buf[table[t].slot] = 1;
        }
    }
    const double sum = ctl->sum + l;
    ctl->sum = sum;
    ctl->count += 1;
    const double mean = sum / (double)ctl->count;
    if (l < mean) {
        ctl->phase = 0;
        ctl->steps_below += 1;
        ctl->momentum = ctl->momentum_below;
    } else {
        ctl->phase = 1;
        ctl->momentum = ctl->momentum_above;
    }
}

// `Lcam::start_epoch`: resets the running mean unless the current epoch observed nothing yet;
// the last decision (and so the momentum in force) carries over.
extern "C" __global__ void lcam_start_epoch(LcamController *ctl) {
    if (threadIdx.x != 0 || blockIdx.x != 0) {
        return;
    }
    if (ctl->count > 0) {
        ctl->epoch += 1;
        ctl->count = 0;
        ctl->sum = 0.0;
        ctl->steps_below = 0;
    }
}
