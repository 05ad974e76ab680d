"""Lazily decoded image files (Pillow) as a :class:`~realdata.data.base.LabeledImages` dataset.

Readers of folder/CSV datasets (ImageNet-C, BREEDS, WILDS) list the files once and return
:class:`ImageFiles`; an image is decoded only when the DataLoader asks for it, so memory stays
at one path string per example and decoding parallelizes over DataLoader workers (the engine's
worker-count flag). Everything here is picklable for worker processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageFiles",
    "ResizeCenterCrop",
    "list_images",
    "pil_to_tensor",
    "resize_batch",
]

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpeg", ".jpg", ".png", ".bmp")


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder`` (case-insensitive extension), sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


@dataclass(frozen=True)
class ResizeCenterCrop:
    """Deterministic eval transform: optional centre pre-crop, resize, centre crop.

    Attributes:
        size: output side in pixels.
        resize_ratio: the shorter side is first resized to ``round(size * resize_ratio)`` (the
            ImageNet convention is 256/224); ``1.0`` resizes straight to ``size``.
        pre_crop: if set, first take a centre square of this side (CelebA uses 178).
    """

    size: int
    resize_ratio: float = 256 / 224
    pre_crop: int | None = None

    def __call__(self, img: Image.Image) -> Image.Image:
        if self.pre_crop is not None:
            img = _center_crop(img, min(self.pre_crop, *img.size))
        short = max(self.size, round(self.size * self.resize_ratio))
        w, h = img.size
        if min(w, h) != short:
            scale = short / min(w, h)
            img = img.resize((max(short, round(w * scale)), max(short, round(h * scale))), Image.BILINEAR)
        return _center_crop(img, self.size)


def _center_crop(img: Image.Image, side: int) -> Image.Image:
    w, h = img.size
    left, top = (w - side) // 2, (h - side) // 2
    return img.crop((left, top, left + side, top + side))


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL image -> float32 ``(3, H, W)`` in ``[0, 1]``."""
    arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


class ImageFiles(Dataset):
    """Images decoded on access: ``dataset[i] -> (image (3, S, S) float32 in [0,1], label, group)``.

    Args:
        paths: image files.
        labels: ``(N,)`` integer labels.
        groups: ``(N,)`` integer groups, or ``None`` (group ``-1``).
        transform: PIL -> PIL transform producing ``S x S`` images (e.g. :class:`ResizeCenterCrop`).
    """

    def __init__(
        self,
        paths: Sequence[Path | str],
        labels: Sequence[int] | np.ndarray,
        groups: Sequence[int] | np.ndarray | None = None,
        *,
        transform: ResizeCenterCrop,
    ) -> None:
        self.paths = [str(p) for p in paths]
        self.labels = np.asarray(labels, dtype=np.int64)
        self.groups = (
            np.full(len(self.paths), -1, np.int64) if groups is None else np.asarray(groups, dtype=np.int64)
        )
        if self.labels.shape != (len(self.paths),) or self.groups.shape != self.labels.shape:
            raise ValueError(
                f"paths, labels and groups must have the same length; got {len(self.paths)}, "
                f"{self.labels.shape}, {self.groups.shape}"
            )
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        with Image.open(self.paths[index]) as img:
            out = self.transform(img.convert("RGB"))
        return pil_to_tensor(out), int(self.labels[index]), int(self.groups[index])

    def subset(self, indices: Sequence[int] | np.ndarray) -> ImageFiles:
        """The examples at ``indices`` (paths only; nothing is decoded)."""
        idx = np.asarray(indices, dtype=np.int64)
        return ImageFiles(
            [self.paths[i] for i in idx], self.labels[idx], self.groups[idx],
            transform=self.transform,
        )  # fmt: skip


def resize_batch(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize ``(N, 3, H, W)`` images (uint8 or float) to ``size`` (bilinear, antialiased).

    Returns the input unchanged when it already has that size, else float32 in ``[0, 1]``."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    out = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out.clamp_(0.0, 1.0)
