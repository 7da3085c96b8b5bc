//! One optimizer step over the real parameter sets of WRN-16-1 and WRN-28-10 (f32), for every
//! adapter built in, next to the same adapter's plain SGD-momentum step and a STREAM-triad
//! measurement of this machine's memory bandwidth. Run through `cargo xtask bench`, which turns
//! criterion's estimates into the tables of BENCHMARKS.md.
//!
//! - `core-lcam`: `lcam_core::Lcam::step` (controller + fused one-pass ndarray update);
//! - `core-sgd`: the same multi-tensor update (`sgd_update_all`) with a fixed momentum and no
//!   controller;
//! - `triad`: `a = b + s·c` over three arrays of as many f32 as the model has parameters, on the
//!   same thread pool — 12 bytes per element, STREAM's convention;
//! - `tch-lcam` / `tch-sgd`: lcam-tch vs tch's `nn::Sgd` (libtorch's C++ SGD) on the same
//!   VarStore (feature `tch`);
//! - `burn-lcam` / `burn-sgd`: lcam-burn vs Burn's own `SgdConfig` with momentum 0.9, dampening 0
//!   (feature `burn`, flex backend).
//!
//! All use lr 0.1, weight decay 5e-4, LCAM 0.9/0.95 (SGD 0.9), buffers already allocated (one
//! warm-up step), and a loss sequence that makes the controller switch.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use lcam_cli::train::model::ModelSpec;
use lcam_core::ndarray::{ArrayD, IxDyn};
use lcam_core::{Lcam, LcamConfig, StepParams, sgd_update_all};

/// The trainable parameter shapes of a WRN (10 classes), in the models' order.
fn wrn_shapes(name: &str) -> Vec<Vec<usize>> {
    let spec: ModelSpec = name.parse().expect("a valid WRN name");
    spec.param_shapes(10)
}

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn arrays(shapes: &[Vec<usize>], seed: u64, scale: f32) -> Vec<ArrayD<f32>> {
    shapes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let n = s.iter().product();
            let v = values(n, seed + i as u64)
                .iter()
                .map(|x| x * scale)
                .collect();
            ArrayD::from_shape_vec(IxDyn(s), v).expect("shape")
        })
        .collect()
}

/// A batch loss sequence that crosses the running mean now and then.
fn loss(i: u64) -> f64 {
    1.0 + 0.1 * (i % 3) as f64
}

const LR: f64 = 0.1;
const WD: f64 = 5e-4;

fn config() -> LcamConfig {
    LcamConfig::new(LR, WD, 0.9, 0.95).expect("valid config")
}

fn bench_model(c: &mut Criterion, model: &str) {
    let shapes = wrn_shapes(model);
    let n: usize = shapes.iter().map(|s| s.iter().product::<usize>()).sum();
    let mut group = c.benchmark_group(format!("step-{model}"));
    // A WRN-16-1 step takes tens of µs, where rayon's wake-ups make single samples noisy: more
    // samples there; WRN-28-10's 13+ ms steps need few.
    group.sample_size(if n < 1_000_000 { 100 } else { 10 });
    group.throughput(criterion::Throughput::Elements(n as u64));

    // lcam-core: Lcam::step.
    {
        let mut params = arrays(&shapes, 1, 0.1);
        let grads: Vec<Option<ArrayD<f32>>> =
            arrays(&shapes, 1000, 0.01).into_iter().map(Some).collect();
        let mut opt = Lcam::new(config(), &params).expect("optimizer");
        opt.start_epoch();
        opt.step(&mut params, &grads, 1.0).expect("warm-up");
        let mut i = 0u64;
        group.bench_function(BenchmarkId::new("core-lcam", n), |b| {
            b.iter(|| {
                i += 1;
                black_box(opt.step(&mut params, &grads, loss(i)).expect("step"));
            })
        });
    }
    // lcam-core's update kernel alone, fixed momentum: plain SGD with momentum.
    {
        let mut params = arrays(&shapes, 1, 0.1);
        let grads: Vec<Option<ArrayD<f32>>> =
            arrays(&shapes, 1000, 0.01).into_iter().map(Some).collect();
        let mut buffers: Vec<Option<ArrayD<f32>>> = vec![None; params.len()];
        let h = StepParams {
            lr: LR,
            weight_decay: WD,
            momentum: 0.9,
            dampening: 0.0,
            nesterov: false,
        };
        let step = |params: &mut [ArrayD<f32>], buffers: &mut [Option<ArrayD<f32>>]| {
            sgd_update_all(params, &grads, buffers, &h).expect("counts");
        };
        step(&mut params, &mut buffers);
        group.bench_function(BenchmarkId::new("core-sgd", n), |b| {
            b.iter(|| step(black_box(&mut params), &mut buffers))
        });
    }
    // STREAM triad over as many elements, on the same thread pool in the same chunks as
    // lcam-core's fused update.
    {
        use rayon::prelude::*;
        let mut a = vec![0f32; n];
        let bb = values(n, 7);
        let cc = values(n, 8);
        group.bench_function(BenchmarkId::new("triad", n), |b| {
            b.iter(|| {
                a.par_chunks_mut(1 << 14)
                    .zip(bb.par_chunks(1 << 14))
                    .zip(cc.par_chunks(1 << 14))
                    .for_each(|((a, b), c)| {
                        for ((a, &b), &c) in a.iter_mut().zip(b).zip(c) {
                            *a = b + 3.0 * c;
                        }
                    });
                black_box(&a);
            })
        });
    }
    #[cfg(feature = "tch")]
    tch_benches(&mut group, &shapes, n);
    #[cfg(feature = "burn")]
    burn_benches(&mut group, &shapes, n);
    group.finish();
}

#[cfg(feature = "tch")]
fn tch_benches(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    shapes: &[Vec<usize>],
    n: usize,
) {
    use tch::nn::OptimizerConfig as _;
    use tch::{Device, Kind, Tensor, nn};

    // A VarStore with the model's shapes and gradients attached (kept across steps).
    let store = || {
        let vs = nn::VarStore::new(Device::Cpu);
        let root = vs.root();
        let vars: Vec<Tensor> = shapes
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let s: Vec<i64> = s.iter().map(|&d| d as i64).collect();
                root.var(
                    &format!("p{i}"),
                    &s,
                    nn::Init::Randn {
                        mean: 0.0,
                        stdev: 0.1,
                    },
                )
            })
            .collect();
        // Gradients as training leaves them: dense, contiguous (the grad of Σ v·r is r).
        let mut total = Tensor::zeros([], (Kind::Float, Device::Cpu));
        for v in &vars {
            let r = Tensor::randn(v.size(), (Kind::Float, Device::Cpu)) * 0.01;
            total += (v * r).sum(Kind::Float);
        }
        total.backward();
        vs
    };
    {
        let vs = store();
        let mut opt = lcam_tch::Lcam::new(&vs, config()).expect("optimizer");
        opt.start_epoch();
        opt.step(1.0).expect("warm-up");
        let mut i = 0u64;
        group.bench_function(BenchmarkId::new("tch-lcam", n), |b| {
            b.iter(|| {
                i += 1;
                black_box(opt.step(loss(i)).expect("step"));
            })
        });
    }
    {
        let vs = store();
        let mut opt = nn::Sgd {
            momentum: 0.9,
            dampening: 0.0,
            wd: WD,
            nesterov: false,
        }
        .build(&vs, LR)
        .expect("tch SGD");
        opt.step();
        group.bench_function(BenchmarkId::new("tch-sgd", n), |b| b.iter(|| opt.step()));
    }
}

#[cfg(feature = "burn")]
fn burn_benches(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    shapes: &[Vec<usize>],
    n: usize,
) {
    use burn::module::{Param, ParamId};
    use burn::optim::{
        GradientsParams, SgdConfig, decay::WeightDecayConfig, momentum::MomentumConfig,
    };
    use burn::tensor::{Device, Tensor, TensorData};

    let device = Device::flex();
    // Flattened to rank 1: the update is element-wise.
    let tensors = |seed: u64, scale: f32| -> Vec<Tensor<1>> {
        shapes
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let len: usize = s.iter().product();
                let v: Vec<f32> = values(len, seed + i as u64)
                    .iter()
                    .map(|x| x * scale)
                    .collect();
                Tensor::from_data(TensorData::new(v, [len]), &device)
            })
            .collect()
    };
    let grads = tensors(1000, 0.01);
    let module = || -> Vec<Param<Tensor<1>>> {
        tensors(1, 0.1)
            .into_iter()
            .map(|t| Param::from_tensor(t.autodiff()))
            .collect()
    };
    let grads_for = |m: &[Param<Tensor<1>>]| {
        let ids: Vec<ParamId> = m.iter().map(|p| p.id).collect();
        let mut g = GradientsParams::new();
        for (id, t) in ids.iter().zip(&grads) {
            g.register(*id, t.clone());
        }
        g
    };
    {
        let mut m = Some(module());
        let mut opt = lcam_burn::LcamOptimizer::new(config()).expect("optimizer");
        opt.start_epoch();
        let mut step = |m: &mut Option<Vec<Param<Tensor<1>>>>, l: f64| {
            let cur = m.take().expect("module");
            let g = grads_for(&cur);
            *m = Some(opt.step(LR, cur, g, l).map_err(|e| e.error).expect("step"));
        };
        step(&mut m, 1.0);
        let mut i = 0u64;
        group.bench_function(BenchmarkId::new("burn-lcam", n), |b| {
            b.iter(|| {
                i += 1;
                step(&mut m, loss(i));
            })
        });
    }
    {
        let mut m = Some(module());
        let mut opt = SgdConfig::new()
            .with_weight_decay(Some(WeightDecayConfig::new(WD as f32)))
            .with_momentum(Some(MomentumConfig {
                momentum: 0.9,
                dampening: 0.0,
                nesterov: false,
            }))
            .init();
        let mut step = |m: &mut Option<Vec<Param<Tensor<1>>>>| {
            let cur = m.take().expect("module");
            let g = grads_for(&cur);
            *m = Some(opt.step(LR, cur, g));
        };
        step(&mut m);
        group.bench_function(BenchmarkId::new("burn-sgd", n), |b| b.iter(|| step(&mut m)));
    }
}

fn benches(c: &mut Criterion) {
    let models = std::env::var("LCAM_BENCH_MODELS").unwrap_or_else(|_| "wrn-16-1,wrn-28-10".into());
    for m in models.split(',').filter(|m| !m.is_empty()) {
        bench_model(c, m);
    }
}

criterion_group!(step, benches);
criterion_main!(step);
