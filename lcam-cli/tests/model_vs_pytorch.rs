//! lcam's tch WRN against the demo's WRN in PyTorch (fixtures/wrn, from scripts/wrn_fixtures.py
//! with torch 2.13): the initialisation (constants exactly, random tensors within sampling
//! error of the demo's law) and one training-mode batch (logits, loss, every gradient, the BN
//! running statistics). The Burn WRN's twins of these tests live in
//! `lcam-cli/src/train/burn_backend.rs` (they need its private fields).
#![cfg(feature = "tch")]

use std::collections::HashMap;
use std::path::PathBuf;

use lcam_cli::train::model::ModelSpec;
use lcam_cli::train::tch_backend::Wrn;
use lcam_cli::train::wrn_fixture::{FwdBwd, Init, check_init_tensor, max_rel_err};
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/wrn")
}

fn values(t: &Tensor) -> Vec<f32> {
    let t = t.to_kind(Kind::Float).contiguous().view(-1);
    Vec::<f32>::try_from(&t).expect("f32 values")
}

fn shape(t: &Tensor) -> Vec<usize> {
    t.size().iter().map(|&d| d as usize).collect()
}

#[test]
fn initialisation_matches_the_demo() {
    let init = Init::load(&fixtures().join("init-wrn-16-1.json")).expect("fixture");
    let spec: ModelSpec = init.model.parse().expect("model");
    tch::manual_seed(init.seed as i64);
    let vs = nn::VarStore::new(Device::Cpu);
    let _net = Wrn::new(&vs.root(), spec, init.classes, 0.0);
    let vars: HashMap<String, Tensor> = vs.variables();
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    let mut want: Vec<&String> = init.tensors.iter().map(|t| &t.name).collect();
    want.sort();
    assert_eq!(names, want, "the same tensors, by name");
    let mut checked_fan = 0;
    for t in &init.tensors {
        let v = &vars[&t.name];
        assert_eq!(shape(v), t.shape, "{}", t.name);
        check_init_tensor(t, &values(v)).unwrap_or_else(|e| panic!("{e}"));
        if t.fan_in.is_some() && t.fan_in != t.fan_out {
            checked_fan += 1;
        }
    }
    // Kaiming fan_out vs fan_in is told apart on layers where they differ.
    assert!(
        checked_fan >= 3,
        "{checked_fan} layers with fan_in != fan_out"
    );
}

#[test]
fn forward_and_backward_match_pytorch() {
    let fx = FwdBwd::load(&fixtures().join("fwdbwd-wrn-10-1.json")).expect("fixture");
    let spec: ModelSpec = fx.model.parse().expect("model");
    let vs = nn::VarStore::new(Device::Cpu);
    let net = Wrn::new(&vs.root(), spec, fx.classes, 0.0);
    let mut vars = vs.variables();
    tch::no_grad(|| {
        for (name, v) in vars.iter_mut() {
            let (shp, data) = fx.tensor(&format!("init:{name}")).expect("init tensor");
            assert_eq!(shape(v), shp, "{name}");
            let src = Tensor::from_slice(data)
                .view(shp.iter().map(|&d| d as i64).collect::<Vec<_>>().as_slice());
            v.copy_(&src);
        }
    });
    let (xs, x) = fx.tensor("input").expect("input");
    let x = Tensor::from_slice(x).view(xs.iter().map(|&d| d as i64).collect::<Vec<_>>().as_slice());
    let y = Tensor::from_slice(&fx.labels);
    let logits = net.forward_t(&x, true);
    let loss = logits.cross_entropy_for_logits(&y);
    loss.backward();
    let mut worst = 0.0f64;
    let mut report = vec![];
    let mut check = |what: String, got: &[f32], want: &[f32], tol: f64| {
        let e = max_rel_err(got, want);
        report.push(format!("{what}: {e:.2e}"));
        worst = worst.max(e);
        assert!(e <= tol, "{what}: max relative error {e:.3e} > {tol:.0e}");
    };
    check(
        "logits".into(),
        &values(&logits),
        fx.tensor("logits").expect("logits").1,
        1e-4,
    );
    let l = loss.double_value(&[]);
    let le = (l - fx.loss).abs() / fx.loss.abs();
    assert!(le <= 1e-5, "loss {l} vs PyTorch {}: {le:.2e}", fx.loss);
    let mut grads = 0;
    for (name, v) in &vars {
        if name.ends_with("running_mean") || name.ends_with("running_var") {
            let want = fx.tensor(&format!("after:{name}")).expect("after").1;
            check(format!("{name} after the batch"), &values(v), want, 1e-4);
        } else {
            let want = fx.tensor(&format!("grad:{name}")).expect("grad").1;
            check(format!("grad {name}"), &values(&v.grad()), want, 1e-4);
            grads += 1;
        }
    }
    assert_eq!(grads, fx.grad_count());
    eprintln!("worst max relative error vs PyTorch: {worst:.2e}");
}
