//! The one-pass CPU path (contiguous f32/f64 storage, lcam-core's `fused_update_slices`) gives
//! bit for bit what the libtorch primitives give: the same parameters stepped once as
//! contiguous tensors (fused path) and once as transposed views (primitives).

use lcam_tch::{Lcam, LcamConfig};
use tch::{Device, Kind, Tensor};

fn run(kind: Kind, config: LcamConfig) {
    tch::manual_seed(7);
    // 300 × 401 = 120,300 elements: above lcam-core's parallel threshold; and a small one.
    let shapes: [&[i64]; 2] = [&[300, 401], &[5, 3]];
    let params: Vec<Tensor> = shapes
        .iter()
        .map(|s| Tensor::randn(*s, (kind, Device::Cpu)))
        .collect();
    let grads: Vec<Vec<Tensor>> = (0..5)
        .map(|_| {
            shapes
                .iter()
                .map(|s| Tensor::randn(*s, (kind, Device::Cpu)) * 0.1)
                .collect()
        })
        .collect();
    // Same values, transposed storage: not contiguous, so the primitives run.
    let strided = |t: &Tensor| t.transpose(0, 1).contiguous().transpose(0, 1);
    let fused_p: Vec<Tensor> = params.iter().map(Tensor::copy).collect();
    let prim_p: Vec<Tensor> = params.iter().map(strided).collect();
    assert!(fused_p.iter().all(Tensor::is_contiguous));
    assert!(prim_p.iter().all(|t| !t.is_contiguous()));
    let mut fused = Lcam::from_tensors(fused_p.iter().map(Tensor::shallow_clone).collect(), config)
        .expect("optimizer");
    let mut prim = Lcam::from_tensors(prim_p.iter().map(Tensor::shallow_clone).collect(), config)
        .expect("optimizer");
    for (k, g) in grads.iter().enumerate() {
        if k == 3 {
            fused.start_epoch();
            prim.start_epoch();
        }
        let loss = [1.0, 0.5, 2.0, 1.5, 0.7][k];
        let gf: Vec<Option<Tensor>> = g.iter().map(|t| Some(t.copy())).collect();
        let gp: Vec<Option<Tensor>> = g.iter().map(|t| Some(strided(t))).collect();
        fused.step_with_grads(&gf, loss).expect("step");
        prim.step_with_grads(&gp, loss).expect("step");
    }
    for (a, b) in fused_p.iter().zip(&prim_p) {
        // Bitwise: equal values and no NaN anywhere.
        let equal = a.eq_tensor(b).all().int64_value(&[]) == 1;
        let max = (a - b).abs().max().double_value(&[]);
        assert!(
            equal,
            "{kind:?}: fused and primitive paths differ by up to {max:e}"
        );
    }
    assert_eq!(fused.momentum(), prim.momentum());
}

#[test]
fn fused_cpu_path_is_bit_identical_to_the_primitives_f32() {
    run(Kind::Float, LcamConfig::cifar10());
}

#[test]
fn fused_cpu_path_is_bit_identical_to_the_primitives_f64_nesterov_and_zero_momentum() {
    let nesterov = LcamConfig::new(0.05, 1e-3, 0.9, 0.8)
        .and_then(|c| c.with_nesterov(true))
        .expect("config");
    run(Kind::Double, nesterov);
    // μ = 0 below the mean: plain SGD steps interleaved with momentum steps.
    let zero = LcamConfig::new(0.1, 5e-4, 0.0, 0.9).expect("config");
    run(Kind::Float, zero);
}
