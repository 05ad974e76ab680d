"""The dataset interface every reader implements, plus seeded per-class splits.

A *reader* is a function ``load(request: LoadRequest) -> TargetSplits`` registered with a task in
:mod:`realdata.tasks`. The benchmark builds the :class:`LoadRequest` from its CLI flags
(``--data-root``, ``--breeds-info``, the task's variant/severity, ``train_n``, ``--seed``) and never
looks inside the reader, so a dataset plugs in by registration only.

Conventions (all readers):

* ``dataset[i]`` returns ``(image, label, group)``: ``image`` a ``torch.float32`` tensor of shape
  ``(3, H, W)`` with values in ``[0, 1]`` (NOT normalized; per-backbone mean/std normalization is a
  parameter-free layer inside the model wrapper), ``label`` an ``int`` in ``[0, num_classes)``,
  ``group`` an ``int`` in ``[0, num_groups)`` or ``-1`` when the dataset has no groups.
* Splits are seeded and per class: :func:`per_class_split` (this module) is the one helper all
  readers use to turn a label vector into train/val/test index arrays.
* A missing or malformed folder raises :class:`DatasetLayoutError` (a ``ValueError``) whose message
  prints the expected folder tree (:func:`missing_layout_error`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = [
    "DatasetLayoutError",
    "LabeledImages",
    "LoadRequest",
    "Reader",
    "Splits",
    "TargetSplits",
    "TensorImages",
    "check_split_nonempty",
    "missing_layout_error",
    "per_class_split",
]


@runtime_checkable
class LabeledImages(Protocol):
    """Protocol of every split a reader returns (a ``torch.utils.data.Dataset``).

    ``__getitem__(i) -> (image, label, group)`` with ``image`` float32 ``(3, H, W)`` in ``[0, 1]``,
    ``label`` int, ``group`` int (``-1`` if the dataset has no groups). ``__len__`` is the number of
    examples.
    """

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]: ...


class TensorImages(Dataset):
    """An in-memory :class:`LabeledImages` backed by tensors.

    Args:
        images: ``(N, 3, H, W)`` float32 in ``[0, 1]``, or uint8 in ``[0, 255]`` (converted lazily
            per item, which keeps 10k CIFAR images at 30 MB instead of 120 MB).
        labels: ``(N,)`` integer labels.
        groups: ``(N,)`` integer groups, or ``None`` (every item then has group ``-1``).
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor | np.ndarray | Sequence[int],
        groups: torch.Tensor | np.ndarray | Sequence[int] | None = None,
    ) -> None:
        labels_t = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must have shape (N, 3, H, W); got {tuple(images.shape)}")
        if images.dtype not in (torch.float32, torch.uint8):
            raise ValueError(f"images must be float32 in [0,1] or uint8; got {images.dtype}")
        if labels_t.shape != (images.shape[0],):
            raise ValueError(
                f"labels must have shape ({images.shape[0]},); got {tuple(labels_t.shape)}"
            )
        if groups is None:
            groups_t = torch.full_like(labels_t, -1)
        else:
            groups_t = torch.as_tensor(np.asarray(groups), dtype=torch.long)
            if groups_t.shape != labels_t.shape:
                raise ValueError(
                    f"groups must have shape {tuple(labels_t.shape)}; got {tuple(groups_t.shape)}"
                )
        self.images = images
        self.labels = labels_t
        self.groups = groups_t

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        image = self.images[index]
        if image.dtype == torch.uint8:
            image = image.float().div_(255.0)
        return image, int(self.labels[index]), int(self.groups[index])

    def batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Rows ``indices`` as ``(images float32 (B,3,H,W) in [0,1], labels (B,), groups (B,))``."""
        x = self.images[indices]
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        return x, self.labels[indices], self.groups[indices]

    def subset(self, indices: np.ndarray | Sequence[int]) -> TensorImages:
        """A new :class:`TensorImages` holding the rows ``indices`` (copies, so the parent can be
        garbage-collected)."""
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        return TensorImages(self.images[idx].clone(), self.labels[idx], self.groups[idx])


@dataclass(frozen=True)
class TargetSplits:
    """What a reader returns for one target distribution.

    Attributes:
        train: the few labelled target examples used for fine-tuning.
        val: examples for model selection over (lr, epoch) and for Cross-Val.
        test: held-out examples; the reported accuracy.
        num_classes: number of labels ``K`` (labels are in ``[0, K)``).
        num_groups: number of groups for worst-group accuracy (Waterbirds, CelebA); 0 if none.
        info: provenance and details, JSON-serializable, e.g.
            ``{"source": "published CIFAR-10-C"}`` or ``{"source": "generated"}``; stored with
            every result record.
    """

    train: Dataset
    val: Dataset
    test: Dataset
    num_classes: int
    num_groups: int = 0
    info: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2; got {self.num_classes}")
        if self.num_groups < 0:
            raise ValueError(f"num_groups must be >= 0; got {self.num_groups}")
        for name in ("train", "val", "test"):
            check_split_nonempty(getattr(self, name), name)


@dataclass(frozen=True)
class LoadRequest:
    """What the benchmark passes to a reader.

    Attributes:
        data_root: the ``--data-root`` folder; each reader looks for its published layout under it.
        variant: which target of the task, e.g. a corruption name (``"gaussian_noise"``) or a shift
            name for the synthetic task; ``None`` for tasks with a single target.
        severity: corruption severity (1..5; the protocol uses 5); ignored by readers without one.
        train_n: total number of labelled target training examples (``train_n // num_classes`` per
            class for per-class splits).
        seed: seeds the split (and any generation); same request -> same splits.
        image_size: side length in pixels of the returned images (32 for CIFAR, 224 for ImageNet).
        val_per_class: validation examples per class (protocol: 10).
        test_per_class: test examples per class (protocol: 90 for CIFAR-10-C, 10 for ImageNet-C);
            ``None`` means "all remaining" for readers with a fixed published test split.
        extra: reader-specific options, e.g. ``{"breeds_info": Path(...)}``, ``{"out_dir": ...}``.
    """

    data_root: Path
    variant: str | None = None
    severity: int = 5
    train_n: int = 1000
    seed: int = 0
    image_size: int = 32
    val_per_class: int = 10
    test_per_class: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 1 <= self.severity <= 5:
            raise ValueError(f"severity must be in 1..5; got {self.severity}")
        if self.train_n < 1:
            raise ValueError(f"train_n must be >= 1; got {self.train_n}")
        if self.image_size < 8:
            raise ValueError(f"image_size must be >= 8; got {self.image_size}")
        if self.val_per_class < 1:
            raise ValueError(f"val_per_class must be >= 1; got {self.val_per_class}")
        if self.test_per_class is not None and self.test_per_class < 1:
            raise ValueError(f"test_per_class must be >= 1 or None; got {self.test_per_class}")


class Reader(Protocol):
    """A dataset reader: ``LoadRequest -> TargetSplits``."""

    def __call__(self, request: LoadRequest) -> TargetSplits: ...


class DatasetLayoutError(ValueError):
    """A dataset folder is missing or malformed; the message shows the expected layout."""


def missing_layout_error(what: str, path: Path | str, layout: str) -> DatasetLayoutError:
    """Build the error for a missing/malformed dataset folder.

    Args:
        what: what was wrong, e.g. ``"CIFAR-10-C folder not found"``.
        path: the offending path.
        layout: the expected folder tree (a multi-line string, shown verbatim).
    """
    return DatasetLayoutError(f"{what}: {path}\nexpected layout under --data-root:\n{layout}")


def check_split_nonempty(split: Dataset, name: str) -> None:
    """Raise ``ValueError`` if ``split`` has no examples."""
    n = len(split)  # type: ignore[arg-type]
    if n == 0:
        raise ValueError(f"the {name} split is empty; check --data-root, train_n and the splits")


@dataclass(frozen=True)
class Splits:
    """Index arrays (into the label vector given to :func:`per_class_split`)."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def per_class_split(
    labels: np.ndarray | Sequence[int],
    *,
    train_per_class: int,
    val_per_class: int,
    test_per_class: int | None,
    seed: int,
    num_classes: int | None = None,
) -> Splits:
    """Seeded per-class train/val/test split of a label vector (the protocol's splits).

    For every class ``c`` the indices with label ``c`` are shuffled with ``numpy`` generator
    ``default_rng(seed)`` (one permutation per class, in class order) and cut into
    ``train_per_class``, ``val_per_class`` and ``test_per_class`` consecutive pieces
    (``test_per_class=None``: all the rest). The three index sets are disjoint; each is sorted.
    Reused by every reader (CIFAR-10-C: ``train_n/10, 10, 90``;
    ImageNet-C: ``train_n/1000, 10, 10``).

    Args:
        labels: ``(N,)`` integer labels in ``[0, num_classes)``.
        train_per_class, val_per_class, test_per_class: examples per class in each split.
        seed: split seed.
        num_classes: number of classes; default ``max(labels) + 1``.

    Returns:
        :class:`Splits` of ``int64`` index arrays.

    Raises:
        ValueError: if a class has fewer examples than requested, or a count is negative.
    """
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D; got shape {y.shape}")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integers; got dtype {y.dtype}")
    counts = (train_per_class, val_per_class, 0 if test_per_class is None else test_per_class)
    if min(counts) < 0:
        raise ValueError(f"per-class counts must be >= 0; got {counts}")
    k = int(num_classes if num_classes is not None else (y.max() + 1 if y.size else 0))
    if y.size and (y.min() < 0 or y.max() >= k):
        raise ValueError(f"labels must lie in [0, {k}); got range [{y.min()}, {y.max()}]")
    rng = np.random.default_rng(seed)
    parts: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] = ([], [], [])
    for c in range(k):
        idx = np.flatnonzero(y == c)
        need = train_per_class + val_per_class + (test_per_class or 0)
        if idx.size < need or (test_per_class is None and idx.size <= need):
            raise ValueError(
                f"class {c} has {idx.size} examples; the split needs {train_per_class} train + "
                f"{val_per_class} val + {'>=1' if test_per_class is None else test_per_class} test"
            )
        idx = rng.permutation(idx)
        a, b = train_per_class, train_per_class + val_per_class
        end = None if test_per_class is None else b + test_per_class
        parts[0].append(idx[:a])
        parts[1].append(idx[a:b])
        parts[2].append(idx[b:end])
    out = [np.sort(np.concatenate(p)).astype(np.int64) if p else np.zeros(0, np.int64)
           for p in parts]
    return Splits(train=out[0], val=out[1], test=out[2])
