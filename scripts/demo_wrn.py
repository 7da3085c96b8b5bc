"""The demo's Wide ResNet in plain PyTorch (SPEC §3): pre-activation basic blocks, no dropout;
conv weights Kaiming-normal (fan_out, ReLU gain), BatchNorm weight 1 / bias 0, Linear bias 0 and
PyTorch's default Linear weight (U(−1/√fan_in, 1/√fan_in)). The demo's initialisation loop is
reproduced verbatim in `demo_init`.

Parameter names follow lcam-cli's tch model (`conv.weight`, `group1.block0.bn1.weight`,
`group1.block0.shortcut.weight`, `bn.running_var`, `fc.bias`, …), so a state dict maps 1:1 onto
lcam's `VarStore`. Used by scripts/wrn_fixtures.py (the init and forward/backward fixtures that
lcam-cli's tests compare against) and scripts/pt_wrn_train.py (the PyTorch reference trainer).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, cin, cout, stride, dropout=0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = None if cin == cout else nn.Conv2d(cin, cout, 1, stride, 0, bias=False)
        self.dropout = dropout

    def forward(self, x):
        o = F.relu(self.bn1(x))
        # Pre-activation: a projection shortcut sees the activated input, identity the raw one.
        short = x if self.shortcut is None else self.shortcut(o)
        y = F.relu(self.bn2(self.conv1(o)))
        if self.dropout > 0:
            y = F.dropout(y, self.dropout, self.training)
        return self.conv2(y) + short


class Group(nn.Module):
    """`blockN` children, so names read `group1.block0.conv1.weight` as in lcam."""

    def __init__(self, blocks):
        super().__init__()
        for i, b in enumerate(blocks):
            self.add_module(f"block{i}", b)

    def forward(self, x):
        for b in self.children():
            x = b(x)
        return x


class WideResNet(nn.Module):
    def __init__(self, depth, widen, classes, dropout=0.0):
        super().__init__()
        assert (depth - 4) % 6 == 0
        n = (depth - 4) // 6
        w = [16, 16 * widen, 32 * widen, 64 * widen]
        self.conv = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        for g in range(3):
            blocks = [
                Block(w[g] if b == 0 else w[g + 1], w[g + 1], (1 if g == 0 else 2) if b == 0 else 1, dropout)
                for b in range(n)
            ]
            self.add_module(f"group{g}", Group(blocks))
        self.bn = nn.BatchNorm2d(w[3])
        self.fc = nn.Linear(w[3], classes)
        demo_init(self)

    def forward(self, x):
        h = self.conv(x)
        h = self.group2(self.group1(self.group0(h)))
        h = F.relu(self.bn(h))
        return self.fc(F.adaptive_avg_pool2d(h, 1).flatten(1))


def demo_init(model):
    """The demo's initialisation loop."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            m.weight.data.fill_(1)
            m.bias.data.zero_()
        elif isinstance(m, nn.Linear):
            m.bias.data.zero_()


def wrn(name, classes, dropout=0.0):
    """`wrn-D-K` → the model."""
    _, d, k = name.split("-")
    return WideResNet(int(d), int(k), classes, dropout)
