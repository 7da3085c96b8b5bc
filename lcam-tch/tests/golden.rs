//! Every golden fixture (PyTorch 2.13, `fixtures/golden`) replayed through lcam-tch reproduces
//! torch.optim.SGD + the demo's switching rule: within 1e-6 relative (f32) and 1e-12 (f64),
//! with identical momenta and phases — on the CPU, and on CUDA when a GPU is present.

use std::path::PathBuf;

use lcam_core::{DType, Trace, Trajectory};
use tch::Device;

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

fn check_all(device: Device) {
    let names = scenarios();
    assert!(names.len() >= 6, "found {} golden scenarios", names.len());
    let mut worst = (0.0_f64, String::new());
    let mut bit_exact = 0;
    for name in &names {
        let (trace, expected) = load(name);
        let tol = match trace.dtype {
            DType::F32 => 1e-6,
            DType::F64 => 1e-12,
        };
        let got = lcam_tch::replay(&trace, device).expect("replay");
        let c = got.compare(&expected);
        assert!(c.structure_matches, "{name}: {:?}", c.mismatch);
        assert!(
            c.passes(tol),
            "{name}: max relative error {:e} in `{}` > {tol:e}",
            c.max_rel_err,
            c.worst_tensor
        );
        // The reference (ndarray) replay and the tch replay agree too.
        let reference = trace.replay().expect("reference replay");
        assert!(
            got.compare(&reference).passes(tol),
            "{name}: tch vs lcam-core"
        );
        if got.params == expected.params {
            bit_exact += 1;
        }
        eprintln!(
            "{device:?} {name}: max relative error {:e}, bit-exact: {}",
            c.max_rel_err,
            got.params == expected.params
        );
        if c.max_rel_err >= worst.0 {
            worst = (c.max_rel_err, name.clone());
        }
    }
    eprintln!(
        "{device:?}: {bit_exact}/{} fixtures bit-exact, worst {:e} ({})",
        names.len(),
        worst.0,
        worst.1
    );
}

#[test]
fn every_golden_fixture_replays_on_cpu() {
    check_all(Device::Cpu);
}

#[test]
fn every_golden_fixture_replays_on_cuda() {
    if !tch::Cuda::is_available() {
        eprintln!("SKIPPED: no CUDA device (tch::Cuda::is_available() is false)");
        return;
    }
    check_all(Device::Cuda(0));
}
