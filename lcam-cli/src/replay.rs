//! `lcam replay`: run a trace through an adapter.

use std::fs;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use lcam_core::{Trace, Trajectory};

use lcam_cli::output::{ensure_writable, write_atomic};

/// The implementations a trace can be replayed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Adapter {
    /// lcam-core's reference optimizer over ndarray.
    Core,
    /// lcam-tch on libtorch, CPU (needs the `tch` feature).
    Tch,
    /// lcam-burn on Burn's flex CPU backend (needs the `burn` feature).
    Burn,
    /// lcam-cuda's kernels on GPU 0 (needs the `cuda` feature, a CUDA driver and NVRTC).
    Cuda,
    /// lcam-cuda's kernels compiled for the host, over an emulated grid (needs the `cuda`
    /// feature; no GPU).
    CudaHost,
}

/// Arguments of `lcam replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The `lcam-trace/1` JSON file.
    #[arg(long)]
    trace: PathBuf,
    /// Which implementation replays the trace.
    #[arg(long, value_enum, default_value_t = Adapter::Core)]
    adapter: Adapter,
    /// Write the trajectory here instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Overwrite `--out` if it exists.
    #[arg(long)]
    force: bool,
    /// Compare with this expected `lcam-trajectory/1` file; exit non-zero if it differs.
    #[arg(long)]
    expect: Option<PathBuf>,
    /// Relative tolerance for `--expect` (default: 1e-6 for f32 traces, 1e-12 for f64).
    #[arg(long)]
    tolerance: Option<f64>,
}

pub fn run(args: &ReplayArgs) -> Result<()> {
    if let Some(out) = &args.out {
        ensure_writable(out, args.force)?;
    }
    let text = fs::read_to_string(&args.trace)
        .with_context(|| format!("cannot read trace {}", args.trace.display()))?;
    let trace = Trace::from_json(&text).with_context(|| format!("{}", args.trace.display()))?;
    let trajectory = match args.adapter {
        Adapter::Core => trace.replay(),
        Adapter::Tch => replay_tch(&trace)?,
        Adapter::Burn => replay_burn(&trace)?,
        Adapter::Cuda => replay_cuda(&trace, false)?,
        Adapter::CudaHost => replay_cuda(&trace, true)?,
    }
    .with_context(|| format!("replaying {}", args.trace.display()))?;

    if let Some(expect) = &args.expect {
        let text = fs::read_to_string(expect)
            .with_context(|| format!("cannot read expected trajectory {}", expect.display()))?;
        let expected =
            Trajectory::from_json(&text).with_context(|| format!("{}", expect.display()))?;
        let tol = args.tolerance.unwrap_or(trace.dtype.tolerance());
        let c = trajectory.compare(&expected);
        if !c.passes(tol) {
            bail!(
                "{}: trajectory differs from {}: {} (max relative error {:.3e} in `{}`, tolerance {tol:e})",
                args.trace.display(),
                expect.display(),
                c.mismatch
                    .as_deref()
                    .unwrap_or("parameters out of tolerance"),
                c.max_rel_err,
                c.worst_tensor
            );
        }
        eprintln!(
            "{}: matches {} (max relative error {:.3e}, tolerance {tol:e})",
            args.trace.display(),
            expect.display(),
            c.max_rel_err
        );
    }

    let json = trajectory.to_json_pretty() + "\n";
    match &args.out {
        Some(out) => write_atomic(out, json.as_bytes(), args.force),
        None => {
            print!("{json}");
            Ok(())
        }
    }
}

#[cfg(feature = "tch")]
fn replay_tch(trace: &Trace) -> Result<lcam_core::Result<Trajectory>> {
    Ok(Ok(lcam_tch::replay(trace, tch::Device::Cpu)?))
}

#[cfg(not(feature = "tch"))]
fn replay_tch(_: &Trace) -> Result<lcam_core::Result<Trajectory>> {
    bail!(
        "this `lcam` was built without the tch adapter: rebuild with `--features tch` (cargo xtask does)"
    )
}

#[cfg(feature = "burn")]
fn replay_burn(trace: &Trace) -> Result<lcam_core::Result<Trajectory>> {
    Ok(Ok(lcam_burn::replay(trace)?))
}

#[cfg(not(feature = "burn"))]
fn replay_burn(_: &Trace) -> Result<lcam_core::Result<Trajectory>> {
    bail!(
        "this `lcam` was built without the burn adapter: rebuild with `--features burn` (cargo xtask does)"
    )
}

#[cfg(feature = "cuda")]
fn replay_cuda(trace: &Trace, host: bool) -> Result<lcam_core::Result<Trajectory>> {
    let trajectory = if host {
        lcam_cuda::replay_host(trace)
    } else {
        lcam_cuda::replay(trace, 0)
    };
    Ok(Ok(trajectory.with_context(|| {
        if host {
            "lcam-cuda, host-emulated kernels".to_string()
        } else {
            "lcam-cuda on GPU 0".to_string()
        }
    })?))
}

#[cfg(not(feature = "cuda"))]
fn replay_cuda(_: &Trace, _host: bool) -> Result<lcam_core::Result<Trajectory>> {
    bail!(
        "this `lcam` was built without the cuda adapters: rebuild with `--features cuda` (cargo xtask does)"
    )
}
