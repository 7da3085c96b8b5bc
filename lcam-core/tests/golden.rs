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
        eprintln!("{}: max relative error {:e}", f.name, c.max_rel_err);
    }
    assert_eq!(dtypes.len(), 2, "fixtures cover f32 and f64");
}

/// README: lcam-core is "bit-exact vs PyTorch on every golden fixture" — asserted per element.
#[test]
fn every_golden_fixture_replays_bit_exactly() {
    for f in fixtures() {
        let got = f.trace.replay().expect("replay");
        f.check_bit_exact(&got).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn a_one_ulp_difference_is_not_bit_exact() {
    let all = fixtures();
    for name in ["quadratic_f32_cifar10", "softmax_f64_cifar100"] {
        let f = all.iter().find(|f| f.name == name).expect("fixture");
        let got = f.trace.replay().expect("replay");
        let mut bad = got.clone();
        let v = bad.params[0].data[0];
        // One ulp of the dtype (f32 values are stored widened).
        bad.params[0].data[0] = if name.contains("f32") {
            f64::from(f32::from_bits((v as f32).to_bits() + 1))
        } else {
            f64::from_bits(v.to_bits() + 1)
        };
        let e = f.check_bit_exact(&bad).expect_err("one ulp off");
        assert!(e.contains("not bit-exact"), "{e}");
        // ... which the tolerance check accepts.
        assert!(f.check(&bad).is_ok());
    }
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
