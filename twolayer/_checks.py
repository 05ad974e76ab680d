"""Input validation shared by the public entry points (runs on concrete arrays, outside jit)."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np

ACTIVATIONS = ("linear", "relu")
FAMILIES = ("gaussian", "sparse")
TUNE_MODES = ("first", "last", "full")


def check_choice(name: str, value: str, allowed: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``allowed``; otherwise raise a ValueError naming the choices."""
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}: expected one of {', '.join(map(repr, allowed))}")
    return value


def is_traced(x) -> bool:
    """True when ``x`` is an abstract JAX tracer (inside jit/vmap), where values cannot be checked."""
    return isinstance(x, jax.core.Tracer)


def check_array(name: str, x, shape: Sequence[int | None]) -> None:
    """Check rank, sizes (``None`` = any) and finiteness of ``x``; raise ValueError saying what was expected.

    Shapes are checked on tracers too; finiteness only on concrete arrays.
    """
    got = tuple(np.shape(x))
    want = tuple(shape)
    if len(got) != len(want) or any(w is not None and g != w for g, w in zip(got, want)):
        pretty = "(" + ", ".join("*" if w is None else str(w) for w in want) + ")"
        raise ValueError(f"{name} has shape {got}: expected {pretty}")
    if not is_traced(x) and not np.all(np.isfinite(np.asarray(x))):
        raise ValueError(f"{name} contains NaN or infinite values: expected finite numbers")
