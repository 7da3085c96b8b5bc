//! `lcam train`'s arguments and what they resolve to: [`TrainArgs`] (clap), [`RunConfig`] (the
//! run's `config.json`, compared on `--resume`), [`prepare`] (checks, data loading).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use lcam_core::LcamConfig;
use serde::{Deserialize, Serialize};

use super::model::ModelSpec;
use super::schedule::Schedule;
use crate::data::cifar::{self, CifarKind, Dataset, Split};
use crate::data::loader::Normalize;

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
    pub(crate) fn resume_mismatch(&self, other: &RunConfig) -> Option<String> {
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
