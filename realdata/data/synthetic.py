"""Built-in offline benchmark: procedural 32x32 colour images, a source model, three shift levels.

Each image shows one shape (the class's shape, random position/size/rotation/contrast) in the
class's hue (jittered so neighbouring hues overlap) over a background grating whose orientation
and frequency are tied to the pair (class, subpopulation); pixel noise on top. Colour, shape and
texture all carry class information, so low-level (pixel) changes really cost accuracy. Classes
have ``2 * SOURCE_SUBPOPS`` subpopulations; the source uses the first half.

Target variants (the shift is designed from its definition, never tuned for an ordering):

============== ======== ============================================================================
variant        level    definition
============== ======== ============================================================================
input-noise    input    source distribution + Gaussian pixel noise (sigma by severity)
input-blur     input    source distribution, Gaussian-blurred (sigma by severity)
input-contrast input    source distribution, contrast scaled towards the image mean (by severity)
input-channels input    source distribution with the RGB channels permuted (fixed permutation)
feature        feature  held-out subpopulations (new backgrounds) of every class
output         output   source distribution with labels permuted (fixed derangement)
============== ======== ============================================================================

The channel permutation is undone exactly by permuting the first convolution's input channels
(the backbone's normalization is channel-symmetric), and the label permutation by permuting the
head's rows: :func:`undo_channel_permutation` and :func:`undo_label_permutation` build those exact
solutions (the CNN analogues of claims C1 and C3).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F

from realdata.data.base import LoadRequest, TargetSplits, TensorImages

__all__ = [
    "BACKBONE_KWARGS",
    "CHANNEL_PERMUTATION",
    "NUM_CLASSES",
    "SOURCE_SUBPOPS",
    "VARIANTS",
    "generate",
    "label_permutation",
    "load_synthetic",
    "undo_channel_permutation",
    "undo_label_permutation",
]

NUM_CLASSES = 10
SOURCE_SUBPOPS = 2
IMAGE_SIZE = 32
#: The fixed RGB permutation of ``input-channels``: new channel i = old channel perm[i].
CHANNEL_PERMUTATION = (2, 0, 1)
VARIANTS = ("input-noise", "input-blur", "input-contrast", "input-channels", "feature", "output")
LEVELS: Mapping[str, str] = {v: v.split("-")[0] for v in VARIANTS}
#: The synthetic backbone: ResNet-26 layout at depth 8, channel-symmetric normalization.
BACKBONE_KWARGS: Mapping[str, object] = {"depth": 8, "width": 1, "mean": (0.5, 0.5, 0.5),
                                         "std": (0.25, 0.25, 0.25)}
_NOISE_SIGMA = (0.04, 0.08, 0.12, 0.17, 0.22)
_BLUR_SIGMA = (0.6, 0.8, 1.0, 1.3, 1.6)
_CONTRAST = (0.6, 0.5, 0.4, 0.3, 0.2)
_SPLIT_CODE = {"train": 1, "val": 2, "test": 3}
_TABLE_SEED = 20230127  # fixes shapes/textures of the world (not a run seed)


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorized HSV -> RGB; inputs ``(N,)`` in [0, 1]; returns ``(N, 3)``."""
    i = np.floor(h * 6).astype(int) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    table = np.stack([np.stack(c, 1) for c in
                      ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))], 0)
    return table[i, np.arange(len(h))]


def _shape_masks(kind: np.ndarray, u: np.ndarray, v: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Soft-free binary masks ``(N, S, S)`` of shape ``kind`` in rotated coords ``u, v``."""
    r = r[:, None, None]
    d = np.sqrt(u**2 + v**2)
    au, av = np.abs(u), np.abs(v)
    shapes = [
        d < r,                                                          # disk
        np.maximum(au, av) < 0.85 * r,                                  # square
        (v < 0.7 * r) & (v > -0.7 * r) & (au < (v + 0.7 * r) * 0.6),    # triangle
        (d < r) & (d > 0.55 * r),                                       # ring
        ((au < 0.3 * r) & (av < r)) | ((av < 0.3 * r) & (au < r)),      # cross
        (av < 0.35 * r) & (au < r),                                     # bar
        au + av < r,                                                    # diamond
        ((np.abs(u - v) < 0.35 * r) | (np.abs(u + v) < 0.35 * r)) & (np.maximum(au, av) < r),
        ((u - r / 2) ** 2 + v**2 < (r / 2.2) ** 2) | ((u + r / 2) ** 2 + v**2 < (r / 2.2) ** 2),
        (d < r) & (v > 0),                                              # half disk
    ]
    out = np.zeros(u.shape, dtype=bool)
    for k, m in enumerate(shapes):
        sel = kind == k
        if sel.any():
            out[sel] = m[sel]
    return out


def _texture_table(num_classes: int, subpops: int) -> np.ndarray:
    """``(K, P, 3)`` background grating (orientation, frequency, phase) per (class, subpop)."""
    rng = np.random.default_rng(_TABLE_SEED)
    theta = rng.uniform(0, math.pi, (num_classes, subpops))
    freq = rng.uniform(0.08, 0.3, (num_classes, subpops))
    phase = rng.uniform(0, 2 * math.pi, (num_classes, subpops))
    return np.stack([theta, freq, phase], -1)


def generate(
    labels: np.ndarray, subpops: np.ndarray, rng: np.random.Generator, size: int = IMAGE_SIZE
) -> torch.Tensor:
    """Images for given classes and subpopulations.

    Args:
        labels: ``(N,)`` classes in ``[0, NUM_CLASSES)``; subpops: ``(N,)`` in
            ``[0, 2 * SOURCE_SUBPOPS)``.
        rng: numpy generator (all randomness comes from it).
        size: side length.

    Returns:
        ``(N, 3, size, size)`` float32 in ``[0, 1]``.
    """
    n, k = len(labels), NUM_CLASSES
    tex = _texture_table(k, 2 * SOURCE_SUBPOPS)[labels, subpops]
    coords = (np.arange(size) - (size - 1) / 2) / (size / 2)  # [-1, 1]
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    # background: grey with a class/subpop grating (orientation, frequency jittered per image)
    theta = tex[:, 0] + rng.normal(0, 0.12, n)
    freq = tex[:, 1] * size * rng.uniform(0.85, 1.15, n)
    proj = xx[None] * np.cos(theta)[:, None, None] + yy[None] * np.sin(theta)[:, None, None]
    grating = np.sin(freq[:, None, None] * proj + tex[:, 2, None, None])
    base = rng.uniform(0.35, 0.65, (n, 1, 1, 1))
    img = base + 0.18 * grating[:, None] * np.array([1.0, 0.9, 0.8])[None, :, None, None]
    # the shape: class's shape and hue, random pose, contrast and saturation
    cx, cy = rng.uniform(-0.35, 0.35, n), rng.uniform(-0.35, 0.35, n)
    rot = rng.uniform(0, 2 * math.pi, n)
    rad = rng.uniform(0.3, 0.6, n)
    du, dv = xx[None] - cx[:, None, None], yy[None] - cy[:, None, None]
    c, s = np.cos(rot)[:, None, None], np.sin(rot)[:, None, None]
    mask = _shape_masks(labels, c * du + s * dv, -s * du + c * dv, rad)
    hue = (labels / k + rng.normal(0, 0.45 / k, n)) % 1.0
    rgb = _hsv_to_rgb(hue, rng.uniform(0.45, 0.95, n), rng.uniform(0.55, 1.0, n))
    alpha = rng.uniform(0.5, 1.0, (n, 1, 1, 1)) * mask[:, None]
    img = (1 - alpha) * img + alpha * rgb[:, :, None, None]
    img = img + rng.normal(0, 0.03, img.shape)
    return torch.from_numpy(np.clip(img, 0, 1).astype(np.float32))


def label_permutation(num_classes: int = NUM_CLASSES) -> np.ndarray:
    """The fixed derangement of the ``output`` variant: new label = ``perm[old label]``."""
    perm = np.random.default_rng(_TABLE_SEED + 1).permutation(num_classes)
    while np.any(perm == np.arange(num_classes)):
        perm = np.roll(perm, 1)  # deterministic fix-up to a derangement
    return perm


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kern = torch.exp(-(t**2) / (2 * sigma**2))
    kern = (kern / kern.sum()).to(x.dtype)
    c = x.shape[1]
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, kern.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, kern.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def apply_shift(
    x: torch.Tensor, y: np.ndarray, variant: str, severity: int, rng: np.random.Generator
) -> tuple[torch.Tensor, np.ndarray]:
    """Apply ``variant``'s pixel/label change (``feature`` changes the sampling, not pixels)."""
    s = severity - 1
    if variant == "input-noise":
        noise = torch.from_numpy(rng.normal(0, _NOISE_SIGMA[s], x.shape).astype(np.float32))
        x = (x + noise).clamp(0, 1)
    elif variant == "input-blur":
        x = _gaussian_blur(x, _BLUR_SIGMA[s]).clamp(0, 1)
    elif variant == "input-contrast":
        m = x.mean(dim=(1, 2, 3), keepdim=True)
        x = ((x - m) * _CONTRAST[s] + m).clamp(0, 1)
    elif variant == "input-channels":
        x = x[:, list(CHANNEL_PERMUTATION)].contiguous()
    elif variant == "output":
        y = label_permutation()[y]
    elif variant not in ("feature", "source"):
        raise ValueError(f"unknown synthetic variant {variant!r}; known: source, {VARIANTS}")
    return x, y


def _make_split(variant: str, n_per_class: int, request: LoadRequest, split: str) -> TensorImages:
    rng = np.random.default_rng([request.seed, _SPLIT_CODE[split], VARIANTS.index(variant) + 1
                                 if variant in VARIANTS else 0, request.severity])
    y = np.repeat(np.arange(NUM_CLASSES), n_per_class)
    first = SOURCE_SUBPOPS if variant == "feature" else 0
    sub = first + rng.integers(0, SOURCE_SUBPOPS, len(y))
    x = generate(y, sub, rng, request.image_size)
    x, y_new = apply_shift(x, y, variant, request.severity, rng)
    return TensorImages(x, y_new, groups=sub)


def load_synthetic(request: LoadRequest) -> TargetSplits:
    """Reader of the ``synthetic`` task (no files; ``request.data_root`` is ignored).

    ``variant`` is one of :data:`VARIANTS` or ``"source"``; per class ``train_n / 10`` train,
    ``val_per_class`` val and ``test_per_class`` (default 50) test images, all seeded by
    ``request.seed``.
    """
    variant = request.variant or "source"
    if variant != "source" and variant not in VARIANTS:
        raise ValueError(f"unknown synthetic variant {variant!r}; known: source, {VARIANTS}")
    per_class = request.train_n // NUM_CLASSES
    if per_class < 1:
        raise ValueError(f"train_n must be >= {NUM_CLASSES} (one per class); got {request.train_n}")
    test_pc = request.test_per_class or 50
    return TargetSplits(
        train=_make_split(variant, per_class, request, "train"),
        val=_make_split(variant, request.val_per_class, request, "val"),
        test=_make_split(variant, test_pc, request, "test"),
        num_classes=NUM_CLASSES,
        num_groups=2 * SOURCE_SUBPOPS,
        info={"source": "generated", "variant": variant, "severity": request.severity},
    )


@torch.no_grad()
def undo_channel_permutation(model: torch.nn.Module) -> None:
    """Permute the first convolution's input channels so the model on channel-permuted images
    computes exactly what it computed on the originals (needs channel-symmetric normalization)."""
    w = model.conv1.weight  # type: ignore[union-attr]
    # permuted input channel i holds original channel perm[i]: give it that channel's filters
    w.copy_(w[:, list(CHANNEL_PERMUTATION)].clone())


@torch.no_grad()
def undo_label_permutation(model: torch.nn.Module) -> None:
    """Permute the head's rows so the predicted label is ``perm[source prediction]``."""
    fc = model.fc  # type: ignore[union-attr]
    inverse = np.argsort(label_permutation())
    fc.weight.copy_(fc.weight[list(inverse)].clone())
    fc.bias.copy_(fc.bias[list(inverse)].clone())
