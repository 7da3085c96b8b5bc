#!/usr/bin/env python3
"""Generates fixtures/wrn/ from PyTorch: what lcam-cli's WRNs (tch and Burn) are checked against.

  init-wrn-16-1.json    the demo's initialisation (scripts/demo_wrn.py), per tensor: shape, and
                        either the exact constant (BN weight/bias/running stats, Linear bias) or
                        the population law (mean 0, std) with the sample mean/std of this draw.
  fwdbwd-wrn-10-1.json  one batch through the demo's WRN-10-1 in train mode: the weights, the
  fwdbwd-wrn-10-1.bin   input, labels, logits, loss, every gradient, the BN running statistics
                        after the batch (little-endian f32 blobs, offsets in the .json).

  ~/.cache/lcam/torch-2.13.0/bin/python scripts/wrn_fixtures.py --out fixtures/wrn
(`cargo xtask golden` runs this too.)
"""
import argparse
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from demo_wrn import wrn  # noqa: E402


def law(name, t, model):
    """The population law of an initialised tensor: ('const', v) or ('random', std)."""
    if name.endswith("running_mean") or name.endswith(".bias"):
        return ("const", 0.0)
    if name.endswith("running_var"):
        return ("const", 1.0)
    if name.startswith("fc."):
        bound = 1.0 / math.sqrt(t.shape[1])
        return ("random", bound / math.sqrt(3.0))  # U(−b, b)
    if t.dim() == 1:  # BN weight
        return ("const", 1.0)
    fan_out = t.shape[0] * t.shape[2] * t.shape[3]
    return ("random", math.sqrt(2.0 / fan_out))


def init_fixture(model_name, classes, seed):
    torch.manual_seed(seed)
    m = wrn(model_name, classes)
    tensors = []
    for name, t in m.state_dict().items():
        if name.endswith("num_batches_tracked"):
            continue
        kind, v = law(name, t, m)
        e = {"name": name, "shape": list(t.shape)}
        if kind == "const":
            assert bool((t == v).all()), name
            e["constant"] = v
        else:
            x = t.double().flatten()
            e["std"] = v
            e["sample_mean"] = x.mean().item()
            e["sample_std"] = x.std(unbiased=False).item()
            if t.dim() == 4:
                e["fan_in"] = t.shape[1] * t.shape[2] * t.shape[3]
                e["fan_out"] = t.shape[0] * t.shape[2] * t.shape[3]
        tensors.append(e)
    return {
        "format": "lcam-wrn-init/1",
        "generator": "scripts/wrn_fixtures.py (scripts/demo_wrn.py)",
        "torch": torch.__version__,
        "model": model_name,
        "classes": classes,
        "seed": seed,
        "tensors": tensors,
    }


def fwdbwd_fixture(model_name, classes, seed, batch):
    torch.manual_seed(seed)
    m = wrn(model_name, classes).train()
    g = torch.Generator().manual_seed(seed + 1)
    # Images as lcam feeds them: uint8 pixels, ImageNet-normalised (SPEC §3).
    pix = torch.randint(0, 256, (batch, 3, 32, 32), generator=g).float() / 255.0
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = ((pix - mean) / std).contiguous()
    y = torch.randint(0, classes, (batch,), generator=g)
    blobs, entries = [], []
    offset = 0

    def put(key, t):
        nonlocal offset
        a = bytes(t.detach().to(torch.float32).contiguous().clone().untyped_storage())  # little-endian (x86)
        entries.append({"key": key, "shape": list(t.shape), "offset": offset, "len": len(a) // 4})
        blobs.append(a)
        offset += len(a)

    before = {k: v.clone() for k, v in m.state_dict().items() if not k.endswith("num_batches_tracked")}
    for k, v in before.items():
        put("init:" + k, v)
    put("input", x)
    logits = m(x)
    loss = F.cross_entropy(logits, y)
    loss.backward()
    put("logits", logits)
    for k, p in m.named_parameters():
        put("grad:" + k, p.grad)
    for k, v in m.state_dict().items():
        if k.endswith("running_mean") or k.endswith("running_var"):
            put("after:" + k, v)
    meta = {
        "format": "lcam-wrn-fwdbwd/1",
        "generator": "scripts/wrn_fixtures.py (scripts/demo_wrn.py)",
        "torch": torch.__version__,
        "model": model_name,
        "classes": classes,
        "seed": seed,
        "labels": y.tolist(),
        "loss": loss.item(),
        "tensors": entries,
    }
    return meta, b"".join(blobs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="fixtures/wrn")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    init = init_fixture("wrn-16-1", 10, 7)
    with open(os.path.join(a.out, "init-wrn-16-1.json"), "w") as f:
        json.dump(init, f, indent=1)
    meta, blob = fwdbwd_fixture("wrn-10-1", 10, 3, 16)
    with open(os.path.join(a.out, "fwdbwd-wrn-10-1.bin"), "wb") as f:
        f.write(blob)
    with open(os.path.join(a.out, "fwdbwd-wrn-10-1.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(f"wrote {a.out}: init ({len(init['tensors'])} tensors), fwdbwd ({len(blob)} bytes)")


if __name__ == "__main__":
    main()
