//! `cargo xtask equivalence`: every golden fixture (PyTorch; parameter groups included) and a set
//! of randomized traces (expected = an independent f64 oracle of SPEC §1–2, `oracle.rs`; two of
//! them large enough, 34,200+ elements, for lcam-core's multi-threaded update) through every
//! adapter `lcam replay` has, as a table of maximum relative errors. Exit ≠ 0 on any failure.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use lcam_core::{DType, LcamConfig, NamedTensor, Trace, TraceStep, load_fixtures};

/// The adapters of `lcam replay`, in table order. `cuda-host` runs lcam-cuda's kernels compiled
/// for the host; `cuda` needs a GPU and is skipped (with the reason) when the machine has no
/// CUDA driver.
const ADAPTERS: [&str; 5] = ["core", "tch", "burn", "cuda-host", "cuda"];

/// Why `adapter` cannot run here (`None`: it can), asked of `lcam` itself on one trace: the
/// lcam-cuda adapters are skipped when the binary was built without `lcam-cli/cuda`, and `cuda`
/// when the CUDA driver or NVRTC cannot be loaded. Any other failure shows up as FAIL.
fn skip_reason(lcam: &Path, adapter: &str, trace: &Path) -> Result<Option<String>> {
    if !adapter.starts_with("cuda") {
        return Ok(None);
    }
    let out = Command::new(lcam)
        .args(["replay", "--adapter", adapter, "--trace"])
        .arg(trace)
        .output()
        .with_context(|| format!("cannot run {}", lcam.display()))?;
    if out.status.success() {
        return Ok(None);
    }
    let err = String::from_utf8_lossy(&out.stderr);
    Ok(if err.contains("built without the cuda adapters") {
        Some("`lcam` built without the `lcam-cli/cuda` feature".to_string())
    } else if adapter == "cuda" && err.contains("cannot load the CUDA") {
        let lib = err
            .split("cannot load the ")
            .nth(1)
            .and_then(|s| s.split(':').next())
            .unwrap_or("CUDA driver library");
        Some(format!("no GPU: cannot load the {lib}"))
    } else {
        None
    })
}

/// A deterministic xorshift stream, enough for test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A random trace: random config, shapes, gradients (some absent), losses and epochs.
fn random_trace(seed: u64) -> Result<Trace> {
    let mut r = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let nesterov = r.next() < 0.3;
    let config = LcamConfig {
        lr: 0.01 + 0.2 * r.next(),
        weight_decay: if r.next() < 0.5 { 0.0 } else { 1e-3 * r.next() },
        momentum_below: 0.05 + 0.9 * r.next(),
        momentum_above: 0.05 + 0.9 * r.next(),
        initial_momentum: 0.9,
        dampening: if nesterov { 0.0 } else { 0.3 * r.next() },
        nesterov,
    }
    .validate()?;
    let dtype = if seed.is_multiple_of(2) {
        DType::F32
    } else {
        DType::F64
    };
    let round = |x: f64| {
        if dtype == DType::F32 {
            f64::from(x as f32)
        } else {
            x
        }
    };
    let mut shapes: Vec<Vec<usize>> = (0..1 + seed as usize % 3)
        .map(|i| vec![1 + i, 2 + (seed as usize + i) % 4])
        .collect();
    if seed >= 6 {
        // ≥ 2^15 elements in all: lcam-core spreads the update over rayon's pool.
        shapes.push(vec![180, 190]);
    }
    let params = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| NamedTensor {
            name: format!("p{i}"),
            shape: s.clone(),
            data: (0..s.iter().product::<usize>())
                .map(|_| round(2.0 * r.next() - 1.0))
                .collect(),
        })
        .collect();
    let steps = (0..if seed >= 6 { 12 } else { 30 })
        .map(|k| TraceStep {
            epoch: k / 7,
            lr: k.is_multiple_of(5).then(|| 0.05 * r.next()),
            loss: 1.0 + r.next(),
            grads: shapes
                .iter()
                .map(|s| {
                    (r.next() > 0.1).then(|| {
                        (0..s.iter().product::<usize>())
                            .map(|_| round(2.0 * r.next() - 1.0))
                            .collect()
                    })
                })
                .collect(),
        })
        .collect();
    Ok(Trace::new(dtype, config, params, steps)?)
}

/// Writes the randomized traces (seeds 1–7) and their expected trajectories — from the
/// independent oracle (SPEC §1–2 in f64, `oracle.rs`), not lcam-core's replay — into `dir` as
/// `random<seed>.{trace,expected}.json`; returns `(name, trace, expected)` per case.
pub fn write_random_cases(dir: &Path) -> Result<Vec<(String, PathBuf, PathBuf)>> {
    let mut cases = Vec::new();
    for seed in 1..=7u64 {
        let trace = random_trace(seed)?;
        let expected = crate::oracle::replay(&trace);
        let t = dir.join(format!("random{seed}.trace.json"));
        let e = dir.join(format!("random{seed}.expected.json"));
        std::fs::write(&t, trace.to_json())
            .with_context(|| format!("cannot write {}", t.display()))?;
        std::fs::write(&e, expected.to_json_pretty())
            .with_context(|| format!("cannot write {}", e.display()))?;
        cases.push((format!("random{seed}_{}", trace.dtype.as_str()), t, e));
    }
    Ok(cases)
}

/// Runs the table; `lcam` is the path of a binary built with every available adapter.
pub fn run(root: &Path, lcam: &Path) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let mut cases: Vec<(String, PathBuf, PathBuf)> = Vec::new();
    for dir in ["fixtures/golden", "fixtures/golden-groups"] {
        let dir = root.join(dir);
        cases.extend(load_fixtures(&dir)?.into_iter().map(|f| {
            let t = dir.join(format!("{}.trace.json", f.name));
            let e = dir.join(format!("{}.expected.json", f.name));
            (f.name, t, e)
        }));
    }
    cases.extend(write_random_cases(tmp.path())?);
    let adapters = ADAPTERS
        .iter()
        .map(|&a| Ok((a, skip_reason(lcam, a, &cases[0].1)?)))
        .collect::<Result<Vec<_>>>()?;
    print!("{:30}", "fixture");
    for (a, _) in &adapters {
        print!(" {a:>14}");
    }
    println!();
    let mut failures = vec![];
    for (name, trace, expected) in &cases {
        print!("{name:30}");
        for (adapter, skip) in &adapters {
            if skip.is_some() {
                print!(" {:>14}", "skipped");
                continue;
            }
            let out = Command::new(lcam)
                .args(["replay", "--adapter", adapter, "--trace"])
                .arg(trace)
                .arg("--expect")
                .arg(expected)
                .output()
                .with_context(|| format!("cannot run {}", lcam.display()))?;
            let err = String::from_utf8_lossy(&out.stderr);
            let rel = err
                .split("max relative error ")
                .nth(1)
                .and_then(|s| s.split([',', ' ', ')']).next())
                .unwrap_or("?")
                .to_string();
            if out.status.success() {
                print!(" {:>14}", format!("ok {rel}"));
            } else {
                print!(" {:>14}", format!("FAIL {rel}"));
                failures.push(format!("{adapter} × {name}: {}", err.trim()));
            }
        }
        println!();
    }
    for (a, skip) in &adapters {
        if let Some(why) = skip {
            println!("{a}: skipped ({why})");
        }
    }
    if !failures.is_empty() {
        bail!("{} failure(s):\n{}", failures.len(), failures.join("\n"));
    }
    println!(
        "{} cases × {} adapters: all pass",
        cases.len(),
        adapters.iter().filter(|a| a.1.is_none()).count()
    );
    Ok(())
}
