//! Augmentation and batching as the demo does it (SPEC §3): zero-pad 4 + random 32×32 crop,
//! horizontal flip with p = 0.5, per-channel normalisation, batches reshuffled every epoch with
//! the last partial batch kept. Batches are prepared on a background thread, two ahead of the
//! model, and are deterministic given the seed: batch `b` of epoch `e` depends only on
//! `(seed, e, b)`, so a resumed run sees exactly the batches an uninterrupted one would.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};
use std::thread::JoinHandle;

use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::cifar::{Dataset, IMAGE_BYTES};

/// Per-channel normalisation `(x/255 − mean) / std`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Normalize {
    /// Channel means (R, G, B).
    pub mean: [f32; 3],
    /// Channel standard deviations (R, G, B).
    pub std: [f32; 3],
}

impl Normalize {
    /// ImageNet's statistics, which the authors' demo uses for CIFAR (SPEC §3).
    pub const IMAGENET: Normalize = Normalize {
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
    };

    /// A lookup table byte → normalised value, per channel.
    fn table(&self) -> [[f32; 256]; 3] {
        let mut t = [[0.0; 256]; 3];
        for (c, row) in t.iter_mut().enumerate() {
            for (v, out) in row.iter_mut().enumerate() {
                *out = (v as f32 / 255.0 - self.mean[c]) / self.std[c];
            }
        }
        t
    }
}

/// A batch in NCHW order.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// `len × 3 × 32 × 32` normalised pixels.
    pub images: Vec<f32>,
    /// `len` class indices.
    pub labels: Vec<i64>,
    /// Index of this batch within its epoch.
    pub index: usize,
}

impl Batch {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// `true` for an empty batch.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// How batches are made.
#[derive(Debug, Clone, Copy)]
pub struct LoaderConfig {
    /// Images per batch (the last batch may be smaller).
    pub batch_size: usize,
    /// Random crop + flip (training); off for evaluation.
    pub augment: bool,
    /// Reshuffle every epoch (training); off for evaluation.
    pub shuffle: bool,
    /// Normalisation.
    pub normalize: Normalize,
    /// Run seed.
    pub seed: u64,
}

/// Number of batches of an epoch over `n` images (last partial batch kept).
pub fn batches_per_epoch(n: usize, batch_size: usize) -> usize {
    n.div_ceil(batch_size)
}

/// A 64-bit seed for the stream `(seed, a, b)` (splitmix64 finaliser): the loader uses
/// `(seed, epoch, batch)`, the training loop `(seed, u64::MAX, step)` for dropout.
pub fn mix(seed: u64, a: u64, b: u64) -> u64 {
    // splitmix64 over the three words: independent streams per (seed, epoch, batch).
    let mut z =
        seed ^ a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The order in which epoch `epoch` visits the `n` images.
pub fn epoch_order(n: usize, cfg: &LoaderConfig, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    if cfg.shuffle {
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(mix(
            cfg.seed,
            epoch,
            u64::MAX,
        )));
    }
    order
}

/// Builds one batch from the images at `indices`.
pub fn make_batch(
    ds: &Dataset,
    indices: &[usize],
    cfg: &LoaderConfig,
    epoch: u64,
    index: usize,
) -> Batch {
    let table = cfg.normalize.table();
    let mut rng = ChaCha8Rng::seed_from_u64(mix(cfg.seed, epoch, index as u64));
    let mut images = vec![0.0f32; indices.len() * IMAGE_BYTES];
    for (out, &i) in images.chunks_exact_mut(IMAGE_BYTES).zip(indices) {
        let (dx, dy, flip) = if cfg.augment {
            (
                rng.random_range(0..=8i32) - 4,
                rng.random_range(0..=8i32) - 4,
                rng.random_bool(0.5),
            )
        } else {
            (0, 0, false)
        };
        write_image(ds.image(i), out, &table, dx, dy, flip);
    }
    Batch {
        images,
        labels: indices.iter().map(|&i| i64::from(ds.labels[i])).collect(),
        index,
    }
}

/// Writes one image shifted by `(dx, dy)` (the crop offset minus the padding; pixels shifted in
/// from outside are the zero padding) and optionally mirrored, normalised through `table`.
fn write_image(src: &[u8], out: &mut [f32], table: &[[f32; 256]; 3], dx: i32, dy: i32, flip: bool) {
    for c in 0..3 {
        let pad = table[c][0];
        let plane = &src[c * 1024..(c + 1) * 1024];
        for y in 0..32i32 {
            let sy = y + dy;
            let row = &mut out[c * 1024 + y as usize * 32..c * 1024 + y as usize * 32 + 32];
            for (x, o) in row.iter_mut().enumerate() {
                let xo = if flip { 31 - x as i32 } else { x as i32 };
                let sx = xo + dx;
                *o = if (0..32).contains(&sy) && (0..32).contains(&sx) {
                    table[c][usize::from(plane[(sy * 32 + sx) as usize])]
                } else {
                    pad
                };
            }
        }
    }
}

/// Batches of one epoch, prepared on a background thread two batches ahead.
#[derive(Debug)]
pub struct Loader {
    rx: Receiver<Batch>,
    handle: Option<JoinHandle<()>>,
    remaining: usize,
}

impl Loader {
    /// Starts producing the batches of `epoch`, from batch `first` on (to resume mid-epoch).
    pub fn new(ds: Arc<Dataset>, cfg: LoaderConfig, epoch: u64, first: usize) -> Self {
        let total = batches_per_epoch(ds.len(), cfg.batch_size);
        let (tx, rx) = sync_channel(2);
        let handle = std::thread::spawn(move || {
            let order = epoch_order(ds.len(), &cfg, epoch);
            for (b, idx) in order.chunks(cfg.batch_size).enumerate().skip(first) {
                if tx.send(make_batch(&ds, idx, &cfg, epoch, b)).is_err() {
                    return; // the consumer stopped early
                }
            }
        });
        Self {
            rx,
            handle: Some(handle),
            remaining: total.saturating_sub(first),
        }
    }

    /// Batches still to come.
    pub fn remaining(&self) -> usize {
        self.remaining
    }
}

impl Iterator for Loader {
    type Item = Batch;
    fn next(&mut self) -> Option<Batch> {
        match self.rx.recv() {
            Ok(b) => {
                self.remaining -= 1;
                Some(b)
            }
            Err(_) => {
                if let Some(h) = self.handle.take() {
                    // Propagate a panic of the producer instead of silently ending the epoch.
                    if let Err(p) = h.join() {
                        std::panic::resume_unwind(p);
                    }
                }
                None
            }
        }
    }
}
