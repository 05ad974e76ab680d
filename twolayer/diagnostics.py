"""Diagnostics of one fine-tuning run: numerical rank of the features, distance to a limit, and which
sparse directions the target sample reached. Pure, jit/vmap-able functions (arrays in, arrays out).

>>> import jax.numpy as jnp
>>> int(feature_rank(jnp.array([[1.0, 2.0], [2.0, 4.0], [0.0, 0.0]])))
1
"""

from __future__ import annotations

import jax.numpy as jnp

from twolayer.problems import Problem

__all__ = ["RANK_EPS_FACTOR", "SAMPLED_RTOL", "feature_rank", "limit_gap", "sampled_directions",
           "unsampled_count"]

#: Singular values below ``s_max * max(n, k) * eps * RANK_EPS_FACTOR`` count as zero.
RANK_EPS_FACTOR = 10
#: A direction is sampled when some row's coefficient on it exceeds this times the largest one.
SAMPLED_RTOL = 1e-9


def feature_rank(Z: jnp.ndarray) -> jnp.ndarray:
    """Numerical rank of a feature matrix Z, shape (n, k) -> () integer.

    Singular values at most ``s_max * max(n, k) * eps * RANK_EPS_FACTOR`` count as zero (ten times
    NumPy's ``matrix_rank`` default), so round-off of a rank-deficient Z is not mistaken for rank.

    >>> import jax.numpy as jnp
    >>> int(feature_rank(jnp.eye(3)[:, :2])), int(feature_rank(jnp.zeros((3, 2))))
    (2, 0)
    """
    s = jnp.linalg.svd(Z, compute_uv=False)
    tol = s[0] * max(Z.shape) * jnp.finfo(Z.dtype).eps * RANK_EPS_FACTOR
    return jnp.sum(s > tol)


def limit_gap(B: jnp.ndarray, B_limit: jnp.ndarray, B_start: jnp.ndarray) -> jnp.ndarray:
    """Relative distance of an iterate to its limit, ``‖B − B_limit‖ / ‖B_limit − B_start‖`` (any
    equal shapes -> ()); the denominator is replaced by 1 when the limit does not move.

    0 means the iterate reached the limit, 1 that it did not move from ``B_start``.

    >>> import jax.numpy as jnp
    >>> float(limit_gap(jnp.array([1.0, 1.0]), jnp.array([2.0, 1.0]), jnp.array([0.0, 1.0])))
    0.5
    """
    move = jnp.linalg.norm(B_limit - B_start)
    return jnp.linalg.norm(B - B_limit) / jnp.where(move > 0, move, 1)


def sampled_directions(problem: Problem, X: jnp.ndarray) -> jnp.ndarray:
    """Which sparse target directions A u_j the inputs X (n, d) reach -> (d,) bool.

    Row i of a sparse-family target sample is z_i · A u_{J_i}; its coefficients on the directions are
    the row of ``(X A⁻ᵀ) Uᵀ``. Direction j counts as sampled when some |coefficient| exceeds
    ``SAMPLED_RTOL`` times the largest one. Zero rows (padding) reach nothing.

    >>> import jax, jax.numpy as jnp
    >>> from twolayer.problems import InputShift, make_problem
    >>> p = make_problem(jax.random.PRNGKey(0), d=3, k=1, activation="linear", family="sparse",
    ...                  shift=InputShift(1, 2.0))
    >>> X = jnp.stack([2.0 * p.A @ p.basis[0], -p.A @ p.basis[2]])
    >>> sampled_directions(p, X).tolist()
    [True, False, True]
    """
    coef = jnp.linalg.solve(problem.A, X.T).T @ problem.basis.T  # (n, d): z e_J per row
    return jnp.any(jnp.abs(coef) > SAMPLED_RTOL * jnp.max(jnp.abs(coef)), axis=0)


def unsampled_count(problem: Problem, sampled: jnp.ndarray) -> jnp.ndarray:
    """Number of directions with positive probability that ``sampled`` (d,) misses -> () integer.

    >>> import jax, jax.numpy as jnp
    >>> from twolayer.problems import OutputShift, make_problem
    >>> p = make_problem(jax.random.PRNGKey(0), d=3, k=1, activation="linear", family="sparse",
    ...                  shift=OutputShift(-1.0))
    >>> int(unsampled_count(p, jnp.array([True, False, True])))
    1
    """
    return jnp.sum((~sampled) & (problem.probs > 0))
