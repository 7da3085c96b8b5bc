//! The training loop of `lcam train`, shared by every backend: per epoch, the steps (nothing
//! read back per step), the evaluation, the metrics row and the checkpoint. The arguments and
//! the run configuration are in [`super::args`], the run directory's checkpoints in
//! [`super::checkpoint`].
//!
//! A run killed at any point (SIGKILL included) and resumed gives the same parameters and
//! metrics as an uninterrupted one: `lcam-cli/tests/reliability.rs` kills it at every stage of a
//! checkpoint write through the `LCAM_TEST_FAILPOINT` hook (see `checkpoint::failpoint`).
//!
//! Data order and augmentation depend only on `(seed, epoch, batch)`, and dropout masks only on
//! `(seed, step)` (the framework's generator is reseeded before every step), so a resumed run
//! sees exactly the batches and masks of an uninterrupted one.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use lcam_core::EpochStats;
use serde::{Deserialize, Serialize};

use super::args::RunConfig;
use super::checkpoint::{
    Progress, failpoint, latest_checkpoint, read_json, remove_debris, save_checkpoint,
};
use crate::data::cifar::Dataset;
use crate::data::loader::{Batch, Loader, LoaderConfig, batches_per_epoch, mix};
use crate::output::write_atomic;

/// One row of `metrics.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRow {
    /// 1-based epoch.
    pub epoch: u64,
    /// lr of the epoch's last step.
    pub lr: f64,
    /// Mean batch loss of the epoch (the demo's train loss).
    pub train_loss: f64,
    /// Training accuracy (augmented batches, as seen while training).
    pub train_acc: f64,
    /// Mean test loss.
    pub test_loss: f64,
    /// Test accuracy.
    pub test_acc: f64,
    /// Share of steps decided Below.
    pub below_share: f64,
    /// Wall seconds of the epoch (training + evaluation).
    pub seconds: f64,
    /// Training images per second.
    pub img_per_s: f64,
}

const CSV_HEADER: &str =
    "epoch,lr,train_loss,train_acc,test_loss,test_acc,below_share,seconds,img_per_s";

fn csv(rows: &[EpochRow]) -> String {
    let mut s = format!("{CSV_HEADER}\n");
    for r in rows {
        let _ = writeln!(
            s,
            "{},{},{:.6},{:.4},{:.6},{:.4},{:.4},{:.2},{:.1}",
            r.epoch,
            r.lr,
            r.train_loss,
            r.train_acc,
            r.test_loss,
            r.test_acc,
            r.below_share,
            r.seconds,
            r.img_per_s
        );
    }
    s
}

/// What the loop reads of the epoch in progress: at most once a second for the progress bar,
/// and once at the end of the epoch (on a GPU, each read is one device synchronisation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochTotals {
    /// Correct predictions of the epoch's training batches so far.
    pub correct: usize,
    /// The controller's diagnostics (steps, steps below the mean, mean batch loss).
    pub stats: EpochStats,
}

/// What a backend must provide to the loop.
pub trait Trainer {
    /// One optimisation step: forward, cross-entropy (mean), backward, LCAM step with that loss;
    /// the number of correct predictions is added to the epoch's count where the model lives.
    /// The loop reads nothing back per step: on a GPU with `--step cuda` a step only queues
    /// work.
    fn train_step(&mut self, batch: &Batch, lr: f64) -> Result<()>;
    /// The epoch's correct count and the controller's diagnostics so far; an error if the
    /// device skipped a step for a non-finite loss since the last read.
    fn epoch_totals(&mut self) -> Result<EpochTotals>;
    /// Reseeds the generator dropout draws from (called before every training step with a seed
    /// that depends only on the run's seed and the global step, so that a resumed run draws
    /// the masks an uninterrupted one would); a no-op without dropout.
    fn seed_step(&mut self, seed: u64);
    /// Evaluation of a batch: summed loss and correct predictions.
    fn evaluate(&mut self, batch: &Batch) -> Result<(f64, usize)>;
    /// Starts an epoch (the controller's mean and the correct count reset).
    fn start_epoch(&mut self) -> Result<()>;
    /// Writes model and optimizer into the (new, empty) directory `dir`.
    fn save(&self, dir: &Path) -> Result<()>;
    /// Restores model and optimizer from `dir`.
    fn load(&mut self, dir: &Path) -> Result<()>;
}

/// Runs (or resumes) a training run with `trainer`, whose model and optimizer are freshly
/// initialised from `config`.
pub fn train(
    config: &RunConfig,
    train: Arc<Dataset>,
    test: Arc<Dataset>,
    trainer: &mut dyn Trainer,
    out: &Path,
    resume: bool,
    force: bool,
) -> Result<Vec<EpochRow>> {
    let mut progress = Progress {
        epochs_done: 0,
        step: 0,
        last_lr: None,
        rows: vec![],
        finished: false,
        files: vec![],
    };
    let config_path = out.join("config.json");
    if resume {
        let saved: RunConfig = read_json(&config_path).context("--resume needs a run directory")?;
        if let Some(m) = saved.resume_mismatch(config) {
            bail!("--resume with a different configuration: {m}");
        }
        remove_debris(out);
        if let Some((dir, saved)) = latest_checkpoint(out)? {
            progress = saved;
            trainer
                .load(&dir)
                .with_context(|| format!("cannot restore {}", dir.display()))?;
            eprintln!(
                "resuming {} after epoch {}",
                out.display(),
                progress.epochs_done
            );
        }
        // The metrics of the epochs the run resumes from, not of any it will redo.
        let metrics = out.join("metrics.csv");
        if !progress.rows.is_empty() {
            write_atomic(&metrics, csv(&progress.rows).as_bytes(), true)?;
        } else if metrics.exists() {
            std::fs::remove_file(&metrics)
                .with_context(|| format!("cannot remove {}", metrics.display()))?;
        }
    } else if out.exists() && std::fs::read_dir(out)?.next().is_some() {
        if !force {
            let state = match latest_checkpoint(out).ok().flatten() {
                Some((_, p)) if p.finished => "a finished run",
                Some(_) => "an unfinished run (use --resume to continue it)",
                None => "files",
            };
            bail!(
                "{} already holds {state}: pass --force to replace it",
                out.display()
            );
        }
        std::fs::remove_dir_all(out).with_context(|| format!("cannot clear {}", out.display()))?;
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    write_atomic(
        &config_path,
        serde_json::to_string_pretty(config)?.as_bytes(),
        true,
    )?;

    let loader = |augment: bool| LoaderConfig {
        batch_size: config.batch_size,
        augment,
        shuffle: augment,
        normalize: config.normalize,
        seed: config.seed,
    };
    let steps_per_epoch = batches_per_epoch(train.len(), config.batch_size) as u64;
    let total_steps = steps_per_epoch * config.epochs;
    let tty = std::io::stderr().is_terminal();
    for epoch in progress.epochs_done..config.epochs {
        let t0 = Instant::now();
        trainer.start_epoch()?;
        let bar = ProgressBar::new(steps_per_epoch);
        if tty {
            bar.set_style(
                ProgressStyle::with_template(
                    "epoch {prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
        } else {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        bar.set_prefix(format!("{}/{}", epoch + 1, config.epochs));
        let (mut seen, mut lr) = (0usize, progress.last_lr.unwrap_or(config.lcam.lr));
        let mut refreshed = Instant::now();
        for batch in Loader::new(train.clone(), loader(true), epoch, 0) {
            lr = config.schedule.lr(
                config.lcam.lr,
                epoch,
                progress.step,
                total_steps,
                progress.last_lr,
            );
            trainer.seed_step(mix(config.seed, u64::MAX, progress.step));
            trainer.train_step(&batch, lr)?;
            progress.last_lr = Some(lr);
            progress.step += 1;
            failpoint("step");
            seen += batch.len();
            bar.inc(1);
            // The bar's figures are read from the backend at most once a second (a device
            // synchronisation on a GPU), never per step.
            if tty && refreshed.elapsed().as_secs_f64() >= 1.0 {
                let t = trainer.epoch_totals()?;
                bar.set_message(format!(
                    "mean loss {:.4} acc {:.1}% lr {lr:.2e} below {:.0}% {:.0} img/s",
                    t.stats.mean_loss,
                    100.0 * t.correct as f64 / seen as f64,
                    100.0 * t.stats.fraction_below(),
                    seen as f64 / t0.elapsed().as_secs_f64()
                ));
                refreshed = Instant::now();
            }
        }
        bar.finish_and_clear();
        let EpochTotals { correct, stats } = trainer.epoch_totals()?;
        let train_secs = t0.elapsed().as_secs_f64();
        let (mut test_loss, mut test_correct) = (0.0, 0usize);
        for batch in Loader::new(test.clone(), loader(false), 0, 0) {
            let (l, c) = trainer.evaluate(&batch)?;
            test_loss += l;
            test_correct += c;
        }
        let row = EpochRow {
            epoch: epoch + 1,
            lr,
            train_loss: stats.mean_loss,
            train_acc: correct as f64 / seen as f64,
            test_loss: test_loss / test.len() as f64,
            test_acc: test_correct as f64 / test.len() as f64,
            below_share: stats.fraction_below(),
            seconds: t0.elapsed().as_secs_f64(),
            img_per_s: seen as f64 / train_secs,
        };
        eprintln!(
            "epoch {}/{}: train loss {:.4} acc {:.2}% | test loss {:.4} acc {:.2}% | below {:.1}% | lr {:.3e} | {:.0} img/s, {:.1}s",
            row.epoch,
            config.epochs,
            row.train_loss,
            100.0 * row.train_acc,
            row.test_loss,
            100.0 * row.test_acc,
            100.0 * row.below_share,
            row.lr,
            row.img_per_s,
            row.seconds
        );
        progress.rows.push(row);
        progress.epochs_done = epoch + 1;
        progress.finished = progress.epochs_done == config.epochs;
        // The checkpoint first: `metrics.csv` never shows an epoch that a resume would redo.
        save_checkpoint(out, trainer, &progress)?;
        write_atomic(
            &out.join("metrics.csv"),
            csv(&progress.rows).as_bytes(),
            true,
        )?;
    }
    write_atomic(
        &out.join("metrics.csv"),
        csv(&progress.rows).as_bytes(),
        true,
    )?;
    Ok(progress.rows)
}
