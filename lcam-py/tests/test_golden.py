"""Every golden fixture (fixtures/golden: PyTorch's own trajectories, scripts/golden.py) replayed
through lcam.torch.LCAM, compared bit for bit: momenta, phases and final parameters (lcam-core
is bit-exact on all of them)."""
import json

import pytest
import torch

from conftest import GOLDEN
from lcam.torch import LCAM

MANIFEST = json.loads((GOLDEN / "manifest.json").read_text())
NAMES = [s["name"] for s in MANIFEST["scenarios"]]


def replay(trace):
    """The trace format's rules (lcam-core's `Trace::resolved_steps`): a changed epoch starts a
    new epoch before its step; `lr` defaults to the config's; `null` = no gradient."""
    dtype = {"f32": torch.float32, "f64": torch.float64}[trace["dtype"]]
    cfg = trace["config"]
    params = [torch.tensor(p["data"], dtype=torch.float64).to(dtype).reshape(p["shape"])
              .requires_grad_() for p in trace["params"]]
    opt = LCAM(params, lr=cfg["lr"], momentum_below=cfg["momentum_below"],
               momentum_above=cfg["momentum_above"], weight_decay=cfg["weight_decay"],
               dampening=cfg["dampening"], nesterov=cfg["nesterov"],
               initial_momentum=cfg["initial_momentum"])
    momenta, phases, prev = [], [], None
    for step in trace["steps"]:
        if prev is not None and step["epoch"] != prev:
            opt.start_epoch()
        prev = step["epoch"]
        opt.param_groups[0]["lr"] = step.get("lr", cfg["lr"])
        for p, g, t in zip(params, step["grads"], trace["params"]):
            p.grad = None if g is None else (
                torch.tensor(g, dtype=torch.float64).to(dtype).reshape(t["shape"]))
        momenta.append(opt.momentum)
        opt.step(step["loss"])
        phases.append(opt.phase)
    return params, momenta, phases


def test_manifest_lists_fixtures():
    assert len(NAMES) >= 9


@pytest.mark.parametrize("name", NAMES)
def test_golden_bit_exact(name):
    trace = json.loads((GOLDEN / f"{name}.trace.json").read_text())
    expected = json.loads((GOLDEN / f"{name}.expected.json").read_text())
    params, momenta, phases = replay(trace)
    assert momenta == expected["momenta"]
    assert phases == expected["phases"]
    for p, e in zip(params, expected["params"]):
        want = torch.tensor(e["data"], dtype=torch.float64).reshape(e["shape"])
        got = p.detach().to(torch.float64)  # f32 → f64 is exact
        assert torch.equal(got, want), (
            f"{name}: `{e['name']}` differs, max |Δ| = {(got - want).abs().max().item():e}")
