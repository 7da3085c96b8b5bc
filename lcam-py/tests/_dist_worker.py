"""The two-process gloo run of test_distributed.py (a module of its own so that the spawned
processes can import it)."""
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

BATCH = 16  # per rank
STEPS_PER_EPOCH = 3
EPOCHS = 2
LR = 0.05


class SmallConvNet(nn.Module):
    """No BatchNorm: the data-parallel gradient is then exactly the full batch's."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, 1, 1, bias=False)  # as the WRN: no conv biases
        self.c2 = nn.Conv2d(8, 16, 3, 2, 1, bias=False)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.relu(self.c2(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def cifar_batches(world):
    """`EPOCHS · STEPS_PER_EPOCH` CIFAR-shaped batches of `world · BATCH` images: the first
    records of real CIFAR-10 when $LCAM_DATA_DIR/cifar-10-batches-bin is present, else
    synthetic ones."""
    n = STEPS_PER_EPOCH * world * BATCH
    d = os.environ.get("LCAM_DATA_DIR")
    path = os.path.join(d, "cifar-10-batches-bin", "data_batch_1.bin") if d else None
    if path and os.path.exists(path):
        with open(path, "rb") as f:
            raw = bytearray(f.read(n * 3073))
        rec = torch.frombuffer(raw, dtype=torch.uint8).view(n, 3073)
        y = rec[:, 0].long()
        x = rec[:, 1:].view(n, 3, 32, 32).float() / 255.0
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)  # the demo's (SPEC §3)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        x = (x - mean) / std
        source = "cifar-10"
    else:
        g = torch.Generator().manual_seed(3)
        x = torch.randn(n, 3, 32, 32, generator=g)  # roughly normalised, as real inputs
        # Learnable labels (a fixed function of the mean colour), so the loss falls.
        w = torch.randn(3, 10, generator=g)
        y = (x.mean(dim=(2, 3)) @ w).argmax(1)
        source = "synthetic"
    xs = x.split(world * BATCH)
    ys = y.split(world * BATCH)
    return [(xs[i], ys[i]) for i in range(STEPS_PER_EPOCH)], source


def train(model, opt, data, shard=None):
    """Trains `EPOCHS` epochs; with `shard = (rank, world)` on that rank's half of every batch.
    Returns the phases decided and the momenta used."""
    phases, momenta = [], []
    for _ in range(EPOCHS):
        opt.start_epoch()
        for x, y in data:
            if shard is not None:
                rank, world = shard
                x, y = x.chunk(world)[rank], y.chunk(world)[rank]
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            momenta.append(opt.momentum)
            opt.step(loss)
            phases.append(opt.phase)
    return phases, momenta


def worker(rank, world, init_file, out_dir):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    from lcam.torch import LCAM

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    try:
        torch.manual_seed(0)
        model = SmallConvNet()
        ddp = DDP(model)
        opt = LCAM(ddp.parameters(), lr=LR, momentum_below=0.95, momentum_above=0.9,
                   weight_decay=5e-4)
        data, source = cifar_batches(world)
        phases, momenta = train(ddp, opt, data, (rank, world))
        torch.save({"params": [p.detach().clone() for p in model.parameters()],
                    "phases": phases, "momenta": momenta, "source": source,
                    "stats": opt.epoch_stats()},
                   os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()
