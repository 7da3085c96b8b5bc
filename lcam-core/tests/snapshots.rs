//! Update trajectories pinned by insta snapshots: any change to the update math or the phase
//! rule shows up as a reviewed snapshot diff. Floats are printed with 7 significant digits so
//! the snapshots are stable across machines and libm versions.

use std::fmt::Write;

use lcam_core::ndarray::{Array1, Array2, ArrayD, Axis, IxDyn, arr1, arr2};
use lcam_core::{Lcam, LcamConfig};

struct Run {
    text: String,
}

impl Run {
    fn new(title: &str) -> Self {
        Self {
            text: format!("{title}\nstep epoch      loss       μ  next  params\n"),
        }
    }
    fn row(
        &mut self,
        k: usize,
        epoch: usize,
        loss: f64,
        mu: f64,
        phase: &str,
        params: &[ArrayD<f64>],
    ) {
        let ps: Vec<String> = params
            .iter()
            .flat_map(|p| p.iter().map(|v| format!("{v:+.6e}")))
            .collect();
        let _ = writeln!(
            self.text,
            "{k:>4} {epoch:>5} {loss:>.6e} {mu:>5} {phase:>5}  {}",
            ps.join(" ")
        );
    }
}

/// Runs `epochs × steps` LCAM steps where `grad(params, k)` returns the loss and gradients.
fn trajectory(
    title: &str,
    cfg: LcamConfig,
    mut params: Vec<ArrayD<f64>>,
    epochs: usize,
    steps: usize,
    mut grad: impl FnMut(&[ArrayD<f64>], usize) -> (f64, Vec<ArrayD<f64>>),
) -> String {
    let mut opt = Lcam::new(cfg, &params).expect("valid config");
    let mut run = Run::new(title);
    let mut k = 0;
    for epoch in 0..epochs {
        opt.start_epoch();
        for _ in 0..steps {
            let (loss, g) = grad(&params, k);
            let g: Vec<_> = g.into_iter().map(Some).collect();
            let r = opt.step(&mut params, &g, loss).expect("step");
            run.row(k, epoch, loss, r.momentum, r.phase.as_str(), &params);
            k += 1;
        }
        let s = opt.epoch_stats();
        let _ = writeln!(
            run.text,
            "     epoch {epoch}: {} of {} steps below, mean loss {:.6e}",
            s.steps_below, s.steps, s.mean_loss
        );
    }
    run.text
}

#[test]
fn quadratic_bowl_with_batch_noise() {
    // loss = ½ Σ aᵢ (pᵢ − nᵢ)², a noisy anisotropic bowl; 0.9/0.95 (CIFAR-10 preset).
    let a = arr1(&[1.0, 10.0]);
    let text = trajectory(
        "quadratic, a = (1, 10), noise ±0.1, lr 0.05, 0.9/0.95",
        LcamConfig::cifar10()
            .with_lr(0.05)
            .and_then(|c| c.with_weight_decay(0.0))
            .expect("cfg"),
        vec![arr1(&[1.0, -1.0]).into_dyn()],
        3,
        6,
        |p, k| {
            let n: Array1<f64> = arr1(&[
                0.1 * ((k * 7 % 5) as f64 - 2.0) / 2.0,
                0.05 * ((k * 3 % 4) as f64 - 1.5),
            ]);
            let d = &p[0]
                .view()
                .into_dimensionality::<lcam_core::ndarray::Ix1>()
                .expect("1-d")
                - &n;
            let loss = 0.5 * (&a * &d * &d).sum();
            (loss, vec![(&a * &d).into_dyn()])
        },
    );
    insta::assert_snapshot!(text);
}

#[test]
fn rosenbrock() {
    // f(x, y) = (1 − x)² + 100 (y − x²)², from (−1.2, 1); sparse priority 0.95/0.9, nesterov.
    let text = trajectory(
        "rosenbrock from (-1.2, 1), lr 1e-4, 0.95/0.9, nesterov",
        LcamConfig::new(1e-4, 0.0, 0.95, 0.9)
            .and_then(|c| c.with_nesterov(true))
            .expect("cfg"),
        vec![arr1(&[-1.2, 1.0]).into_dyn()],
        4,
        5,
        |p, _| {
            let (x, y) = (p[0][[0]], p[0][[1]]);
            let loss = (1.0 - x).powi(2) + 100.0 * (y - x * x).powi(2);
            let g = arr1(&[
                -2.0 * (1.0 - x) - 400.0 * x * (y - x * x),
                200.0 * (y - x * x),
            ]);
            (loss, vec![g.into_dyn()])
        },
    );
    insta::assert_snapshot!(text);
}

#[test]
fn softmax_regression_with_recorded_losses() {
    // 3-class softmax regression on 12 fixed points, mini-batches of 4, weight decay and
    // dampening; the losses fed to LCAM are the recorded batch cross-entropies.
    let x: Array2<f64> = arr2(&[
        [1.0, 0.2],
        [0.8, -0.1],
        [0.9, 0.4],
        [-0.2, 1.0],
        [0.1, 0.9],
        [-0.3, 0.7],
        [-1.0, -0.8],
        [-0.7, -1.1],
        [-0.9, -0.4],
        [0.5, 0.5],
        [-0.5, 0.4],
        [0.3, -0.9],
    ]);
    let y = [0usize, 0, 0, 1, 1, 1, 2, 2, 2, 0, 1, 2];
    let text = trajectory(
        "softmax regression, 12 points, batch 4, lr 0.5, wd 1e-3, dampening 0.1, 0.93/0.9",
        LcamConfig::cifar100()
            .with_lr(0.5)
            .and_then(|c| c.with_weight_decay(1e-3))
            .and_then(|c| c.with_dampening(0.1))
            .expect("cfg"),
        vec![ArrayD::zeros(IxDyn(&[2, 3])), ArrayD::zeros(IxDyn(&[3]))],
        3,
        3,
        |p, k| {
            let w = p[0]
                .view()
                .into_dimensionality::<lcam_core::ndarray::Ix2>()
                .expect("2-d");
            let b = p[1]
                .view()
                .into_dimensionality::<lcam_core::ndarray::Ix1>()
                .expect("1-d");
            let rows: Vec<usize> = (0..4).map(|i| (k * 4 + i) % 12).collect();
            let xb = x.select(Axis(0), &rows);
            let logits = xb.dot(&w) + b;
            let mut gw = Array2::<f64>::zeros((2, 3));
            let mut gb = Array1::<f64>::zeros(3);
            let mut loss = 0.0;
            for (i, row) in logits.axis_iter(Axis(0)).enumerate() {
                let m = row.fold(f64::NEG_INFINITY, |a, &v| a.max(v));
                let e = row.mapv(|v| (v - m).exp());
                let z = e.sum();
                let mut prob = e / z;
                let t = y[rows[i]];
                loss += -(prob[t]).ln();
                prob[t] -= 1.0;
                gb += &prob;
                for d in 0..2 {
                    gw.row_mut(d).scaled_add(xb[[i, d]], &prob);
                }
            }
            let n = rows.len() as f64;
            (loss / n, vec![(gw / n).into_dyn(), (gb / n).into_dyn()])
        },
    );
    insta::assert_snapshot!(text);
}
