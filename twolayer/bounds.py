"""The theorem's quantities: loss floors, the first-layer loss, and the probability of claim C5.

Each function is pure and jit/vmap-able; the claims they belong to are stated in THEORY.md.
"""

from __future__ import annotations

import jax.numpy as jnp

from twolayer.losses import target_second_moment_of_labels
from twolayer.problems import Problem, target_second_moment


def c2_floor(B_src: jnp.ndarray, w_star: jnp.ndarray, cov: jnp.ndarray) -> jnp.ndarray:
    """C2: min_v L(v, B_src) for φ = identity, a scalar ≥ 0.

    Equals w*ᵀΣw* − w*ᵀΣB_srcᵀ(B_srcΣB_srcᵀ)⁺B_srcΣw*, the squared Σ-distance from w* to the range of
    B_srcᵀ. Args: B_src (k, d); w_star (d,) target predictor; cov (d, d) target second moment Σ.

    Example:
        >>> import jax, twolayer as tl
        >>> p = tl.make_problem(jax.random.PRNGKey(0), d=3, k=2, activation="linear", family="gaussian",
        ... shift=tl.OutputShift(-1.0))
        >>> float(c2_floor(p.B_src, p.B_star.T @ p.v_star, jax.numpy.eye(3))) >= 0
        True
    """
    b = B_src @ cov @ w_star
    gram = B_src @ cov @ B_src.T
    return jnp.maximum(w_star @ cov @ w_star - b @ jnp.linalg.pinv(gram, hermitian=True) @ b, 0.0)


def c2_floor_of(problem: Problem, family: str) -> jnp.ndarray:
    """:func:`c2_floor` for a problem's pretrained first layer and target teacher.

    Example:
        >>> import jax, twolayer as tl
        >>> p = tl.make_problem(jax.random.PRNGKey(0), d=3, k=2, activation="linear", family="gaussian",
        ... shift=tl.InputShift(1, 3.0))
        >>> float(c2_floor_of(p, "gaussian")) > 0
        True
    """
    w_star = problem.B_star.T @ problem.v_star
    return c2_floor(problem.B_src, w_star, target_second_moment(problem, family))


def c4_floor(problem: Problem, family: str) -> jnp.ndarray:
    """C4: t²·E[y_src²], below which no first layer goes when φ = ReLU, v_src ≥ 0 and t < 0.

    The network's output is ≥ 0 while the target t·y_src ≤ 0 wherever y_src ≥ 0, so
    (f − t y_src)² ≥ t² y_src² pointwise. E[y_src²] is computed exactly on the (unshifted) inputs.

    Example:
        >>> import jax, twolayer as tl
        >>> p = tl.make_problem(jax.random.PRNGKey(0), d=3, k=2, activation="relu", family="gaussian",
        ... shift=tl.OutputShift(-1.0))
        >>> float(c4_floor(p, "gaussian")) > 0
        True
    """
    src = problem._replace(v_star=problem.v_src, B_star=problem.B_src)
    return problem.t**2 * target_second_moment_of_labels(src, family, "relu")


def first_layer_linear_loss(
    w0: jnp.ndarray, w_star: jnp.ndarray, X: jnp.ndarray, cov: jnp.ndarray
) -> jnp.ndarray:
    """C6/C7: target loss of first-layer tuning's limit for φ = identity, ‖(I − P_X)(w* − w0)‖²_Σ.

    Args: w0 (d,) pretrained predictor B_srcᵀv_src; w_star (d,) target predictor; X (n, d) samples;
    cov (d, d) target second moment Σ. P_X is the orthogonal projection on span{x_i}.

    Example:
        >>> import jax.numpy as jnp
        >>> float(first_layer_linear_loss(jnp.zeros(2), jnp.array([1.0, 1.0]), jnp.array([[1.0, 0.0]]),
        ... jnp.eye(2)))
        1.0
    """
    e = w_star - w0
    e_perp = e - jnp.linalg.pinv(X) @ (X @ e)
    return e_perp @ cov @ e_perp


def c5_success_probability(p1, n) -> jnp.ndarray:
    """C5: probability 1 − (1 − p_1)ⁿ that direction u_1 is among n sparse samples.

    Example:
        >>> float(c5_success_probability(0.5, 2))
        0.75
    """
    return 1.0 - (1.0 - jnp.asarray(p1)) ** n
