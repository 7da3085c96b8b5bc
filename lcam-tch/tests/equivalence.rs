//! lcam-tch against libtorch itself: a small MLP trained for 13 epochs × 16 batches = 208 steps
//! with `lcam_tch::Lcam`, and again with tch's own `nn::Sgd` whose momentum is switched after
//! every step exactly as the authors' demo does (running mean of `loss.item()` in f64, then
//! `set_momentum`). On the CPU the parameters and losses agree bit for bit (asserted); on CUDA
//! within 1e-5 relative.

mod common;

use common::{batches, data, loss, max_rel_err, model};
use lcam_tch::{Lcam, LcamConfig};
use tch::nn::OptimizerConfig;
use tch::{Device, Kind, nn};

const EPOCHS: i64 = 13;
const HIDDEN: i64 = 32;

/// The demo's step schedule, compressed: lr × 0.2 after the 5th and 10th epoch.
fn lr_of(base: f64, epoch: i64) -> f64 {
    match epoch {
        0..5 => base,
        5..10 => base * 0.2,
        _ => base * 0.04,
    }
}

struct Run {
    vs: nn::VarStore,
    losses: Vec<f64>,
    momenta: Vec<f64>,
}

fn train_lcam(config: LcamConfig, device: Device, kind: Kind) -> Run {
    let (vs, net) = model(0, device, kind, HIDDEN);
    let (x, y) = data(device, kind);
    let mut opt = Lcam::new(&vs, config).expect("optimizer");
    assert_eq!(opt.names().count(), 6, "fc1..fc3, weight and bias");
    let (mut losses, mut momenta) = (vec![], vec![]);
    for epoch in 0..EPOCHS {
        opt.start_epoch();
        opt.set_lr(lr_of(config.lr, epoch)).expect("lr");
        for (bx, by) in batches(&x, &y, epoch) {
            let l = loss(&net, &bx, &by);
            momenta.push(opt.momentum());
            opt.backward_step(&l).expect("step");
            losses.push(l.double_value(&[]));
        }
    }
    Run {
        vs,
        losses,
        momenta,
    }
}

/// The authors' demo, transcribed: plain libtorch SGD, momentum switched by hand.
fn train_demo(config: LcamConfig, device: Device, kind: Kind) -> Run {
    let (vs, net) = model(0, device, kind, HIDDEN);
    let (x, y) = data(device, kind);
    let mut opt = nn::Sgd {
        momentum: config.initial_momentum,
        dampening: 0.0,
        wd: config.weight_decay,
        nesterov: false,
    }
    .build(&vs, config.lr)
    .expect("nn::Sgd");
    let (mut losses, mut momenta) = (vec![], vec![]);
    let mut momentum = config.initial_momentum;
    for epoch in 0..EPOCHS {
        opt.set_lr(lr_of(config.lr, epoch));
        let (mut sum, mut count) = (0.0_f64, 0_u32);
        for (bx, by) in batches(&x, &y, epoch) {
            let l = loss(&net, &bx, &by);
            momenta.push(momentum);
            opt.backward_step(&l);
            let item = l.double_value(&[]);
            losses.push(item);
            sum += item;
            count += 1;
            let mean = sum / f64::from(count);
            momentum = if item < mean {
                config.momentum_below
            } else {
                config.momentum_above
            };
            opt.set_momentum(momentum);
        }
    }
    Run {
        vs,
        losses,
        momenta,
    }
}

fn compare(config: LcamConfig, device: Device, kind: Kind, tol: f64) {
    let ours = train_lcam(config, device, kind);
    let demo = train_demo(config, device, kind);
    let steps = ours.losses.len();
    assert!(steps >= 200, "{steps} steps");
    assert_eq!(ours.momenta, demo.momenta, "momentum sequences");
    let below = ours
        .momenta
        .iter()
        .filter(|&&m| m == config.momentum_below)
        .count();
    assert!(below > 0 && below < steps, "both phases are exercised");
    let (rel, worst) = max_rel_err(&ours.vs, &demo.vs);
    let exact = common::bit_identical(&ours.vs, &demo.vs) && ours.losses == demo.losses;
    eprintln!(
        "{device:?} {kind:?} {}/{}: {steps} steps, first loss {:.4}, last {:.4}, \
         max relative error {rel:e} (`{worst}`), bit-exact: {exact}",
        config.momentum_below,
        config.momentum_above,
        ours.losses[0],
        ours.losses[steps - 1],
    );
    assert!(
        rel <= tol,
        "max relative error {rel:e} in `{worst}` > {tol:e}"
    );
    // README: "bit-exact vs `nn::Sgd` with switched momentum" — on the CPU, every parameter and
    // every loss bit for bit (CUDA's kernels may round differently: held to `tol`).
    if device == Device::Cpu {
        assert!(
            exact,
            "not bit-exact on the CPU (max relative error {rel:e} in `{worst}`)"
        );
    }
    assert!(ours.losses[steps - 1] < ours.losses[0], "the model learns");
}

#[test]
fn matches_libtorch_sgd_switched_like_the_demo_non_sparse_priority() {
    compare(LcamConfig::cifar10(), Device::Cpu, Kind::Float, 1e-5);
}

#[test]
fn matches_libtorch_sgd_switched_like_the_demo_sparse_priority() {
    let config = LcamConfig::new(0.1, 5e-4, 0.95, 0.9)
        .and_then(|c| c.with_initial_momentum(0.9))
        .expect("config");
    compare(config, Device::Cpu, Kind::Float, 1e-5);
}

#[test]
fn matches_libtorch_sgd_in_f64() {
    compare(LcamConfig::cifar100(), Device::Cpu, Kind::Double, 1e-12);
}

#[test]
fn matches_libtorch_sgd_on_cuda() {
    if !tch::Cuda::is_available() {
        lcam_testkit::skip(
            lcam_testkit::Need::Gpu,
            "matches_libtorch_sgd_on_cuda",
            "no CUDA device (tch::Cuda::is_available() is false)",
        );
        return;
    }
    compare(LcamConfig::cifar10(), Device::Cuda(0), Kind::Float, 1e-5);
}

#[test]
fn a_fixed_momentum_is_plain_libtorch_sgd() {
    // Equal momenta: no switching at all, so this is exactly nn::Sgd.
    let config = LcamConfig::fixed_momentum(0.9);
    let ours = train_lcam(config, Device::Cpu, Kind::Float);
    let demo = train_demo(config, Device::Cpu, Kind::Float);
    assert_eq!(max_rel_err(&ours.vs, &demo.vs).0, 0.0);
}
