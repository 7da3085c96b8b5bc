//! The fused CUDA step against the device's memory bandwidth, and the host's share of a step.
//!
//! ```sh
//! cargo run -p lcam-cuda --example gpu_bench            # WRN-28-10's parameter set, f32
//! cargo run -p lcam-cuda --example gpu_bench -- 100     # steps to time (default 200)
//! ```
//!
//! Prints the device, its compute capability and the architecture NVRTC compiled for; then, for
//! WRN-28-10's 36.5 M parameters: the device time per LCAM step (CUDA events), the
//! bandwidth it achieves at 20 bytes per parameter (read p, g, b; write p, b), a device-to-device
//! copy's bandwidth measured in the same run (the practical HBM bound, 2 × bytes moved), their
//! ratio, and how long the host took to *queue* the steps: with no host synchronisation per
//! step, queueing takes a small fraction of the device time; the host synchronisations of a
//! `steps`-step loop, counted by [`lcam_cuda::host_reads`] (none expected: the program fails
//! otherwise), and the wall time per step with and without a blocking read after each; last, the
//! same figures as one `json: {…}` line for the GPU check. Without a CUDA driver it prints
//! `skipped: no CUDA driver (…)` and exits 0.

use std::time::Instant;

use lcam_core::LcamConfig;
use lcam_cuda::CudaLcam;
use lcam_cuda::cudarc::driver::sys::CUevent_flags;

/// WRN-D-K's trainable parameter shapes with 10 classes (lcam-cli's model order).
fn wrn_shapes(depth: usize, widen: usize) -> Vec<Vec<usize>> {
    let w = [16, 16 * widen, 32 * widen, 64 * widen];
    let mut s = vec![vec![16, 3, 3, 3]];
    for g in 0..3 {
        let (cin, cout) = (w[g], w[g + 1]);
        for b in 0..(depth - 4) / 6 {
            let i = if b == 0 { cin } else { cout };
            s.extend([vec![i], vec![i], vec![cout, i, 3, 3]]);
            s.extend([vec![cout], vec![cout], vec![cout, cout, 3, 3]]);
            if i != cout {
                s.push(vec![cout, i, 1, 1]);
            }
        }
    }
    s.extend([vec![w[3]], vec![w[3]], vec![10, w[3]], vec![10]]);
    s
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let steps: usize = match std::env::args().nth(1) {
        Some(a) => a
            .parse()
            .map_err(|_| format!("steps `{a}` is not a positive integer"))?,
        None => 200,
    };
    if let Err(e) = lcam_cuda::nvrtc::require_driver() {
        println!("skipped: no CUDA driver ({e})");
        return Ok(());
    }
    let stream = lcam_cuda::default_stream(0)?;
    let ctx = stream.context().clone();
    let (major, minor) = ctx.compute_capability()?;
    let arch = lcam_cuda::nvrtc::arch_for(major, minor).unwrap_or("unsupported");
    let device = ctx.name()?;
    let shapes = wrn_shapes(28, 10);
    let lens: Vec<usize> = shapes.iter().map(|s| s.iter().product()).collect();
    let n: usize = lens.iter().sum();
    let mut params = Vec::with_capacity(lens.len());
    let mut grads = Vec::with_capacity(lens.len());
    for (i, &len) in lens.iter().enumerate() {
        let v: Vec<f32> = (0..len)
            .map(|j| ((i * 7919 + j) as f32 * 0.37).sin() * 0.1)
            .collect();
        params.push(stream.clone_htod(&v)?);
        grads.push(stream.clone_htod(&v.iter().map(|x| x * 0.01).collect::<Vec<_>>())?);
    }
    let losses: Vec<_> = [1.0f32, 1.2, 0.9]
        .iter()
        .map(|l| stream.clone_htod(&[*l]))
        .collect::<Result<_, _>>()?;
    let mut opt = CudaLcam::<f32>::new(stream.clone(), LcamConfig::cifar10(), &shapes)?;
    opt.start_epoch()?;
    let grad_refs: Vec<_> = grads.iter().map(Some).collect();
    // Warm-up: buffers allocated, kernels loaded.
    for k in 0..5 {
        opt.step(&mut params, &grad_refs, &losses[k % 3])?;
    }
    stream.synchronize()?;

    let timing = Some(CUevent_flags::CU_EVENT_DEFAULT);
    let reads_before = lcam_cuda::host_reads();
    let start = stream.record_event(timing)?;
    let host = Instant::now();
    for k in 0..steps {
        opt.step(&mut params, &grad_refs, &losses[k % 3])?;
    }
    let queued = host.elapsed();
    // Host synchronisations the steps made: lcam-cuda counts every device-to-host read.
    let step_reads = lcam_cuda::host_reads() - reads_before;
    let end = stream.record_event(timing)?;
    end.synchronize()?;
    let step_ms = f64::from(start.elapsed_ms(&end)?) / steps as f64;

    // The same steps, each followed by a blocking read (what a per-step `loss.item()` costs):
    // the wall time per step rises to at least the device time plus the round trip.
    let reads_before = lcam_cuda::host_reads();
    let host = Instant::now();
    for k in 0..steps {
        opt.step(&mut params, &grad_refs, &losses[k % 3])?;
        opt.diagnostics()?;
    }
    let synced = host.elapsed();
    let synced_reads = lcam_cuda::host_reads() - reads_before;
    // And without: queue them all, then wait once.
    let host = Instant::now();
    for k in 0..steps {
        opt.step(&mut params, &grad_refs, &losses[k % 3])?;
    }
    stream.synchronize()?;
    let unsynced = host.elapsed();

    // The practical bound: a device-to-device copy of the same bytes, read + write.
    let src = stream.alloc_zeros::<f32>(5 * n)?;
    let mut dst = stream.alloc_zeros::<f32>(5 * n)?;
    stream.memcpy_dtod(&src, &mut dst)?;
    let c0 = stream.record_event(timing)?;
    for _ in 0..10 {
        stream.memcpy_dtod(&src, &mut dst)?;
    }
    let c1 = stream.record_event(timing)?;
    c1.synchronize()?;
    let copy_ms = f64::from(c0.elapsed_ms(&c1)?) / 10.0;
    let copy_gbs = 2.0 * 4.0 * 5.0 * n as f64 / (copy_ms * 1e6);

    let step_gbs = 20.0 * n as f64 / (step_ms * 1e6);
    let queue_us = queued.as_secs_f64() * 1e6 / steps as f64;
    let synced_ms = synced.as_secs_f64() * 1e3 / steps as f64;
    let unsynced_ms = unsynced.as_secs_f64() * 1e3 / steps as f64;
    let d = opt.diagnostics()?;
    println!("device: {device} (compute capability {major}.{minor}, NVRTC target {arch})");
    println!("WRN-28-10: {n} parameters in {} tensors, f32", lens.len());
    println!("LCAM step (device): {step_ms:.3} ms → {step_gbs:.0} GB/s at 20 B/parameter");
    println!("device-to-device copy: {copy_gbs:.0} GB/s (read + write)");
    println!("achieved / bound: {:.2}", step_gbs / copy_gbs);
    println!(
        "host time to queue {steps} steps: {:.3} ms ({queue_us:.1} µs per step; {:.1} % of the \
         device time)",
        queued.as_secs_f64() * 1e3,
        100.0 * queue_us / (step_ms * 1e3)
    );
    println!(
        "host synchronisations in {steps} steps: {step_reads} (lcam-cuda's device-to-host reads; \
         {synced_reads} when each step is followed by a diagnostics read)"
    );
    println!(
        "wall time per step: {unsynced_ms:.3} ms queued back to back, {synced_ms:.3} ms with a \
         blocking read after each"
    );
    println!("controller after the run: {d:?}");
    // One line for the GPU check (gpu-check.sh) to parse.
    println!(
        "json: {{\"device\":{device:?},\"compute_capability\":\"{major}.{minor}\",\"arch\":\"{arch}\",\
         \"parameters\":{n},\"steps\":{steps},\"step_ms\":{step_ms},\"step_gbs\":{step_gbs},\
         \"copy_gbs\":{copy_gbs},\"fraction_of_copy\":{},\"queue_us_per_step\":{queue_us},\
         \"host_syncs_per_step\":{},\"host_syncs_with_read_per_step\":{},\
         \"wall_ms_per_step_queued\":{unsynced_ms},\"wall_ms_per_step_with_read\":{synced_ms}}}",
        step_gbs / copy_gbs,
        step_reads as f64 / steps as f64,
        synced_reads as f64 / steps as f64,
    );
    if step_reads != 0 {
        return Err(
            format!("{step_reads} host synchronisations in {steps} steps (expected none)").into(),
        );
    }
    if synced_reads != steps as u64 {
        return Err(format!(
            "the read counter saw {synced_reads} reads in {steps} diagnostics calls (expected {steps})"
        )
        .into());
    }
    Ok(())
}
