//! A Burn MLP trained with lcam-burn for 120 steps over 8 epochs matches lcam-core's reference
//! `Lcam` (ndarray) stepped on the very same gradients.

mod common;

use burn::optim::GradientsParams;
use burn::tensor::Device;
use common::{Mlp, dataset, extract};
use lcam_burn::LcamOptimizer;
use lcam_core::ndarray::{ArrayD, IxDyn};
use lcam_core::{Lcam, LcamConfig, Phase};

fn rel_err(a: &[f32], e: &[f32]) -> f64 {
    let scale = e.iter().fold(0.0_f64, |m, v| m.max(f64::from(v.abs())));
    let diff = a
        .iter()
        .zip(e)
        .fold(0.0_f64, |m, (x, y)| m.max(f64::from((x - y).abs())));
    if diff == 0.0 { 0.0 } else { diff / scale }
}

fn run(config: LcamConfig) -> f64 {
    let device = Device::flex().autodiff();
    device.seed(7);
    let mut model = Mlp::new(&device);
    let data = dataset(11, 15, &device);
    let init = extract(&model, None);
    let mut reference_params: Vec<ArrayD<f32>> = init
        .iter()
        .map(|p| ArrayD::from_shape_vec(IxDyn(&p.shape), p.value.clone()).expect("shape"))
        .collect();
    let mut reference = Lcam::new(config, &reference_params).expect("config");
    let mut optim = LcamOptimizer::new(config).expect("config");
    let (mut steps, mut below) = (0, 0);
    for epoch in 0..8 {
        optim.start_epoch();
        reference.start_epoch();
        // A different number of batches per epoch, and a decaying lr.
        for (x, y) in data.iter().take(12 + epoch % 4) {
            let lr = 0.05 * 0.98_f64.powi(steps);
            let loss = model.loss(x.clone(), y.clone());
            let loss_value = f64::from(loss.clone().into_scalar::<f32>());
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            let ex = extract(&model, Some(&grads));
            let ref_grads: Vec<Option<ArrayD<f32>>> = ex
                .iter()
                .map(|p| {
                    p.grad
                        .as_ref()
                        .map(|g| ArrayD::from_shape_vec(IxDyn(&p.shape), g.clone()).expect("shape"))
                })
                .collect();
            assert!(ref_grads.iter().all(Option::is_some));
            let used = optim.momentum();
            model = optim.step(lr, model, grads, &loss).expect("step");
            reference.set_lr(lr).expect("lr");
            let report = reference
                .step(&mut reference_params, &ref_grads, loss_value)
                .expect("reference step");
            assert_eq!(used, report.momentum, "momentum at step {steps}");
            assert_eq!(optim.phase(), Some(report.phase), "phase at step {steps}");
            below += usize::from(report.phase == Phase::Below);
            steps += 1;
        }
    }
    assert!(steps >= 100, "{steps} steps");
    assert!(
        below > 0 && below < steps as usize,
        "both phases used ({below}/{steps})"
    );
    let ex = extract(&model, None);
    let worst = ex
        .iter()
        .zip(&reference_params)
        .map(|(p, r)| rel_err(&p.value, r.as_slice().expect("contiguous")))
        .fold(0.0_f64, f64::max);
    println!("{steps} steps, {below} below: max rel err burn vs core {worst:.3e}");
    worst
}

#[test]
fn mlp_matches_the_core_reference_asymmetric() {
    let worst = run(LcamConfig::new(0.05, 5e-4, 0.95, 0.9).expect("config"));
    assert!(worst <= 1e-5, "max relative error {worst:e}");
}

#[test]
fn mlp_matches_the_core_reference_nesterov_dampened() {
    let cfg = LcamConfig::new(0.05, 1e-3, 0.9, 0.95)
        .and_then(|c| c.with_dampening(0.1))
        .expect("config");
    let worst = run(cfg);
    assert!(worst <= 1e-5, "max relative error {worst:e}");
    let nesterov = LcamConfig::new(0.05, 0.0, 0.9, 0.95)
        .and_then(|c| c.with_nesterov(true))
        .expect("config");
    let worst = run(nesterov);
    assert!(worst <= 1e-5, "max relative error {worst:e}");
}
