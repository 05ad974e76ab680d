"""The backbone base class: normalization inside the model, ordered stages, a block map.

A :class:`Backbone` takes images in ``[0, 1]`` (shape ``(B, 3, H, W)``) and applies its own
per-channel normalization (a parameter-free layer whose constants are non-persistent buffers, so
``state_dict`` keys match the public checkpoints exactly). It exposes its forward pass as an ordered
list of stages, one per block (``block1, ..., head``); composing them is ``forward``. The trainer
uses the stages to compute a frozen prefix once (feature caching).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from realdata.models.blocks import BlockMap

__all__ = ["Backbone", "Normalize", "Stage"]

Stage = tuple[str, Callable[[torch.Tensor], torch.Tensor]]


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel; no parameters, constants not saved in ``state_dict``.

    Args:
        mean, std: per-channel constants (length 3), or ``None`` for the identity.
    """

    def __init__(self, mean: Sequence[float] | None, std: Sequence[float] | None) -> None:
        super().__init__()
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std, or neither")
        self.enabled = mean is not None
        m = torch.tensor(mean if mean is not None else [0.0] * 3).view(1, -1, 1, 1)
        s = torch.tensor(std if std is not None else [1.0] * 3).view(1, -1, 1, 1)
        if self.enabled and bool((s <= 0).any()):
            raise ValueError(f"std must be positive; got {std}")
        self.register_buffer("mean", m, persistent=False)
        self.register_buffer("std", s, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std if self.enabled else x


class Backbone(nn.Module):
    """Base class of the built-in backbones.

    Subclasses define :meth:`stages` (ordered ``(block, fn)`` pairs whose composition is the
    forward pass; block ``i``'s fn uses exactly the parameters of block ``i``) and
    :meth:`block_map`.
    """

    def stages(self) -> list[Stage]:
        raise NotImplementedError

    def block_map(self) -> BlockMap:
        raise NotImplementedError

    @property
    def block_names(self) -> tuple[str, ...]:
        return tuple(self.block_map())

    def forward(self, x: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Run stages ``start .. stop-1`` (default: all): images ``(B, 3, H, W)`` -> logits
        ``(B, K)``; with ``start > 0``, ``x`` is the output of stage ``start - 1``."""
        for _, fn in self.stages()[start:stop]:
            x = fn(x)
        return x
