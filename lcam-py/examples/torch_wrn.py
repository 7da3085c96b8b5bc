#!/usr/bin/env python3
"""The authors' demo in plain PyTorch with ``lcam.torch.LCAM`` swapped in for ``torch.optim.SGD``.

The demo's Wide ResNet (pre-activation basic blocks, no dropout, its initialisation), CIFAR-10/100
from the binary distribution (read without numpy), the demo's augmentation (zero-pad 4 + random
32×32 crop, horizontal flip p = 0.5) and ImageNet normalisation, batches of 128 reshuffled every
epoch (last partial batch kept), lr 0.1 × 0.2 after epochs 31, 61 and 91 (SPEC §3) through
``torch.optim.lr_scheduler.MultiStepLR``, and a checkpoint (model + optimizer ``state_dict``)
after every epoch that ``--resume`` continues from.

Where the demo writes ``param_groups[0]["momentum"] = …`` after each step by hand, this example
only passes the batch loss: ``opt.step(loss)``.

    python lcam-py/examples/torch_wrn.py --dataset cifar10 --data ~/.cache/lcam/data \\
        --model wrn-16-1 --epochs 3 --limit-train 5000          # a quick look
    python lcam-py/examples/torch_wrn.py --dataset cifar100 --data ~/.cache/lcam/data \\
        --model wrn-28-10 --epochs 150 --device cuda             # the paper's run (0.93/0.9)
"""
import argparse
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from lcam.torch import LCAM

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


# ------------------------------------------------------------------- the demo's Wide ResNet
class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = None if cin == cout else nn.Conv2d(cin, cout, 1, stride, 0, bias=False)

    def forward(self, x):
        o = F.relu(self.bn1(x))
        # Pre-activation: a projection shortcut sees the activated input, identity the raw one.
        short = x if self.shortcut is None else self.shortcut(o)
        y = F.relu(self.bn2(self.conv1(o)))
        return self.conv2(y) + short


class WideResNet(nn.Module):
    def __init__(self, depth, widen, classes):
        super().__init__()
        assert (depth - 4) % 6 == 0, "WRN depth must be 6n + 4"
        n = (depth - 4) // 6
        w = [16, 16 * widen, 32 * widen, 64 * widen]
        self.conv = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.groups = nn.Sequential(*[
            nn.Sequential(*[Block(w[g] if b == 0 else w[g + 1], w[g + 1],
                                  (1 if g == 0 else 2) if b == 0 else 1) for b in range(n)])
            for g in range(3)])
        self.bn = nn.BatchNorm2d(w[3])
        self.fc = nn.Linear(w[3], classes)
        for m in self.modules():  # the demo's initialisation loop
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.data.fill_(1)
                m.bias.data.zero_()
            elif isinstance(m, nn.Linear):
                m.bias.data.zero_()

    def forward(self, x):
        h = F.relu(self.bn(self.groups(self.conv(x))))
        return self.fc(F.adaptive_avg_pool2d(h, 1).flatten(1))


# ------------------------------------------------------------------------------- the data
def read_records(path, rec):
    with open(path, "rb") as f:
        raw = bytearray(f.read())
    return torch.frombuffer(raw, dtype=torch.uint8).view(-1, rec)


def load(dataset, data_dir, train, n=None):
    """(uint8 [N,3,32,32], int64 labels) of a split, the first `n` images if given."""
    if dataset == "cifar10":
        d = os.path.join(data_dir, "cifar-10-batches-bin")
        names = [f"data_batch_{i}.bin" for i in range(1, 6)] if train else ["test_batch.bin"]
        recs = []
        for name in names:
            recs.append(read_records(os.path.join(d, name), 3073))
            if n is not None and sum(len(r) for r in recs) >= n:
                break
        r = torch.cat(recs)[:n]
        return r[:, 1:].reshape(-1, 3, 32, 32).clone(), r[:, 0].long()
    d = os.path.join(data_dir, "cifar-100-binary")
    r = read_records(os.path.join(d, "train.bin" if train else "test.bin"), 3074)[:n]
    return r[:, 2:].reshape(-1, 3, 32, 32).clone(), r[:, 1].long()  # fine labels


def normalise(x):
    return (x.float() / 255.0 - MEAN) / STD


def augment(x, g):
    b = x.shape[0]
    padded = F.pad(x, (4, 4, 4, 4))
    off = torch.randint(0, 9, (b, 2), generator=g).tolist()
    out = torch.stack([padded[i, :, dy:dy + 32, dx:dx + 32] for i, (dy, dx) in enumerate(off)])
    flip = torch.rand(b, generator=g) < 0.5
    return normalise(torch.where(flip.view(b, 1, 1, 1), out.flip(3), out))


@torch.no_grad()
def evaluate(model, x, y, device, batch=500):
    model.eval()
    correct = 0
    for i in range(0, len(x), batch):
        out = model(normalise(x[i:i + batch]).to(device))
        correct += (out.argmax(1).cpu() == y[i:i + batch]).sum().item()
    model.train()
    return correct / len(x)


# ------------------------------------------------------------------------------------ main
def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=["cifar10", "cifar100"], default="cifar10")
    ap.add_argument("--data", default=os.environ.get("LCAM_DATA_DIR", "data"))
    ap.add_argument("--model", default="wrn-28-10", help="wrn-DEPTH-WIDTH")
    ap.add_argument("--epochs", type=int, default=150)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--milestones", default="31,61,91", help="lr × --gamma after these epochs")
    ap.add_argument("--gamma", type=float, default=0.2)
    ap.add_argument("--momentum-below", type=float, default=None,
                    help="default: the paper's (0.9 CIFAR-10, 0.93 CIFAR-100)")
    ap.add_argument("--momentum-above", type=float, default=None,
                    help="default: the paper's (0.95 CIFAR-10, 0.9 CIFAR-100)")
    ap.add_argument("--limit-train", type=int, default=None)
    ap.add_argument("--limit-test", type=int, default=None)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--checkpoint", default=None, help="save model + optimizer here each epoch")
    ap.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    ap.add_argument("--optimizer", choices=["lcam", "sgd"], default="lcam",
                    help="sgd: torch.optim.SGD(foreach=True) at momentum 0.9, for comparison")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's)")
    a = ap.parse_args()

    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    device = torch.device(a.device)
    classes = 10 if a.dataset == "cifar10" else 100
    _, depth, widen = a.model.split("-")
    model = WideResNet(int(depth), int(widen), classes).to(device)

    # The one change to the demo: LCAM instead of SGD + the hand-written momentum switch.
    preset = LCAM.cifar10 if a.dataset == "cifar10" else LCAM.cifar100
    overrides = {"lr": a.lr}
    if a.momentum_below is not None:
        overrides["momentum_below"] = a.momentum_below
    if a.momentum_above is not None:
        overrides["momentum_above"] = a.momentum_above
    opt = preset(model.parameters(), **overrides)
    if a.optimizer == "sgd":  # the baseline of BENCHMARKS.md
        opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=0.9, weight_decay=5e-4,
                              foreach=True)
    # MultiStepLR counts finished epochs: "× 0.2 after epoch 31" is milestone 31.
    sched = torch.optim.lr_scheduler.MultiStepLR(
        opt, [int(m) for m in a.milestones.split(",") if m], gamma=a.gamma)

    g = torch.Generator().manual_seed(a.seed)  # shuffling and augmentation
    first = 0
    if a.resume and a.checkpoint and os.path.exists(a.checkpoint):
        ck = torch.load(a.checkpoint, map_location=device, weights_only=True)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        first = ck["epoch"] + 1
        g.set_state(ck["data_rng"])

    x_train, y_train = load(a.dataset, a.data, True, a.limit_train)
    x_test, y_test = load(a.dataset, a.data, False, a.limit_test)
    what = (f"momenta {opt.momentum_below}/{opt.momentum_above}" if a.optimizer == "lcam"
            else "torch.optim.SGD(foreach=True)")
    print(f"{a.model} on {a.dataset}: {len(x_train)} train / {len(x_test)} test images, "
          f"{device}, {what}")

    for epoch in range(first, a.epochs):
        t0 = time.time()
        if a.optimizer == "lcam":
            opt.start_epoch()
        perm = torch.randperm(len(x_train), generator=g)
        for i in range(0, len(perm), a.batch):
            idx = perm[i:i + a.batch]
            x = augment(x_train[idx], g).to(device, non_blocking=True)
            y = y_train[idx].to(device, non_blocking=True)
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            if a.optimizer == "lcam":
                opt.step(loss)  # decides the momentum of the next step from this loss
            else:
                opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        train_s = time.time() - t0
        sched.step()
        stats = (opt.epoch_stats() if a.optimizer == "lcam"
                 else {"mean_loss": float("nan"), "fraction_below": float("nan")})
        acc = evaluate(model, x_test, y_test, device)
        print(f"epoch {epoch + 1:3d}  lr {opt.param_groups[0]['lr']:.5f}  "
              f"train loss {stats['mean_loss']:.4f}  below {stats['fraction_below']:.2f}  "
              f"test acc {100 * acc:.2f}%  {len(x_train) / train_s:.1f} img/s  "
              f"({time.time() - t0:.0f} s)", flush=True)
        if a.checkpoint:
            tmp = a.checkpoint + ".partial"
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                        "scheduler": sched.state_dict(), "epoch": epoch,
                        "data_rng": g.get_state()}, tmp)
            os.replace(tmp, a.checkpoint)


if __name__ == "__main__":
    main()
