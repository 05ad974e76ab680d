"""A plain NumPy gradient-descent loop: the baseline of the benchmarks and an independent implementation.

It runs the textbook update on (v, B) directly, one problem at a time, one step per Python iteration,
with none of the tricks of :mod:`twolayer.descent` (no closed forms, no span parametrization, no
batching). Tests compare the two; benchmarks time both in one process.
"""

from __future__ import annotations

import numpy as np

from twolayer._checks import ACTIVATIONS, TUNE_MODES, check_choice


def numpy_finetune(
    v0: np.ndarray,
    B0: np.ndarray,
    X: np.ndarray,
    y: np.ndarray,
    *,
    tune: str,
    activation: str,
    steps: int,
    lr: float,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Run ``steps`` GD steps of size ``lr`` on L̂ = (1/2n)‖vᵀφ(BXᵀ) − y‖² from (v0, B0).

    Args:
        v0: (k,); B0: (k, d); X: (n, d); y: (n,); tune: "first" | "last" | "full";
        activation: "linear" | "relu"; steps: number of steps; lr: step size.

    Returns:
        (v, B, final train loss).

    Example:
        >>> import numpy as np
        >>> v, B, loss = numpy_finetune(np.ones(1), np.eye(1), np.eye(1), np.zeros(1), tune="last",
        ... activation="linear", steps=1, lr=1.0)
        >>> v.tolist(), B.tolist(), loss
        ([0.0], [[1.0]], 0.0)
    """
    check_choice("tune mode", tune, TUNE_MODES)
    check_choice("activation", activation, ACTIVATIONS)
    v, B = np.array(v0, dtype=np.float64), np.array(B0, dtype=np.float64)
    X, y = np.asarray(X, np.float64), np.asarray(y, np.float64)
    n = X.shape[0]
    relu = activation == "relu"
    tune_v, tune_B = tune in ("last", "full"), tune in ("first", "full")
    for _ in range(steps):
        H = B @ X.T  # (k, n)
        Z = np.maximum(H, 0.0) if relu else H
        r = v @ Z - y  # (n,)
        gv = Z @ r / n
        D = (H > 0).astype(np.float64) if relu else 1.0
        gB = ((v[:, None] * D) * (r / n)[None, :]) @ X  # (k, d)
        if tune_v:
            v = v - lr * gv
        if tune_B:
            B = B - lr * gB
    H = B @ X.T
    r = v @ (np.maximum(H, 0.0) if relu else H) - y
    return v, B, float(0.5 * np.mean(r * r))
