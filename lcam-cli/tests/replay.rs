//! `lcam replay` end to end: golden fixtures, output handling, and bad input.

mod common;

use std::path::{Path, PathBuf};

use common::{lcam, stderr};

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/golden")
        .join(name)
}

fn fixture_names() -> Vec<String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/golden");
    lcam_core::load_fixtures(&dir)
        .expect("fixtures")
        .into_iter()
        .map(|f| f.name)
        .collect()
}

#[test]
fn replay_core_reproduces_every_golden_fixture() {
    replay_reproduces_every_golden_fixture("core");
}

#[cfg(feature = "tch")]
#[test]
fn replay_tch_reproduces_every_golden_fixture() {
    replay_reproduces_every_golden_fixture("tch");
}

#[cfg(feature = "burn")]
#[test]
fn replay_burn_reproduces_every_golden_fixture() {
    replay_reproduces_every_golden_fixture("burn");
}

#[cfg(feature = "cuda")]
#[test]
fn replay_cuda_host_reproduces_every_golden_fixture() {
    // lcam-cuda's kernels compiled for the host, run over an emulated grid.
    replay_reproduces_every_golden_fixture("cuda-host");
}

#[cfg(feature = "cuda")]
#[test]
fn replay_cuda_without_a_gpu_is_one_clear_error() {
    if cudarc_driver_present() {
        lcam_testkit::skip(
            lcam_testkit::Need::NoGpu,
            "replay_cuda_without_a_gpu_is_one_clear_error",
            "a CUDA driver is present",
        );
        return;
    }
    let trace = golden("quadratic_f32_cifar10.trace.json");
    let o = lcam(&[
        "replay",
        "--trace",
        trace.to_str().expect("utf8"),
        "--adapter",
        "cuda",
    ]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("CUDA driver"), "{e}");
    assert!(!e.contains("panicked"), "{e}");
}

#[cfg(feature = "cuda")]
fn cudarc_driver_present() -> bool {
    [
        "/usr/lib/x86_64-linux-gnu/libcuda.so.1",
        "/usr/lib64/libcuda.so.1",
    ]
    .iter()
    .any(|p| std::path::Path::new(p).exists())
}

fn replay_reproduces_every_golden_fixture(adapter: &str) {
    for name in fixture_names() {
        let trace = golden(&format!("{name}.trace.json"));
        let expect = golden(&format!("{name}.expected.json"));
        let o = lcam(&[
            "replay",
            "--trace",
            trace.to_str().expect("utf8"),
            "--adapter",
            adapter,
            "--expect",
            expect.to_str().expect("utf8"),
        ]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let t: serde_json::Value =
            serde_json::from_slice(&o.stdout).expect("stdout is a trajectory");
        assert_eq!(t["format"], "lcam-trajectory/1");
        assert!(stderr(&o).contains("matches"), "{}", stderr(&o));
    }
}

#[test]
fn expect_fails_on_a_different_trajectory() {
    let trace = golden("quadratic_f32_cifar10.trace.json");
    let other = golden("quadratic_f64_fixed.expected.json");
    let o = lcam(&[
        "replay",
        "--trace",
        trace.to_str().expect("utf8"),
        "--expect",
        other.to_str().expect("utf8"),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("differs"), "{}", stderr(&o));
}

#[test]
fn out_is_written_atomically_and_never_overwritten_silently() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("t.json");
    let trace = golden("mlp_f64_nesterov.trace.json");
    let args = |extra: &[&str]| {
        let mut a = vec![
            "replay",
            "--trace",
            trace.to_str().expect("utf8"),
            "--out",
            out.to_str().expect("utf8"),
        ];
        a.extend_from_slice(extra);
        a.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let run = |a: Vec<String>| common::lcam_command().args(a).output().expect("run");
    let o = run(args(&[]));
    assert!(o.status.success(), "{}", stderr(&o));
    let first = std::fs::read_to_string(&out).expect("written");
    assert!(first.contains("lcam-trajectory/1"));
    std::fs::write(&out, "keep me").expect("write");
    let o = run(args(&[]));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&out).expect("read"), "keep me");
    let o = run(args(&["--force"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&out).expect("read"), first);
    let leftovers = std::fs::read_dir(dir.path()).expect("dir").count();
    assert_eq!(leftovers, 1, "no temporary files left behind");
}

/// Writes a corrupted copy of a fixture and checks that replay fails naming the culprit and
/// writes no output file.
fn assert_rejected(dir: &Path, label: &str, text: &str, culprit: &str) {
    let trace = dir.join(format!("{label}.trace.json"));
    std::fs::write(&trace, text).expect("write");
    let out = dir.join(format!("{label}.out.json"));
    let o = lcam(&[
        "replay",
        "--trace",
        trace.to_str().expect("utf8"),
        "--out",
        out.to_str().expect("utf8"),
    ]);
    assert!(!o.status.success(), "{label}: accepted");
    let err = stderr(&o);
    assert!(
        err.contains(culprit),
        "{label}: `{err}` does not name `{culprit}`"
    );
    assert!(
        err.starts_with("error: ") && err.lines().count() == 1,
        "{label}: one line: {err}"
    );
    assert!(!out.exists(), "{label}: output written");
}

#[test]
fn bad_traces_are_rejected_with_the_culprit_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good =
        std::fs::read_to_string(golden("softmax_f32_absent_grad.trace.json")).expect("fixture");
    let v: serde_json::Value = serde_json::from_str(&good).expect("json");
    let edit = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v = v.clone();
        f(&mut v);
        v.to_string()
    };
    assert_rejected(
        dir.path(),
        "tag",
        &edit(&|v| v["format"] = "lcam-trace/2".into()),
        "format",
    );
    assert_rejected(
        dir.path(),
        "dtype",
        &edit(&|v| v["dtype"] = "bf16".into()),
        "dtype",
    );
    assert_rejected(
        dir.path(),
        "len",
        &edit(&|v| {
            v["params"][1]["data"].as_array_mut().expect("arr").pop();
        }),
        "params[1].data",
    );
    assert_rejected(
        dir.path(),
        "grad",
        &edit(&|v| {
            v["steps"][5]["grads"][0]
                .as_array_mut()
                .expect("arr")
                .push(1.0.into());
        }),
        "steps[5].grads[0]",
    );
    assert_rejected(
        dir.path(),
        "count",
        &edit(&|v| {
            v["steps"][2]["grads"].as_array_mut().expect("arr").pop();
        }),
        "steps[2].grads",
    );
    assert_rejected(
        dir.path(),
        "config",
        &edit(&|v| v["config"]["momentum_above"] = 1.2.into()),
        "config.momentum_above",
    );
    assert_rejected(
        dir.path(),
        "nesterov",
        &edit(&|v| {
            v["config"]["nesterov"] = true.into();
            v["config"]["dampening"] = 0.5.into();
        }),
        "config.dampening",
    );
    assert_rejected(
        dir.path(),
        "epoch",
        &edit(&|v| v["steps"][12]["epoch"] = 0.into()),
        "steps[12].epoch",
    );
    assert_rejected(
        dir.path(),
        "lr",
        &edit(&|v| v["steps"][3]["lr"] = (-1.0).into()),
        "steps[3].lr",
    );
    assert_rejected(
        dir.path(),
        "f32range",
        &edit(&|v| v["params"][0]["data"][2] = 1e300.into()),
        "params[0].data",
    );
    assert_rejected(
        dir.path(),
        "unknown",
        &edit(&|v| v["steps"][0]["extra"] = 1.into()),
        "extra",
    );
    assert_rejected(dir.path(), "json", &good[..good.len() / 2], "line 1");
    let missing = dir.path().join("nope.json");
    let o = lcam(&["replay", "--trace", missing.to_str().expect("utf8")]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("nope.json"), "{}", stderr(&o));
}
