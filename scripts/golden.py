#!/usr/bin/env python3
"""Golden fixtures for lcam, produced by PyTorch itself.

Run through `cargo xtask golden` (which provisions torch==2.13.0 in a cache venv), or directly:
    python scripts/golden.py --out fixtures/golden

Every scenario trains a small model with `torch.optim.SGD` (single-tensor path, foreach=False)
while switching the momentum after each step exactly as the authors' demo does:

    loss_sum += loss.item(); k += 1; mean = loss_sum / k          # Python floats (f64)
    momentum = below if loss.item() < mean else above             # for the NEXT step
    for g in optimizer.param_groups: g["momentum"] = momentum

and the running sum is reset at every epoch start. It writes, per scenario:
  <name>.trace.json     lcam-trace/1: config, initial params, per-step epoch/lr/loss/grads
  <name>.expected.json  lcam-trajectory/1: final params, momentum used per step, phases
and manifest.json, which says which SPEC rules each scenario pins.
"""
import argparse
import json
import math
import os
import tempfile

import torch

TORCH_VERSION = "2.13.0"


def tensor_list(t):
    return [float(v) for v in t.detach().reshape(-1).tolist()]


class Scenario:
    def __init__(self, name, pins, dtype, config, epochs, steps_per_epoch, model, seed,
                 lr_at=None, drop_grad=None, losses=None, groups=None):
        self.name, self.pins, self.dtype, self.config = name, pins, dtype, config
        self.epochs, self.steps_per_epoch, self.model, self.seed = epochs, steps_per_epoch, model, seed
        self.lr_at = lr_at            # (global_step) -> lr, or None for config lr
        self.drop_grad = drop_grad    # (global_step, param_index) -> True to set p.grad = None
        self.losses = losses          # optional fixed loss values fed to the controller
        self.groups = groups          # [{"name", "params": [indices], option: value, ...}]


def make_model(kind, dtype, gen):
    """Returns (named params, loss_fn(batch_index) -> loss tensor)."""
    td = torch.float32 if dtype == "f32" else torch.float64
    if kind == "quadratic":
        # loss = ½ (p - c)ᵀ A (p - c) + noise per batch: a convex bowl with batch noise.
        a = torch.rand(4, 4, generator=gen, dtype=td)
        a = a @ a.T + 0.5 * torch.eye(4, dtype=td)
        c = torch.randn(4, generator=gen, dtype=td)
        noise = torch.randn(200, 4, generator=gen, dtype=td) * 0.3
        p = torch.randn(4, generator=gen, dtype=td).requires_grad_()

        def loss_fn(i):
            d = p - c + noise[i % 200]
            return 0.5 * d @ a @ d

        return [("p", p)], loss_fn
    if kind == "softmax":
        # Softmax regression on a synthetic 3-class problem, mini-batches of 16.
        x = torch.randn(160, 5, generator=gen, dtype=td)
        w_true = torch.randn(5, 3, generator=gen, dtype=td)
        y = (x @ w_true + 0.5 * torch.randn(160, 3, generator=gen, dtype=td)).argmax(1)
        w = (0.1 * torch.randn(5, 3, generator=gen, dtype=td)).requires_grad_()
        b = torch.zeros(3, dtype=td).requires_grad_()

        def loss_fn(i):
            j = (i * 16) % 160
            return torch.nn.functional.cross_entropy(x[j:j + 16] @ w + b, y[j:j + 16])

        return [("w", w), ("b", b)], loss_fn
    if kind == "mlp":
        # Two-layer tanh MLP regression, mini-batches of 8.
        x = torch.randn(64, 3, generator=gen, dtype=td)
        y = torch.sin(x.sum(1, keepdim=True))
        w1 = (0.5 * torch.randn(3, 6, generator=gen, dtype=td)).requires_grad_()
        b1 = torch.zeros(6, dtype=td).requires_grad_()
        w2 = (0.5 * torch.randn(6, 1, generator=gen, dtype=td)).requires_grad_()
        b2 = torch.zeros(1, dtype=td).requires_grad_()

        def loss_fn(i):
            j = (i * 8) % 64
            h = torch.tanh(x[j:j + 8] @ w1 + b1)
            return ((h @ w2 + b2 - y[j:j + 8]) ** 2).mean()

        return [("w1", w1), ("b1", b1), ("w2", w2), ("b2", b2)], loss_fn
    raise ValueError(kind)


def run(s):
    gen = torch.Generator().manual_seed(s.seed)
    named, loss_fn = make_model(s.model, s.dtype, gen)
    params = [p for _, p in named]
    cfg = s.config
    # Parameter groups as lcam writes them: listed groups with their own options, the
    # parameters no group lists in a default group with the config's options (torch's defaults).
    torch_groups = [{"params": params}]
    if s.groups:
        listed = {i for g in s.groups for i in g["params"]}
        torch_groups = [
            {"params": [params[i] for i in g["params"]],
             **{k: v for k, v in g.items() if k not in ("name", "params")}}
            for g in s.groups
        ]
        rest = [p for i, p in enumerate(params) if i not in listed]
        if rest:
            torch_groups.append({"params": rest})
    opt = torch.optim.SGD(torch_groups, lr=cfg["lr"], momentum=cfg["initial_momentum"],
                          dampening=cfg["dampening"], weight_decay=cfg["weight_decay"],
                          nesterov=cfg["nesterov"], foreach=False)
    trace = {
        "format": "lcam-trace/1",
        "dtype": s.dtype,
        "config": cfg,
        "params": [{"name": n, "shape": list(p.shape), "data": tensor_list(p)} for n, p in named],
        "steps": [],
    }
    if s.groups:
        trace["groups"] = s.groups
    momenta, phases = [], []
    step = 0
    for epoch in range(s.epochs):
        loss_sum, k = 0.0, 0  # the demo's per-epoch running mean, reset every epoch
        for _ in range(s.steps_per_epoch):
            lr = s.lr_at(step) if s.lr_at else cfg["lr"]
            if s.lr_at or not s.groups:  # a per-step lr sets every group's
                for g in opt.param_groups:
                    g["lr"] = lr
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(step)
            loss.backward()
            for i, p in enumerate(params):
                if s.drop_grad and s.drop_grad(step, i):
                    p.grad = None
            value = float(loss.item()) if s.losses is None else s.losses[step]
            rec = {"epoch": epoch, "loss": value,
                   "grads": [None if p.grad is None else tensor_list(p.grad) for p in params]}
            if s.lr_at:
                rec["lr"] = lr
            trace["steps"].append(rec)
            momenta.append(opt.param_groups[0]["momentum"])
            opt.step()
            # The demo's switching rule, verbatim in spirit.
            loss_sum += value
            k += 1
            mean = loss_sum / k
            below = value < mean
            phases.append("below" if below else "above")
            m = cfg["momentum_below"] if below else cfg["momentum_above"]
            for g in opt.param_groups:
                g["momentum"] = m
            step += 1
    expected = {
        "format": "lcam-trajectory/1",
        "params": [{"name": n, "shape": list(p.shape), "data": tensor_list(p)} for n, p in named],
        "momenta": momenta,
        "phases": phases,
    }
    return trace, expected


def config(lr=0.1, wd=5e-4, below=0.9, above=0.95, initial=0.9, damp=0.0, nesterov=False):
    return {"lr": lr, "weight_decay": wd, "momentum_below": below, "momentum_above": above,
            "initial_momentum": initial, "dampening": damp, "nesterov": nesterov}


def near_tie_losses(n):
    """Losses for which `l_k < S_k / k` and `l_k < S_{k-1} / (k-1)` disagree in f64 at least
    once (SPEC §2: the reference compares with the mean INCLUDING the current batch)."""
    import random
    rng = random.Random(7)
    while True:
        losses = [rng.choice([0.1, 0.2, 0.3, 0.7, 1.1]) for _ in range(n)]
        s, disagree = 0.0, 0
        for k, l in enumerate(losses, 1):
            prev_mean = s / (k - 1) if k > 1 else None
            s += l
            if prev_mean is not None and (l < s / k) != (l < prev_mean):
                disagree += 1
        if disagree:
            return losses


SCENARIOS = [
    Scenario("quadratic_f32_cifar10", ["§1 base update", "§1 first step b = g", "§2 phase rule",
             "§2 decision sets the next step", "§2 epoch reset"], "f32",
             config(below=0.9, above=0.95), 3, 7, "quadratic", 1),
    Scenario("softmax_f64_cifar100", ["§1 coupled weight decay", "§2 phase rule",
             "§2 last decision carries into the next epoch"], "f64",
             config(lr=0.5, wd=1e-2, below=0.93, above=0.9), 4, 10, "softmax", 2),
    Scenario("mlp_f32_dampening", ["§1 dampening (not on the first step)"], "f32",
             config(lr=0.2, wd=1e-3, below=0.95, above=0.9, damp=0.3), 3, 8, "mlp", 3),
    Scenario("mlp_f64_nesterov", ["§1 nesterov d = g + μ·b"], "f64",
             config(lr=0.1, wd=5e-4, below=0.9, above=0.95, nesterov=True), 3, 8, "mlp", 4),
    Scenario("softmax_f32_absent_grad", ["§1 absent gradient keeps buffer and value",
             "§1 buffer starts per tensor"], "f32",
             config(lr=0.3, wd=5e-4, below=0.95, above=0.9), 2, 10, "softmax", 5,
             drop_grad=lambda step, i: (i == 1 and step < 4) or (i == 0 and step in (9, 13))),
    Scenario("mlp_f64_lr_schedule", ["§3 per-step lr (exponential schedule)", "§2 phase rule"],
             "f64", config(lr=0.1, below=0.9, above=0.95), 3, 8, "mlp", 6,
             lr_at=lambda step: 0.1 if step < 8 else 0.1 * 0.97 ** (step - 7)),
    Scenario("quadratic_f64_fixed", ["§2 fixed momentum = plain SGD"], "f64",
             config(below=0.9, above=0.9), 2, 10, "quadratic", 7),
    Scenario("mlp_f32_momentum_zero", ["§1 PyTorch skips the buffer when μ = 0"], "f32",
             config(lr=0.1, wd=1e-3, below=0.0, above=0.9, initial=0.9, damp=0.1), 2, 8, "mlp", 8),
    Scenario("quadratic_f64_near_tie", ["§2 running mean includes the current batch, f64"],
             "f64", config(lr=0.05, below=0.95, above=0.9), 1, 40, "quadratic", 9,
             losses=near_tie_losses(40)),
]

# Parameter groups (fixtures/golden-groups): per-group lr, weight decay, dampening and nesterov,
# one phase controller for all groups (SPEC §2).
GROUP_SCENARIOS = [
    Scenario("mlp_f32_groups", ["param groups: per-group weight decay, lr and dampening",
             "param groups: one phase for all groups"], "f32",
             config(lr=0.1, wd=5e-4, below=0.9, above=0.95),
             3, 8, "mlp", 10,
             groups=[{"name": "no_decay", "params": [1, 3], "weight_decay": 0.0},
                     {"name": "head", "params": [2], "lr": 0.05, "dampening": 0.2}]),
    Scenario("softmax_f64_groups_nesterov", ["param groups: per-group nesterov",
             "param groups: per-step lr sets every group"], "f64",
             config(lr=0.3, wd=1e-3, below=0.95, above=0.9),
             3, 10, "softmax", 11,
             lr_at=lambda step: 0.3 if step < 10 else 0.3 * 0.95 ** (step - 9),
             groups=[{"name": "bias", "params": [1], "weight_decay": 0.0, "nesterov": True}]),
]


def write_json_atomic(path, obj):
    d = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=d, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, separators=(",", ":"))
        f.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(__file__)
    ap.add_argument("--out", default=os.path.join(here, "..", "fixtures", "golden"))
    ap.add_argument("--out-groups", default=os.path.join(here, "..", "fixtures", "golden-groups"))
    args = ap.parse_args()
    if torch.__version__.split("+")[0] != TORCH_VERSION:
        raise SystemExit(f"torch {torch.__version__} found, the fixtures pin torch {TORCH_VERSION}")
    torch.set_num_threads(1)
    write_set(args.out, SCENARIOS)
    write_set(args.out_groups, GROUP_SCENARIOS)


def write_set(out, scenarios):
    os.makedirs(out, exist_ok=True)
    manifest = {"generator": "scripts/golden.py", "torch": torch.__version__, "scenarios": []}
    for s in scenarios:
        trace, expected = run(s)
        for p in expected["params"]:
            assert all(math.isfinite(v) for v in p["data"]), s.name
        write_json_atomic(os.path.join(out, f"{s.name}.trace.json"), trace)
        write_json_atomic(os.path.join(out, f"{s.name}.expected.json"), expected)
        below = expected["phases"].count("below")
        manifest["scenarios"].append({"name": s.name, "dtype": s.dtype, "pins": s.pins,
                                      "steps": len(expected["phases"]), "steps_below": below})
        print(f"{s.name}: {len(expected['phases'])} steps, {below} below")
    write_json_atomic(os.path.join(out, "manifest.json"), manifest)


if __name__ == "__main__":
    main()
