//! Trains a small MLP on synthetic data with LCAM and prints, per epoch, the mean training loss
//! and the fraction of steps whose loss was below the running mean (the "Below" phase).
//!
//! ```text
//! cargo run -p lcam-tch --example tch_train_mlp [-- EPOCHS]
//! ```
//! Runs on the first CUDA device when there is one, else on the CPU. Also saves the optimizer
//! state to a temporary file and loads it back, as a checkpointing loop would.

use lcam_tch::{Lcam, LcamConfig};
use tch::{Device, Kind, Tensor, nn, nn::Module};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let epochs: i64 = match std::env::args().nth(1) {
        Some(a) => a.parse()?,
        None => 10,
    };
    let device = Device::cuda_if_available();
    tch::manual_seed(0);

    // 4096 samples, 20 features, 5 classes labelled by a noisy random linear teacher.
    let (n, batch) = (4096_i64, 128_i64);
    let x = Tensor::randn([n, 20], (Kind::Float, device));
    let teacher = Tensor::randn([20, 5], (Kind::Float, device));
    let y =
        (x.matmul(&teacher) + Tensor::randn([n, 5], (Kind::Float, device)) * 0.3).argmax(-1, false);

    let vs = nn::VarStore::new(device);
    let root = vs.root();
    let net = nn::seq()
        .add(nn::linear(&root / "fc1", 20, 64, Default::default()))
        .add_fn(|t| t.relu())
        .add(nn::linear(&root / "fc2", 64, 5, Default::default()));

    // The paper's CIFAR-10 setting: lr 0.1, weight decay 5e-4, 0.9 below / 0.95 above.
    let mut opt = Lcam::new(&vs, LcamConfig::cifar10())?;
    println!(
        "device {device:?}, {} parameter tensors",
        opt.names().count()
    );
    println!("epoch  lr      mean loss  below");
    for epoch in 0..epochs {
        if epoch == epochs * 2 / 3 {
            opt.set_lr(opt.lr() * 0.2)?; // a step schedule
        }
        opt.start_epoch();
        let perm = Tensor::randperm(n, (Kind::Int64, device));
        for b in 0..n / batch {
            let idx = perm.narrow(0, b * batch, batch);
            let logits = net.forward(&x.index_select(0, &idx));
            let loss = logits.cross_entropy_for_logits(&y.index_select(0, &idx));
            opt.backward_step(&loss)?;
        }
        let s = opt.epoch_stats();
        println!(
            "{:>5}  {:<6.4}  {:>9.5}  {:>4.0}%",
            epoch + 1,
            opt.lr(),
            s.mean_loss,
            100.0 * s.fraction_below()
        );
    }

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("lcam-state.safetensors");
    opt.save(&path)?;
    opt.load(&path)?;
    println!(
        "saved and restored the optimizer state ({} bytes); next momentum {}",
        std::fs::metadata(&path)?.len(),
        opt.momentum()
    );
    Ok(())
}
