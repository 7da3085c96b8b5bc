//! [`PhasedMomentum`]: the phase controller of SPEC §2, the only implementation of the rule.

use serde::{Deserialize, Serialize};

use crate::config::LcamConfig;
use crate::error::{LcamError, Result};

/// Which side of the epoch's running mean the last observed batch loss fell on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// `ℓ_k < m_k` (strict): the next step uses `momentum_below`.
    Below,
    /// `ℓ_k ≥ m_k`: the next step uses `momentum_above`. The first batch of an epoch is always
    /// `Above`, since `ℓ_1 = m_1`.
    Above,
}

impl Phase {
    /// `"below"` or `"above"`, as in the trajectory format.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Below => "below",
            Phase::Above => "above",
        }
    }
}

/// Per-epoch diagnostics of the controller.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    /// 0-based epoch index (incremented by [`PhasedMomentum::start_epoch`]).
    pub epoch: u64,
    /// Batch losses observed in this epoch.
    pub steps: u64,
    /// How many of those were decided [`Phase::Below`].
    pub steps_below: u64,
    /// The running mean `m_k` (NaN when no loss was observed yet).
    pub mean_loss: f64,
}

impl EpochStats {
    /// Fraction of steps decided below the running mean (NaN for an empty epoch).
    pub fn fraction_below(&self) -> f64 {
        self.steps_below as f64 / self.steps as f64
    }
}

/// The serialisable state of a [`PhasedMomentum`]: everything needed to continue bit-identically.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerState {
    /// 0-based epoch index.
    pub epoch: u64,
    /// Number of losses observed in this epoch (`k`).
    pub count: u64,
    /// `S_k`, the f64 sum of this epoch's losses.
    pub sum: f64,
    /// Steps of this epoch decided `Below`.
    pub steps_below: u64,
    /// The last decision, `None` before any loss was observed.
    pub phase: Option<Phase>,
}

/// The LCAM phase controller (SPEC §2).
///
/// Within epoch `e`, after batch `k` with mean-reduced loss `ℓ_k`:
///
/// ```text
/// S_k = ℓ_1 + … + ℓ_k        (f64, reset to 0 at every epoch start)
/// m_k = S_k / k              (including the current batch)
/// phase = Below if ℓ_k < m_k else Above
/// μ_next = μ_below if phase == Below else μ_above
/// ```
///
/// The decision is taken *after* the step that used `ℓ_k` and sets the momentum of the *next*
/// step; the last decision of an epoch carries into the next epoch's first step. Before any loss
/// was observed, [`PhasedMomentum::momentum`] is `initial_momentum`.
///
/// ```
/// use lcam_core::{LcamConfig, PhasedMomentum, Phase};
/// let mut c = PhasedMomentum::new(&LcamConfig::cifar10());
/// assert_eq!(c.momentum(), 0.9);                // initial momentum
/// assert_eq!(c.observe(2.0)?, Phase::Above);    // the first batch: ℓ₁ = m₁
/// assert_eq!(c.momentum(), 0.95);               // μ_above for the next step
/// assert_eq!(c.observe(1.0)?, Phase::Below);    // 1.0 < (2.0 + 1.0) / 2
/// assert_eq!(c.momentum(), 0.9);                // μ_below
/// c.start_epoch();                              // mean reset, decision carried over
/// assert_eq!(c.momentum(), 0.9);
/// # Ok::<(), lcam_core::LcamError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct PhasedMomentum {
    momentum_below: f64,
    momentum_above: f64,
    initial_momentum: f64,
    state: ControllerState,
}

impl PhasedMomentum {
    /// A controller in its initial state for a (validated) configuration.
    pub fn new(config: &LcamConfig) -> Self {
        Self {
            momentum_below: config.momentum_below,
            momentum_above: config.momentum_above,
            initial_momentum: config.initial_momentum,
            state: ControllerState {
                epoch: 0,
                count: 0,
                sum: 0.0,
                steps_below: 0,
                phase: None,
            },
        }
    }

    /// A controller for `config` continuing from a saved `state`.
    pub fn from_state(config: &LcamConfig, state: ControllerState) -> Result<Self> {
        let bad = |location: &str, message: String| LcamError::InvalidState {
            location: format!("controller.{location}"),
            message,
        };
        if !state.sum.is_finite() {
            return Err(bad("sum", format!("{} is not finite", state.sum)));
        }
        if state.steps_below > state.count {
            return Err(bad(
                "steps_below",
                format!("{} exceeds count {}", state.steps_below, state.count),
            ));
        }
        let mut c = Self::new(config);
        c.state = state;
        Ok(c)
    }

    /// The state to save; [`PhasedMomentum::from_state`] continues from it bit-identically.
    pub fn state(&self) -> ControllerState {
        self.state
    }

    /// The momentum in force for the next step.
    pub fn momentum(&self) -> f64 {
        match self.state.phase {
            None => self.initial_momentum,
            Some(Phase::Below) => self.momentum_below,
            Some(Phase::Above) => self.momentum_above,
        }
    }

    /// The last decision (`None` before any loss was observed).
    pub fn phase(&self) -> Option<Phase> {
        self.state.phase
    }

    /// Checks that [`PhasedMomentum::observe`] would accept `loss`, changing nothing: a NaN or
    /// infinite loss, or one whose sum with the epoch's losses overflows f64, is rejected with
    /// [`LcamError::NonFiniteLoss`].
    pub fn check_loss(&self, loss: f64) -> Result<()> {
        let s = &self.state;
        if loss.is_finite() && (s.sum + loss).is_finite() {
            Ok(())
        } else {
            Err(LcamError::NonFiniteLoss {
                loss,
                epoch: s.epoch,
                step: s.count + 1,
            })
        }
    }

    /// Observes the (mean-reduced) loss of the batch whose step was just taken, folds it into the
    /// epoch's running mean and decides the phase of the next step.
    ///
    /// A NaN or infinite loss returns [`LcamError::NonFiniteLoss`] and leaves the state unchanged.
    pub fn observe(&mut self, loss: f64) -> Result<Phase> {
        self.check_loss(loss)?;
        let s = &mut self.state;
        let sum = s.sum + loss;
        s.sum = sum;
        s.count += 1;
        let mean = s.sum / s.count as f64;
        let phase = if loss < mean {
            Phase::Below
        } else {
            Phase::Above
        };
        if phase == Phase::Below {
            s.steps_below += 1;
        }
        s.phase = Some(phase);
        Ok(phase)
    }

    /// Starts a new epoch: resets the running mean (and the per-epoch diagnostics) and keeps the
    /// last decision, which sets the momentum of the new epoch's first step.
    pub fn start_epoch(&mut self) {
        let s = &mut self.state;
        s.epoch += 1;
        s.count = 0;
        s.sum = 0.0;
        s.steps_below = 0;
    }

    /// Diagnostics of the current epoch.
    pub fn epoch_stats(&self) -> EpochStats {
        let s = &self.state;
        EpochStats {
            epoch: s.epoch,
            steps: s.count,
            steps_below: s.steps_below,
            mean_loss: if s.count == 0 {
                f64::NAN
            } else {
                s.sum / s.count as f64
            },
        }
    }
}
