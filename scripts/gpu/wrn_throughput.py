#!/usr/bin/env python3
"""WRN training throughput on a GPU: ``torch.optim.SGD(fused=True)`` vs ``lcam.torch.LCAM``.

Same model (the demo's Wide ResNet from ``torch_wrn.py``, same initial weights), same batches
(random CIFAR-shaped tensors, generated once), same loop: zero_grad, forward, cross-entropy,
backward, step. Prints img/s for each optimizer, the optimizer step alone (CUDA events, over the
same gradients), and the synchronisations torch sees inside ``LCAM.step(loss)``
(``torch.cuda.set_sync_debug_mode``), then one ``json: {...}`` line for gpu-check.sh.

    PYTHONPATH=<wheel dir>:<dir of torch_wrn.py> python wrn_throughput.py [--model wrn-28-10]
"""
import argparse
import json
import time
import warnings

import torch
import torch.nn.functional as F

from lcam.torch import LCAM
from torch_wrn import WideResNet


def make(model_name, classes, device):
    depth, widen = (int(x) for x in model_name.split("-")[1:3])
    torch.manual_seed(0)
    return WideResNet(depth, widen, classes).to(device)


def optimizer(name, params):
    if name == "sgd_fused":
        return torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=5e-4, fused=True)
    return LCAM(params, lr=0.1, momentum_below=0.9, momentum_above=0.95, weight_decay=5e-4)


def train_rate(name, args, batches, device):
    model = make(args.model, 10, device)
    opt = optimizer(name, model.parameters())

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        if name == "sgd_fused":
            opt.step()
        else:
            opt.step(loss)

    for i in range(args.warmup):
        step(*batches[i % len(batches)])
    torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for i in range(args.steps):
        step(*batches[i % len(batches)])
    torch.cuda.synchronize(device)
    secs = time.perf_counter() - t0
    img_s = args.steps * args.batch / secs

    # The optimizer step alone, over the gradients of the last batch.
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    loss = torch.tensor(1.0, device=device)
    start.record()
    for _ in range(args.opt_steps):
        opt.step() if name == "sgd_fused" else opt.step(loss)
    end.record()
    end.synchronize()
    step_ms = start.elapsed_time(end) / args.opt_steps

    # Synchronisations torch sees inside the optimizer step (warn mode: one warning each).
    syncs = 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for _ in range(args.sync_steps):
                opt.step() if name == "sgd_fused" else opt.step(loss)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        syncs = sum(1 for w in caught if "synchroniz" in str(w.message).lower())
    return {"img_per_s": img_s, "optimizer_step_ms": step_ms,
            "torch_syncs_per_step": syncs / args.sync_steps}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="wrn-28-10")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=8)
    ap.add_argument("--opt-steps", type=int, default=50)
    ap.add_argument("--sync-steps", type=int, default=100)
    args = ap.parse_args()
    device = torch.device("cuda")
    g = torch.Generator(device="cpu").manual_seed(1)
    batches = [(torch.randn(args.batch, 3, 32, 32, generator=g).to(device),
                torch.randint(0, 10, (args.batch,), generator=g).to(device)) for _ in range(8)]
    result = {"model": args.model, "batch": args.batch, "steps": args.steps,
              "torch": torch.__version__, "device": torch.cuda.get_device_name(device)}
    for name in ("sgd_fused", "lcam"):
        result[name] = train_rate(name, args, batches, device)
    s, l = result["sgd_fused"], result["lcam"]
    result["lcam_over_sgd_img_per_s"] = l["img_per_s"] / s["img_per_s"]
    print(f"{args.model}, batch {args.batch}, {args.steps} steps on {result['device']} "
          f"(torch {torch.__version__})")
    for name in ("sgd_fused", "lcam"):
        r = result[name]
        print(f"{name:10}: {r['img_per_s']:8.0f} img/s; optimizer step {r['optimizer_step_ms']:.3f} ms;"
              f" torch-side synchronisations per step {r['torch_syncs_per_step']:.2f}")
    print(f"LCAM / SGD(fused=True) throughput: {result['lcam_over_sgd_img_per_s']:.3f}")
    print("json: " + json.dumps(result))


if __name__ == "__main__":
    main()
