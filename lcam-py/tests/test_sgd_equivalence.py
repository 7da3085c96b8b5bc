"""With equal momenta LCAM is torch.optim.SGD, bit for bit (SPEC §2: fixed momentum = SGD)."""
import copy

import pytest
import torch

from conftest import batches, loss_of, mlp
from lcam.torch import LCAM

DTYPES = [torch.float32, torch.float64]
SETTINGS = [
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.1, momentum=0.9, weight_decay=5e-4),
    dict(lr=0.05, momentum=0.95, weight_decay=1e-3, dampening=0.3),
    dict(lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True),
    dict(lr=0.2, momentum=0.0, weight_decay=1e-3),
]


def lcam_kwargs(kw):
    kw = dict(kw)
    m = kw.pop("momentum")
    return dict(kw, momentum_below=m, momentum_above=m)


def run_pair(make_sgd, make_lcam, dtype, steps=6, width=32, drop=None):
    a = mlp(dtype, width)
    b = copy.deepcopy(a)
    sgd, opt = make_sgd(a), make_lcam(b)
    for s, (x, y) in enumerate(batches(steps, dtype)):
        for m, o in ((a, sgd), (b, opt)):
            o.zero_grad(set_to_none=True)
            loss = loss_of(m, x, y)
            loss.backward()
            if drop is not None:
                for i, p in enumerate(m.parameters()):
                    if drop(s, i):
                        p.grad = None
            if o is sgd:
                o.step()
            else:
                o.step(loss)
    return a, b, sgd, opt


def assert_identical(a, b, sgd, opt):
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), n
    for p, q in zip(a.parameters(), b.parameters()):
        sb = sgd.state.get(p, {}).get("momentum_buffer")
        lb = opt.state.get(q, {}).get("momentum_buffer")
        assert (sb is None) == (lb is None)
        if sb is not None:
            assert torch.equal(sb, lb)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("kw", SETTINGS, ids=["plain", "wd", "dampening", "nesterov", "mu0"])
def test_bit_identical_to_sgd(dtype, kw):
    a, b, sgd, opt = run_pair(lambda m: torch.optim.SGD(m.parameters(), **kw),
                              lambda m: LCAM(m.parameters(), **lcam_kwargs(kw)), dtype)
    assert_identical(a, b, sgd, opt)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_two_param_groups(dtype):
    def groups(m):
        ps = list(m.parameters())
        return [{"params": ps[:2]},
                {"params": ps[2:], "lr": 0.03, "weight_decay": 1e-3, "dampening": 0.2}]

    a, b, sgd, opt = run_pair(
        lambda m: torch.optim.SGD(groups(m), lr=0.1, momentum=0.9, weight_decay=5e-4,
                                  nesterov=False),
        lambda m: LCAM(groups(m), lr=0.1, momentum_below=0.9, momentum_above=0.9,
                       weight_decay=5e-4), dtype)
    assert_identical(a, b, sgd, opt)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_two_param_groups_nesterov(dtype):
    def groups(m):
        ps = list(m.parameters())
        return [{"params": ps[:3], "nesterov": True}, {"params": ps[3:], "lr": 0.01}]

    a, b, sgd, opt = run_pair(
        lambda m: torch.optim.SGD(groups(m), lr=0.1, momentum=0.9, weight_decay=1e-4),
        lambda m: LCAM(groups(m), lr=0.1, momentum_below=0.9, momentum_above=0.9,
                       weight_decay=1e-4), dtype)
    assert_identical(a, b, sgd, opt)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_large_tensors_and_absent_gradients(dtype):
    # Width 512: tensors above 2^15 elements take lcam-core's parallel paths; gradients that
    # are absent on some steps keep value and buffer, and start their buffer late.
    drop = lambda s, i: (i == 1 and s < 3) or (i == 4 and s == 4)  # noqa: E731
    kw = dict(lr=0.1, momentum=0.9, weight_decay=5e-4, dampening=0.1)
    a, b, sgd, opt = run_pair(lambda m: torch.optim.SGD(m.parameters(), **kw),
                              lambda m: LCAM(m.parameters(), **lcam_kwargs(kw)), dtype,
                              width=512, drop=drop)
    assert_identical(a, b, sgd, opt)


def test_named_parameters_and_add_param_group():
    a = mlp()
    b = copy.deepcopy(a)
    pa, pb = list(a.named_parameters()), list(b.named_parameters())
    sgd = torch.optim.SGD(pa[:2], lr=0.1, momentum=0.9)
    sgd.add_param_group({"params": pa[2:], "lr": 0.05})
    opt = LCAM(pb[:2], lr=0.1, momentum_below=0.9, momentum_above=0.9)
    opt.add_param_group({"params": pb[2:], "lr": 0.05})
    assert opt.param_groups[0]["param_names"] == [n for n, _ in pb[:2]]
    for x, y in batches(4):
        for m, o in ((a, sgd), (b, opt)):
            o.zero_grad()
            loss = loss_of(m, x, y)
            loss.backward()
            o.step() if o is sgd else o.step(loss)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
