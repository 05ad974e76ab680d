"""AugMix in torch (no torchvision): the augmentations MEMO averages its prediction over.

:func:`memo_views` returns ``n`` augmented views of one image, as MEMO's CIFAR code builds them:
a random crop (zero padding of ``H // 8`` pixels) and horizontal flip, then AugMix (Hendrycks et
al. 2020): ``width`` chains of ``1 .. depth`` random operations, mixed with Dirichlet(1) weights,
then mixed with the cropped image with a Beta(1, 1) weight. Operations (:data:`OPS`, AugMix's set,
which leaves out the colour/contrast/brightness/sharpness operations that overlap the corruptions):
autocontrast, equalize, posterize, rotate, solarize, shear_x, shear_y, translate_x, translate_y.
Each strength is ``uniform(0.1, severity)`` on AugMix's 0-10 scale, ``severity = 3``: rotation up
to 9 degrees, shear up to 0.09, translation up to ``H / 10`` pixels, solarize threshold down to
0.7, posterize to 3 or 4 bits. Geometric operations resample bilinearly and fill with black (PIL's
default). Images are ``(3, H, W)`` float in ``[0, 1]``; every random choice comes from the numpy
generator passed in, so a seed fixes the views.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["OPS", "augmix", "memo_views", "preaugment"]


def _affine(x: torch.Tensor, theta: list[list[float]]) -> torch.Tensor:
    """Resample ``x (3, H, W)`` by the normalized affine ``theta`` (2x3), black fill."""
    t = torch.tensor([theta], dtype=x.dtype)
    grid = F.affine_grid(t, [1, *x.shape], align_corners=False)
    return F.grid_sample(x[None], grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False)[0]


def autocontrast(x: torch.Tensor, level: float) -> torch.Tensor:
    """Stretch each channel to ``[0, 1]`` (``level`` unused)."""
    lo = x.amin(dim=(1, 2), keepdim=True)
    hi = x.amax(dim=(1, 2), keepdim=True)
    return torch.where(hi > lo, (x - lo) / (hi - lo).clamp_min(1e-8), x)


def equalize(x: torch.Tensor, level: float) -> torch.Tensor:
    """Histogram equalization per channel over 256 levels (``level`` unused)."""
    q = (x * 255).round().long().clamp(0, 255)
    out = torch.empty_like(x)
    for c in range(x.shape[0]):
        hist = torch.bincount(q[c].flatten(), minlength=256).to(x.dtype)
        cdf = hist.cumsum(0)
        lo = cdf[hist > 0][0]
        total = cdf[-1]
        lut = (cdf - lo) / (total - lo) if total > lo else torch.linspace(0, 1, 256)
        out[c] = lut.clamp(0, 1)[q[c]]
    return out


def posterize(x: torch.Tensor, level: float) -> torch.Tensor:
    """Keep ``4 - int(level * 4 / 10)`` bits per channel (3 or 4 at severity 3)."""
    bits = 4 - int(level * 4 / 10)
    step = 2 ** (8 - bits)
    return (torch.floor((x * 255).round() / step) * step) / 255


def solarize(x: torch.Tensor, level: float) -> torch.Tensor:
    """Invert pixels above ``1 - level / 10``."""
    t = 1.0 - level / 10
    return torch.where(x < t, x, 1.0 - x)


def rotate(x: torch.Tensor, level: float, sign: float) -> torch.Tensor:
    """Rotate by ``sign * 3 * level`` degrees (up to 9 at severity 3)."""
    a = math.radians(sign * 3.0 * level)
    return _affine(x, [[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]])


def shear(x: torch.Tensor, level: float, sign: float, axis: int) -> torch.Tensor:
    """Shear by ``sign * 0.03 * level`` along ``axis`` (0: x, 1: y)."""
    s = sign * 0.03 * level
    theta = [[1.0, s, 0.0], [0.0, 1.0, 0.0]] if axis == 0 else [[1.0, 0.0, 0.0], [s, 1.0, 0.0]]
    return _affine(x, theta)


def translate(x: torch.Tensor, level: float, sign: float, axis: int) -> torch.Tensor:
    """Shift by ``sign * level / 30`` of the side (``H / 10`` pixels at level 3) along ``axis``."""
    d = sign * 2.0 * level / 30  # normalized coordinates span 2
    theta = [[1.0, 0.0, d], [0.0, 1.0, 0.0]] if axis == 0 else [[1.0, 0.0, 0.0], [0.0, 1.0, d]]
    return _affine(x, theta)


Op = Callable[[torch.Tensor, float, float], torch.Tensor]
#: AugMix's operations: ``op(image, level, sign)``.
OPS: dict[str, Op] = {
    "autocontrast": lambda x, lv, s: autocontrast(x, lv),
    "equalize": lambda x, lv, s: equalize(x, lv),
    "posterize": lambda x, lv, s: posterize(x, lv),
    "rotate": rotate,
    "solarize": lambda x, lv, s: solarize(x, lv),
    "shear_x": lambda x, lv, s: shear(x, lv, s, 0),
    "shear_y": lambda x, lv, s: shear(x, lv, s, 1),
    "translate_x": lambda x, lv, s: translate(x, lv, s, 0),
    "translate_y": lambda x, lv, s: translate(x, lv, s, 1),
}


def preaugment(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Random crop with zero padding ``H // 8`` and a random horizontal flip."""
    pad = max(1, x.shape[-1] // 8)
    h, w = x.shape[-2:]
    xp = F.pad(x, (pad, pad, pad, pad))
    i, j = rng.integers(0, 2 * pad + 1, size=2)
    out = xp[:, i:i + h, j:j + w]
    return out.flip(-1) if rng.random() < 0.5 else out


def augmix(x: torch.Tensor, rng: np.random.Generator, *, severity: float = 3.0, width: int = 3,
           depth: int = 3) -> torch.Tensor:
    """One AugMix view of ``x (3, H, W)`` in ``[0, 1]`` (see module docstring)."""
    ws = rng.dirichlet([1.0] * width)
    m = float(rng.beta(1.0, 1.0))
    names = list(OPS)
    mix = torch.zeros_like(x)
    for k in range(width):
        y = x
        for _ in range(int(rng.integers(1, depth + 1))):
            op = OPS[names[int(rng.integers(len(names)))]]
            y = op(y, float(rng.uniform(0.1, severity)), 1.0 if rng.random() < 0.5 else -1.0)
        mix = mix + float(ws[k]) * y
    return ((1 - m) * x + m * mix).clamp(0, 1)


def memo_views(x: torch.Tensor, n: int, rng: np.random.Generator) -> torch.Tensor:
    """``n`` MEMO views of ``x (3, H, W)``: ``(n, 3, H, W)``, each ``augmix(preaugment(x))``."""
    if n < 1:
        raise ValueError(f"MEMO needs at least 1 augmented view; got {n}")
    return torch.stack([augmix(preaugment(x, rng), rng) for _ in range(n)])
