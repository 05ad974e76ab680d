"""Tiny backbones and data for the realdata tests (seconds on 2 CPU cores)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from realdata.data.base import TensorImages
from realdata.models import build_backbone

#: Tiny versions of every built-in backbone: (name, kwargs, input side).
TINY = {
    "resnet26": ({"depth": 8}, 32),
    "wrn28_10": ({"depth": 10, "widen_factor": 1}, 32),
    "resnet50": ({"layers": (1, 1, 1, 1), "base_width": 4}, 64),
    "vit_b16": ({"image_size": 32, "patch_size": 8, "embed_dim": 16, "depth": 4, "heads": 2}, 32),
    "clip_vit_b16": ({"image_size": 32, "patch_size": 8, "embed_dim": 16, "depth": 4, "heads": 2,
                      "output_dim": 8}, 32),
}


def tiny(name: str, num_classes: int = 4, seed: int = 0) -> torch.nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return build_backbone(name, num_classes, **TINY[name][0])


def blobs(n: int, k: int = 4, side: int = 16, seed: int = 0) -> TensorImages:
    """Learnable toy images: class = which colour channel is bright (plus noise)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % k
    x = 0.3 * torch.rand(n, 3, side, side, generator=g)
    x[torch.arange(n), y % 3] += 0.4 + 0.1 * (y // 3).view(-1, 1, 1).float()
    return TensorImages(x.clamp(0, 1), y, groups=(torch.arange(n) // 2) % 2)


@pytest.fixture
def toy_splits() -> tuple[TensorImages, TensorImages, TensorImages]:
    return blobs(64, seed=1), blobs(24, seed=2), blobs(24, seed=3)


@pytest.fixture
def one_thread():
    """One intra-op thread for the test: on a busy shared CPU, two threads per tiny op cost ~30x
    (measured with a tiny ResNet-26 forward/backward)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def prepare_tiny_source(req: object, folder: Path) -> Path:
    """``prepare_source`` of the tiny test tasks: a depth-8 ResNet-26 (4 classes) saved once
    as ``folder/tiny.pt``; ``req`` (the task's LoadRequest) is not needed."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tiny.pt"
    if not path.exists():
        torch.save(tiny("resnet26").state_dict(), path)
    return path
