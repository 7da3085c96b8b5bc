"""Checkpoints (state_dict round trip mid-epoch, torch.save), lr schedulers, pickling."""
import copy
import io
import pickle

import pytest
import torch

from conftest import batches, loss_of, mlp, same, snapshot
from lcam.torch import LCAM


def train(model, opt, data, epochs, start=0, log=None, sched=None):
    """`epochs` epochs over `data`, resuming at batch `start` of the first one."""
    for e in range(epochs):
        opt.start_epoch()
        for x, y in data[start if e == 0 else 0:]:
            opt.zero_grad()
            loss = loss_of(model, x, y)
            loss.backward()
            opt.step(loss)
            if log is not None:
                log.append((opt.momentum, opt.phase))
        if sched is not None:
            sched.step()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_round_trip_mid_epoch_is_bit_identical(dtype):
    data = batches(7, dtype)
    model = mlp(dtype)
    opt = LCAM.cifar100(model.parameters(), lr=0.05)
    train(model, opt, data, 1)
    opt.start_epoch()
    for x, y in data[:3]:  # three batches into the second epoch
        opt.zero_grad()
        loss = loss_of(model, x, y)
        loss.backward()
        opt.step(loss)
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buf)
    saved = opt.state_dict()
    assert set(saved["state"][0]) == {"momentum_buffer"}
    assert saved["lcam"]["controller"]["count"] == 3
    assert saved["lcam"]["controller"]["epoch"] == 1

    log_a = []
    train(model, opt, data, 2, start=3, log=log_a)  # uninterrupted

    buf.seek(0)
    ck = torch.load(buf, weights_only=True)
    model_b = mlp(dtype, seed=123)
    model_b.load_state_dict(ck["model"])
    opt_b = LCAM.cifar100(model_b.parameters(), lr=0.05)
    opt_b.load_state_dict(ck["opt"])
    assert opt_b.epoch_stats()["steps"] == 3
    log_b = []
    train(model_b, opt_b, data, 2, start=3, log=log_b)

    assert log_a == log_b
    assert any(p == "below" for _, p in log_a) and any(p == "above" for _, p in log_a)
    assert same(snapshot(opt), snapshot(opt_b))


def test_state_dict_layout_matches_sgd():
    model = mlp()
    opt = LCAM(model.parameters(), lr=0.1, momentum_below=0.9, momentum_above=0.9)
    sgd = torch.optim.SGD(copy.deepcopy(model).parameters(), lr=0.1, momentum=0.9)
    for o in (opt, sgd):
        for p in o.param_groups[0]["params"]:
            p.grad = torch.ones_like(p)
    opt.step(1.0)
    sgd.step()
    a, b = opt.state_dict(), sgd.state_dict()
    assert a["state"].keys() == b["state"].keys()
    for k in a["state"]:
        assert a["state"][k].keys() == b["state"][k].keys() == {"momentum_buffer"}
        assert torch.equal(a["state"][k]["momentum_buffer"], b["state"][k]["momentum_buffer"])
    assert a["param_groups"][0]["params"] == b["param_groups"][0]["params"]
    assert a["param_groups"][0]["lr"] == 0.1


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_step_lr_drives_it(dtype):
    data = batches(4, dtype)
    a = mlp(dtype)
    b = copy.deepcopy(a)
    c = copy.deepcopy(a)
    sgd = torch.optim.SGD(a.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    opt = LCAM(b.parameters(), lr=0.1, momentum_below=0.9, momentum_above=0.9,
               weight_decay=5e-4)
    s1 = torch.optim.lr_scheduler.StepLR(sgd, step_size=2, gamma=0.2)
    s2 = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.2)
    for _ in range(5):
        for x, y in data:
            sgd.zero_grad()
            loss_of(a, x, y).backward()
            sgd.step()
        s1.step()
    train(b, opt, data, 5, sched=s2)
    assert opt.param_groups[0]["lr"] == sgd.param_groups[0]["lr"] == pytest.approx(0.1 * 0.2 ** 2)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)

    # Asymmetric momenta: the scheduler's lr is the one used (same as setting it by hand).
    opt_c = LCAM.cifar10(c.parameters())
    sched = torch.optim.lr_scheduler.StepLR(opt_c, step_size=2, gamma=0.2)
    d = copy.deepcopy(c)
    opt_d = LCAM.cifar10(d.parameters())
    train(c, opt_c, data, 5, sched=sched)
    for e in range(5):
        opt_d.param_groups[0]["lr"] = 0.1 * 0.2 ** (e // 2)
        train(d, opt_d, data, 1)
    assert same(snapshot(opt_c), snapshot(opt_d))


def test_presets():
    opt = LCAM.cifar10(mlp().parameters())
    assert (opt.momentum_below, opt.momentum_above, opt.initial_momentum) == (0.9, 0.95, 0.9)
    g = opt.param_groups[0]
    assert (g["lr"], g["weight_decay"], g["dampening"], g["nesterov"]) == (0.1, 5e-4, 0.0, False)
    opt = LCAM.cifar100(mlp().parameters(), lr=0.05)
    assert (opt.momentum_below, opt.momentum_above) == (0.93, 0.9)
    assert opt.param_groups[0]["lr"] == 0.05
    assert opt.momentum == 0.9 and opt.phase is None
    # initial momentum: 0.9 (the demo) unless both momenta are equal.
    assert LCAM(mlp().parameters(), lr=0.1, momentum_below=0.5, momentum_above=0.6).momentum == 0.9
    assert LCAM(mlp().parameters(), lr=0.1, momentum_below=0.5, momentum_above=0.5).momentum == 0.5


def test_epoch_stats_and_start_epoch():
    p = torch.nn.Parameter(torch.ones(3))
    opt = LCAM([p], lr=0.1, momentum_below=0.95, momentum_above=0.9)
    opt.start_epoch()  # a no-op before any loss
    for loss in (2.0, 1.0, 3.0):
        p.grad = torch.ones(3)
        opt.step(loss)
    s = opt.epoch_stats()
    assert (s["epoch"], s["steps"], s["steps_below"]) == (0, 3, 1)
    assert s["mean_loss"] == 2.0 and s["phase"] == "above" and s["momentum"] == 0.9
    opt.start_epoch()
    opt.start_epoch()  # idempotent while the epoch is empty
    s = opt.epoch_stats()
    assert (s["epoch"], s["steps"], s["phase"]) == (1, 0, "above")


def test_pickle_and_deepcopy_keep_the_controller():
    model = mlp()
    opt = LCAM.cifar10(model.parameters())
    for x, y in batches(3):
        opt.zero_grad()
        loss = loss_of(model, x, y)
        loss.backward()
        opt.step(loss)
    clone = copy.deepcopy(opt)
    assert clone.state_dict()["lcam"] == opt.state_dict()["lcam"]
    again = pickle.loads(pickle.dumps(opt))
    assert again.epoch_stats() == opt.epoch_stats()


def test_load_state_dict_rejects_garbage_and_changes_nothing():
    model = mlp()
    opt = LCAM.cifar10(model.parameters())
    for x, y in batches(2):
        opt.zero_grad()
        loss = loss_of(model, x, y)
        loss.backward()
        opt.step(loss)
    before = (snapshot(opt), opt.state_dict()["lcam"], opt.param_groups[0]["lr"])
    good = opt.state_dict()
    with pytest.raises(ValueError, match="no \"lcam\" entry"):
        opt.load_state_dict({k: v for k, v in good.items() if k != "lcam"})
    bad = copy.deepcopy(good)
    bad["lcam"]["controller"]["sum"] = float("nan")
    with pytest.raises(ValueError, match="controller.sum"):
        opt.load_state_dict(bad)
    bad = copy.deepcopy(good)
    bad["lcam"]["momentum_above"] = 1.5
    with pytest.raises(ValueError, match="momentum_above"):
        opt.load_state_dict(bad)
    bad = copy.deepcopy(good)
    bad["param_groups"][0]["lr"] = -1.0
    bad["lcam"]["controller"]["count"] = 0
    with pytest.raises(ValueError, match="param group 0"):
        opt.load_state_dict(bad)
    after = (snapshot(opt), opt.state_dict()["lcam"], opt.param_groups[0]["lr"])
    assert same(before[0], after[0]) and before[1:] == after[1:]
