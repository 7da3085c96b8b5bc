//! Every golden fixture (PyTorch 2.13, `fixtures/golden`) replayed through lcam-tch reproduces
//! torch.optim.SGD + the demo's switching rule: within 1e-6 relative (f32) and 1e-12 (f64),
//! with identical momenta and phases — on the CPU, and on CUDA when a GPU is present.

use std::path::PathBuf;

use lcam_core::load_fixtures;
use tch::Device;

fn check_all(device: Device) {
    let fixtures =
        load_fixtures(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/golden"))
            .expect("fixtures load");
    assert!(
        fixtures.len() >= 6,
        "found {} golden scenarios",
        fixtures.len()
    );
    let mut worst = (0.0_f64, String::new());
    let mut bit_exact = 0;
    for f in &fixtures {
        let (name, trace, expected) = (&f.name, &f.trace, &f.expected);
        let tol = trace.dtype.tolerance();
        let got = lcam_tch::replay(trace, device).expect("replay");
        let c = f.check(&got).unwrap_or_else(|e| panic!("{e}"));
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
        fixtures.len(),
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
