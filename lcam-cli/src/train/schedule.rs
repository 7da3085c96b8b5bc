//! Learning-rate schedules, including the demo's two exactly (SPEC §3).
//!
//! Grammar (`--schedule`):
//! - `constant`
//! - `step:F@E1,E2,…` — lr × F after each listed (1-based) epoch: the demo's is `step:0.2@31,61,91`
//!   (0.1 for epochs 1–31, 0.02 for 32–61, 0.004 for 62–91, 0.0008 after);
//! - `exp:G@E` — from epoch E on (1-based), lr × G before every step: the demo's is
//!   `exp:0.99985@32`;
//! - `cosine` — cosine annealing per step from the base lr to 0 over the run.
//!
//! The exponential schedule multiplies the previous lr (as the demo's loop does), so its state is
//! the current lr, which checkpoints carry.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Schedule {
    /// The base lr throughout.
    Constant,
    /// lr × `factor` after each epoch in `after` (1-based).
    Step {
        /// Multiplier at each milestone.
        factor: f64,
        /// Epochs (1-based) after which the lr is multiplied.
        after: Vec<u64>,
    },
    /// lr × `gamma` before every step of epoch `from` (1-based) and later.
    Exp {
        /// Per-step multiplier.
        gamma: f64,
        /// First epoch (1-based) of the decay.
        from: u64,
    },
    /// Cosine annealing per step to 0.
    Cosine,
}

/// A schedule string that does not parse.
#[derive(Debug, Error, PartialEq)]
#[error(
    "bad schedule `{input}`: {reason} (expected constant, cosine, step:F@E1,E2,… or exp:G@E, e.g. step:0.2@31,61,91)"
)]
pub struct ScheduleError {
    input: String,
    reason: String,
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| ScheduleError {
            input: s.to_string(),
            reason: reason.to_string(),
        };
        let num = |v: &str, what: &str| -> Result<f64, ScheduleError> {
            let x: f64 = v
                .trim()
                .parse()
                .map_err(|_| err(&format!("{what} `{v}` is not a number")))?;
            if x.is_finite() && x > 0.0 {
                Ok(x)
            } else {
                Err(err(&format!("{what} `{v}` must be finite and > 0")))
            }
        };
        let epoch = |v: &str| -> Result<u64, ScheduleError> {
            match v.trim().parse::<u64>() {
                Ok(e) if e >= 1 => Ok(e),
                _ => Err(err(&format!("epoch `{v}` must be an integer >= 1"))),
            }
        };
        match s.trim() {
            "constant" => return Ok(Schedule::Constant),
            "cosine" => return Ok(Schedule::Cosine),
            _ => {}
        }
        let (kind, rest) = s.split_once(':').ok_or_else(|| err("unknown schedule"))?;
        let (value, epochs) = rest.split_once('@').ok_or_else(|| err("missing `@`"))?;
        match kind.trim() {
            "step" => {
                let factor = num(value, "factor")?;
                let after = epochs
                    .split(',')
                    .map(epoch)
                    .collect::<Result<Vec<_>, _>>()?;
                if after.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(err("milestones must increase"));
                }
                Ok(Schedule::Step { factor, after })
            }
            "exp" => Ok(Schedule::Exp {
                gamma: num(value, "gamma")?,
                from: epoch(epochs)?,
            }),
            _ => Err(err(&format!("unknown kind `{kind}`"))),
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Constant => write!(f, "constant"),
            Schedule::Cosine => write!(f, "cosine"),
            Schedule::Step { factor, after } => {
                let e: Vec<String> = after.iter().map(u64::to_string).collect();
                write!(f, "step:{factor}@{}", e.join(","))
            }
            Schedule::Exp { gamma, from } => write!(f, "exp:{gamma}@{from}"),
        }
    }
}

impl Schedule {
    /// The demo's step schedule for Figs 3–4.
    pub fn paper_step() -> Self {
        Schedule::Step {
            factor: 0.2,
            after: vec![31, 61, 91],
        }
    }

    /// The demo's exponential schedule for Fig 5.
    pub fn paper_exp() -> Self {
        Schedule::Exp {
            gamma: 0.99985,
            from: 32,
        }
    }

    /// The learning rate of a step.
    ///
    /// `epoch` is 0-based, `step` the 0-based global step, `total_steps` the run's length, and
    /// `prev` the lr of the previous step (`None` for the very first step of the run).
    pub fn lr(&self, base: f64, epoch: u64, step: u64, total_steps: u64, prev: Option<f64>) -> f64 {
        let epoch1 = epoch + 1;
        match self {
            Schedule::Constant => base,
            Schedule::Step { factor, after } => {
                let passed = after.iter().filter(|&&e| e < epoch1).count();
                base * factor.powi(passed as i32)
            }
            Schedule::Exp { gamma, from } => {
                let prev = prev.unwrap_or(base);
                if epoch1 >= *from { prev * gamma } else { prev }
            }
            Schedule::Cosine => {
                let t = step as f64 / total_steps.max(1) as f64;
                base * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_step_schedule_is_spec_3() {
        let s: Schedule = "step:0.2@31,61,91".parse().expect("parses");
        assert_eq!(s, Schedule::paper_step());
        let at = |epoch1: u64| s.lr(0.1, epoch1 - 1, 0, 1, None);
        for (e, want) in [
            (1, 0.1),
            (31, 0.1),
            (32, 0.02),
            (61, 0.02),
            (62, 0.004),
            (91, 0.004),
            (92, 0.0008),
            (150, 0.0008),
        ] {
            assert!(
                (at(e) - want).abs() < 1e-15,
                "epoch {e}: {} vs {want}",
                at(e)
            );
        }
    }

    #[test]
    fn the_demo_exponential_schedule_multiplies_before_every_step_from_epoch_32() {
        let s: Schedule = "exp:0.99985@32".parse().expect("parses");
        assert_eq!(s, Schedule::paper_exp());
        let spe = 391;
        let mut lr = None;
        let mut seen = vec![];
        for step in 0..(33 * spe) {
            let epoch = step / spe;
            let v = s.lr(0.1, epoch, step, 150 * spe, lr);
            lr = Some(v);
            seen.push(v);
        }
        assert_eq!(seen[31 * spe as usize - 1], 0.1, "last step of epoch 31");
        assert_eq!(
            seen[31 * spe as usize],
            0.1 * 0.99985,
            "first step of epoch 32"
        );
        assert_eq!(seen[31 * spe as usize + 1], 0.1 * 0.99985 * 0.99985);
    }

    #[test]
    fn cosine_and_constant() {
        assert_eq!(Schedule::Constant.lr(0.3, 7, 9, 10, Some(0.01)), 0.3);
        assert_eq!(Schedule::Cosine.lr(0.2, 0, 0, 100, None), 0.2);
        assert!((Schedule::Cosine.lr(0.2, 0, 50, 100, None) - 0.1).abs() < 1e-15);
    }

    #[test]
    fn bad_schedules_name_the_problem() {
        for (s, part) in [
            ("linear", "unknown schedule"),
            ("step:0.2", "missing `@`"),
            ("step:x@31", "factor `x`"),
            ("step:0.2@31,0", "epoch `0`"),
            ("step:0.2@61,31", "increase"),
            ("exp:-1@32", "must be finite and > 0"),
            ("warm:1@2", "unknown kind `warm`"),
        ] {
            let e = s.parse::<Schedule>().expect_err(s).to_string();
            assert!(e.contains(part) && e.contains(s), "{s}: {e}");
        }
        for s in ["constant", "cosine", "step:0.2@31,61,91", "exp:0.99985@32"] {
            assert_eq!(s.parse::<Schedule>().expect(s).to_string(), s);
        }
    }
}
