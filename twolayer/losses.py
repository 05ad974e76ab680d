"""Exact population target loss L(v, B) = E_trg[(f_{v,B}(x) − y)²] and a Monte Carlo cross-check.

Exact formulas (derived in THEORY.md):

* linear φ, either family: L = (w − w*)ᵀ Σ (w − w*) with w = Bᵀv, w* = B*ᵀv*, Σ = E_trg[x xᵀ];
* ReLU φ, Gaussian inputs N(0, Σ): L = cᵀ K c with c = [v; −v*] and the arc-cosine kernel
  K_ij = E[relu(a_iᵀx) relu(a_jᵀx)] = ‖ã_i‖‖ã_j‖ (sin θ + (π − θ) cos θ) / (2π), ã = Σ^{1/2}a, over the
  rows a of [B; B*];
* ReLU φ, sparse inputs x = z·D_j (z ~ N(0, 1), j ~ p): a finite sum over directions,
  L = Σ_j p_j · ½[(vᵀrelu(B D_j) − v*ᵀrelu(B* D_j))² + (vᵀrelu(−B D_j) − v*ᵀrelu(−B* D_j))²].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from twolayer._checks import ACTIVATIONS, FAMILIES, check_array, check_choice
from twolayer.model import forward
from twolayer.problems import (
    Problem,
    check_problem,
    sample_target,
    target_quadratic_form,
)


def arccos_kernel(G: jnp.ndarray) -> jnp.ndarray:
    """Arc-cosine kernel (degree 1) from a Gram matrix.

    Args:
        G: (m, m) Gram matrix G_ij = a_iᵀ Σ a_j of the rows a_i under the input covariance Σ.

    Returns:
        (m, m) matrix E[relu(a_iᵀx) relu(a_jᵀx)] for x ~ N(0, Σ).

    Example:
        >>> import jax.numpy as jnp
        >>> round(float(arccos_kernel(jnp.eye(2))[0, 0]), 6)
        0.5
    """
    norms = jnp.sqrt(jnp.clip(jnp.diagonal(G), 0.0))
    outer = norms[:, None] * norms[None, :]
    safe = jnp.where(outer > 0, outer, 1.0)
    cos = jnp.clip(G / safe, -1.0, 1.0)
    sin = jnp.sqrt(jnp.clip(1.0 - cos * cos, 0.0))
    theta = jnp.arccos(cos)
    return jnp.where(outer > 0, outer * (sin + (jnp.pi - theta) * cos) / (2 * jnp.pi), 0.0)


def _direction_preacts(problem: Problem, B: jnp.ndarray) -> jnp.ndarray:
    """Pre-activations B (A u_j) at the sparse target directions, (d, k): U (Aᵀ Bᵀ), O(d² k)
    (never the (d, d) matrix of directions U Aᵀ, O(d³))."""
    return problem.basis @ (problem.A.T @ B.T)


def _sparse_relu_loss(v, B, problem: Problem) -> jnp.ndarray:
    H, H_star = _direction_preacts(problem, B), _direction_preacts(problem, problem.B_star)
    pos = jnp.maximum(H, 0) @ v - jnp.maximum(H_star, 0) @ problem.v_star
    neg = jnp.maximum(-H, 0) @ v - jnp.maximum(-H_star, 0) @ problem.v_star
    return 0.5 * jnp.sum(problem.probs * (pos * pos + neg * neg))


def population_loss(
    v: jnp.ndarray, B: jnp.ndarray, problem: Problem, family: str, activation: str
) -> jnp.ndarray:
    """Exact E_trg[(vᵀφ(Bx) − v*ᵀφ(B*x))²] for the problem's target distribution (a scalar).

    Args:
        v: (k,) head; B: (k, d) first layer (any k; the teacher's width is the problem's).
        problem: the :class:`~twolayer.problems.Problem`.
        family: ``"gaussian"`` or ``"sparse"``.
        activation: ``"linear"`` or ``"relu"``.

    Raises:
        ValueError: unknown family/activation, shapes other than v (k,), B (k, d), a malformed
            problem, or (concrete arrays) non-finite values.

    Example:
        >>> import jax, twolayer as tl
        >>> p = tl.make_problem(jax.random.PRNGKey(0), d=3, k=2, activation="linear", family="gaussian",
        ... shift=tl.OutputShift(-1.0))
        >>> float(tl.population_loss(p.v_star, p.B_star, p, "gaussian", "linear"))
        0.0
    """
    check_choice("family", family, FAMILIES)
    check_choice("activation", activation, ACTIVATIONS)
    check_problem(problem)
    d = np.shape(problem.B_src)[-1]
    check_array("B", B, (None, d))
    check_array("v", v, (np.shape(B)[0],))
    if activation == "linear":
        e = B.T @ v - problem.B_star.T @ problem.v_star
        return target_quadratic_form(problem, family, e)  # eᵀΣe in O(d²)
    if family == "sparse":
        return _sparse_relu_loss(v, B, problem)
    rows = jnp.concatenate([B, problem.B_star]) @ problem.A  # ã = Aᵀa, so ãᵀã' = aᵀΣa'
    c = jnp.concatenate([v, -problem.v_star])
    return c @ arccos_kernel(rows @ rows.T) @ c


def target_second_moment_of_labels(problem: Problem, family: str, activation: str) -> jnp.ndarray:
    """E_trg[y²], the loss of the zero predictor (a scalar).

    Example:
        >>> import jax, twolayer as tl
        >>> p = tl.make_problem(jax.random.PRNGKey(0), d=3, k=2, activation="linear", family="gaussian",
        ... shift=tl.OutputShift(-1.0))
        >>> float(target_second_moment_of_labels(p, "gaussian", "linear")) > 0
        True
    """
    k = problem.B_src.shape[0]
    zero_v = jnp.zeros((k,), problem.B_src.dtype)
    return population_loss(zero_v, problem.B_src, problem, family, activation)


def mc_population_loss(
    key: jax.Array,
    v: jnp.ndarray,
    B: jnp.ndarray,
    problem: Problem,
    family: str,
    activation: str,
    n_mc: int = 100_000,
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Monte Carlo estimate of the population loss from fresh target samples (cross-check only).

    Returns:
        (mean, standard error) of (f(x) − y)² over ``n_mc`` samples drawn by
        :func:`~twolayer.problems.sample_target`.

    Example:
        >>> import jax, twolayer as tl
        >>> p = tl.make_problem(jax.random.PRNGKey(0), d=3, k=2, activation="linear", family="gaussian",
        ... shift=tl.OutputShift(-1.0))
        >>> mean, se = mc_population_loss(jax.random.PRNGKey(2), p.v_src, p.B_src, p, "gaussian",
        ... "linear", n_mc=20000)
        >>> exact = float(population_loss(p.v_src, p.B_src, p, "gaussian", "linear"))
        >>> abs(float(mean) - exact) < 5 * float(se)
        True
    """
    X, y = sample_target(key, problem, family, activation, n_mc)
    sq = (forward(v, B, X, activation) - y) ** 2
    return jnp.mean(sq), jnp.std(sq) / jnp.sqrt(n_mc)
