"""Built-in offline benchmark: procedural 32x32 colour images, a source model, three shift levels.

**The class is carried by shape alone.** Each image shows one shape (the class's shape: disk,
square, triangle, plus, bar, half-disk, dumbbell, L, T, five-petal flower) at a random position,
size and rotation. Everything else is a nuisance drawn independently of the label from one
seeded generator: the shape's colour (hue uniform on the colour wheel, random saturation, a
brightness offset from the background of random sign), its opacity, the background's grey level
and tint, and a background grating (orientation, frequency, phase, amplitude); pixel noise on
top. Images are quantized to the ``uint8`` grid (stored as float32 ``/ 255``), as CIFAR images
are, so the corruptions below run on ``uint8`` images exactly as CIFAR-10-C is built.

**Subpopulations are styles of a shape.** Each class has ``2 * SOURCE_SUBPOPS`` subpopulations;
subpopulation ``(class, p)`` draws its shape with a fixed fill style (solid, outline, striped, or
outline with a solid core; each class uses each style once, in a fixed random order) and a fixed
deformation (aspect ratio in [0.7, 1], shear in [-0.35, 0.35]). The source uses the first
``SOURCE_SUBPOPS``; the ``feature`` target the others: for every class, styles never seen *for
that class* (every style occurs in the source, for other classes), with the same nuisance
distribution, so the marginal low-level statistics barely move while the class-conditional
appearance does.

Target variants (each designed from its definition, never tuned for an ordering):

================== ======== =========================================================================
variant            level    definition
================== ======== =========================================================================
15 corruptions     input    source distribution, then :func:`realdata.data.corruptions.corrupt_uint8`
                            (``gaussian_noise`` ... ``jpeg_compression``, CIFAR-10-C constants, the
                            request's severity; the protocol uses 5) on the ``uint8`` images
input-channels     input    source distribution with the RGB channels permuted (fixed permutation)
feature            feature  held-out subpopulations (new shape styles) of every class
output             output   source distribution with labels permuted (fixed derangement)
================== ======== =========================================================================

The channel permutation is undone exactly by permuting the first convolution's input channels
(the backbone's normalization is channel-symmetric), and the label permutation by permuting the
head's rows: :func:`undo_channel_permutation` and :func:`undo_label_permutation` build those exact
solutions (the CNN analogues of claims C1 and C3). Because hue is independent of the class, a
channel permutation changes colours but no class evidence.

:data:`GENERATOR_VERSION` enters the source checkpoint's name and the task's reader version, so
a changed generator never reuses a cached model or stored records.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F

from realdata.data.base import LoadRequest, TargetSplits, TensorImages
from realdata.data.corruptions import CORRUPTIONS, CORRUPTIONS_VERSION, corrupt_uint8

__all__ = [
    "BACKBONE_KWARGS",
    "CHANNEL_PERMUTATION",
    "FILL_STYLES",
    "GENERATOR_VERSION",
    "LEVELS",
    "NUM_CLASSES",
    "PIXEL_VARIANTS",
    "QUICK_CORRUPTIONS",
    "READER_VERSION",
    "SHAPES",
    "SOURCE_SUBPOPS",
    "VARIANTS",
    "generate",
    "label_permutation",
    "load_synthetic",
    "shift_images",
    "style_table",
    "undo_channel_permutation",
    "undo_label_permutation",
]

#: Bumped whenever :func:`generate` or a shift changes its output (v1: hue and grating tied to
#: the class; v2: shape alone carries the class, CIFAR-10-C corruptions as input targets).
GENERATOR_VERSION = 2
#: The task's reader version: the generator's and the corruptions' versions together.
READER_VERSION = f"synthetic-{GENERATOR_VERSION}+corruptions-{CORRUPTIONS_VERSION}"
NUM_CLASSES = 10
SOURCE_SUBPOPS = 2
IMAGE_SIZE = 32
SHAPES = ("disk", "square", "triangle", "plus", "bar", "half-disk", "dumbbell", "L", "T",
          "flower")
FILL_STYLES = ("solid", "outline", "striped", "outline+core")
#: The fixed RGB permutation of ``input-channels``: new channel i = old channel perm[i].
CHANNEL_PERMUTATION = (2, 0, 1)
#: Variants that change pixels of source-distribution images (pairable with their clean image).
PIXEL_VARIANTS: tuple[str, ...] = (*CORRUPTIONS, "input-channels")
VARIANTS: tuple[str, ...] = (*PIXEL_VARIANTS, "feature", "output")
#: The ``--quick`` corruptions, one per family: noise, blur, weather, digital.
QUICK_CORRUPTIONS: tuple[str, ...] = ("gaussian_noise", "defocus_blur", "fog", "contrast")
LEVELS: Mapping[str, str] = {**{v: "input" for v in PIXEL_VARIANTS}, "feature": "feature",
                             "output": "output"}
#: The synthetic backbone: ResNet-26 layout at depth 8, channel-symmetric normalization.
BACKBONE_KWARGS: Mapping[str, object] = {"depth": 8, "width": 1, "mean": (0.5, 0.5, 0.5),
                                         "std": (0.25, 0.25, 0.25)}
_SPLIT_CODE = {"train": 1, "val": 2, "test": 3}
_TABLE_SEED = 20230127  # fixes the styles of the world (not a run seed)


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorized HSV -> RGB; inputs ``(N,)`` in [0, 1]; returns ``(N, 3)``."""
    i = np.floor(h * 6).astype(int) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    table = np.stack([np.stack(c, 1) for c in
                      ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))], 0)
    return table[i, np.arange(len(h))]


def _shape_masks(kind: np.ndarray, u: np.ndarray, v: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Binary masks ``(N, S, S)`` of shape ``kind`` (index into :data:`SHAPES`) in the shape's
    own coordinates ``u, v`` (each ``(N, S, S)``) with size ``r`` ``(N,)``."""
    r = r[:, None, None]
    d = np.sqrt(u**2 + v**2)
    au, av = np.abs(u), np.abs(v)
    phi = np.arctan2(v, u)
    shapes = [
        d < r,                                                              # disk
        np.maximum(au, av) < 0.8 * r,                                       # square
        (v > -0.5 * r) & (math.sqrt(3) * au + v < r),                       # triangle
        ((au < 0.3 * r) & (av < r)) | ((av < 0.3 * r) & (au < r)),          # plus
        (av < 0.3 * r) & (au < r),                                          # bar
        (d < r) & (v > -0.2 * r),                                           # half-disk
        ((u - 0.5 * r) ** 2 + v**2 < (0.48 * r) ** 2)
        | ((u + 0.5 * r) ** 2 + v**2 < (0.48 * r) ** 2)
        | ((au < 0.5 * r) & (av < 0.15 * r)),                               # dumbbell
        (au < r) & (av < r) & ((u < -0.35 * r) | (v < -0.35 * r)),          # L
        (au < r) & (av < r) & ((v > 0.4 * r) | (au < 0.3 * r)),             # T
        d < r * (0.6 + 0.4 * np.cos(5 * phi)),                              # flower
    ]
    out = np.zeros(u.shape, dtype=bool)
    for k, m in enumerate(shapes):
        sel = kind == k
        if sel.any():
            out[sel] = m[sel]
    return out


def style_table(num_classes: int = NUM_CLASSES, subpops: int = 2 * SOURCE_SUBPOPS) -> np.ndarray:
    """``(K, P, 3)`` per (class, subpopulation): fill style index, aspect ratio, shear.

    Each class's subpopulations take distinct fill styles (a fixed random order per class)."""
    rng = np.random.default_rng(_TABLE_SEED)
    if subpops > len(FILL_STYLES):
        raise ValueError(f"at most {len(FILL_STYLES)} subpopulations (one per fill style)")
    fill = np.stack([rng.permutation(len(FILL_STYLES))[:subpops]
                     for _ in range(num_classes)]).astype(np.float64)
    aspect = rng.uniform(0.7, 1.0, (num_classes, subpops))
    shear = rng.uniform(-0.35, 0.35, (num_classes, subpops))
    return np.stack([fill, aspect, shear], -1)


def _erode(mask: torch.Tensor, px: int) -> torch.Tensor:
    """Binary erosion of ``(N, S, S)`` masks by a ``(2 px + 1)`` square."""
    if px <= 0:
        return mask
    inv = (~mask).float()[:, None]
    return ~(F.max_pool2d(inv, 2 * px + 1, stride=1, padding=px)[:, 0] > 0)


def _apply_fill(mask: np.ndarray, fill: np.ndarray, u: np.ndarray, size: int) -> np.ndarray:
    """Masks ``(N, S, S)`` rendered in their fill style (:data:`FILL_STYLES` index per image)."""
    m = torch.from_numpy(mask)
    stroke = max(1, round(size / 16))
    inner = _erode(m, stroke).numpy()
    core = _erode(m, 2 * stroke).numpy()
    outline = mask & ~inner
    stripes = mask & (np.floor(u * size / (3.0 * stroke)) % 2 == 0)
    styles = [mask, outline, stripes, outline | core]
    out = np.zeros_like(mask)
    for k, s in enumerate(styles):
        sel = fill == k
        if sel.any():
            out[sel] = s[sel]
    return out


def _nuisance(labels: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-image nuisance factors ``(N,)`` each; drawn without looking at ``labels``."""
    n = len(labels)
    return {
        "hue": rng.uniform(0, 1, n), "sat": rng.uniform(0.3, 1.0, n),
        "bg_level": rng.uniform(0.25, 0.75, n), "bg_hue": rng.uniform(0, 1, n),
        "bg_sat": rng.uniform(0.0, 0.3, n),
        "theta": rng.uniform(0, math.pi, n), "freq": rng.uniform(0.08, 0.3, n),
        "phase": rng.uniform(0, 2 * math.pi, n), "amp": rng.uniform(0.05, 0.2, n),
        "contrast": rng.uniform(0.25, 0.45, n), "sign": rng.choice([-1.0, 1.0], n),
        "alpha": rng.uniform(0.7, 1.0, n),
    }


def generate(
    labels: np.ndarray, subpops: np.ndarray, rng: np.random.Generator, size: int = IMAGE_SIZE,
    *, return_factors: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, dict[str, np.ndarray]]:
    """Images for given classes and subpopulations (see the module doc).

    Args:
        labels: ``(N,)`` classes in ``[0, NUM_CLASSES)``; subpops: ``(N,)`` in
            ``[0, 2 * SOURCE_SUBPOPS)``.
        rng: numpy generator (all randomness comes from it).
        size: side length.
        return_factors: also return the nuisance factors used (``name -> (N,)``).

    Returns:
        ``(N, 3, size, size)`` float32 on the ``uint8`` grid (values ``k / 255``).
    """
    labels, subpops = np.asarray(labels), np.asarray(subpops)
    n = len(labels)
    f = _nuisance(labels, rng)
    style = style_table()[labels, subpops]
    coords = (np.arange(size) - (size - 1) / 2) / (size / 2)  # [-1, 1]
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    # background: tinted grey plus a grating, both independent of the class
    bg_rgb = _hsv_to_rgb(f["bg_hue"], f["bg_sat"], np.ones(n))
    bg_rgb = bg_rgb / bg_rgb.mean(1, keepdims=True) * f["bg_level"][:, None]
    proj = (xx[None] * np.cos(f["theta"])[:, None, None]
            + yy[None] * np.sin(f["theta"])[:, None, None])
    grating = np.sin(f["freq"][:, None, None] * size * proj + f["phase"][:, None, None])
    img = bg_rgb[:, :, None, None] + (f["amp"][:, None, None] * grating)[:, None]
    # the shape: class's shape in its subpopulation's style, random pose
    cx, cy = rng.uniform(-0.25, 0.25, n), rng.uniform(-0.25, 0.25, n)
    rot = rng.uniform(0, 2 * math.pi, n)
    rad = rng.uniform(0.5, 0.75, n)
    du, dv = xx[None] - cx[:, None, None], yy[None] - cy[:, None, None]
    c, s = np.cos(rot)[:, None, None], np.sin(rot)[:, None, None]
    u, v = c * du + s * dv, -s * du + c * dv
    aspect, shear = style[:, 1, None, None], style[:, 2, None, None]
    v = v / aspect
    u = u - shear * v
    mask = _apply_fill(_shape_masks(labels, u, v, rad), style[:, 0].astype(int), u, size)
    value = f["bg_level"] + f["sign"] * f["contrast"]
    value = np.where((value > 1.0) | (value < 0.05), f["bg_level"] - f["sign"] * f["contrast"],
                     value)
    rgb = _hsv_to_rgb(f["hue"], f["sat"], np.ones(n))
    rgb = rgb / np.maximum(rgb.mean(1, keepdims=True), 1e-6) * value[:, None]
    alpha = f["alpha"][:, None, None, None] * mask[:, None]
    img = (1 - alpha) * img + alpha * rgb[:, :, None, None]
    img = img + rng.normal(0, 0.03, img.shape)
    x8 = np.round(np.clip(img, 0, 1) * 255)
    out = torch.from_numpy((x8 / 255).astype(np.float32))
    return (out, f) if return_factors else out


def label_permutation(num_classes: int = NUM_CLASSES) -> np.ndarray:
    """The fixed derangement of the ``output`` variant: new label = ``perm[old label]``."""
    perm = np.random.default_rng(_TABLE_SEED + 1).permutation(num_classes)
    while np.any(perm == np.arange(num_classes)):
        perm = np.roll(perm, 1)  # deterministic fix-up to a derangement
    return perm


def _check_variant(variant: str) -> None:
    if variant != "source" and variant not in VARIANTS:
        raise ValueError(f"unknown synthetic variant {variant!r}; known: source, "
                         f"{', '.join(VARIANTS)}")


def shift_images(x: torch.Tensor, variant: str, severity: int, seed: int) -> torch.Tensor:
    """The pixel change of a :data:`PIXEL_VARIANTS` target on source-distribution images.

    Args:
        x: ``(N, 3, H, W)`` float32 on the ``uint8`` grid (as :func:`generate` returns).
        variant: a corruption name or ``"input-channels"``; ``"source"``, ``"feature"`` and
            ``"output"`` change no pixel (``x`` is returned unchanged).
        severity: corruption severity 1..5.
        seed: seeds the corruption's random draws.

    Returns:
        ``(N, 3, H, W)`` float32: a corruption is applied to ``round(255 x)`` as ``uint8`` with
        :func:`realdata.data.corruptions.corrupt_uint8` (truncating, as the published files)
        and divided by 255.
    """
    _check_variant(variant)
    if variant == "input-channels":
        return x[:, list(CHANNEL_PERMUTATION)].contiguous()
    if variant in CORRUPTIONS:
        x8 = torch.round(x * 255).clamp(0, 255).to(torch.uint8)
        return corrupt_uint8(x8, variant, severity, seed=seed).float() / 255
    return x


def _make_split(variant: str, n_per_class: int, request: LoadRequest, split: str) -> TensorImages:
    code = VARIANTS.index(variant) + 1 if variant in VARIANTS else 0
    rng = np.random.default_rng([request.seed, _SPLIT_CODE[split], code, request.severity])
    y = np.repeat(np.arange(NUM_CLASSES), n_per_class)
    first = SOURCE_SUBPOPS if variant == "feature" else 0
    sub = first + rng.integers(0, SOURCE_SUBPOPS, len(y))
    x = generate(y, sub, rng, request.image_size)
    x = shift_images(x, variant, request.severity, int(rng.integers(0, 2**31 - 1)))  # type: ignore[arg-type]
    y_new = label_permutation()[y] if variant == "output" else y
    return TensorImages(x, y_new, groups=sub)


def load_synthetic(request: LoadRequest) -> TargetSplits:
    """Reader of the ``synthetic`` task (no files; ``request.data_root`` is ignored).

    ``variant`` is one of :data:`VARIANTS` or ``"source"``; per class ``train_n / 10`` train,
    ``val_per_class`` val and ``test_per_class`` (default 50) test images, all seeded by
    ``request.seed``. Corruption targets use ``request.severity``.
    """
    variant = request.variant or "source"
    _check_variant(variant)
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
        info={"source": "generated", "generator_version": GENERATOR_VERSION,
              "variant": variant, "severity": request.severity},
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
