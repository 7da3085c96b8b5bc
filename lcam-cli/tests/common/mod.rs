//! Helpers shared by lcam-cli's integration tests: running the `lcam` binary, synthetic CIFAR
//! files, and the small seeded `lcam train` settings every backend test uses.
#![allow(dead_code)] // each test file uses a subset

use std::path::Path;
use std::process::{Command, Output};

use lcam_cli::data::cifar::{self, CifarKind, Split};

/// The `lcam` binary, without the crash-test hook inherited from the environment.
pub fn lcam_command() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lcam"));
    c.env_remove("LCAM_TEST_FAILPOINT");
    c
}

/// Runs `lcam` with `args` to completion.
pub fn lcam(args: &[&str]) -> Output {
    lcam_command().args(args).output().expect("run lcam")
}

/// A path as the `&str` a command line takes.
pub fn p(path: &Path) -> &str {
    path.to_str().expect("utf8 path")
}

/// The process's standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Synthetic CIFAR files in a temporary directory: `5·n` training images (`n` per batch file)
/// and `n / 2` test images, seeded.
pub fn data(kind: CifarKind, n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    cifar::write_synthetic(dir.path(), kind, Split::Train, n, 3).expect("train");
    cifar::write_synthetic(dir.path(), kind, Split::Test, n / 2, 4).expect("test");
    dir
}

/// `lcam train` on `backend` with WRN-10-1, batches of 16 and `data`/`out`; `extra` follows
/// (clap takes the last of a repeated flag, so `extra` may override nothing here: the caller
/// adds `--threads`, `--seed`, `--epochs` as it needs).
pub fn train_args<'a>(backend: &'a str, data: &'a Path, out: &'a Path) -> Vec<&'a str> {
    vec![
        "train",
        "--backend",
        backend,
        "--model",
        "wrn-10-1",
        "--data-dir",
        p(data),
        "--out",
        p(out),
        "--batch-size",
        "16",
    ]
}
