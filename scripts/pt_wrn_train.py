#!/usr/bin/env python3
"""PyTorch reference for `cargo xtask bench --train`: trains lcam-cli's WRN (the model of
pt_wrn_throughput.py) on real CIFAR-10 with the demo's augmentation (zero-pad 4 + random 32×32
crop, horizontal flip p = 0.5, ImageNet normalisation), batch 128, SGD lr 0.1 momentum 0.9
weight decay 5e-4, and prints {"img_per_s": …} over all training steps of the epoch, the first
included — measured as `lcam train` measures the figure it writes to metrics.csv, augmentation
included.

  ~/.cache/lcam/torch-2.13.0/bin/python scripts/pt_wrn_train.py --model wrn-16-1 \
      --data ~/.cache/lcam/data --images 3840 --threads 2
"""
import argparse
import json
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

from pt_wrn_throughput import W
# The demo's augmentation, the same function the second-stack trainer uses.
from pt_reference_train import augment  # noqa: E402


def load_cifar10(data_dir, n):
    d = os.path.join(data_dir, "cifar-10-batches-bin")
    recs = []
    for i in range(1, 6):
        with open(os.path.join(d, f"data_batch_{i}.bin"), "rb") as f:
            recs.append(np.frombuffer(f.read(), dtype=np.uint8).reshape(-1, 3073))
        if sum(len(r) for r in recs) >= n:
            break
    r = np.concatenate(recs)[:n]
    return torch.from_numpy(r[:, 1:].reshape(-1, 3, 32, 32).copy()), torch.from_numpy(
        r[:, 0].astype(np.int64)
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="wrn-16-1")
    ap.add_argument("--data", required=True)
    ap.add_argument("--images", type=int, default=3840)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    _, d, k = a.model.split("-")
    m = W(int(d), int(k), 10)
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    x, y = load_cifar10(a.data, a.images)
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(x), generator=g)
    warm, seen, t0 = 0, 0, None
    for s, i in enumerate(range(0, len(x), 128)):
        if s == warm:
            t0 = time.perf_counter()
        idx = perm[i : i + 128]
        xb, yb = augment(x[idx], g), y[idx]
        opt.zero_grad()
        loss = F.cross_entropy(m(xb), yb)
        loss.backward()
        opt.step()
        loss.item()
        if t0 is not None:
            seen += len(idx)
    print(json.dumps({"model": a.model, "img_per_s": seen / (time.perf_counter() - t0)}))


if __name__ == "__main__":
    main()
