//! `lcam train` end to end on synthetic CIFAR files: bad input, and (with the `tch` feature)
//! training, outputs, refusal to overwrite, and resume equal to an uninterrupted run.

mod common;

use std::path::Path;
use std::process::Output;

use common::{data, lcam, p, stderr};
use lcam_cli::data::cifar::CifarKind;

#[test]
fn bad_arguments_fail_with_one_line_and_touch_nothing() {
    let d = data(CifarKind::Cifar10, 20);
    let out = tempfile::tempdir().expect("out");
    let keep = out.path().join("keep.txt");
    std::fs::write(&keep, "x").expect("write");
    let base = [
        "train",
        "--data-dir",
        p(d.path()),
        "--out",
        p(out.path()),
        "--force",
    ];
    for (extra, culprit) in [
        (vec!["--model", "wrn-15-1"], "6n+4"),
        (vec!["--schedule", "step:0.2"], "bad schedule `step:0.2`"),
        (vec!["--momentum-above", "1.5"], "momentum_above"),
        (vec!["--dataset", "cifar100"], "train.bin: not found"),
        (vec!["--batch-size", "0"], "--batch-size"),
    ] {
        let args: Vec<&str> = base.iter().copied().chain(extra.iter().copied()).collect();
        let o = lcam(&args);
        assert!(!o.status.success(), "{extra:?} accepted");
        let e = stderr(&o);
        assert!(
            e.contains(culprit),
            "{extra:?}: `{e}` does not name `{culprit}`"
        );
        assert_eq!(e.lines().count(), 1, "{extra:?}: one line: {e}");
        assert!(keep.exists(), "{extra:?}: --out was touched");
    }
    let o = lcam(&["train", "--out", p(out.path())]);
    assert!(!o.status.success());
    if std::env::var_os("LCAM_DATA_DIR").is_none() {
        assert!(stderr(&o).contains("LCAM_DATA_DIR"), "{}", stderr(&o));
    }
}

/// `lcam train` on `backend` with the small, seeded settings every backend test shares.
#[cfg(any(feature = "tch", feature = "burn"))]
fn train(backend: &str, data: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = common::train_args(backend, data, out);
    args.extend_from_slice(&["--seed", "7", "--schedule", "exp:0.99@2"]);
    if !extra.contains(&"--threads") {
        args.extend_from_slice(&["--threads", "1"]);
    }
    args.extend_from_slice(extra);
    lcam(&args)
}

/// The bytes of `file` in the run's latest checkpoint.
#[cfg(any(feature = "tch", feature = "burn"))]
fn checkpoint_file(dir: &Path, file: &str) -> Vec<u8> {
    let latest = std::fs::read_to_string(dir.join("LATEST")).expect("LATEST");
    std::fs::read(dir.join(latest.trim()).join(file)).expect("checkpoint file")
}

/// A 3-epoch run writes config, metrics and checkpoints; a finished run is not overwritten;
/// 1 epoch + `--resume` to 3 gives the same `model_file` bytes and metrics; resuming with
/// another configuration is refused. Every run uses `threads` threads.
#[cfg(any(feature = "tch", feature = "burn"))]
fn run_and_resume(backend: &str, model_file: &str, threads: &str) {
    let d = data(CifarKind::Cifar10, 40); // 200 train images, 13 steps per epoch
    let train = |backend: &str, data: &Path, out: &Path, extra: &[&str]| {
        let mut args = extra.to_vec();
        args.extend_from_slice(&["--threads", threads]);
        train(backend, data, out, &args)
    };
    let full = tempfile::tempdir().expect("out");
    let o = train(
        backend,
        d.path(),
        full.path(),
        &["--epochs", "3", "--force"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let metrics = std::fs::read_to_string(full.path().join("metrics.csv")).expect("metrics");
    assert_eq!(metrics.lines().count(), 4, "{metrics}");
    assert!(metrics.starts_with(
        "epoch,lr,train_loss,train_acc,test_loss,test_acc,below_share,seconds,img_per_s"
    ));
    let cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(full.path().join("config.json")).expect("config"),
    )
    .expect("json");
    assert_eq!(cfg["parameters"], 77_850);
    assert_eq!(cfg["backend"], backend);
    assert_eq!(cfg["seed"], 7);
    assert_eq!(cfg["lcam"]["momentum_below"], 0.9);
    assert!(
        cfg["backend_version"]
            .as_str()
            .is_some_and(|v| v.starts_with(&format!("{backend} "))),
        "{cfg}"
    );

    // A finished run is not overwritten without --force.
    let before = std::fs::read(full.path().join("metrics.csv")).expect("read");
    let o = train(backend, d.path(), full.path(), &["--epochs", "3"]);
    assert!(
        !o.status.success() && stderr(&o).contains("already holds a finished run"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read(full.path().join("metrics.csv")).expect("read"),
        before
    );

    // Stop after 1 epoch, resume to 3: the same parameters, bit for bit.
    let part = tempfile::tempdir().expect("out");
    let o = train(
        backend,
        d.path(),
        part.path(),
        &["--epochs", "1", "--force"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = train(
        backend,
        d.path(),
        part.path(),
        &["--epochs", "3", "--resume"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("resuming"), "{}", stderr(&o));
    assert!(
        checkpoint_file(part.path(), model_file) == checkpoint_file(full.path(), model_file),
        "resumed run differs"
    );
    let m2 = std::fs::read_to_string(part.path().join("metrics.csv")).expect("metrics");
    let strip = |s: &str| {
        s.lines()
            .map(|l| l.split(',').take(7).collect::<Vec<_>>().join(","))
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&m2), strip(&metrics), "same metrics but timings");

    // Resume with another configuration is refused.
    let o = train(
        backend,
        d.path(),
        part.path(),
        &["--epochs", "4", "--resume", "--lr", "0.05"],
    );
    assert!(
        !o.status.success() && stderr(&o).contains("different configuration"),
        "{}",
        stderr(&o)
    );
}

/// Two runs with the same seed and `threads` threads: the same `model_file` bytes and the same
/// metrics (timings aside).
#[cfg(any(feature = "tch", feature = "burn"))]
fn same_seed_same_run(backend: &str, model_file: &str, threads: &str) {
    let d = data(CifarKind::Cifar10, 20);
    let a = tempfile::tempdir().expect("out");
    let b = tempfile::tempdir().expect("out");
    for out in [&a, &b] {
        let o = train(
            backend,
            d.path(),
            out.path(),
            &["--epochs", "2", "--force", "--threads", threads],
        );
        assert!(o.status.success(), "{}", stderr(&o));
    }
    assert!(
        checkpoint_file(a.path(), model_file) == checkpoint_file(b.path(), model_file),
        "runs with the same seed differ ({threads} threads)"
    );
    let metrics = |dir: &Path| {
        std::fs::read_to_string(dir.join("metrics.csv"))
            .expect("metrics")
            .lines()
            .map(|l| l.split(',').take(7).collect::<Vec<_>>().join(","))
            .collect::<Vec<_>>()
    };
    assert_eq!(metrics(a.path()), metrics(b.path()));
}

/// With dropout, 1 epoch + `--resume` to 2 still gives the parameters of an uninterrupted run
/// (the masks depend on the seed and the step only), and dropout does change the run.
#[cfg(any(feature = "tch", feature = "burn"))]
fn dropout_resume(backend: &str, model_file: &str) {
    let d = data(CifarKind::Cifar10, 40);
    let run = |out: &Path, extra: &[&str]| {
        let o = train(backend, d.path(), out, extra);
        assert!(o.status.success(), "{extra:?}: {}", stderr(&o));
    };
    let full = tempfile::tempdir().expect("out");
    run(
        full.path(),
        &["--dropout", "0.3", "--epochs", "2", "--force"],
    );
    let part = tempfile::tempdir().expect("out");
    run(
        part.path(),
        &["--dropout", "0.3", "--epochs", "1", "--force"],
    );
    run(
        part.path(),
        &["--dropout", "0.3", "--epochs", "2", "--resume"],
    );
    assert!(
        checkpoint_file(part.path(), model_file) == checkpoint_file(full.path(), model_file),
        "a resumed run with dropout differs"
    );
    let plain = tempfile::tempdir().expect("out");
    run(plain.path(), &["--epochs", "2", "--force"]);
    assert!(
        checkpoint_file(plain.path(), model_file) != checkpoint_file(full.path(), model_file),
        "dropout changed nothing"
    );
}

/// One CIFAR-100 epoch with plain SGD; returns the data and run directories.
#[cfg(any(feature = "tch", feature = "burn"))]
fn cifar100_run(backend: &str) -> (tempfile::TempDir, tempfile::TempDir) {
    let d = data(CifarKind::Cifar100, 40);
    let out = tempfile::tempdir().expect("out");
    let o = train(
        backend,
        d.path(),
        out.path(),
        &[
            "--dataset",
            "cifar100",
            "--epochs",
            "1",
            "--force",
            "--optimizer",
            "sgd",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let cfg = std::fs::read_to_string(out.path().join("config.json")).expect("config");
    assert!(cfg.contains("\"parameters\": 83700"), "{cfg}");
    let metrics = std::fs::read_to_string(out.path().join("metrics.csv")).expect("metrics");
    assert_eq!(metrics.lines().count(), 2, "{metrics}");
    (d, out)
}

#[cfg(feature = "tch")]
mod tch {
    use super::*;

    #[test]
    fn a_run_writes_config_metrics_and_checkpoints_and_resumes_identically() {
        run_and_resume("tch", "model.safetensors", "1");
    }

    /// BENCHMARKS.md's runs use 2 threads: libtorch's intra-op pool keeps them bit-identical.
    #[test]
    fn with_2_threads_a_resumed_run_is_bit_identical() {
        run_and_resume("tch", "model.safetensors", "2");
    }

    #[test]
    fn with_2_threads_the_same_seed_gives_the_same_run() {
        same_seed_same_run("tch", "model.safetensors", "2");
    }

    #[test]
    fn cifar100_trains() {
        cifar100_run("tch");
    }

    #[test]
    fn with_dropout_a_resumed_run_is_bit_identical() {
        dropout_resume("tch", "model.safetensors");
    }

    /// `--no-decay bn,bias`: one parameter group without weight decay holding the WRN's 14
    /// batch-norm tensors and the classifier's bias (15 of WRN-10-1's 31), recorded in
    /// `config.json` and in the optimizer state; it changes the run; resuming without it is
    /// refused.
    #[test]
    fn no_decay_puts_bn_and_biases_in_a_group_without_weight_decay() {
        let d = data(CifarKind::Cifar10, 20);
        let out = tempfile::tempdir().expect("out");
        let plain = tempfile::tempdir().expect("out");
        let o = train(
            "tch",
            d.path(),
            out.path(),
            &["--epochs", "1", "--force", "--no-decay", "bn,bias"],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let o = train("tch", d.path(), plain.path(), &["--epochs", "1", "--force"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let cfg: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.path().join("config.json")).expect("config"),
        )
        .expect("json");
        assert_eq!(cfg["no_decay"], serde_json::json!(["bn", "bias"]));
        let plain_cfg = std::fs::read_to_string(plain.path().join("config.json")).expect("cfg");
        assert!(!plain_cfg.contains("no_decay"), "{plain_cfg}");

        let latest = std::fs::read_to_string(out.path().join("LATEST")).expect("LATEST");
        let state = out.path().join(latest.trim()).join("optimizer.lcam");
        let tensors = ::tch::Tensor::read_safetensors(&state).expect("safetensors");
        let (_, meta) = tensors
            .iter()
            .find(|(n, _)| n == "__lcam_state__")
            .expect("metadata");
        let bytes = Vec::<u8>::try_from(meta).expect("bytes");
        let meta: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(
            meta["groups"]["names"],
            serde_json::json!(["no_decay", "default"])
        );
        assert_eq!(meta["groups"]["options"][0]["weight_decay"], 0.0);
        assert_eq!(meta["groups"]["options"][1]["weight_decay"], 5e-4);
        let names: Vec<&str> = meta["params"]
            .as_array()
            .expect("params")
            .iter()
            .map(|p| p["name"].as_str().expect("name"))
            .collect();
        let of_param = meta["groups"]["of_param"].as_array().expect("of_param");
        let exempt: Vec<&str> = names
            .iter()
            .zip(of_param)
            .filter(|(_, g)| g.as_u64() == Some(0))
            .map(|(n, _)| *n)
            .collect();
        assert_eq!(exempt.len(), 15, "{exempt:?}");
        assert!(
            exempt.iter().all(|n| n.ends_with(".bias")
                || n.rsplit('.').nth(1).is_some_and(|m| m.starts_with("bn"))),
            "{exempt:?}"
        );
        assert!(exempt.contains(&"fc.bias"));
        assert_ne!(
            checkpoint_file(out.path(), "model.safetensors"),
            checkpoint_file(plain.path(), "model.safetensors"),
            "--no-decay changed nothing"
        );
        let o = train("tch", d.path(), out.path(), &["--epochs", "2", "--resume"]);
        assert!(
            !o.status.success() && stderr(&o).contains("different configuration"),
            "{}",
            stderr(&o)
        );
    }

    /// A run directory written before `--step` existed (no `step` in `config.json`) resumes:
    /// the step defaults to `native` and may differ on resume anyway.
    #[test]
    fn a_config_without_the_step_field_resumes() {
        let d = data(CifarKind::Cifar10, 40);
        let out = tempfile::tempdir().expect("out");
        let o = train("tch", d.path(), out.path(), &["--epochs", "1", "--force"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let path = out.path().join("config.json");
        let mut cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("config")).expect("json");
        assert_eq!(cfg["step"], "native");
        cfg.as_object_mut().expect("object").remove("step");
        std::fs::write(&path, serde_json::to_string_pretty(&cfg).expect("json")).expect("write");
        let o = train("tch", d.path(), out.path(), &["--epochs", "2", "--resume"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let metrics = std::fs::read_to_string(out.path().join("metrics.csv")).expect("csv");
        assert_eq!(metrics.lines().count(), 3, "{metrics}");
    }

    /// `--step cuda` (lcam-cuda's fused kernels on tch's CUDA tensors) trains, writes the
    /// usual checkpoint, and the run resumes with `--step native` — and the other way round;
    /// the step is recorded in `config.json`. Needs a GPU.
    #[cfg(feature = "cuda")]
    #[test]
    fn the_cuda_step_trains_and_hands_over_to_the_native_step() {
        if !::tch::Cuda::is_available() {
            lcam_testkit::skip(
                lcam_testkit::Need::Gpu,
                "the_cuda_step_trains_and_hands_over_to_the_native_step",
                "no CUDA device (tch::Cuda::is_available() is false)",
            );
            return;
        }
        let d = data(CifarKind::Cifar10, 40);
        for (first, then) in [("cuda", "native"), ("native", "cuda")] {
            let out = tempfile::tempdir().expect("out");
            let o = train(
                "tch",
                d.path(),
                out.path(),
                &[
                    "--device", "cuda", "--step", first, "--epochs", "1", "--force",
                ],
            );
            assert!(o.status.success(), "{}", stderr(&o));
            let cfg = std::fs::read_to_string(out.path().join("config.json")).expect("config");
            assert!(cfg.contains(&format!("\"step\": \"{first}\"")), "{cfg}");
            let o = train(
                "tch",
                d.path(),
                out.path(),
                &[
                    "--device", "cuda", "--step", then, "--epochs", "2", "--resume",
                ],
            );
            assert!(o.status.success(), "{first} then {then}: {}", stderr(&o));
            let metrics = std::fs::read_to_string(out.path().join("metrics.csv")).expect("csv");
            assert_eq!(metrics.lines().count(), 3, "{metrics}");
            let last = metrics.lines().last().expect("row");
            let below: f64 = last.split(',').nth(6).expect("below").parse().expect("f64");
            assert!((0.0..=1.0).contains(&below), "{last}");
        }
    }
}

#[cfg(feature = "burn")]
mod burn {
    use super::*;

    #[test]
    fn a_run_writes_config_metrics_and_checkpoints_and_resumes_identically() {
        run_and_resume("burn", "model.bpk", "1");
    }

    /// flex's rayon pool with 2 threads keeps runs bit-identical (BENCHMARKS.md).
    #[test]
    fn with_2_threads_a_resumed_run_is_bit_identical() {
        run_and_resume("burn", "model.bpk", "2");
    }

    #[test]
    fn with_2_threads_the_same_seed_gives_the_same_run() {
        same_seed_same_run("burn", "model.bpk", "2");
    }

    #[test]
    fn with_dropout_a_resumed_run_is_bit_identical() {
        dropout_resume("burn", "model.bpk");
    }

    /// `--no-decay bn,bias` on Burn: recorded in `config.json`, changes the run, survives a
    /// resume bit for bit (the groups are in the optimizer record).
    #[test]
    fn no_decay_changes_the_run_and_resumes_identically() {
        let d = data(CifarKind::Cifar10, 20);
        let (full, part, plain) = (
            tempfile::tempdir().expect("out"),
            tempfile::tempdir().expect("out"),
            tempfile::tempdir().expect("out"),
        );
        let nd = ["--no-decay", "bn,bias"];
        let run = |out: &Path, extra: &[&str]| {
            let o = train("burn", d.path(), out, extra);
            assert!(o.status.success(), "{extra:?}: {}", stderr(&o));
        };
        run(
            full.path(),
            &[&["--epochs", "2", "--force"][..], &nd].concat(),
        );
        run(plain.path(), &["--epochs", "2", "--force"]);
        run(
            part.path(),
            &[&["--epochs", "1", "--force"][..], &nd].concat(),
        );
        run(
            part.path(),
            &[&["--epochs", "2", "--resume"][..], &nd].concat(),
        );
        let cfg = std::fs::read_to_string(full.path().join("config.json")).expect("config");
        assert!(cfg.contains("\"no_decay\""), "{cfg}");
        assert!(
            checkpoint_file(part.path(), "model.bpk") == checkpoint_file(full.path(), "model.bpk"),
            "resumed run differs"
        );
        assert!(
            checkpoint_file(plain.path(), "model.bpk") != checkpoint_file(full.path(), "model.bpk"),
            "--no-decay changed nothing"
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_run() {
        // Parameter ids are deterministic, so equal parameters give equal record bytes.
        same_seed_same_run("burn", "model.bpk", "1");
    }

    #[test]
    fn cifar100_trains_and_cuda_is_refused() {
        let (d, out) = cifar100_run("burn");
        let o = train(
            "burn",
            d.path(),
            out.path(),
            &["--dataset", "cifar100", "--force", "--device", "cuda"],
        );
        assert!(!o.status.success());
        assert!(stderr(&o).contains("CPU only"), "{}", stderr(&o));
    }
}
