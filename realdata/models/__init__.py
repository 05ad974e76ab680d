"""Backbones (own modules, ``state_dict``-compatible with public checkpoints) and block maps.

``build_backbone(name, num_classes, **kwargs)`` builds one of :data:`BACKBONES`:

* ``resnet26``: TTT/MEMO CIFAR ResNet-26 (tiny: ``depth=8``)
* ``wrn28_10``: RobustBench WideResNet-28-10 "Standard" (tiny: ``depth=10, widen_factor=1``)
* ``resnet50``: torchvision ResNet-50 (tiny: ``layers=(1,1,1,1), base_width=8``)
* ``vit_b16``: timm ViT-B/16, ``vit_base_patch16_224`` (tiny: ``image_size=32, patch_size=8,
  embed_dim=16, depth=4, heads=2``)
* ``clip_vit_b16``: the image tower of OpenAI CLIP ViT-B/16 plus a linear head (same tiny knobs)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from realdata.models.base import Backbone, Normalize
from realdata.models.blocks import BlockMap, assign_parameters, block_of, matches
from realdata.models.checkpoint import CheckpointMismatchError, load_checkpoint
from realdata.models.resnet_cifar import ResNetCifar
from realdata.models.resnet_imagenet import ResNetImageNet
from realdata.models.vit import VisionTransformer
from realdata.models.wide_resnet import WideResNet

__all__ = [
    "BACKBONES",
    "Backbone",
    "BlockMap",
    "CheckpointMismatchError",
    "Normalize",
    "ResNetCifar",
    "ResNetImageNet",
    "VisionTransformer",
    "WideResNet",
    "assign_parameters",
    "block_of",
    "build_backbone",
    "load_checkpoint",
    "matches",
]

BACKBONES: dict[str, Callable[..., Backbone]] = {
    "resnet26": lambda **kw: ResNetCifar(**{"depth": 26, **kw}),
    "wrn28_10": lambda **kw: WideResNet(**{"depth": 28, "widen_factor": 10, **kw}),
    "resnet50": lambda **kw: ResNetImageNet(**kw),
    "vit_b16": lambda **kw: VisionTransformer(**{"layout": "timm", **kw}),
    "clip_vit_b16": lambda **kw: VisionTransformer(**{"layout": "clip", **kw}),
}


def build_backbone(name: str, num_classes: int, **kwargs: Any) -> Backbone:
    """Build backbone ``name`` with ``num_classes`` outputs; ``kwargs`` go to the constructor.

    Raises:
        ValueError: unknown name (the message lists the known ones) or bad knobs.
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known: {sorted(BACKBONES)}")
    try:
        return BACKBONES[name](num_classes=num_classes, **kwargs)
    except TypeError as exc:
        raise ValueError(f"bad options for backbone {name!r}: {exc}") from exc
