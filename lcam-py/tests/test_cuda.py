"""The CUDA path: lcam-cuda's fused kernels on torch's current stream (wheel built with
`--features cuda`). Skipped, saying why, without a GPU or without CUDA support in the build."""
import copy

import pytest
import torch

import lcam
from conftest import batches, loss_of, mlp, snapshot
from lcam.torch import LCAM, NonFiniteLossError

if not torch.cuda.is_available():
    pytest.skip("no CUDA GPU: the CUDA tests of lcam.torch.LCAM are skipped",
                allow_module_level=True)
if not lcam.HAS_CUDA:
    pytest.skip("this lcam wheel was built without `--features cuda`: CUDA tests skipped",
                allow_module_level=True)

DEV = torch.device("cuda", 0)


def run(model, opt, data, epochs=2):
    log = []
    for _ in range(epochs):
        opt.start_epoch()
        for x, y in data:
            x, y = x.to(model[0].weight.device), y.to(model[0].weight.device)
            opt.zero_grad()
            loss = loss_of(model, x, y)
            loss.backward()
            opt.step(loss)
        log.append(opt.epoch_stats())
    return log


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-6), (torch.float64, 1e-12)],
                         ids=["f32", "f64"])
def test_cuda_matches_cpu(dtype, tol):
    data = batches(5, dtype)
    cpu = mlp(dtype)
    gpu = copy.deepcopy(cpu).to(DEV)
    o_cpu = LCAM.cifar10(cpu.parameters())
    o_gpu = LCAM.cifar10(gpu.parameters())
    s_cpu, s_gpu = run(cpu, o_cpu, data), run(gpu, o_gpu, data)
    for a, b in zip(s_cpu, s_gpu):
        assert (a["steps"], a["steps_below"], a["phase"]) == (
            b["steps"], b["steps_below"], b["phase"])
        assert b["rejected_losses"] == 0
    for p, q in zip(cpu.parameters(), gpu.parameters()):
        q = q.detach().cpu()
        assert ((p.detach() - q).abs().max() / p.detach().abs().max()).item() <= tol


def test_cuda_state_dict_round_trip():
    data = batches(4)
    model = mlp().to(DEV)
    opt = LCAM.cifar100(model.parameters())
    run(model, opt, data, 1)
    sd = copy.deepcopy(opt.state_dict())
    assert sd["state"][0]["momentum_buffer"].device.type == "cuda"
    twin = copy.deepcopy(model)
    opt_b = LCAM.cifar100(twin.parameters())
    opt_b.load_state_dict(sd)
    run(model, opt, data, 1)
    run(twin, opt_b, data, 1)
    (pa, ba), (pb, bb) = snapshot(opt), snapshot(opt_b)
    assert all(torch.equal(x, y) for x, y in zip(pa, pb))
    assert opt.state_dict()["lcam"] == opt_b.state_dict()["lcam"]


def test_cuda_non_finite_loss():
    model = mlp().to(DEV)
    opt = LCAM.cifar10(model.parameters())
    run(model, opt, batches(2), 1)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(NonFiniteLossError):
        opt.step(float("nan"))  # a host float is checked on the host
    opt.step(torch.tensor(float("inf"), device=DEV))  # a device loss: skipped on the device
    assert opt.epoch_stats()["rejected_losses"] == 1
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
