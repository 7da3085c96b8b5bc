//! Every golden fixture (PyTorch) replayed with Burn on flex: momenta and phases identical, and
//! parameters within the bound the README states for Burn — 2.2e-7 relative to each tensor's
//! largest value (f32; Burn has no fused multiply-add, PyTorch does) and 1e-15 (f64).

use std::path::PathBuf;

use lcam_core::Trace;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/golden")
}

#[test]
fn every_golden_fixture_replays_within_tolerance() {
    let fixtures = lcam_core::load_fixtures(&golden_dir()).expect("fixtures load");
    assert!(fixtures.len() >= 6);
    let mut worst = [(0.0_f64, String::new()), (0.0_f64, String::new())];
    for f in &fixtures {
        let actual = lcam_burn::replay(&f.trace).expect("burn replay");
        let cmp = f.check(&actual).unwrap_or_else(|e| panic!("{e}"));
        let slot = usize::from(f.trace.dtype == lcam_core::DType::F64);
        let core = f.trace.replay().expect("core replay").compare(&actual);
        println!(
            "{:28} burn vs torch max rel err {:.3e} ({}), burn vs core {:.3e}",
            f.name, cmp.max_rel_err, cmp.worst_tensor, core.max_rel_err
        );
        // The README's figure for lcam-burn, asserted (the fixtures' own tolerance is looser).
        let bound = if slot == 0 { 2.2e-7 } else { 1e-15 };
        assert!(
            cmp.max_rel_err <= bound,
            "{}: {:.3e} > the README's {bound:e}",
            f.name,
            cmp.max_rel_err
        );
        if cmp.max_rel_err >= worst[slot].0 {
            worst[slot] = (cmp.max_rel_err, f.name.clone());
        }
    }
    println!("worst f32: {:?}; worst f64: {:?}", worst[0], worst[1]);
}

#[test]
fn replay_keeps_the_trace_dtype_and_names() {
    let text =
        std::fs::read_to_string(golden_dir().join("mlp_f64_nesterov.trace.json")).expect("fixture");
    let trace = Trace::from_json(&text).expect("valid trace");
    let t = lcam_burn::replay(&trace).expect("replay");
    assert_eq!(t.params.len(), trace.params.len());
    for (a, p) in t.params.iter().zip(&trace.params) {
        assert_eq!((&a.name, &a.shape), (&p.name, &p.shape));
    }
    assert_eq!(t.momenta.len(), trace.steps.len());
}

/// Parameter groups are not in lcam-burn yet: a trace with groups is refused with
/// `InvalidGroup` naming the group, never replayed as one group.
#[test]
fn a_trace_with_parameter_groups_is_refused() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/golden-groups");
    for f in lcam_core::load_fixtures(&dir).expect("fixtures load") {
        let e = lcam_burn::replay(&f.trace).expect_err("groups");
        assert!(
            matches!(&e, lcam_burn::LcamBurnError::Core(lcam_core::LcamError::InvalidGroup { group, .. })
                if *group == f.trace.groups[0].name),
            "{}: {e}",
            f.name
        );
    }
}
