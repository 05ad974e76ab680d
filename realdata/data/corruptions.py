"""The CIFAR-10-C / ImageNet-C corruption families, batched, seeded, numpy/scipy/torch only.

Hendrycks & Dietterich (ICLR 2019) define 15 standard corruptions in four families (noise, blur,
weather, digital) plus 4 extra ones, each at severities 1..5. This module follows the CIFAR-10-C
generator (``make_cifar_c.py``) operation by operation on batches ``(N, 3, H, W)``, with the
*published severity constants* (two profiles: ``"cifar"`` from the CIFAR-10-C generator, reference
size 32, and ``"imagenet"`` from the ImageNet-C generator, reference size 224; constants measured in
pixels are scaled by ``H / reference size`` for other sizes). The reference's quirks are kept where
they change the output, each named in a comment marked ``Reference quirk``: glass blur copies
instead of swapping, zoom blur zooms off-centre, the uint8 conversions truncate, water spatter
shades with an edge/distance map, and so on.

Values. Each corruption computes, in the reference's dtype (float64, or float32 where the reference
converts to float32), the value the reference hands to ``np.uint8``: :func:`corrupt_uint8` truncates
it exactly as the reference does (the published files), :func:`corrupt` returns it divided by 255
as float32 in ``[0, 1]``. Corruptions whose reference runs on a ``uint8`` image (motion blur, snow's
streaks, JPEG, pixelate) first round float inputs to the ``uint8`` grid; ``uint8`` inputs are exact.

Everything random is drawn from one ``numpy.random.default_rng(seed)`` in batches (the reference
draws per image from numpy's global generator), so ``corrupt(x, name, severity, seed=s)`` is a pure
function of its arguments with the reference's distributions but not its random streams.

Where the reference used tools we do not depend on, we reimplement them from their definitions:
ImageMagick's motion blur (integer-offset one-sided Gaussian line kernel, edge pixels repeated,
8-bit rounding), OpenCV's Canny / chamfer distance transform / histogram equalization / box blur /
``filter2D`` / ``warpAffine`` (water spatter, defocus kernel, elastic), scikit-image's HSV
conversion and Gaussian filter, scipy's order-1 ``zoom``. The frost photographs are not shipped:
frost mixes a procedural ice texture with the published weights. Remaining differences are listed
in the README (section "No CIFAR-10-C?").
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from PIL import Image

__all__ = [
    "ALL_CORRUPTIONS",
    "CORRUPTIONS",
    "CORRUPTIONS_VERSION",
    "EXTRA_CORRUPTIONS",
    "FAMILIES",
    "PROFILES",
    "SEVERITY_CONSTANTS",
    "corrupt",
    "corrupt_uint8",
    "require_corruption",
    "severity_constant",
    "validate_corruption",
    "validate_severity",
]

#: Bumped whenever the output of :func:`corrupt` changes for some input (recorded by generators,
#: so files written by an older version are never mixed with new ones).
CORRUPTIONS_VERSION = 2

#: The 15 standard corruptions, in the published order.
CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise", "shot_noise", "impulse_noise",
    "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness",
    "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)  # fmt: skip
#: The 4 extra (held-out) corruptions.
EXTRA_CORRUPTIONS: tuple[str, ...] = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
ALL_CORRUPTIONS: tuple[str, ...] = CORRUPTIONS + EXTRA_CORRUPTIONS

#: Family of each corruption (the paper's grouping; extras in their natural family).
FAMILIES: Mapping[str, tuple[str, ...]] = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur", "gaussian_blur"),
    "weather": ("snow", "frost", "fog", "brightness", "spatter"),
    "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression", "saturate"),
}

#: Reference image side of each profile (pixel-valued constants are relative to it).
PROFILES: Mapping[str, int] = {"cifar": 32, "imagenet": 224}


def _arange(stop: float, step: float) -> tuple[float, ...]:
    return tuple(float(v) for v in np.arange(1.0, stop, step))


# Published constants, one entry per severity 1..5 (see the module docstring for units).
SEVERITY_CONSTANTS: Mapping[str, Mapping[str, tuple[Any, ...]]] = {
    "cifar": {
        "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
        "shot_noise": (500, 250, 100, 75, 50),
        "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),
        "speckle_noise": (0.06, 0.1, 0.12, 0.16, 0.2),
        "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1.0),
        "glass_blur": ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
        "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),
        "motion_blur": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),
        "zoom_blur": (_arange(1.06, 0.01), _arange(1.11, 0.01), _arange(1.16, 0.01),
                      _arange(1.21, 0.01), _arange(1.26, 0.01)),
        "fog": ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),
        "frost": ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)),
        "snow": ((0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
                 (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9), (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
                 (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)),
        "spatter": ((0.62, 0.1, 0.7, 0.7, 0.5, 0), (0.65, 0.1, 0.8, 0.7, 0.5, 0),
                    (0.65, 0.3, 1, 0.69, 0.5, 0), (0.65, 0.1, 0.7, 0.69, 0.6, 1),
                    (0.65, 0.1, 0.5, 0.68, 0.6, 1)),
        "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
        "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),
        "saturate": ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)),
        "jpeg_compression": (80, 65, 58, 50, 40),
        "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),
        "elastic_transform": tuple(
            (32 * a, 32 * s, 32 * d)
            for a, s, d in ((0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06),
                            (0.1, 0.04, 0.05), (0.1, 0.03, 0.03))
        ),
    },
    "imagenet": {
        "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
        "shot_noise": (60, 25, 12, 5, 3),
        "impulse_noise": (0.03, 0.06, 0.09, 0.17, 0.27),
        "speckle_noise": (0.15, 0.2, 0.35, 0.45, 0.6),
        "gaussian_blur": (1, 2, 3, 4, 6),
        "glass_blur": ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)),
        "defocus_blur": ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)),
        "motion_blur": ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),
        "zoom_blur": (_arange(1.11, 0.01), _arange(1.16, 0.01), _arange(1.21, 0.02),
                      _arange(1.26, 0.02), _arange(1.31, 0.03)),
        "fog": ((1.5, 2), (2, 2), (2.5, 1.7), (2.5, 1.5), (3, 1.4)),
        "frost": ((1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)),
        "snow": ((0.1, 0.3, 3, 0.5, 10, 4, 0.8), (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
                 (0.55, 0.3, 4, 0.9, 12, 8, 0.7), (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
                 (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55)),
        "spatter": ((0.65, 0.3, 4, 0.69, 0.6, 0), (0.65, 0.3, 3, 0.68, 0.6, 0),
                    (0.65, 0.3, 2, 0.68, 0.5, 0), (0.65, 0.3, 1, 0.65, 1.5, 1),
                    (0.67, 0.4, 1, 0.65, 1.5, 1)),
        "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
        "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),
        "saturate": ((0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2)),
        "jpeg_compression": (25, 18, 15, 10, 7),
        "pixelate": (0.6, 0.5, 0.4, 0.3, 0.25),
        # The reference writes 244 (not 224) here; kept as published.
        "elastic_transform": tuple(
            (244 * a, 244 * s, 244 * d)
            for a, s, d in ((2, 0.7, 0.1), (2, 0.08, 0.2), (0.05, 0.01, 0.02),
                            (0.07, 0.01, 0.02), (0.12, 0.01, 0.02))
        ),
    },
}  # fmt: skip


def validate_corruption(name: str) -> str:
    """Return ``name`` if it is one of :data:`ALL_CORRUPTIONS`, else raise ``ValueError``."""
    if name not in ALL_CORRUPTIONS:
        raise ValueError(
            f"unknown corruption {name!r}; expected one of the 15 standard "
            f"{', '.join(CORRUPTIONS)} or the 4 extra {', '.join(EXTRA_CORRUPTIONS)}"
        )
    return name


def require_corruption(variant: str | None, task: str) -> str:
    """The corruption named by a task's ``variant``: ``ValueError`` if it is missing or unknown."""
    if variant is None:
        raise ValueError(f"{task} needs a corruption variant, one of {', '.join(ALL_CORRUPTIONS)}")
    return validate_corruption(variant)


def validate_severity(severity: int) -> int:
    """Return ``severity`` if it is an int in 1..5, else raise ``ValueError``."""
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)):
        raise ValueError(f"severity must be an integer in 1..5; got {severity!r}")
    if not 1 <= int(severity) <= 5:
        raise ValueError(f"severity must be in 1..5; got {severity}")
    return int(severity)


def severity_constant(name: str, severity: int, profile: str = "cifar") -> Any:
    """The published constant of corruption ``name`` at ``severity`` for ``profile``."""
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {sorted(PROFILES)}; got {profile!r}")
    return SEVERITY_CONSTANTS[profile][validate_corruption(name)][validate_severity(severity) - 1]


# ----------------------------------------------------------------------------------- helpers
# Arrays: numpy, batch first. Images (N, C, H, W); single-channel maps (N, H, W).


def _fold(i: np.ndarray, n: int, mode: str) -> np.ndarray:
    """Map integer indices ``i`` (any range) into ``0..n-1`` by the border rule ``mode``.

    ``"nearest"``: edge repeated (scipy ``nearest``, OpenCV ``BORDER_REPLICATE``, ImageMagick's
    edge virtual pixels); ``"mirror"``: reflect about the edge pixel without repeating it
    (OpenCV ``BORDER_REFLECT_101``); ``"reflect"``: half-sample symmetric, edge repeated (scipy
    ``reflect``)."""
    i = np.asarray(i)
    if mode == "nearest":
        return np.clip(i, 0, n - 1)
    if mode == "mirror":
        if n == 1:
            return np.zeros_like(i)
        p = 2 * (n - 1)
        j = np.mod(i, p)
        return np.where(j >= n, p - j, j)
    if mode == "reflect":
        p = 2 * n
        j = np.mod(i, p)
        return np.where(j >= n, p - 1 - j, j)
    raise ValueError(mode)  # pragma: no cover - internal


def _correlate(x: np.ndarray, k: np.ndarray, mode: str) -> np.ndarray:
    """2-D correlation of the last two axes of ``x`` with the odd square kernel ``k``."""
    r = k.shape[0] // 2
    h, w = x.shape[-2:]
    xp = x[..., _fold(np.arange(-r, h + r), h, mode), :][..., _fold(np.arange(-r, w + r), w, mode)]
    out = np.zeros(x.shape, dtype=np.result_type(x, k))
    for a in range(k.shape[0]):
        for b in range(k.shape[1]):
            if k[a, b] != 0:
                out += k[a, b] * xp[..., a : a + h, b : b + w]
    return out


def _correlate1d(x: np.ndarray, k: np.ndarray, axis: int, mode: str) -> np.ndarray:
    r = len(k) // 2
    n = x.shape[axis]
    xp = np.take(x, _fold(np.arange(-r, n + r), n, mode), axis=axis)
    out = np.zeros(x.shape, dtype=np.result_type(x, k))
    for a in range(len(k)):
        out += k[a] * np.take(xp, np.arange(a, a + n), axis=axis)
    return out


def _gauss1d(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """scipy's Gaussian kernel: radius ``int(truncate * sigma + 0.5)``, unit sum."""
    r = int(truncate * float(sigma) + 0.5)
    if sigma <= 1e-15 or r == 0:
        return np.ones(1)
    i = np.arange(-r, r + 1)
    k = np.exp(-0.5 / float(sigma) ** 2 * i**2)
    return k / k.sum()


def _gaussian(x: np.ndarray, sigma: float, mode: str = "nearest", truncate: float = 4.0):
    """scikit-image ``gaussian`` (= scipy ``gaussian_filter``) over the last two axes."""
    k = _gauss1d(sigma, truncate)
    if len(k) == 1:
        return x.astype(np.result_type(x, np.float64), copy=True)
    return _correlate1d(_correlate1d(x, k, -2, mode), k, -1, mode)


def _bilinear(x: np.ndarray, rows: np.ndarray, cols: np.ndarray, mode: str) -> np.ndarray:
    """Sample ``x`` ``(N, C, H, W)`` at float positions ``rows, cols`` ``(N, h, w)`` (float64).

    Order-1 interpolation between the four neighbours, each neighbour index folded by ``mode``
    (see :func:`_fold`); returns ``(N, C, h, w)`` float64."""
    n, _, h, w = x.shape
    r0 = np.floor(rows)
    c0 = np.floor(cols)
    tr = (rows - r0)[:, None]
    tc = (cols - c0)[:, None]
    r0 = r0.astype(np.int64)
    c0 = c0.astype(np.int64)
    b = np.arange(n)[:, None, None]

    def at(rr, cc):
        v = x[b, :, _fold(rr, h, mode), _fold(cc, w, mode)]  # (N, h, w, C)
        return np.moveaxis(v, -1, 1).astype(np.float64)

    return ((1 - tr) * ((1 - tc) * at(r0, c0) + tc * at(r0, c0 + 1))
            + tr * ((1 - tc) * at(r0 + 1, c0) + tc * at(r0 + 1, c0 + 1)))  # fmt: skip


def _clipped_zoom_positions(n: int, z: float) -> np.ndarray:
    """Source positions (length ``n``) of the reference's ``clipped_zoom`` along one axis.

    Reference quirk: it crops ``ch = ceil(n / z)`` pixels starting at ``(n - ch) // 2``, zooms the
    crop with scipy's order-1 ``zoom`` (output ``round(ch * z)`` pixels, output ``o`` reading crop
    position ``o * (ch - 1) / (out - 1)``, corners aligned) and keeps ``n`` pixels from
    ``(out - n) // 2``. The zoom is therefore off-centre by up to a pixel, and factors close to 1
    (1.01 at 32 px) are no zoom at all."""
    ch = int(np.ceil(n / z))
    top = (n - ch) // 2
    out = round(ch * z)
    ratio = (ch - 1) / (out - 1) if out > 1 else 1.0
    trim = (out - n) // 2
    return top + (np.arange(n) + trim) * ratio


def _clipped_zoom(x: np.ndarray, z: float) -> np.ndarray:
    """The reference's ``clipped_zoom`` of ``x`` ``(N, C, H, W)`` by ``z`` (float64 result).

    Separable: columns first, then rows, the same arithmetic as :func:`_bilinear`."""
    h, w = x.shape[-2:]

    def axis_weights(pos: np.ndarray, n: int):
        i0 = np.floor(pos)
        t = pos - i0
        i0 = i0.astype(np.int64)
        return _fold(i0, n, "nearest"), _fold(i0 + 1, n, "nearest"), t

    c0, c1, tc = axis_weights(_clipped_zoom_positions(w, z), w)
    r0, r1, tr = axis_weights(_clipped_zoom_positions(h, z), h)
    xf = x.astype(np.float64)
    cols = (1 - tc) * xf[..., c0] + tc * xf[..., c1]
    return (1 - tr)[:, None] * cols[..., r0, :] + tr[:, None] * cols[..., r1, :]


def _im_motion_blur(x8: np.ndarray, radius: float, sigma: float, angles: np.ndarray) -> np.ndarray:
    """ImageMagick's ``MotionBlurImage`` on 8-bit images ``(N, C, H, W)``, one angle per image.

    ``2 * ceil(radius) + 1`` taps ``i = 0, 1, ...`` with weights ``exp(-i^2 / (2 sigma^2))``
    (normalized) at the integer offsets ``(ceil(i cos a - 0.5), ceil(i sin a - 0.5))``
    (columns, rows), so the blur is one-sided; pixels past the edge repeat the edge; the result is
    rounded back to 8 bits (PNG round trip). Returns integer-valued float64."""
    width = int(2 * np.ceil(radius) + 1) if radius > 1e-12 else 3
    sig = max(float(sigma), 1e-12)
    i = np.arange(width, dtype=np.float64)
    k = np.exp(-(i * i) / (2.0 * sig * sig))
    k = k / k.sum()
    a = np.deg2rad(np.asarray(angles, dtype=np.float64))
    px, py = width * np.sin(a), width * np.cos(a)
    hyp = np.hypot(px, py)
    n, _, h, w = x8.shape
    b = np.arange(n)[:, None, None]
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    acc = np.zeros(x8.shape, dtype=np.float64)
    for j in range(width):
        ox = np.ceil(j * py / hyp - 0.5).astype(np.int64)[:, None, None]
        oy = np.ceil(j * px / hyp - 0.5).astype(np.int64)[:, None, None]
        v = x8[b, :, np.clip(yy + oy, 0, h - 1), np.clip(xx + ox, 0, w - 1)]
        acc += k[j] * np.moveaxis(v, -1, 1)
    return np.clip(np.floor(acc + 0.5), 0, 255)


def _plasma(rng: np.random.Generator, n: int, size: int, decay: float) -> np.ndarray:
    """``(n, m, m)`` diamond-square fractal heightmaps in ``[0, 1]``, ``m`` = next power of 2."""
    m = 1 << max(int(np.ceil(np.log2(max(size, 2)))), 1)
    a = np.zeros((n, m, m))
    step, wibble = m, 100.0
    while step >= 2:
        half = step // 2
        corners = a[:, 0:m:step, 0:m:step]
        sq = corners + np.roll(corners, -1, axis=1)
        sq = sq + np.roll(sq, -1, axis=2)
        a[:, half:m:step, half:m:step] = sq / 4 + wibble * rng.uniform(-wibble, wibble, sq.shape)
        centres = a[:, half:m:step, half:m:step]
        corners = a[:, 0:m:step, 0:m:step]
        s1 = centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=2)
        a[:, 0:m:step, half:m:step] = s1 / 4 + wibble * rng.uniform(-wibble, wibble, s1.shape)
        s2 = centres + np.roll(centres, 1, axis=2) + corners + np.roll(corners, -1, axis=1)
        a[:, half:m:step, 0:m:step] = s2 / 4 + wibble * rng.uniform(-wibble, wibble, s2.shape)
        step //= 2
        wibble /= decay
    a -= a.min(axis=(1, 2), keepdims=True)
    a /= np.maximum(a.max(axis=(1, 2), keepdims=True), 1e-12)
    return a


def _rgb2hsv(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """scikit-image's ``rgb2hsv`` on ``(N, 3, H, W)``: ``(h, s, v)`` each ``(N, H, W)``.

    Grey pixels get hue 0 and saturation 0; where two channels tie for the maximum, blue wins
    over green and green over red (the order in which scikit-image assigns the hue)."""
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    v = x.max(axis=1)
    delta = v - x.min(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(delta == 0, 0.0, delta / v)
        hue = np.where(r == v, (g - b) / delta, 0.0)
        hue = np.where(g == v, 2.0 + (b - r) / delta, hue)
        hue = np.where(b == v, 4.0 + (r - g) / delta, hue)
    hue = np.where(delta == 0, 0.0, (hue / 6.0) % 1.0)
    return hue, s, v


def _hsv2rgb(hue: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """scikit-image's ``hsv2rgb``: sector ``floor(6 h) mod 6`` picks among v, p, q, t."""
    hi = np.floor(hue * 6)
    f = hue * 6 - hi
    p = v * (1 - s)
    q = v * (1 - f * s)
    t = v * (1 - (1 - f) * s)
    sector = hi.astype(np.uint8) % 6
    table = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = np.zeros((hue.shape[0], 3, *hue.shape[1:]))
    for k, rgb in enumerate(table):
        sel = (sector == k)[:, None]
        out = np.where(sel, np.stack(rgb, axis=1), out)
    return out


def _to8(x: np.ndarray) -> np.ndarray:
    """The ``uint8`` image a float input in ``[0, 1]`` stands for (exact for ``uint8`` inputs)."""
    return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)


def _via_pil(x: np.ndarray, fn: Callable[[Image.Image], Image.Image]) -> np.ndarray:
    """Apply a PIL operation image by image to the 8-bit images; values on the 0..255 scale."""
    arr = _to8(x).transpose(0, 2, 3, 1)
    out = np.stack([np.asarray(fn(Image.fromarray(im)).convert("RGB")) for im in arr])
    return out.transpose(0, 3, 1, 2).astype(np.float64)


# OpenCV operations used by the water spatter and elastic transform, on batches (N, H, W).


def _cv_canny(img: np.ndarray, low: int, high: int) -> np.ndarray:
    """OpenCV ``Canny(img, low, high)`` (3x3 Sobel, L1 magnitude) on uint8 maps: bool edges.

    Sobel with the edge repeated; a pixel is a candidate when its magnitude exceeds ``low`` and
    is a maximum along the gradient direction (sector test with tan 22.5 deg in OpenCV's 15-bit
    fixed point; magnitudes past the border count as 0); candidates connected (8-neighbours) to
    one above ``high`` are edges."""
    p = img.astype(np.int64)[:, _fold(np.arange(-1, img.shape[1] + 1), img.shape[1], "nearest")]
    p = p[:, :, _fold(np.arange(-1, img.shape[2] + 1), img.shape[2], "nearest")]
    gx = (p[:, :-2, 2:] + 2 * p[:, 1:-1, 2:] + p[:, 2:, 2:]
          - p[:, :-2, :-2] - 2 * p[:, 1:-1, :-2] - p[:, 2:, :-2])  # fmt: skip
    gy = (p[:, 2:, :-2] + 2 * p[:, 2:, 1:-1] + p[:, 2:, 2:]
          - p[:, :-2, :-2] - 2 * p[:, :-2, 1:-1] - p[:, :-2, 2:])  # fmt: skip
    ax, ay = np.abs(gx), np.abs(gy)
    m = ax + ay
    mp = np.pad(m, ((0, 0), (1, 1), (1, 1)))
    left, right = mp[:, 1:-1, :-2], mp[:, 1:-1, 2:]
    up, down = mp[:, :-2, 1:-1], mp[:, 2:, 1:-1]
    ul, ur, dl, dr = mp[:, :-2, :-2], mp[:, :-2, 2:], mp[:, 2:, :-2], mp[:, 2:, 2:]
    tg22 = ax * 13573  # round(tan(22.5 deg) * 2^15)
    yv = ay << 15
    horiz = yv < tg22
    vert = ~horiz & (yv > tg22 + (ax << 16))
    diag = ~horiz & ~vert
    same = (gx ^ gy) >= 0
    cand = m > low
    cand &= ((horiz & (m > left) & (m >= right)) | (vert & (m > up) & (m >= down))
             | (diag & same & (m > ul) & (m > dr)) | (diag & ~same & (m > ur) & (m > dl)))  # fmt: skip
    edges = cand & (m > high)
    while True:
        e = np.pad(edges, ((0, 0), (1, 1), (1, 1)))
        near = np.zeros_like(edges)
        for a in range(3):
            for b in range(3):
                near |= e[:, a : a + edges.shape[1], b : b + edges.shape[2]]
        grown = edges | (near & cand)
        if np.array_equal(grown, edges):
            return edges
        edges = grown


def _cv_distance_l2_5(nonzero: np.ndarray) -> np.ndarray:
    """OpenCV ``distanceTransform(.., DIST_L2, 5)``: 5x5 chamfer distance to the nearest zero.

    Steps 1, 1.4 and 2.1969 (float32) in 16-bit fixed point, a forward and a backward pass;
    a map without zeros gets a huge distance. Returns float32."""
    A, B, C = 65536, 91750, 143976
    n, h, w = nonzero.shape
    big = 1 << 29
    d = np.full((n, h + 4, w + 4), big, dtype=np.int64)
    fwd = ((-2, -1, C), (-2, 1, C), (-1, -2, C), (-1, -1, B), (-1, 0, A), (-1, 1, B), (-1, 2, C),
           (0, -1, A))  # fmt: skip
    for i in range(2, h + 2):
        for j in range(2, w + 2):
            t = np.full(n, big, dtype=np.int64)
            for di, dj, c in fwd:
                t = np.minimum(t, d[:, i + di, j + dj] + c)
            d[:, i, j] = np.where(nonzero[:, i - 2, j - 2], t, 0)
    for i in range(h + 1, 1, -1):
        for j in range(w + 1, 1, -1):
            t = d[:, i, j]
            for di, dj, c in fwd:
                t = np.minimum(t, d[:, i - di, j - dj] + c)
            d[:, i, j] = t
    return (d[:, 2:-2, 2:-2] * np.float32(1.0 / 65536)).astype(np.float32)


def _cv_box3(x: np.ndarray) -> np.ndarray:
    """Sum of the 3x3 neighbourhood, OpenCV's default border (``BORDER_REFLECT_101``)."""
    return _correlate(x.astype(np.float64), np.ones((3, 3)), "mirror")


def _cv_equalize_hist(img: np.ndarray) -> np.ndarray:
    """OpenCV ``equalizeHist`` per map: ``lut[v] = round(cumcount(first < u <= v) * 255 / (total
    - count(first)))`` with ``first`` the lowest value present (float32 scale, round half even)."""
    out = np.empty_like(img)
    for k in range(img.shape[0]):
        hist = np.bincount(img[k].ravel(), minlength=256)
        first = int(np.flatnonzero(hist)[0])
        total = img[k].size
        if hist[first] == total:
            out[k] = first
            continue
        scale = np.float32(255.0) / np.float32(total - hist[first])
        cum = np.cumsum(hist) - hist[: first + 1].sum()
        lut = np.rint(cum.astype(np.float32) * scale).clip(0, 255)
        lut[: first + 1] = 0
        out[k] = lut.astype(np.uint8)[img[k]]
    return out


# ------------------------------------------------------------------------------ corruptions
# Each takes (x (N,3,H,W) float64 in [0,1], c = published constant, rng, s = size scale) and
# returns the value the reference casts to uint8 (0..255 scale, the reference's dtype).


def _gaussian_noise(x, c, rng, s):
    return np.clip(x + rng.normal(0.0, c, size=x.shape), 0, 1) * 255


def _shot_noise(x, c, rng, s):
    return np.clip(rng.poisson(x * c) / c, 0, 1) * 255


def _impulse_noise(x, c, rng, s):
    # scikit-image random_noise(mode="s&p", amount=c): each value flipped with probability c,
    # to 1 or 0 with equal odds.
    hit = rng.random(x.shape) < c
    salt = rng.random(x.shape) < 0.5
    y = np.where(hit & salt, 1.0, np.where(hit & ~salt, 0.0, x))
    return np.clip(y, 0, 1) * 255


def _speckle_noise(x, c, rng, s):
    return np.clip(x + x * rng.normal(0.0, c, size=x.shape), 0, 1) * 255


def _gaussian_blur(x, c, rng, s):
    return np.clip(_gaussian(x, c * s), 0, 1) * 255


def _glass_blur(x, c, rng, s):
    sigma, delta, iters = c[0] * s, max(1, round(c[1] * s)), int(c[2])
    # Reference quirk: the blurred image is truncated (not rounded) to uint8 before shuffling.
    y = (_gaussian(x, sigma) * 255).astype(np.uint8)
    n, _, h, w = y.shape
    hs, ws = range(h - delta, delta, -1), range(w - delta, delta, -1)
    d = rng.integers(-delta, delta, size=(iters, len(hs), len(ws), n, 2))  # (dx, dy) in [-d, d)
    b = np.arange(n)
    for it in range(iters):
        for a, hh in enumerate(hs):
            for e, ww in enumerate(ws):
                dx, dy = d[it, a, e, :, 0], d[it, a, e, :, 1]
                # Reference quirk: its tuple "swap" of two numpy views copies the neighbour
                # onto the pixel and leaves the neighbour unchanged.
                y[b, :, hh, ww] = y[b, :, hh + dy, ww + dx]
    return np.clip(_gaussian(y / 255.0, sigma), 0, 1) * 255


def _disk_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """The reference's ``disk``: a float32 disk of ``radius`` on a 17x17 grid (or
    ``2*radius+1`` when larger), unit sum, smoothed by OpenCV's ``GaussianBlur`` (3x3, or 5x5
    for radius > 8, sigma ``alias_blur``, ``BORDER_REFLECT_101``)."""
    if radius <= 8:
        span, ksize = np.arange(-8, 9), 3
    else:
        span, ksize = np.arange(-radius, radius + 1), 5
    xx, yy = np.meshgrid(span, span)
    disk = (xx**2 + yy**2 <= radius**2).astype(np.float32)
    disk /= np.sum(disk)
    i = np.arange(ksize) - (ksize - 1) / 2
    g = np.exp(-0.5 / alias_blur**2 * i * i).astype(np.float32)
    g = (g / g.sum()).astype(np.float32)
    k = _correlate1d(_correlate1d(disk, g, 0, "mirror"), g, 1, "mirror").astype(np.float32)
    nz = np.flatnonzero(np.abs(k).max(axis=0) > 0)  # crop the all-zero border (same result)
    r = int(np.abs(nz - k.shape[0] // 2).max()) if nz.size else 0
    m = k.shape[0] // 2
    return k[m - r : m + r + 1, m - r : m + r + 1].astype(np.float64)


def _defocus_blur(x, c, rng, s):
    # OpenCV filter2D: correlation, BORDER_REFLECT_101.
    return np.clip(_correlate(x, _disk_kernel(c[0] * s, c[1]), "mirror"), 0, 1) * 255


def _motion_blur(x, c, rng, s):
    out = _im_motion_blur(_to8(x).astype(np.float64), c[0] * s, c[1] * s,
                          rng.uniform(-45, 45, size=x.shape[0]))  # fmt: skip
    return out


def _zoom_blur(x, c, rng, s):
    x32 = x.astype(np.float32)  # the reference works in float32 here
    out = np.zeros_like(x32)
    for z in c:
        out += _clipped_zoom(x32, float(z)).astype(np.float32)
    return np.clip((x32 + out) / np.float32(len(c) + 1), 0, 1) * np.float32(255)


def _fog(x, c, rng, s):
    n, _, h, w = x.shape
    plasma = _plasma(rng, n, max(h, w), c[1])[:, None, :h, :w]
    peak = x.max(axis=(1, 2, 3), keepdims=True)
    return np.clip((x + c[0] * plasma) * peak / (peak + c[0]), 0, 1) * 255


def _frost_texture(rng, n: int, h: int, w: int, s: float) -> np.ndarray:
    """Procedural stand-in for the frost photographs: 8-bit values ``(n, 3, h, w)``."""
    base = _plasma(rng, n, max(h, w), 1.6)[:, None, :h, :w]
    seeds = (rng.random((n, 1, h, w)) < 0.08) * 255.0
    crystals = _im_motion_blur(seeds, 3 * s, 1.5 * s, rng.uniform(0, 360, size=n)) / 255.0 * 3.0
    gray = np.clip(0.35 + 0.45 * base + crystals, 0, 1)
    tint = np.array([0.85, 0.93, 1.0]).reshape(1, 3, 1, 1)
    return np.round(gray * tint * 255)


def _frost(x, c, rng, s):
    n, _, h, w = x.shape
    # the reference mixes on the 0..255 scale: c0 * image + c1 * frost photograph crop
    return np.clip(c[0] * (x * 255) + c[1] * _frost_texture(rng, n, h, w, s), 0, 255)


def _snow(x, c, rng, s):
    n, _, h, w = x.shape
    x32 = x.astype(np.float32)
    layer = rng.normal(c[0], c[1], size=(n, 1, h, w))
    layer = _clipped_zoom(layer, float(c[2]))  # Reference quirk: off-centre, as zoom_blur
    layer[layer < c[3]] = 0
    # Reference quirk: the flake layer is truncated to 8 bits for ImageMagick, whose motion
    # blur rounds back to 8 bits.
    layer8 = (np.clip(layer, 0, 1) * 255).astype(np.uint8).astype(np.float64)
    layer = _im_motion_blur(layer8, c[4] * s, c[5] * s, rng.uniform(-135, -45, size=n)) / 255.0
    wts = np.array([0.299, 0.587, 0.114], dtype=np.float32).reshape(1, 3, 1, 1)
    gray = (x32 * wts).sum(axis=1, keepdims=True, dtype=np.float32)  # OpenCV RGB2GRAY
    y = c[6] * x32 + (1 - c[6]) * np.maximum(x32, gray * np.float32(1.5) + np.float32(0.5))
    return np.clip(y + layer + layer[:, :, ::-1, ::-1], 0, 1) * 255


def _spatter(x, c, rng, s):
    n, _, h, w = x.shape
    x32 = x.astype(np.float32)
    liquid = _gaussian(rng.normal(c[0], c[1], size=(n, h, w)), c[2] * s)
    liquid[liquid < c[3]] = 0
    if c[5] == 0:
        # Water: the reference shades the liquid by an edge-distance map (OpenCV):
        # Canny(50, 150) -> distance to the edges (L2, 5x5) capped at 20 -> 3x3 mean truncated
        # to uint8 -> histogram equalization -> emboss filter [[-2,-1,0],[-1,1,1],[0,1,2]]
        # saturated to uint8 -> 3x3 mean rounded to uint8.
        liq8 = (liquid * 255).astype(np.uint8)  # Reference quirk: truncated, not rounded
        edges = _cv_canny(liq8, 50, 150)
        dist = np.minimum(_cv_distance_l2_5(~edges), np.float32(20))
        dist = (_cv_box3(dist) * (1.0 / 9)).astype(np.float32).astype(np.uint8)
        dist = _cv_equalize_hist(dist)
        emboss = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], dtype=np.int64)
        dist = np.clip(_correlate(dist.astype(np.int64), emboss, "mirror"), 0, 255)
        dist = np.rint(_cv_box3(dist) / 9.0).astype(np.float32)
        m = liq8.astype(np.float32) * dist
        peak = m.max(axis=(1, 2), keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            # Reference quirk: without any shaded liquid the peak is 0 and the division gives
            # NaN everywhere; the reference's uint8 cast turns the whole image black (0).
            m = m / peak * np.float32(c[4])
        # Reference quirk: the turquoise (175, 238, 238) is written in BGR order but added to
        # the RGB image, so red gets 175 and green, blue 238.
        color = (np.array([175, 238, 238]) / 255.0).astype(np.float32).reshape(1, 3, 1, 1)
        return np.clip(x32 + m[:, None] * color, 0, 1) * np.float32(255)
    m = _gaussian((liquid > c[3]).astype(np.float32), c[4] * s)  # mud: dark brown blobs
    m[m < 0.8] = 0
    color = (np.array([63, 42, 20]) / 255.0).reshape(1, 3, 1, 1)
    return np.clip(x32 * (1 - m[:, None]) + color * m[:, None], 0, 1) * 255


def _contrast(x, c, rng, s):
    mean = x.mean(axis=(2, 3), keepdims=True)
    return np.clip((x - mean) * c + mean, 0, 1) * 255


def _brightness(x, c, rng, s):
    hue, sat, v = _rgb2hsv(x)
    return np.clip(_hsv2rgb(hue, sat, np.clip(v + c, 0, 1)), 0, 1) * 255


def _saturate(x, c, rng, s):
    hue, sat, v = _rgb2hsv(x)
    return np.clip(_hsv2rgb(hue, np.clip(sat * c[0] + c[1], 0, 1), v), 0, 1) * 255


def _jpeg_compression(x, c, rng, s):
    def enc(im: Image.Image) -> Image.Image:
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=int(c))
        buf.seek(0)
        return Image.open(buf)

    return _via_pil(x, enc)


def _pixelate(x, c, rng, s):
    h, w = x.shape[2:]
    small = (max(1, int(w * c)), max(1, int(h * c)))
    return _via_pil(x, lambda im: im.resize(small, Image.BOX).resize((w, h), Image.BOX))


def _cv_warp_affine(x: np.ndarray, mats: np.ndarray) -> np.ndarray:
    """OpenCV ``warpAffine(x, M, INTER_LINEAR, BORDER_REFLECT_101)`` for float32 images.

    ``mats`` ``(N, 2, 3)`` map source to destination; each destination pixel reads the source
    at the inverse map, its coordinates quantized as OpenCV does (10-bit products, then 1/32
    pixel), interpolated with float32 weights."""
    n, _, h, w = x.shape
    m00, m01, m02 = mats[:, 0, 0], mats[:, 0, 1], mats[:, 0, 2]
    m10, m11, m12 = mats[:, 1, 0], mats[:, 1, 1], mats[:, 1, 2]
    det = m00 * m11 - m01 * m10
    det = np.where(det != 0, 1.0 / det, 0.0)
    a11, a22, a12, a21 = m11 * det, m00 * det, -m01 * det, -m10 * det
    b1, b2 = -a11 * m02 - a12 * m12, -a21 * m02 - a22 * m12
    e = lambda v: v[:, None, None]  # noqa: E731
    xs = np.arange(w)[None, None, :]
    ys = np.arange(h)[None, :, None]
    gx = np.rint(e(a11) * xs * 1024) + np.rint((e(a12) * ys + e(b1)) * 1024) + 16
    gy = np.rint(e(a21) * xs * 1024) + np.rint((e(a22) * ys + e(b2)) * 1024) + 16
    gx = np.floor(gx / 32).astype(np.int64)
    gy = np.floor(gy / 32).astype(np.int64)
    c0, r0 = gx >> 5, gy >> 5
    fx = ((gx & 31) / np.float32(32)).astype(np.float32)[:, None]
    fy = ((gy & 31) / np.float32(32)).astype(np.float32)[:, None]
    b = np.arange(n)[:, None, None]

    def at(rr, cc):
        return np.moveaxis(x[b, :, _fold(rr, h, "mirror"), _fold(cc, w, "mirror")], -1, 1)

    one = np.float32(1)
    return ((one - fy) * (one - fx) * at(r0, c0) + (one - fy) * fx * at(r0, c0 + 1)
            + fy * (one - fx) * at(r0 + 1, c0) + fy * fx * at(r0 + 1, c0 + 1)).astype(np.float32)  # fmt: skip


def _elastic_transform(x, c, rng, s):
    alpha, sigma, jitter = c[0] * s, c[1] * s, c[2] * s
    n, _, h, w = x.shape
    x32 = x.astype(np.float32)
    # 1) random affine: three points around the centre moved by U(-jitter, jitter) (float32)
    centre = np.float32([h, w]) // 2  # (rows, cols) used as (x, y), as the reference
    half = min(h, w) // 3
    src = np.float32([centre + half, [centre[0] + half, centre[1] - half], centre - half])
    dst = src[None] + rng.uniform(-jitter, jitter, size=(n, 3, 2)).astype(np.float32)
    src_h = np.concatenate([src, np.ones((3, 1), np.float32)], axis=1).astype(np.float64)
    mats = np.linalg.solve(src_h[None], dst.astype(np.float64)).transpose(0, 2, 1)
    warped = _cv_warp_affine(x32, mats)
    # 2) elastic: smoothed U(-1, 1) displacement fields (scipy "reflect", truncate 3) times
    # alpha, sampled with order-1 interpolation, border "reflect".  Reference quirk: two
    # resamplings (the affine warp is rounded to float32 before the elastic one).
    dxy = rng.uniform(-1, 1, size=(n, 2, h, w))
    dxy = (_gaussian(dxy, sigma, mode="reflect", truncate=3.0) * alpha).astype(np.float32)
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    rows = yy[None] + dxy[:, 1].astype(np.float64)
    cols = xx[None] + dxy[:, 0].astype(np.float64)
    out = _bilinear(warped, rows, cols, "reflect").astype(np.float32)
    return np.clip(out, 0, 1) * np.float32(255)


_FUNCS: Mapping[str, Callable[..., np.ndarray]] = {
    "gaussian_noise": _gaussian_noise,
    "shot_noise": _shot_noise,
    "impulse_noise": _impulse_noise,
    "speckle_noise": _speckle_noise,
    "gaussian_blur": _gaussian_blur,
    "glass_blur": _glass_blur,
    "defocus_blur": _defocus_blur,
    "motion_blur": _motion_blur,
    "zoom_blur": _zoom_blur,
    "fog": _fog,
    "frost": _frost,
    "snow": _snow,
    "spatter": _spatter,
    "contrast": _contrast,
    "brightness": _brightness,
    "saturate": _saturate,
    "jpeg_compression": _jpeg_compression,
    "pixelate": _pixelate,
    "elastic_transform": _elastic_transform,
}


def _reference_values(images, name: str, severity: int, seed: int, profile: str) -> np.ndarray:
    """The pre-cast values (0..255 scale, NaN mapped to 0) of ``name`` on ``images``."""
    c = severity_constant(name, severity, profile)
    x = images.numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"images must have shape (N, 3, H, W); got {tuple(x.shape)}")
    # uint8 -> x / 255 in float64, as the reference's np.array(image) / 255.
    x = x / 255.0 if x.dtype == np.uint8 else x.astype(np.float64)
    if x.shape[0] == 0:
        return x * 255.0
    scale = x.shape[2] / PROFILES[profile]
    out = _FUNCS[name](x, c, np.random.default_rng(seed), scale)
    return np.nan_to_num(np.asarray(out), nan=0.0)


def corrupt(
    images: torch.Tensor | np.ndarray,
    name: str,
    severity: int,
    *,
    seed: int,
    profile: str = "cifar",
) -> torch.Tensor:
    """Apply corruption ``name`` at ``severity`` to a batch of images.

    Args:
        images: ``(N, 3, H, W)`` float32 in ``[0, 1]`` (torch or numpy), or ``uint8`` in
            ``[0, 255]`` (converted).
        name: one of :data:`ALL_CORRUPTIONS`.
        severity: 1..5.
        seed: seeds every random draw; same inputs and seed -> identical output.
        profile: ``"cifar"`` (CIFAR-10-C constants, reference size 32) or ``"imagenet"``
            (ImageNet-C constants, reference size 224).

    Returns:
        ``(N, 3, H, W)`` float32 tensor in ``[0, 1]``: the reference's value before its
        ``uint8`` cast, divided by 255 (not quantized; see :func:`corrupt_uint8`).

    Raises:
        ValueError: unknown name/profile, severity outside 1..5, or a wrongly shaped batch.
    """
    out = _reference_values(images, name, severity, seed, profile) / 255.0
    return torch.from_numpy(np.ascontiguousarray(np.clip(out, 0.0, 1.0), dtype=np.float32))


def corrupt_uint8(
    images: torch.Tensor | np.ndarray,
    name: str,
    severity: int,
    *,
    seed: int,
    profile: str = "cifar",
) -> torch.Tensor:
    """As :func:`corrupt`, but ``uint8`` ``(N, 3, H, W)`` the way the published files store it.

    Reference quirk: the reference converts with ``np.uint8(value)``, which truncates (a value of
    127.9 is stored as 127), not rounds."""
    out = _reference_values(images, name, severity, seed, profile)
    return torch.from_numpy(np.ascontiguousarray(np.floor(np.clip(out, 0.0, 255.0)).astype(np.uint8)))
