"""Seeded construction of fine-tuning problems: pretrained network, shift, target teacher, target inputs.

Setting (see THEORY.md): source labels are realizable, y = v_srcᵀφ(B_src x_src). Source inputs come from
one of two families:

* ``"gaussian"``: x_src ~ N(0, I_d);
* ``"sparse"``: x_src = z·u_J with J ~ Categorical(probs) over the rows u_j of an orthonormal ``basis``
  and z ~ N(0, 1) (the construction behind Theorem 1; the shift acts on u_1, which has mass p_1).

A shift turns the source into the target:

* :class:`InputShift`: x_trg = A x_src with y unchanged as a function of x_src, so the target teacher is
  (v_src, B_src A⁻¹);
* :class:`OutputShift`: x_trg = x_src and y_trg = t·y_src, so the target teacher is (t·v_src, B_src).

A :class:`Problem` holds only arrays, so batches of problems are pytrees that ``vmap`` maps over.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from twolayer._checks import ACTIVATIONS, FAMILIES, check_array, check_choice, is_traced
from twolayer.model import forward

SHIFT_KINDS = ("scale", "rotate")


@dataclass(frozen=True)
class InputShift:
    """x_trg = A x_src with A = I + (a rank-``rank`` change of a subspace).

    Attributes:
        rank: r, the dimension of the subspace that moves (``"rotate"`` moves r planes, so 2r ≤ d).
        alpha: ``"scale"``: the subspace is multiplied by ``alpha`` (≠ 0; 1 is no shift);
            ``"rotate"``: each plane is rotated by ``alpha`` radians.
        kind: ``"scale"`` or ``"rotate"``.
    """

    rank: int = 1
    alpha: float = 2.0
    kind: str = "scale"

    def __post_init__(self) -> None:
        check_choice("input shift kind", self.kind, SHIFT_KINDS)
        if (isinstance(self.rank, bool) or not isinstance(self.rank, int | float | np.integer)
                or not float(self.rank).is_integer() or self.rank < 1):
            raise ValueError(f"input shift rank {self.rank!r}: expected an integer >= 1")
        if not np.isfinite(self.alpha):
            raise ValueError(f"input shift alpha {self.alpha}: expected a finite number")
        if self.kind == "scale" and self.alpha == 0.0:
            raise ValueError("input shift alpha = 0 makes A singular: expected alpha != 0 for 'scale'")

    def label(self) -> str:
        """Short text, e.g. ``scale r=1 α=3``.

        >>> InputShift(1, 3.0).label()
        'scale r=1 α=3'
        """
        return f"{self.kind} r={self.rank} α={self.alpha:g}"


@dataclass(frozen=True)
class OutputShift:
    """y_trg = t·y_src on unchanged inputs (t = −1 flips the labels)."""

    t: float = -1.0

    def __post_init__(self) -> None:
        if not np.isfinite(self.t):
            raise ValueError(f"output shift t {self.t}: expected a finite number")

    def label(self) -> str:
        """Short text, e.g. ``output t=-1``.

        >>> OutputShift(-1.0).label()
        'output t=-1'
        """
        return f"output t={self.t:g}"


Shift = InputShift | OutputShift


class Problem(NamedTuple):
    """One fine-tuning problem; all fields are arrays (a pytree that ``vmap`` can batch).

    Attributes:
        v_src: (k,) pretrained head.
        B_src: (k, d) pretrained first layer.
        A: (d, d) input map x_trg = A x_src (identity for an output shift).
        t: () output scale y_trg = t·y_src (1 for an input shift).
        basis: (d, d) orthonormal rows u_j of the sparse family (unused by the Gaussian family).
        probs: (d,) probabilities of the sparse directions (unused by the Gaussian family).
        v_star: (k,) target teacher head, t·v_src.
        B_star: (k, d) target teacher first layer, B_src A⁻¹.
    """

    v_src: jnp.ndarray
    B_src: jnp.ndarray
    A: jnp.ndarray
    t: jnp.ndarray
    basis: jnp.ndarray
    probs: jnp.ndarray
    v_star: jnp.ndarray
    B_star: jnp.ndarray

    @property
    def d(self) -> int:
        """Input dimension."""
        return self.B_src.shape[-1]

    @property
    def k(self) -> int:
        """Width."""
        return self.B_src.shape[-2]


def _orthonormal(key: jax.Array, d: int, dtype) -> jnp.ndarray:
    """A Haar-random (d, d) orthogonal matrix (rows orthonormal)."""
    q, r = jnp.linalg.qr(jax.random.normal(key, (d, d), dtype))
    return q * jnp.sign(jnp.diagonal(r))[None, :]


def shift_matrix(shift: InputShift, subspace: jnp.ndarray) -> jnp.ndarray:
    """The (d, d) matrix A of an input shift acting on the given orthonormal directions.

    Args:
        shift: the input shift.
        subspace: (m, d) orthonormal rows; ``"scale"`` uses the first r rows, ``"rotate"`` the first 2r
            (plane i is spanned by rows 2i and 2i+1).

    Example:
        >>> import jax.numpy as jnp
        >>> shift_matrix(InputShift(1, 3.0), jnp.eye(2)).tolist()
        [[3.0, 0.0], [0.0, 1.0]]
    """
    d = subspace.shape[1]
    eye = jnp.eye(d, dtype=subspace.dtype)
    r = int(shift.rank)
    if shift.kind == "scale":
        if r > d:
            raise ValueError(f"input shift rank {r} > d = {d}: expected rank <= d")
        U = subspace[:r]
        return eye + (shift.alpha - 1.0) * U.T @ U
    if 2 * r > d:
        raise ValueError(f"rotate shift of rank {r} needs 2*rank <= d = {d}")
    a, b = subspace[0 : 2 * r : 2], subspace[1 : 2 * r : 2]
    c, s = np.cos(shift.alpha), np.sin(shift.alpha)
    # Rotate each plane span{a_i, b_i}: a -> c a + s b, b -> -s a + c b.
    return eye + (c - 1.0) * (a.T @ a + b.T @ b) + s * (b.T @ a - a.T @ b)


def check_invertible(A: jnp.ndarray, name: str = "A") -> None:
    """Raise ValueError if a concrete (d, d) matrix is singular or numerically so (cond > 1e12).

    Example:
        >>> import jax.numpy as jnp
        >>> check_invertible(jnp.eye(2))
        >>> check_invertible(jnp.zeros((2, 2)))
        Traceback (most recent call last):
            ...
        ValueError: A is singular (condition number inf): expected an invertible matrix
    """
    if is_traced(A):
        return
    a = np.asarray(A)
    cond = np.linalg.cond(a)
    if not np.isfinite(cond) or cond > 1e12:
        raise ValueError(f"{name} is singular (condition number {cond:.3g}): expected an invertible matrix")


def make_problem(
    key: jax.Array,
    *,
    d: int,
    k: int,
    activation: str,
    family: str,
    shift: Shift,
    nonneg_head: bool = False,
    p1: float = 0.3,
    dtype=None,
) -> Problem:
    """Draw a pretrained network and build the shifted target problem.

    Pretrained weights: B_src has i.i.d. N(0, 1/d) entries (so pre-activations are O(1)), v_src has
    i.i.d. N(0, 1/k) entries, replaced by their absolute values when ``nonneg_head``. The shifted
    subspace is random for the Gaussian family and spanned by the first basis directions u_1, u_2, ...
    for the sparse family, whose probabilities are p_1 for u_1 and (1 − p_1)/(d − 1) for the others.

    Args:
        key: PRNG key; the same key gives the same problem.
        d, k: input dimension and width.
        activation: ``"linear"`` or ``"relu"`` (only validated here; the problem is the same).
        family: ``"gaussian"`` or ``"sparse"``.
        shift: :class:`InputShift` or :class:`OutputShift`.
        nonneg_head: draw v_src ≥ 0 (the setting of claim C4).
        p1: mass of direction u_1 in the sparse family, in (0, 1].
        dtype: float dtype (default: JAX's default float, float64 when x64 is enabled).

    Returns:
        A :class:`Problem`.

    Example:
        >>> p = make_problem(jax.random.PRNGKey(0), d=3, k=2, activation="linear", family="gaussian",
        ... shift=OutputShift(-1.0))
        >>> (p.d, p.k, float(p.t))
        (3, 2, -1.0)
    """
    _check_problem_args(d, k, activation, family, shift, p1)
    dtype = dtype or jnp.zeros(()).dtype
    kb, kv, ku, ks = jax.random.split(key, 4)
    B_src = jax.random.normal(kb, (k, d), dtype) / np.sqrt(d)
    v_src = jax.random.normal(kv, (k,), dtype) / np.sqrt(k)
    if nonneg_head:
        v_src = jnp.abs(v_src)
    return _shifted_problem(v_src, B_src, ku, ks, d=d, family=family, shift=shift, p1=p1)


def _check_problem_args(d, k, activation, family, shift, p1) -> None:
    check_choice("activation", activation, ACTIVATIONS)
    check_choice("family", family, FAMILIES)
    if int(d) < 1 or (not is_traced(k) and int(k) < 1):
        raise ValueError(f"d = {d}, k = {k}: expected positive integers")
    if not (0.0 < p1 <= 1.0):
        raise ValueError(f"p1 = {p1}: expected a probability in (0, 1]")
    if not isinstance(shift, InputShift | OutputShift):
        raise ValueError(f"shift {shift!r}: expected an InputShift or an OutputShift")


def _shifted_problem(v_src, B_src, ku, ks, *, d, family, shift, p1) -> Problem:
    """The problem of a pretrained (v_src (k,), B_src (k, d)): the basis drawn from ``ku``, the
    shift's subspace (Gaussian input shift) from ``ks``, the shift and the target teacher."""
    dtype = B_src.dtype
    basis = _orthonormal(ku, d, dtype)
    if d > 1:
        probs = jnp.full((d,), (1.0 - p1) / (d - 1), dtype).at[0].set(p1)
    else:
        probs = jnp.ones((1,), dtype)
    eye = jnp.eye(d, dtype=dtype)
    if isinstance(shift, InputShift):
        subspace = basis if family == "sparse" else _orthonormal(ks, d, dtype)
        A = shift_matrix(shift, subspace)
        check_invertible(A)
        t = jnp.asarray(1.0, dtype)
        B_star = jnp.linalg.solve(A.T, B_src.T).T  # B_src A⁻¹
        v_star = v_src
    else:
        A, t = eye, jnp.asarray(shift.t, dtype)
        B_star, v_star = B_src, t * v_src
    return Problem(v_src, B_src, A, t, basis, probs, v_star, B_star)


def prefix_stable_draws() -> bool:
    """Whether a draw's values depend only on their flat index, so that
    ``normal(key, (m, d))[:k]`` equals ``normal(key, (k, d))`` bit for bit for every k ≤ m.

    True under JAX's partitionable threefry (``jax_threefry_partitionable``, the default since
    JAX 0.5); :func:`make_padded_problem` relies on it (``tests/twolayer/test_padded_problem.py``
    checks the bits)."""
    return bool(jax.config.jax_threefry_partitionable)


def make_padded_problem(
    key: jax.Array,
    *,
    d: int,
    k: int | jnp.ndarray,
    k_pad: int,
    activation: str,
    family: str,
    shift: Shift,
    nonneg_head: bool = False,
    p1: float = 0.3,
    dtype=None,
) -> Problem:
    """:func:`make_problem`'s problem of width ``k`` with its k-indexed arrays (v_src, B_src,
    v_star, B_star) zero-padded to ``k_pad`` rows; ``k`` may be a traced integer, so one compiled
    program serves every width up to ``k_pad``.

    It draws B_src and v_src at width ``k_pad`` and keeps the first k rows (scaled by 1/√k as
    :func:`make_problem` does): the same numbers as the unpadded draws because JAX's partitionable
    threefry draws by flat index (:func:`prefix_stable_draws`; a ``RuntimeError`` otherwise). The
    other draws do not depend on k. B_star = B_src A⁻¹ is solved for the padded rows, so it may
    differ from the unpadded one by rounding.

    Example:
        >>> key = jax.random.PRNGKey(0)
        >>> kw = dict(d=3, activation="linear", family="gaussian", shift=OutputShift(-1.0))
        >>> p, q = make_padded_problem(key, k=2, k_pad=4, **kw), make_problem(key, k=2, **kw)
        >>> p.B_src.shape, bool((p.B_src[:2] == q.B_src).all()), float(abs(p.v_src[2:]).sum())
        ((4, 3), True, 0.0)
    """
    _check_problem_args(d, k, activation, family, shift, p1)
    if not prefix_stable_draws():
        raise RuntimeError("make_padded_problem needs prefix-stable draws: set "
                           "jax.config.update('jax_threefry_partitionable', True)")
    if not is_traced(k) and not int(k) <= k_pad:
        raise ValueError(f"k = {k} > k_pad = {k_pad}: expected k <= k_pad")
    dtype = dtype or jnp.zeros(()).dtype
    keep = jnp.arange(k_pad) < k
    kb, kv, ku, ks = jax.random.split(key, 4)
    B_src = jnp.where(keep[:, None], jax.random.normal(kb, (k_pad, d), dtype) / np.sqrt(d), 0.0)
    v_src = jax.random.normal(kv, (k_pad,), dtype) / jnp.sqrt(jnp.asarray(k, dtype))
    if nonneg_head:
        v_src = jnp.abs(v_src)
    v_src = jnp.where(keep, v_src, 0.0)
    p = _shifted_problem(v_src, B_src, ku, ks, d=d, family=family, shift=shift, p1=p1)
    return p._replace(B_star=jnp.where(keep[:, None], p.B_star, 0.0))  # no -0 from the solve


def check_problem(problem: Problem) -> None:
    """Validate the shapes and finiteness of an (unbatched) problem; raise ValueError if off.

    Example:
        >>> p = make_problem(jax.random.PRNGKey(0), d=3, k=2, activation="linear", family="gaussian",
        ... shift=OutputShift(-1.0))
        >>> check_problem(p)
        >>> check_problem(p._replace(t=jnp.ones(2)))
        Traceback (most recent call last):
            ...
        ValueError: t has shape (2,): expected ()
    """
    k, d = np.shape(problem.B_src)
    check_array("v_src", problem.v_src, (k,))
    check_array("B_src", problem.B_src, (k, d))
    check_array("A", problem.A, (d, d))
    check_array("t", problem.t, ())
    check_array("basis", problem.basis, (d, d))
    check_array("probs", problem.probs, (d,))
    check_array("v_star", problem.v_star, (k,))
    check_array("B_star", problem.B_star, (k, d))


def target_second_moment(problem: Problem, family: str) -> jnp.ndarray:
    """Σ = E_trg[x xᵀ], shape (d, d): A Aᵀ (Gaussian) or A Uᵀ diag(p) U Aᵀ (sparse).

    Example:
        >>> p = make_problem(jax.random.PRNGKey(0), d=3, k=2, activation="linear", family="gaussian",
        ... shift=OutputShift(-1.0))
        >>> target_second_moment(p, "gaussian").shape
        (3, 3)
    """
    check_choice("family", family, FAMILIES)
    if family == "gaussian":
        return problem.A @ problem.A.T
    D = target_directions(problem)
    return D.T @ (problem.probs[:, None] * D)


def target_moment_root_t(problem: Problem, family: str, Y: jnp.ndarray) -> jnp.ndarray:
    """Mᵀ Y for the factor M of Σ = E_trg[x xᵀ] = M Mᵀ fixed by the problem's construction.

    M = A (Gaussian: Σ = A Aᵀ) or M = A Uᵀ diag(√p) (sparse: Σ = A Uᵀ diag(p) U Aᵀ, rows u_j of
    ``basis``). Costs O(d² m) for Y of shape (d,) or (d, m), without forming Σ or M (O(d³)); the
    quadratic form eᵀΣe is ‖Mᵀe‖² (:func:`target_quadratic_form`).

    Example:
        >>> p = make_problem(jax.random.PRNGKey(0), d=3, k=2, activation="linear", family="sparse",
        ... shift=InputShift(1, 2.0))
        >>> M = target_moment_root_t(p, "sparse", jnp.eye(3)).T
        >>> bool(jnp.allclose(M @ M.T, target_second_moment(p, "sparse")))
        True
    """
    check_choice("family", family, FAMILIES)
    AtY = problem.A.T @ Y
    if family == "gaussian":
        return AtY
    root_p = jnp.sqrt(problem.probs)
    return (root_p if AtY.ndim == 1 else root_p[:, None]) * (problem.basis @ AtY)


def target_quadratic_form(problem: Problem, family: str, e: jnp.ndarray) -> jnp.ndarray:
    """eᵀ Σ e = ‖Mᵀe‖² for e of shape (d,), Σ = E_trg[x xᵀ], in O(d²) (:func:`target_moment_root_t`).

    Example:
        >>> p = make_problem(jax.random.PRNGKey(0), d=3, k=2, activation="linear", family="gaussian",
        ... shift=InputShift(1, 2.0))
        >>> e = jnp.array([1.0, -2.0, 0.5])
        >>> bool(jnp.allclose(target_quadratic_form(p, "gaussian", e),
        ... e @ target_second_moment(p, "gaussian") @ e))
        True
    """
    r = target_moment_root_t(problem, family, e)
    return r @ r


def target_directions(problem: Problem) -> jnp.ndarray:
    """Rows A u_j of the sparse target family, shape (d, d).

    Example:
        >>> p = make_problem(jax.random.PRNGKey(0), d=3, k=2, activation="linear", family="sparse",
        ... shift=OutputShift(-1.0))
        >>> target_directions(p).shape
        (3, 3)
    """
    return problem.basis @ problem.A.T


def sample_source_inputs(key: jax.Array, problem: Problem, family: str, n: int) -> jnp.ndarray:
    """n source inputs x_src, shape (n, d), from the problem's family.

    Example:
        >>> p = make_problem(jax.random.PRNGKey(0), d=3, k=2, activation="linear", family="gaussian",
        ... shift=OutputShift(-1.0))
        >>> sample_source_inputs(jax.random.PRNGKey(1), p, "gaussian", 5).shape
        (5, 3)
    """
    check_choice("family", family, FAMILIES)
    d = problem.B_src.shape[-1]
    dtype = problem.B_src.dtype
    kz, kj = jax.random.split(key)
    if family == "gaussian":
        return jax.random.normal(kz, (n, d), dtype)
    J = jax.random.categorical(kj, jnp.log(problem.probs), shape=(n,))
    z = jax.random.normal(kz, (n,), dtype)
    return z[:, None] * problem.basis[J]


def sample_target(
    key: jax.Array, problem: Problem, family: str, activation: str, n: int
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Draw n labelled target examples from the definition of the shift.

    x_src is drawn from the source family, x_trg = A x_src and y_trg = t·v_srcᵀφ(B_src x_src); the
    target teacher (v_star, B_star) is NOT used, so tests can check it against the definition.

    Returns:
        X: (n, d) target inputs; y: (n,) target labels.

    Example:
        >>> p = make_problem(jax.random.PRNGKey(0), d=3, k=2, activation="linear", family="gaussian",
        ... shift=OutputShift(-1.0))
        >>> X, y = sample_target(jax.random.PRNGKey(1), p, "gaussian", "linear", 4)
        >>> (X.shape, y.shape)
        ((4, 3), (4,))
    """
    check_choice("activation", activation, ACTIVATIONS)
    if int(n) < 1:
        raise ValueError(f"n = {n}: expected at least one sample")
    x_src = sample_source_inputs(key, problem, family, n)
    y = problem.t * forward(problem.v_src, problem.B_src, x_src, activation)
    return x_src @ problem.A.T, y
