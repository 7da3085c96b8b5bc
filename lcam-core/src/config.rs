//! [`LcamConfig`]: the hyper-parameters of LCAM, validated on construction.

use serde::{Deserialize, Serialize};

use crate::error::{LcamError, Result};

/// Hyper-parameters of an LCAM optimizer (SPEC §1, §2).
///
/// The serde field names are part of the public trace format (`lcam-trace/1`) and never change.
/// A configuration written `A/B` in the paper means `momentum_below = A`, `momentum_above = B`.
///
/// Construct it with [`LcamConfig::new`], a preset, or deserialize it and call
/// [`LcamConfig::validate`]; every constructor in this crate validates.
///
/// ```
/// use lcam_core::LcamConfig;
/// let cfg = LcamConfig::cifar10().with_lr(0.05)?;
/// assert_eq!((cfg.momentum_below, cfg.momentum_above), (0.9, 0.95));
/// # Ok::<(), lcam_core::LcamError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LcamConfig {
    /// Learning rate η ≥ 0.
    pub lr: f64,
    /// Coupled L2 weight decay λ ≥ 0, added to the gradient before momentum.
    pub weight_decay: f64,
    /// Momentum used on the step after a batch whose loss was *below* the epoch's running mean.
    pub momentum_below: f64,
    /// Momentum used on the step after a batch whose loss was *at or above* the running mean.
    pub momentum_above: f64,
    /// Momentum in force before any loss was observed (the demo constructs SGD with 0.9).
    pub initial_momentum: f64,
    /// Dampening τ ∈ [0, 1]. Defaults to 0, as in PyTorch (Burn's default of 0.1 is *not* used).
    #[serde(default)]
    pub dampening: f64,
    /// Nesterov momentum; requires `dampening == 0` and every momentum `> 0`.
    #[serde(default)]
    pub nesterov: bool,
}

impl LcamConfig {
    /// A validated configuration with dampening 0, no Nesterov, and `initial_momentum` equal to
    /// `momentum_above` (the phase of an epoch's first batch).
    pub fn new(
        lr: f64,
        weight_decay: f64,
        momentum_below: f64,
        momentum_above: f64,
    ) -> Result<Self> {
        Self {
            lr,
            weight_decay,
            momentum_below,
            momentum_above,
            initial_momentum: momentum_above,
            dampening: 0.0,
            nesterov: false,
        }
        .validate()
    }

    /// The demo's CIFAR-10 setting (SPEC §3, Fig. 3/5): lr 0.1, weight decay 5e-4,
    /// 0.9/0.95 (non-sparse priority), initial momentum 0.9.
    pub fn cifar10() -> Self {
        Self::paper(0.9, 0.95)
    }

    /// The demo's CIFAR-100 setting (SPEC §3, Fig. 5): lr 0.1, weight decay 5e-4,
    /// 0.93/0.9 (sparse priority), initial momentum 0.9.
    pub fn cifar100() -> Self {
        Self::paper(0.93, 0.9)
    }

    /// Plain SGD with a fixed momentum (the paper's baselines, e.g. `fixed_momentum(0.9)`),
    /// lr 0.1 and weight decay 5e-4. Bit-identical to `torch.optim.SGD`.
    ///
    /// Panics never; an out-of-range momentum is reported by [`LcamConfig::validate`].
    pub fn fixed_momentum(momentum: f64) -> Self {
        let mut c = Self::paper(momentum, momentum);
        c.initial_momentum = momentum;
        c
    }

    fn paper(below: f64, above: f64) -> Self {
        Self {
            lr: 0.1,
            weight_decay: 5e-4,
            momentum_below: below,
            momentum_above: above,
            initial_momentum: 0.9,
            dampening: 0.0,
            nesterov: false,
        }
    }

    /// Returns a copy with another learning rate, validated.
    pub fn with_lr(mut self, lr: f64) -> Result<Self> {
        self.lr = lr;
        self.validate()
    }

    /// Returns a copy with another weight decay, validated.
    pub fn with_weight_decay(mut self, weight_decay: f64) -> Result<Self> {
        self.weight_decay = weight_decay;
        self.validate()
    }

    /// Returns a copy with another initial momentum, validated.
    pub fn with_initial_momentum(mut self, momentum: f64) -> Result<Self> {
        self.initial_momentum = momentum;
        self.validate()
    }

    /// Returns a copy with another dampening, validated.
    pub fn with_dampening(mut self, dampening: f64) -> Result<Self> {
        self.dampening = dampening;
        self.validate()
    }

    /// Returns a copy with Nesterov momentum switched on or off, validated.
    pub fn with_nesterov(mut self, nesterov: bool) -> Result<Self> {
        self.nesterov = nesterov;
        self.validate()
    }

    /// Checks every rule of SPEC §1 and returns the configuration unchanged, or a
    /// [`LcamError::InvalidConfig`] naming the first offending field and its value.
    pub fn validate(self) -> Result<Self> {
        check_lr("lr", self.lr)?;
        non_negative("weight_decay", self.weight_decay)?;
        momentum("momentum_below", self.momentum_below)?;
        momentum("momentum_above", self.momentum_above)?;
        momentum("initial_momentum", self.initial_momentum)?;
        if !(0.0..=1.0).contains(&self.dampening) {
            return Err(invalid("dampening", self.dampening, "a value in [0, 1]"));
        }
        if self.nesterov {
            if self.dampening != 0.0 {
                return Err(invalid(
                    "dampening",
                    self.dampening,
                    "0 when nesterov is true",
                ));
            }
            for (field, m) in [
                ("momentum_below", self.momentum_below),
                ("momentum_above", self.momentum_above),
                ("initial_momentum", self.initial_momentum),
            ] {
                if m <= 0.0 {
                    return Err(invalid(field, m, "a value > 0 when nesterov is true"));
                }
            }
        }
        Ok(self)
    }

    /// `true` when both phases use the same momentum (the optimizer is then plain SGD).
    pub fn is_fixed(&self) -> bool {
        self.momentum_below == self.momentum_above
    }
}

fn invalid(field: &'static str, value: f64, expected: &'static str) -> LcamError {
    LcamError::InvalidConfig {
        field,
        value: format!("{value}"),
        expected,
    }
}

pub(crate) fn check_lr(field: &'static str, lr: f64) -> Result<()> {
    non_negative(field, lr)
}

fn non_negative(field: &'static str, v: f64) -> Result<()> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(invalid(field, v, "a finite value >= 0"))
    }
}

fn momentum(field: &'static str, v: f64) -> Result<()> {
    if (0.0..1.0).contains(&v) {
        Ok(())
    } else {
        Err(invalid(field, v, "a value in [0, 1)"))
    }
}
