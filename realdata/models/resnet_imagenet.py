"""ResNet-50 in the torchvision layout (bottleneck blocks, stride on the 3x3 conv).

``state_dict`` keys: ``conv1.weight``, ``bn1.*``; ``layer{1..4}.{i}.{conv1,conv2,conv3}.weight``,
``layer{s}.{i}.{bn1,bn2,bn3}.*``, ``layer{s}.0.downsample.0.weight`` (1x1 conv) and
``layer{s}.0.downsample.1.*`` (BN); ``fc.{weight,bias}``. ``layers`` and ``base_width`` give tiny
versions for tests. Inputs are normalized with the ImageNet mean/std inside the model.

Blocks: ``block1 = conv1 + bn1 + layer1``, ``block2..4 = layer2..4``, ``head = fc``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from realdata.models.base import Backbone, Normalize, Stage
from realdata.models.blocks import BlockMap
from realdata.models.resnet_cifar import _init_weights

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "ResNetImageNet"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class _Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int) -> None:
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.downsample = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                          nn.BatchNorm2d(cout))
            if (stride != 1 or cin != cout) else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = F.relu(self.bn1(self.conv1(x)))
        r = F.relu(self.bn2(self.conv2(r)))
        r = self.bn3(self.conv3(r))
        return F.relu((x if self.downsample is None else self.downsample(x)) + r)


class ResNetImageNet(Backbone):
    """torchvision-layout bottleneck ResNet (ResNet-50 by default).

    Args:
        layers: bottleneck blocks per stage (``(3, 4, 6, 3)`` for ResNet-50).
        base_width: channels of the stem and the first stage's bottleneck (64 published).
        num_classes: output logits.
        mean, std: input normalization (default ImageNet statistics).
    """

    def __init__(
        self,
        layers: Sequence[int] = (3, 4, 6, 3),
        base_width: int = 64,
        num_classes: int = 1000,
        mean: Sequence[float] | None = IMAGENET_MEAN,
        std: Sequence[float] | None = IMAGENET_STD,
    ) -> None:
        super().__init__()
        if len(layers) != 4 or min(layers) < 1:
            raise ValueError(f"layers must be 4 positive ints; got {tuple(layers)}")
        if base_width < 1:
            raise ValueError(f"base_width must be >= 1; got {base_width}")
        self.normalize = Normalize(mean, std)
        self.conv1 = nn.Conv2d(3, base_width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(base_width)
        cin = base_width
        for s, n in enumerate(layers, start=1):
            planes = base_width * 2 ** (s - 1)
            blocks = []
            for i in range(n):
                blocks.append(_Bottleneck(cin, planes, (1 if s == 1 else 2) if i == 0 else 1))
                cin = planes * _Bottleneck.expansion
            setattr(self, f"layer{s}", nn.Sequential(*blocks))
        self.fc = nn.Linear(cin, num_classes)
        _init_weights(self)

    def _stem_layer1(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(self.normalize(x))))
        return self.layer1(F.max_pool2d(x, 3, stride=2, padding=1))

    def stages(self) -> list[Stage]:
        return [
            ("block1", self._stem_layer1),
            ("block2", self.layer2),
            ("block3", self.layer3),
            ("block4", lambda x: self.layer4(x).mean(dim=(2, 3))),
            ("head", self.fc),
        ]

    def block_map(self) -> BlockMap:
        return {"block1": ("conv1", "bn1", "layer1"), "block2": ("layer2",),
                "block3": ("layer3",), "block4": ("layer4",), "head": ("fc",)}
