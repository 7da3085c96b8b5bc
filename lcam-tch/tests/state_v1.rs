//! `lcam-tch-state/1` (the format with `epoch_started`, before lcam-core's driver): a file
//! written by that code (`fixtures/tch-state-v1`) loads and continues as that code continued.

use std::path::PathBuf;

use lcam_tch::{Lcam, LcamConfig};
use tch::{Kind, Tensor};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tch-state-v1")
}

fn bits(t: &Tensor) -> Vec<u32> {
    Vec::<f32>::try_from(&t.reshape([-1])).expect("f32").iter().map(|v| v.to_bits()).collect()
}

fn from_bits(b: &[u32], shape: &[i64]) -> Tensor {
    let v: Vec<f32> = b.iter().map(|&x| f32::from_bits(x)).collect();
    Tensor::from_slice(&v).reshape(shape)
}

fn grads(params: &[(String, Tensor)], k: u32) -> Vec<Option<Tensor>> {
    params.iter().map(|(_, p)| Some(p * 0.3 + f64::from(k) * 0.01)).collect()
}

#[test]
#[ignore = "writes fixtures/tch-state-v1 with the code of before the driver"]
fn write_the_v1_fixture() {
    let params = vec![
        ("w".to_string(), (Tensor::arange(6, (Kind::Float, tch::Device::Cpu)) / 10.0).reshape([2, 3])),
        ("b".to_string(), Tensor::from_slice(&[0.5f32, -0.5, 0.25])),
    ];
    let mut opt = Lcam::with_names(params.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect(), LcamConfig::cifar10()).expect("opt");
    opt.start_epoch();
    for (k, loss) in [2.0, 1.0, 1.5].into_iter().enumerate() {
        opt.step_with_grads(&grads(&params, k as u32), loss).expect("step");
    }
    opt.start_epoch();
    opt.step_with_grads(&grads(&params, 3), 1.2).expect("step");
    std::fs::create_dir_all(dir()).expect("dir");
    opt.save(dir().join("state.safetensors")).expect("save");
    let snap = |params: &[(String, Tensor)]| {
        serde_json::json!(params.iter().map(|(n, t)| (n.clone(), bits(t))).collect::<std::collections::BTreeMap<_, _>>())
    };
    let before = snap(&params);
    let r = opt.step_with_grads(&grads(&params, 4), 0.7).expect("step");
    let after = snap(&params);
    let doc = serde_json::json!({
        "note": "written by lcam-tch's state_v1 test with the code of commit f9cb0ff (lcam-tch-state/1); params as f32 bits",
        "params": before, "after_step": after, "momentum": r.momentum,
        "epoch_stats": {"epoch": opt.epoch_stats().epoch, "steps": opt.epoch_stats().steps}});
    std::fs::write(dir().join("continuation.json"), serde_json::to_string_pretty(&doc).expect("json")).expect("write");
}
