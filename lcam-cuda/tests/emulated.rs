//! The CUDA kernels compiled for the host (feature `host-emulation`) against lcam-core: every
//! golden fixture, random shapes (sizes that are not multiples of the block or chunk size,
//! grids smaller than the number of chunks), state round trips and bad input.
#![cfg(feature = "host-emulation")]

use std::path::Path;

use lcam_core::ndarray::{ArrayD, IxDyn};
use lcam_core::{
    DType, Lcam, LcamConfig, LcamState, NamedTensor, Phase, Trace, TraceStep, load_fixtures,
};
use lcam_cuda::emulated::{HostLcam, c_struct_sizes};
use lcam_cuda::{
    DeviceController, GroupScalars, LaunchShape, LcamCudaError, TensorEntry, replay_host_with,
};

/// Launch shapes: the default, and odd ones that make blocks stride over many small chunks.
const SHAPES: [LaunchShape; 4] = [
    LaunchShape {
        block: 256,
        max_blocks: 1024,
        chunk: 65536,
    },
    LaunchShape {
        block: 3,
        max_blocks: 2,
        chunk: 7,
    },
    LaunchShape {
        block: 32,
        max_blocks: 5,
        chunk: 100,
    },
    LaunchShape {
        block: 1,
        max_blocks: 1,
        chunk: 1,
    },
];

fn golden_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/golden")
}

#[test]
fn c_and_rust_layouts_agree() {
    assert_eq!(
        c_struct_sizes(),
        (
            size_of::<TensorEntry>(),
            size_of::<DeviceController>(),
            size_of::<GroupScalars>()
        )
    );
}

#[test]
fn every_golden_fixture_matches_pytorch_and_core() {
    let fixtures = load_fixtures(&golden_dir()).expect("golden fixtures");
    assert!(fixtures.len() >= 9, "{} fixtures", fixtures.len());
    check_every_launch_shape(&fixtures);
}

/// Each fixture over every launch shape: within tolerance of PyTorch's trajectory and — same
/// operations, same roundings — bit-identical to lcam-core's replay.
fn check_every_launch_shape(fixtures: &[lcam_core::Fixture]) {
    for f in fixtures {
        let core = f.trace.replay().expect("core replay");
        for launch in SHAPES {
            let got = replay_host_with(&f.trace, launch)
                .unwrap_or_else(|e| panic!("{} {launch:?}: {e}", f.name));
            let c = f.check(&got).unwrap_or_else(|e| panic!("{launch:?}: {e}"));
            assert!(c.max_rel_err <= f.trace.dtype.tolerance());
            assert_eq!(got, core, "{} {launch:?}: differs from lcam-core", f.name);
        }
    }
}

/// A deterministic xorshift stream.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() * n as f64) as usize % n
    }
}

fn random_trace(seed: u64) -> Trace {
    let mut r = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let nesterov = r.next() < 0.3;
    let pick = |r: &mut Rng| {
        // Sometimes exactly 0 (plain SGD steps, buffer untouched) when allowed.
        if !nesterov && r.next() < 0.15 {
            0.0
        } else {
            0.05 + 0.9 * r.next()
        }
    };
    let config = LcamConfig {
        lr: 0.01 + 0.2 * r.next(),
        weight_decay: if r.next() < 0.4 { 0.0 } else { 1e-3 * r.next() },
        momentum_below: pick(&mut r),
        momentum_above: pick(&mut r),
        initial_momentum: pick(&mut r),
        dampening: if nesterov { 0.0 } else { 0.3 * r.next() },
        nesterov,
    }
    .validate()
    .expect("config");
    let dtype = if seed.is_multiple_of(2) {
        DType::F32
    } else {
        DType::F64
    };
    let round = |x: f64| {
        if dtype == DType::F32 {
            f64::from(x as f32)
        } else {
            x
        }
    };
    // Sizes around the block (256) and chunk (65536, 7, 100) sizes, and empty tensors.
    const SIZES: [usize; 12] = [0, 1, 6, 7, 8, 99, 101, 255, 257, 1000, 65_537, 3];
    let n = 1 + r.below(5);
    let shapes: Vec<Vec<usize>> = (0..n)
        .map(|_| {
            let len = SIZES[r.below(SIZES.len())];
            if len > 1 && len.is_multiple_of(3) {
                vec![3, len / 3]
            } else {
                vec![len]
            }
        })
        .collect();
    let params = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| NamedTensor {
            name: format!("p{i}"),
            shape: s.clone(),
            data: (0..s.iter().product::<usize>())
                .map(|_| round(2.0 * r.next() - 1.0))
                .collect(),
        })
        .collect();
    let steps = (0..12)
        .map(|k| TraceStep {
            epoch: k / 5,
            lr: (k % 4 == 1).then(|| 0.05 * r.next()),
            // Repeated values make ties (`ℓ_k == m_k` is Above).
            loss: if r.next() < 0.2 { 1.0 } else { 0.5 + r.next() },
            grads: shapes
                .iter()
                .map(|s| {
                    (r.next() > 0.2).then(|| {
                        (0..s.iter().product::<usize>())
                            .map(|_| round(2.0 * r.next() - 1.0))
                            .collect()
                    })
                })
                .collect(),
        })
        .collect();
    Trace::new(dtype, config, params, steps).expect("trace")
}

#[test]
fn random_shapes_match_core() {
    for seed in 1..=24u64 {
        let trace = random_trace(seed);
        let expected = trace.replay().expect("core replay");
        for launch in SHAPES.iter().take(3) {
            let got = replay_host_with(&trace, *launch)
                .unwrap_or_else(|e| panic!("seed {seed} {launch:?}: {e}"));
            let c = got.compare(&expected);
            assert!(
                c.passes(trace.dtype.tolerance()),
                "seed {seed} {launch:?}: {c:?}"
            );
            assert_eq!(got, expected, "seed {seed} {launch:?}: not bit-identical");
        }
    }
}

fn arrays(v: &[Vec<f64>], shapes: &[Vec<usize>]) -> Vec<ArrayD<f64>> {
    v.iter()
        .zip(shapes)
        .map(|(d, s)| ArrayD::from_shape_vec(IxDyn(s), d.clone()).expect("shape"))
        .collect()
}

#[test]
fn save_load_continue_is_bit_identical_and_lcam_core_compatible() {
    let shapes = vec![vec![3, 5], vec![7], vec![2]];
    let config = LcamConfig::cifar100().with_dampening(0.2).expect("config");
    let init: Vec<Vec<f64>> = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            (0..s.iter().product())
                .map(|j| ((i * 31 + j) as f64).cos())
                .collect()
        })
        .collect();
    let grad = |k: usize, i: usize, n: usize| -> Vec<f64> {
        (0..n)
            .map(|j| ((k * 7 + i * 3 + j) as f64 * 0.3).sin())
            .collect()
    };
    let losses = [2.0, 1.0, 1.7, 0.4, 0.9, 1.3, 0.2, 2.2];
    let run = |opt: &mut HostLcam<f64>, params: &mut Vec<Vec<f64>>, ks: std::ops::Range<usize>| {
        for k in ks {
            if k % 3 == 0 {
                opt.start_epoch();
            }
            let g: Vec<Vec<f64>> = params
                .iter()
                .enumerate()
                .map(|(i, p)| grad(k, i, p.len()))
                .collect();
            // Tensor 2 has no gradient on odd steps.
            let refs: Vec<Option<&[f64]>> = g
                .iter()
                .enumerate()
                .map(|(i, g)| (i != 2 || k % 2 == 0).then_some(g.as_slice()))
                .collect();
            opt.step(params, &refs, &losses[k]).expect("step");
        }
    };
    let mut straight = HostLcam::<f64>::new(config, &shapes).expect("opt");
    let mut p_straight = init.clone();
    run(&mut straight, &mut p_straight, 0..8);

    let mut first = HostLcam::<f64>::new(config, &shapes).expect("opt");
    let mut p = init.clone();
    run(&mut first, &mut p, 0..5);
    let p5 = p.clone();
    let json = serde_json::to_string(&first.state()).expect("serialise");
    let state: LcamState<f64> = serde_json::from_str(&json).expect("parse");
    let mut second = HostLcam::<f64>::from_state(&state, &shapes).expect("load");
    run(&mut second, &mut p, 5..8);
    assert_eq!(p, p_straight);
    assert_eq!(second.state(), straight.state());

    // The same state continues in lcam-core identically (lcam-core reads it, and the
    // emulated kernels agree with it step by step, phase decisions included).
    let mut core = Lcam::<f64>::from_state(&state, &arrays(&p5, &shapes)).expect("core load");
    let mut pc = arrays(&p5, &shapes);
    let mut p_host = p5.clone();
    let mut host = HostLcam::<f64>::from_state(&state, &shapes).expect("load");
    for (k, &loss) in losses.iter().enumerate().skip(5) {
        if k % 3 == 0 {
            core.start_epoch();
            host.start_epoch();
        }
        let g: Vec<Vec<f64>> = p_host
            .iter()
            .enumerate()
            .map(|(i, p)| grad(k, i, p.len()))
            .collect();
        let refs: Vec<Option<&[f64]>> = g.iter().map(|g| Some(g.as_slice())).collect();
        host.step(&mut p_host, &refs, &loss).expect("host");
        let ga: Vec<Option<ArrayD<f64>>> = arrays(&g, &shapes).into_iter().map(Some).collect();
        core.step(&mut pc, &ga, loss).expect("core");
        assert_eq!(host.diagnostics().phase, core.phase());
    }
    for (a, b) in pc.iter().zip(&p_host) {
        assert_eq!(a.as_slice().expect("contiguous"), b.as_slice());
    }
    assert_eq!(host.state(), core.state());
}

#[test]
fn non_finite_loss_skips_the_step_on_the_device() {
    let mut opt = HostLcam::<f32>::new(LcamConfig::cifar10(), &[vec![2]]).expect("opt");
    let mut p = vec![vec![1.0f32, 2.0]];
    let g = vec![0.5f32, 0.5];
    opt.step(&mut p, &[Some(&g)], &1.0f32).expect("step");
    let before = (p.clone(), opt.state());
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        opt.step(&mut p, &[Some(&g)], &bad).expect("queued");
        assert_eq!((p.clone(), opt.state()), before, "loss {bad}");
    }
    // f64 overflow of the running sum is refused too, as lcam-core's check_loss does.
    opt.step(&mut p, &[Some(&g)], &f64::MAX).expect("queued");
    opt.step(&mut p, &[Some(&g)], &f64::MAX).expect("queued");
    let d = opt.diagnostics();
    assert_eq!(d.rejected_losses, 4);
    assert_eq!(d.epoch.steps, 2);
    assert_eq!(d.phase, Some(Phase::Above));
}

#[test]
fn f32_loss_is_widened_like_core() {
    // 0.1f32 widened is not 0.1: the decision uses the widened value, as lcam-core does with
    // `f64::from(loss)`.
    let mut opt = HostLcam::<f64>::new(LcamConfig::cifar10(), &[vec![1]]).expect("opt");
    let mut core = lcam_core::PhasedMomentum::new(&LcamConfig::cifar10());
    let mut p = vec![vec![1.0]];
    for l in [0.3f32, 0.1, 0.2, 0.2, 0.7, 0.1] {
        opt.step(&mut p, &[Some(&[1.0][..])], &l).expect("step");
        core.observe(f64::from(l)).expect("observe");
        let d = opt.diagnostics();
        assert_eq!((d.phase, d.momentum), (core.phase(), core.momentum()));
        assert_eq!(d.epoch.mean_loss, core.epoch_stats().mean_loss);
    }
}

#[test]
fn start_epoch_resets_the_mean_and_keeps_the_decision() {
    let mut opt = HostLcam::<f64>::new(LcamConfig::cifar10(), &[vec![1]]).expect("opt");
    opt.start_epoch(); // nothing observed: a no-op
    assert_eq!(opt.diagnostics().epoch.epoch, 0);
    let mut p = vec![vec![1.0]];
    for l in [2.0, 1.0] {
        opt.step(&mut p, &[Some(&[1.0][..])], &l).expect("step");
    }
    assert_eq!(opt.diagnostics().momentum, 0.9); // below → 0.9 of 0.9/0.95
    opt.start_epoch();
    let d = opt.diagnostics();
    assert_eq!((d.epoch.epoch, d.epoch.steps, d.momentum), (1, 0, 0.9));
    assert!(d.epoch.mean_loss.is_nan());
}

#[test]
fn bad_input_is_refused_before_any_launch() {
    let mut opt = HostLcam::<f32>::new(LcamConfig::cifar10(), &[vec![2], vec![3]]).expect("opt");
    let mut p = vec![vec![1.0f32, 2.0], vec![0.0; 3]];
    let g2 = [1.0f32; 2];
    let g3 = [1.0f32; 3];
    let before = opt.state();
    let e = opt
        .step(&mut p, &[Some(&g2[..])], &1.0f32)
        .expect_err("count");
    assert!(
        matches!(
            e,
            LcamCudaError::CountMismatch {
                what: "gradients",
                got: 1,
                expected: 2
            }
        ),
        "{e}"
    );
    let e = opt
        .step(&mut p, &[Some(&g3[..]), Some(&g3[..])], &1.0f32)
        .expect_err("len");
    assert!(
        matches!(
            e,
            LcamCudaError::LengthMismatch {
                tensor: 0,
                what: "gradient",
                got: 3,
                expected: 2
            }
        ),
        "{e}"
    );
    let mut short = vec![vec![1.0f32, 2.0]];
    let e = opt
        .step(&mut short, &[None, None], &1.0f32)
        .expect_err("params");
    assert!(
        matches!(
            e,
            LcamCudaError::CountMismatch {
                what: "parameters",
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(opt.state(), before);
    assert_eq!(p, vec![vec![1.0f32, 2.0], vec![0.0; 3]]);
    assert!(opt.set_lr(f64::NAN).is_err());
    assert!(
        HostLcam::<f32>::new(LcamConfig::cifar10(), &[vec![1]])
            .expect("opt")
            .with_launch(LaunchShape {
                block: 0,
                max_blocks: 1,
                chunk: 1
            })
            .is_err()
    );
    let bad = LcamConfig {
        momentum_below: 1.5,
        ..LcamConfig::cifar10()
    };
    assert!(matches!(
        HostLcam::<f32>::new(bad, &[vec![1]]),
        Err(LcamCudaError::Core(_))
    ));
}

/// Parameter groups (per-group scalars in the fused launch, one phase): PyTorch's param-group
/// fixtures within tolerance and bit-identical to lcam-core, over every launch shape; a state
/// with groups round-trips; more groups than the kernels take, or groups after a step, are
/// `InvalidGroup` naming the group.
#[test]
fn parameter_groups_match_pytorch_and_core() {
    let dir = lcam_testkit::fixtures("golden-groups");
    let fixtures = load_fixtures(&dir).expect("fixtures load");
    assert!(!fixtures.is_empty());
    for f in &fixtures {
        assert!(!f.trace.groups.is_empty(), "{}: no groups", f.name);
    }
    check_every_launch_shape(&fixtures);
}

#[test]
fn group_states_round_trip_and_bad_groups_are_refused() {
    use lcam_core::{GroupBuilder, LcamError, ParamGroup};
    let shapes = [vec![3], vec![2], vec![4]];
    let groups = [ParamGroup::new("no_decay", vec![1])
        .with_weight_decay(0.0)
        .with_lr(0.05)];
    let mut opt = HostLcam::<f64>::new(LcamConfig::cifar10(), &shapes)
        .expect("opt")
        .with_groups(&groups)
        .expect("groups");
    assert_eq!(opt.groups().names(), ["no_decay", "default"]);
    let mut params = vec![vec![1.0; 3], vec![2.0; 2], vec![3.0; 4]];
    let grads: Vec<Vec<f64>> = params
        .iter()
        .map(|p| p.iter().map(|x| x * 0.5).collect())
        .collect();
    let grad_refs: Vec<Option<&[f64]>> = grads.iter().map(|g| Some(g.as_slice())).collect();
    opt.step(&mut params, &grad_refs, &1.5).expect("step");
    let state = opt.state();
    assert_eq!(state.groups.as_ref(), Some(opt.groups()));
    let back = HostLcam::<f64>::from_state(&state, &shapes).expect("reload");
    assert_eq!(back.state(), state);
    // lcam-core loads the same state, groups included.
    let core = lcam_core::Lcam::<f64>::from_state_shapes(&state, &shapes).expect("core loads it");
    assert_eq!(core.groups(), opt.groups());
    // After a step, groups cannot be set.
    let e = opt.with_groups(&groups).expect_err("after a step");
    assert!(
        matches!(&e, LcamCudaError::Core(LcamError::InvalidGroup { group, message })
            if group == "no_decay" && message.contains("before the first step")),
        "{e}"
    );
    // Nine groups (eight listed + default) exceed the kernels' eight.
    let shapes9: Vec<Vec<usize>> = (0..9).map(|_| vec![1]).collect();
    let many: Vec<ParamGroup> = (0..8)
        .map(|i| ParamGroup::new(format!("g{i}"), vec![i]))
        .collect();
    let e = HostLcam::<f32>::new(LcamConfig::cifar10(), &shapes9)
        .expect("opt")
        .with_groups(&many)
        .expect_err("too many groups");
    assert!(
        matches!(&e, LcamCudaError::Core(LcamError::InvalidGroup { group, message })
            if group == "default" && message.contains("at most 8")),
        "{e}"
    );
}

/// A scheduler setting each group's rate (`set_group_lr`, then `reset_lr`): the host-compiled
/// kernels step bit-identically to lcam-core's `Lcam` given the same calls.
#[test]
fn per_group_learning_rates_follow_lcam_core() {
    use lcam_core::ndarray::{ArrayD, IxDyn};
    use lcam_core::{GroupBuilder, Lcam, ParamGroup};
    let shapes = vec![vec![5], vec![3], vec![2, 2]];
    let groups = [
        ParamGroup::new("slow", vec![0]).with_lr(0.01),
        ParamGroup::new("no_decay", vec![1])
            .with_weight_decay(0.0)
            .with_dampening(0.2),
    ];
    let config = LcamConfig::cifar100();
    let mut host = HostLcam::<f64>::new(config, &shapes)
        .expect("host")
        .with_groups(&groups)
        .expect("groups");
    let mut core = Lcam::<f64>::with_groups(config, &shapes, &groups).expect("core");
    let init =
        |n: usize, s: f64| -> Vec<f64> { (0..n).map(|i| (i as f64 * 0.7 + s).sin()).collect() };
    let lens = [5usize, 3, 4];
    let mut hp: Vec<Vec<f64>> = lens.iter().map(|&n| init(n, 1.0)).collect();
    let mut cp: Vec<ArrayD<f64>> = shapes
        .iter()
        .zip(&hp)
        .map(|(s, v)| ArrayD::from_shape_vec(IxDyn(s), v.clone()).expect("shape"))
        .collect();
    for (k, loss) in [2.0, 1.0, 1.7, 0.4, 2.2, 0.9].into_iter().enumerate() {
        match k {
            2 => {
                host.set_group_lr(0, 0.2).expect("lr");
                core.set_group_lr(0, 0.2).expect("lr");
                host.set_group_lr(2, 0.05).expect("lr");
                core.set_group_lr(2, 0.05).expect("lr");
            }
            4 => {
                host.reset_lr();
                core.reset_lr();
            }
            _ => {}
        }
        let grads: Vec<Vec<f64>> = lens.iter().map(|&n| init(n, k as f64)).collect();
        let refs: Vec<Option<&[f64]>> = grads.iter().map(|g| Some(g.as_slice())).collect();
        host.step(&mut hp, &refs, &loss).expect("host step");
        let cg: Vec<Option<ArrayD<f64>>> = shapes
            .iter()
            .zip(&grads)
            .map(|(s, g)| Some(ArrayD::from_shape_vec(IxDyn(s), g.clone()).expect("shape")))
            .collect();
        core.step(&mut cp, &cg, loss).expect("core step");
        for (h, c) in hp.iter().zip(&cp) {
            assert_eq!(h.as_slice(), c.as_slice().expect("contiguous"), "step {k}");
        }
    }
    assert_eq!(host.diagnostics().momentum, core.momentum());
}
