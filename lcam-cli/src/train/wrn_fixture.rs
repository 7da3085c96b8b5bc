//! Reading the PyTorch WRN fixtures of `fixtures/wrn` (written by `scripts/wrn_fixtures.py` from
//! the demo's model in `scripts/demo_wrn.py`) and the checks both backends' tests apply to them.
//!
//! - `lcam-wrn-init/1`: per tensor of a freshly initialised WRN its name (PyTorch's = lcam's tch
//!   names), shape, and either the exact constant or the law's std (mean 0) with the sample
//!   mean/std of PyTorch's draw.
//! - `lcam-wrn-fwdbwd/1`: one training-mode batch through the demo's WRN: initial weights, input,
//!   labels, logits, loss, gradients and the BN running statistics after it, as little-endian
//!   f32 blobs in a `.bin` next to the `.json`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// One tensor of an init fixture.
#[derive(Debug, Clone, Deserialize)]
pub struct InitTensor {
    /// PyTorch / tch name, e.g. `group1.block0.conv1.weight`.
    pub name: String,
    /// PyTorch's shape.
    pub shape: Vec<usize>,
    /// The exact value of every element, for constant initialisers.
    pub constant: Option<f64>,
    /// The law's standard deviation (mean 0), for random initialisers.
    pub std: Option<f64>,
    /// Mean of PyTorch's draw.
    pub sample_mean: Option<f64>,
    /// Standard deviation (population formula) of PyTorch's draw.
    pub sample_std: Option<f64>,
    /// Fan-in of a convolution.
    pub fan_in: Option<usize>,
    /// Fan-out of a convolution.
    pub fan_out: Option<usize>,
}

/// An `lcam-wrn-init/1` fixture.
#[derive(Debug, Clone, Deserialize)]
pub struct Init {
    /// `wrn-D-K`.
    pub model: String,
    /// Classes.
    pub classes: usize,
    /// PyTorch's seed (lcam draws with its own generator).
    pub seed: u64,
    /// Every parameter and buffer, in PyTorch's `state_dict` order.
    pub tensors: Vec<InitTensor>,
}

impl Init {
    /// Reads a fixture.
    pub fn load(path: &Path) -> Result<Init> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not an init fixture", path.display()))
    }
}

/// Sampling-error bound: a statistic is accepted within this many standard errors.
pub const SIGMAS: f64 = 5.0;

/// Checks lcam's initial values of `t` against the demo's law: constants exactly; random
/// tensors with mean within [`SIGMAS`]·σ/√n of 0 and standard deviation within
/// [`SIGMAS`]·σ/√(2n) of σ (the standard errors of a normal sample's mean and std; the uniform
/// law's std has a smaller one). PyTorch's own draw is held to the same bound, so the fixture's
/// law is PyTorch's.
pub fn check_init_tensor(t: &InitTensor, values: &[f32]) -> Result<()> {
    let n = values.len();
    if n != t.shape.iter().product::<usize>() {
        bail!("{}: {n} values for shape {:?}", t.name, t.shape);
    }
    if let Some(c) = t.constant {
        if let Some((i, v)) = values.iter().enumerate().find(|(_, v)| f64::from(**v) != c) {
            bail!(
                "{}: element {i} is {v}, the demo initialises every element to {c}",
                t.name
            );
        }
        return Ok(());
    }
    let Some(sigma) = t.std else {
        bail!("{}: the fixture has neither `constant` nor `std`", t.name);
    };
    let (mean, std) = mean_std(values);
    let nf = n as f64;
    let mean_tol = SIGMAS * sigma / nf.sqrt();
    let std_tol = SIGMAS * sigma / (2.0 * nf).sqrt();
    if mean.abs() > mean_tol {
        bail!(
            "{}: mean {mean:.3e}, the demo's law has 0 (± {mean_tol:.1e} at n = {n})",
            t.name
        );
    }
    if (std - sigma).abs() > std_tol {
        bail!(
            "{}: std {std:.4e}, the demo's law has {sigma:.4e} (± {std_tol:.1e} at n = {n})",
            t.name
        );
    }
    if let (Some(pm), Some(ps)) = (t.sample_mean, t.sample_std)
        && (pm.abs() > mean_tol || (ps - sigma).abs() > std_tol)
    {
        bail!(
            "{}: PyTorch's own draw (mean {pm}, std {ps}) is outside the bound",
            t.name
        );
    }
    Ok(())
}

/// Mean and standard deviation (population formula), in f64.
pub fn mean_std(values: &[f32]) -> (f64, f64) {
    let n = values.len().max(1) as f64;
    let mean = values.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let var = values
        .iter()
        .map(|&x| (f64::from(x) - mean).powi(2))
        .sum::<f64>()
        / n;
    (mean, var.sqrt())
}

/// Largest element-wise difference relative to the tensor's largest magnitude:
/// `max |got − want| / max |want|` (the scale-aware error used across lcam's fixtures; a
/// per-element ratio is meaningless for gradients that cross zero).
pub fn max_rel_err(got: &[f32], want: &[f32]) -> f64 {
    if got.len() != want.len() {
        return f64::INFINITY;
    }
    let scale = want
        .iter()
        .map(|&w| f64::from(w).abs())
        .fold(0.0, f64::max)
        .max(f64::MIN_POSITIVE);
    got.iter()
        .zip(want)
        .map(|(&g, &w)| (f64::from(g) - f64::from(w)).abs())
        .fold(0.0, f64::max)
        / scale
}

/// One blob of a forward/backward fixture.
#[derive(Debug, Clone, Deserialize)]
pub struct Blob {
    /// `init:<name>`, `input`, `logits`, `grad:<name>`, `after:<name>`.
    pub key: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Byte offset in the `.bin`.
    pub offset: usize,
    /// Number of f32 values.
    pub len: usize,
}

/// An `lcam-wrn-fwdbwd/1` fixture with its blobs.
#[derive(Debug, Clone, Deserialize)]
pub struct FwdBwd {
    /// `wrn-D-K`.
    pub model: String,
    /// Classes.
    pub classes: usize,
    /// Class indices of the batch.
    pub labels: Vec<i64>,
    /// PyTorch's mean cross-entropy.
    pub loss: f64,
    /// The blobs' index.
    pub tensors: Vec<Blob>,
    /// The `.bin`'s values, decoded.
    #[serde(skip)]
    pub data: Vec<f32>,
}

impl FwdBwd {
    /// Reads `<name>.json` and its `<name>.bin`.
    pub fn load(json: &Path) -> Result<FwdBwd> {
        let text = std::fs::read_to_string(json)
            .with_context(|| format!("cannot read {}", json.display()))?;
        let mut f: FwdBwd = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a fwdbwd fixture", json.display()))?;
        let bin: PathBuf = json.with_extension("bin");
        let bytes =
            std::fs::read(&bin).with_context(|| format!("cannot read {}", bin.display()))?;
        if bytes.len() % 4 != 0 {
            bail!(
                "{}: {} bytes is not a whole number of f32",
                bin.display(),
                bytes.len()
            );
        }
        f.data = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        for b in &f.tensors {
            if b.offset % 4 != 0 || b.offset / 4 + b.len > f.data.len() {
                bail!(
                    "{}: blob `{}` lies outside {}",
                    json.display(),
                    b.key,
                    bin.display()
                );
            }
        }
        Ok(f)
    }

    /// The shape and values of blob `key`.
    pub fn tensor(&self, key: &str) -> Result<(Vec<usize>, &[f32])> {
        let b = self
            .tensors
            .iter()
            .find(|b| b.key == key)
            .with_context(|| format!("the fixture has no tensor `{key}`"))?;
        let start = b.offset / 4;
        Ok((b.shape.clone(), &self.data[start..start + b.len]))
    }

    /// Number of gradients (trainable tensors).
    pub fn grad_count(&self) -> usize {
        self.tensors
            .iter()
            .filter(|b| b.key.starts_with("grad:"))
            .count()
    }
}
