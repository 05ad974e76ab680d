"""Load a local checkpoint file into a backbone, with clear mismatch messages.

Accepted files (``torch.save`` output): a plain ``state_dict``; or a dict holding one under
``state_dict``, ``model``, ``net``, ``model_state_dict`` or ``module`` (TTT/MEMO save
``{"net": ...}``). Keys prefixed with ``module.`` (``DataParallel``) or ``model.`` are stripped
when that makes them match. Nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

__all__ = ["CheckpointMismatchError", "extract_state_dict", "load_checkpoint"]

_CONTAINER_KEYS = ("state_dict", "model_state_dict", "model", "net", "module")
_PREFIXES = ("module.", "model.", "net.")


class CheckpointMismatchError(ValueError):
    """The checkpoint does not fit the architecture; the message names missing/unexpected keys."""


def _is_state_dict(obj: object) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) for k in obj)
        and all(isinstance(v, torch.Tensor) for v in obj.values())
    )


def extract_state_dict(obj: object) -> dict[str, torch.Tensor]:
    """The ``state_dict`` inside a loaded checkpoint object (see module docstring)."""
    if _is_state_dict(obj):
        return dict(obj)  # type: ignore[arg-type]
    if isinstance(obj, Mapping):
        for key in _CONTAINER_KEYS:
            if key in obj and _is_state_dict(obj[key]):
                return dict(obj[key])
    keys = list(obj)[:10] if isinstance(obj, Mapping) else type(obj).__name__
    raise CheckpointMismatchError(
        "checkpoint holds no state_dict; expected a mapping name -> tensor, or a dict with one "
        f"under {list(_CONTAINER_KEYS)}; found {keys}"
    )


def _strip_prefixes(sd: dict[str, torch.Tensor], expected: set[str]) -> dict[str, torch.Tensor]:
    changed = True
    while changed and not set(sd) & expected:
        changed = False
        for p in _PREFIXES:
            if sd and all(k.startswith(p) for k in sd):
                sd = {k[len(p):]: v for k, v in sd.items()}
                changed = True
    return sd


def load_checkpoint(model: nn.Module, path: str | Path, *, strict: bool = True) -> list[str]:
    """Load ``path`` into ``model`` (on CPU).

    Args:
        model: the backbone.
        path: a local ``torch.save`` file.
        strict: if ``True`` every model key must be present and no extra keys may exist.

    Returns:
        Keys of the model that were not in the checkpoint (empty when ``strict``).

    Raises:
        ValueError: missing file.
        CheckpointMismatchError: a file for another architecture (missing/unexpected keys or
            shape mismatches are named, at most 10 of each).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated files
        # one line naming the file; torch's own message advises weights_only=False (unsafe)
        text = str(exc)
        reason = ("it holds Python objects besides tensors; save the model's state_dict() and "
                  "give that file" if "Unsupported global" in text or "still be loaded" in text
                  else "not a complete torch.save file (corrupt or truncated)")
        raise CheckpointMismatchError(f"cannot read checkpoint {path}: {reason}") from exc
    expected = model.state_dict()
    sd = _strip_prefixes(extract_state_dict(obj), set(expected))
    adapt = getattr(model, "adapt_state_dict", None)  # a layout's own key/shape conversions
    if callable(adapt):
        sd = adapt(sd)
    missing = [k for k in expected if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in expected]
    shapes = [
        f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items() if k in sd and sd[k].shape != v.shape
    ]
    if shapes or (strict and (missing or unexpected)):
        parts = [f"checkpoint {path} does not fit {type(model).__name__}"]
        if missing:
            parts.append(f"missing keys ({len(missing)}): {missing[:10]}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {unexpected[:10]}")
        if shapes:
            parts.append(f"shape mismatches ({len(shapes)}): {shapes[:10]}")
        raise CheckpointMismatchError("; ".join(parts))
    model.load_state_dict({k: v for k, v in sd.items() if k in expected}, strict=False)
    return missing
