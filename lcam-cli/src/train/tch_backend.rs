//! The tch (libtorch) backend of `lcam train`: WRN-d-k with tch's `nn` and lcam-tch's optimizer.

use std::path::Path;

use anyhow::{Context, Result, bail};
use lcam_tch::GroupBuilder as _;
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Reduction, Tensor};

use super::args::{RunConfig, StepKind};
use super::model::ModelSpec;
use super::run::{EpochTotals, Trainer};
use crate::data::loader::Batch;

/// Parses `cpu`, `cuda`, `cuda:N`; a CUDA device must exist.
pub fn device(s: &str) -> Result<Device> {
    let d = match s {
        "cpu" => Device::Cpu,
        "cuda" => Device::Cuda(0),
        _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => Device::Cuda(n),
            _ => bail!("bad --device `{s}`: expected cpu, cuda or cuda:N"),
        },
    };
    if let Device::Cuda(n) = d {
        let count = tch::Cuda::device_count();
        if !tch::Cuda::is_available() || n as i64 >= count {
            bail!("--device {s}: libtorch sees {count} CUDA device(s)");
        }
    }
    Ok(d)
}

fn conv(p: nn::Path, cin: usize, cout: usize, k: usize, stride: usize) -> nn::Conv2D {
    let cfg = nn::ConvConfig {
        stride: stride as i64,
        padding: (k / 2) as i64,
        bias: false,
        // SPEC §3: Kaiming-normal, fan_out, ReLU gain.
        ws_init: nn::Init::Kaiming {
            dist: nn::init::NormalOrUniform::Normal,
            fan: nn::init::FanInOut::FanOut,
            non_linearity: nn::init::NonLinearity::ReLU,
        },
        ..Default::default()
    };
    nn::conv2d(p, cin as i64, cout as i64, k as i64, cfg)
}

fn bn(p: nn::Path, c: usize) -> nn::BatchNorm {
    // SPEC §3 / the demo: BN weight 1, bias 0; PyTorch's eps and momentum. tch's default
    // `ws_init` is Uniform(0, 1), not PyTorch's ones: it must be set.
    nn::batch_norm2d(
        p,
        c as i64,
        nn::BatchNormConfig {
            ws_init: nn::Init::Const(1.0),
            bs_init: nn::Init::Const(0.0),
            ..Default::default()
        },
    )
}

#[derive(Debug)]
struct Block {
    bn1: nn::BatchNorm,
    conv1: nn::Conv2D,
    bn2: nn::BatchNorm,
    conv2: nn::Conv2D,
    shortcut: Option<nn::Conv2D>,
    dropout: f64,
}

impl Block {
    fn new(p: nn::Path, cin: usize, cout: usize, stride: usize, dropout: f64) -> Self {
        Self {
            bn1: bn(&p / "bn1", cin),
            conv1: conv(&p / "conv1", cin, cout, 3, stride),
            bn2: bn(&p / "bn2", cout),
            conv2: conv(&p / "conv2", cout, cout, 3, 1),
            shortcut: (cin != cout).then(|| conv(&p / "shortcut", cin, cout, 1, stride)),
            dropout,
        }
    }
}

impl ModuleT for Block {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let o = x.apply_t(&self.bn1, train).relu();
        // Pre-activation: a projection shortcut sees the activated input, identity the raw one.
        let short = match &self.shortcut {
            Some(c) => o.apply(c),
            None => x.shallow_clone(),
        };
        let mut y = o.apply(&self.conv1).apply_t(&self.bn2, train).relu();
        if self.dropout > 0.0 {
            y = y.dropout(self.dropout, train);
        }
        y.apply(&self.conv2) + short
    }
}

/// WRN-d-k for tch (SPEC §3).
#[derive(Debug)]
pub struct Wrn {
    conv: nn::Conv2D,
    blocks: Vec<Block>,
    bn: nn::BatchNorm,
    fc: nn::Linear,
}

impl Wrn {
    /// Builds the network under `p`.
    pub fn new(p: &nn::Path, spec: ModelSpec, classes: usize, dropout: f64) -> Self {
        let w = spec.widths();
        let mut blocks = Vec::new();
        for g in 0..3 {
            for b in 0..spec.blocks_per_group() {
                let cin = if b == 0 { w[g] } else { w[g + 1] };
                let stride = if b == 0 && g > 0 { 2 } else { 1 };
                blocks.push(Block::new(
                    p / format!("group{g}") / format!("block{b}"),
                    cin,
                    w[g + 1],
                    stride,
                    dropout,
                ));
            }
        }
        let bound = 1.0 / (w[3] as f64).sqrt();
        let fc = nn::linear(
            p / "fc",
            w[3] as i64,
            classes as i64,
            nn::LinearConfig {
                // PyTorch's default Linear weight init, U(−1/√fan_in, 1/√fan_in); bias 0 (SPEC §3).
                ws_init: nn::Init::Uniform {
                    lo: -bound,
                    up: bound,
                },
                bs_init: Some(nn::Init::Const(0.0)),
                bias: true,
            },
        );
        Self {
            conv: conv(p / "conv", 3, 16, 3, 1),
            blocks,
            bn: bn(p / "bn", w[3]),
            fc,
        }
    }
}

impl ModuleT for Wrn {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut h = x.apply(&self.conv);
        for b in &self.blocks {
            h = b.forward_t(&h, train);
        }
        h.apply_t(&self.bn, train)
            .relu()
            .adaptive_avg_pool2d([1, 1])
            .flatten(1, -1)
            .apply(&self.fc)
    }
}

/// Model, optimizer and device of a tch run.
pub struct TchTrainer {
    vs: nn::VarStore,
    net: Wrn,
    /// lcam-tch's optimizer: steps the model with `--step native`; with `--step cuda` it only
    /// holds the state for checkpoints (the same file either way).
    opt: lcam_tch::Lcam,
    dropout: f64,
    /// The epoch's correct predictions, summed on the model's device.
    correct: Option<Tensor>,
    /// `--step cuda`: lcam-cuda's fused kernels on the model's CUDA tensors.
    #[cfg(feature = "cuda")]
    fused: Option<lcam_tch::CudaStep>,
    /// Losses the device had rejected when the epoch started (`--step cuda`).
    #[cfg(feature = "cuda")]
    rejected_seen: u64,
}

impl std::fmt::Debug for TchTrainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TchTrainer")
            .field("device", &self.vs.device())
            .finish_non_exhaustive()
    }
}

impl TchTrainer {
    /// A freshly initialised model (seeded) and optimizer for `cfg`.
    pub fn new(cfg: &RunConfig, threads: Option<usize>) -> Result<Self> {
        if let Some(n) = threads {
            tch::set_num_threads(n as i32);
        }
        let dev = device(&cfg.device)?;
        tch::manual_seed(cfg.seed as i64);
        let vs = nn::VarStore::new(dev);
        let net = Wrn::new(&vs.root(), cfg.model, cfg.dataset.classes(), cfg.dropout);
        let mut opt = lcam_tch::Lcam::new(&vs, cfg.lcam)?;
        if !cfg.no_decay.is_empty() {
            let classes = cfg.no_decay.clone();
            opt = opt
                .with_groups(vec![
                    lcam_tch::Group::matching("no_decay", move |name| {
                        classes.iter().any(|c| c.matches(name))
                    })
                    .with_weight_decay(0.0),
                ])
                .context("--no-decay")?;
        }
        #[cfg(feature = "cuda")]
        let fused = match cfg.step {
            StepKind::Native => None,
            StepKind::Cuda => Some(
                lcam_tch::CudaStep::new(&opt).context("--step cuda: setting up the fused step")?,
            ),
        };
        #[cfg(not(feature = "cuda"))]
        if cfg.step == StepKind::Cuda {
            bail!(
                "this `lcam` was built without lcam-cuda: rebuild with `--features cuda` for --step cuda"
            );
        }
        Ok(Self {
            vs,
            net,
            opt,
            dropout: cfg.dropout,
            correct: None,
            #[cfg(feature = "cuda")]
            fused,
            #[cfg(feature = "cuda")]
            rejected_seen: 0,
        })
    }

    /// Trainable parameters.
    pub fn param_count(&self) -> usize {
        self.vs
            .trainable_variables()
            .iter()
            .map(|t| t.numel())
            .sum()
    }

    fn inputs(&self, batch: &Batch) -> (Tensor, Tensor) {
        let n = batch.len() as i64;
        let dev = self.vs.device();
        let x = Tensor::from_slice(&batch.images)
            .view([n, 3, 32, 32])
            .to_device(dev);
        let y = Tensor::from_slice(&batch.labels).to_device(dev);
        (x, y)
    }
}

/// The number of correct predictions, as a one-element int64 tensor on the logits' device.
fn correct(logits: &Tensor, y: &Tensor) -> Tensor {
    logits.argmax(-1, false).eq_tensor(y).sum(Kind::Int64)
}

impl TchTrainer {
    /// Backward pass and optimizer step at `lr`: lcam-cuda's fused kernels with `--step cuda`
    /// (queued behind the backward pass; a non-finite loss makes the device skip the step,
    /// which `train_step` reports), else lcam-tch's step.
    fn backward_step(&mut self, loss: &Tensor, lr: f64) -> Result<()> {
        #[cfg(feature = "cuda")]
        if let Some(fused) = &mut self.fused {
            fused.set_lr(lr)?;
            return Ok(fused.backward_step(loss)?);
        }
        self.opt.set_lr(lr)?;
        self.opt.backward_step(loss)?;
        Ok(())
    }
}

impl Trainer for TchTrainer {
    fn train_step(&mut self, batch: &Batch, lr: f64) -> Result<()> {
        let (x, y) = self.inputs(batch);
        let logits = self.net.forward_t(&x, true);
        let loss = logits.cross_entropy_for_logits(&y);
        self.backward_step(&loss, lr)?;
        // Summed where the model lives: nothing is read back per step.
        let c = tch::no_grad(|| correct(&logits, &y));
        self.correct = Some(match self.correct.take() {
            Some(acc) => acc + c,
            None => c,
        });
        Ok(())
    }

    fn epoch_totals(&mut self) -> Result<EpochTotals> {
        let correct = match &self.correct {
            Some(c) => usize::try_from(c.f_int64_value(&[])?).unwrap_or(0),
            None => 0,
        };
        #[cfg(feature = "cuda")]
        if let Some(fused) = &self.fused {
            // One read of the device controller: the epoch's statistics come with it.
            let d = fused.diagnostics()?;
            let stats = d.epoch;
            if d.rejected_losses > self.rejected_seen {
                bail!(
                    "non-finite batch loss in epoch {} ({} steps taken; the device skipped the step)",
                    stats.epoch,
                    stats.steps
                );
            }
            return Ok(EpochTotals { correct, stats });
        }
        Ok(EpochTotals {
            correct,
            stats: self.opt.epoch_stats(),
        })
    }

    fn seed_step(&mut self, seed: u64) {
        if self.dropout > 0.0 {
            // libtorch's generators (CPU and every CUDA device) are what dropout draws from.
            tch::manual_seed(seed as i64);
        }
    }

    fn evaluate(&mut self, batch: &Batch) -> Result<(f64, usize)> {
        tch::no_grad(|| {
            let (x, y) = self.inputs(batch);
            let logits = self.net.forward_t(&x, false);
            let loss = logits.log_softmax(-1, Kind::Float).nll_loss_nd::<Tensor>(
                &y,
                None,
                Reduction::Sum,
                -100,
            );
            Ok((
                loss.f_double_value(&[])?,
                usize::try_from(correct(&logits, &y).f_int64_value(&[])?).unwrap_or(0),
            ))
        })
    }

    fn start_epoch(&mut self) -> Result<()> {
        self.correct = None;
        #[cfg(feature = "cuda")]
        if let Some(fused) = &mut self.fused {
            self.rejected_seen = fused.diagnostics()?.rejected_losses;
            return Ok(fused.start_epoch()?);
        }
        self.opt.start_epoch();
        Ok(())
    }

    fn save(&self, dir: &Path) -> Result<()> {
        self.vs
            .save(dir.join("model.safetensors"))
            .context("saving the model")?;
        #[cfg(feature = "cuda")]
        if let Some(fused) = &self.fused {
            // The device's state, written by lcam-tch in its usual format.
            let mut host = lcam_tch::Lcam::new(&self.vs, *fused.config())?;
            fused
                .sync_to(&mut host)
                .context("reading the optimizer state from the GPU")?;
            host.save(dir.join("optimizer.lcam"))
                .context("saving the optimizer")?;
            return Ok(());
        }
        self.opt
            .save(dir.join("optimizer.lcam"))
            .context("saving the optimizer")?;
        Ok(())
    }

    fn load(&mut self, dir: &Path) -> Result<()> {
        self.vs
            .load(dir.join("model.safetensors"))
            .context("loading the model")?;
        self.opt
            .load(dir.join("optimizer.lcam"))
            .context("loading the optimizer")?;
        #[cfg(feature = "cuda")]
        if self.fused.is_some() {
            self.fused = Some(
                lcam_tch::CudaStep::new(&self.opt)
                    .context("moving the loaded optimizer state to the GPU")?,
            );
        }
        Ok(())
    }
}

/// libtorch's version, for `config.json`.
pub fn version() -> String {
    format!("tch {} / libtorch 2.13.0", "0.26")
}
