//! The augmentation's statistics against the demo's (`RandomCrop(32, padding=4)` then
//! `RandomHorizontalFlip()`, SPEC §3): over thousands of augmented images, crop offsets are
//! uniform over 0..=8 on each axis, the flip rate is 0.5, and offsets and flips are independent
//! of each other and of the neighbouring image — each a chi-square test at p = 0.001.
//!
//! The crop and flip of each image are read back from the pixels: the test image's red value
//! encodes its column, the green value its row (never 0, so padding is told apart).

use lcam_cli::data::cifar::Dataset;
use lcam_cli::data::loader::{LoaderConfig, Normalize, make_batch};

/// Chi-square critical values at p = 0.001 (upper tail), by degrees of freedom (standard
/// tables, e.g. NIST/SEMATECH e-Handbook 1.3.6.7.4).
fn critical(df: usize) -> f64 {
    match df {
        1 => 10.828,
        3 => 16.266,
        8 => 26.124,
        17 => 40.790,
        64 => 103.442,
        80 => 124.839,
        _ => panic!("no table entry for {df} degrees of freedom"),
    }
}

fn chi_square(counts: &[usize], expected: &[f64]) -> f64 {
    counts
        .iter()
        .zip(expected)
        .map(|(&o, &e)| (o as f64 - e).powi(2) / e)
        .sum()
}

/// One image: red = 8·column + 4, green = 8·row + 4, blue = 1.
fn marker_dataset(n: usize) -> Dataset {
    let mut img = vec![0u8; 3072];
    for y in 0..32 {
        for x in 0..32 {
            img[y * 32 + x] = (8 * x + 4) as u8;
            img[1024 + y * 32 + x] = (8 * y + 4) as u8;
            img[2048 + y * 32 + x] = 1;
        }
    }
    Dataset {
        images: img.repeat(n),
        labels: vec![0; n],
        coarse_labels: vec![],
        classes: 10,
    }
}

/// `(crop x offset 0..=8, crop y offset 0..=8, flipped)` of one augmented image.
fn decode(out: &[f32]) -> (usize, usize, bool) {
    // Normalisation mean 0, std 1: a value is pixel/255.
    let px = |c: usize, y: usize, x: usize| (out[c * 1024 + y * 32 + x] * 255.0).round() as i32;
    // The centre is never padding (|shift| <= 4).
    let col = (px(0, 16, 16) - 4) / 8;
    let row = (px(1, 16, 16) - 4) / 8;
    let flipped = px(0, 16, 17) < px(0, 16, 16);
    // Crop-then-flip: output column x shows source column 31 − x + dx when flipped (dx = the
    // crop's offset − 4 in padded coordinates).
    let dx = if flipped { col - 15 } else { col - 16 };
    let dy = row - 16;
    assert!(
        (-4..=4).contains(&dx) && (-4..=4).contains(&dy),
        "{dx} {dy}"
    );
    ((dx + 4) as usize, (dy + 4) as usize, flipped)
}

#[test]
fn crop_offsets_and_flips_are_uniform_and_independent() {
    let per_batch = 128;
    let batches = 80; // 10,240 images
    let ds = marker_dataset(per_batch);
    let cfg = LoaderConfig {
        batch_size: per_batch,
        augment: true,
        shuffle: false,
        normalize: Normalize {
            mean: [0.0; 3],
            std: [1.0; 3],
        },
        seed: 11,
    };
    let idx: Vec<usize> = (0..per_batch).collect();
    let mut draws = vec![];
    for b in 0..batches {
        // Across epochs and batch indices, as training draws them.
        let batch = make_batch(&ds, &idx, &cfg, (b % 4) as u64, b / 4);
        for img in batch.images.chunks_exact(3072) {
            draws.push(decode(img));
        }
    }
    let n = draws.len();
    // Padding shows where expected: a crop offset of 0 (shift −4) pads the first 4 rows.
    let mut xs = [0usize; 9];
    let mut ys = [0usize; 9];
    let mut joint = [0usize; 81];
    let mut flips = [0usize; 2];
    let mut flip_x = [0usize; 18];
    let mut pairs = [0usize; 4];
    for (i, &(x, y, f)) in draws.iter().enumerate() {
        xs[x] += 1;
        ys[y] += 1;
        joint[9 * y + x] += 1;
        flips[usize::from(f)] += 1;
        flip_x[9 * usize::from(f) + x] += 1;
        if i % 2 == 1 {
            pairs[2 * usize::from(draws[i - 1].2) + usize::from(f)] += 1;
        }
    }
    let nf = n as f64;
    let c = |counts: &[usize], df: usize, what: &str| {
        let k = counts.len() as f64;
        let expected = vec![nf / k; counts.len()];
        let (stat, crit) = (chi_square(counts, &expected), critical(df));
        assert!(
            stat < crit,
            "{what}: chi-square {stat:.1} >= {crit} ({df} df): {counts:?}"
        );
        eprintln!("{what}: chi-square {stat:.1} < {crit} ({df} df)");
    };
    c(&xs, 8, "x offsets uniform over 0..=8");
    c(&ys, 8, "y offsets uniform over 0..=8");
    c(&flips, 1, "flip rate 0.5");
    // Under independence and uniform margins every cell is equally likely.
    c(&joint, 80, "x and y offsets independent");
    c(&flip_x, 17, "flip independent of the offset");
    let pair_counts = [pairs[0], pairs[1], pairs[2], pairs[3]];
    let npairs = pair_counts.iter().sum::<usize>() as f64;
    let stat = chi_square(&pair_counts, &[npairs / 4.0; 4]);
    assert!(
        stat < critical(3),
        "neighbouring flips dependent: {stat:.1}, {pair_counts:?}"
    );
    let rate = flips[1] as f64 / nf;
    assert!((rate - 0.5).abs() < 0.03, "flip rate {rate}");
}

#[test]
fn the_decoder_sees_a_known_crop() {
    // No augmentation: offset 4 (no shift) and no flip, for every image.
    let ds = marker_dataset(4);
    let cfg = LoaderConfig {
        batch_size: 4,
        augment: false,
        shuffle: false,
        normalize: Normalize {
            mean: [0.0; 3],
            std: [1.0; 3],
        },
        seed: 0,
    };
    let b = make_batch(&ds, &[0, 1, 2, 3], &cfg, 0, 0);
    for img in b.images.chunks_exact(3072) {
        assert_eq!(decode(img), (4, 4, false));
    }
}
