//! The Burn backend of `lcam train`: WRN-d-k with burn-nn's layers on Burn's pure-Rust CPU
//! backend (flex, with autodiff) and lcam-burn's optimizer. It mirrors `tch_backend`: the same
//! architecture, initialisation (SPEC §3) and [`Trainer`] behaviour.
//!
//! Differences from the tch twin that are Burn's, not ours:
//! - Burn's `BatchNorm` updates `running_var` with the biased (population) batch variance where
//!   PyTorch uses the unbiased one; [`Bn`] is burn-nn's layer with PyTorch's update (the
//!   variance scaled by `m/(m−1)`, `m` = batch × height × width), on Burn's own batch-norm ops.
//! - Parameter ids are assigned deterministically (1, 2, … in module order) instead of Burn's
//!   random ids, so that a checkpoint's `model.bpk` is byte-identical for identical parameters.
//! - Dropout draws from the device's generator, reseeded before every step from `(seed, step)`
//!   ([`Trainer::seed_step`]), so that a resumed run draws the same masks.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use burn::module::{Module, ModuleVisitor, Param, ParamId, RunningState};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Dropout, DropoutConfig, Initializer, Linear, LinearConfig, PaddingConfig2d};
use burn::optim::GradientsParams;
use burn::tensor::activation::{log_softmax, relu};
use burn::tensor::module::{adaptive_avg_pool2d, batch_norm, batch_norm_train};
use burn::tensor::{Device, Int, Tensor, TensorData};
use lcam_burn::{BurnGroup, GroupBuilder, LcamOptimizer};
use lcam_core::EpochStats;

use super::args::{NoDecay, RunConfig};
use super::model::ModelSpec;
use super::run::{EpochTotals, Trainer};
use crate::data::loader::Batch;

/// The model record's file name inside a checkpoint directory (burnpack).
pub const MODEL_FILE: &str = "model.bpk";
/// The optimizer record's file name inside a checkpoint directory (lcam-burn's burnpack record).
pub const OPTIMIZER_FILE: &str = "optimizer.bpk";

/// Parses `--device`: only `cpu` (Burn's flex backend) is supported.
pub fn device(s: &str) -> Result<Device> {
    match s {
        "cpu" => Ok(Device::flex()),
        _ => bail!(
            "--device {s}: the burn backend runs on the CPU only (flex); use --device cpu, or --backend tch for CUDA"
        ),
    }
}

/// Hands out parameter ids 1, 2, … in construction order.
#[derive(Debug, Default)]
struct Ids(u64);

impl Ids {
    fn next(&mut self) -> ParamId {
        self.0 += 1;
        ParamId::from(self.0)
    }
}

fn conv(ids: &mut Ids, dev: &Device, cin: usize, cout: usize, k: usize, stride: usize) -> Conv2d {
    let mut c = Conv2dConfig::new([cin, cout], [k, k])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(k / 2, k / 2, k / 2, k / 2))
        .with_bias(false)
        // SPEC §3: Kaiming-normal, fan_out (= cout·k·k), ReLU gain √2: std = √(2 / fan_out).
        .with_initializer(Initializer::KaimingNormal {
            gain: std::f64::consts::SQRT_2,
            fan_out_only: true,
        })
        .init(dev);
    c.weight.id = ids.next();
    c
}

/// A trainable parameter with the next id.
fn trainable(ids: &mut Ids, t: Tensor<1>) -> Param<Tensor<1>> {
    let mut p = Param::from_tensor(t);
    p.id = ids.next();
    p
}

/// Batch normalisation over the channels of `[N, C, H, W]` with PyTorch's `BatchNorm2d`
/// semantics: in training (an autodiff device) the batch statistics normalise and
///
/// ```text
/// running_mean ← (1 − α)·running_mean + α·mean
/// running_var  ← (1 − α)·running_var  + α·var·m/(m − 1)     (m = N·H·W: unbiased)
/// ```
///
/// (α = 0.1); in evaluation the running statistics normalise. burn-nn's `BatchNorm` folds in the
/// biased variance instead.
#[derive(Module, Debug)]
pub struct Bn {
    gamma: Param<Tensor<1>>,
    beta: Param<Tensor<1>>,
    running_mean: RunningState<Tensor<1>>,
    running_var: RunningState<Tensor<1>>,
    momentum: f64,
    epsilon: f64,
}

impl Bn {
    /// Weight 1, bias 0, running mean 0 and variance 1, eps 1e-5, momentum 0.1 (PyTorch's).
    fn new(ids: &mut Ids, dev: &Device, c: usize) -> Self {
        Self {
            gamma: trainable(ids, Tensor::ones([c], dev)),
            beta: trainable(ids, Tensor::zeros([c], dev)),
            running_mean: RunningState::with_id(ids.next(), Tensor::zeros([c], dev)),
            running_var: RunningState::with_id(ids.next(), Tensor::ones([c], dev)),
            momentum: 0.1,
            epsilon: 1e-5,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let dev = x.device();
        if !dev.is_autodiff() {
            return batch_norm(
                x,
                self.gamma.val(),
                self.beta.val(),
                self.running_mean.value().to_device(&dev),
                self.running_var.value().to_device(&dev),
                self.epsilon,
            );
        }
        let [n, _, h, w] = x.dims();
        let m = (n * h * w) as f64;
        // PyTorch refuses m = 1 in training; the variance is then 0 either way.
        let unbiased = if m > 1.0 { m / (m - 1.0) } else { 1.0 };
        let out = batch_norm_train(x, self.gamma.val(), self.beta.val(), self.epsilon);
        let a = self.momentum;
        let mean = self
            .running_mean
            .value_sync()
            .to_device(&dev)
            .mul_scalar(1.0 - a)
            .add(out.mean.detach().mul_scalar(a));
        let var = self
            .running_var
            .value_sync()
            .to_device(&dev)
            .mul_scalar(1.0 - a)
            .add(out.variance.detach().mul_scalar(a * unbiased));
        self.running_mean.update(mean.detach());
        self.running_var.update(var.detach());
        out.output
    }
}

/// A pre-activation basic block.
#[derive(Module, Debug)]
struct Block {
    bn1: Bn,
    conv1: Conv2d,
    bn2: Bn,
    dropout: Option<Dropout>,
    conv2: Conv2d,
    shortcut: Option<Conv2d>,
}

impl Block {
    fn new(
        ids: &mut Ids,
        dev: &Device,
        cin: usize,
        cout: usize,
        stride: usize,
        dropout: f64,
    ) -> Self {
        Self {
            bn1: Bn::new(ids, dev, cin),
            conv1: conv(ids, dev, cin, cout, 3, stride),
            bn2: Bn::new(ids, dev, cout),
            dropout: (dropout > 0.0).then(|| DropoutConfig::new(dropout).init()),
            conv2: conv(ids, dev, cout, cout, 3, 1),
            shortcut: (cin != cout).then(|| conv(ids, dev, cin, cout, 1, stride)),
        }
    }

    /// Training or evaluation is Burn's choice: batch statistics and dropout on an autodiff
    /// device, running statistics and no dropout on a `valid()` copy.
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let o = relu(self.bn1.forward(x.clone()));
        // Pre-activation: a projection shortcut sees the activated input, identity the raw one.
        let short = match &self.shortcut {
            Some(c) => c.forward(o.clone()),
            None => x,
        };
        let mut y = relu(self.bn2.forward(self.conv1.forward(o)));
        if let Some(d) = &self.dropout {
            y = d.forward(y);
        }
        self.conv2.forward(y) + short
    }
}

/// WRN-d-k for Burn (SPEC §3).
#[derive(Module, Debug)]
pub struct Wrn {
    conv: Conv2d,
    blocks: Vec<Block>,
    bn: Bn,
    fc: Linear,
}

impl Wrn {
    /// The parameters `--no-decay` exempts from weight decay: batch-norm weights and biases
    /// (`bn`), every bias (`bias`: batch norm's and the classifier's).
    fn no_decay_ids(&self, classes: &[NoDecay]) -> Vec<ParamId> {
        let (bn, bias) = (
            classes.contains(&NoDecay::Bn),
            classes.contains(&NoDecay::Bias),
        );
        let mut ids = Vec::new();
        let norms = self
            .blocks
            .iter()
            .flat_map(|b| [&b.bn1, &b.bn2])
            .chain(std::iter::once(&self.bn));
        for n in norms {
            if bn {
                ids.push(n.gamma.id);
            }
            if bn || bias {
                ids.push(n.beta.id);
            }
        }
        if bias && let Some(b) = &self.fc.bias {
            ids.push(b.id);
        }
        ids
    }

    /// Builds the network on `dev`, drawing its initial weights from the device's generator (in
    /// module order).
    pub fn new(dev: &Device, spec: ModelSpec, classes: usize, dropout: f64) -> Self {
        let mut ids = Ids::default();
        let w = spec.widths();
        let stem = conv(&mut ids, dev, 3, 16, 3, 1);
        let mut blocks = Vec::new();
        for g in 0..3 {
            for b in 0..spec.blocks_per_group() {
                let cin = if b == 0 { w[g] } else { w[g + 1] };
                let stride = if b == 0 && g > 0 { 2 } else { 1 };
                blocks.push(Block::new(&mut ids, dev, cin, w[g + 1], stride, dropout));
            }
        }
        let head = Bn::new(&mut ids, dev, w[3]);
        let bound = 1.0 / (w[3] as f64).sqrt();
        // PyTorch's default Linear weight init, U(−1/√fan_in, 1/√fan_in); bias 0 (SPEC §3).
        let mut fc = LinearConfig::new(w[3], classes)
            .with_initializer(Initializer::Uniform {
                min: -bound,
                max: bound,
            })
            .init(dev);
        fc.weight.id = ids.next();
        let mut bias = Initializer::Zeros.init([classes], dev);
        bias.id = ids.next();
        fc.bias = Some(bias);
        let net = Self {
            conv: stem,
            blocks,
            bn: head,
            fc,
        };
        // Burn initialises parameters lazily; draw them now, in module order, so that the
        // initial weights depend on the seed only.
        net.visit(&mut Materialize);
        net
    }

    /// Logits `[n, classes]` of images `[n, 3, 32, 32]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let mut h = self.conv.forward(x);
        for b in &self.blocks {
            h = b.forward(h);
        }
        let h = relu(self.bn.forward(h));
        let h = adaptive_avg_pool2d(h, [1, 1]).flatten::<2>(1, 3);
        self.fc.forward(h)
    }
}

/// Initialises every (lazy) float parameter.
struct Materialize;

impl ModuleVisitor for Materialize {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let _ = param.val();
    }
}

/// Counts the elements of the parameters that require gradients (running statistics are
/// visited as float tensors too, but do not).
#[derive(Default)]
struct Trainable(usize);

impl ModuleVisitor for Trainable {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let v = param.val();
        if v.is_require_grad() {
            self.0 += v.shape().num_elements();
        }
    }
}

/// Per-sample cross-entropy of `logits` against class indices `y`.
fn cross_entropy(logits: Tensor<2>, y: Tensor<1, Int>) -> Tensor<1> {
    let [n, _] = logits.dims();
    log_softmax(logits, 1)
        .gather(1, y.reshape([n, 1]))
        .reshape([n])
        .neg()
}

fn correct(logits: Tensor<2>, y: Tensor<1, Int>) -> Result<usize> {
    let [n, _] = logits.dims();
    let c = logits
        .argmax(1)
        .reshape([n])
        .equal(y)
        .int()
        .sum()
        .try_into_scalar::<i64>()
        .map_err(|e| anyhow!("reading the correct count: {e:?}"))?;
    Ok(c as usize)
}

fn scalar(t: Tensor<1>, what: &str) -> Result<f64> {
    t.try_into_scalar::<f64>()
        .map_err(|e| anyhow!("reading the {what}: {e:?}"))
}

/// Model, optimizer and device of a Burn run.
pub struct BurnTrainer {
    device: Device,
    /// `None` only while a step holds it.
    model: Option<Wrn>,
    /// The evaluation copy (`valid()`: running statistics, no autodiff), made on first use after
    /// each change of the model.
    eval_model: Option<Wrn>,
    opt: LcamOptimizer,
    dropout: f64,
    /// The epoch's correct predictions.
    correct: usize,
}

impl std::fmt::Debug for BurnTrainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BurnTrainer")
            .field("device", &self.device)
            .field("opt", &self.opt)
            .finish_non_exhaustive()
    }
}

impl BurnTrainer {
    /// A freshly initialised model (seeded with `cfg.seed`) and optimizer for `cfg`.
    ///
    /// `threads` sizes rayon's global pool, on which flex runs its gemm and convolutions (and
    /// lcam-core its large tensors); the pool is built once per process, so only the first
    /// trainer's setting counts (`RAYON_NUM_THREADS` when none is given).
    pub fn new(cfg: &RunConfig, threads: Option<usize>) -> Result<Self> {
        if let Some(n) = threads {
            // Err: the pool already exists (an earlier trainer in this process).
            let _ = rayon::ThreadPoolBuilder::new()
                .num_threads(n.max(1))
                .build_global();
        }
        let device = device(&cfg.device)?.autodiff();
        device.seed(cfg.seed);
        let model = Wrn::new(&device, cfg.model, cfg.dataset.classes(), cfg.dropout);
        let mut opt = LcamOptimizer::new(cfg.lcam).context("optimizer settings")?;
        if !cfg.no_decay.is_empty() {
            opt = opt
                .with_groups(vec![
                    BurnGroup::new("no_decay", model.no_decay_ids(&cfg.no_decay))
                        .with_weight_decay(0.0),
                ])
                .context("--no-decay")?;
        }
        Ok(Self {
            device,
            model: Some(model),
            eval_model: None,
            opt,
            dropout: cfg.dropout,
            correct: 0,
        })
    }

    fn model(&self) -> Result<&Wrn> {
        self.model
            .as_ref()
            .context("internal: the model was lost in a failed step")
    }

    /// Trainable parameters.
    pub fn param_count(&self) -> usize {
        let mut count = Trainable::default();
        if let Some(m) = &self.model {
            m.visit(&mut count);
        }
        count.0
    }

    fn inputs(batch: &Batch, dev: &Device) -> (Tensor<4>, Tensor<1, Int>) {
        let n = batch.len();
        let x = Tensor::from_data(TensorData::new(batch.images.clone(), [n, 3, 32, 32]), dev);
        let y = Tensor::from_data(TensorData::new(batch.labels.clone(), [n]), dev);
        (x, y)
    }
}

impl BurnTrainer {
    /// One training step; the batch's mean loss and correct count (what the tests look at).
    pub fn step_values(&mut self, batch: &Batch, lr: f64) -> Result<(f64, usize)> {
        let (x, y) = Self::inputs(batch, &self.device);
        self.eval_model = None;
        let model = self
            .model
            .take()
            .context("internal: the model was lost in a failed step")?;
        let logits = model.forward(x);
        let c = correct(logits.clone().detach(), y.clone())?;
        let loss = cross_entropy(logits, y).mean();
        let value = scalar(loss.clone().detach(), "loss")?;
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        match self.opt.step(lr, model, grads, value) {
            Ok(m) => self.model = Some(m),
            Err(e) => {
                self.model = Some(e.module);
                return Err(e.error).context("LCAM step");
            }
        }
        Ok((value, c))
    }

    /// Summed loss and correct count of a test batch.
    pub fn evaluate_batch(&mut self, batch: &Batch) -> Result<(f64, usize)> {
        if self.eval_model.is_none() {
            self.eval_model = Some(self.model()?.valid());
        }
        let model = self
            .eval_model
            .as_ref()
            .context("internal: no eval model")?;
        let (x, y) = Self::inputs(batch, &self.device.clone().without_autodiff());
        let logits = model.forward(x);
        let loss = scalar(cross_entropy(logits.clone(), y.clone()).sum(), "test loss")?;
        Ok((loss, correct(logits, y)?))
    }

    /// The controller's diagnostics of the current epoch.
    pub fn epoch_stats(&self) -> EpochStats {
        self.opt.epoch_stats()
    }
}

impl Trainer for BurnTrainer {
    fn seed_step(&mut self, seed: u64) {
        if self.dropout > 0.0 {
            // The device's generator is what dropout draws from.
            self.device.seed(seed);
        }
    }

    fn train_step(&mut self, batch: &Batch, lr: f64) -> Result<()> {
        // flex computes on the host: its counts are host values, there is no device to wait for.
        let (_, c) = self.step_values(batch, lr)?;
        self.correct += c;
        Ok(())
    }

    fn epoch_totals(&mut self) -> Result<EpochTotals> {
        Ok(EpochTotals {
            correct: self.correct,
            stats: self.opt.epoch_stats(),
        })
    }

    fn evaluate(&mut self, batch: &Batch) -> Result<(f64, usize)> {
        self.evaluate_batch(batch)
    }

    fn start_epoch(&mut self) -> Result<()> {
        self.correct = 0;
        self.opt.start_epoch();
        Ok(())
    }

    fn save(&self, dir: &Path) -> Result<()> {
        // `valid()` first: it folds the latest batch-norm running statistics into the record.
        self.model()?
            .valid()
            .save_file(dir.join(MODEL_FILE))
            .map_err(|e| anyhow!("saving the model: {e}"))?;
        self.opt
            .save(dir.join(OPTIMIZER_FILE))
            .context("saving the optimizer")?;
        Ok(())
    }

    fn load(&mut self, dir: &Path) -> Result<()> {
        let path = dir.join(MODEL_FILE);
        let model = self
            .model()?
            .clone()
            .try_load_file(&path)
            .map_err(|e| anyhow!("loading the model {}: {e}", path.display()))?;
        let opt = LcamOptimizer::load(dir.join(OPTIMIZER_FILE), &model)
            .context("loading the optimizer")?;
        self.model = Some(model);
        self.eval_model = None;
        self.opt = opt;
        Ok(())
    }
}

/// Burn's version and backend, for `config.json`.
pub fn version() -> String {
    "burn 0.22.1 (flex)".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::cifar::CifarKind;
    use crate::data::loader::Normalize;
    use crate::train::args::{BackendKind, OptimizerKind};
    use crate::train::schedule::Schedule;
    use lcam_core::LcamConfig;

    /// Burn's device generator is process-wide: tests that seed it and draw from it (every
    /// `BurnTrainer::new`) run one at a time.
    fn serial() -> std::sync::MutexGuard<'static, ()> {
        static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
        LOCK.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `--no-decay`: WRN-10-1 has 7 batch norms (2 per block, 1 final) and a classifier bias:
    /// `bn` exempts their 14 tensors, `bias` the 7 shifts and the classifier bias, both 15 — the
    /// tch backend's counts (`cli/train::tch::no_decay_…`).
    #[test]
    fn no_decay_picks_batch_norms_and_biases() {
        let _serial = serial();
        let m = Wrn::new(&Device::flex(), "wrn-10-1".parse().expect("spec"), 10, 0.0);
        let n = |c: &[NoDecay]| {
            let ids = m.no_decay_ids(c);
            let unique: std::collections::BTreeSet<u64> = ids.iter().map(ParamId::val).collect();
            assert_eq!(unique.len(), ids.len(), "{c:?}: an id twice");
            ids.len()
        };
        assert_eq!(n(&[NoDecay::Bn]), 14);
        assert_eq!(n(&[NoDecay::Bias]), 8);
        assert_eq!(n(&[NoDecay::Bn, NoDecay::Bias]), 15);
        assert_eq!(n(&[]), 0);
    }

    fn config(model: &str, dataset: CifarKind) -> RunConfig {
        RunConfig {
            backend: BackendKind::Burn,
            device: "cpu".into(),
            step: Default::default(),
            dataset,
            model: model.parse().expect("model"),
            dropout: 0.0,
            epochs: 1,
            batch_size: 4,
            optimizer: OptimizerKind::Lcam,
            lcam: LcamConfig::new(0.1, 5e-4, 0.9, 0.95).expect("lcam"),
            no_decay: Vec::new(),
            schedule: Schedule::Constant,
            normalize: Normalize::IMAGENET,
            train_images: 4,
            test_images: 4,
            seed: 3,
            parameters: 0,
            lcam_version: String::new(),
            backend_version: String::new(),
        }
    }

    fn batch(n: usize, salt: usize) -> Batch {
        Batch {
            images: (0..n * 3 * 32 * 32)
                .map(|i| (((i * 7919 + salt * 104_729) % 1000) as f32 / 500.0) - 1.0)
                .collect(),
            labels: (0..n).map(|i| ((i + salt) % 10) as i64).collect(),
            index: salt,
        }
    }

    fn values(t: &BurnTrainer) -> Vec<Vec<f32>> {
        struct All(Vec<Vec<f32>>);
        impl ModuleVisitor for All {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                let v = param.val().into_data().try_to_vec::<f32>().expect("f32");
                self.0.push(v);
            }
        }
        // Through `valid()`, which folds in the latest running statistics.
        let mut all = All(vec![]);
        t.model().expect("model").valid().visit(&mut all);
        all.0
    }

    /// PyTorch's `BatchNorm2d` update: running_var ← 0.9·1 + 0.1·unbiased variance (and the
    /// mean likewise), computed here in f64 from the input; evaluation uses them.
    #[test]
    fn batch_norm_folds_in_the_unbiased_variance_like_pytorch() {
        let _serial = serial();
        let dev = Device::flex().autodiff();
        let mut ids = Ids::default();
        let bn = Bn::new(&mut ids, &dev, 2);
        let (n, c, h, w) = (3, 2, 2, 2);
        let x: Vec<f32> = (0..n * c * h * w)
            .map(|i| ((i * 37 % 11) as f32) * 0.5 - 2.0)
            .collect();
        let t = Tensor::<4>::from_data(TensorData::new(x.clone(), [n, c, h, w]), &dev);
        let _ = bn.forward(t);
        let var = bn
            .running_var
            .value_sync()
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32");
        let mean = bn
            .running_mean
            .value_sync()
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32");
        for ch in 0..c {
            let v: Vec<f64> = (0..n)
                .flat_map(|b| (0..h * w).map(move |k| (b * c + ch) * h * w + k))
                .map(|i| f64::from(x[i]))
                .collect();
            let m = v.len() as f64;
            let mu = v.iter().sum::<f64>() / m;
            let unbiased = v.iter().map(|a| (a - mu).powi(2)).sum::<f64>() / (m - 1.0);
            let want_var = 0.9 + 0.1 * unbiased;
            let want_mean = 0.1 * mu;
            assert!(
                (f64::from(var[ch]) - want_var).abs() < 1e-5 * want_var,
                "channel {ch}: running_var {} want {want_var} (biased would be {})",
                var[ch],
                0.9 + 0.1 * unbiased * (m - 1.0) / m
            );
            assert!(
                (f64::from(mean[ch]) - want_mean).abs() < 1e-6,
                "channel {ch}"
            );
        }
    }

    #[test]
    fn parameter_counts_match_the_spec() {
        let _serial = serial();
        for (model, kind) in [
            ("wrn-10-1", CifarKind::Cifar10),
            ("wrn-16-1", CifarKind::Cifar10),
            ("wrn-16-2", CifarKind::Cifar100),
        ] {
            let cfg = config(model, kind);
            let t = BurnTrainer::new(&cfg, None).expect("trainer");
            assert_eq!(
                t.param_count(),
                cfg.model.param_count(kind.classes()),
                "{model}"
            );
        }
        assert_eq!(
            BurnTrainer::new(&config("wrn-10-1", CifarKind::Cifar10), None)
                .expect("trainer")
                .param_count(),
            77_850
        );
        let big = BurnTrainer::new(&config("wrn-28-10", CifarKind::Cifar10), None).expect("big");
        assert_eq!(big.param_count(), 36_479_194);
    }

    #[test]
    fn dropout_is_applied_in_training_only() {
        let _serial = serial();
        let cfg = RunConfig {
            dropout: 0.3,
            ..config("wrn-10-1", CifarKind::Cifar10)
        };
        let mut t = BurnTrainer::new(&cfg, None).expect("trainer");
        let m = t.model().expect("model");
        assert!(m.blocks.iter().all(|b| b.dropout.is_some()));
        assert_eq!(t.param_count(), 77_850);
        let b = batch(4, 0);
        let (l, _) = t.step_values(&b, 0.1).expect("step");
        assert!(l.is_finite());
        // With lr 0 the weights stay: two training losses differ by the dropout masks only.
        let (a, _) = t.step_values(&b, 0.0).expect("step");
        let (c, _) = t.step_values(&b, 0.0).expect("step");
        assert_ne!(a, c);
        assert_eq!(t.evaluate(&b).expect("eval"), t.evaluate(&b).expect("eval"));
    }

    #[test]
    fn initialisation_follows_the_spec_and_the_seed() {
        let _serial = serial();
        let cfg = config("wrn-16-2", CifarKind::Cifar10);
        let t = BurnTrainer::new(&cfg, None).expect("trainer");
        let m = t.model().expect("model");
        // Block 3 (group 2, width 32k = 64): a 3×3 conv 64→64, std √(2 / (64·9)).
        let w = m.blocks[3]
            .conv2
            .weight
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .expect("w");
        let n = w.len() as f64;
        let mean = w.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let std = (w
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / n)
            .sqrt();
        let want = (2.0_f64 / (64.0 * 9.0)).sqrt();
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((std / want - 1.0).abs() < 0.05, "std {std}, want {want}");
        let g = m.blocks[0]
            .bn1
            .gamma
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .expect("g");
        let b = m.blocks[0]
            .bn1
            .beta
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .expect("b");
        assert!(g.iter().all(|&x| x == 1.0) && b.iter().all(|&x| x == 0.0));
        assert_eq!((m.bn.epsilon, m.bn.momentum), (1e-5, 0.1));
        let bound = 1.0 / (128f32).sqrt();
        let fw =
            m.fc.weight
                .val()
                .into_data()
                .try_to_vec::<f32>()
                .expect("fw");
        assert!(fw.iter().all(|&x| x.abs() <= bound) && fw.iter().any(|&x| x.abs() > bound / 2.0));
        let fb = m.fc.bias.as_ref().expect("bias").val().into_data();
        assert!(
            fb.try_to_vec::<f32>()
                .expect("fb")
                .iter()
                .all(|&x| x == 0.0)
        );
        assert!(m.conv.bias.is_none() && m.blocks.iter().all(|b| b.conv1.bias.is_none()));
        assert!(m.blocks[2].shortcut.is_some() && m.blocks[3].shortcut.is_none());
        assert!(m.blocks.iter().all(|b| b.dropout.is_none()));

        // The same seed, the same weights; another seed, others.
        let again = BurnTrainer::new(&cfg, None).expect("trainer");
        assert!(values(&t) == values(&again));
        let other = BurnTrainer::new(
            &RunConfig {
                seed: 4,
                ..cfg.clone()
            },
            None,
        )
        .expect("trainer");
        assert!(values(&t) != values(&other));
    }

    #[test]
    fn only_the_cpu_is_accepted() {
        let _serial = serial();
        let cfg = RunConfig {
            device: "cuda".into(),
            ..config("wrn-10-1", CifarKind::Cifar10)
        };
        let e = BurnTrainer::new(&cfg, None).expect_err("cuda accepted");
        assert!(e.to_string().contains("CPU only"), "{e}");
    }

    #[test]
    fn a_step_learns_evaluation_uses_running_statistics_and_save_load_resumes_exactly() {
        let _serial = serial();
        let cfg = config("wrn-10-1", CifarKind::Cifar10);
        let mut t = BurnTrainer::new(&cfg, None).expect("trainer");
        let before = values(&t);
        t.start_epoch().expect("epoch");
        let b0 = batch(4, 0);
        let (l0, c0) = t.step_values(&b0, 0.1).expect("step");
        assert!(l0.is_finite() && l0 > 0.0 && c0 <= 4);
        assert_eq!(t.epoch_stats().steps, 1);
        assert!(values(&t) != before, "the step changed nothing");
        // Evaluation is deterministic, sums over the batch, and leaves the model alone.
        let after = values(&t);
        let (s1, _) = t.evaluate(&b0).expect("eval");
        let (s2, _) = t.evaluate(&b0).expect("eval");
        assert_eq!(s1, s2);
        assert!(values(&t) == after);
        // Running statistics (eval) differ from batch statistics (train) after one update.
        let (l_train, _) = t.step_values(&b0, 0.0).expect("zero-lr step");
        assert!(
            (s1 / 4.0 - l_train).abs() > 1e-6,
            "eval {s1} vs train {l_train}"
        );

        let dir = tempfile::tempdir().expect("dir");
        t.save(dir.path()).expect("save");
        let mut u = BurnTrainer::new(
            &RunConfig {
                seed: 99,
                ..cfg.clone()
            },
            None,
        )
        .expect("trainer");
        u.load(dir.path()).expect("load");
        assert!(values(&u) == values(&t));
        for (i, lr) in [(1, 0.1), (2, 0.05)] {
            let b = batch(4, i);
            let a = t.step_values(&b, lr).expect("step");
            let c = u.step_values(&b, lr).expect("step");
            assert_eq!(a.0.to_bits(), c.0.to_bits());
            assert_eq!(a.1, c.1);
        }
        assert!(values(&u) == values(&t));
        assert_eq!(t.epoch_stats(), u.epoch_stats());
        assert_eq!(
            t.evaluate(&b0).expect("eval").0.to_bits(),
            u.evaluate(&b0).expect("eval").0.to_bits()
        );
        // A checkpoint of another model is refused, leaving the trainer usable.
        let mut w = BurnTrainer::new(&config("wrn-16-1", CifarKind::Cifar10), None).expect("w");
        assert!(w.load(dir.path()).is_err());
        assert!(w.step_values(&b0, 0.1).is_ok());
    }

    #[test]
    fn a_refused_step_keeps_the_model() {
        let _serial = serial();
        // Trainable parameters only: the forward pass has updated the running statistics by the
        // time the step is refused, as in tch.
        fn trainable(t: &BurnTrainer) -> Vec<Vec<f32>> {
            struct All(Vec<Vec<f32>>);
            impl ModuleVisitor for All {
                fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                    let v = param.val();
                    if v.is_require_grad() {
                        self.0.push(v.into_data().try_to_vec::<f32>().expect("f32"));
                    }
                }
            }
            let mut all = All(vec![]);
            t.model().expect("model").visit(&mut all);
            all.0
        }
        let cfg = config("wrn-10-1", CifarKind::Cifar10);
        let mut t = BurnTrainer::new(&cfg, None).expect("trainer");
        let before = trainable(&t);
        let e = t
            .step_values(&batch(2, 0), f64::NAN)
            .expect_err("NaN lr accepted");
        assert!(format!("{e:#}").contains("LCAM step"), "{e:#}");
        assert!(trainable(&t) == before);
        assert!(t.step_values(&batch(2, 0), 0.1).is_ok());
    }

    // ---- against the demo's WRN in PyTorch (fixtures/wrn, scripts/wrn_fixtures.py) ----

    use crate::train::wrn_fixture::{FwdBwd, Init, check_init_tensor, max_rel_err};
    use burn::module::ModuleMapper;

    fn wrn_fixtures() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/wrn")
    }

    /// Every float tensor of `m` in module order — PyTorch's `state_dict` order (BN: weight,
    /// bias, running mean, running var), with Burn's shapes (`fc.weight` is `[in, out]`).
    fn ordered(m: &Wrn) -> Vec<(Vec<usize>, Vec<f32>, ParamId)> {
        struct All(Vec<(Vec<usize>, Vec<f32>, ParamId)>);
        impl ModuleVisitor for All {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                let v = param.val();
                let shape = v.dims().to_vec();
                let data = v.into_data().try_to_vec::<f32>().expect("f32");
                self.0.push((shape, data, param.id));
            }
        }
        let mut all = All(vec![]);
        m.visit(&mut all);
        all.0
    }

    /// `[out, in]` (PyTorch) → `[in, out]` (Burn), or back.
    fn transpose(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
        (0..cols)
            .flat_map(|c| (0..rows).map(move |r| v[r * cols + c]))
            .collect()
    }

    #[test]
    fn initialisation_matches_the_demo() {
        let _serial = serial();
        let init = Init::load(&wrn_fixtures().join("init-wrn-16-1.json")).expect("fixture");
        let cfg = RunConfig {
            seed: init.seed,
            ..config(&init.model, CifarKind::Cifar10)
        };
        let t = BurnTrainer::new(&cfg, None).expect("trainer");
        let got = ordered(t.model().expect("model"));
        assert_eq!(got.len(), init.tensors.len());
        for (want, (shape, values, _)) in init.tensors.iter().zip(&got) {
            let mut s = want.shape.clone();
            if want.name == "fc.weight" {
                s.reverse();
            }
            assert_eq!(shape, &s, "{}", want.name);
            check_init_tensor(want, values).unwrap_or_else(|e| panic!("{e}"));
        }
    }

    #[test]
    fn forward_and_backward_match_pytorch() {
        let _serial = serial();
        let fx = FwdBwd::load(&wrn_fixtures().join("fwdbwd-wrn-10-1.json")).expect("fixture");
        let cfg = config(&fx.model, CifarKind::Cifar10);
        let t = BurnTrainer::new(&cfg, None).expect("trainer");
        let model = t.model().expect("model").clone();
        // PyTorch's tensor names in module order.
        let names: Vec<String> = fx
            .tensors
            .iter()
            .filter_map(|b| b.key.strip_prefix("init:").map(str::to_string))
            .collect();
        struct Load<'a> {
            fx: &'a FwdBwd,
            names: std::slice::Iter<'a, String>,
        }
        impl ModuleMapper for Load<'_> {
            fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
                let name = self.names.next().expect("as many tensors as PyTorch");
                let (shape, data) = self.fx.tensor(&format!("init:{name}")).expect("init");
                let (shape, data) = if name == "fc.weight" {
                    (
                        vec![shape[1], shape[0]],
                        transpose(data, shape[0], shape[1]),
                    )
                } else {
                    (shape, data.to_vec())
                };
                param.map(|old| {
                    assert_eq!(old.dims().to_vec(), shape, "{name}");
                    let dev = old.device();
                    let grad = old.is_require_grad();
                    Tensor::<D>::from_data(TensorData::new(data, shape.clone()), &dev)
                        .set_require_grad(grad)
                })
            }
        }
        let model = model.map(&mut Load {
            fx: &fx,
            names: names.iter(),
        });
        let (xs, x) = fx.tensor("input").expect("input");
        let dev = t.device.clone();
        let x = Tensor::<4>::from_data(TensorData::new(x.to_vec(), xs), &dev);
        let y = Tensor::<1, Int>::from_data(
            TensorData::new(fx.labels.clone(), [fx.labels.len()]),
            &dev,
        );
        let logits = model.forward(x);
        let loss = cross_entropy(logits.clone(), y).mean();
        let l = scalar(loss.clone().detach(), "loss").expect("loss");
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let logits = logits.into_data().try_to_vec::<f32>().expect("logits");
        let mut worst = 0.0f64;
        let mut check = |what: &str, got: &[f32], want: &[f32]| {
            let e = max_rel_err(got, want);
            worst = worst.max(e);
            assert!(e <= 1e-4, "{what}: max relative error {e:.3e} > 1e-4");
        };
        check("logits", &logits, fx.tensor("logits").expect("logits").1);
        assert!(
            (l - fx.loss).abs() / fx.loss <= 1e-5,
            "loss {l} vs PyTorch {}",
            fx.loss
        );
        // Running statistics after the batch: `valid()` folds them in.
        let after = ordered(&model.valid());
        let mut n_grads = 0;
        for (name, (shape, values, id)) in names.iter().zip(&after) {
            if name.ends_with("running_mean") || name.ends_with("running_var") {
                check(
                    name,
                    values,
                    fx.tensor(&format!("after:{name}")).expect("after").1,
                );
                continue;
            }
            // The container downcasts by rank: ask with the tensor's own.
            let data = match shape.len() {
                1 => grads.get::<1>(*id).map(|g| g.into_data()),
                2 => grads.get::<2>(*id).map(|g| g.into_data()),
                _ => grads.get::<4>(*id).map(|g| g.into_data()),
            };
            let g = data
                .unwrap_or_else(|| panic!("no gradient for {name}"))
                .try_to_vec::<f32>()
                .expect("f32");
            let want = fx.tensor(&format!("grad:{name}")).expect("grad").1;
            let g = if name == "fc.weight" {
                transpose(&g, shape[0], shape[1])
            } else {
                g
            };
            check(&format!("grad {name}"), &g, want);
            n_grads += 1;
        }
        assert_eq!(n_grads, fx.grad_count());
        eprintln!("Burn vs PyTorch: worst max relative error {worst:.2e}");
    }
}
