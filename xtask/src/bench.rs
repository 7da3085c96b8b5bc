//! `cargo xtask bench`: the optimizer-step benchmarks (criterion, `lcam-cli/benches/step.rs`) and
//! PyTorch's own step (`scripts/pt_sgd_step.py`) measured in one run, turned into the table of
//! BENCHMARKS.md (between its `xtask-bench:step` markers).
//!
//! Absolute times on a shared 2-core machine are noise; the ratios measured side by side are the
//! figures: LCAM / plain SGD of the same adapter, achieved / memory bound (an SGD-momentum step
//! moves 20 bytes per f32 parameter; the bound is 20 B × N at the triad bandwidth of the same
//! run), and lcam-tch / PyTorch's `foreach` SGD.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// Bytes an SGD-momentum step moves per f32 parameter: read p, g, b; write p, b.
const STEP_BYTES: f64 = 20.0;
/// Bytes a STREAM triad moves per f32 element (STREAM's convention: read b, c; write a).
const TRIAD_BYTES: f64 = 12.0;

/// Markers of the generated sections of BENCHMARKS.md.
pub const STEP: (&str, &str) = (
    "<!-- xtask-bench:step:begin -->",
    "<!-- xtask-bench:step:end -->",
);
/// Markers of the training-throughput section.
pub const TRAIN: (&str, &str) = (
    "<!-- xtask-bench:train:begin -->",
    "<!-- xtask-bench:train:end -->",
);

/// Arguments of `cargo xtask bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Models whose parameter sets are stepped.
    #[arg(long, value_delimiter = ',', default_value = "wrn-16-1,wrn-28-10")]
    pub models: Vec<String>,
    /// Criterion measurement time per benchmark, seconds.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Print the table only; leave BENCHMARKS.md as it is.
    #[arg(long)]
    pub no_update: bool,
    /// Also measure training throughput (`lcam train`, tch and Burn, vs PyTorch) on real
    /// CIFAR-10 from the data directory.
    #[arg(long)]
    pub train: bool,
    /// Only the training throughput (`--train` without the step benchmarks).
    #[arg(long)]
    pub train_only: bool,
    /// Models for `--train`.
    #[arg(long, value_delimiter = ',', default_value = "wrn-16-1,wrn-16-2")]
    pub train_models: Vec<String>,
    /// Training images per measurement for tch and PyTorch (Burn uses a third).
    #[arg(long, default_value_t = 3840)]
    pub train_images: usize,
    /// Runs of each tch and PyTorch measurement (interleaved; the median is reported).
    #[arg(long, default_value_t = 3)]
    pub train_repeats: usize,
}

/// The median of `v` (sorted in place); NaN when empty.
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => 0.5 * (v[n / 2 - 1] + v[n / 2]),
    }
}

/// `median (min–max)` of img/s figures.
fn spread(v: &mut [f64]) -> String {
    let m = median(v);
    match (v.first(), v.last()) {
        (Some(lo), Some(hi)) if v.len() > 1 => format!("{m:.0} ({lo:.0}–{hi:.0})"),
        _ => format!("{m:.0}"),
    }
}

#[derive(Debug, Deserialize)]
struct Estimate {
    point_estimate: f64,
}

#[derive(Debug, Deserialize)]
struct Estimates {
    mean: Estimate,
    median: Estimate,
}

#[derive(Debug, Deserialize)]
struct TorchRow {
    params: u64,
    tensors: u64,
    foreach_ns: f64,
    for_loop_ns: f64,
}

/// Median time (ns) of criterion benchmark `group/name/n`.
fn criterion_ns(target: &Path, group: &str, name: &str, n: u64) -> Result<Option<f64>> {
    let path = target
        .join("criterion")
        .join(group)
        .join(name)
        .join(n.to_string())
        .join("new")
        .join("estimates.json");
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let e: Estimates =
        serde_json::from_str(&text).with_context(|| format!("{} is corrupt", path.display()))?;
    let _ = e.mean.point_estimate;
    Ok(Some(e.median.point_estimate))
}

fn ms(ns: f64) -> String {
    format!("{:.3} ms", ns / 1e6)
}

/// Runs the benchmarks and returns the markdown section.
pub fn run(
    root: &Path,
    args: &BenchArgs,
    env: &[(String, std::ffi::OsString)],
    python: &Path,
    target: &Path,
) -> Result<String> {
    let models = args.models.join(",");
    let mut c = crate::cargo();
    c.args([
        "bench",
        "--profile",
        "dev",
        // The feature set of `cargo xtask test`, so the builds share every artifact.
        "--workspace",
        "--features",
        "lcam-cli/tch,lcam-cli/burn,lcam-cli/cuda",
        "--bench",
        "step",
        "--",
        "--warm-up-time",
        "2",
        "--measurement-time",
    ])
    .arg(args.seconds.to_string())
    .env("LCAM_BENCH_MODELS", &models);
    for (k, v) in env {
        c.env(k, v);
    }
    crate::sh(root, &mut c)?;

    eprintln!(
        "xtask: $ {} scripts/pt_sgd_step.py {models}",
        python.display()
    );
    let out = Command::new(python)
        .arg("scripts/pt_sgd_step.py")
        .args(&args.models)
        .current_dir(root)
        .output()
        .with_context(|| format!("cannot start {}", python.display()))?;
    if !out.status.success() {
        bail!(
            "scripts/pt_sgd_step.py failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let torch: std::collections::BTreeMap<String, TorchRow> =
        serde_json::from_slice(&out.stdout)
            .context("scripts/pt_sgd_step.py printed no JSON table")?;

    let mut md = String::new();
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    let _ = writeln!(
        md,
        "Measured {date} by `cargo xtask bench --models {models} --seconds {}` on {cpu}, {cores} \
         cores (load average before the run: {load}). Medians; f32; lr 0.1, weight decay 5e-4, \
         LCAM 0.9/0.95, SGD momentum 0.9; buffers allocated; 2 threads (rayon for lcam-core, \
         libtorch's pool for tch and PyTorch; rayon for Burn's flex backend).\n",
        args.seconds
    );
    for m in &args.models {
        let Some(t) = torch.get(m) else {
            bail!("scripts/pt_sgd_step.py did not report {m}");
        };
        let n = t.params;
        let group = format!("step-{m}");
        let get = |name: &str| criterion_ns(target, &group, name, n);
        let triad = get("triad")?.context("no triad measurement")?;
        let bandwidth = TRIAD_BYTES * n as f64 / triad; // bytes per ns = GB/s
        let bound = STEP_BYTES * n as f64 / bandwidth;
        let _ = writeln!(
            md,
            "**{m}**: {n} parameters in {} tensors; triad bandwidth {:.1} GB/s → memory bound of \
             one step {}.\n",
            t.tensors,
            bandwidth,
            ms(bound)
        );
        let _ = writeln!(
            md,
            "| implementation | LCAM step | same adapter's plain SGD | LCAM / SGD (goal ≤ 1.02) | achieved / bound (goal ≥ 0.8 core) | LCAM / PyTorch foreach |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|");
        for (label, lcam, sgd) in [
            ("lcam-core (ndarray)", "core-lcam", "core-sgd"),
            (
                "lcam-tch (vs tch `nn::Sgd`, libtorch's C++ SGD)",
                "tch-lcam",
                "tch-sgd",
            ),
            (
                "lcam-burn, flex (vs Burn's `Sgd`, dampening 0)",
                "burn-lcam",
                "burn-sgd",
            ),
        ] {
            let (Some(l), Some(s)) = (get(lcam)?, get(sgd)?) else {
                let _ = writeln!(md, "| {label} | not built | | | | |");
                continue;
            };
            let _ = writeln!(
                md,
                "| {label} | {} | {} | {:.3} | {:.2} | {:.2}× |",
                ms(l),
                ms(s),
                l / s,
                bound / l,
                l / t.foreach_ns
            );
        }
        let _ = writeln!(
            md,
            "| PyTorch 2.13 `torch.optim.SGD`, foreach | — | {} | — | {:.2} | 1.00× |",
            ms(t.foreach_ns),
            bound / t.foreach_ns
        );
        let _ = writeln!(
            md,
            "| PyTorch 2.13 `torch.optim.SGD`, for-loop | — | {} | — | {:.2} | {:.2}× |\n",
            ms(t.for_loop_ns),
            bound / t.for_loop_ns,
            t.for_loop_ns / t.foreach_ns
        );
    }
    Ok(md)
}

/// `lcam train` and PyTorch img/s for each model; returns the markdown section.
pub fn train(
    root: &Path,
    args: &BenchArgs,
    lcam: &Path,
    python: &Path,
    data_dir: &Path,
) -> Result<String> {
    let tmp = tempfile::tempdir().context("cannot create a temporary directory")?;
    let mut md = String::new();
    let burn_images = (args.train_images / 3).max(128);
    let _ = writeln!(
        md,
        "`cargo xtask bench --train`: one epoch over the first {} CIFAR-10 training images \
         ({} for Burn), batch 128, 2 threads, the demo's augmentation; img/s of the training \
         steps of the epoch, the first included, for both (`lcam train`'s metrics.csv; \
         `scripts/pt_wrn_train.py`). tch and PyTorch: median (min–max) of {} interleaved runs; \
         \"glibc defaults\" is `lcam train` with `LCAM_MALLOC=system` (freed memory returned \
         to the system, lcam-cli/src/train/malloc.rs); Burn: one run.\n",
        args.train_images, burn_images, args.train_repeats
    );
    let _ = writeln!(
        md,
        "| model | PyTorch 2.13 img/s | lcam tch img/s | tch / PyTorch (goal ≥ 1.0) | tch, glibc defaults | lcam Burn (flex) img/s | Burn / PyTorch |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    for m in &args.train_models {
        let lcam_img_s = |backend: &str, images: usize, system_malloc: bool| -> Result<f64> {
            let out = tmp.path().join(format!("{backend}-{m}"));
            let mut c = Command::new(lcam);
            if system_malloc {
                c.env("LCAM_MALLOC", "system");
            }
            c.args(["train", "--backend", backend, "--model", m])
                .args(["--dataset", "cifar10", "--epochs", "1", "--threads", "2"])
                .arg("--data-dir")
                .arg(data_dir)
                .args(["--limit-train", &images.to_string(), "--limit-test", "128"])
                .arg("--out")
                .arg(&out)
                .arg("--force");
            crate::sh(root, &mut c)?;
            let rows = crate::reproduce::load_metrics(&out)?;
            rows.last()
                .map(|r| r.img_per_s)
                .context("lcam train wrote no metrics")
        };
        let pytorch_img_s = || -> Result<f64> {
            let out = Command::new(python)
                .arg("pt_wrn_train.py")
                .args(["--model", m, "--threads", "2"])
                .arg("--data")
                .arg(data_dir)
                .args(["--images", &args.train_images.to_string()])
                .current_dir(root.join("scripts"))
                .output()
                .with_context(|| format!("cannot start {}", python.display()))?;
            if !out.status.success() {
                bail!(
                    "scripts/pt_wrn_train.py failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            #[derive(Deserialize)]
            struct Row {
                img_per_s: f64,
            }
            let pt: Row = serde_json::from_slice(&out.stdout)
                .context("scripts/pt_wrn_train.py printed no JSON")?;
            Ok(pt.img_per_s)
        };
        let (mut pt, mut tch, mut tch_system) = (vec![], vec![], vec![]);
        for _ in 0..args.train_repeats.max(1) {
            pt.push(pytorch_img_s()?);
            tch.push(lcam_img_s("tch", args.train_images, false)?);
            tch_system.push(lcam_img_s("tch", args.train_images, true)?);
        }
        let burn = lcam_img_s("burn", burn_images, false)?;
        let (pt_m, tch_m) = (median(&mut pt), median(&mut tch));
        let _ = writeln!(
            md,
            "| {m} | {} | {} | {:.2} | {} | {:.1} | {:.3} |",
            spread(&mut pt),
            spread(&mut tch),
            tch_m / pt_m,
            spread(&mut tch_system),
            burn,
            burn / pt_m
        );
    }
    Ok(md)
}

/// Replaces the section between `markers` in `path` with `section`.
pub fn update_doc(path: &PathBuf, markers: (&str, &str), section: &str) -> Result<()> {
    let (begin, end) = markers;
    let doc =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let (Some(a), Some(b)) = (doc.find(begin), doc.find(end)) else {
        bail!(
            "{} has no `{begin}` … `{end}` markers to fill",
            path.display()
        );
    };
    if b < a {
        bail!("{}: the bench markers are out of order", path.display());
    }
    let new = format!("{}{begin}\n{section}{}", &doc[..a], &doc[b..]);
    crate::reproduce::write_atomic(path, new.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_between_the_markers_is_replaced_and_nothing_else() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("B.md");
        let (b, e) = STEP;
        let (tb, te) = TRAIN;
        std::fs::write(
            &p,
            format!("# B\nintro\n{b}\nold\n{e}\nmid\n{tb}\nold train\n{te}\ntail\n"),
        )
        .expect("write");
        update_doc(&p, STEP, "new table\n").expect("update");
        let s = std::fs::read_to_string(&p).expect("read");
        assert_eq!(
            s,
            format!("# B\nintro\n{b}\nnew table\n{e}\nmid\n{tb}\nold train\n{te}\ntail\n")
        );
        std::fs::write(&p, "no markers").expect("write");
        let e = update_doc(&p, TRAIN, "x")
            .expect_err("no markers")
            .to_string();
        assert!(e.contains("markers"), "{e}");
    }

    #[test]
    fn criterion_estimates_are_read_from_their_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir
            .path()
            .join("criterion/step-wrn-16-1/core-lcam/175066/new");
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::write(
            d.join("estimates.json"),
            r#"{"mean":{"point_estimate":2.5e5},"median":{"point_estimate":2.0e5}}"#,
        )
        .expect("write");
        let t = criterion_ns(dir.path(), "step-wrn-16-1", "core-lcam", 175_066).expect("read");
        assert_eq!(t, Some(2.0e5));
        let none = criterion_ns(dir.path(), "step-wrn-16-1", "tch-lcam", 175_066).expect("read");
        assert_eq!(none, None);
    }
}
