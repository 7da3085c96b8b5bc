//! Skips that are visible and can be made fatal.
//!
//! A test that cannot run here (no GPU, no real CIFAR, no libtorch CUDA) calls [`skip`] and
//! returns. The skip
//!
//! - fails the test instead when the requirement is demanded: `LCAM_REQUIRE_GPU=1` for
//!   [`Need::Gpu`], `LCAM_REQUIRE_DATA=1` for [`Need::Data`] (the GPU check and CI set them);
//! - is printed on stderr and appended as one line (`need<TAB>test<TAB>reason`) to the file named
//!   by `LCAM_SKIP_LOG`, which `cargo xtask test` sets and lists at the end of its summary.
//!
//! ```no_run
//! use lcam_testkit::{Need, skip};
//! fn gpu_test() {
//!     let have_gpu = false;
//!     if !have_gpu {
//!         // Panics instead when LCAM_REQUIRE_GPU=1.
//!         # if std::env::var_os("LCAM_REQUIRE_GPU").is_some() { return; }
//!         skip(Need::Gpu, "gpu_test", "no CUDA driver");
//!         return;
//!     }
//! }
//! gpu_test();
//! ```
#![warn(missing_docs)]

use std::io::Write as _;

/// What a skipped test lacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// A CUDA driver / device (`LCAM_REQUIRE_GPU=1` makes the skip fatal).
    Gpu,
    /// The real CIFAR archives (`LCAM_REQUIRE_DATA=1` makes the skip fatal).
    Data,
    /// The absence of a GPU (tests of the no-driver error path skip on GPU machines; never
    /// fatal).
    NoGpu,
}

impl Need {
    /// The environment variable that turns this skip into a failure.
    pub fn variable(self) -> &'static str {
        match self {
            Need::Gpu => "LCAM_REQUIRE_GPU",
            Need::Data => "LCAM_REQUIRE_DATA",
            Need::NoGpu => "(none)",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Need::Gpu => "gpu",
            Need::Data => "data",
            Need::NoGpu => "no-gpu",
        }
    }
}

/// Whether `need` is demanded (its variable is set to anything but `0` or empty).
pub fn required(need: Need) -> bool {
    need != Need::NoGpu
        && std::env::var_os(need.variable()).is_some_and(|v| !v.is_empty() && v != "0")
}

/// The directory `fixtures/<name>` of the workspace, or `$LCAM_FIXTURES_DIR/<name>` when that
/// variable is set: the GPU bundle (`cargo xtask gpu-bundle`) carries the fixtures next to its
/// test binaries, on a machine where the build's source tree does not exist.
pub fn fixtures(name: &str) -> std::path::PathBuf {
    match std::env::var_os("LCAM_FIXTURES_DIR") {
        Some(dir) if !dir.is_empty() => std::path::PathBuf::from(dir).join(name),
        _ => std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures")
            .join(name),
    }
}

/// Records that `test` is skipped for lacking `need` (`reason` says what is missing); panics
/// instead when [`required`]. The caller returns right after.
pub fn skip(need: Need, test: &str, reason: &str) {
    record(
        need,
        test,
        reason,
        required(need),
        std::env::var_os("LCAM_SKIP_LOG")
            .as_deref()
            .map(std::path::Path::new),
    );
}

fn record(need: Need, test: &str, reason: &str, required: bool, log: Option<&std::path::Path>) {
    if required {
        panic!(
            "{test}: required by {}=1 but unavailable: {reason}",
            need.variable()
        );
    }
    if need == Need::NoGpu {
        eprintln!("SKIPPED {test}: {reason}");
    } else {
        eprintln!(
            "SKIPPED {test}: {reason} (set {}=1 to make this fail)",
            need.variable()
        );
    }
    if let Some(path) = log {
        // One short append per skip; concurrent test threads write whole lines.
        let line = format!(
            "{}\t{test}\t{}\n",
            need.name(),
            reason.replace(['\n', '\t'], " ")
        );
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = f.write_all(line.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skip_is_logged_and_a_required_one_panics() {
        let dir = std::env::temp_dir().join(format!("lcam-testkit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let log = dir.join("skips.tsv");
        record(Need::Data, "t1", "no data\there", false, Some(&log));
        record(Need::Gpu, "t2", "no driver", false, Some(&log));
        let text = std::fs::read_to_string(&log).expect("log");
        assert_eq!(text, "data\tt1\tno data here\ngpu\tt2\tno driver\n");
        let r = std::panic::catch_unwind(|| record(Need::Gpu, "t3", "no driver", true, Some(&log)));
        let msg = r.expect_err("a required skip fails");
        let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(msg.contains("t3: required by LCAM_REQUIRE_GPU=1"), "{msg}");
        // The failing one is not logged as a skip.
        assert_eq!(
            std::fs::read_to_string(&log).expect("log").lines().count(),
            2
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
