//! `cargo xtask wheel`: the `lcam` Python package (lcam-py, pyo3 + maturin) as one abi3 wheel,
//! built with the torch cache venv's python; `install_and_test` installs it there and runs
//! lcam-py's pytest suite (part of `cargo xtask test`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::Args;

/// Arguments of `cargo xtask wheel`.
#[derive(Debug, Args)]
pub struct WheelArgs {
    /// Build without lcam-cuda's CUDA path (the wheel then steps CPU tensors only).
    #[arg(long)]
    pub no_cuda: bool,
    /// Directory for the wheel (default: `<target>/wheels`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Install the wheel into the torch venv and run lcam-py's pytest suite.
    #[arg(long)]
    pub test: bool,
}

/// Installs `pkgs` into `python`'s environment unless `module` already imports.
fn ensure_module(python: &Path, module: &str, pkgs: &[&str]) -> Result<()> {
    let ok = Command::new(python)
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Ok(());
    }
    super::sh(
        Path::new("."),
        Command::new(python)
            .args(["-m", "pip", "install", "--quiet"])
            .args(pkgs),
    )
}

/// Builds the wheel; returns its path.
pub fn build(root: &Path, python: &Path, target: &Path, args: &WheelArgs) -> Result<PathBuf> {
    ensure_module(python, "maturin", &["maturin>=1.7,<2"])?;
    let out = args.out.clone().unwrap_or_else(|| target.join("wheels"));
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    // Only this build's wheel is picked up: clear older lcam wheels.
    for e in std::fs::read_dir(&out)?.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with("lcam-") && n.ends_with(".whl") {
            std::fs::remove_file(e.path())
                .with_context(|| format!("cannot remove {}", e.path().display()))?;
        }
    }
    let mut c = Command::new(python);
    c.args(["-m", "maturin", "build", "--release", "-m"])
        .arg(root.join("lcam-py/Cargo.toml"))
        .arg("-i")
        .arg(python)
        .arg("-o")
        .arg(&out);
    if !args.no_cuda {
        c.args(["--features", "cuda"]);
    }
    c.env("CARGO_TARGET_DIR", target);
    super::sh(root, &mut c)?;
    let wheel = std::fs::read_dir(&out)?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy())
                .is_some_and(|n| n.starts_with("lcam-") && n.ends_with(".whl"))
        })
        .with_context(|| format!("maturin left no lcam wheel in {}", out.display()))?;
    let name = wheel
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !name.contains("-abi3-") {
        bail!("{name} is not an abi3 wheel");
    }
    eprintln!("xtask: wheel {}", wheel.display());
    Ok(wheel)
}

/// Installs `wheel` into `python`'s environment and runs lcam-py's pytest suite.
pub fn install_and_test(root: &Path, python: &Path, wheel: &Path) -> Result<()> {
    ensure_module(python, "pytest", &["pytest>=7"])?;
    super::sh(
        root,
        Command::new(python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--force-reinstall",
                "--no-deps",
            ])
            .arg(wheel),
    )?;
    super::sh(
        root,
        Command::new(python)
            .args(["-m", "pytest", "-q", "-rs", "lcam-py/tests"])
            // The test processes need no build-time variables; data comes from LCAM_DATA_DIR.
            .env_remove("CARGO_TARGET_DIR"),
    )
}
