"""Bad inputs raise a clear exception naming the culprit, before anything is modified."""
import math

import pytest
import torch

import lcam
from conftest import batches, loss_of, mlp, same, snapshot
from lcam.torch import LCAM, NonFiniteLossError


def trained(steps=2, **kw):
    model = mlp()
    opt = LCAM.cifar10(model.parameters(), **kw)
    for x, y in batches(steps):
        opt.zero_grad()
        loss = loss_of(model, x, y)
        loss.backward()
        opt.step(loss)
    x, y = batches(1, seed=9)[0]
    opt.zero_grad()
    loss_of(model, x, y).backward()  # fresh gradients for the step under test
    return model, opt


def unchanged(opt, fn, exc, match):
    before = (snapshot(opt), opt.state_dict()["lcam"])
    with pytest.raises(exc, match=match):
        fn()
    after = (snapshot(opt), opt.state_dict()["lcam"])
    assert same(before[0], after[0]), "parameters or buffers changed"
    assert before[1] == after[1], "the controller changed"


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_loss_raises_and_changes_nothing(bad):
    _, opt = trained()
    assert issubclass(NonFiniteLossError, ValueError) and lcam.NonFiniteLossError is NonFiniteLossError
    unchanged(opt, lambda: opt.step(bad), NonFiniteLossError, "non-finite loss")
    unchanged(opt, lambda: opt.step(torch.tensor(bad)), NonFiniteLossError, "non-finite loss")
    opt.step(torch.tensor(1.0))  # and the optimizer still works
    assert math.isfinite(opt.epoch_stats()["mean_loss"])
    # A finite loss whose sum with the epoch's losses overflows is refused too.
    opt.step(1e308)
    unchanged(opt, lambda: opt.step(1e308), NonFiniteLossError, "non-finite")


def test_loss_is_required():
    _, opt = trained()
    unchanged(opt, lambda: opt.step(), TypeError, "loss is required")
    unchanged(opt, lambda: opt.step(torch.ones(2)), ValueError, "exactly one element")
    unchanged(opt, lambda: opt.step("1.0"), TypeError, "real number")
    # A closure is accepted, as torch's `step(closure)`.
    p = torch.nn.Parameter(torch.ones(2))
    o = LCAM([p], lr=0.1, momentum_below=0.9, momentum_above=0.9)

    def closure():
        o.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss

    assert o.step(closure).item() == 2.0
    assert o.epoch_stats()["steps"] == 1


def test_non_contiguous_parameter_names_it():
    good = torch.nn.Parameter(torch.ones(3, 4))
    bad = torch.nn.Parameter(torch.ones(4, 3).t())
    assert not bad.is_contiguous()
    opt = LCAM([{"params": [good]}, {"params": [torch.nn.Parameter(torch.ones(2)), bad]}],
               lr=0.1, momentum_below=0.9, momentum_above=0.95)
    for p in (good, bad, opt.param_groups[1]["params"][0]):
        p.grad = torch.ones_like(p)
    unchanged(opt, lambda: opt.step(1.0), ValueError,
              "parameter 1 of param group 1 is not contiguous")


def test_non_contiguous_gradient():
    p = torch.nn.Parameter(torch.ones(3, 4))
    p.grad = torch.ones(4, 3).t()
    opt = LCAM([p], lr=0.1, momentum_below=0.9, momentum_above=0.95)
    unchanged(opt, lambda: opt.step(1.0), ValueError,
              "the gradient of parameter 0 of param group 0 is not contiguous")


def test_sparse_gradient():
    emb = torch.nn.Embedding(10, 3, sparse=True)
    lin = torch.nn.Linear(3, 1)
    opt = LCAM([{"params": lin.parameters()}, {"params": emb.parameters()}], lr=0.1,
               momentum_below=0.9, momentum_above=0.95)
    lin(emb(torch.tensor([1, 2]))).sum().backward()
    assert emb.weight.grad.is_sparse
    unchanged(opt, lambda: opt.step(1.0), TypeError,
              "gradient of parameter 0 of param group 1 is sparse")


def test_mixed_dtypes_in_a_group():
    a = torch.nn.Parameter(torch.ones(2))
    b = torch.nn.Parameter(torch.ones(2, dtype=torch.float64))
    opt = LCAM([a, b], lr=0.1, momentum_below=0.9, momentum_above=0.95)
    a.grad, b.grad = torch.ones_like(a), torch.ones_like(b)
    unchanged(opt, lambda: opt.step(1.0), TypeError, "mixed dtypes in param group 0")
    # Separate groups are fine.
    a2 = torch.nn.Parameter(torch.ones(2))
    b2 = torch.nn.Parameter(torch.ones(2, dtype=torch.float64))
    opt = LCAM([{"params": [a2]}, {"params": [b2]}], lr=0.1, momentum_below=0.9,
               momentum_above=0.95)
    a2.grad, b2.grad = torch.ones_like(a2), torch.ones_like(b2)
    opt.step(1.0)
    assert torch.equal(a2.detach(), torch.full((2,), 0.9))
    assert torch.equal(b2.detach(), torch.full((2,), 0.9, dtype=torch.float64))


def test_unsupported_dtype_and_device():
    h = torch.nn.Parameter(torch.ones(2, dtype=torch.float16))
    h.grad = torch.ones_like(h)
    opt = LCAM([h], lr=0.1, momentum_below=0.9, momentum_above=0.95)
    unchanged(opt, lambda: opt.step(1.0), TypeError, "dtype torch.float16")
    a = torch.nn.Parameter(torch.ones(2))
    m = torch.nn.Parameter(torch.ones(2, device="meta"))
    a.grad = torch.ones_like(a)
    opt = LCAM([a, m], lr=0.1, momentum_below=0.9, momentum_above=0.95)
    with pytest.raises(ValueError, match="parameter 1 of param group 0 is on meta"):
        opt.step(1.0)
    assert torch.equal(a.detach(), torch.ones(2)) and not opt.state


def test_shared_memory_is_refused():
    base = torch.zeros(10)
    p1 = torch.nn.Parameter(base[:6])
    p2 = torch.nn.Parameter(base[4:])
    assert p1.data_ptr() + 4 * 4 == p2.data_ptr()
    opt = LCAM([p1, p2], lr=0.1, momentum_below=0.9, momentum_above=0.95)
    p1.grad, p2.grad = torch.ones(6), torch.ones(6)
    unchanged(opt, lambda: opt.step(1.0), ValueError, "share memory")
    q = torch.nn.Parameter(torch.ones(4))
    q.grad = q.detach()  # the gradient aliases its parameter
    opt = LCAM([q], lr=0.1, momentum_below=0.9, momentum_above=0.95)
    unchanged(opt, lambda: opt.step(1.0), ValueError,
              "gradient of parameter 0 of param group 0 shares memory")


@pytest.mark.parametrize("kw,match", [
    (dict(lr=-0.1), "lr"),
    (dict(momentum_below=1.0), "momentum_below"),
    (dict(momentum_above=-0.5), "momentum_above"),
    (dict(dampening=1.5), "dampening"),
    (dict(nesterov=True, dampening=0.1), "dampening"),
    (dict(weight_decay=float("nan")), "weight_decay"),
])
def test_invalid_hyper_parameters(kw, match):
    args = dict(lr=0.1, momentum_below=0.9, momentum_above=0.95)
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        LCAM(mlp().parameters(), **args)


def test_group_cannot_set_momenta():
    m = mlp()
    ps = list(m.parameters())
    with pytest.raises(ValueError, match="param group 1 sets `momentum_below`"):
        LCAM([{"params": ps[:2]}, {"params": ps[2:], "momentum_below": 0.5}], lr=0.1,
             momentum_below=0.9, momentum_above=0.95)


def test_invalid_lr_set_later_changes_nothing():
    _, opt = trained()
    opt.param_groups[0]["lr"] = -1.0
    unchanged(opt, lambda: opt.step(1.0), ValueError, "param group 0: .*lr")


def test_bad_buffer_in_state():
    model, opt = trained()
    p = opt.param_groups[0]["params"][0]
    opt.state[p]["momentum_buffer"] = torch.zeros(3)
    with pytest.raises(ValueError, match="momentum buffer of parameter 0 of param group 0"):
        opt.step(1.0)
