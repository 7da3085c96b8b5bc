"""torch.distributed: the loss is all-reduced (mean) before the phase decision, so every rank
switches at the same step; two gloo processes with DDP match one process on the whole batch."""
import pytest
import torch

dist = pytest.importorskip("torch.distributed")
if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

import _dist_worker as W  # noqa: E402
from lcam.torch import LCAM  # noqa: E402


def test_two_gloo_ranks_switch_together_and_match_one_process(tmp_path):
    world = 2
    torch.multiprocessing.spawn(W.worker, args=(world, str(tmp_path / "init"), str(tmp_path)),
                                nprocs=world, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(world))

    # Every rank took the same decisions and holds the same parameters, bit for bit.
    assert r0["phases"] == r1["phases"] and r0["momenta"] == r1["momenta"]
    assert r0["stats"] == r1["stats"]
    for a, b in zip(r0["params"], r1["params"]):
        assert torch.equal(a, b)
    assert "below" in r0["phases"] and "above" in r0["phases"], r0["phases"]

    # One process stepping on the concatenated batch: the same phases, parameters within 1e-6.
    torch.manual_seed(0)
    model = W.SmallConvNet()
    opt = LCAM(model.parameters(), lr=W.LR, momentum_below=0.95, momentum_above=0.9,
               weight_decay=5e-4)
    data, source = W.cifar_batches(world)
    assert source == r0["source"]
    phases, momenta = W.train(model, opt, data)
    assert phases == r0["phases"] and momenta == r0["momenta"]
    for a, b in zip(r0["params"], model.parameters()):
        b = b.detach()
        rel = ((a - b).abs().max() / b.abs().max()).item()
        assert rel <= 1e-6, f"relative difference {rel:e} ({source} data)"
    print(f"data: {source}")
