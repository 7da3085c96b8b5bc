//! CIFAR-10 / CIFAR-100 binary-format reader.
//!
//! Layout: CIFAR-10 records are 1 label byte (0–9) + 3,072 pixel bytes (1,024 red, 1,024 green,
//! 1,024 blue, each 32×32 row-major), 10,000 per file (`data_batch_1..5.bin`, `test_batch.bin`
//! in `cifar-10-batches-bin/`). CIFAR-100 records are 1 coarse-label byte (0–19) + 1 fine-label
//! byte (0–99) + the same 3,072 bytes; `train.bin` holds 50,000, `test.bin` 10,000
//! (`cifar-100-binary/`). Each file is read with one `read` and validated before use: exact
//! size, label ranges.

use std::path::{Path, PathBuf};

use thiserror::Error;

/// Pixels per image (3 × 32 × 32).
pub const IMAGE_BYTES: usize = 3 * 32 * 32;

/// Which CIFAR variant.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum CifarKind {
    /// CIFAR-10: 10 classes.
    Cifar10,
    /// CIFAR-100: 100 fine classes (20 coarse).
    Cifar100,
}

/// Train or test split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// 50,000 training images.
    Train,
    /// 10,000 test images.
    Test,
}

impl CifarKind {
    /// Number of (fine) classes.
    pub fn classes(self) -> usize {
        match self {
            CifarKind::Cifar10 => 10,
            CifarKind::Cifar100 => 100,
        }
    }

    /// The directory the official archive unpacks to.
    pub fn dir_name(self) -> &'static str {
        match self {
            CifarKind::Cifar10 => "cifar-10-batches-bin",
            CifarKind::Cifar100 => "cifar-100-binary",
        }
    }

    /// Bytes per record.
    pub fn record_bytes(self) -> usize {
        match self {
            CifarKind::Cifar10 => 1 + IMAGE_BYTES,
            CifarKind::Cifar100 => 2 + IMAGE_BYTES,
        }
    }

    /// The files of a split and the number of records each holds.
    pub fn files(self, split: Split) -> Vec<(&'static str, usize)> {
        match (self, split) {
            (CifarKind::Cifar10, Split::Train) => vec![
                ("data_batch_1.bin", 10_000),
                ("data_batch_2.bin", 10_000),
                ("data_batch_3.bin", 10_000),
                ("data_batch_4.bin", 10_000),
                ("data_batch_5.bin", 10_000),
            ],
            (CifarKind::Cifar10, Split::Test) => vec![("test_batch.bin", 10_000)],
            (CifarKind::Cifar100, Split::Train) => vec![("train.bin", 50_000)],
            (CifarKind::Cifar100, Split::Test) => vec![("test.bin", 10_000)],
        }
    }

    /// Per-channel train-set mean and std of this dataset (for `--normalize cifar`).
    pub fn stats(self) -> ([f32; 3], [f32; 3]) {
        match self {
            CifarKind::Cifar10 => ([0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]),
            CifarKind::Cifar100 => ([0.5071, 0.4865, 0.4409], [0.2673, 0.2564, 0.2762]),
        }
    }
}

/// Errors of the reader; each names the file and what was expected.
#[derive(Debug, Error)]
pub enum DataError {
    /// A data file is missing.
    #[error(
        "{path}: not found. Unpack the official binary archive there (`cargo xtask download --dataset {dataset}`, \
         or `tar xf cifar-*-binary.tar.*` into the data directory) and pass --data-dir or set LCAM_DATA_DIR"
    )]
    Missing {
        /// The missing file.
        path: PathBuf,
        /// `cifar10` or `cifar100`.
        dataset: &'static str,
    },
    /// A file's size is not what its record count requires (truncated or corrupt).
    #[error(
        "{path}: {got} bytes, expected {expected} ({records} records of {record} bytes): truncated or not a CIFAR file"
    )]
    Size {
        /// The file.
        path: PathBuf,
        /// Its size.
        got: u64,
        /// The expected size.
        expected: u64,
        /// Expected records.
        records: usize,
        /// Bytes per record.
        record: usize,
    },
    /// A label byte is out of range.
    #[error("{path}: record {record} has {which} label {value}, expected 0..{max}")]
    Label {
        /// The file.
        path: PathBuf,
        /// 0-based record index.
        record: usize,
        /// `fine`, `coarse` or `class`.
        which: &'static str,
        /// The byte.
        value: u8,
        /// Number of classes.
        max: usize,
    },
    /// An I/O error other than a missing file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// A loaded split: planar `u8` pixels and labels.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// `len × 3072` bytes, each image R plane, G plane, B plane (row-major 32×32).
    pub images: Vec<u8>,
    /// Class labels (fine labels for CIFAR-100).
    pub labels: Vec<u8>,
    /// CIFAR-100 coarse labels (empty for CIFAR-10).
    pub coarse_labels: Vec<u8>,
    /// Number of classes of `labels`.
    pub classes: usize,
}

impl Dataset {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// `true` when there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The 3,072 bytes of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        &self.images[i * IMAGE_BYTES..(i + 1) * IMAGE_BYTES]
    }

    /// Keeps the first `n` images (for `--limit-train/--limit-test`).
    pub fn truncate(&mut self, n: usize) {
        if n < self.len() {
            self.images.truncate(n * IMAGE_BYTES);
            self.labels.truncate(n);
            self.coarse_labels.truncate(n.min(self.coarse_labels.len()));
        }
    }
}

/// Finds the dataset directory: `data_dir/<official dir name>` or `data_dir` itself.
pub fn dataset_dir(data_dir: &Path, kind: CifarKind) -> PathBuf {
    let nested = data_dir.join(kind.dir_name());
    if nested.is_dir() {
        nested
    } else {
        data_dir.to_path_buf()
    }
}

/// Loads a split from `data_dir` (which holds the unpacked `cifar-10-batches-bin/` or
/// `cifar-100-binary/`, or is that directory).
pub fn load(data_dir: &Path, kind: CifarKind, split: Split) -> Result<Dataset, DataError> {
    let dir = dataset_dir(data_dir, kind);
    let files = kind.files(split);
    let total: usize = files.iter().map(|(_, n)| n).sum();
    let mut ds = Dataset {
        images: Vec::with_capacity(total * IMAGE_BYTES),
        labels: Vec::with_capacity(total),
        coarse_labels: Vec::new(),
        classes: kind.classes(),
    };
    // A directory written by `write_synthetic` holds fewer records per file and says so.
    let synthetic = read_synthetic_marker(&dir);
    for (name, records) in files {
        let records = synthetic
            .iter()
            .find(|e| e.0 == name)
            .map_or(records, |e| e.1);
        read_file(&dir.join(name), kind, records, &mut ds)?;
    }
    Ok(ds)
}

fn read_file(
    path: &Path,
    kind: CifarKind,
    records: usize,
    ds: &mut Dataset,
) -> Result<(), DataError> {
    let dataset = match kind {
        CifarKind::Cifar10 => "cifar10",
        CifarKind::Cifar100 => "cifar100",
    };
    let record = kind.record_bytes();
    let expected = (records * record) as u64;
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => DataError::Missing {
            path: path.into(),
            dataset,
        },
        _ => DataError::Io {
            path: path.into(),
            source: e,
        },
    })?;
    let size_error = |got| DataError::Size {
        path: path.into(),
        got,
        expected,
        records,
        record,
    };
    if meta.len() != expected {
        return Err(size_error(meta.len()));
    }
    let bytes = std::fs::read(path).map_err(|e| DataError::Io {
        path: path.into(),
        source: e,
    })?;
    if bytes.len() as u64 != expected {
        // The file changed between stat and read.
        return Err(size_error(bytes.len() as u64));
    }
    let parsed = parse_records(&bytes, kind, path)?;
    ds.labels.extend_from_slice(&parsed.labels);
    ds.coarse_labels.extend_from_slice(&parsed.coarse_labels);
    ds.images.extend_from_slice(&parsed.images);
    Ok(())
}

/// Parses the records of one CIFAR file already in memory (the byte-slice entry point of the
/// reader, fuzzed by `fuzz/`): `bytes` must be a whole number of `kind` records with labels in
/// range; `path` only names the source in errors. An empty slice gives an empty dataset.
pub fn parse_records(bytes: &[u8], kind: CifarKind, path: &Path) -> Result<Dataset, DataError> {
    let record = kind.record_bytes();
    if !bytes.len().is_multiple_of(record) {
        let records = bytes.len().div_ceil(record);
        return Err(DataError::Size {
            path: path.into(),
            got: bytes.len() as u64,
            expected: (records * record) as u64,
            records,
            record,
        });
    }
    let n = bytes.len() / record;
    let mut ds = Dataset {
        images: Vec::with_capacity(n * IMAGE_BYTES),
        labels: Vec::with_capacity(n),
        coarse_labels: Vec::new(),
        classes: kind.classes(),
    };
    let label_offset = record - IMAGE_BYTES;
    for (i, r) in bytes.chunks_exact(record).enumerate() {
        let (label, which, max) = match kind {
            CifarKind::Cifar10 => (r[0], "class", 10),
            CifarKind::Cifar100 => {
                if r[0] >= 20 {
                    return Err(DataError::Label {
                        path: path.into(),
                        record: i,
                        which: "coarse",
                        value: r[0],
                        max: 20,
                    });
                }
                ds.coarse_labels.push(r[0]);
                (r[1], "fine", 100)
            }
        };
        if usize::from(label) >= max {
            return Err(DataError::Label {
                path: path.into(),
                record: i,
                which,
                value: label,
                max,
            });
        }
        ds.labels.push(label);
        ds.images.extend_from_slice(&r[label_offset..]);
    }
    Ok(ds)
}

/// The marker file `write_synthetic` leaves: one `<file name> <records>` line per file.
pub const SYNTHETIC_MARKER: &str = "LCAM-SYNTHETIC";

fn read_synthetic_marker(dir: &Path) -> Vec<(String, usize)> {
    let text = std::fs::read_to_string(dir.join(SYNTHETIC_MARKER)).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (name, n) = l.split_once(' ')?;
            Some((name.to_string(), n.trim().parse().ok()?))
        })
        .collect()
}

/// Writes a synthetic split in the official format (for tests and CPU smoke runs):
/// `records_per_file` images per file (and a [`SYNTHETIC_MARKER`] file saying so, since the
/// official files hold 10,000 / 50,000) whose pixels and labels follow a deterministic pattern (images of class `c`
/// are brighter in channel `c % 3`, so a model can learn something).
pub fn write_synthetic(
    dir: &Path,
    kind: CifarKind,
    split: Split,
    records_per_file: usize,
    seed: u64,
) -> std::io::Result<()> {
    let dir = dir.join(kind.dir_name());
    std::fs::create_dir_all(&dir)?;
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as u32
    };
    let marker = dir.join(SYNTHETIC_MARKER);
    let mut lines = std::fs::read_to_string(&marker).unwrap_or_default();
    for (name, _) in kind.files(split) {
        let mut bytes = Vec::with_capacity(records_per_file * kind.record_bytes());
        for _ in 0..records_per_file {
            let class = (next() as usize) % kind.classes();
            if kind == CifarKind::Cifar100 {
                bytes.push((class / 5) as u8);
            }
            bytes.push(class as u8);
            for c in 0..3 {
                for _ in 0..1024 {
                    let base = if c == class % 3 { 160 } else { 60 };
                    bytes.push((base + (next() % 64) as usize) as u8);
                }
            }
        }
        std::fs::write(dir.join(name), bytes)?;
        lines.push_str(&format!("{name} {records_per_file}\n"));
    }
    std::fs::write(marker, lines)
}
