"""Feeding batches to a fine-tuning run: splits on the device, frozen-prefix caching, accelerations.

:class:`_Split` serves a split's minibatches (from the dataset, or from cached outputs of the frozen
stages); :func:`_cache_prefix` replaces each split's data by the output of the stages before the
first tuned block, computed once (the same numbers as recomputing them every step: tested).

On a CUDA device, bf16 autocast (when ``torch.cuda.is_bf16_supported()``), channels_last memory
format and pinned host memory are used by default; :func:`accelerations` says which are in effect.
On CPU none is used.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from realdata.data.base import check_split_nonempty
from realdata.models.base import Backbone

if TYPE_CHECKING:
    from realdata.train import FinetuneConfig

__all__ = ["Accelerations", "NonFiniteLossError", "accelerations"]


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN/inf (the message names the lr, epoch and batch)."""


@dataclass(frozen=True)
class Accelerations:
    """Which device accelerations a fine-tuning run uses (all ``False`` on CPU)."""

    bf16: bool = False
    channels_last: bool = False
    pin_memory: bool = False


def accelerations(config: FinetuneConfig) -> Accelerations:
    """The accelerations in effect for ``config``: each allowed by its flag and supported by the
    device (bf16 needs ``torch.cuda.is_bf16_supported()``; all three need a CUDA device)."""
    if torch.device(config.device).type != "cuda" or not torch.cuda.is_available():
        return Accelerations()
    return Accelerations(bf16=config.bf16 and torch.cuda.is_bf16_supported(),
                         channels_last=config.channels_last, pin_memory=config.pin_memory)


def _autocast(device: torch.device | str, enabled: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` when ``enabled`` (else a no-op context).

    The context spans a whole fine-tuning run, so autocast's cache of down-cast weights is off:
    with it, the optimizer's updates would never reach the cached bf16 copies.
    """
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, cache_enabled=False)



class _Split:
    """A split as either cached prefix outputs or the dataset itself."""

    def __init__(self, dataset: Dataset, name: str, workers: int,
                 device: torch.device | str = "cpu",
                 accel: Accelerations | None = None) -> None:
        check_split_nonempty(dataset, name)
        self.dataset, self.name, self.workers = dataset, name, workers
        self.device = torch.device(device)
        self.accel = accel or Accelerations()
        self.n = len(dataset)  # type: ignore[arg-type]
        self.feats: torch.Tensor | None = None
        self.labels: torch.Tensor | None = None
        self.groups: torch.Tensor | None = None

    def batches(
        self, index_batches: Sequence[torch.Tensor]
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        pin, fmt = self.accel.pin_memory, self.accel.channels_last
        for x, y, g in self._batches(index_batches):
            if pin and x.device.type == "cpu" and not x.is_pinned():
                x = x.pin_memory()
            x = x.to(self.device, non_blocking=pin)
            if fmt and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y.to(self.device), g.to(self.device)

    def _batches(
        self, index_batches: Sequence[torch.Tensor]
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        if self.feats is not None:
            for idx in index_batches:
                yield self.feats[idx], self.labels[idx], self.groups[idx]  # type: ignore[index]
            return
        ds = self.dataset
        if hasattr(ds, "batch"):
            for idx in index_batches:
                yield ds.batch(idx)  # type: ignore[attr-defined]
            return
        loader = DataLoader(ds, batch_sampler=[b.tolist() for b in index_batches],
                            num_workers=self.workers, pin_memory=self.accel.pin_memory)
        for x, y, g in loader:
            yield x, y.long(), g.long()

    def in_order(self, bs: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        return self.batches(list(torch.arange(self.n).split(bs)))


def _forward(model: nn.Module, x: torch.Tensor, start: int) -> torch.Tensor:
    return model(x, start=start) if start else model(x)


@torch.no_grad()
def _cache_prefix(splits: Sequence[_Split], model: Backbone, start: int, bs: int,
                  limit: int) -> bool:
    """Replace each split's data by the output of stages ``< start``; False if over ``limit``."""
    out: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    total = sum(s.n for s in splits)
    for s in splits:
        feats, ys, gs = [], [], []
        for x, y, g in s.in_order(bs):
            h = model(x, start=0, stop=start)
            if not feats and h[0].numel() * h.element_size() * total > limit:
                return False
            feats.append(h)
            ys.append(y)
            gs.append(g)
        out.append((torch.cat(feats), torch.cat(ys), torch.cat(gs)))
    for s, (h, y, g) in zip(splits, out):
        s.feats, s.labels, s.groups = h, y, g
    return True


def _flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flips of a batch ``(B, C, H, W)`` (each image with probability 1/2)."""
    mask = torch.rand(x.shape[0], generator=gen) < 0.5
    x = x.clone()
    x[mask] = x[mask].flip(-1)
    return x
