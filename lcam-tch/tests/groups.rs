//! Parameter groups over a `VarStore`: picked by name or predicate, each group's options used
//! (closed form), bad groups typed errors naming the group and the parameter. PyTorch's
//! param-group fixtures replay bit-exactly through `golden.rs`.

use lcam_tch::{Error, Group, GroupBuilder, Lcam, LcamConfig};
use tch::{Device, Kind, Tensor, nn};

fn store() -> nn::VarStore {
    let vs = nn::VarStore::new(Device::Cpu);
    let _fc = nn::linear(vs.root() / "fc", 3, 2, Default::default());
    let _head = nn::linear(vs.root() / "head", 2, 1, Default::default());
    vs
}

fn invalid_group(r: Result<Lcam, Error>) -> (String, String) {
    match r {
        Err(Error::Core(lcam_core::LcamError::InvalidGroup { group, message })) => (group, message),
        other => panic!("expected InvalidGroup, got {other:?}"),
    }
}

/// With zero gradients only weight decay moves a parameter: `p ← p − η·λ·p` in a decayed group
/// (first step, b = g = λ·p), `p` unchanged in a group with λ = 0.
#[test]
fn each_group_takes_its_own_options() {
    let vs = store();
    let config = LcamConfig::cifar10()
        .with_weight_decay(0.1)
        .expect("config");
    let mut opt = Lcam::new(&vs, config)
        .expect("opt")
        .with_groups(vec![
            Group::matching("no_decay", |n| n.ends_with(".bias")).with_weight_decay(0.0),
            Group::names("slow", ["head.weight"]).with_lr(0.01),
        ])
        .expect("groups");
    assert_eq!(opt.groups().names(), ["no_decay", "slow", "default"]);
    let before: Vec<(String, Tensor)> = opt
        .names()
        .map(str::to_string)
        .zip(opt.params().map(Tensor::copy))
        .collect();
    let grads: Vec<Option<Tensor>> = opt.params().map(|p| Some(p.zeros_like())).collect();
    opt.step_with_grads(&grads, 1.0).expect("step");
    for ((name, p0), p) in before.iter().zip(opt.params()) {
        let expected = if name.ends_with(".bias") {
            p0.copy()
        } else if name == "head.weight" {
            p0 - p0 * (0.01 * 0.1)
        } else {
            p0 - p0 * (0.1 * 0.1)
        };
        assert!(p.equal(&expected), "{name}");
    }
}

#[test]
fn bad_groups_name_the_group_and_the_parameter() {
    let config = LcamConfig::cifar10();
    let (g, m) = invalid_group(
        Lcam::new(&store(), config)
            .expect("opt")
            .with_groups(vec![Group::names("x", ["fc.nope"])]),
    );
    assert_eq!(
        (g.as_str(), m.as_str()),
        ("x", "no parameter is named `fc.nope`")
    );
    let (g, m) = invalid_group(
        Lcam::new(&store(), config)
            .expect("opt")
            .with_groups(vec![Group::matching("bn", |n| n.starts_with("bn"))]),
    );
    assert_eq!(
        (g.as_str(), m.as_str()),
        ("bn", "the group has no parameters")
    );
    let (g, m) = invalid_group(Lcam::new(&store(), config).expect("opt").with_groups(vec![
        Group::matching("bias", |n| n.ends_with(".bias")),
        Group::names("fc", ["fc.weight", "fc.bias"]),
    ]));
    assert_eq!(g, "fc");
    assert!(m.contains("is already in group `bias`"), "{m}");
    let (g, m) = invalid_group(
        Lcam::new(&store(), config)
            .expect("opt")
            .with_groups(vec![Group::names("x", ["fc.bias"]).with_dampening(-0.5)]),
    );
    assert_eq!(g, "x");
    assert!(m.contains("`dampening` = -0.5"), "{m}");
}

#[test]
fn groups_are_set_before_the_first_step() {
    let vs = store();
    let mut opt = Lcam::new(&vs, LcamConfig::cifar10()).expect("opt");
    let grads: Vec<Option<Tensor>> = opt
        .params()
        .map(|p| Some(Tensor::ones_like(p).to_kind(Kind::Float)))
        .collect();
    opt.step_with_grads(&grads, 1.0).expect("step");
    let (_, m) = invalid_group(opt.with_groups(vec![Group::names("x", ["fc.bias"])]));
    assert_eq!(m, "groups are set before the first step");
}

/// Groups are saved and restored with the state file (`lcam-tch-state/2`).
#[test]
fn groups_survive_save_and_load() {
    let vs = store();
    let groups =
        || vec![Group::matching("no_decay", |n| n.ends_with(".bias")).with_weight_decay(0.0)];
    let mut opt = Lcam::new(&vs, LcamConfig::cifar10())
        .expect("opt")
        .with_groups(groups())
        .expect("g");
    let grads: Vec<Option<Tensor>> = opt.params().map(|p| Some(p.ones_like())).collect();
    opt.step_with_grads(&grads, 1.0).expect("step");
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("state.safetensors");
    opt.save(&path).expect("save");
    // Loaded into a one-group optimizer over the same parameters: the groups come from the file.
    let mut other = Lcam::new(&vs, LcamConfig::cifar10()).expect("opt");
    other.load(&path).expect("load");
    assert_eq!(other.groups(), opt.groups());
}
