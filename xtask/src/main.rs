//! `cargo xtask`: the project's single entry point beyond `cargo build`.
//!
//! - `cargo xtask test`     — everything CI checks: fmt, clippy -D warnings, all tests and
//!   doctests of every crate (libtorch provisioned on first use).
//! - `cargo xtask golden`   — regenerate the PyTorch golden fixtures (`scripts/golden.py`).
//! - `cargo xtask libtorch` — provision libtorch and print the environment the tch build uses.
//! - `cargo xtask download` — fetch and verify CIFAR-10/100.
//! - `cargo xtask equivalence` — every fixture through every adapter, as a table.
//! - `cargo xtask reproduce` — the paper's Figures 3–5 as training runs, report and figures.
//! - `cargo xtask bench`    — optimizer-step benchmarks vs plain SGD, the memory bound and PyTorch.
//! - `cargo xtask fuzz`     — the cargo-fuzz targets (nightly), 1,000,000 runs each by default.
//! - `cargo xtask gpu-bundle` — the GPU check in one folder, to carry to a GPU machine.

mod bench;
mod download;
mod equivalence;
mod fuzz;
mod gpu_bundle;
mod oracle;
mod reproduce;
mod torch;
mod wheel;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "lcam project automation")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// fmt check, clippy (-D warnings), and every test and doctest of the workspace.
    Test {
        /// Skip the libtorch-backed crates (no provisioning, no tch tests).
        #[arg(long)]
        no_tch: bool,
    },
    /// Regenerate fixtures/golden(-groups) and fixtures/wrn with PyTorch (torch==2.13.0 in the cache venv).
    Golden,
    /// Every golden fixture and randomized traces through every adapter: a table of errors.
    Equivalence,
    /// Fetch and verify CIFAR-10/100 into the data directory.
    Download {
        /// Which dataset.
        #[arg(long, value_parser = ["cifar10", "cifar100", "all"], default_value = "all")]
        dataset: String,
        /// Local source: a .tar.gz / .tar.xz, an unpacked directory, or a directory of archives.
        #[arg(long)]
        from: Option<PathBuf>,
        /// Target directory (default: $LCAM_DATA_DIR, else <cache>/data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Provision libtorch (torch==2.13.0 from PyPI into the cache) and print its environment.
    Libtorch,
    /// The paper's Figures 3–5 (SPEC §3) as `lcam train` runs: report.md and PNG/SVG figures.
    Reproduce(reproduce::ReproduceArgs),
    /// Optimizer-step benchmarks (criterion + PyTorch), written into BENCHMARKS.md.
    Bench(bench::BenchArgs),
    /// The cargo-fuzz targets of fuzz/ (CIFAR reader, traces, checkpoints), bounded.
    Fuzz(fuzz::FuzzArgs),
    /// The `lcam` Python package (lcam-py) as an abi3 wheel, built with maturin.
    Wheel(wheel::WheelArgs),
    /// The GPU check in one folder (≤ 60 MiB): CUDA binaries, traces, wheel, `gpu-check.sh`.
    GpuBundle(gpu_bundle::GpuBundleArgs),
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let root = project_root()?;
    match cli.command {
        Cmd::Test { no_tch } => test(&root, no_tch),
        Cmd::Golden => golden(&root),
        Cmd::Equivalence => {
            let lcam = build_lcam(&root, &torch::ensure()?.cargo_env())?;
            equivalence::run(&root, &lcam)
        }
        Cmd::Download {
            dataset,
            from,
            data_dir,
        } => {
            let data_dir = data_dir_or_default(data_dir)?;
            let specs = match dataset.as_str() {
                "cifar10" => vec![download::cifar10()],
                "cifar100" => vec![download::cifar100()],
                _ => vec![download::cifar10(), download::cifar100()],
            };
            for spec in &specs {
                download::install(spec, &data_dir, from.as_deref())?;
            }
            println!("{}", data_dir.display());
            Ok(())
        }
        Cmd::Reproduce(args) => reproduce_cmd(&root, &args),
        Cmd::Fuzz(args) => fuzz::run(&root, &args),
        Cmd::Wheel(args) => {
            let python = torch::ensure()?.python;
            let wheel = wheel::build(&root, &python, &target_dir(&root), &args)?;
            if args.test {
                wheel::install_and_test(&root, &python, &wheel)?;
            }
            println!("{}", wheel.display());
            Ok(())
        }
        Cmd::GpuBundle(args) => {
            let python = torch::ensure()?.python;
            let out = args.out.clone().unwrap_or_else(|| root.join("gpu-bundle"));
            let wheel = if args.no_wheel {
                gpu_bundle::Wheel::Without
            } else {
                gpu_bundle::Wheel::Build
            };
            gpu_bundle::build(&root, &python, &target_dir(&root), &out, wheel)?;
            if args.check {
                gpu_bundle::check_without_gpu(&out, &python)?;
            }
            println!("{}", out.display());
            Ok(())
        }
        Cmd::Bench(args) => {
            let torch = torch::ensure()?;
            let doc = root.join("BENCHMARKS.md");
            if !args.train_only {
                let md = bench::run(
                    &root,
                    &args,
                    &torch.cargo_env(),
                    &torch.python,
                    &target_dir(&root),
                )?;
                println!("{md}");
                if !args.no_update {
                    bench::update_doc(&doc, bench::STEP, &md)?;
                }
            }
            if args.train || args.train_only {
                let data_dir = data_dir_or_default(None)?;
                download::install(&download::cifar10(), &data_dir, None)?;
                let lcam = build_lcam(&root, &torch.cargo_env())?;
                let md = bench::train(&root, &args, &lcam, &torch.python, &data_dir)?;
                println!("{md}");
                if !args.no_update {
                    bench::update_doc(&doc, bench::TRAIN, &md)?;
                }
            }
            if !args.no_update {
                eprintln!("xtask: BENCHMARKS.md updated");
            }
            Ok(())
        }
        Cmd::Libtorch => {
            let env = torch::ensure()?;
            for (k, v) in env.cargo_env() {
                println!("export {k}={}", v.to_string_lossy());
            }
            Ok(())
        }
    }
}

/// `--data-dir`, else `$LCAM_DATA_DIR`, else `<cache>/data`.
fn data_dir_or_default(data_dir: Option<PathBuf>) -> Result<PathBuf> {
    match data_dir.or_else(|| std::env::var_os("LCAM_DATA_DIR").map(PathBuf::from)) {
        Some(d) => Ok(d),
        None => Ok(torch::cache_dir()?.join("data")),
    }
}

fn reproduce_cmd(root: &Path, args: &reproduce::ReproduceArgs) -> Result<()> {
    let plan = reproduce::Plan::new(args, root)?;
    if args.report_only {
        return reproduce::run(&plan, None, Path::new(""));
    }
    let data_dir = data_dir_or_default(args.data_dir.clone())?;
    for d in plan.datasets() {
        let spec = if d == "cifar10" {
            download::cifar10()
        } else {
            download::cifar100()
        };
        // Verifies what is there; fetches only what is missing.
        download::install(&spec, &data_dir, None)?;
    }
    let runner = if args.pytorch {
        reproduce::Runner::Python {
            python: torch::ensure()?.python,
            root: root.to_path_buf(),
        }
    } else if let Some(lcam) = &args.lcam {
        // A binary copied aside for a long run: a rebuild cannot swap it mid-run.
        if !lcam.is_file() {
            bail!("--lcam {}: no such file", lcam.display());
        }
        reproduce::Runner::Lcam(lcam.clone())
    } else {
        reproduce::Runner::Lcam(match plan.backend {
            reproduce::Backend::Tch => build_lcam(root, &torch::ensure()?.cargo_env())?,
            reproduce::Backend::Burn => {
                sh(
                    root,
                    cargo().args(["build", "--package", "lcam-cli", "--features", "burn"]),
                )?;
                lcam_path(root)
            }
        })
    };
    eprintln!(
        "xtask: reproduce --preset {}: {} runs into {}",
        plan.protocol.preset,
        plan.runs.len(),
        plan.out.display()
    );
    reproduce::run(&plan, Some(&runner), &data_dir)
}

/// The workspace root (the directory above xtask's manifest).
fn project_root() -> Result<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .context("xtask has no parent directory")
}

/// Runs a command in `root`, echoing it; fails with the command line when it fails.
fn sh(root: &Path, cmd: &mut Command) -> Result<()> {
    cmd.current_dir(root);
    let line = format!("{cmd:?}").replace('"', "");
    eprintln!("xtask: $ {line}");
    let start = Instant::now();
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    eprintln!("xtask:   ok in {:.1}s", start.elapsed().as_secs_f64());
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn test(root: &Path, no_tch: bool) -> Result<()> {
    sh(root, cargo().args(["fmt", "--all", "--", "--check"]))?;
    // The CLI's backends and replay adapters are tested too.
    let mut scope: Vec<&str> = vec![
        "--workspace",
        "--features",
        "lcam-cli/tch,lcam-cli/burn,lcam-cli/cuda",
    ];
    let mut env = Vec::new();
    if no_tch {
        scope = vec![
            "--workspace",
            "--exclude",
            "lcam-tch",
            "--features",
            "lcam-cli/burn,lcam-cli/cuda",
        ];
    } else {
        env = torch::ensure()?.cargo_env();
    }
    let with_env = |mut c: Command| {
        for (k, v) in &env {
            c.env(k, v);
        }
        c
    };
    let mut clippy = with_env(cargo());
    clippy
        .arg("clippy")
        .args(&scope)
        .args(["--all-targets", "--", "-D", "warnings"]);
    sh(root, &mut clippy)?;
    let mut tests = with_env(cargo());
    tests.arg("test").args(&scope);
    // Insta must compare, never write, snapshots here.
    tests.env("INSTA_UPDATE", "no");
    // Every skipped test appends a line here (lcam-testkit); listed in the summary below.
    let skip_log = target_dir(root).join("lcam-skipped-tests.tsv");
    let _ = std::fs::remove_file(&skip_log);
    tests.env("LCAM_SKIP_LOG", &skip_log);
    sh(root, &mut tests)?;
    if !no_tch {
        // `cargo test` just built `lcam` with every backend (its integration tests run it).
        equivalence::run(root, &lcam_path(root))?;
        // The Python package: its wheel, installed into the torch venv, and its pytest suite.
        let python = torch::ensure()?.python;
        let w = wheel::build(
            root,
            &python,
            &target_dir(root),
            &wheel::WheelArgs {
                no_cuda: false,
                out: None,
                test: true,
            },
        )?;
        wheel::install_and_test(root, &python, &w)?;
        // The GPU check's bundle: built, within its size limit, and run here (no GPU: the GPU
        // parts must say "skipped: no CUDA driver", every binary must start).
        let bundle = target_dir(root).join("gpu-bundle-check");
        gpu_bundle::build(
            root,
            &python,
            &target_dir(root),
            &bundle,
            gpu_bundle::Wheel::Built(&w),
        )?;
        gpu_bundle::check_without_gpu(&bundle, &python)?;
    }
    // A short bounded fuzz pass (the full one is `cargo xtask fuzz`).
    fuzz::run(
        root,
        &fuzz::FuzzArgs {
            target: None,
            runs: 50_000,
            max_seconds: 120,
            require_runs: true,
            record: false,
        },
    )?;
    let skipped = std::fs::read_to_string(&skip_log).unwrap_or_default();
    let mut lines: Vec<&str> = skipped.lines().collect();
    lines.sort_unstable();
    lines.dedup();
    if lines.is_empty() {
        eprintln!("xtask: skipped tests: none");
    } else {
        eprintln!(
            "xtask: skipped tests: {} (LCAM_REQUIRE_GPU=1 / LCAM_REQUIRE_DATA=1 make them fail):",
            lines.len()
        );
        for l in &lines {
            let mut f = l.splitn(3, '\t');
            let (need, test, why) = (
                f.next().unwrap_or(""),
                f.next().unwrap_or(""),
                f.next().unwrap_or(""),
            );
            eprintln!("xtask:   [{need}] {test}: {why}");
        }
    }
    eprintln!("xtask: all checks passed");
    Ok(())
}

/// Builds `lcam` with every backend and returns its path.
///
/// Through `cargo test --no-run`, not `cargo build`: a test build unifies the dev-dependencies'
/// features too, so a plain build of the same packages compiles Burn and friends a second time
/// (≈ 15 min on 2 cores). The test build puts the very `lcam` the integration tests run at
/// `<target>/debug/lcam`, and `cargo xtask test` then finds everything compiled.
fn build_lcam(root: &Path, env: &[(String, std::ffi::OsString)]) -> Result<PathBuf> {
    let mut c = cargo();
    c.args([
        "test",
        "--no-run",
        "--workspace",
        "--features",
        "lcam-cli/tch,lcam-cli/burn,lcam-cli/cuda",
    ]);
    for (k, v) in env {
        c.env(k, v);
    }
    sh(root, &mut c)?;
    Ok(lcam_path(root))
}

/// Cargo's target directory.
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}

/// Where cargo puts the dev-profile `lcam` binary.
fn lcam_path(root: &Path) -> PathBuf {
    target_dir(root).join("debug").join("lcam")
}

fn golden(root: &Path) -> Result<()> {
    let env = torch::ensure()?;
    sh(
        root,
        Command::new(&env.python).arg("scripts/golden.py").args([
            "--out",
            "fixtures/golden",
            "--out-groups",
            "fixtures/golden-groups",
        ]),
    )?;
    // The demo's WRN: initialisation and one forward/backward batch (lcam-cli's model tests).
    sh(
        root,
        Command::new(&env.python)
            .arg("scripts/wrn_fixtures.py")
            .args(["--out", "fixtures/wrn"]),
    )
}
