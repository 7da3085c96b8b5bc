//! `lcam-tch-state/1` (the format with `epoch_started`, before lcam-core's driver): a file
//! written by that code (`fixtures/tch-state-v1`) loads and continues as that code continued;
//! a corrupt one is a clear error.

use std::path::PathBuf;

use lcam_tch::{Lcam, LcamConfig};
use tch::{Kind, Tensor};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tch-state-v1")
}

fn bits(t: &Tensor) -> Vec<u32> {
    Vec::<f32>::try_from(&t.reshape([-1]))
        .expect("f32")
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

fn from_bits(b: &[u32], shape: &[i64]) -> Tensor {
    let v: Vec<f32> = b.iter().map(|&x| f32::from_bits(x)).collect();
    Tensor::from_slice(&v).reshape(shape)
}

fn grads(params: &[(String, Tensor)], k: u32) -> Vec<Option<Tensor>> {
    params
        .iter()
        .map(|(_, p)| Some(p * 0.3 + f64::from(k) * 0.01))
        .collect()
}

/// The v1 file (written by commit 45d3c57's code with the ignored generator that commit
/// carries) loads into today's optimizer, and the next step gives the bits v1's code gave; the
/// controller (momentum, epoch statistics) continues as it did.
#[test]
fn a_v1_state_file_loads_and_continues_as_before() {
    let doc: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir().join("continuation.json")).expect("continuation.json"),
    )
    .expect("json");
    let u32s = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array()
            .expect("array")
            .iter()
            .map(|x| u32::try_from(x.as_u64().expect("u64")).expect("u32"))
            .collect()
    };
    let params = vec![
        (
            "w".to_string(),
            from_bits(&u32s(&doc["params"]["w"]), &[2, 3]),
        ),
        ("b".to_string(), from_bits(&u32s(&doc["params"]["b"]), &[3])),
    ];
    let mut opt = Lcam::with_names(
        params
            .iter()
            .map(|(n, t)| (n.clone(), t.shallow_clone()))
            .collect(),
        LcamConfig::cifar10(),
    )
    .expect("opt");
    opt.load(dir().join("state.safetensors"))
        .expect("a v1 file loads");
    let r = opt.step_with_grads(&grads(&params, 4), 0.7).expect("step");
    assert_eq!(r.momentum, doc["momentum"].as_f64().expect("momentum"));
    assert_eq!(bits(&params[0].1), u32s(&doc["after_step"]["w"]));
    assert_eq!(bits(&params[1].1), u32s(&doc["after_step"]["b"]));
    let stats = opt.epoch_stats();
    assert_eq!(
        stats.epoch,
        doc["epoch_stats"]["epoch"].as_u64().expect("epoch")
    );
    assert_eq!(
        stats.steps,
        doc["epoch_stats"]["steps"].as_u64().expect("steps")
    );

    // Saved again, it is a v2 file (no `epoch_started`), which loads as well.
    let out = tempfile::tempdir().expect("dir");
    opt.save(out.path().join("v2.safetensors")).expect("save");
    let meta = std::fs::read(out.path().join("v2.safetensors")).expect("read");
    let text = String::from_utf8_lossy(&meta);
    assert!(text.contains(lcam_tch::STATE_FORMAT) && !text.contains("epoch_started"));
    opt.load(out.path().join("v2.safetensors"))
        .expect("v2 loads");
}

/// A v1 file whose metadata is damaged is the same clear error as before: the file, the place
/// and what is wrong.
#[test]
fn a_corrupt_v1_state_file_is_a_clear_error() {
    let bytes = std::fs::read(dir().join("state.safetensors")).expect("read");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let at = text.find("\"epoch_started\":").expect("v1 metadata");
    let mut bad = bytes.clone();
    // `"epoch_started":true` → `"epoch_started":1rue`: the JSON no longer parses.
    let v = at + "\"epoch_started\":".len();
    bad[v] = b'1';
    let out = tempfile::tempdir().expect("dir");
    let path = out.path().join("bad.safetensors");
    std::fs::write(&path, &bad).expect("write");
    let params = vec![
        (
            "w".to_string(),
            Tensor::zeros([2, 3], (Kind::Float, tch::Device::Cpu)),
        ),
        (
            "b".to_string(),
            Tensor::zeros([3], (Kind::Float, tch::Device::Cpu)),
        ),
    ];
    let mut opt = Lcam::with_names(params, LcamConfig::cifar10()).expect("opt");
    let e = opt.load(&path).expect_err("corrupt").to_string();
    assert!(
        e.contains("bad.safetensors") && e.contains("__lcam_state__: cannot parse the metadata"),
        "{e}"
    );
}
