//! The `Learner` hook: `record_loss` in `TrainStep::step`, `optimize` in `TrainStep::optimize`
//! (the call sequence burn-train's `Learner` makes) gives bit for bit what `LcamOptimizer::step`
//! gives, epochs included; refused steps change nothing.

mod common;

use burn::optim::GradientsParams;
use burn::tensor::Device;
use common::{Mlp, bits, dataset};
use lcam_burn::{LcamBurnError, LcamOptimizer, learner_optimizer};
use lcam_core::{LcamConfig, LcamError};

fn config() -> LcamConfig {
    LcamConfig::new(0.05, 5e-4, 0.95, 0.9).expect("valid")
}

#[test]
fn learner_call_sequence_matches_the_optimizer_bit_for_bit() {
    let device = Device::flex().autodiff();
    let data = dataset(4, 8, &device);
    let steps_per_epoch = data.len() as u64;
    let epochs = 6;

    // Reference: LcamOptimizer with explicit epochs.
    let mut reference = LcamOptimizer::new(config()).expect("optimizer");
    let init = Mlp::new(&device);
    let mut model = init.clone();
    let mut ref_momenta = vec![];
    for _ in 0..epochs {
        reference.start_epoch();
        for (x, y) in &data {
            let loss = model.loss(x.clone(), y.clone());
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            ref_momenta.push(reference.momentum());
            model = reference.step(0.05, model, grads, &loss).expect("step");
        }
    }

    // The Learner's sequence: TrainStep::step records the loss, TrainStep::optimize steps.
    let (mut optim, hook) = learner_optimizer(config(), Some(steps_per_epoch)).expect("hook");
    let mut learned = init;
    let mut momenta = vec![];
    for _ in 0..epochs {
        for (x, y) in &data {
            let loss = learned.loss(x.clone(), y.clone());
            hook.record_loss(&loss).expect("scalar loss");
            let grads = GradientsParams::from_grads(loss.backward(), &learned);
            momenta.push(hook.momentum());
            // The hook is a cheap clone of shared state, as a model field would hold it.
            learned = hook.clone().optimize(&mut optim, 0.05, learned, grads);
        }
    }
    assert_eq!(hook.refused_steps(), 0, "{:?}", hook.last_error());
    assert_eq!(momenta, ref_momenta);
    assert!(
        momenta.contains(&0.95) && momenta.contains(&0.9),
        "the controller must switch in this run: {momenta:?}"
    );
    assert_eq!(bits(&learned), bits(&model));
    assert_eq!(hook.epoch_stats(), reference.epoch_stats());
    assert_eq!(hook.controller_state().0, reference.controller().state());
}

#[test]
fn refused_steps_change_nothing_and_say_why() {
    let device = Device::flex().autodiff();
    let data = dataset(1, 8, &device);
    let (x, y) = &data[0];
    let (mut optim, hook) = learner_optimizer(config(), None).expect("hook");
    let model = Mlp::new(&device);
    let before = bits(&model);

    // No loss recorded.
    let loss = model.loss(x.clone(), y.clone());
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let e = hook
        .try_optimize(&mut optim, 0.05, model, grads)
        .expect_err("no loss");
    assert!(matches!(e.error, LcamBurnError::NoLoss));
    let model = e.module;
    assert_eq!(bits(&model), before);

    // A NaN loss: refused by `optimize`, counted, module unchanged.
    hook.record_loss(f64::NAN).expect("a number");
    let loss = model.loss(x.clone(), y.clone());
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let model = hook.optimize(&mut optim, 0.05, model, grads);
    assert_eq!(bits(&model), before);
    assert_eq!(hook.refused_steps(), 1);
    assert!(
        hook.last_error().is_some_and(|e| e.contains("non-finite")),
        "{:?}",
        hook.last_error()
    );
    assert_eq!(hook.epoch_stats().steps, 0);

    // Zero steps per epoch is a configuration error.
    assert!(matches!(
        learner_optimizer(config(), Some(0)),
        Err(LcamBurnError::Core(LcamError::InvalidConfig {
            field: "steps_per_epoch",
            ..
        }))
    ));
}

#[test]
fn controller_state_round_trips_through_a_new_hook() {
    let device = Device::flex().autodiff();
    let data = dataset(3, 8, &device);
    let (mut optim, hook) = learner_optimizer(config(), Some(3)).expect("hook");
    let mut model = Mlp::new(&device);
    // One epoch of 3 steps and 2 of the next.
    for (x, y) in data.iter().take(5) {
        let loss = model.loss(x.clone(), y.clone());
        hook.record_loss(&loss).expect("loss");
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = hook.optimize(&mut optim, 0.05, model, grads);
    }
    let (state, in_epoch) = hook.controller_state();
    assert_eq!(in_epoch, 2);
    let (_, fresh) = learner_optimizer(config(), Some(3)).expect("hook");
    fresh.restore_controller(state, in_epoch).expect("restore");
    assert_eq!(fresh.controller_state(), (state, 2));
    assert_eq!(fresh.momentum(), hook.momentum());
}
