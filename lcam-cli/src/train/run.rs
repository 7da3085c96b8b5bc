//! The training loop of `lcam train`, shared by every backend.
//!
//! A run directory (`--out`) holds:
//! - `config.json` — the resolved configuration (with versions and seed);
//! - `metrics.csv` — one row per finished epoch;
//! - `checkpoint-<epoch>/` — model + optimizer (backend files) and `progress.json` (epoch,
//!   global step, lr, metrics, finished flag, and the size and FNV-1a checksum of every other
//!   file) after each epoch; the newest and the one before it are kept;
//! - `LATEST` — the name of the newest complete checkpoint, replaced atomically after the
//!   checkpoint directory is fully written and synced. A crash never leaves it pointing at a
//!   torn checkpoint; one damaged later (size or checksum wrong, missing) is detected on
//!   `--resume` and the previous checkpoint used, with a warning.
//!
//! A run killed at any point (SIGKILL included) and resumed gives the same parameters and
//! metrics as an uninterrupted one: `lcam-cli/tests/reliability.rs` kills it at every stage of a
//! checkpoint write through the `LCAM_TEST_FAILPOINT` hook (see `failpoint`).
//!
//! Data order and augmentation depend only on `(seed, epoch, batch)`, and dropout masks only on
//! `(seed, step)` (the framework's generator is reseeded before every step), so a resumed run
//! sees exactly the batches and masks of an uninterrupted one.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use lcam_core::{EpochStats, LcamConfig};
use serde::{Deserialize, Serialize};

use super::model::ModelSpec;
use super::schedule::Schedule;
use crate::data::cifar::{self, CifarKind, Dataset, Split};
use crate::data::loader::{Batch, Loader, LoaderConfig, Normalize, batches_per_epoch, mix};
use crate::output::write_atomic;

/// Which framework trains the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// libtorch through tch (lcam-tch).
    Tch,
    /// Burn's pure-Rust CPU backend (lcam-burn).
    Burn,
}

/// The optimizer family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// LCAM with `--momentum-below` / `--momentum-above`.
    Lcam,
    /// Plain SGD with `--momentum` (LCAM with equal momenta: bit-identical to SGD).
    Sgd,
}

/// Parameters exempt from weight decay (`--no-decay`): one parameter group with weight decay 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum NoDecay {
    /// Batch-norm weights and biases.
    Bn,
    /// Every bias (batch norm's and the classifier's).
    Bias,
}

impl NoDecay {
    /// Whether the parameter `name` (a WRN tensor name such as `group0.block0.bn1.weight`) is
    /// in this class.
    pub fn matches(self, name: &str) -> bool {
        let mut parts = name.rsplit('.');
        let leaf = parts.next().unwrap_or_default();
        let module = parts.next().unwrap_or_default();
        match self {
            NoDecay::Bn => module.starts_with("bn"),
            NoDecay::Bias => leaf == "bias",
        }
    }
}

/// Who performs the optimizer step of a tch run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StepKind {
    /// lcam-tch's step: libtorch ops, the loss read on the host to decide the momentum.
    #[default]
    Native,
    /// lcam-cuda's fused kernels on tch's CUDA tensors, the momentum decided on the device
    /// (`--backend tch --device cuda[:N]`, a binary built with the `cuda` feature).
    Cuda,
}

/// Which normalisation statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum NormalizeKind {
    /// ImageNet's mean/std, as the demo (SPEC §3).
    Imagenet,
    /// The dataset's own train-set statistics.
    Cifar,
}

/// Arguments of `lcam train`.
#[derive(Debug, Clone, Args)]
pub struct TrainArgs {
    /// Framework.
    #[arg(long, value_enum, default_value_t = BackendKind::Tch)]
    pub backend: BackendKind,
    /// `cpu`, `cuda` or `cuda:N`.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Optimizer step of a tch run on CUDA: `native` (lcam-tch) or `cuda` (lcam-cuda's fused
    /// kernels on tch's tensors). Checkpoints are the same files either way: a run may resume
    /// with the other.
    #[arg(long, value_enum, default_value_t = StepKind::Native)]
    pub step: StepKind,
    /// Dataset.
    #[arg(long, value_enum, default_value_t = CifarKind::Cifar10)]
    pub dataset: CifarKind,
    /// Directory holding `cifar-10-batches-bin/` / `cifar-100-binary/` (or `LCAM_DATA_DIR`).
    #[arg(long, env = "LCAM_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Model, `wrn-D-K` (D = 6n+4).
    #[arg(long, default_value = "wrn-16-1")]
    pub model: String,
    /// Dropout inside the blocks (0 in the paper's protocol).
    #[arg(long, default_value_t = 0.0)]
    pub dropout: f64,
    /// Epochs to train (in total, including resumed ones).
    #[arg(long, default_value_t = 1)]
    pub epochs: u64,
    /// Batch size.
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Base learning rate.
    #[arg(long, default_value_t = 0.1)]
    pub lr: f64,
    /// Coupled L2 weight decay.
    #[arg(long, default_value_t = 5e-4)]
    pub weight_decay: f64,
    /// Exempt these parameters from weight decay (a parameter group with weight decay 0, the
    /// same momentum phase): `bn` (batch-norm weights and biases), `bias` (every bias).
    /// tch backend, native step.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub no_decay: Vec<NoDecay>,
    /// Optimizer.
    #[arg(long, value_enum, default_value_t = OptimizerKind::Lcam)]
    pub optimizer: OptimizerKind,
    /// LCAM: momentum after a below-mean batch.
    #[arg(long, default_value_t = 0.9)]
    pub momentum_below: f64,
    /// LCAM: momentum after an at-or-above-mean batch.
    #[arg(long, default_value_t = 0.95)]
    pub momentum_above: f64,
    /// Momentum before the first observed loss (LCAM) / the fixed momentum (SGD).
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    /// `constant`, `cosine`, `step:F@E1,E2,…`, `exp:G@E` (the demo's: `step:0.2@31,61,91`,
    /// `exp:0.99985@32`).
    #[arg(long, default_value = "step:0.2@31,61,91")]
    pub schedule: String,
    /// Normalisation statistics.
    #[arg(long, value_enum, default_value_t = NormalizeKind::Imagenet)]
    pub normalize: NormalizeKind,
    /// Train on the first N training images only.
    #[arg(long)]
    pub limit_train: Option<usize>,
    /// Evaluate on the first N test images only.
    #[arg(long)]
    pub limit_test: Option<usize>,
    /// Intra-op threads of the backend (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Run seed (model init, data order, augmentation).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Run directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Continue the run in `--out` from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Replace whatever run is in `--out`.
    #[arg(long)]
    pub force: bool,
}

/// The resolved configuration of a run, saved as `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// Framework.
    pub backend: BackendKind,
    /// Device string.
    pub device: String,
    /// Who performs the optimizer step (may change on `--resume`).
    #[serde(default)]
    pub step: StepKind,
    /// Dataset.
    pub dataset: CifarKind,
    /// Model.
    pub model: ModelSpec,
    /// Dropout.
    pub dropout: f64,
    /// Total epochs.
    pub epochs: u64,
    /// Batch size.
    pub batch_size: usize,
    /// Optimizer family.
    pub optimizer: OptimizerKind,
    /// The optimizer's full configuration (base lr).
    pub lcam: LcamConfig,
    /// Parameters exempt from weight decay (absent: none, as in runs made before the option).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub no_decay: Vec<NoDecay>,
    /// lr schedule.
    pub schedule: Schedule,
    /// Normalisation.
    pub normalize: Normalize,
    /// Training images used.
    pub train_images: usize,
    /// Test images used.
    pub test_images: usize,
    /// Seed.
    pub seed: u64,
    /// Trainable parameters of the model.
    pub parameters: usize,
    /// `lcam` version.
    pub lcam_version: String,
    /// The backend's library version.
    pub backend_version: String,
}

impl RunConfig {
    /// Fields that must agree for `--resume` (everything but `epochs`, which may grow).
    fn resume_mismatch(&self, other: &RunConfig) -> Option<String> {
        let mut a = serde_json::to_value(self).ok()?;
        let mut b = serde_json::to_value(other).ok()?;
        for v in [&mut a, &mut b] {
            if let Some(o) = v.as_object_mut() {
                o.remove("epochs");
                o.remove("step");
                o.remove("lcam_version");
                o.remove("backend_version");
            }
        }
        let (a, b) = (a.as_object()?, b.as_object()?);
        a.iter().find(|(k, v)| b.get(*k) != Some(v)).map(|(k, v)| {
            format!(
                "`{k}` is {} in the checkpoint, {} now",
                v,
                b.get(k).cloned().unwrap_or_default()
            )
        })
    }
}

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

/// Where a run stands, saved in each checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Progress {
    /// Epochs finished.
    pub epochs_done: u64,
    /// Global steps taken.
    pub step: u64,
    /// lr of the last step (the exponential schedule continues from it).
    pub last_lr: Option<f64>,
    /// Metrics of the finished epochs.
    pub rows: Vec<EpochRow>,
    /// All requested epochs are done.
    pub finished: bool,
    /// The checkpoint's other files with their sizes and checksums (empty in checkpoints of
    /// older versions, which are then only checked for `progress.json`).
    #[serde(default)]
    pub files: Vec<FileSum>,
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

/// The dataset-independent part of a resolved run, before data is loaded.
#[derive(Debug)]
pub struct Prepared {
    /// The configuration.
    pub config: RunConfig,
    /// Training split.
    pub train: Arc<Dataset>,
    /// Test split.
    pub test: Arc<Dataset>,
}

/// Checks arguments, loads data and resolves the configuration (`parameters` and
/// `backend_version` are filled in by the backend).
pub fn prepare(args: &TrainArgs) -> Result<Prepared> {
    let model: ModelSpec = args.model.parse()?;
    let schedule: Schedule = args.schedule.parse()?;
    if args.batch_size == 0 {
        bail!("--batch-size must be >= 1");
    }
    if args.epochs == 0 {
        bail!("--epochs must be >= 1");
    }
    if args.step == StepKind::Cuda {
        if args.backend != BackendKind::Tch {
            bail!("--step cuda steps tch's CUDA tensors: it needs --backend tch");
        }
        if !args.device.starts_with("cuda") {
            bail!(
                "--step cuda needs --device cuda or cuda:N (the fused kernels run on a GPU), got --device {}",
                args.device
            );
        }
    }
    if !args.no_decay.is_empty() {
        if args.backend != BackendKind::Tch {
            bail!("--no-decay needs --backend tch: parameter groups are not in lcam-burn yet");
        }
        if args.step == StepKind::Cuda {
            bail!("--no-decay needs --step native: parameter groups are not in lcam-cuda yet");
        }
    }
    if !(0.0..1.0).contains(&args.dropout) {
        bail!("--dropout {} must be in [0, 1)", args.dropout);
    }
    let lcam = match args.optimizer {
        OptimizerKind::Lcam => LcamConfig::new(
            args.lr,
            args.weight_decay,
            args.momentum_below,
            args.momentum_above,
        )
        .and_then(|c| c.with_initial_momentum(args.momentum)),
        OptimizerKind::Sgd => {
            LcamConfig::new(args.lr, args.weight_decay, args.momentum, args.momentum)
        }
    }
    .context("optimizer settings")?;
    let data_dir = args.data_dir.clone().context(
        "no data directory: pass --data-dir or set LCAM_DATA_DIR (get the data with `cargo xtask download`)",
    )?;
    let mut train = cifar::load(&data_dir, args.dataset, Split::Train)?;
    let mut test = cifar::load(&data_dir, args.dataset, Split::Test)?;
    if let Some(n) = args.limit_train {
        train.truncate(n);
    }
    if let Some(n) = args.limit_test {
        test.truncate(n);
    }
    if train.is_empty() || test.is_empty() {
        bail!("empty dataset after --limit-train/--limit-test");
    }
    let normalize = match args.normalize {
        NormalizeKind::Imagenet => Normalize::IMAGENET,
        NormalizeKind::Cifar => {
            let (mean, std) = args.dataset.stats();
            Normalize { mean, std }
        }
    };
    Ok(Prepared {
        config: RunConfig {
            backend: args.backend,
            device: args.device.clone(),
            step: args.step,
            dataset: args.dataset,
            model,
            dropout: args.dropout,
            epochs: args.epochs,
            batch_size: args.batch_size,
            optimizer: args.optimizer,
            lcam,
            no_decay: {
                let mut v = args.no_decay.clone();
                v.sort_unstable();
                v.dedup();
                v
            },
            schedule,
            normalize,
            train_images: train.len(),
            test_images: test.len(),
            seed: args.seed,
            parameters: 0,
            lcam_version: env!("CARGO_PKG_VERSION").to_string(),
            backend_version: String::new(),
        },
        train: Arc::new(train),
        test: Arc::new(test),
    })
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is corrupt", path.display()))
}

/// Size and FNV-1a 64 checksum of one file of a checkpoint, recorded in `progress.json` so that
/// a torn or bit-rotted checkpoint is detected before a backend reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSum {
    /// File name inside the checkpoint directory.
    pub name: String,
    /// Bytes.
    pub len: u64,
    /// FNV-1a 64 of the contents, as 16 hex digits.
    pub fnv1a64: String,
}

/// FNV-1a 64 of everything `r` yields, and the number of bytes.
fn fnv1a64(mut r: impl std::io::Read) -> std::io::Result<(u64, u64)> {
    use std::hash::Hasher as _;
    let mut h = fnv::FnvHasher::default();
    let mut n = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let k = r.read(&mut buf)?;
        if k == 0 {
            return Ok((h.finish(), n));
        }
        h.write(&buf[..k]);
        n += k as u64;
    }
}

fn file_sum(path: &Path) -> Result<FileSum> {
    let f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let (h, len) = fnv1a64(std::io::BufReader::new(f))
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(FileSum {
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        len,
        fnv1a64: format!("{h:016x}"),
    })
}

/// The progress of the checkpoint in `dir` after checking that it is complete: `progress.json`
/// parses and every file it lists has its recorded size and checksum. An error says what is
/// wrong (missing, truncated, corrupt).
pub fn verify_checkpoint(dir: &Path) -> Result<Progress> {
    if !dir.is_dir() {
        bail!("{} is missing", dir.display());
    }
    let progress: Progress = read_json(&dir.join("progress.json"))?;
    check_progress(&progress)
        .with_context(|| format!("{} is inconsistent", dir.join("progress.json").display()))?;
    for want in &progress.files {
        let path = dir.join(&want.name);
        if want.name.is_empty() || want.name.contains(['/', '\\']) || want.name.starts_with('.') {
            bail!("{} lists a bad file name `{}`", dir.display(), want.name);
        }
        let got = file_sum(&path)?;
        if got.len != want.len {
            bail!(
                "{} has {} bytes, {} were written: truncated or corrupt",
                path.display(),
                got.len,
                want.len
            );
        }
        if got != *want {
            bail!("{} fails its checksum: corrupt", path.display());
        }
    }
    Ok(progress)
}

/// Checks what serde cannot: the counts in a `progress.json` agree with each other.
pub fn check_progress(p: &Progress) -> Result<()> {
    if p.rows.len() as u64 != p.epochs_done {
        bail!(
            "{} metric rows for {} finished epochs",
            p.rows.len(),
            p.epochs_done
        );
    }
    if let Some((i, r)) = p
        .rows
        .iter()
        .enumerate()
        .find(|(i, r)| r.epoch != *i as u64 + 1)
    {
        bail!("row {i} is for epoch {}, expected {}", r.epoch, i + 1);
    }
    if p.step < p.epochs_done {
        bail!("{} steps for {} epochs", p.step, p.epochs_done);
    }
    if let Some(lr) = p.last_lr
        && !lr.is_finite()
    {
        bail!("last_lr is {lr}");
    }
    Ok(())
}

/// The epoch of a `checkpoint-NNNN` directory name (`None` for anything else, `.partial`
/// directories included).
fn checkpoint_epoch(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("checkpoint-")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The newest complete checkpoint of a run directory and its progress, if there is any.
///
/// `LATEST` names the newest committed checkpoint. If it is torn or corrupt (it cannot be after
/// a crash, since `LATEST` moves only after the checkpoint is synced and renamed, but a disk or a
/// person can damage it), a warning is printed and the newest other intact `checkpoint-NNNN`
/// is used; if there is none, the error says so.
pub fn latest_checkpoint(out: &Path) -> Result<Option<(PathBuf, Progress)>> {
    let latest = out.join("LATEST");
    if !latest.exists() {
        return Ok(None);
    }
    let name = std::fs::read_to_string(&latest)
        .with_context(|| format!("cannot read {}", latest.display()))?;
    let name = name.trim();
    let named = checkpoint_epoch(name)
        .map(|_| out.join(name))
        .context(format!(
            "{} names `{name}`, not a checkpoint",
            latest.display()
        ));
    let torn = match named.and_then(|dir| verify_checkpoint(&dir).map(|p| (dir, p))) {
        Ok(found) => return Ok(Some(found)),
        Err(e) => e,
    };
    let mut older: Vec<(u64, PathBuf)> = std::fs::read_dir(out)
        .with_context(|| format!("cannot list {}", out.display()))?
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            checkpoint_epoch(&n)
                .filter(|_| n != name)
                .map(|k| (k, e.path()))
        })
        .collect();
    older.sort();
    for (_, dir) in older.into_iter().rev() {
        if let Ok(p) = verify_checkpoint(&dir) {
            eprintln!(
                "warning: {:#}; using the previous checkpoint {}",
                torn,
                dir.display()
            );
            return Ok(Some((dir, p)));
        }
    }
    Err(torn.context(format!(
        "no intact checkpoint in {} (pass --force instead of --resume to start over)",
        out.display()
    )))
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot sync {}", dir.display()))
}

/// Test hook for the crash tests: with `LCAM_TEST_FAILPOINT=<name>:<n>`, the `n`-th time
/// (1-based) the run passes the point `name`, it prints `failpoint <name> reached` on stderr
/// and stops there until killed. Points: `step` (after a training step),
/// `checkpoint-partial` (the `.partial` directory exists, empty), `checkpoint-files` (the
/// backend's files are written, `progress.json` not yet), `checkpoint-renamed` (renamed, `LATEST`
/// not moved yet), `latest-temp` (the new `LATEST` is a synced temporary file, not yet
/// renamed), `checkpoint-committed` (`LATEST` moved, older checkpoints not yet removed).
/// `<name>:<n>:panic` panics there instead (the test of `main`'s panic hook).
fn failpoint(name: &str) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static HITS: AtomicU64 = AtomicU64::new(0);
    let Some(spec) = std::env::var_os("LCAM_TEST_FAILPOINT") else {
        return;
    };
    let spec = spec.to_string_lossy();
    let Some((point, n)) = spec.split_once(':') else {
        return;
    };
    if point != name {
        return;
    }
    let (n, action) = n.split_once(':').unwrap_or((n, "wait"));
    let hit = HITS.fetch_add(1, Ordering::SeqCst) + 1;
    if n.parse::<u64>().is_ok_and(|n| n == hit) {
        if action == "panic" {
            panic!("failpoint {name}:\ninjected panic");
        }
        eprintln!("failpoint {name} reached");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

/// Removes what a killed run leaves behind in `out`: `checkpoint-*.partial` directories and
/// the temporary files of atomic writes (`.tmp*`).
fn remove_debris(out: &Path) {
    for e in std::fs::read_dir(out).into_iter().flatten().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with("checkpoint-") && n.ends_with(".partial") {
            let _ = std::fs::remove_dir_all(e.path());
        } else if n.starts_with(".tmp") && e.path().is_file() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Writes a checkpoint crash-safely: every file goes into `checkpoint-NNNN.partial/`, is fsynced
/// and listed with its size and checksum in `progress.json` (written last); the directory is
/// synced and renamed to `checkpoint-NNNN`, then `LATEST` is replaced atomically (temporary
/// file, fsync, rename, directory fsync). Only then are checkpoints older than the previous one
/// removed: the previous one stays as the fallback for a damaged newest one.
fn save_checkpoint(out: &Path, trainer: &dyn Trainer, progress: &Progress) -> Result<()> {
    let name = format!("checkpoint-{:04}", progress.epochs_done);
    let tmp = out.join(format!("{name}.partial"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)
            .with_context(|| format!("cannot remove {}", tmp.display()))?;
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    failpoint("checkpoint-partial");
    trainer.save(&tmp)?;
    let mut files = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&tmp)
        .with_context(|| format!("cannot list {}", tmp.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("cannot list {}", tmp.display()))?;
    entries.sort();
    for path in entries {
        std::fs::File::open(&path)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("cannot sync {}", path.display()))?;
        files.push(file_sum(&path)?);
    }
    failpoint("checkpoint-files");
    let progress = Progress {
        files,
        ..progress.clone()
    };
    let json = serde_json::to_string_pretty(&progress)?;
    write_atomic(&tmp.join("progress.json"), json.as_bytes(), true)?;
    sync_dir(&tmp)?;
    let dir = out.join(&name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    std::fs::rename(&tmp, &dir).with_context(|| format!("cannot rename {}", tmp.display()))?;
    sync_dir(out)?;
    failpoint("checkpoint-renamed");
    let mut latest = tempfile::NamedTempFile::new_in(out)
        .with_context(|| format!("cannot create a temporary file in {}", out.display()))?;
    latest
        .write_all(name.as_bytes())
        .and_then(|()| latest.as_file().sync_all())
        .with_context(|| format!("cannot write {}", latest.path().display()))?;
    failpoint("latest-temp");
    latest
        .persist(out.join("LATEST"))
        .with_context(|| format!("cannot rename into {}", out.join("LATEST").display()))?;
    sync_dir(out)?;
    failpoint("checkpoint-committed");
    // Older checkpoints are no longer needed; the newest one before this (the one the run
    // resumed from or saved last) is kept as a fallback.
    let entries: Vec<(String, PathBuf)> = std::fs::read_dir(out)
        .with_context(|| format!("cannot list {}", out.display()))?
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .filter(|(n, _)| n.starts_with("checkpoint-"))
        .collect();
    let keep = entries
        .iter()
        .filter_map(|(n, _)| checkpoint_epoch(n).filter(|&k| k < progress.epochs_done))
        .max();
    for (n, path) in entries {
        let epoch = checkpoint_epoch(&n);
        if n != name && (epoch.is_none() || epoch != keep) {
            let _ = std::fs::remove_dir_all(path);
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    /// The checksum format of `progress.json` is FNV-1a 64 (published test vectors).
    #[test]
    fn checkpoint_checksums_are_fnv1a_64() {
        let sum = |b: &[u8]| super::fnv1a64(b).expect("read");
        assert_eq!(sum(b""), (0xcbf2_9ce4_8422_2325, 0));
        assert_eq!(sum(b"a"), (0xaf63_dc4c_8601_ec8c, 1));
        assert_eq!(sum(b"foobar"), (0x8594_4171_f739_67e8, 6));
    }
}
