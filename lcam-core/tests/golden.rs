//! Golden fixtures produced by PyTorch 2.13 (`scripts/golden.py`, run by `cargo xtask golden`):
//! replaying each trace with lcam-core must reproduce torch.optim.SGD + the demo's switching rule
//! within 1e-6 relative (f32) and 1e-12 relative (f64), with identical momenta and phases.

use std::path::PathBuf;

use lcam_core::{DType, Trace, Trajectory};

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/golden")
}

fn scenarios() -> Vec<String> {
    let text = std::fs::read_to_string(golden_dir().join("manifest.json")).expect("manifest.json");
    let manifest: serde_json::Value = serde_json::from_str(&text).expect("manifest parses");
    manifest["scenarios"]
        .as_array()
        .expect("scenarios list")
        .iter()
        .map(|s| s["name"].as_str().expect("name").to_string())
        .collect()
}

fn load(name: &str) -> (Trace, Trajectory) {
    let d = golden_dir();
    let trace = Trace::from_json(
        &std::fs::read_to_string(d.join(format!("{name}.trace.json"))).expect("trace file"),
    )
    .expect("trace valid");
    let expected = Trajectory::from_json(
        &std::fs::read_to_string(d.join(format!("{name}.expected.json"))).expect("expected file"),
    )
    .expect("expected valid");
    (trace, expected)
}

#[test]
fn every_golden_fixture_replays_within_tolerance() {
    let names = scenarios();
    assert!(
        names.len() >= 6,
        "at least 6 golden scenarios, found {}",
        names.len()
    );
    let mut dtypes = std::collections::BTreeSet::new();
    for name in &names {
        let (trace, expected) = load(name);
        dtypes.insert(trace.dtype.as_str());
        let tol = match trace.dtype {
            DType::F32 => 1e-6,
            DType::F64 => 1e-12,
        };
        let got = trace.replay().expect("replay");
        let c = got.compare(&expected);
        assert!(c.structure_matches, "{name}: {:?}", c.mismatch);
        assert!(
            c.passes(tol),
            "{name}: max relative error {:e} in `{}` > {tol:e}",
            c.max_rel_err,
            c.worst_tensor
        );
        eprintln!("{name}: max relative error {:e}", c.max_rel_err);
    }
    assert_eq!(dtypes.len(), 2, "fixtures cover f32 and f64");
}

#[test]
fn golden_fixtures_are_not_trivial() {
    // Each fixture must exercise both phases and move the parameters: a fixture that never
    // switches or never moves could not catch a wrong rule.
    for name in scenarios() {
        let (trace, expected) = load(&name);
        assert!(expected.phases.contains(&lcam_core::Phase::Below), "{name}");
        assert!(expected.phases.contains(&lcam_core::Phase::Above), "{name}");
        let moved = trace
            .params
            .iter()
            .zip(&expected.params)
            .any(|(a, b)| a.data != b.data);
        assert!(moved, "{name}: parameters never moved");
    }
}

#[test]
fn a_perturbed_fixture_is_rejected() {
    // The comparison itself must be able to fail.
    let (trace, mut expected) = load("quadratic_f32_cifar10");
    expected.params[0].data[0] *= 1.0 + 1e-4;
    assert!(
        !trace
            .replay()
            .expect("replay")
            .compare(&expected)
            .passes(1e-6)
    );
    let (trace, mut expected) = load("quadratic_f32_cifar10");
    expected.phases.reverse();
    assert!(
        !trace
            .replay()
            .expect("replay")
            .compare(&expected)
            .structure_matches
    );
}
