//! The optimizer's contract: save → load → continue is bit-identical to never stopping; bad
//! input (wrong-model or corrupt state files, non-scalar or non-finite losses, mismatched
//! gradients) is a typed error that changes nothing; parameters without gradients are skipped.

mod common;

use common::{batches, bit_identical, data, loss, model, named};
use lcam_tch::{Error, Lcam, LcamConfig, Phase};
use tch::{Device, Kind, Tensor, nn, nn::Module};

const HIDDEN: i64 = 32;

fn tmpdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temporary directory")
}

/// Everything observable about an optimizer, to check that a failed call changed nothing.
fn snapshot(opt: &Lcam) -> (String, Vec<Option<Tensor>>) {
    let bufs = opt
        .names()
        .map(|n| opt.buffer(n).map(Tensor::copy))
        .collect();
    (format!("{opt:?}"), bufs)
}

fn same(a: &(String, Vec<Option<Tensor>>), b: &(String, Vec<Option<Tensor>>)) -> bool {
    a.0 == b.0
        && a.1.len() == b.1.len()
        && a.1.iter().zip(&b.1).all(|(x, y)| match (x, y) {
            (None, None) => true,
            (Some(x), Some(y)) => x.equal(y),
            _ => false,
        })
}

fn params_copy(vs: &nn::VarStore) -> Vec<Tensor> {
    named(vs).iter().map(|(_, t)| t.copy()).collect()
}

fn params_equal(vs: &nn::VarStore, before: &[Tensor]) -> bool {
    named(vs).iter().zip(before).all(|((_, t), b)| t.equal(b))
}

/// Trains `epochs` epochs; after `stop_after` steps, saves the optimizer and a copy of the
/// model, and returns them with the final model.
fn save_load_continue(device: Device, kind: Kind) {
    let dir = tmpdir();
    let state = dir.path().join("opt.lcam");
    let (epochs, stop_after) = (4, 27); // mid-epoch: the running mean must survive
    let (x, y) = data(device, kind);

    // A: never stops; at step `stop_after` it saves the optimizer and snapshots the model.
    let (vs_a, net_a) = model(0, device, kind, HIDDEN);
    let (mut vs_b, net_b) = model(99, device, kind, HIDDEN);
    let mut opt = Lcam::new(&vs_a, LcamConfig::cifar10()).expect("optimizer");
    let mut step = 0;
    let mut resumed_at = None;
    for epoch in 0..epochs {
        opt.start_epoch();
        for (b, (bx, by)) in batches(&x, &y, epoch).into_iter().enumerate() {
            opt.backward_step(&loss(&net_a, &bx, &by)).expect("step");
            step += 1;
            if step == stop_after {
                opt.set_lr(0.05).expect("lr"); // the current lr is part of the state
                opt.save(&state).expect("save");
                vs_b.copy(&vs_a).expect("copy the model");
                resumed_at = Some((epoch, b + 1, opt.epoch_stats(), opt.momentum()));
            }
        }
    }
    let (r_epoch, r_batch, stats, momentum) = resumed_at.expect("saved");
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(
        files,
        vec![std::ffi::OsString::from("opt.lcam")],
        "one file, no leftovers"
    );

    // B: a fresh optimizer over the copied model, loaded from the file, finishes the run.
    let mut opt_b = Lcam::new(&vs_b, LcamConfig::cifar100()).expect("optimizer");
    opt_b.load(&state).expect("load");
    assert_eq!(opt_b.lr(), 0.05);
    assert_eq!(opt_b.epoch_stats(), stats);
    assert_eq!(opt_b.momentum(), momentum);
    for epoch in r_epoch..epochs {
        if epoch > r_epoch {
            opt_b.start_epoch();
        }
        let skip = if epoch == r_epoch { r_batch } else { 0 };
        for (bx, by) in batches(&x, &y, epoch).into_iter().skip(skip) {
            opt_b.backward_step(&loss(&net_b, &bx, &by)).expect("step");
        }
    }
    assert!(bit_identical(&vs_a, &vs_b), "continuation is bit-identical");
    assert_eq!(opt_b.epoch_stats(), opt.epoch_stats());
    assert_eq!(format!("{opt_b:?}"), format!("{opt:?}"));
    for n in opt.names() {
        let (a, b) = (
            opt.buffer(n).expect("buffer"),
            opt_b.buffer(n).expect("buffer"),
        );
        assert!(a.equal(b), "buffer `{n}`");
    }
}

#[test]
fn save_load_continue_is_bit_identical() {
    save_load_continue(Device::Cpu, Kind::Float);
    save_load_continue(Device::Cpu, Kind::Double);
}

#[test]
fn save_load_continue_on_cuda() {
    if !tch::Cuda::is_available() {
        lcam_testkit::skip(
            lcam_testkit::Need::Gpu,
            "save_load_continue_on_cuda",
            "no CUDA device (tch::Cuda::is_available() is false)",
        );
        return;
    }
    save_load_continue(Device::Cuda(0), Kind::Float);
}

/// An optimizer over `hidden`-wide MLP that took two steps (so it has buffers).
fn trained(hidden: i64, kind: Kind) -> (nn::VarStore, Lcam) {
    let (vs, net) = model(0, Device::Cpu, kind, hidden);
    let (x, y) = data(Device::Cpu, kind);
    let mut opt = Lcam::new(&vs, LcamConfig::cifar10()).expect("optimizer");
    for (bx, by) in batches(&x, &y, 0).into_iter().take(2) {
        opt.backward_step(&loss(&net, &bx, &by)).expect("step");
    }
    (vs, opt)
}

fn state_error(e: Error) -> (String, String) {
    match e {
        Error::State {
            location, message, ..
        } => (location, message),
        other => panic!("expected Error::State, got {other:?}"),
    }
}

#[test]
fn a_state_from_another_model_is_an_error_naming_the_tensor() {
    let dir = tmpdir();
    let path = dir.path().join("small.lcam");
    let (_vs, small) = trained(32, Kind::Float);
    small.save(&path).expect("save");

    // Same names, other shapes.
    let (_vs2, mut wide) = trained(64, Kind::Float);
    let before = snapshot(&wide);
    let e = wide.load(&path).expect_err("shapes differ");
    let msg = e.to_string();
    let (location, message) = state_error(e);
    assert_eq!(location, "params[0] (fc1.bias)", "{msg}");
    assert!(
        message.contains("[32]") && message.contains("[64]"),
        "{msg}"
    );
    assert!(same(&before, &snapshot(&wide)), "nothing half-loaded");

    // Same shapes, other dtype.
    let (_vs3, mut double) = trained(32, Kind::Double);
    let e = double.load(&path).expect_err("dtypes differ");
    let (location, message) = state_error(e);
    assert_eq!(location, "params[0] (fc1.bias)");
    assert!(
        message.contains("Float") && message.contains("Double"),
        "{message}"
    );

    // Other names.
    let other = Tensor::zeros([32], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let mut renamed = Lcam::with_names(
        vec![("encoder.bias".to_string(), other)],
        LcamConfig::cifar10(),
    )
    .expect("optimizer");
    let e = renamed.load(&path).expect_err("names differ");
    let msg = e.to_string();
    let (location, _) = state_error(e);
    assert_eq!(location, "params", "{msg}");
    assert!(
        msg.contains("fc1.bias") && msg.contains("encoder.bias"),
        "{msg}"
    );
}

#[test]
fn a_corrupt_or_truncated_state_file_is_an_error_and_changes_nothing() {
    let dir = tmpdir();
    let path = dir.path().join("opt.lcam");
    let (_vs, mut opt) = trained(32, Kind::Float);
    opt.save(&path).expect("save");
    let bytes = std::fs::read(&path).expect("read");
    let before = snapshot(&opt);

    // Truncated.
    let cut = dir.path().join("cut.lcam");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).expect("write");
    let (location, message) = state_error(opt.load(&cut).expect_err("truncated"));
    assert_eq!(location, "file", "{message}");

    // Not a safetensors file at all.
    let junk = dir.path().join("junk.lcam");
    std::fs::write(&junk, b"definitely not a state file").expect("write");
    state_error(opt.load(&junk).expect_err("junk"));

    // One flipped bit in a buffer's data: caught by the checksum, naming the buffer.
    let header_len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let header: serde_json::Value =
        serde_json::from_slice(&bytes[8..8 + header_len]).expect("header");
    let name = "momentum_buffer.fc2.weight";
    let start = header[name]["data_offsets"][0].as_u64().expect("offsets") as usize;
    let mut flipped = bytes.clone();
    flipped[8 + header_len + start + 5] ^= 0x10;
    let bad = dir.path().join("flipped.lcam");
    std::fs::write(&bad, &flipped).expect("write");
    let (location, message) = state_error(opt.load(&bad).expect_err("corrupt"));
    assert_eq!(location, name, "{message}");
    assert!(message.contains("checksum"), "{message}");

    // Missing file: an I/O error naming the file.
    let e = opt
        .load(dir.path().join("missing.lcam"))
        .expect_err("missing");
    assert!(matches!(e, Error::Io { .. }), "{e:?}");
    assert!(e.to_string().contains("missing.lcam"), "{e}");

    assert!(same(&before, &snapshot(&opt)), "nothing half-loaded");
    opt.load(&path).expect("the intact file still loads");
}

#[test]
fn a_non_scalar_or_non_finite_loss_is_an_error_and_changes_nothing() {
    let (vs, net) = model(0, Device::Cpu, Kind::Float, HIDDEN);
    let (x, y) = data(Device::Cpu, Kind::Float);
    let mut opt = Lcam::new(&vs, LcamConfig::cifar10()).expect("optimizer");
    let (bx, by) = batches(&x, &y, 0).remove(0);
    opt.backward_step(&loss(&net, &bx, &by))
        .expect("first step");
    let l = loss(&net, &bx, &by);
    opt.zero_grad();
    l.backward();
    let params = params_copy(&vs);
    let before = snapshot(&opt);

    let per_sample = net
        .forward(&bx)
        .log_softmax(-1, Kind::Float)
        .sum_dim_intlist([-1i64].as_slice(), false, Kind::Float);
    match opt.step(&per_sample).expect_err("non-scalar") {
        Error::NonScalarLoss { shape } => assert_eq!(shape, vec![32]),
        other => panic!("{other:?}"),
    }
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let e = opt.step(bad).expect_err("non-finite");
        assert!(
            matches!(
                e,
                Error::Core(lcam_core::LcamError::NonFiniteLoss { step: 2, .. })
            ),
            "{e:?}"
        );
    }
    let nan = Tensor::from(f32::NAN);
    assert!(opt.step(&nan).is_err());
    assert!(opt.backward_step(&(l.shallow_clone() * f64::NAN)).is_err());
    assert!(params_equal(&vs, &params), "parameters unchanged");
    assert!(same(&before, &snapshot(&opt)), "optimizer unchanged");

    // A one-element tensor of any shape is a scalar loss.
    let one = l.detach().reshape([1, 1]);
    opt.step(&one).expect("a [1, 1] loss is a scalar");
    assert_eq!(opt.epoch_stats().steps, 2);
}

#[test]
fn parameters_without_gradients_are_skipped() {
    let used = Tensor::from_slice(&[1.0f32, -2.0]).set_requires_grad(true);
    let unused = Tensor::from_slice(&[3.0f32, 4.0]).set_requires_grad(true);
    let mut opt = Lcam::from_tensors(
        vec![used.shallow_clone(), unused.shallow_clone()],
        LcamConfig::cifar10(),
    )
    .expect("optimizer");
    let l = (&used * &used).sum(Kind::Float);
    let report = opt.backward_step(&l).expect("step");
    assert_eq!((report.momentum, report.phase), (0.9, Phase::Above));
    assert_eq!(Vec::<f32>::try_from(&unused).expect("vec"), vec![3.0, 4.0]);
    assert!(
        opt.buffer("1").is_none(),
        "no buffer for a tensor never stepped"
    );
    assert!(opt.buffer("0").is_some());
    assert_ne!(Vec::<f32>::try_from(&used).expect("vec"), vec![1.0, -2.0]);

    // A tensor with a buffer and no gradient on a later step keeps value and buffer.
    let buffer = opt.buffer("0").expect("buffer").copy();
    let value = used.copy();
    let g = Tensor::from_slice(&[1.0f32, 1.0]);
    opt.step_with_grads(&[None, Some(g)], 0.5).expect("step");
    assert!(used.equal(&value) && opt.buffer("0").expect("buffer").equal(&buffer));
    assert_ne!(Vec::<f32>::try_from(&unused).expect("vec"), vec![3.0, 4.0]);
}

#[test]
fn mismatched_gradients_are_errors_naming_the_tensor() {
    let p = Tensor::zeros([2, 3], (Kind::Float, Device::Cpu));
    let mut opt = Lcam::with_names(vec![("w".into(), p)], LcamConfig::cifar10()).expect("opt");
    let cases = [
        Tensor::zeros([3, 2], (Kind::Float, Device::Cpu)),
        Tensor::zeros([2, 3], (Kind::Double, Device::Cpu)),
    ];
    for g in cases {
        let e = opt.step_with_grads(&[Some(g)], 1.0).expect_err("mismatch");
        match &e {
            Error::Tensor { tensor, .. } => assert_eq!(tensor, "w", "{e}"),
            other => panic!("{other:?}"),
        }
    }
    assert!(opt.step_with_grads(&[], 1.0).is_err(), "gradient count");
    assert_eq!(opt.epoch_stats().steps, 0);
    assert!(opt.set_lr(f64::NAN).is_err() && opt.set_lr(-1.0).is_err());
    assert_eq!(opt.lr(), 0.1);
}

#[test]
fn the_var_store_constructor_takes_the_trainable_variables_sorted_by_name() {
    let mut vs = nn::VarStore::new(Device::Cpu);
    let root = vs.root();
    let _b = root.zeros("b", &[2]);
    let _a = root.zeros("a", &[3]);
    let _stat = root.zeros_no_train("running_mean", &[2]);
    let opt = Lcam::new(&vs, LcamConfig::cifar10()).expect("optimizer");
    assert_eq!(opt.names().collect::<Vec<_>>(), vec!["a", "b"]);
    // As nn::Sgd: a frozen store's trainable variables are still the optimizer's.
    vs.freeze();
    let frozen = Lcam::new(&vs, LcamConfig::cifar10()).expect("optimizer");
    assert_eq!(frozen.names().collect::<Vec<_>>(), vec!["a", "b"]);
    assert!(
        Lcam::with_names(
            vec![
                ("x".into(), Tensor::zeros([1], (Kind::Float, Device::Cpu))),
                ("x".into(), Tensor::zeros([1], (Kind::Float, Device::Cpu)))
            ],
            LcamConfig::cifar10()
        )
        .is_err(),
        "duplicate names"
    );
}

#[test]
fn buffers_live_on_the_parameters_device_and_dtype() {
    let mut devices = vec![Device::Cpu];
    if tch::Cuda::is_available() {
        devices.push(Device::Cuda(0));
    } else {
        lcam_testkit::skip(
            lcam_testkit::Need::Gpu,
            "buffers_live_on_the_parameters_device_and_dtype (CUDA part)",
            "no CUDA device (tch::Cuda::is_available() is false)",
        );
    }
    for device in devices {
        for kind in [Kind::Float, Kind::Double] {
            let p = Tensor::ones([4], (kind, device)).set_requires_grad(true);
            let mut opt =
                Lcam::from_tensors(vec![p.shallow_clone()], LcamConfig::cifar10()).expect("opt");
            let l = (&p * &p).sum(kind);
            opt.backward_step(&l).expect("step");
            let b = opt.buffer("0").expect("buffer");
            assert_eq!((b.device(), b.kind()), (device, kind));
            // 1 − 0.1·(2 + 5e-4), rounded in the dtype like PyTorch.
            let v = p.double_value(&[0]);
            assert!((v - (1.0 - 0.1 * 2.0005)).abs() < 1e-6, "{v}");
        }
    }
}
