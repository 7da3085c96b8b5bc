//! `cargo xtask gpu-bundle`: everything GPU-side of lcam in one folder, built here (no GPU, no
//! CUDA toolkit) and carried to a GPU machine that reaches no registry and takes ≤ 64 MiB:
//!
//! - `bin/lcam` — the CLI with the CUDA adapter only (no libtorch): `lcam replay --adapter cuda`;
//! - `bin/lcam-cuda-gpu-tests`, `bin/lcam-cuda-ptx-tests` — lcam-cuda's GPU and NVRTC tests;
//! - `bin/gpu_bench` — the fused step vs a device-to-device copy, host queueing, host syncs;
//! - `fixtures/{golden,golden-groups,random}` — PyTorch golden traces and randomized traces
//!   (expected from the independent f64 oracle, `oracle.rs`);
//! - `wheel/lcam-*.whl` + `torch/` — the Python package with its CUDA path and a WRN training
//!   throughput script (`torch.optim.SGD(fused=True)` vs `lcam.torch.LCAM`);
//! - `gpu-check.sh` (+ `gpu_check.py`) — runs it all in ≤ 8 minutes, writes `gpu-report.md` and
//!   `gpu-report.json`.
//!
//! The binaries use the `gpu-bundle` profile (optimised, stripped, in their own target
//! subdirectory so the CUDA-only `lcam` does not replace the full one in `target/debug`).
//! `check` runs the bundle here: every GPU part must report "skipped: no CUDA driver" and every
//! binary must start.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::Args;

/// The bundle's size limit (the GPU machine takes 64 MiB per call, the working tree included).
pub const MAX_BYTES: u64 = 60 * 1024 * 1024;

/// The parts of `gpu-check.sh` that need a GPU (each skipped, with the reason, without one).
pub const GPU_PARTS: [&str; 4] = ["gpu-tests", "replay", "bench", "torch"];

/// Arguments of `cargo xtask gpu-bundle`.
#[derive(Debug, Args)]
pub struct GpuBundleArgs {
    /// The bundle's directory (replaced). Default: `gpu-bundle` in the project root (ignored by
    /// git; carry it to the GPU machine by that path).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Leave the Python wheel out (no maturin build).
    #[arg(long)]
    pub no_wheel: bool,
    /// Then run `gpu-check.sh` here and check what a machine without a GPU must report.
    #[arg(long)]
    pub check: bool,
}

/// A compiler artifact with an executable, from cargo's JSON messages.
#[derive(Debug)]
struct Executable {
    package: String,
    target: String,
    kind: String,
    path: PathBuf,
}

/// Runs `cargo` with `args` (JSON messages on stdout, diagnostics rendered on stderr) and
/// returns the executables it built or found fresh.
fn cargo_executables(root: &Path, args: &[&str]) -> Result<Vec<Executable>> {
    let mut c = super::cargo();
    c.args(args)
        .arg("--message-format=json-render-diagnostics")
        .current_dir(root)
        .stderr(std::process::Stdio::inherit());
    let line = format!("{c:?}").replace('"', "");
    eprintln!("xtask: $ {line}");
    let out = c
        .output()
        .with_context(|| format!("cannot start `{line}`"))?;
    if !out.status.success() {
        bail!("`{line}` failed ({})", out.status);
    }
    let mut found = Vec::new();
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else {
            continue;
        };
        if v["reason"] != "compiler-artifact" {
            continue;
        }
        let Some(exe) = v["executable"].as_str() else {
            continue;
        };
        let package = v["package_id"]
            .as_str()
            .and_then(|id| id.rsplit('#').next())
            .map(|s| s.split('@').next().unwrap_or(s).to_string())
            .unwrap_or_default();
        found.push(Executable {
            package,
            target: v["target"]["name"].as_str().unwrap_or_default().to_string(),
            kind: v["target"]["kind"][0]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            path: PathBuf::from(exe),
        });
    }
    Ok(found)
}

fn pick<'a>(exes: &'a [Executable], kind: &str, target: &str) -> Result<&'a Path> {
    exes.iter()
        .find(|e| e.kind == kind && e.target == target)
        .map(|e| e.path.as_path())
        .with_context(|| {
            format!(
                "cargo built no {kind} `{target}` (got: {})",
                exes.iter()
                    .map(|e| format!("{}:{}:{}", e.package, e.kind, e.target))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::copy(from, to)
        .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    Ok(())
}

/// Copies the `*.json` files of `from` into `to`; returns how many traces (`*.trace.json`)
/// were among them.
fn copy_json_dir(from: &Path, to: &Path) -> Result<usize> {
    let mut traces = 0;
    for e in std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "json")
            && let Some(name) = p.file_name()
        {
            copy(&p, &to.join(name))?;
            traces += usize::from(name.to_string_lossy().ends_with(".trace.json"));
        }
    }
    Ok(traces)
}

/// The total size of the files under `dir`.
pub fn size_of(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for e in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let e = e?;
        let m = e.metadata()?;
        total += if m.is_dir() {
            size_of(&e.path())?
        } else {
            m.len()
        };
    }
    Ok(total)
}

/// What the bundle's `wheel/` gets.
pub enum Wheel<'a> {
    /// Build it (`cargo xtask wheel`, CUDA path included).
    Build,
    /// This one, just built (with the CUDA path).
    Built(&'a Path),
    /// None (`--no-wheel`).
    Without,
}

/// Builds the bundle into `out` (replaced); returns its size in bytes.
pub fn build(
    root: &Path,
    python: &Path,
    target: &Path,
    out: &Path,
    wheel: Wheel<'_>,
) -> Result<u64> {
    // 1. The binaries, in the `gpu-bundle` profile: the CUDA-only CLI and the bench ...
    let bins = cargo_executables(
        root,
        &[
            "build",
            "--profile",
            "gpu-bundle",
            "-p",
            "lcam-cli",
            "-p",
            "lcam-cuda",
            "--features",
            "lcam-cli/cuda",
            "--bin",
            "lcam",
            "--example",
            "gpu_bench",
        ],
    )?;
    // ... and lcam-cuda's GPU and NVRTC test binaries (the same dependency graph).
    let tests = cargo_executables(
        root,
        &[
            "test",
            "--no-run",
            "--profile",
            "gpu-bundle",
            "-p",
            "lcam-cuda",
            "--test",
            "gpu",
            "--test",
            "ptx",
        ],
    )?;
    if out.exists() {
        std::fs::remove_dir_all(out).with_context(|| format!("cannot remove {}", out.display()))?;
    }
    let binp = out.join("bin");
    copy(pick(&bins, "bin", "lcam")?, &binp.join("lcam"))?;
    copy(
        pick(&bins, "example", "gpu_bench")?,
        &binp.join("gpu_bench"),
    )?;
    copy(
        pick(&tests, "test", "gpu")?,
        &binp.join("lcam-cuda-gpu-tests"),
    )?;
    copy(
        pick(&tests, "test", "ptx")?,
        &binp.join("lcam-cuda-ptx-tests"),
    )?;

    // 2. The traces.
    let fx = out.join("fixtures");
    let golden = copy_json_dir(&root.join("fixtures/golden"), &fx.join("golden"))?;
    let groups = copy_json_dir(
        &root.join("fixtures/golden-groups"),
        &fx.join("golden-groups"),
    )?;
    std::fs::create_dir_all(fx.join("random"))?;
    let random = crate::equivalence::write_random_cases(&fx.join("random"))?.len();

    // 3. The Python package and the PyTorch scripts.
    let mut wheel_name = String::from("(left out: --no-wheel)");
    let built = match wheel {
        Wheel::Without => None,
        Wheel::Built(w) => Some(w.to_path_buf()),
        Wheel::Build => Some(crate::wheel::build(
            root,
            python,
            target,
            &crate::wheel::WheelArgs {
                no_cuda: false,
                out: None,
                test: false,
            },
        )?),
    };
    if let Some(w) = built {
        let name = w
            .file_name()
            .context("the wheel has no file name")?
            .to_string_lossy()
            .into_owned();
        copy(&w, &out.join("wheel").join(&name))?;
        wheel_name = name;
    }
    copy(
        &root.join("lcam-py/examples/torch_wrn.py"),
        &out.join("torch/torch_wrn.py"),
    )?;
    copy(
        &root.join("scripts/gpu/wrn_throughput.py"),
        &out.join("torch/wrn_throughput.py"),
    )?;

    // 4. The driver script.
    copy(
        &root.join("scripts/gpu/gpu-check.sh"),
        &out.join("gpu-check.sh"),
    )?;
    copy(
        &root.join("scripts/gpu/gpu_check.py"),
        &out.join("gpu_check.py"),
    )?;
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(root)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .current_dir(root)
        .output()
        .is_ok_and(|o| !o.stdout.is_empty());
    std::fs::write(
        out.join("BUNDLE.txt"),
        format!(
            "lcam GPU bundle (cargo xtask gpu-bundle)\n\
             commit: {commit}{}\n\
             binaries: bin/lcam (CUDA adapter only), bin/gpu_bench, bin/lcam-cuda-gpu-tests, \
             bin/lcam-cuda-ptx-tests (profile gpu-bundle)\n\
             fixtures: {golden} golden, {groups} golden-groups, {random} random traces\n\
             wheel: {wheel_name}\n\
             run: bash gpu-check.sh [--out DIR]   (writes gpu-report.md and gpu-report.json)\n",
            if dirty {
                " (with uncommitted changes)"
            } else {
                ""
            },
        ),
    )?;
    let size = size_of(out)?;
    if size > MAX_BYTES {
        bail!(
            "the bundle {} is {:.1} MiB, over the {} MiB limit",
            out.display(),
            size as f64 / 1048576.0,
            MAX_BYTES / 1048576
        );
    }
    eprintln!(
        "xtask: GPU bundle {} ({:.1} MiB; limit {} MiB)",
        out.display(),
        size as f64 / 1048576.0,
        MAX_BYTES / 1048576
    );
    Ok(size)
}

/// Runs `gpu-check.sh` of the bundle at `bundle` with `python` on a machine without a GPU and
/// checks its report: the start-up part passes (every binary starts: no missing library) and
/// every GPU part is "skipped: no CUDA driver".
pub fn check_without_gpu(bundle: &Path, python: &Path) -> Result<()> {
    let report_dir = tempfile::tempdir()?;
    let mut c = Command::new("bash");
    c.arg(bundle.join("gpu-check.sh"))
        .arg("--out")
        .arg(report_dir.path())
        .env("PYTHON", python)
        // What the bundle finds must not come from this build's environment.
        .env_remove("LD_LIBRARY_PATH")
        .env_remove("LCAM_REQUIRE_GPU")
        .env_remove("CARGO_TARGET_DIR");
    super::sh(bundle, &mut c)?;
    let json = report_dir.path().join("gpu-report.json");
    let text = std::fs::read_to_string(&json)
        .with_context(|| format!("cannot read {}", json.display()))?;
    let md = report_dir.path().join("gpu-report.md");
    if !md.is_file() {
        bail!("gpu-check.sh wrote no {}", md.display());
    }
    check_report(&text)
}

/// The assertions of [`check_without_gpu`] on a `gpu-report.json` text.
pub fn check_report(text: &str) -> Result<()> {
    let v: serde_json::Value = serde_json::from_str(text).context("gpu-report.json")?;
    let parts = v["parts"]
        .as_array()
        .context("gpu-report.json: no `parts`")?;
    let part = |name: &str| {
        parts
            .iter()
            .find(|p| p["name"] == name)
            .with_context(|| format!("gpu-report.json: no part `{name}`"))
    };
    let startup = part("startup")?;
    if startup["status"] != "pass" {
        bail!(
            "gpu-check: the bundle's binaries do not all start: {}",
            startup["detail"]
        );
    }
    for name in GPU_PARTS {
        let p = part(name)?;
        let reason = p["reason"].as_str().unwrap_or_default();
        if p["status"] != "skipped" || !reason.starts_with("no CUDA driver") {
            bail!(
                "gpu-check part `{name}`: expected \"skipped: no CUDA driver\" here, got {} ({reason})",
                p["status"]
            );
        }
    }
    eprintln!(
        "xtask: gpu-check without a GPU: binaries start; {} skipped: no CUDA driver",
        GPU_PARTS.join(", ")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(startup: &str, gpu_status: &str, reason: &str) -> String {
        let mut parts = vec![format!(
            r#"{{"name":"startup","status":"{startup}","reason":"","detail":"x"}}"#
        )];
        for p in GPU_PARTS {
            parts.push(format!(
                r#"{{"name":"{p}","status":"{gpu_status}","reason":"{reason}"}}"#
            ));
        }
        format!(r#"{{"parts":[{}]}}"#, parts.join(","))
    }

    #[test]
    fn the_report_check_demands_startup_and_skips_for_want_of_a_driver() {
        let ok = report(
            "pass",
            "skipped",
            "no CUDA driver (libcuda.so.1: cannot open)",
        );
        check_report(&ok).expect("a machine without a GPU");
        // A binary that does not start (e.g. a missing library) fails the check ...
        assert!(check_report(&report("fail", "skipped", "no CUDA driver")).is_err());
        // ... and so does a GPU part that failed or was skipped for another reason.
        assert!(check_report(&report("pass", "fail", "")).is_err());
        assert!(check_report(&report("pass", "skipped", "timeout")).is_err());
        assert!(check_report(r#"{"parts":[]}"#).is_err());
    }
}
