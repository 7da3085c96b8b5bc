//! An independent reference of SPEC §1–2 for the randomized equivalence rows: written from the
//! spec's pseudo-code, sharing nothing with lcam-core's update or controller (no `sgd_update`,
//! no `PhasedMomentum`, not even `Trace::resolved_steps`). Every parameter is stepped in f64;
//! every operation's result is rounded to the trace's dtype (so an f32 trace is stepped in f32
//! arithmetic, one rounding per operation, no fused multiply-add), and the adapters must land
//! within the dtype's tolerance of it.

use lcam_core::{DType, NamedTensor, Phase, Trace, Trajectory};

/// The trajectory SPEC §1–2 prescribes for `trace`, in f64.
pub fn replay(trace: &Trace) -> Trajectory {
    let c = &trace.config;
    let f32 = trace.dtype == DType::F32;
    let r = |x: f64| if f32 { f64::from(x as f32) } else { x };
    let (wd, keep) = (r(c.weight_decay), r(1.0 - c.dampening));
    let mut params: Vec<Vec<f64>> = trace.params.iter().map(|p| p.data.clone()).collect();
    let mut buffers: Vec<Option<Vec<f64>>> = vec![None; params.len()];
    // §2: before any loss, μ_initial.
    let mut mu = c.initial_momentum;
    let (mut sum, mut count) = (0.0f64, 0u64);
    let mut epoch = None;
    let (mut momenta, mut phases) = (vec![], vec![]);
    for step in &trace.steps {
        // A change of the epoch index starts an epoch: the running mean restarts.
        if epoch.is_some_and(|e| e != step.epoch) {
            sum = 0.0;
            count = 0;
        }
        epoch = Some(step.epoch);
        let lr = step.lr.unwrap_or(c.lr);
        momenta.push(mu);
        for ((p, b), g) in params.iter_mut().zip(&mut buffers).zip(&step.grads) {
            // No gradient: value and buffer untouched.
            let Some(g) = g else { continue };
            let grad: Vec<f64> = g
                .iter()
                .zip(p.iter())
                .map(|(g, p)| r(g + r(wd * p)))
                .collect();
            let buf = match b.take() {
                // First step of this tensor: the buffer is a copy of g.
                None => grad.clone(),
                Some(old) => old
                    .iter()
                    .zip(&grad)
                    .map(|(b, g)| r(r(r(mu) * b) + r(keep * g)))
                    .collect(),
            };
            for i in 0..p.len() {
                let d = if c.nesterov {
                    r(grad[i] + r(r(mu) * buf[i]))
                } else {
                    buf[i]
                };
                p[i] = r(p[i] - r(r(lr) * d));
            }
            *b = Some(buf);
        }
        // §2: the phase after the step, from the running mean including this loss.
        // (Traces hold finite losses only: `Trace::new` refuses others.)
        sum += step.loss;
        count += 1;
        let phase = if step.loss < sum / count as f64 {
            Phase::Below
        } else {
            Phase::Above
        };
        mu = if phase == Phase::Below {
            c.momentum_below
        } else {
            c.momentum_above
        };
        phases.push(phase);
    }
    Trajectory {
        format: "lcam-trajectory/1".into(),
        params: trace
            .params
            .iter()
            .zip(params)
            .map(|(t, data)| NamedTensor {
                name: t.name.clone(),
                shape: t.shape.clone(),
                data,
            })
            .collect(),
        momenta,
        phases,
    }
}
