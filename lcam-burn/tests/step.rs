//! Step contract: the loss is required and checked; a refused step changes nothing.

mod common;

use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use common::{Mlp, bits, dataset};
use lcam_burn::{LcamBurnConfig, LcamBurnError, LcamOptimizer};
use lcam_core::{LcamConfig, LcamError, Phase};

fn grads_and_loss(model: &Mlp, x: &Tensor<2>, y: &Tensor<2>) -> (GradientsParams, Tensor<1>) {
    let loss = model.loss(x.clone(), y.clone());
    (GradientsParams::from_grads(loss.backward(), model), loss)
}

#[test]
fn config_defaults_follow_pytorch_not_burn() {
    let cfg = LcamBurnConfig::new(0.95, 0.9);
    assert_eq!(cfg.dampening, 0.0);
    assert!(!cfg.nesterov);
    let core = cfg.to_lcam().expect("valid");
    assert_eq!(core.initial_momentum, 0.9);
    assert_eq!(
        LcamBurnConfig::from_lcam(&core).to_lcam().expect("valid"),
        core
    );
    let bad = LcamBurnConfig::new(0.9, 1.0).init();
    assert!(matches!(
        bad,
        Err(LcamBurnError::Core(LcamError::InvalidConfig {
            field: "momentum_above",
            ..
        }))
    ));
    let nesterov = LcamBurnConfig::new(0.9, 0.9)
        .with_nesterov(true)
        .with_dampening(0.1)
        .init();
    assert!(matches!(
        nesterov,
        Err(LcamBurnError::Core(LcamError::InvalidConfig {
            field: "dampening",
            ..
        }))
    ));
}

#[test]
fn refused_steps_change_nothing() {
    let device = Device::flex().autodiff();
    let data = dataset(9, 3, &device);
    let model = Mlp::new(&device);
    let mut optim = LcamBurnConfig::new(0.95, 0.9).init().expect("config");
    let mut twin = LcamBurnConfig::new(0.95, 0.9).init().expect("config");
    optim.start_epoch();
    twin.start_epoch();
    let (x, y) = &data[0];
    let (g, loss) = grads_and_loss(&model, x, y);
    let (g2, _) = grads_and_loss(&model, x, y);
    let model2 = twin.step(0.1, model.clone(), g2, &loss).expect("step");
    let model = optim.step(0.1, model, g, &loss).expect("step");
    assert_eq!(bits(&model), bits(&model2));
    let before = bits(&model);

    let refuse = |optim: &mut LcamOptimizer, model: Mlp, loss: Tensor<1>, lr: f64| {
        let (g, _) = grads_and_loss(&model, x, y);
        let err = optim.step(lr, model, g, &loss).expect_err("refused");
        (err.error, err.module)
    };
    let nan = Tensor::<1>::from_data([f32::NAN], &device);
    let (e, model) = refuse(&mut optim, model, nan, 0.1);
    assert!(
        matches!(e, LcamBurnError::Core(LcamError::NonFiniteLoss { .. })),
        "{e}"
    );
    let vector = Tensor::<1>::from_data([1.0_f32, 2.0], &device);
    let (e, model) = refuse(&mut optim, model, vector, 0.1);
    assert!(
        matches!(&e, LcamBurnError::NonScalarLoss { shape } if shape == &[2]),
        "{e}"
    );
    let (e, model) = refuse(&mut optim, model, loss.clone(), -1.0);
    assert!(
        matches!(
            e,
            LcamBurnError::Core(LcamError::InvalidConfig { field: "lr", .. })
        ),
        "{e}"
    );
    let (g, _) = grads_and_loss(&model, x, y);
    let e = optim
        .step(0.1, model, g, f64::INFINITY)
        .expect_err("refused");
    let model = e.module;
    assert_eq!(bits(&model), before, "a refused step changed the module");
    assert_eq!(optim.controller(), twin.controller());
    assert_eq!(optim.epoch_stats().steps, 1);

    // And the next accepted step is the one the twin takes.
    let (x, y) = &data[1];
    let (g, loss) = grads_and_loss(&model, x, y);
    let (g2, loss2) = grads_and_loss(&model2, x, y);
    let model = optim.step(0.1, model, g, &loss).expect("step");
    let model2 = twin.step(0.1, model2, g2, &loss2).expect("step");
    assert_eq!(bits(&model), bits(&model2));
    assert_eq!(optim.controller(), twin.controller());
}

#[test]
fn phases_and_momenta_follow_the_controller() {
    let device = Device::flex().autodiff();
    let data = dataset(1, 2, &device);
    let mut model = Mlp::new(&device);
    let mut optim = LcamOptimizer::new(LcamConfig::cifar100()).expect("config");
    assert_eq!(optim.momentum(), 0.9); // initial momentum
    assert_eq!(optim.phase(), None);
    optim.start_epoch();
    for loss in [3.0_f64, 1.0, 2.0] {
        let (x, y) = &data[0];
        let (g, _) = grads_and_loss(&model, x, y);
        model = optim.step(0.01, model, g, loss).expect("step");
    }
    // 3 → above (μ 0.9), 1 < 2 → below (μ 0.93), 2 ≥ 2 → above.
    assert_eq!(optim.phase(), Some(Phase::Above));
    assert_eq!(optim.momentum(), 0.9);
    let stats = optim.epoch_stats();
    assert_eq!(
        (stats.steps, stats.steps_below, stats.mean_loss),
        (3, 1, 2.0)
    );
    optim.start_epoch();
    assert_eq!(optim.epoch_stats().epoch, 1);
    assert_eq!(optim.lr(), 0.01);
}

#[test]
fn step_errors_convert_with_question_mark() {
    fn run() -> Result<(), LcamBurnError> {
        let device = Device::flex().autodiff();
        let data = dataset(2, 1, &device);
        let model = Mlp::new(&device);
        let mut optim = LcamBurnConfig::new(0.9, 0.9).init()?;
        let (x, y) = &data[0];
        let (g, _) = grads_and_loss(&model, x, y);
        optim.step(0.1, model, g, f64::NAN)?;
        Ok(())
    }
    assert!(matches!(
        run(),
        Err(LcamBurnError::Core(LcamError::NonFiniteLoss { .. }))
    ));
}
