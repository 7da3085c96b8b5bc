//! libtorch provisioning: `torch==2.13.0` (what tch 0.26 / torch-sys 0.26 expect) from PyPI into
//! a virtual environment in the user's cache, reused when present.
//!
//! - Cache: `$LCAM_CACHE_DIR`, else `$XDG_CACHE_HOME/lcam`, else `$HOME/.cache/lcam`.
//! - A user who already has libtorch sets `LIBTORCH` (a libtorch directory or
//!   `<site-packages>/torch`) or `LIBTORCH_USE_PYTORCH=1` (with a python that has torch first on
//!   `PATH`); nothing is installed then and their setting is passed through.
//! - The install goes into `<cache>/torch-2.13.0.partial` and is renamed into place only after
//!   `import torch` reports the pinned version: an interrupted install is never taken as whole.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The torch version torch-sys 0.26 is built against.
pub const TORCH_VERSION: &str = "2.13.0";

/// A provisioned libtorch.
#[derive(Debug, Clone)]
pub struct TorchEnv {
    /// The venv's python (with torch), used by `cargo xtask golden`.
    pub python: PathBuf,
    /// The libtorch directory (`…/site-packages/torch`, holding `lib/` and `include/`).
    pub libtorch: Option<PathBuf>,
}

impl TorchEnv {
    /// The environment variables for a cargo build that links tch.
    pub fn cargo_env(&self) -> Vec<(String, OsString)> {
        match &self.libtorch {
            Some(dir) => vec![("LIBTORCH".into(), dir.clone().into_os_string())],
            None => vec![],
        }
    }
}

/// The project cache: `$LCAM_CACHE_DIR`, else `$XDG_CACHE_HOME/lcam`, else `~/.cache/lcam`.
pub fn cache_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("LCAM_CACHE_DIR") {
        return Ok(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(d).join("lcam"));
    }
    let home = std::env::var_os("HOME")
        .context("neither LCAM_CACHE_DIR, XDG_CACHE_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".cache").join("lcam"))
}

/// Asks a python for its torch version and package directory.
fn probe(python: &Path) -> Option<(String, PathBuf)> {
    let out = Command::new(python)
        .args([
            "-c",
            "import os, torch; print(torch.__version__); print(os.path.dirname(torch.__file__))",
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let mut lines = text.lines();
    let version = lines.next()?.trim().to_string();
    let dir = PathBuf::from(lines.next()?.trim());
    Some((version, dir))
}

fn pinned(version: &str) -> bool {
    version.split('+').next() == Some(TORCH_VERSION)
}

/// Returns the libtorch to build against, installing it on first use.
pub fn ensure() -> Result<TorchEnv> {
    let venv = cache_dir()?.join(format!("torch-{TORCH_VERSION}"));
    let python = venv.join("bin").join("python");
    if let Some(dir) = std::env::var_os("LIBTORCH") {
        eprintln!(
            "xtask: using LIBTORCH={} (set by you; not provisioning)",
            dir.to_string_lossy()
        );
        return Ok(TorchEnv {
            python,
            libtorch: Some(PathBuf::from(dir)),
        });
    }
    if std::env::var_os("LIBTORCH_USE_PYTORCH").is_some() {
        eprintln!("xtask: LIBTORCH_USE_PYTORCH is set: torch-sys will ask the python on PATH");
        return Ok(TorchEnv {
            python: "python3".into(),
            libtorch: None,
        });
    }
    if let Some((version, dir)) = probe(&python) {
        if pinned(&version) {
            return Ok(TorchEnv {
                python,
                libtorch: Some(dir),
            });
        }
        bail!(
            "{} holds torch {version}, expected {TORCH_VERSION}: remove that directory to reinstall",
            venv.display()
        );
    }
    install(&venv)?;
    match probe(&python) {
        Some((v, dir)) if pinned(&v) => Ok(TorchEnv {
            python,
            libtorch: Some(dir),
        }),
        other => bail!(
            "torch in {} is not usable after install ({other:?})",
            venv.display()
        ),
    }
}

fn install(venv: &Path) -> Result<()> {
    let partial = venv.with_extension("partial");
    if partial.exists() {
        std::fs::remove_dir_all(&partial).with_context(|| {
            format!(
                "cannot remove the interrupted install {}",
                partial.display()
            )
        })?;
    }
    if let Some(parent) = partial.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    eprintln!(
        "xtask: installing torch=={TORCH_VERSION} (libtorch for tch, ~4.7 GB) into {} — once",
        venv.display()
    );
    let py3 = std::env::var_os("LCAM_PYTHON").unwrap_or_else(|| "python3".into());
    let ok = Command::new(&py3)
        .args(["-m", "venv"])
        .arg(&partial)
        .status()
        .with_context(|| {
            format!(
                "cannot run {} (needed to install torch)",
                py3.to_string_lossy()
            )
        })?;
    if !ok.success() {
        bail!(
            "`{} -m venv {}` failed",
            py3.to_string_lossy(),
            partial.display()
        );
    }
    let status = Command::new(partial.join("bin").join("python"))
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--progress-bar",
            "off",
        ])
        .arg(format!("torch=={TORCH_VERSION}"))
        .status()
        .context("cannot run pip")?;
    if !status.success() {
        bail!(
            "pip could not install torch=={TORCH_VERSION} ({status}); is the Python package index \
             reachable? If you already have libtorch {TORCH_VERSION}, set LIBTORCH=<its directory> \
             or LIBTORCH_USE_PYTORCH=1 instead"
        );
    }
    match probe(&partial.join("bin").join("python")) {
        Some((v, _)) if pinned(&v) => {}
        other => bail!(
            "the fresh install in {} does not import torch {TORCH_VERSION} ({other:?})",
            partial.display()
        ),
    }
    std::fs::rename(&partial, venv)
        .with_context(|| format!("cannot rename {} to {}", partial.display(), venv.display()))?;
    Ok(())
}
