"""ResNet-26 for CIFAR in the layout of the TTT / MEMO code (pre-activation, zero-padded shortcuts).

``state_dict`` keys (depth 26, width 1): ``conv1.weight``; ``layer{1,2,3}.{0..3}.{bn1,bn2}.*``,
``layer{s}.{i}.{conv1,conv2}.weight``; ``bn.*``; ``fc.{weight,bias}``. Shortcuts that change shape
average-pool and pad with zero channels (no parameters), as in the original code. Depth ``6N + 2``
(26 -> N = 4); ``width`` multiplies the stage widths 16/32/64 (the stem stays at 16 channels).

Blocks: ``block1 = conv1 + layer1``, ``block2 = layer2``, ``block3 = layer3 + bn`` (the final
pre-activation BN belongs to the last stage), ``head = fc``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from realdata.models.base import Backbone, Normalize, Stage
from realdata.models.blocks import BlockMap

__all__ = ["CIFAR_MEAN", "CIFAR_STD", "ResNetCifar"]

#: Normalization of the TTT/MEMO CIFAR code.
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


class _ZeroPadShortcut(nn.Module):
    """Average-pool by ``stride`` and append zero channels up to ``cout`` (no parameters)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        if cout % cin:
            raise ValueError(f"shortcut needs cout % cin == 0; got {cin} -> {cout}")
        self.stride, self.ratio = stride, cout // cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = F.avg_pool2d(x, self.stride)
        if self.ratio == 1:
            return x
        return torch.cat([x, x.new_zeros(x.shape[0], x.shape[1] * (self.ratio - 1),
                                         *x.shape[2:])], 1)


class _PreActBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = _conv3x3(cin, cout, stride)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = _conv3x3(cout, cout)
        self.downsample = (
            _ZeroPadShortcut(cin, cout, stride) if (stride != 1 or cin != cout) else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.conv1(F.relu(self.bn1(x)))
        r = self.conv2(F.relu(self.bn2(r)))
        return (x if self.downsample is None else self.downsample(x)) + r


class ResNetCifar(Backbone):
    """TTT/MEMO ResNet for 32x32 inputs.

    Args:
        depth: ``6N + 2`` (26 for the published checkpoint; 8 for tiny tests).
        width: stage width multiplier.
        num_classes: output logits.
        mean, std: input normalization (default CIFAR statistics; ``None`` for identity).
    """

    def __init__(
        self,
        depth: int = 26,
        width: int = 1,
        num_classes: int = 10,
        mean: Sequence[float] | None = CIFAR_MEAN,
        std: Sequence[float] | None = CIFAR_STD,
    ) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth must be 6N+2 with N >= 1; got {depth}")
        if width < 1:
            raise ValueError(f"width must be >= 1; got {width}")
        n = (depth - 2) // 6
        self.normalize = Normalize(mean, std)
        self.conv1 = _conv3x3(3, 16)
        cin = 16
        for s, (planes, stride) in enumerate(((16, 1), (32, 2), (64, 2)), start=1):
            blocks = []
            for i in range(n):
                blocks.append(_PreActBlock(cin, planes * width, stride if i == 0 else 1))
                cin = planes * width
            setattr(self, f"layer{s}", nn.Sequential(*blocks))
        self.bn = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, num_classes)
        _init_weights(self)

    def stages(self) -> list[Stage]:
        return [
            ("block1", lambda x: self.layer1(self.conv1(self.normalize(x)))),
            ("block2", self.layer2),
            ("block3", lambda x: F.relu(self.bn(self.layer3(x))).mean(dim=(2, 3))),
            ("head", self.fc),
        ]

    def block_map(self) -> BlockMap:
        return {"block1": ("conv1", "layer1"), "block2": ("layer2",),
                "block3": ("layer3", "bn"), "head": ("fc",)}


def _init_weights(model: nn.Module) -> None:
    """He-normal convolutions, unit BN, default Linear (as the reference code)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
