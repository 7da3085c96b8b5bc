//! One test per rule of LCAM-SPEC §1 (the base update) and §2 (the phase controller), each named
//! after the rule it pins, with closed-form expected values.

use lcam_core::ndarray::{ArrayD, arr1};
use lcam_core::{Lcam, LcamConfig, LcamError, Phase, PhasedMomentum, StepParams, sgd_update};

fn v(x: &[f64]) -> ArrayD<f64> {
    arr1(x).into_dyn()
}

fn hp(lr: f64, wd: f64, mu: f64, damp: f64, nesterov: bool) -> StepParams {
    StepParams {
        lr,
        weight_decay: wd,
        momentum: mu,
        dampening: damp,
        nesterov,
    }
}

// ---------------------------------------------------------------- §1 the base update

#[test]
fn spec_1_first_step_buffer_is_a_copy_of_g_without_dampening() {
    let mut p = v(&[1.0, 2.0]);
    let mut b = None;
    sgd_update(
        &mut p,
        &v(&[0.5, -1.0]),
        &mut b,
        &hp(0.1, 0.0, 0.9, 0.5, false),
    );
    // b = g (no (1 − τ) factor, μ unused), p = p − η·b
    assert_eq!(b, Some(v(&[0.5, -1.0])));
    assert_eq!(p, v(&[1.0 - 0.1 * 0.5, 2.0 + 0.1]));
}

#[test]
fn spec_1_later_steps_use_mu_b_plus_one_minus_tau_g() {
    let mut p = v(&[0.0]);
    let mut b = Some(v(&[2.0]));
    sgd_update(&mut p, &v(&[1.0]), &mut b, &hp(0.5, 0.0, 0.75, 0.5, false));
    // b = 0.75·2 + 0.5·1 = 2.0, p = 0 − 0.5·2 = −1
    assert_eq!(b, Some(v(&[2.0])));
    assert_eq!(p, v(&[-1.0]));
}

#[test]
fn spec_1_weight_decay_is_coupled_and_added_before_momentum() {
    let mut p = v(&[2.0]);
    let mut b = Some(v(&[1.0]));
    sgd_update(&mut p, &v(&[1.0]), &mut b, &hp(0.5, 0.25, 0.5, 0.0, false));
    // g = 1 + 0.25·2 = 1.5; b = 0.5·1 + 1.5 = 2.0; p = 2 − 0.5·2 = 1
    assert_eq!(b, Some(v(&[2.0])));
    assert_eq!(p, v(&[1.0]));
}

#[test]
fn spec_1_nesterov_steps_along_g_plus_mu_b() {
    let mut p = v(&[0.0]);
    let mut b = Some(v(&[1.0]));
    sgd_update(&mut p, &v(&[2.0]), &mut b, &hp(0.25, 0.0, 0.5, 0.0, true));
    // b = 0.5·1 + 2 = 2.5; d = 2 + 0.5·2.5 = 3.25; p = −0.8125
    assert_eq!(b, Some(v(&[2.5])));
    assert_eq!(p, v(&[-0.8125]));
}

#[test]
fn spec_1_zero_momentum_leaves_the_buffer_untouched_as_pytorch() {
    let mut p = v(&[1.0]);
    let mut b = Some(v(&[7.0]));
    sgd_update(&mut p, &v(&[2.0]), &mut b, &hp(0.5, 0.0, 0.0, 0.3, false));
    assert_eq!(b, Some(v(&[7.0])));
    assert_eq!(p, v(&[0.0]));
    let mut none = None;
    sgd_update(
        &mut p,
        &v(&[2.0]),
        &mut none,
        &hp(0.5, 0.0, 0.0, 0.0, false),
    );
    assert_eq!(none, None, "no buffer is created while μ = 0");
}

#[test]
fn spec_1_absent_gradient_keeps_buffer_and_value_and_buffers_start_per_tensor() {
    let mut params = vec![v(&[1.0]), v(&[1.0])];
    let mut opt =
        Lcam::new(LcamConfig::new(0.5, 0.0, 0.5, 0.5).expect("cfg"), &params).expect("opt");
    opt.step(&mut params, &[Some(v(&[1.0])), None], 1.0)
        .expect("step");
    assert_eq!(params[1], v(&[1.0]), "no gradient: value untouched");
    assert!(opt.buffers()[1].is_none(), "no gradient: no buffer");
    opt.step(&mut params, &[None, Some(v(&[1.0]))], 1.0)
        .expect("step");
    assert_eq!(
        opt.buffers()[0],
        Some(v(&[1.0])),
        "buffer untouched while absent"
    );
    // Tensor 1's first step: b = g even though the optimizer already took a step.
    assert_eq!(opt.buffers()[1], Some(v(&[1.0])));
    assert_eq!(params[1], v(&[0.5]));
}

#[test]
fn spec_1_config_rules_are_validated_with_the_field_named() {
    let base = LcamConfig::cifar10();
    let cases: Vec<(LcamConfig, &str)> = vec![
        (LcamConfig { lr: -0.1, ..base }, "lr"),
        (
            LcamConfig {
                lr: f64::NAN,
                ..base
            },
            "lr",
        ),
        (
            LcamConfig {
                weight_decay: -1e-4,
                ..base
            },
            "weight_decay",
        ),
        (
            LcamConfig {
                momentum_below: 1.0,
                ..base
            },
            "momentum_below",
        ),
        (
            LcamConfig {
                momentum_above: -0.1,
                ..base
            },
            "momentum_above",
        ),
        (
            LcamConfig {
                initial_momentum: 1.5,
                ..base
            },
            "initial_momentum",
        ),
        (
            LcamConfig {
                dampening: 1.5,
                ..base
            },
            "dampening",
        ),
        (
            LcamConfig {
                nesterov: true,
                dampening: 0.1,
                ..base
            },
            "dampening",
        ),
        (
            LcamConfig {
                nesterov: true,
                momentum_below: 0.0,
                ..base
            },
            "momentum_below",
        ),
    ];
    for (cfg, field) in cases {
        match cfg.validate() {
            Err(LcamError::InvalidConfig {
                field: f, value, ..
            }) => {
                assert_eq!(f, field);
                assert!(!value.is_empty());
            }
            other => panic!("{field}: expected InvalidConfig, got {other:?}"),
        }
    }
    assert!(base.validate().is_ok());
    assert!(
        LcamConfig {
            dampening: 1.0,
            ..base
        }
        .validate()
        .is_ok()
    );
    let msg = LcamConfig {
        momentum_below: 1.0,
        ..base
    }
    .validate()
    .expect_err("invalid")
    .to_string();
    assert!(msg.contains("momentum_below") && msg.contains('1'), "{msg}");
}

#[test]
fn spec_1_dampening_defaults_to_zero_when_deserialised() {
    let cfg: LcamConfig = serde_json::from_str(
        r#"{"lr":0.1,"weight_decay":0,"momentum_below":0.9,"momentum_above":0.95,"initial_momentum":0.9}"#,
    )
    .expect("parses");
    assert_eq!(cfg.dampening, 0.0);
    assert!(!cfg.nesterov);
}

// ---------------------------------------------------------------- §2 the phase controller

fn controller(below: f64, above: f64) -> PhasedMomentum {
    PhasedMomentum::new(&LcamConfig::new(0.1, 0.0, below, above).expect("cfg"))
}

#[test]
fn spec_2_first_batch_of_every_epoch_is_above() {
    let mut c = controller(0.95, 0.9);
    assert_eq!(c.observe(5.0).expect("finite"), Phase::Above);
    c.observe(1.0).expect("finite");
    c.start_epoch();
    assert_eq!(
        c.observe(0.001).expect("finite"),
        Phase::Above,
        "ℓ₁ = m₁ after the reset"
    );
}

#[test]
fn spec_2_below_is_strict_less_than_the_mean_including_the_current_batch() {
    let mut c = controller(0.95, 0.9);
    c.observe(1.0).expect("finite");
    c.observe(3.0).expect("finite"); // mean 2
    assert_eq!(
        c.observe(2.0).expect("finite"),
        Phase::Above,
        "ℓ = m is Above"
    );
    assert_eq!(c.observe(1.999).expect("finite"), Phase::Below);
}

#[test]
fn spec_2_decision_sets_the_momentum_of_the_next_step() {
    let mut params = vec![v(&[1.0])];
    let cfg = LcamConfig::new(0.1, 0.0, 0.5, 0.25)
        .expect("cfg")
        .with_initial_momentum(0.75)
        .expect("cfg");
    let mut opt = Lcam::new(cfg, &params).expect("opt");
    let g = [Some(v(&[1.0]))];
    assert_eq!(
        opt.step(&mut params, &g, 4.0).expect("step").momentum,
        0.75,
        "initial"
    );
    assert_eq!(opt.momentum(), 0.25, "4.0 = mean: above");
    let r = opt.step(&mut params, &g, 1.0).expect("step");
    assert_eq!(r.momentum, 0.25, "the step used the previous decision");
    assert_eq!(r.phase, Phase::Below);
    assert_eq!(opt.momentum(), 0.5);
}

#[test]
fn spec_2_last_decision_of_an_epoch_carries_into_the_next_epoch() {
    let mut c = controller(0.95, 0.9);
    c.observe(3.0).expect("finite");
    c.observe(1.0).expect("finite"); // below
    c.start_epoch();
    assert_eq!(c.momentum(), 0.95);
    assert_eq!(c.phase(), Some(Phase::Below));
    assert_eq!(c.epoch_stats().steps, 0);
    assert_eq!(c.epoch_stats().epoch, 1);
}

#[test]
fn spec_2_initial_momentum_before_any_loss() {
    let cfg = LcamConfig::cifar100();
    let c = PhasedMomentum::new(&cfg);
    assert_eq!(c.momentum(), 0.9);
    assert_eq!(c.phase(), None);
    assert_eq!((cfg.momentum_below, cfg.momentum_above), (0.93, 0.9));
}

#[test]
fn spec_2_mean_is_computed_in_f64_including_the_current_loss() {
    // A near tie: with losses 0.1, 0.1, 0.1 the f64 sum is 0.30000000000000004, so
    // m₃ = S₃/3 = 0.10000000000000002 and ℓ₃ = 0.1 < m₃ → Below, while the algebraically
    // equivalent test against m₂ = 0.1 would say Above. The reference takes the inclusive mean.
    let (l1, l2, l3) = (0.1_f64, 0.1_f64, 0.1_f64);
    let s3 = l1 + l2 + l3;
    assert!(
        l3 < s3 / 3.0 && l3 >= (l1 + l2) / 2.0,
        "the premise of this test: a near tie"
    );
    let mut c = controller(0.95, 0.9);
    assert_eq!(c.observe(l1).expect("finite"), Phase::Above);
    assert_eq!(c.observe(l2).expect("finite"), Phase::Above);
    assert_eq!(c.observe(l3).expect("finite"), Phase::Below);
    // Fed as f32 and widened exactly, as `loss.item()` does, the decision is the f64 one.
    let mut c32 = controller(0.95, 0.9);
    for l in [0.1_f32; 3] {
        c32.observe(f64::from(l)).expect("finite");
    }
    assert_eq!(
        c32.phase(),
        Some(Phase::Above),
        "0.1f32 widened sums exactly here"
    );
}

#[test]
fn spec_2_non_finite_loss_is_an_error_and_never_folded_into_the_mean() {
    let mut c = controller(0.95, 0.9);
    c.observe(2.0).expect("finite");
    let before = c.state();
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        match c.observe(bad) {
            Err(LcamError::NonFiniteLoss {
                epoch: 0, step: 2, ..
            }) => {}
            other => panic!("{bad}: {other:?}"),
        }
        assert_eq!(c.state(), before);
    }
    // A finite loss whose sum overflows is rejected too.
    assert!(c.observe(f64::MAX).is_ok());
    assert!(c.observe(f64::MAX).is_err());
}

#[test]
fn spec_2_non_finite_loss_changes_no_parameter() {
    let mut params = vec![v(&[1.0])];
    let mut opt = Lcam::new(LcamConfig::cifar10(), &params).expect("opt");
    let err = opt
        .step(&mut params, &[Some(v(&[1.0]))], f64::NAN)
        .expect_err("NaN");
    assert!(err.to_string().contains("non-finite loss"), "{err}");
    assert_eq!(params[0], v(&[1.0]));
    assert!(opt.buffers()[0].is_none());
}

#[test]
fn spec_2_one_controller_switches_all_parameters_together() {
    let mut params = vec![v(&[1.0]), v(&[1.0, 1.0])];
    let cfg = LcamConfig::new(1.0, 0.0, 0.5, 0.0)
        .and_then(|c| c.with_initial_momentum(0.5))
        .expect("cfg");
    let mut opt = Lcam::new(cfg, &params).expect("opt");
    let g = [Some(v(&[1.0])), Some(v(&[1.0, 1.0]))];
    opt.step(&mut params, &g, 2.0).expect("step"); // μ = 0.5, b = g; above: μ = 0 next
    opt.step(&mut params, &g, 1.0).expect("step"); // μ = 0 step, decides below
    opt.step(&mut params, &g, 1.0).expect("step"); // μ = 0.5 for both tensors
    assert_eq!(opt.buffers()[0], Some(v(&[1.5])));
    assert_eq!(opt.buffers()[1], Some(v(&[1.5, 1.5])));
}

#[test]
fn spec_2_sparse_and_non_sparse_priority_presets() {
    let c10 = LcamConfig::cifar10();
    assert!(
        c10.momentum_below < c10.momentum_above,
        "0.9/0.95: non-sparse priority"
    );
    let c100 = LcamConfig::cifar100();
    assert!(
        c100.momentum_below > c100.momentum_above,
        "0.93/0.9: sparse priority"
    );
    let fixed = LcamConfig::fixed_momentum(0.9);
    assert!(fixed.is_fixed());
    assert_eq!(
        (c10.lr, c10.weight_decay, c10.dampening, c10.nesterov),
        (0.1, 5e-4, 0.0, false)
    );
}

#[test]
fn shape_and_count_mismatches_name_the_tensor() {
    let mut params = vec![v(&[1.0, 2.0])];
    let mut opt = Lcam::new(LcamConfig::cifar10(), &params).expect("opt");
    let err = opt
        .step(&mut params, &[Some(v(&[1.0]))], 1.0)
        .expect_err("shape");
    assert!(
        matches!(err, LcamError::ShapeMismatch { ref tensor, what: "gradient", .. } if tensor == "param 0"),
        "{err}"
    );
    let err = opt.step(&mut params, &[], 1.0).expect_err("count");
    assert!(
        matches!(
            err,
            LcamError::CountMismatch {
                got: 0,
                expected: 1,
                ..
            }
        ),
        "{err}"
    );
    let mut other = vec![v(&[1.0, 2.0, 3.0])];
    let err = opt.step(&mut other, &[None], 1.0).expect_err("param shape");
    assert!(
        matches!(
            err,
            LcamError::ShapeMismatch {
                what: "parameter",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(opt.epoch_stats().steps, 0, "nothing observed after errors");
}
