//! `cargo xtask fuzz`: runs the cargo-fuzz targets of `fuzz/` (the parsers of untrusted input:
//! CIFAR files, traces, checkpoints) with a bound on executions and time, and reports the
//! executions and seconds of each.
//!
//! It needs a nightly toolchain and cargo-fuzz: both are installed when missing (`rustup
//! toolchain install nightly --profile minimal`, `cargo install cargo-fuzz --locked`). The
//! corpus grows in `fuzz/corpus/<target>/` (not committed), seeded from `fuzz/seeds/<target>/`
//! and, for `trace`, from the golden traces in `fixtures/golden/`. A crash is an error naming the
//! input libFuzzer saved under `fuzz/artifacts/<target>/` and the command that replays it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

/// The fuzz targets (the `[[bin]]`s of `fuzz/Cargo.toml`).
pub const TARGETS: [&str; 3] = ["cifar", "trace", "checkpoint"];

/// Arguments of `cargo xtask fuzz`.
#[derive(Debug, Clone, clap::Args)]
pub struct FuzzArgs {
    /// One target (default: all of them, one after the other).
    #[arg(long, value_parser = TARGETS)]
    pub target: Option<String>,
    /// Executions per target (libFuzzer `-runs`).
    #[arg(long, default_value_t = 1_000_000)]
    pub runs: u64,
    /// Upper bound on the fuzzing time per target in seconds (libFuzzer `-max_total_time`),
    /// whichever of `--runs` and this comes first.
    #[arg(long, default_value_t = 900)]
    pub max_seconds: u64,
    /// Fail unless every target reached `--runs` executions (a pass cut short by
    /// `--max-seconds` is then an error, not a smaller number; `cargo xtask test` sets it).
    #[arg(long)]
    pub require_runs: bool,
    /// Append the summary (date, commit, command, runs and seconds per target) to
    /// `fuzz/RECORD.md`, the record behind the docs' fuzzing figures.
    #[arg(long)]
    pub record: bool,
}

/// What one target did.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Target name.
    pub target: String,
    /// Executions libFuzzer reports (`Done N runs in S second(s)`).
    pub runs: u64,
    /// Seconds libFuzzer reports for them.
    pub fuzz_seconds: u64,
    /// Wall seconds including the build.
    pub wall_seconds: f64,
}

/// Runs `args`' targets in `root/fuzz` and prints one line per target.
pub fn run(root: &Path, args: &FuzzArgs) -> Result<()> {
    let fuzz = root.join("fuzz");
    if !fuzz.join("Cargo.toml").is_file() {
        bail!("{} has no fuzz project", fuzz.display());
    }
    ensure_tools()?;
    let targets: Vec<&str> = match &args.target {
        Some(t) => vec![t.as_str()],
        None => TARGETS.to_vec(),
    };
    let mut reports = Vec::new();
    for target in targets {
        reports.push(run_target(root, target, args)?);
    }
    eprintln!("xtask: fuzz summary");
    for r in &reports {
        eprintln!(
            "xtask:   {:<10} {:>10} runs in {:>4} s (wall {:.0} s with the build), no crash",
            r.target, r.runs, r.fuzz_seconds, r.wall_seconds
        );
    }
    if args.record {
        let path = fuzz.join("RECORD.md");
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        let text = record(&old, &reports, &today()?, &commit(root), args);
        crate::reproduce::write_atomic(&path, text.as_bytes())?;
        eprintln!("xtask: recorded in {}", path.display());
    }
    if args.require_runs {
        check_runs(&reports, args.runs)?;
    }
    Ok(())
}

/// An error naming every target that stopped before `runs` executions.
pub fn check_runs(reports: &[Report], runs: u64) -> Result<()> {
    let short: Vec<String> = reports
        .iter()
        .filter(|r| r.runs < runs)
        .map(|r| {
            format!(
                "{} reached {} of {runs} runs in {} s",
                r.target, r.runs, r.fuzz_seconds
            )
        })
        .collect();
    if short.is_empty() {
        Ok(())
    } else {
        bail!(
            "the fuzz pass was cut short by its time limit: {}",
            short.join("; ")
        )
    }
}

const RECORD_HEADER: &str = "# Fuzzing record\n\n\
Every `cargo xtask fuzz --record` pass, appended by the command itself (the figures the docs \
quote come from here). Runs and seconds are libFuzzer's final `Done N runs in S second(s)`; \
no row is written unless every target ended without a crash.\n\n\
| date (UTC) | commit | command | target | runs | seconds |\n\
|---|---|---|---|---:|---:|\n";

/// `old` (the record so far, or empty) with one row per report appended.
pub fn record(old: &str, reports: &[Report], date: &str, commit: &str, args: &FuzzArgs) -> String {
    let mut text = if old.trim().is_empty() {
        RECORD_HEADER.to_string()
    } else {
        old.to_string()
    };
    if !text.ends_with('\n') {
        text.push('\n');
    }
    let mut command = format!(
        "cargo xtask fuzz --runs {} --max-seconds {}",
        args.runs, args.max_seconds
    );
    if let Some(t) = &args.target {
        command.push_str(&format!(" --target {t}"));
    }
    for r in reports {
        text.push_str(&format!(
            "| {date} | `{commit}` | `{command}` | {} | {} | {} |\n",
            r.target, r.runs, r.fuzz_seconds
        ));
    }
    text
}

/// Today's date as `date -u` prints it (`YYYY-MM-DD HH:MM`).
fn today() -> Result<String> {
    let o = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M"])
        .output()
        .context("cannot run `date`")?;
    Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// The checked-out commit (short), `+dirty` when tracked files differ from it.
fn commit(root: &Path) -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .current_dir(root)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let Some(head) = git(&["rev-parse", "--short=12", "HEAD"]) else {
        return "unknown".into();
    };
    match git(&["status", "--porcelain", "--untracked-files=no"]) {
        Some(s) if s.is_empty() => head,
        _ => format!("{head}+dirty"),
    }
}

/// `rustup run nightly cargo …`: the nightly cargo whatever `$CARGO` is.
fn nightly_cargo() -> Command {
    let mut c = Command::new("rustup");
    c.args(["run", "nightly", "cargo"]);
    c
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Installs the nightly toolchain and cargo-fuzz when they are missing.
fn ensure_tools() -> Result<()> {
    if !succeeds(Command::new("rustup").args(["run", "nightly", "rustc", "--version"])) {
        eprintln!("xtask: installing the nightly toolchain (cargo-fuzz needs it)");
        let status = Command::new("rustup")
            .args(["toolchain", "install", "nightly", "--profile", "minimal"])
            .status()
            .context("cannot run rustup: install it from https://rustup.rs")?;
        if !status.success() {
            bail!("`rustup toolchain install nightly` failed ({status})");
        }
    }
    if !succeeds(nightly_cargo().args(["fuzz", "--version"])) {
        eprintln!("xtask: installing cargo-fuzz");
        let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args(["install", "cargo-fuzz", "--locked"])
            .status()
            .context("cannot run cargo install")?;
        if !status.success() {
            bail!("`cargo install cargo-fuzz --locked` failed ({status})");
        }
    }
    Ok(())
}

/// Copies the seeds of `target` into its corpus directory (existing entries are kept).
fn seed_corpus(root: &Path, target: &str) -> Result<PathBuf> {
    let corpus = root.join("fuzz/corpus").join(target);
    std::fs::create_dir_all(&corpus)
        .with_context(|| format!("cannot create {}", corpus.display()))?;
    let mut sources = vec![root.join("fuzz/seeds").join(target)];
    if target == "trace" {
        sources.push(root.join("fixtures/golden"));
    }
    for dir in sources {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if target == "trace" && dir.ends_with("golden") && !name.ends_with(".trace.json") {
                continue;
            }
            let to = corpus.join(format!("seed-{name}"));
            if e.path().is_file() && !to.exists() {
                std::fs::copy(e.path(), &to)
                    .with_context(|| format!("cannot copy {}", e.path().display()))?;
            }
        }
    }
    Ok(corpus)
}

fn run_target(root: &Path, target: &str, args: &FuzzArgs) -> Result<Report> {
    let fuzz = root.join("fuzz");
    let corpus = seed_corpus(root, target)?;
    let artifacts = fuzz.join("artifacts").join(target);
    std::fs::create_dir_all(&artifacts)
        .with_context(|| format!("cannot create {}", artifacts.display()))?;
    let log = artifacts.join("fuzz.log");
    let log_file =
        std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    let mut cmd = nightly_cargo();
    cmd.current_dir(&fuzz)
        // Its own target directory (inside the workspace's when that is set, so CI keeps it
        // warm): instrumented builds never mix with the workspace's.
        .env(
            "CARGO_TARGET_DIR",
            std::env::var_os("CARGO_TARGET_DIR")
                .map_or_else(|| fuzz.join("target"), |t| PathBuf::from(t).join("fuzz")),
        )
        .args(["fuzz", "run", target])
        .arg(&corpus)
        .arg("--")
        .arg(format!("-runs={}", args.runs))
        .arg(format!("-max_total_time={}", args.max_seconds))
        .arg("-max_len=20000")
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg("-print_final_stats=1");
    let dict = fuzz.join("json.dict");
    if target != "cifar" && dict.is_file() {
        cmd.arg(format!("-dict={}", dict.display()));
    }
    eprintln!(
        "xtask: fuzz {target}: {} runs or {} s (log: {})",
        args.runs,
        args.max_seconds,
        log.display()
    );
    let start = Instant::now();
    let status = cmd
        .stdout(log_file.try_clone().context("log file")?)
        .stderr(log_file)
        .status()
        .context("cannot run `cargo fuzz` (rustup run nightly cargo fuzz)")?;
    let wall_seconds = start.elapsed().as_secs_f64();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    if !status.success() {
        let crash = std::fs::read_dir(&artifacts)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.file_name().is_some_and(|n| n != "fuzz.log"));
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        match crash {
            Some(input) => bail!(
                "fuzz target `{target}` failed on {} ({status}); replay it with `cd fuzz && cargo +nightly fuzz run {target} {}`. Log tail:\n{}",
                input.display(),
                input.display(),
                tail.join("\n")
            ),
            None => bail!(
                "`cargo fuzz run {target}` failed ({status}), see {}:\n{}",
                log.display(),
                tail.join("\n")
            ),
        }
    }
    let (runs, fuzz_seconds) =
        parse_done(&text).with_context(|| format!("no `Done … runs` line in {}", log.display()))?;
    Ok(Report {
        target: target.to_string(),
        runs,
        fuzz_seconds,
        wall_seconds,
    })
}

/// libFuzzer's last `Done N runs in S second(s)` line.
pub fn parse_done(log: &str) -> Option<(u64, u64)> {
    log.lines().rev().find_map(|l| {
        let rest = l.trim().strip_prefix("Done ")?;
        let (runs, rest) = rest.split_once(" runs in ")?;
        let (secs, _) = rest.split_once(' ')?;
        Some((runs.parse().ok()?, secs.parse().ok()?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_done_line_is_read() {
        let log =
            "#1000000\tDONE   cov: 3149 ft: 9438\nDone 1000000 runs in 184 second(s)\nstat::x: 1\n";
        assert_eq!(parse_done(log), Some((1_000_000, 184)));
        assert_eq!(
            parse_done("INFO: Seed: 1\n==1== ERROR: libFuzzer: deadly signal"),
            None
        );
        assert_eq!(parse_done("Done many runs in 3 second(s)"), None);
    }

    fn report(target: &str, runs: u64) -> Report {
        Report {
            target: target.into(),
            runs,
            fuzz_seconds: 9,
            wall_seconds: 10.0,
        }
    }

    #[test]
    fn a_pass_cut_short_is_an_error_naming_the_target() {
        let reports = [report("cifar", 50_000), report("trace", 31_337)];
        assert!(check_runs(&reports[..1], 50_000).is_ok());
        let e = check_runs(&reports, 50_000).expect_err("short").to_string();
        assert!(e.contains("trace reached 31337 of 50000 runs"), "{e}");
        assert!(!e.contains("cifar"), "{e}");
    }

    #[test]
    fn the_record_gains_one_row_per_target() {
        let args = FuzzArgs {
            target: None,
            runs: 1_000_000,
            max_seconds: 900,
            require_runs: false,
            record: true,
        };
        let first = record(
            "",
            &[report("cifar", 1_000_000)],
            "2026-11-30 01:00",
            "abc",
            &args,
        );
        assert!(first.starts_with("# Fuzzing record"));
        assert!(first.ends_with(
            "| 2026-11-30 01:00 | `abc` | `cargo xtask fuzz --runs 1000000 --max-seconds 900` | cifar | 1000000 | 9 |\n"
        ));
        let second = record(&first, &[report("trace", 7)], "d", "c", &args);
        assert!(second.starts_with(&first));
        assert_eq!(second.lines().count(), first.lines().count() + 1);
    }

    /// The committed record holds a full pass of every target, as README and
    /// docs/bad-input.md say (1,000,000 runs each).
    #[test]
    fn the_committed_record_has_a_million_runs_of_every_target() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let text = std::fs::read_to_string(root.join("fuzz/RECORD.md")).expect("fuzz/RECORD.md");
        for t in TARGETS {
            let best = text
                .lines()
                .filter_map(|l| {
                    let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                    (cells.len() > 6 && cells[4] == t).then(|| cells[5].parse::<u64>().ok())?
                })
                .max();
            assert!(best >= Some(1_000_000), "{t}: best recorded pass {best:?}");
        }
    }

    #[test]
    fn the_targets_are_the_fuzz_crates_binaries() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let manifest = std::fs::read_to_string(root.join("fuzz/Cargo.toml")).expect("manifest");
        let bins: Vec<&str> = manifest
            .lines()
            .filter_map(|l| l.trim().strip_prefix("name = \""))
            .filter_map(|l| l.strip_suffix('"'))
            .filter(|n| *n != "lcam-fuzz")
            .collect();
        assert_eq!(bins, TARGETS);
        for t in TARGETS {
            assert!(
                root.join(format!("fuzz/fuzz_targets/{t}.rs")).is_file(),
                "{t}"
            );
        }
    }
}
