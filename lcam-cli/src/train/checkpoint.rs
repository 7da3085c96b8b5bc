//! The checkpoint store of a run directory (`--out`), which holds:
//! - `config.json` — the resolved configuration (with versions and seed);
//! - `metrics.csv` — one row per finished epoch;
//! - `checkpoint-<epoch>/` — model + optimizer (backend files) and `progress.json` (epoch,
//!   global step, lr, metrics, finished flag, and the size and FNV-1a checksum of every other
//!   file) after each epoch; the newest and the one before it are kept;
//! - `LATEST` — the name of the newest complete checkpoint, replaced atomically after the
//!   checkpoint directory is fully written and synced. A crash never leaves it pointing at a
//!   torn checkpoint; one damaged later (size or checksum wrong, missing) is detected on
//!   `--resume` and the previous checkpoint used, with a warning.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::run::{EpochRow, Trainer};
use crate::output::write_atomic;

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

pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
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
pub(crate) fn failpoint(name: &str) {
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
pub(crate) fn remove_debris(out: &Path) {
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
pub(crate) fn save_checkpoint(
    out: &Path,
    trainer: &dyn Trainer,
    progress: &Progress,
) -> Result<()> {
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
