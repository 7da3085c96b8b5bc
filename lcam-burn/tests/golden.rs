//! Every golden fixture (PyTorch) replayed with Burn on flex: f32 within 1e-6 relative, f64
//! within 1e-12, momenta and phases identical.

use std::path::PathBuf;

use lcam_core::{Trace, Trajectory};

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/golden")
}

#[test]
fn every_golden_fixture_replays_within_tolerance() {
    let dir = golden_dir();
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("manifest.json")).expect("manifest.json"),
    )
    .expect("manifest is JSON");
    let scenarios = manifest["scenarios"].as_array().expect("scenarios");
    assert!(!scenarios.is_empty());
    let mut worst = [(0.0_f64, String::new()), (0.0_f64, String::new())];
    for s in scenarios {
        let name = s["name"].as_str().expect("name");
        let read = |suffix: &str| {
            std::fs::read_to_string(dir.join(format!("{name}.{suffix}.json")))
                .unwrap_or_else(|e| panic!("{name}.{suffix}.json: {e}"))
        };
        let trace = Trace::from_json(&read("trace")).expect("valid trace");
        let expected = Trajectory::from_json(&read("expected")).expect("valid trajectory");
        let actual = lcam_burn::replay(&trace).expect("burn replay");
        let cmp = actual.compare(&expected);
        let (tol, slot) = match s["dtype"].as_str() {
            Some("f32") => (1e-6, 0),
            _ => (1e-12, 1),
        };
        let core = trace.replay().expect("core replay").compare(&actual);
        println!(
            "{name:28} burn vs torch max rel err {:.3e} ({}), burn vs core {:.3e}, structure {}",
            cmp.max_rel_err, cmp.worst_tensor, core.max_rel_err, cmp.structure_matches
        );
        assert!(cmp.passes(tol), "{name}: {cmp:?} (tolerance {tol:e})");
        if cmp.max_rel_err >= worst[slot].0 {
            worst[slot] = (cmp.max_rel_err, name.to_string());
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
