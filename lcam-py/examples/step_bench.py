#!/usr/bin/env python3
"""The optimizer step alone on WRN-28-10's parameter shapes (36.5 M parameters, CPU, f32):
`lcam.torch.LCAM` (0.9/0.95, alternating losses so both phases occur) against
`torch.optim.SGD(foreach=True)` at momentum 0.9; median of --steps timed steps after warm-up.

  python lcam-py/examples/step_bench.py --threads 2
"""
import argparse
import json
import statistics
import sys
import os
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
from demo_wrn import wrn  # noqa: E402

from lcam.torch import LCAM  # noqa: E402


def bench(make, with_loss, steps):
    torch.manual_seed(0)
    params = [p.detach().clone().requires_grad_(True) for p in wrn("wrn-28-10", 10).parameters()]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    opt = make(params)
    times = []
    for k in range(steps + 3):
        t0 = time.perf_counter()
        if with_loss:
            opt.step(1.0 + 0.1 * (k % 3))
        else:
            opt.step()
        if k >= 3:
            times.append(time.perf_counter() - t0)
    return statistics.median(times), sum(p.numel() for p in params)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=15)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    sgd, n = bench(lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=5e-4,
                                              foreach=True), False, a.steps)
    lcam, _ = bench(lambda ps: LCAM(ps, lr=0.1, momentum_below=0.9, momentum_above=0.95,
                                    weight_decay=5e-4), True, a.steps)
    print(json.dumps({"params": n, "sgd_foreach_ms": 1e3 * sgd, "lcam_ms": 1e3 * lcam,
                      "lcam_over_sgd": lcam / sgd}))


if __name__ == "__main__":
    main()
