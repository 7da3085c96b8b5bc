#!/usr/bin/env python3
"""PyTorch's own optimizer step on the parameter sets of lcam-cli's WRNs, for `cargo xtask bench`.

Times `torch.optim.SGD(lr=0.1, momentum=0.9, weight_decay=5e-4)` with `foreach=True` (PyTorch's
default multi-tensor path on CPU when all parameters are on one device) and `foreach=False` (the
per-tensor loop), gradients attached, buffers already allocated, 2 intra-op threads. Prints one
JSON object: {model: {"params": n, "tensors": k, "foreach_ns": median, "for_loop_ns": median}}.

Run with the cache venv: ~/.cache/lcam/torch-2.13.0/bin/python scripts/pt_sgd_step.py wrn-16-1 …
"""
import json
import sys
import time

import torch

torch.set_num_threads(2)


def wrn_shapes(name):
    """The trainable parameter shapes of lcam-cli's WRN-D-K with 10 classes (its model order)."""
    _, d, k = name.split("-")
    d, k = int(d), int(k)
    n = (d - 4) // 6
    w = [16, 16 * k, 32 * k, 64 * k]
    s = [(16, 3, 3, 3)]
    for g in range(3):
        cin, cout = w[g], w[g + 1]
        for b in range(n):
            i = cin if b == 0 else cout
            s += [(i,), (i,), (cout, i, 3, 3), (cout,), (cout,), (cout, cout, 3, 3)]
            if i != cout:
                s.append((cout, i, 1, 1))
    s += [(w[3],), (w[3],), (10, w[3]), (10,)]
    return s


def median_ns(opt, iters, min_seconds):
    for _ in range(3):
        opt.step()
    times = []
    start = time.perf_counter()
    while len(times) < iters or time.perf_counter() - start < min_seconds:
        t = time.perf_counter_ns()
        opt.step()
        times.append(time.perf_counter_ns() - t)
    times.sort()
    return times[len(times) // 2]


def main():
    models = sys.argv[1:] or ["wrn-16-1", "wrn-28-10"]
    out = {}
    for m in models:
        shapes = wrn_shapes(m)
        g = torch.Generator().manual_seed(0)
        row = {"params": sum(torch.Size(s).numel() for s in shapes), "tensors": len(shapes)}
        for key, foreach in [("foreach_ns", True), ("for_loop_ns", False)]:
            params = [torch.nn.Parameter(torch.randn(s, generator=g) * 0.1) for s in shapes]
            for p in params:
                p.grad = torch.randn(p.shape, generator=g) * 0.01
            opt = torch.optim.SGD(
                params, lr=0.1, momentum=0.9, weight_decay=5e-4, foreach=foreach
            )
            row[key] = median_ns(opt, iters=20, min_seconds=3.0)
        out[m] = row
    print(json.dumps(out))


if __name__ == "__main__":
    main()
