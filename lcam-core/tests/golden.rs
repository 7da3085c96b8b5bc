//! Golden fixtures produced by PyTorch 2.13 (`scripts/golden.py`, run by `cargo xtask golden`):
//! replaying each trace with lcam-core must reproduce torch.optim.SGD + the demo's switching rule
//! within 1e-6 relative (f32) and 1e-12 relative (f64), with identical momenta and phases.

use std::path::PathBuf;

use lcam_core::{Fixture, Phase, load_fixtures};

fn fixtures() -> Vec<Fixture> {
    load_fixtures(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/golden"))
        .expect("fixtures load")
}

#[test]
fn every_golden_fixture_replays_within_tolerance() {
    let all = fixtures();
    assert!(
        all.len() >= 6,
        "at least 6 golden scenarios, found {}",
        all.len()
    );
    let mut dtypes = std::collections::BTreeSet::new();
    for f in &all {
        dtypes.insert(f.trace.dtype.as_str());
        let got = f.trace.replay().expect("replay");
        let c = f.check(&got).unwrap_or_else(|e| panic!("{e}"));
        eprintln!(
            "{}: max relative error {:e}, bit-exact {}",
            f.name,
            c.max_rel_err,
            got.params == f.expected.params
        );
    }
    assert_eq!(dtypes.len(), 2, "fixtures cover f32 and f64");
}

#[test]
fn golden_fixtures_are_not_trivial() {
    // Each fixture must exercise both phases and move the parameters: a fixture that never
    // switches or never moves could not catch a wrong rule.
    for f in fixtures() {
        assert!(f.expected.phases.contains(&Phase::Below), "{}", f.name);
        assert!(f.expected.phases.contains(&Phase::Above), "{}", f.name);
        let moved = f
            .trace
            .params
            .iter()
            .zip(&f.expected.params)
            .any(|(a, b)| a.data != b.data);
        assert!(moved, "{}: parameters never moved", f.name);
    }
}

#[test]
fn a_perturbed_fixture_is_rejected() {
    // The comparison itself must be able to fail.
    let all = fixtures();
    let f = all
        .iter()
        .find(|f| f.name == "quadratic_f32_cifar10")
        .expect("fixture");
    let got = f.trace.replay().expect("replay");
    let mut bad = f.clone();
    bad.expected.params[0].data[0] *= 1.0 + 1e-4;
    assert!(bad.check(&got).is_err());
    let mut bad = f.clone();
    bad.expected.phases.reverse();
    assert!(
        bad.check(&got)
            .expect_err("phases")
            .contains("phases differ")
    );
}
