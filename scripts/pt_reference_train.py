#!/usr/bin/env python3
"""The second stack: one run of lcam's reproduction protocol in plain PyTorch, as the authors'
demo trains — the demo's WRN and initialisation (demo_wrn.py), torch.optim.SGD, and for LCAM the
demo's switch: after every step, `param_groups[0]["momentum"]` becomes μ_below if the batch loss
is below the epoch's running mean of batch losses (the current one included), else μ_above; the
running mean restarts every epoch. Data, augmentation (zero-pad 4 + random 32×32 crop, flip
p = 0.5), ImageNet normalisation, batches (reshuffled per epoch, last partial kept) and the lr
schedule follow SPEC §3 and lcam's `lcam train` flags.

Writes into --out the files `lcam train` writes and `cargo xtask reproduce` reads: config.json
(the same fields, `"backend": "pytorch"`) and metrics.csv (same columns), atomically, one row
per epoch. Run by `cargo xtask reproduce --pytorch` (no checkpoints: a killed run restarts).

  python scripts/pt_reference_train.py --dataset cifar10 --data ~/.cache/lcam/data \
      --model wrn-16-1 --epochs 12 --limit-train 10000 --limit-test 5000 \
      --schedule step:0.2@2,5,7 --momentum-below 0.9 --momentum-above 0.95 --seed 1 --out DIR
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from demo_wrn import wrn  # noqa: E402

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def read_records(path, rec):
    with open(path, "rb") as f:
        raw = bytearray(f.read())
    return torch.frombuffer(raw, dtype=torch.uint8).view(-1, rec)


def load(dataset, data_dir, split, n):
    """The first n images of a split: (uint8 [n,3,32,32], int64 labels)."""
    if dataset == "cifar10":
        d = os.path.join(data_dir, "cifar-10-batches-bin")
        files = [f"data_batch_{i}.bin" for i in range(1, 6)] if split == "train" else ["test_batch.bin"]
        recs = []
        for name in files:
            recs.append(read_records(os.path.join(d, name), 3073))
            if sum(len(r) for r in recs) >= n:
                break
        r = torch.cat(recs)[:n]
        return r[:, 1:].reshape(-1, 3, 32, 32).clone(), r[:, 0].long()
    d = os.path.join(data_dir, "cifar-100-binary")
    r = read_records(os.path.join(d, "train.bin" if split == "train" else "test.bin"), 3074)[:n]
    return r[:, 2:].reshape(-1, 3, 32, 32).clone(), r[:, 1].long()  # fine labels


def augment(x, g):
    b = x.shape[0]
    padded = F.pad(x, (4, 4, 4, 4))
    off = torch.randint(0, 9, (b, 2), generator=g)
    out = torch.stack([padded[i, :, dy : dy + 32, dx : dx + 32] for i, (dy, dx) in enumerate(off.tolist())])
    flip = torch.rand(b, generator=g) < 0.5
    out = torch.where(flip.view(b, 1, 1, 1), out.flip(3), out)
    return normalise(out)


def normalise(x):
    return (x.float() / 255.0 - MEAN) / STD


def parse_schedule(s):
    if s == "constant":
        return {"kind": "constant"}
    kind, rest = s.split(":")
    assert kind == "step", f"only step schedules here, got {s}"
    factor, after = rest.split("@")
    return {"kind": "step", "factor": float(factor), "after": [int(a) for a in after.split(",")]}


def lr_of_epoch(base, sched, epoch):
    if sched["kind"] == "constant":
        return base
    return base * sched["factor"] ** sum(1 for m in sched["after"] if epoch > m)


def write_atomic(path, text):
    tmp = path + ".partial"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", choices=["cifar10", "cifar100"], required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", default="wrn-16-1")
    ap.add_argument("--epochs", type=int, required=True)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--weight-decay", type=float, default=5e-4)
    ap.add_argument("--schedule", default="constant")
    ap.add_argument("--momentum-below", type=float, required=True)
    ap.add_argument("--momentum-above", type=float, required=True)
    ap.add_argument("--initial-momentum", type=float, default=0.9)
    ap.add_argument("--limit-train", type=int, default=50000)
    ap.add_argument("--limit-test", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    os.makedirs(a.out, exist_ok=True)
    classes = 10 if a.dataset == "cifar10" else 100
    sched = parse_schedule(a.schedule)
    _, depth, widen = a.model.split("-")
    fixed = a.momentum_below == a.momentum_above
    config = {
        "backend": "pytorch",
        "backend_version": f"torch {torch.__version__}",
        "device": "cpu",
        "dataset": a.dataset,
        "model": {"depth": int(depth), "widen": int(widen)},
        "dropout": 0.0,
        "epochs": a.epochs,
        "batch_size": a.batch_size,
        "optimizer": "sgd" if fixed else "lcam",
        "lcam": {
            "lr": a.lr,
            "weight_decay": a.weight_decay,
            "momentum_below": a.momentum_below,
            "momentum_above": a.momentum_above,
            "initial_momentum": a.momentum_below if fixed else a.initial_momentum,
            "dampening": 0.0,
            "nesterov": False,
        },
        "schedule": sched,
        "train_images": a.limit_train,
        "test_images": a.limit_test,
        "seed": a.seed,
        "trainer": "scripts/pt_reference_train.py",
    }
    write_atomic(os.path.join(a.out, "config.json"), json.dumps(config, indent=2) + "\n")

    x, y = load(a.dataset, a.data, "train", a.limit_train)
    xt, yt = load(a.dataset, a.data, "test", a.limit_test)
    xt = normalise(xt)
    torch.manual_seed(a.seed)
    model = wrn(a.model, classes)
    opt = torch.optim.SGD(
        model.parameters(),
        lr=a.lr,
        momentum=config["lcam"]["initial_momentum"],
        weight_decay=a.weight_decay,
    )
    g = torch.Generator().manual_seed(a.seed)
    rows = ["epoch,lr,train_loss,train_acc,test_loss,test_acc,below_share,seconds,img_per_s"]
    for epoch in range(1, a.epochs + 1):
        lr = lr_of_epoch(a.lr, sched, epoch)
        for group in opt.param_groups:
            group["lr"] = lr
        model.train()
        t0 = time.perf_counter()
        perm = torch.randperm(len(x), generator=g)
        total, steps, below, correct = 0.0, 0, 0, 0
        for i in range(0, len(x), a.batch_size):
            idx = perm[i : i + a.batch_size]
            xb, yb = augment(x[idx], g), y[idx]
            opt.zero_grad()
            out = model(xb)
            loss = F.cross_entropy(out, yb)
            loss.backward()
            opt.step()
            ell = loss.item()
            correct += (out.argmax(1) == yb).sum().item()
            # The demo's switch: running mean including this batch, strict comparison.
            total += ell
            steps += 1
            is_below = ell < total / steps
            below += int(is_below)
            mu = a.momentum_below if is_below else a.momentum_above
            for group in opt.param_groups:
                group["momentum"] = mu
        seconds = time.perf_counter() - t0
        model.eval()
        tl, tc = 0.0, 0
        with torch.no_grad():
            for i in range(0, len(xt), 500):
                out = model(xt[i : i + 500])
                tl += F.cross_entropy(out, yt[i : i + 500], reduction="sum").item()
                tc += (out.argmax(1) == yt[i : i + 500]).sum().item()
        rows.append(
            f"{epoch},{lr},{total / steps},{correct / len(x)},{tl / len(xt)},{tc / len(xt)},"
            f"{below / steps},{seconds},{len(x) / seconds}"
        )
        write_atomic(os.path.join(a.out, "metrics.csv"), "\n".join(rows) + "\n")
        print(f"epoch {epoch}: train loss {total / steps:.4f}, test acc {tc / len(xt):.4f}", flush=True)


if __name__ == "__main__":
    main()
