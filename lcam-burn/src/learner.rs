//! LCAM inside Burn's `Learner` (burn-train), whose optimizer step carries no loss.
//!
//! The `Learner` owns a [`ModuleOptimizer`] and, per batch, calls the model's
//! `TrainStep::step` (forward + backward: the loss exists here) and then
//! `TrainStep::optimize(self, optim, lr, grads)`. [`learner_optimizer`] returns the
//! `ModuleOptimizer` to give the `Learner` and an [`LcamHook`] (a cheap `Clone` of shared state)
//! for the model to keep — e.g. in a `burn::module::Ignored` field — and use in its two
//! `TrainStep` methods:
//!
//! ```text
//! fn step(&self, batch) -> TrainOutput<…> {
//!     let out = self.forward_classification(batch);
//!     self.lcam.get().record_loss(&out.loss);            // remember this batch's loss
//!     TrainOutput::new(self, out.loss.backward(), out)
//! }
//! fn optimize(self, optim: &mut ModuleOptimizer, lr: ModuleLearningRate, grads) -> Self {
//!     let hook = self.lcam.get().clone();
//!     hook.optimize(optim, lr, self, grads)              // μ in force, update, observe the loss
//! }
//! ```
//!
//! The order is SPEC §2's: step k is applied with the momentum decided after batch k − 1, and
//! only then is batch k's loss folded into the epoch's running mean. A new epoch starts every
//! `steps_per_epoch` steps (the `Learner` has no epoch callback for the model), or when
//! [`LcamHook::start_epoch`] is called. The controller's state is not part of the `Learner`'s
//! optimizer record: save [`LcamHook::controller_state`] beside its checkpoints and restore it
//! with [`LcamHook::restore_controller`].

use std::sync::{Arc, Mutex, MutexGuard};

use burn::lr_scheduler::module_lr_scheduler::ModuleLearningRate;
use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use lcam_core::{ControllerState, Driver, EpochStats, Phase};

use crate::error::{LcamBurnError, Result};
use crate::kernel::{LcamTensorOptimizer, LrFrom, SharedStep};
use crate::optimizer::{BatchLoss, StepError};

/// The optimizer for Burn's `Learner` and the hook that feeds it the batch losses.
///
/// `steps_per_epoch`: the number of batches of one training epoch (a new epoch of the phase
/// controller starts after that many steps); `None` leaves epochs to
/// [`LcamHook::start_epoch`].
pub fn learner_optimizer(
    config: lcam_core::LcamConfig,
    steps_per_epoch: Option<u64>,
) -> Result<(ModuleOptimizer, LcamHook)> {
    let config = config.validate()?;
    if steps_per_epoch == Some(0) {
        return Err(LcamBurnError::Core(lcam_core::LcamError::InvalidConfig {
            field: "steps_per_epoch",
            value: "0".into(),
            expected: "at least 1 step per epoch",
        }));
    }
    let step = SharedStep::new(&config);
    let optim = ModuleOptimizer::from(LcamTensorOptimizer::new(step.clone(), LrFrom::Burn));
    let hook = LcamHook {
        shared: Arc::new(Mutex::new(HookState {
            driver: Driver::new(config, 0)?,
            step,
            pending: None,
            steps_per_epoch,
            steps_in_epoch: 0,
            refused: 0,
            last_error: None,
        })),
    };
    Ok((optim, hook))
}

#[derive(Debug)]
struct HookState {
    driver: Driver,
    step: SharedStep,
    pending: Option<f64>,
    steps_per_epoch: Option<u64>,
    steps_in_epoch: u64,
    refused: u64,
    last_error: Option<String>,
}

/// The model's side of LCAM in a `Learner`: records each batch loss in `TrainStep::step` and
/// runs the step in `TrainStep::optimize`. Clones share one state.
#[derive(Debug, Clone)]
pub struct LcamHook {
    shared: Arc<Mutex<HookState>>,
}

impl LcamHook {
    fn state(&self) -> MutexGuard<'_, HookState> {
        // A panic while the lock was held leaves plain data behind; keep using it.
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remembers this batch's mean-reduced loss for the following [`optimize`](Self::optimize).
    /// Reading a tensor loss waits for the device (as PyTorch's `loss.item()` does).
    pub fn record_loss(&self, loss: impl BatchLoss) -> Result<()> {
        let loss = loss.to_f64()?;
        self.state().pending = Some(loss);
        Ok(())
    }

    /// One LCAM step inside the `Learner`: the momentum in force is applied through `optim` (the
    /// `ModuleOptimizer` of [`learner_optimizer`]), then the recorded loss is observed.
    ///
    /// Errors (no loss recorded since the last step, a NaN or infinite loss): the module comes
    /// back unchanged in [`StepError`] and nothing else changes.
    pub fn try_optimize<M: Module>(
        &self,
        optim: &mut ModuleOptimizer,
        lr: impl Into<ModuleLearningRate>,
        module: M,
        grads: GradientsParams,
    ) -> std::result::Result<M, StepError<M>> {
        let mut s = self.state();
        let Some(loss) = s.pending else {
            return Err(StepError {
                error: LcamBurnError::NoLoss,
                module,
            });
        };
        if let Err(e) = s.driver.check_loss(loss) {
            return Err(StepError {
                error: e.into(),
                module,
            });
        }
        if let Some(n) = s.steps_per_epoch
            && s.steps_in_epoch == n
        {
            s.driver.start_epoch();
            s.steps_in_epoch = 0;
        }
        s.pending = None;
        s.steps_in_epoch += 1;
        let s = &mut *s;
        let lr = lr.into();
        crate::optimizer::phased_step(
            &mut s.driver,
            std::slice::from_ref(&s.step),
            loss,
            module,
            grads,
            |m, g| optim.step(lr.clone(), m, g),
        )
    }

    /// [`try_optimize`](Self::try_optimize) in the shape of `TrainStep::optimize`, which cannot
    /// return an error: a refused step leaves the module unchanged, is counted in
    /// [`refused_steps`](Self::refused_steps) and its reason kept in
    /// [`last_error`](Self::last_error).
    pub fn optimize<M: Module>(
        &self,
        optim: &mut ModuleOptimizer,
        lr: impl Into<ModuleLearningRate>,
        module: M,
        grads: GradientsParams,
    ) -> M {
        match self.try_optimize(optim, lr, module, grads) {
            Ok(m) => m,
            Err(e) => {
                let mut s = self.state();
                s.refused += 1;
                s.last_error = Some(e.error.to_string());
                e.module
            }
        }
    }

    /// Starts a new epoch of the controller now (a no-op while the epoch has no step yet).
    pub fn start_epoch(&self) {
        let mut s = self.state();
        if s.driver.epoch_stats().steps > 0 {
            s.driver.start_epoch();
            s.steps_in_epoch = 0;
        }
    }

    /// The momentum the next step will use.
    pub fn momentum(&self) -> f64 {
        self.state().driver.momentum()
    }

    /// The last phase decision (`None` before any loss).
    pub fn phase(&self) -> Option<Phase> {
        self.state().driver.phase()
    }

    /// Diagnostics of the current epoch.
    pub fn epoch_stats(&self) -> EpochStats {
        self.state().driver.epoch_stats()
    }

    /// Steps refused by [`optimize`](Self::optimize).
    pub fn refused_steps(&self) -> u64 {
        self.state().refused
    }

    /// Why the last refused step was refused.
    pub fn last_error(&self) -> Option<String> {
        self.state().last_error.clone()
    }

    /// The controller's state and the step count within the epoch, for a checkpoint.
    pub fn controller_state(&self) -> (ControllerState, u64) {
        let s = self.state();
        (s.driver.controller().state(), s.steps_in_epoch)
    }

    /// Restores what [`controller_state`](Self::controller_state) saved (after the `Learner`
    /// loaded its optimizer record). The configuration must be the one the state was saved with.
    pub fn restore_controller(&self, state: ControllerState, steps_in_epoch: u64) -> Result<()> {
        let mut s = self.state();
        s.driver.restore_controller(state)?;
        s.steps_in_epoch = steps_in_epoch;
        s.pending = None;
        Ok(())
    }
}
