"""The theorem's quantities: loss floors, the first-layer loss, and the probability of claim C5.

Each function is pure and jit/vmap-able; the claims they belong to are stated in THEORY.md.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from twolayer._checks import check_array, is_traced
from twolayer.losses import target_second_moment_of_labels
from twolayer.problems import (
    Problem,
    target_moment_root_t,
    target_quadratic_form,
)


def c2_floor(B_src: jnp.ndarray, w_star: jnp.ndarray, cov: jnp.ndarray) -> jnp.ndarray:
    """C2: min_v L(v, B_src) for φ = identity, a scalar ≥ 0.

    Equals w*ᵀΣw* − w*ᵀΣB_srcᵀ(B_srcΣB_srcᵀ)⁺B_srcΣw*, the squared Σ-distance from w* to the range of
    B_srcᵀ. Computed without that subtraction (which cancels catastrophically when the floor is
    small against w*ᵀΣw*): with a factor Σ = MMᵀ (eigendecomposition), the floor is the squared norm
    of the residual of Mᵀw* after projecting on the range of MᵀB_srcᵀ (thin SVD, the
    pseudo-inverse's rank cut-off). Args: B_src (k, d); w_star (d,) target predictor; cov (d, d)
    target second moment Σ (symmetric positive semi-definite).

    Raises:
        ValueError: shapes other than (k, d), (d,), (d, d), or non-finite values (concrete arrays).

    Example:
        >>> import jax, twolayer as tl
        >>> p = tl.make_problem(jax.random.PRNGKey(0), d=3, k=2, activation="linear", family="gaussian",
        ... shift=tl.OutputShift(-1.0))
        >>> float(c2_floor(p.B_src, p.B_star.T @ p.v_star, jax.numpy.eye(3))) >= 0
        True
    """
    d = np.shape(B_src)[-1] if np.ndim(B_src) == 2 else None
    check_array("B_src", B_src, (None, d))
    check_array("w_star", w_star, (d,))
    check_array("cov", cov, (d, d))
    lam, V = jnp.linalg.eigh(0.5 * (cov + cov.T))
    M = V * jnp.sqrt(jnp.maximum(lam, 0.0))[None, :]  # Σ = M Mᵀ
    return _c2_floor_factored(M.T @ B_src.T, M.T @ w_star)


def _c2_floor_factored(F: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
    """‖b − P_F b‖² for F = MᵀB_srcᵀ (m, k) and b = Mᵀw* (m,), Σ = M Mᵀ (any factor M: the
    residual's norm does not depend on which); P_F projects on the range of F (thin SVD, the
    pseudo-inverse's rank cut-off)."""
    U, s, _ = jnp.linalg.svd(F, full_matrices=False)
    keep = s > jnp.max(s) * max(F.shape) * jnp.finfo(F.dtype).eps * 10
    r = b - U @ (keep * (U.T @ b))
    return r @ r


def c2_floor_of(problem: Problem, family: str) -> jnp.ndarray:
    """:func:`c2_floor` for a problem's pretrained first layer and target teacher (Σ's factor
    from the problem's construction instead of an eigendecomposition of Σ).

    Example:
        >>> import jax, twolayer as tl
        >>> p = tl.make_problem(jax.random.PRNGKey(0), d=3, k=2, activation="linear", family="gaussian",
        ... shift=tl.InputShift(1, 3.0))
        >>> float(c2_floor_of(p, "gaussian")) > 0
        True
    """
    w_star = problem.B_star.T @ problem.v_star
    # Σ's factor M is known from the construction (twolayer.problems.target_moment_root_t): no
    # eigendecomposition of Σ, and MᵀB_srcᵀ, Mᵀw* cost O(d² k).
    return _c2_floor_factored(target_moment_root_t(problem, family, problem.B_src.T),
                              target_moment_root_t(problem, family, w_star))


def c4_floor(problem: Problem, family: str, activation: str) -> jnp.ndarray:
    """C4: t²·E_src[y_src²], below which no first layer goes when φ = ReLU, v_src ≥ 0 and t < 0.

    The network's output is ≥ 0 while the target t·y_src ≤ 0 wherever y_src ≥ 0, so
    (f − t y_src)² ≥ t² y_src² pointwise. E_src[y_src²] is computed exactly on the *source* inputs
    (A = I), whatever the problem's shift; for an output shift these are the target inputs.

    Raises:
        ValueError: ``activation`` other than ``"relu"`` (the floor is a ReLU statement: a linear
            network's output takes both signs), or a concrete v_src with a negative entry.

    Example:
        >>> import jax, twolayer as tl
        >>> p = tl.make_problem(jax.random.PRNGKey(0), d=3, k=2, activation="relu", family="gaussian",
        ... shift=tl.OutputShift(-1.0), nonneg_head=True)
        >>> float(c4_floor(p, "gaussian", "relu")) > 0
        True
    """
    if activation != "relu":
        raise ValueError(f"c4_floor with activation {activation!r}: expected 'relu' (the floor "
                         "needs a non-negative network output)")
    if not is_traced(problem.v_src) and np.any(np.asarray(problem.v_src) < 0):
        raise ValueError("c4_floor needs v_src >= 0: expected a non-negative head "
                         "(make_problem(..., nonneg_head=True))")
    eye = jnp.eye(problem.B_src.shape[-1], dtype=problem.B_src.dtype)
    src = problem._replace(A=eye, v_star=problem.v_src, B_star=problem.B_src)
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
    d = np.shape(w0)[0] if np.ndim(w0) == 1 else None
    check_array("w0", w0, (d,))
    check_array("w_star", w_star, (d,))
    check_array("X", X, (None, d))
    check_array("cov", cov, (d, d))
    e_perp = _orth_to_rows(X, w_star - w0)
    return e_perp @ cov @ e_perp


def first_layer_linear_loss_of(problem: Problem, family: str, X: jnp.ndarray) -> jnp.ndarray:
    """:func:`first_layer_linear_loss` for a problem's pretrained predictor and target teacher on
    samples X (n, d), with ‖·‖²_Σ as :func:`~twolayer.problems.target_quadratic_form` (O(d²),
    without forming Σ).

    Example:
        >>> import jax, twolayer as tl
        >>> p = tl.make_problem(jax.random.PRNGKey(0), d=3, k=2, activation="linear", family="gaussian",
        ... shift=tl.OutputShift(-1.0))
        >>> X, _ = tl.sample_target(jax.random.PRNGKey(1), p, "gaussian", "linear", 2)
        >>> w0, w_star = p.B_src.T @ p.v_src, p.B_star.T @ p.v_star
        >>> cov = tl.target_second_moment(p, "gaussian")
        >>> bool(jnp.allclose(first_layer_linear_loss_of(p, "gaussian", X),
        ... first_layer_linear_loss(w0, w_star, X, cov)))
        True
    """
    w0 = problem.B_src.T @ problem.v_src
    w_star = problem.B_star.T @ problem.v_star
    return target_quadratic_form(problem, family, _orth_to_rows(X, w_star - w0))


def _orth_to_rows(X: jnp.ndarray, e: jnp.ndarray) -> jnp.ndarray:
    """(I − P_X) e, P_X the orthogonal projection on span{x_i} (through the pseudo-inverse)."""
    return e - jnp.linalg.pinv(X) @ (X @ e)


def c5_success_probability(p1, n) -> jnp.ndarray:
    """C5: probability 1 − (1 − p_1)ⁿ that direction u_1 is among n sparse samples.

    Raises:
        ValueError: (concrete values) p1 outside [0, 1] or n not a non-negative integer.

    Example:
        >>> float(c5_success_probability(0.5, 2))
        0.75
    """
    if not is_traced(p1) and not np.all((np.asarray(p1) >= 0) & (np.asarray(p1) <= 1)):
        raise ValueError(f"p1 = {p1}: expected a probability in [0, 1]")
    if not is_traced(n):
        a = np.asarray(n)
        if a.dtype == bool or not np.all((a >= 0) & (a == np.round(a))):
            raise ValueError(f"n = {n}: expected a non-negative integer number of samples")
    return 1.0 - (1.0 - jnp.asarray(p1)) ** n
