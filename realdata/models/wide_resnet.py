"""WideResNet-28-10 in the layout of RobustBench's CIFAR-10 "Standard" model.

``state_dict`` keys: ``conv1.weight``; ``block{1,2,3}.layer.{i}.{bn1,bn2}.*``,
``block{b}.layer.{i}.{conv1,conv2}.weight``, ``block{b}.layer.0.convShortcut.weight`` (1x1 conv when
the width changes); ``bn1.*``; ``fc.{weight,bias}``. Pre-activation basic blocks; depth ``6N + 4``
(28 -> N = 4), widths ``16, 16k, 32k, 64k`` (k = ``widen_factor``). RobustBench models take inputs
in ``[0, 1]`` without normalization, so the default normalization is the identity.

Blocks: ``block1 = conv1 + block1``, ``block2``, ``block3 = block3 + bn1``, ``head = fc``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from realdata.models.base import Backbone, Normalize, Stage
from realdata.models.blocks import BlockMap
from realdata.models.resnet_cifar import _init_weights

__all__ = ["WideResNet"]


class _WideBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.equal = cin == cout
        self.convShortcut = (
            None if self.equal else nn.Conv2d(cin, cout, 1, stride=stride, padding=0, bias=False)
        )
        if self.equal and stride != 1:
            raise ValueError("an identity shortcut cannot change the resolution")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = F.relu(self.bn1(x))
        r = self.conv2(F.relu(self.bn2(self.conv1(a))))
        # the shortcut of a width-changing block sees the pre-activated input (reference code)
        return (x if self.convShortcut is None else self.convShortcut(a)) + r


class _NetworkBlock(nn.Module):
    def __init__(self, n: int, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.layer = nn.Sequential(
            *[_WideBlock(cin if i == 0 else cout, cout, stride if i == 0 else 1) for i in range(n)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class WideResNet(Backbone):
    """RobustBench-layout WideResNet.

    Args:
        depth: ``6N + 4`` (28 for the published checkpoint; 10 for tiny tests).
        widen_factor: width multiplier ``k`` (10 published; 1 tiny).
        num_classes: output logits.
        mean, std: input normalization (default identity, as RobustBench).
    """

    def __init__(
        self,
        depth: int = 28,
        widen_factor: int = 10,
        num_classes: int = 10,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"depth must be 6N+4 with N >= 1; got {depth}")
        if widen_factor < 1:
            raise ValueError(f"widen_factor must be >= 1; got {widen_factor}")
        n = (depth - 4) // 6
        ch = (16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
        self.normalize = Normalize(mean, std)
        self.conv1 = nn.Conv2d(3, ch[0], 3, stride=1, padding=1, bias=False)
        self.block1 = _NetworkBlock(n, ch[0], ch[1], 1)
        self.block2 = _NetworkBlock(n, ch[1], ch[2], 2)
        self.block3 = _NetworkBlock(n, ch[2], ch[3], 2)
        self.bn1 = nn.BatchNorm2d(ch[3])
        self.fc = nn.Linear(ch[3], num_classes)
        _init_weights(self)
        nn.init.zeros_(self.fc.bias)

    def stages(self) -> list[Stage]:
        return [
            ("block1", lambda x: self.block1(self.conv1(self.normalize(x)))),
            ("block2", self.block2),
            ("block3", lambda x: F.relu(self.bn1(self.block3(x))).mean(dim=(2, 3))),
            ("head", self.fc),
        ]

    def block_map(self) -> BlockMap:
        return {"block1": ("conv1", "block1"), "block2": ("block2",),
                "block3": ("block3", "bn1"), "head": ("fc",)}
