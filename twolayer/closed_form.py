"""Closed forms of gradient descent and gradient flow where the fine-tuning problem is linear least squares.

Last-layer tuning (any φ) is least squares in v on the fixed features Z = φ(X B_srcᵀ); first-layer tuning
with φ = identity is least squares in the predictor w = Bᵀv_src, because every gradient step adds
v_src aᵀ to B with a in the row span of X (THEORY.md, C7). For a least-squares problem min_u (1/2n)‖Fu − y‖²
started at u_0, gradient descent with step η has the exact iterate

    u_t = u_0 + V diag(c_t(s)) Uᵀ r_0,   c_t(s) = (1 − (1 − η s²/n)^t) / s,   r_0 = y − F u_0,

with F = U diag(s) Vᵀ a thin SVD, and gradient flow's limit (t → ∞) is u_0 + F⁺ r_0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from twolayer._checks import ACTIVATIONS, check_array, check_choice, is_traced
from twolayer.model import features


def _lsq_direction(F: jnp.ndarray, r0: jnp.ndarray, coef_fn) -> jnp.ndarray:
    U, s, Vt = jnp.linalg.svd(F, full_matrices=False)
    return Vt.T @ (coef_fn(s) * (U.T @ r0))


def _pinv_coef(s: jnp.ndarray) -> jnp.ndarray:
    """1/s on the numerical range of F (the pseudo-inverse's cut-off), 0 elsewhere."""
    cutoff = jnp.max(s) * max(s.shape[0], 1) * jnp.finfo(s.dtype).eps * 10
    return jnp.where(s > cutoff, 1.0 / jnp.where(s > cutoff, s, 1.0), 0.0)


def _pow_int(base: jnp.ndarray, t) -> jnp.ndarray:
    """base**t for integer-valued t ≥ 0, also for negative bases."""
    mag = jnp.abs(base) ** t
    odd = jnp.mod(t, 2) == 1
    return jnp.where((base < 0) & odd, -mag, mag)


def gd_gain(lam: jnp.ndarray, steps, lr, n) -> jnp.ndarray:
    """g_t(λ) = (1 − (1 − ηλ/n)^t)/λ for eigenvalues λ ≥ 0 of FᵀF, computed stably.

    g_t(λ) → tη/n as λ → 0, and → 1/λ as t → ∞ when 0 < ηλ/n < 2. Args: lam any shape; steps t (scalar);
    lr η; n samples.

    Example:
        >>> import jax.numpy as jnp
        >>> gd_gain(jnp.array([0.0, 1.0]), 1, 1.0, 1).tolist()
        [1.0, 1.0]
    """
    x = lr * lam / n
    # 1 − (1 − x)^t = −expm1(t log1p(−x)) is accurate for small x; for x ≥ 1/2 use the power directly
    # (for x ≥ 2, a too-large step, it grows as GD diverges).
    stable = -jnp.expm1(steps * jnp.log1p(-jnp.minimum(x, 0.5)))
    direct = 1.0 - _pow_int(1.0 - x, steps)
    safe = jnp.where(lam > 0, lam, 1.0)
    return jnp.where(lam > 0, jnp.where(x < 0.5, stable, direct) / safe, steps * lr / n)


def gd_coef(s: jnp.ndarray, steps, lr, n) -> jnp.ndarray:
    """c_t(s) = (1 − (1 − η s²/n)^t)/s = s·g_t(s²) for singular values s (shape (r,)).

    0 for s below the pseudo-inverse's cut-off (the numerical null space), as in :func:`lsq_gd_path`.

    Example:
        >>> import jax.numpy as jnp
        >>> gd_coef(jnp.array([1.0]), 1, 1.0, 1).tolist()
        [1.0]
    """
    return jnp.where(_pinv_coef(s) > 0, s * gd_gain(s * s, steps, lr, n), 0.0)


def lsq_gd_path(F, y, u0, t_grid, lr, n=None) -> jnp.ndarray:
    """Exact GD iterates on (1/2n)‖F u − y‖² from u0 at every step count in ``t_grid``.

    Uses one symmetric eigendecomposition of the smaller Gram matrix (F Fᵀ or FᵀF), much faster than an
    SVD on CPUs: with F Fᵀ = U diag(λ) Uᵀ, u_t = u0 + Fᵀ U diag(g_t(λ)) Uᵀ r0 (r0 = y − F u0), with
    λ_i = ‖Fᵀu_i‖² and zero gain below the pseudo-inverse's cut-off (no drift for any t).

    Args:
        F: (m, p); y: (m,); u0: (p,); t_grid: (T,) step counts; lr: η; n: the 1/n of the loss
            (default m; smaller when F has zero padding rows).
    Returns:
        (T, p) iterates.

    Example:
        >>> import jax.numpy as jnp
        >>> lsq_gd_path(jnp.eye(2), jnp.ones(2), jnp.zeros(2), jnp.array([0, 1]), 1.0).shape
        (2, 2)
    """
    m, p = F.shape
    n = m if n is None else n
    r0 = y - F @ u0
    # Singular values are recomputed as s_i = ‖Fᵀu_i‖ (or ‖F v_i‖): accurate to ε·s_max, where the
    # eigenvalues are only accurate to ε·s_max². Directions under the pseudo-inverse's cut-off are the
    # numerical null space and get zero gain (a gain t·η/n there would drift linearly in t).
    if m <= p:
        _, U = jnp.linalg.eigh(F @ F.T)
        FtU = F.T @ U  # (p, m)
        s = jnp.linalg.norm(FtU, axis=0)
        proj = U.T @ r0

        def back(g):
            return FtU @ (g * proj)
    else:
        _, V = jnp.linalg.eigh(F.T @ F)
        FV = F @ V  # (m, p)
        s = jnp.linalg.norm(FV, axis=0)
        proj = FV.T @ r0

        def back(g):
            return V @ (g * proj)

    null = _pinv_coef(s) == 0
    lam = s * s

    def gain(t):
        return jnp.where(null, 0.0, gd_gain(lam, t, lr, n))

    return jax.vmap(lambda t: u0 + back(gain(t)))(jnp.atleast_1d(t_grid))


def lsq_gd_iterate(F, y, u0, steps, lr) -> jnp.ndarray:
    """Exact iterate u_t of GD on (1/2n)‖F u − y‖² from u0 after ``steps`` steps of size ``lr``.

    Args:
        F: (n, p); y: (n,); u0: (p,); steps: number of steps (scalar); lr: step size η.
    Returns:
        (p,) iterate.

    Example:
        >>> import jax.numpy as jnp
        >>> lsq_gd_iterate(jnp.eye(2), jnp.ones(2), jnp.zeros(2), 1, 2.0).tolist()
        [1.0, 1.0]
    """
    return lsq_gd_path(F, y, u0, jnp.asarray([steps]), lr)[0]


def lsq_flow_limit(F, y, u0) -> jnp.ndarray:
    """Gradient-flow limit u_0 + F⁺(y − F u_0): the solution closest to u_0 (shape (p,)).

    Example:
        >>> import jax.numpy as jnp
        >>> lsq_flow_limit(jnp.array([[1.0, 0.0]]), jnp.array([2.0]), jnp.array([0.0, 5.0])).tolist()
        [2.0, 5.0]
    """
    return u0 + _lsq_direction(F, y - F @ u0, _pinv_coef)


def _check_layers(v_src, B_src, X, y) -> None:
    k, d = np.shape(B_src) if np.ndim(B_src) == 2 else (None, None)
    check_array("B_src", B_src, (None, None))
    check_array("v_src", v_src, (k,))
    check_array("X", X, (None, d))
    check_array("y", y, (np.shape(X)[0],))


def last_layer_limit(v_src, B_src, X, y, activation: str) -> jnp.ndarray:
    """Limit of last-layer tuning: v∞ = v_src + Z⁺(y − Z v_src), Z = φ(X B_srcᵀ); shape (k,).

    Raises:
        ValueError: shapes other than v_src (k,), B_src (k, d), X (n, d), y (n,), or non-finite
            values (checked on concrete arrays).

    Example:
        >>> import jax, twolayer as tl
        >>> p = tl.make_problem(jax.random.PRNGKey(0), d=3, k=2, activation="linear", family="gaussian",
        ... shift=tl.OutputShift(-1.0))
        >>> X, y = tl.sample_target(jax.random.PRNGKey(1), p, "gaussian", "linear", 4)
        >>> v = last_layer_limit(p.v_src, p.B_src, X, y, "linear")
        >>> float(tl.empirical_loss(v, p.B_src, X, y, "linear")) < 1e-20
        True
    """
    check_choice("activation", activation, ACTIVATIONS)
    _check_layers(v_src, B_src, X, y)
    return lsq_flow_limit(features(B_src, X, activation), y, v_src)


def first_layer_limit(v_src, B_src, X, y) -> jnp.ndarray:
    """Limit of first-layer tuning for φ = identity; shape (k, d).

    The predictor w = Bᵀv_src moves to w∞ = w0 + X⁺(y − X w0) (w0 = B_srcᵀv_src) and
    B∞ = B_src + v_src (w∞ − w0)ᵀ / ‖v_src‖².

    Raises:
        ValueError: wrong shapes (as :func:`last_layer_limit`), non-finite values, or v_src = 0
            (the first layer then has zero gradient and does not move: there is no such limit).

    Example:
        >>> import jax, twolayer as tl
        >>> p = tl.make_problem(jax.random.PRNGKey(0), d=3, k=2, activation="linear", family="gaussian",
        ... shift=tl.OutputShift(-1.0))
        >>> X, y = tl.sample_target(jax.random.PRNGKey(1), p, "gaussian", "linear", 4)
        >>> B = first_layer_limit(p.v_src, p.B_src, X, y)
        >>> float(tl.empirical_loss(p.v_src, B, X, y, "linear")) < 1e-20
        True
    """
    _check_layers(v_src, B_src, X, y)
    if not is_traced(v_src) and not np.any(np.asarray(v_src) != 0):
        raise ValueError("v_src = 0: expected a non-zero head (with v_src = 0 the first layer "
                         "has zero gradient and stays at B_src)")
    w0 = B_src.T @ v_src
    w_inf = lsq_flow_limit(X, y, w0)
    return B_src + jnp.outer(v_src, w_inf - w0) / (v_src @ v_src)
