"""The idealized two-layer network f(x) = vᵀφ(Bx).

Shapes: d input dimension, k width, n samples. ``X`` is (n, d), ``B`` is (k, d), ``v`` is (k,).
"""

from __future__ import annotations

import jax.numpy as jnp

from twolayer._checks import ACTIVATIONS, check_choice


def activate(h: jnp.ndarray, activation: str) -> jnp.ndarray:
    """Apply φ elementwise; ``activation`` is ``"linear"`` (identity) or ``"relu"``.

    Example:
        >>> import jax.numpy as jnp
        >>> activate(jnp.array([-1.0, 2.0]), "relu").tolist()
        [0.0, 2.0]
    """
    check_choice("activation", activation, ACTIVATIONS)
    return h if activation == "linear" else jnp.maximum(h, 0.0)


def activate_grad(h: jnp.ndarray, activation: str) -> jnp.ndarray:
    """φ'(h) elementwise (ReLU: 1[h > 0], the subgradient 0 at the kink).

    Example:
        >>> import jax.numpy as jnp
        >>> activate_grad(jnp.array([-1.0, 2.0]), "relu").tolist()
        [0.0, 1.0]
    """
    check_choice("activation", activation, ACTIVATIONS)
    return jnp.ones_like(h) if activation == "linear" else (h > 0).astype(h.dtype)


def features(B: jnp.ndarray, X: jnp.ndarray, activation: str) -> jnp.ndarray:
    """Hidden features Z = φ(X Bᵀ), shape (n, k).

    Example:
        >>> import jax.numpy as jnp
        >>> features(jnp.eye(2), jnp.array([[1.0, -1.0]]), "relu").tolist()
        [[1.0, 0.0]]
    """
    return activate(X @ B.T, activation)


def forward(v: jnp.ndarray, B: jnp.ndarray, X: jnp.ndarray, activation: str) -> jnp.ndarray:
    """Network outputs f(x_i) = vᵀφ(B x_i) for the rows of ``X``; returns shape (n,).

    Example:
        >>> import jax.numpy as jnp
        >>> forward(jnp.array([1.0, 2.0]), jnp.eye(2), jnp.array([[1.0, -1.0]]), "linear").tolist()
        [-1.0]
    """
    return features(B, X, activation) @ v


def empirical_loss(
    v: jnp.ndarray, B: jnp.ndarray, X: jnp.ndarray, y: jnp.ndarray, activation: str
) -> jnp.ndarray:
    """Training loss L̂ = (1/2n) Σ (f(x_i) − y_i)², a scalar.

    Example:
        >>> import jax.numpy as jnp
        >>> float(empirical_loss(jnp.ones(2), jnp.eye(2), jnp.eye(2), jnp.zeros(2), "linear"))
        0.5
    """
    r = forward(v, B, X, activation) - y
    return 0.5 * jnp.mean(r * r)
