"""The idealized two-layer network f(x) = vᵀφ(Bx).

Shapes: d input dimension, k width, n samples. ``X`` is (n, d), ``B`` is (k, d), ``v`` is (k,).
"""

from __future__ import annotations

import jax.numpy as jnp

from twolayer._checks import ACTIVATIONS, check_choice


def activate(h: jnp.ndarray, activation: str) -> jnp.ndarray:
    """Apply φ elementwise; ``activation`` is ``"linear"`` (identity) or ``"relu"``."""
    check_choice("activation", activation, ACTIVATIONS)
    return h if activation == "linear" else jnp.maximum(h, 0.0)


def activate_grad(h: jnp.ndarray, activation: str) -> jnp.ndarray:
    """φ'(h) elementwise (ReLU: 1[h > 0], the subgradient 0 at the kink)."""
    check_choice("activation", activation, ACTIVATIONS)
    return jnp.ones_like(h) if activation == "linear" else (h > 0).astype(h.dtype)


def features(B: jnp.ndarray, X: jnp.ndarray, activation: str) -> jnp.ndarray:
    """Hidden features Z = φ(X Bᵀ), shape (n, k)."""
    return activate(X @ B.T, activation)


def forward(v: jnp.ndarray, B: jnp.ndarray, X: jnp.ndarray, activation: str) -> jnp.ndarray:
    """Network outputs f(x_i) = vᵀφ(B x_i) for the rows of ``X``; returns shape (n,)."""
    return features(B, X, activation) @ v


def empirical_loss(
    v: jnp.ndarray, B: jnp.ndarray, X: jnp.ndarray, y: jnp.ndarray, activation: str
) -> jnp.ndarray:
    """Training loss L̂ = (1/2n) Σ (f(x_i) − y_i)², a scalar."""
    r = forward(v, B, X, activation) - y
    return 0.5 * jnp.mean(r * r)
