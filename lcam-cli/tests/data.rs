//! The CIFAR reader and the batch loader, on synthetic files in the official binary format.

use std::path::Path;
use std::sync::Arc;

use lcam_cli::data::cifar::{self, CifarKind, DataError, IMAGE_BYTES, Split};
use lcam_cli::data::loader::{self, Loader, LoaderConfig, Normalize};

fn synthetic(kind: CifarKind, n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    cifar::write_synthetic(dir.path(), kind, Split::Train, n, 1).expect("write train");
    cifar::write_synthetic(dir.path(), kind, Split::Test, n, 2).expect("write test");
    dir
}

fn cfg(augment: bool) -> LoaderConfig {
    LoaderConfig {
        batch_size: 7,
        augment,
        shuffle: augment,
        normalize: Normalize::IMAGENET,
        seed: 42,
    }
}

#[test]
fn cifar10_records_are_split_into_labels_and_planar_pixels() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().join("cifar-10-batches-bin");
    std::fs::create_dir_all(&d).expect("mkdir");
    // Two records per file, written by hand: label, then R, G, B planes.
    let files: Vec<&str> = [Split::Train, Split::Test]
        .into_iter()
        .flat_map(|s| CifarKind::Cifar10.files(s))
        .map(|(name, _)| name)
        .collect();
    for (f, name) in files.iter().enumerate() {
        let mut bytes = Vec::new();
        for r in 0..2u8 {
            bytes.push((f as u8 + r) % 10);
            for c in 0..3u8 {
                bytes.extend(std::iter::repeat_n(10 * c + r + f as u8, 1024));
            }
        }
        std::fs::write(d.join(name), bytes).expect("write");
    }
    let marker: String = files.iter().map(|n| format!("{n} 2\n")).collect();
    std::fs::write(d.join(cifar::SYNTHETIC_MARKER), marker).expect("marker");
    let train = cifar::load(dir.path(), CifarKind::Cifar10, Split::Train).expect("load");
    assert_eq!(train.len(), 10);
    assert_eq!(train.labels, vec![0, 1, 1, 2, 2, 3, 3, 4, 4, 5]);
    let img = train.image(3); // file 1, record 1
    assert_eq!((img[0], img[1024], img[2048], img[3071]), (2, 12, 22, 22));
    let test =
        cifar::load(&d, CifarKind::Cifar10, Split::Test).expect("the dataset dir itself works too");
    assert_eq!(test.labels, vec![5, 6]);
}

#[test]
fn cifar100_keeps_fine_and_coarse_labels() {
    let dir = synthetic(CifarKind::Cifar100, 50);
    let ds = cifar::load(dir.path(), CifarKind::Cifar100, Split::Train).expect("load");
    assert_eq!(
        (ds.len(), ds.classes, ds.coarse_labels.len()),
        (50, 100, 50)
    );
    assert!(
        ds.labels
            .iter()
            .zip(&ds.coarse_labels)
            .all(|(f, c)| f / 5 == *c)
    );
    assert_eq!(ds.images.len(), 50 * IMAGE_BYTES);
}

fn expect_err(dir: &Path, kind: CifarKind) -> DataError {
    cifar::load(dir, kind, Split::Train).expect_err("must be rejected")
}

#[test]
fn bad_files_are_rejected_naming_the_file() {
    let dir = synthetic(CifarKind::Cifar10, 20);
    let f = dir.path().join("cifar-10-batches-bin/data_batch_3.bin");
    let bytes = std::fs::read(&f).expect("read");
    // Truncated by one byte.
    std::fs::write(&f, &bytes[..bytes.len() - 1]).expect("write");
    let e = expect_err(dir.path(), CifarKind::Cifar10);
    assert!(matches!(e, DataError::Size { .. }), "{e}");
    assert!(
        e.to_string().contains("data_batch_3.bin") && e.to_string().contains("truncated"),
        "{e}"
    );
    // A label out of range.
    let mut bad = bytes.clone();
    bad[3073 * 4] = 10;
    std::fs::write(&f, bad).expect("write");
    let e = expect_err(dir.path(), CifarKind::Cifar10);
    assert!(
        e.to_string().contains("record 4") && e.to_string().contains("label 10"),
        "{e}"
    );
    // Missing: the message says how to get the data.
    std::fs::remove_file(&f).expect("rm");
    let e = expect_err(dir.path(), CifarKind::Cifar10);
    assert!(matches!(e, DataError::Missing { .. }));
    assert!(
        e.to_string().contains("LCAM_DATA_DIR") && e.to_string().contains("download"),
        "{e}"
    );
    // Without the synthetic marker the official record counts are required.
    let dir = synthetic(CifarKind::Cifar100, 20);
    std::fs::remove_file(
        dir.path()
            .join("cifar-100-binary")
            .join(cifar::SYNTHETIC_MARKER),
    )
    .expect("rm");
    let e = expect_err(dir.path(), CifarKind::Cifar100);
    assert!(e.to_string().contains("153700000"), "{e}");
    // CIFAR-100 coarse label out of range.
    let dir = synthetic(CifarKind::Cifar100, 20);
    let f = dir.path().join("cifar-100-binary/train.bin");
    let mut bytes = std::fs::read(&f).expect("read");
    bytes[3074 * 2] = 20;
    std::fs::write(&f, bytes).expect("write");
    assert!(
        expect_err(dir.path(), CifarKind::Cifar100)
            .to_string()
            .contains("coarse label 20")
    );
}

#[test]
fn evaluation_batches_are_the_normalised_images_in_order() {
    let dir = synthetic(CifarKind::Cifar10, 5);
    let ds = Arc::new(cifar::load(dir.path(), CifarKind::Cifar10, Split::Test).expect("load"));
    let batches: Vec<_> = Loader::new(ds.clone(), cfg(false), 0, 0).collect();
    assert_eq!(batches.iter().map(|b| b.len()).collect::<Vec<_>>(), vec![5]);
    let b = &batches[0];
    for i in [0usize, 4] {
        for (k, &byte) in ds.image(i).iter().enumerate() {
            let c = k / 1024;
            let want =
                (byte as f32 / 255.0 - Normalize::IMAGENET.mean[c]) / Normalize::IMAGENET.std[c];
            assert_eq!(b.images[i * IMAGE_BYTES + k], want);
        }
    }
    assert_eq!(
        b.labels,
        ds.labels.iter().map(|&l| i64::from(l)).collect::<Vec<_>>()
    );
}

#[test]
fn augmented_images_are_shifted_crops_or_mirrors_with_zero_padding() {
    let dir = synthetic(CifarKind::Cifar10, 20);
    let ds = Arc::new(cifar::load(dir.path(), CifarKind::Cifar10, Split::Train).expect("load"));
    let c = cfg(true);
    let order = loader::epoch_order(ds.len(), &c, 3);
    let batch = loader::make_batch(&ds, &order[..7], &c, 3, 0);
    let norm = |ch: usize, v: u8| (v as f32 / 255.0 - c.normalize.mean[ch]) / c.normalize.std[ch];
    let mut shifted = 0;
    for (j, &i) in order[..7].iter().enumerate() {
        let img = ds.image(i);
        let out = &batch.images[j * IMAGE_BYTES..(j + 1) * IMAGE_BYTES];
        // Find the (dx, dy, flip) that explains the output: exactly one must.
        let mut found = vec![];
        for flip in [false, true] {
            for dy in -4i32..=4 {
                for dx in -4i32..=4 {
                    let ok = (0..3).all(|ch| {
                        (0..32i32).all(|y| {
                            (0..32i32).all(|x| {
                                let xo = if flip { 31 - x } else { x };
                                let (sx, sy) = (xo + dx, y + dy);
                                let want = if (0..32).contains(&sx) && (0..32).contains(&sy) {
                                    norm(ch as usize, img[(ch * 1024 + sy * 32 + sx) as usize])
                                } else {
                                    norm(ch as usize, 0)
                                };
                                out[(ch * 1024 + y * 32 + x) as usize] == want
                            })
                        })
                    });
                    if ok {
                        found.push((dx, dy, flip));
                    }
                }
            }
        }
        assert_eq!(found.len(), 1, "image {j}: {found:?}");
        shifted += usize::from(found[0].0 != 0 || found[0].1 != 0);
    }
    assert!(shifted > 0, "random crops happen");
}

#[test]
fn batches_are_deterministic_reshuffled_per_epoch_and_resumable() {
    let dir = synthetic(CifarKind::Cifar10, 10);
    let ds = Arc::new(cifar::load(dir.path(), CifarKind::Cifar10, Split::Train).expect("load"));
    assert_eq!(ds.len(), 50);
    let epoch = |e, first| Loader::new(ds.clone(), cfg(true), e, first).collect::<Vec<_>>();
    let a = epoch(0, 0);
    assert_eq!(a.len(), 8, "50 images in batches of 7: 7 full + 1 partial");
    assert_eq!(a.last().map(|b| b.len()), Some(1));
    assert_eq!(a, epoch(0, 0), "same seed, same batches");
    assert_ne!(a[0].labels, epoch(1, 0)[0].labels, "reshuffled every epoch");
    assert_eq!(
        &a[3..],
        &epoch(0, 3)[..],
        "resuming at batch 3 gives the same batches"
    );
    let mut seen: Vec<i64> = a.iter().flat_map(|b| b.labels.clone()).collect();
    let mut all: Vec<i64> = ds.labels.iter().map(|&l| i64::from(l)).collect();
    seen.sort_unstable();
    all.sort_unstable();
    assert_eq!(seen, all, "every image exactly once per epoch");
    assert_eq!(loader::batches_per_epoch(50_000, 128), 391);
}

/// Reads the real dataset when `LCAM_DATA_DIR` points at it (CI unpacks it); skipped otherwise.
#[test]
fn real_cifar_when_present() {
    let Some(dir) = std::env::var_os("LCAM_DATA_DIR") else {
        lcam_testkit::skip(
            lcam_testkit::Need::Data,
            "real_cifar_when_present",
            "LCAM_DATA_DIR is not set",
        );
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    for kind in [CifarKind::Cifar10, CifarKind::Cifar100] {
        if !cifar::dataset_dir(&dir, kind)
            .join(kind.files(Split::Test)[0].0)
            .exists()
        {
            lcam_testkit::skip(
                lcam_testkit::Need::Data,
                "real_cifar_when_present",
                &format!("{kind:?} not in {}", dir.display()),
            );
            continue;
        }
        let t = std::time::Instant::now();
        let train = cifar::load(&dir, kind, Split::Train).expect("train");
        let test = cifar::load(&dir, kind, Split::Test).expect("test");
        eprintln!("{kind:?}: loaded in {:.2}s", t.elapsed().as_secs_f64());
        assert_eq!((train.len(), test.len()), (50_000, 10_000));
        let mut counts = vec![0usize; kind.classes()];
        for &l in &train.labels {
            counts[usize::from(l)] += 1;
        }
        assert!(
            counts.iter().all(|&c| c == 50_000 / kind.classes()),
            "balanced classes"
        );
        if kind == CifarKind::Cifar100 {
            // `labels` are the 100 fine labels; the 20 coarse ones are kept beside them, and
            // every fine class lies in exactly one coarse class.
            assert_eq!(train.coarse_labels.len(), 50_000);
            let mut coarse = [0usize; 20];
            let mut parent = [None::<u8>; 100];
            for (&f, &c) in train.labels.iter().zip(&train.coarse_labels) {
                coarse[usize::from(c)] += 1;
                let p = parent[usize::from(f)].get_or_insert(c);
                assert_eq!(*p, c, "fine class {f} in two coarse classes");
            }
            assert!(coarse.iter().all(|&c| c == 2_500), "{coarse:?}");
        }
        let mean_r = train
            .images
            .chunks_exact(IMAGE_BYTES)
            .map(|im| im[..1024].iter().map(|&v| v as f64).sum::<f64>())
            .sum::<f64>()
            / (50_000.0 * 1024.0 * 255.0);
        let want = f64::from(kind.stats().0[0]);
        assert!(
            (mean_r - want).abs() < 1e-3,
            "{kind:?} red mean {mean_r} vs {want}"
        );
    }
}
