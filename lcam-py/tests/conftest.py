"""Shared helpers of lcam's Python tests (run: `python -m pytest lcam-py/tests`)."""
import copy
import os
import pathlib

import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "fixtures" / "golden"


@pytest.fixture(autouse=True)
def _single_thread():
    # The tests are tiny; one intra-op thread keeps them deterministic and cheap.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def mlp(dtype=torch.float32, width=32, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(10, width), torch.nn.Tanh(), torch.nn.Linear(width, width),
        torch.nn.Tanh(), torch.nn.Linear(width, 3)).to(dtype)


def batches(n, dtype=torch.float32, seed=1, batch=16):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(batch, 10, generator=g, dtype=dtype),
             torch.randint(0, 3, (batch,), generator=g)) for _ in range(n)]


def loss_of(model, x, y):
    return torch.nn.functional.cross_entropy(model(x), y)


def snapshot(opt):
    """Deep copies of every parameter and momentum buffer of an optimizer."""
    params = [p.detach().clone() for g in opt.param_groups for p in g["params"]]
    bufs = [None if opt.state.get(p, {}).get("momentum_buffer") is None
            else opt.state[p]["momentum_buffer"].clone()
            for g in opt.param_groups for p in g["params"]]
    return params, bufs


def same(a, b):
    """Bit equality of two snapshots (NaNs never appear in these tests)."""
    (pa, ba), (pb, bb) = a, b
    return (all(torch.equal(x, y) for x, y in zip(pa, pb))
            and all((x is None and y is None) or (x is not None and y is not None
                                                  and torch.equal(x, y))
                    for x, y in zip(ba, bb)))


def data_dir():
    d = os.environ.get("LCAM_DATA_DIR")
    return pathlib.Path(d) if d else None


__all__ = ["GOLDEN", "ROOT", "batches", "copy", "data_dir", "loss_of", "mlp", "same", "snapshot"]
