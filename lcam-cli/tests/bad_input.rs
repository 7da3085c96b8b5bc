//! Bad input that the other test files do not cover (see `docs/bad-input.md` for the whole
//! catalogue): unknown or malformed command-line values, a garbage trajectory, run directories
//! that are not runs, a diverging run. Every case ends with exactly one `error: ` line on stderr,
//! no panic, and a non-zero exit.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{lcam, p};
use lcam_cli::data::cifar::CifarKind;

/// Asserts a failed run: exit status `code`, one `error: ` line naming `culprit`, no panic.
fn assert_one_error(o: &Output, code: i32, culprit: &str, what: &str) {
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(code), "{what}: exit status; {e}");
    let errors: Vec<&str> = e.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{what}: one error line: {e}");
    assert!(
        errors[0].contains(culprit),
        "{what}: `{e}` names `{culprit}`"
    );
    assert!(
        !e.contains("panicked") && !e.contains("RUST_BACKTRACE"),
        "{what}: {e}"
    );
    assert!(!e.contains("Usage:"), "{what}: no usage block: {e}");
}

fn data() -> tempfile::TempDir {
    common::data(CifarKind::Cifar10, 20)
}

#[test]
fn unknown_values_flags_and_commands_are_one_line_usage_errors() {
    let out = tempfile::tempdir().expect("out");
    let o = p(out.path());
    for (args, culprit) in [
        (
            vec!["train", "--out", o, "--backend", "jax"],
            "possible values: tch, burn",
        ),
        (
            vec!["train", "--out", o, "--dataset", "cifar11"],
            "'cifar11'",
        ),
        (
            vec!["train", "--out", o, "--optimizer", "adam"],
            "possible values: lcam, sgd",
        ),
        (vec!["train", "--out", o, "--normalize", "none"], "'none'"),
        (vec!["train", "--out", o, "--epochs", "-1"], "'-1'"),
        (vec!["train", "--out", o, "--lr", "fast"], "invalid float"),
        (vec!["train", "--out", o, "--batch-size", "1e3"], "'1e3'"),
        (vec!["train", "--out", o, "--warp-speed"], "'--warp-speed'"),
        (vec!["train"], "--out"),
        (vec!["replay"], "--trace"),
        (
            vec!["replay", "--trace", "t.json", "--adapter", "onnx"],
            "'onnx'",
        ),
        (vec!["fly"], "'fly'"),
    ] {
        assert_one_error(&lcam(&args), 2, culprit, &format!("{args:?}"));
    }
    // No command at all: the help, on stderr, exit 2.
    let o = lcam(&[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("Usage: lcam"));
    assert_eq!(std::fs::read_dir(out.path()).expect("ls").count(), 0);
    // --help and --version are not errors.
    let h = lcam(&["train", "--help"]);
    assert!(h.status.success() && String::from_utf8_lossy(&h.stdout).contains("--resume"));
    let v = lcam(&["--version"]);
    assert!(v.status.success() && String::from_utf8_lossy(&v.stdout).starts_with("lcam "));
}

#[test]
fn out_of_range_training_values_are_refused_before_anything_is_written() {
    let d = data();
    let out = tempfile::tempdir().expect("out");
    let run = out.path().join("run");
    for (extra, culprit) in [
        (vec!["--epochs", "0"], "--epochs"),
        (vec!["--dropout", "1"], "--dropout"),
        (vec!["--lr=-0.1"], "lr"),
        (vec!["--lr", "NaN"], "lr"),
        (vec!["--weight-decay=-1"], "weight_decay"),
        (vec!["--momentum-below=-0.5"], "momentum_below"),
        (vec!["--momentum", "1"], "momentum"),
        (vec!["--model", "resnet-50"], "resnet-50"),
        (vec!["--model", "wrn-16-0"], "wrn-16-0"),
        (vec!["--schedule", "exp:2@x"], "exp:2@x"),
        (vec!["--schedule", "linear"], "linear"),
        (vec!["--limit-train", "0"], "empty dataset"),
        (vec!["--step", "cuda"], "--device cuda"),
        (vec!["--step", "cuda", "--backend", "burn"], "--backend tch"),
    ] {
        let mut args = vec!["train", "--data-dir", p(d.path()), "--out", p(&run)];
        if !extra.contains(&"--model") {
            args.extend(["--model", "wrn-10-1"]);
        }
        args.extend(extra.iter().copied());
        assert_one_error(&lcam(&args), 1, culprit, &format!("{extra:?}"));
        assert!(!run.exists(), "{extra:?}: --out created");
    }
}

#[test]
fn a_garbage_trajectory_or_trace_file_is_one_error() {
    let dir = tempfile::tempdir().expect("tmp");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/golden");
    let trace = root.join("quadratic_f32_cifar10.trace.json");
    let garbage = dir.path().join("garbage.json");
    std::fs::write(
        &garbage,
        "{\"format\": \"lcam-trajectory/1\", \"params\": [",
    )
    .expect("w");
    let o = lcam(&["replay", "--trace", p(&trace), "--expect", p(&garbage)]);
    assert_one_error(&o, 1, "garbage.json", "truncated trajectory");
    let other = dir.path().join("other.json");
    std::fs::write(&other, "{\"format\": \"lcam-trajectory/9\"}").expect("w");
    let o = lcam(&["replay", "--trace", p(&trace), "--expect", p(&other)]);
    assert_one_error(&o, 1, "other.json", "foreign trajectory");
    let o = lcam(&["replay", "--trace", p(&dir.path().join("missing.json"))]);
    assert_one_error(&o, 1, "missing.json", "missing trace");
    let binary = dir.path().join("binary.json");
    std::fs::write(&binary, [0xff, 0xfe, 0x00, 0x01]).expect("w");
    let o = lcam(&["replay", "--trace", p(&binary)]);
    assert_one_error(&o, 1, "binary.json", "binary trace");
}

/// The backend the remaining tests train with (either works).
#[cfg(any(feature = "tch", feature = "burn"))]
const BACKEND: &str = if cfg!(feature = "tch") { "tch" } else { "burn" };

#[cfg(any(feature = "tch", feature = "burn"))]
fn train(data: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["train", "--backend", BACKEND];
    if !extra.contains(&"--model") {
        args.extend(["--model", "wrn-10-1"]);
    }
    args.extend([
        "--data-dir",
        p(data),
        "--out",
        p(out),
        "--batch-size",
        "16",
        "--threads",
        "1",
    ]);
    args.extend_from_slice(extra);
    lcam(&args)
}

#[cfg(any(feature = "tch", feature = "burn"))]
#[test]
fn resuming_what_is_not_a_run_is_one_clear_error() {
    let d = data();
    let dir = tempfile::tempdir().expect("out");
    // No run directory at all.
    let none = dir.path().join("none");
    let o = train(d.path(), &none, &["--resume"]);
    assert_one_error(&o, 1, "--resume needs a run directory", "no directory");
    assert!(!none.exists());
    // A config.json that is not one.
    let bad = dir.path().join("bad");
    std::fs::create_dir(&bad).expect("mkdir");
    std::fs::write(bad.join("config.json"), "{\"backend\": \"tch\"").expect("w");
    let o = train(d.path(), &bad, &["--resume"]);
    assert_one_error(&o, 1, "config.json is corrupt", "corrupt config");
    // A directory with other files is not replaced without --force.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).expect("mkdir");
    std::fs::write(other.join("notes.txt"), "mine").expect("w");
    let o = train(d.path(), &other, &[]);
    assert_one_error(&o, 1, "already holds files", "foreign directory");
    assert_eq!(
        std::fs::read(other.join("notes.txt")).expect("kept"),
        b"mine"
    );
    // LATEST naming nothing usable and no checkpoint to fall back to.
    let run = dir.path().join("run");
    let o = train(d.path(), &run, &["--epochs", "1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for e in std::fs::read_dir(&run).expect("ls").flatten() {
        if e.file_name().to_string_lossy().starts_with("checkpoint-") {
            std::fs::remove_dir_all(e.path()).expect("rm");
        }
    }
    let o = train(d.path(), &run, &["--epochs", "2", "--resume"]);
    assert_one_error(&o, 1, "no intact checkpoint", "checkpoints deleted");
    // A checkpoint of another model: refused by the configuration check.
    let o = train(
        d.path(),
        &run,
        &["--epochs", "2", "--resume", "--model", "wrn-16-1"],
    );
    assert_one_error(&o, 1, "different configuration", "another model");
}

#[cfg(any(feature = "tch", feature = "burn"))]
#[test]
fn a_diverging_run_stops_at_the_first_non_finite_loss_with_one_error() {
    let d = data();
    let out = tempfile::tempdir().expect("out");
    let o = train(d.path(), out.path(), &["--lr", "1e30", "--force"]);
    assert_one_error(&o, 1, "non-finite loss", "diverging run");
    // Nothing was checkpointed from the diverged epoch.
    assert!(!out.path().join("LATEST").exists());
}

/// `--no-decay` builds a parameter group: an unknown class is a usage error.
#[test]
fn no_decay_with_an_unknown_class_is_a_usage_error() {
    let d = data();
    let out = tempfile::tempdir().expect("out");
    let base = |backend: &'static str, extra: &[&'static str]| {
        let mut a = vec![
            "train",
            "--backend",
            backend,
            "--data-dir",
            p(d.path()),
            "--out",
            p(out.path()),
        ];
        a.extend_from_slice(extra);
        lcam(&a)
    };
    let o = base("tch", &["--no-decay", "bn,weights"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("weights"));
    assert!(
        std::fs::read_dir(out.path()).expect("ls").next().is_none(),
        "nothing written"
    );
}

/// A bug that panics anyway reaches the user through `main`'s panic hook: one line, exit 101,
/// no backtrace (the panic is injected at the first training step by the test hook).
#[cfg(any(feature = "tch", feature = "burn"))]
#[test]
fn a_bug_that_panics_is_one_internal_error_line_with_exit_101() {
    let d = data();
    let out = tempfile::tempdir().expect("out");
    let o = Command::new(env!("CARGO_BIN_EXE_lcam"))
        .args([
            "train",
            "--backend",
            BACKEND,
            "--model",
            "wrn-10-1",
            "--data-dir",
            p(d.path()),
            "--out",
            p(out.path()),
            "--batch-size",
            "16",
            "--threads",
            "1",
            "--force",
        ])
        .env("LCAM_TEST_FAILPOINT", "step:1:panic")
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run lcam");
    assert_one_error(
        &o,
        101,
        "internal error: failpoint step: injected panic at ",
        "panic",
    );
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("(a bug: please report it)"), "{e}");
    assert!(!e.contains("stack backtrace"), "{e}");
}

/// Found by fuzzing: a shape whose element count overflows `usize` panicked (debug builds) while
/// the error message was being written. Now it is one clear error.
#[test]
fn a_trace_with_an_overflowing_shape_is_one_error() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/golden");
    let text = std::fs::read_to_string(root.join("quadratic_f64_fixed.trace.json")).expect("r");
    let mut v: serde_json::Value = serde_json::from_str(&text).expect("json");
    v["params"][0]["shape"] = serde_json::json!([4_294_967_296u64, 4_294_967_296u64, 2]);
    let dir = tempfile::tempdir().expect("tmp");
    let trace = dir.path().join("huge.trace.json");
    std::fs::write(&trace, v.to_string()).expect("w");
    let o = lcam(&["replay", "--trace", p(&trace)]);
    assert_one_error(&o, 1, "more than usize::MAX", "overflowing shape");
    // The same shape in a core optimizer state.
    let state = serde_json::json!({
        "format": "lcam-state/1", "dtype": "f32",
        "config": {"lr": 0.1, "weight_decay": 0.0, "momentum_below": 0.9,
                   "momentum_above": 0.95, "initial_momentum": 0.9},
        "controller": {"epoch": 1, "count": 0, "sum": 0.0, "steps_below": 0, "phase": null},
        "buffers": [{"shape": [4_294_967_296u64, 4_294_967_296u64, 2], "data": [1.0]}]
    });
    let state: lcam_core::LcamState<f32> = serde_json::from_value(state).expect("state");
    let e = state.buffers[0]
        .as_ref()
        .expect("buffer")
        .to_array("buffers[0]")
        .expect_err("rejected");
    assert!(e.to_string().contains("more than usize::MAX"), "{e}");
}

/// The reader's byte-slice entry point (the one `fuzz/` drives): sizes and labels are checked
/// exactly as for files, and the error names the source.
#[test]
fn parse_records_checks_sizes_and_labels() {
    use lcam_cli::data::cifar::{DataError, parse_records};
    let src = Path::new("memory.bin");
    let mut rec = vec![7u8];
    rec.extend((0..3072).map(|i| (i % 251) as u8));
    let ds = parse_records(&rec, CifarKind::Cifar10, src).expect("one record");
    assert_eq!((ds.len(), ds.labels[0], ds.image(0)[300]), (1, 7, 49));
    let e = parse_records(&rec[1..], CifarKind::Cifar10, src).expect_err("short");
    assert!(
        matches!(
            e,
            DataError::Size {
                got: 3072,
                expected: 3073,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("memory.bin"), "{e}");
    // The same bytes as CIFAR-100 are a record and a half.
    let e = parse_records(&rec, CifarKind::Cifar100, src).expect_err("cifar100");
    assert!(matches!(e, DataError::Size { .. }), "{e}");
    rec[0] = 10;
    let e = parse_records(&rec, CifarKind::Cifar10, src).expect_err("label");
    assert!(e.to_string().contains("record 0 has class label 10"), "{e}");
    assert_eq!(
        parse_records(&[], CifarKind::Cifar100, src)
            .map(|d| d.len())
            .ok(),
        Some(0)
    );
}

/// `docs/bad-input.md` stays honest: every table row names at least one test, and every test it
/// names (`short/file::name`, expanded through the file's own key) exists.
#[test]
fn the_bad_input_catalogue_names_only_existing_tests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let doc = std::fs::read_to_string(root.join("docs/bad-input.md")).expect("catalogue");
    let files = [
        ("core/spec", "lcam-core/tests/spec.rs"),
        ("core/props", "lcam-core/tests/properties.rs"),
        ("core/golden", "lcam-core/tests/golden.rs"),
        ("core/groups", "lcam-core/tests/groups.rs"),
        ("tch/groups", "lcam-tch/tests/groups.rs"),
        ("tch/state_v1", "lcam-tch/tests/state_v1.rs"),
        ("cuda/emulated", "lcam-cuda/tests/emulated.rs"),
        ("burn/groups", "lcam-burn/tests/groups.rs"),
        ("tch/opt", "lcam-tch/tests/optimizer.rs"),
        ("tch/cuda", "lcam-tch/tests/cuda_step.rs"),
        ("burn/record", "lcam-burn/tests/record.rs"),
        ("burn/step", "lcam-burn/tests/step.rs"),
        ("cli/train", "lcam-cli/tests/train.rs"),
        ("cli/bad", "lcam-cli/tests/bad_input.rs"),
        ("cli/rel", "lcam-cli/tests/reliability.rs"),
        ("cli/replay", "lcam-cli/tests/replay.rs"),
        ("cli/data", "lcam-cli/tests/data.rs"),
        ("xtask/download", "xtask/src/download.rs"),
        ("schedule", "lcam-cli/src/train/schedule.rs"),
        ("model", "lcam-cli/src/train/model.rs"),
        ("burn_backend", "lcam-cli/src/train/burn_backend.rs"),
    ];
    let mut rows = 0;
    let mut named = 0;
    let mut checked = 0;
    let mut unexercised = vec![];
    for line in doc.lines() {
        let cells: Vec<&str> = line.split(" | ").collect();
        if !line.starts_with("| ") || cells.len() < 3 || line.starts_with("| input") {
            continue;
        }
        rows += 1;
        let tests = cells[cells.len() - 1];
        let mut found = 0;
        let mut bodies = String::new();
        for (key, path) in files {
            let mut rest = tests;
            while let Some(at) = rest.find(&format!("`{key}::")) {
                let after = &rest[at + key.len() + 3..];
                let end = after.find('`').expect("closing backtick");
                let name = after[..end].rsplit("::").next().expect("name");
                let src = std::fs::read_to_string(root.join(path)).expect(path);
                assert!(
                    src.contains(&format!("fn {name}(")),
                    "{key}::{name}: no such test in {path}"
                );
                bodies.push_str(&test_body(&src, name));
                found += 1;
                rest = &after[end..];
            }
        }
        if tests.contains("`fuzz/fuzz_targets/") {
            let start = tests.find("`fuzz/").expect("fuzz") + 1;
            let end = start + tests[start..].find('`').expect("closing backtick");
            assert!(
                root.join(&tests[start..end]).is_file(),
                "{}",
                &tests[start..end]
            );
            found += 1;
        }
        assert!(found > 0, "a row without a test: {line}");
        named += found;
        // The cited tests exercise the row: they mention something the row quotes (an error
        // variant, a message fragment, a flag, a field), or at least assert something.
        if !bodies.is_empty() {
            // `"--epochs", "0"` in a test reads as `--epochs 0` in the catalogue.
            let bodies = flatten_args(&bodies);
            // What the row quotes about the input or the behaviour.
            let mut quoted = quoted_tokens(cells[cells.len() - 2]);
            quoted.extend(quoted_tokens(cells[..cells.len() - 2].join(" | ").as_str()));
            if quoted.is_empty() {
                assert!(
                    bodies.contains("assert"),
                    "{line}: the cited tests assert nothing"
                );
            } else {
                // A quote matches whole, or by any two consecutive words of it (tests assert
                // fragments of messages).
                let hit = |t: &String| {
                    let words: Vec<&str> = t.split_whitespace().collect();
                    bodies.contains(t.as_str())
                        || words.windows(2).any(|w| {
                            let pair = w.join(" ");
                            pair.len() >= 8 && bodies.contains(&pair)
                        })
                };
                if quoted.iter().any(hit) {
                    checked += 1;
                } else {
                    unexercised.push(format!(
                        "{line}: none of the cited tests mentions any of {quoted:?}"
                    ));
                }
            }
        }
    }
    assert!(unexercised.is_empty(), "{}", unexercised.join("\n"));
    assert!(
        checked >= 20,
        "only {checked} rows checked against their tests' contents"
    );
    assert!(rows >= 40 && named >= rows, "{rows} rows, {named} tests");
}

/// The source of `fn name(` in `src` up to the next top-level item, plus the bodies of the
/// same file's functions it calls (one level: tests often share a helper).
fn test_body(src: &str, name: &str) -> String {
    fn body<'a>(src: &'a str, name: &str) -> Option<&'a str> {
        let start = src.find(&format!("fn {name}("))?;
        let rest = &src[start..];
        let end = rest
            .find("\n}\n")
            .or_else(|| rest.find("\n    }\n"))
            .map_or(rest.len(), |e| e + 3);
        Some(&rest[..end])
    }
    let Some(own) = body(src, name) else {
        return String::new();
    };
    let mut all = own.to_string();
    for (i, _) in own.match_indices('(') {
        let ident: String = own[..i]
            .chars()
            .rev()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        if ident.len() > 2
            && ident != name
            && let Some(b) = body(src, &ident)
        {
            all.push_str(b);
        }
    }
    all
}

/// The fragments quoted in backticks in a behaviour cell, split at `…` and `::`, that are long
/// enough to be telling (≥ 4 characters).
fn quoted_tokens(cell: &str) -> Vec<String> {
    let mut out = vec![];
    for (i, part) in cell.split('`').enumerate() {
        if i % 2 == 0 {
            continue;
        }
        for piece in part.split(['…', '(', ')']) {
            for seg in piece.split("::") {
                let t = seg.trim().trim_start_matches("error:").trim();
                if t.chars().count() >= 4 {
                    out.push(t.to_string());
                }
            }
        }
    }
    out
}

/// Joins string literals separated by `",` and whitespace into one space-separated string, so
/// that an argument list in a test matches the command line a row quotes.
fn flatten_args(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut rest = src;
    while let Some(at) = rest.find("\",") {
        out.push_str(&rest[..at]);
        let after = rest[at + 2..].trim_start();
        if let Some(next) = after.strip_prefix('"') {
            out.push(' ');
            rest = next;
        } else {
            out.push_str("\",");
            rest = &rest[at + 2..];
        }
    }
    out.push_str(rest);
    out
}
