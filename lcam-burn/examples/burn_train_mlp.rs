//! Trains a small MLP on a synthetic regression task with LCAM (0.95/0.9, "sparse priority")
//! on Burn's flex CPU backend, printing each epoch's mean loss and how often the momentum was
//! switched to μ_below; then saves the optimizer and checks that a restored copy matches.
//!
//! Run: `cargo run -p lcam-burn --example burn_train_mlp`

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData, activation::relu};
use lcam_burn::{LcamBurnConfig, LcamOptimizer};

#[derive(Module, Debug)]
struct Mlp {
    hidden: Linear,
    out: Linear,
}

impl Mlp {
    fn new(device: &Device) -> Self {
        Self {
            hidden: LinearConfig::new(4, 32).init(device),
            out: LinearConfig::new(32, 1).init(device),
        }
    }

    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.out.forward(relu(self.hidden.forward(x)))
    }
}

/// `n` batches of 32 samples: y = x0·x1 − 0.5·x2 + sin(x3) + noise, from a fixed-seed LCG.
fn batches(n: usize, device: &Device) -> Vec<(Tensor<2>, Tensor<2>)> {
    let mut state = 0x853c_49e6_748f_ea9b_u64;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    };
    (0..n)
        .map(|_| {
            let (mut xs, mut ys) = (Vec::new(), Vec::new());
            for _ in 0..32 {
                let x: Vec<f32> = (0..4).map(|_| next()).collect();
                ys.push(x[0] * x[1] - 0.5 * x[2] + x[3].sin() + 0.05 * next());
                xs.extend(x);
            }
            (
                Tensor::from_data(TensorData::new(xs, [32, 4]), device),
                Tensor::from_data(TensorData::new(ys, [32, 1]), device),
            )
        })
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let device = Device::flex().autodiff();
    device.seed(42);
    let data = batches(20, &device);
    let mut model = Mlp::new(&device);
    let mut optim = LcamBurnConfig::new(0.95, 0.9)
        .with_weight_decay(5e-4)
        .init()?;
    for epoch in 0..10 {
        optim.start_epoch();
        let lr = if epoch < 6 { 0.05 } else { 0.01 };
        for (x, y) in &data {
            let loss = (model.forward(x.clone()) - y.clone())
                .powf_scalar(2.0)
                .mean();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(lr, model, grads, &loss)?;
        }
        let stats = optim.epoch_stats();
        println!(
            "epoch {:2}  lr {lr:<5} mean loss {:.5}  below-mean steps {:2}/{}  next μ {}",
            epoch + 1,
            stats.mean_loss,
            stats.steps_below,
            stats.steps,
            optim.momentum()
        );
    }

    // Save, restore, and check that one more step agrees bit for bit.
    let dir = std::env::temp_dir().join(format!("lcam-burn-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("lcam.bpk");
    optim.save(&path)?;
    let mut restored = LcamOptimizer::load(&path, &model)?;
    let (x, y) = &data[0];
    let step = |optim: &mut LcamOptimizer, model: Mlp| -> Result<Mlp, lcam_burn::LcamBurnError> {
        let loss = (model.forward(x.clone()) - y.clone())
            .powf_scalar(2.0)
            .mean();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        Ok(optim.step(0.01, model, grads, &loss)?)
    };
    let a = step(&mut optim, model.clone())?;
    let b = step(&mut restored, model)?;
    let same = a.out.weight.val().into_data() == b.out.weight.val().into_data();
    println!(
        "saved to {}; restored optimizer continues identically: {same}",
        path.display()
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
