"""Gradient-descent fine-tuning from the pretrained point: first layer, last layer or both ("full").

The objective is the empirical loss L̂(v, B) = (1/2n) Σ (vᵀφ(B x_i) − y_i)² on n target samples.

Two exact ways to run GD, chosen per (tune, activation) by ``method="auto"``:

* **closed-form trajectory** (last layer with any φ; first layer with φ = identity): the problem is
  least squares, so the iterate after t steps is a closed form through one symmetric
  eigendecomposition of the Gram matrix (:mod:`twolayer.closed_form`), for any number of steps;
* **span iteration** (everything else): every gradient of B is G X for some (k, n) matrix G, so
  B_t − B_src = M_t X stays in the row span of X. We iterate (v, M) and the pre-activations
  H = B_src Xᵀ + M (X Xᵀ), costing O(k n²) per step instead of O(k n d); for φ = identity the
  B-gradient is rank one and a step costs O(n² + k n). When n > d the span trick does
  not pay and M is (k, d) with B = B_src + M. The steps are the same GD steps up to rounding.

Step size (``lr=None``): η = 1/L with L a smoothness bound at the pretrained point:

* last layer: L = σ_max(Z)²/n, Z = φ(X B_srcᵀ) (exact Hessian norm);
* first layer: L = ‖v_src‖² σ_max(X)²/n (exact for φ = identity; for ReLU it bounds the Gauss–Newton
  term, since 0 ≤ φ' ≤ 1);
* full: L = σ_max(Z)²/n + ‖v_src‖² σ_max(X)²/n + ‖Xᵀr_0‖/n, adding the cross term's bound at
  the start (the bound is local; divergence is detected, not assumed away).

If L = 0 (the objective is constant in the tuned parameters, e.g. last-layer tuning with every ReLU
feature dead on the samples) the step is 0: the start is returned unchanged and converged, and
``lr = 0`` in the result says so.

Convergence (span iteration): ‖∇L̂‖ ≤ gtol·‖∇L̂ at start‖, or the data fitted to rounding level
(train residual ‖r‖ ≤ 100·ε·‖y‖, where the gradient is zero to machine precision, e.g. when it
already was at the start), checked at each record. Convergence (closed-form trajectory, whose limit
is known exactly from the same eigendecomposition): ‖u_t − u∞‖ ≤ gtol·‖u∞ − u_0‖ (+ 100·ε·(‖u_0‖ +
‖u∞‖)) for the tuned parameters u (v, or the predictor Bᵀv_src); a gradient test would pass early
along directions of tiny curvature while the iterate is still far from its limit.

Divergence: a non-finite value or a train loss above 1e8 × (its start + ‖y‖²/2n, the zero
predictor's loss) stops the run at the last finite state with ``diverged = True``.
The target loss is recorded exactly (:func:`~twolayer.losses.population_loss`) at ``record_steps``;
after a run stops (converged or diverged) the remaining records repeat its final value.
"""

from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from twolayer._checks import ACTIVATIONS, FAMILIES, TUNE_MODES, check_array, check_choice
from twolayer.closed_form import lsq_gd_path
from twolayer.losses import population_loss
from twolayer.model import activate, activate_grad, features
from twolayer.problems import Problem, check_problem

GD_METHODS = ("auto", "iterate")  # how GD runs: closed-form trajectory where exact, or iterate
DIVERGENCE_FACTOR = 1e8


class GDResult(NamedTuple):
    """Outcome of one fine-tuning run (add a leading batch axis for batched runs).

    Attributes:
        v: (k,) final head.  B: (k, d) final first layer.
        train_loss: () final L̂.  target_loss: () final exact target loss.
        trace: (R + 1,) exact target loss at ``record_steps`` (entry 0 is the pretrained point).
        record_steps: (R + 1,) step counts of the records.
        steps_taken: () steps actually run (fewer than requested if converged or diverged early).
        grad_norm: () final gradient norm.  grad_norm0: () gradient norm at the start.
        converged: () bool (module docstring: gradient test, or distance to the exact limit for
            closed-form trajectories).  diverged: () bool.
        lr: () step size used (0 when the smoothness bound L is 0: the start is stationary).
    """

    v: jnp.ndarray
    B: jnp.ndarray
    train_loss: jnp.ndarray
    target_loss: jnp.ndarray
    trace: jnp.ndarray
    record_steps: jnp.ndarray
    steps_taken: jnp.ndarray
    grad_norm: jnp.ndarray
    grad_norm0: jnp.ndarray
    converged: jnp.ndarray
    diverged: jnp.ndarray
    lr: jnp.ndarray


def record_schedule(steps: int, n_records: int) -> np.ndarray:
    """Record steps 0, s, 2s, ..., steps with s = ceil(steps / n_records); shape (R + 1,).

    Example:
        >>> record_schedule(10, 3).tolist()
        [0, 4, 8, 10]
    """
    if steps < 1 or n_records < 1:
        raise ValueError(f"steps = {steps}, n_records = {n_records}: expected both >= 1")
    seg = math.ceil(steps / min(n_records, steps))
    return np.minimum(np.arange(0, steps + seg, seg), steps)[: math.ceil(steps / seg) + 1]


def _top_eig(gram: jnp.ndarray) -> jnp.ndarray:
    return jnp.linalg.eigvalsh(gram)[-1]


def _sq_op_norm(F: jnp.ndarray) -> jnp.ndarray:
    """σ_max(F)² through the smaller Gram matrix."""
    n, p = F.shape
    return _top_eig(F @ F.T if n <= p else F.T @ F)


def smoothness_bound(problem: Problem, X, y, tune: str, activation: str, n_valid=None) -> jnp.ndarray:
    """The smoothness constant L of L̂ at the pretrained point used for the default step 1/L.

    ``n_valid``: number of real samples when X, y carry zero padding rows (default: all rows).

    Example:
        >>> import twolayer as tl
        >>> p = tl.make_problem(jax.random.PRNGKey(0), d=3, k=2, activation="linear", family="gaussian",
        ... shift=tl.OutputShift(-1.0))
        >>> X, y = tl.sample_target(jax.random.PRNGKey(1), p, "gaussian", "linear", 4)
        >>> float(smoothness_bound(p, X, y, "last", "linear")) > 0
        True
    """
    n = X.shape[0] if n_valid is None else n_valid
    v = problem.v_src
    L_first = (v @ v) * _sq_op_norm(X) / n
    if tune == "first":
        return L_first
    Z = features(problem.B_src, X, activation)
    L_last = _sq_op_norm(Z) / n
    if tune == "last":
        return L_last
    r0 = Z @ v - y
    return L_last + L_first + jnp.linalg.norm(X.T @ r0) / n


def _loss_reference(loss0, y, n):
    """Scale of the divergence test: the start loss plus the zero predictor's loss ‖y‖²/(2n), so that
    a run starting at an exact fit is not flagged by rounding noise."""
    return loss0 + 0.5 * (y @ y) / n + jnp.finfo(y.dtype).tiny


def _is_converged(gn, gn0, train_loss, y, n, gtol):
    """‖g‖ ≤ gtol‖g0‖, or a residual at rounding level: 2n·L̂ = ‖r‖² ≤ (100 ε ‖y‖)²."""
    eps = jnp.finfo(y.dtype).eps
    fitted = 2 * n * train_loss <= (100 * eps) ** 2 * (y @ y)
    return (gn <= gtol * gn0) | fitted


_T_LIMIT = 1e300  # a step count at which every gain g_t(λ) of a stable step equals 1/λ


def _path_and_limit(F, y, u0, t_grid, eta, n):
    """GD iterates at ``t_grid`` and the limit, from one eigendecomposition; ((T, p), (p,))."""
    grid = jnp.concatenate([t_grid.astype(F.dtype), jnp.asarray([_T_LIMIT], F.dtype)])
    path = lsq_gd_path(F, y, u0, grid, eta, n)
    return path[:-1], path[-1]


def _closed_form_run(problem, X, y, tune, activation, family, t_grid, lr, gtol, n):
    v0, B0 = problem.v_src, problem.B_src
    if tune == "last":
        F = features(B0, X, activation)
        us, u_lim = _path_and_limit(F, y, v0, t_grid, lr, n)  # (T, k), (k,)
        vs, Bs = us, jnp.broadcast_to(B0, (t_grid.shape[0], *B0.shape))
        grad_scale = 1.0
    else:  # first layer, linear: least squares in w = Bᵀv with step η‖v‖²
        vv = v0 @ v0
        F = X
        w0 = B0.T @ v0
        ws, u_lim = _path_and_limit(F, y, w0, t_grid, lr * vv, n)  # (T, d), (d,)
        Bs = B0[None] + v0[None, :, None] * (ws - w0)[:, None, :] / vv
        vs, us = jnp.broadcast_to(v0, (t_grid.shape[0], *v0.shape)), ws
        grad_scale = jnp.sqrt(vv)
    res = us @ F.T - y[None, :]  # (T, n)
    train = 0.5 * jnp.sum(res * res, axis=1) / n
    gnorms = grad_scale * jnp.linalg.norm(res @ F, axis=1) / n
    targets = jax.vmap(lambda v, B: population_loss(v, B, problem, family, activation))(vs, Bs)
    finite = jnp.isfinite(train) & jnp.isfinite(targets)
    ok = finite & (train <= DIVERGENCE_FACTOR * _loss_reference(train[0], y, n))
    last_ok = jnp.max(jnp.where(ok, jnp.arange(ok.shape[0]), 0))  # records are monotone here
    idx = jnp.arange(ok.shape[0])
    trace = jnp.where(idx <= last_ok, targets, targets[last_ok])
    diverged = ~jnp.all(ok)
    gn, gn0 = gnorms[last_ok], gnorms[0]
    # The limit is known exactly here, so convergence is the distance to it (a gradient test passes
    # early along directions of tiny curvature, far from the limit).
    u0 = us[0]
    eps = jnp.finfo(F.dtype).eps
    at_limit = jnp.linalg.norm(us[last_ok] - u_lim) <= (
        gtol * jnp.linalg.norm(u_lim - u0) + 100 * eps * (jnp.linalg.norm(u0) + jnp.linalg.norm(u_lim)))
    return GDResult(
        v=vs[last_ok],
        B=Bs[last_ok],
        train_loss=train[last_ok],
        target_loss=targets[last_ok],
        trace=trace,
        record_steps=t_grid,
        steps_taken=t_grid[last_ok],
        grad_norm=gn,
        grad_norm0=gn0,
        converged=(~diverged) & at_limit,
        diverged=diverged,
        lr=jnp.asarray(lr),
    )


def _span_run(problem, X, y, tune, activation, family, t_grid, lr, gtol, n, seg_len, masked, unroll):
    d = X.shape[1]
    span = X.shape[0] <= d
    k = problem.B_src.shape[0]
    R = X if span else jnp.eye(d, dtype=X.dtype)  # B = B_src + M R
    Q = R @ X.T  # (m, n)
    RRt = R @ R.T  # (m, m)
    H0 = problem.B_src @ X.T  # (k, n)
    tune_v, tune_B = tune in ("last", "full"), tune in ("first", "full")

    Kx = X @ X.T if span else None  # (n, n), for the rank-one updates of the linear case

    def loss_and_gnorm(v, H):
        """L̂ and ‖∇L̂‖ (over the tuned parameters) at pre-activations H = B Xᵀ."""
        Z = activate(H, activation)
        r = v @ Z - y
        gv = Z @ r / n
        G = (v[:, None] * activate_grad(H, activation)) * (r / n)[None, :]
        gM = G if span else G @ X
        g2 = (gv @ gv if tune_v else 0.0) + (jnp.sum(gM * (gM @ RRt)) if tune_B else 0.0)
        return 0.5 * jnp.sum(r * r) / n, jnp.sqrt(g2)

    def step(_, state):
        # The pre-activations H = B_src Xᵀ + M Q are carried and updated with M. For φ = identity the
        # B-gradient is rank one, v uᵀX (u = r/n), so H moves by −η v (uᵀ X Xᵀ): O(n² + kn) per step
        # instead of the O(k n²) of a general update.
        v, M, H = state
        Z = activate(H, activation)
        u = (v @ Z - y) / n
        gv = Z @ u
        if tune_B and activation == "linear":
            XtU = None if span else X.T @ u
            Ku = Kx @ u if span else X @ XtU
            M = M - lr * jnp.outer(v, u if span else XtU)
            H = H - lr * jnp.outer(v, Ku)
        elif tune_B:
            G = (v[:, None] * activate_grad(H, activation)) * u[None, :]
            gM = G if span else G @ X
            M = M - lr * gM
            H = H - lr * (gM @ Q)
        return (v - lr * gv if tune_v else v), M, H

    def target(v, M):
        return population_loss(v, problem.B_src + M @ R, problem, family, activation)

    v0, M0 = problem.v_src, jnp.zeros((k, R.shape[0]), X.dtype)
    loss0, gn0 = loss_and_gnorm(v0, H0)
    T = t_grid.shape[0]
    trace0 = jnp.zeros((T,), X.dtype).at[0].set(target(v0, M0))
    limit = DIVERGENCE_FACTOR * _loss_reference(loss0, y, n)

    def cond(c):
        seg, *_, conv, div = c
        return (seg < T - 1) & ~conv & ~div

    def body(c):
        seg, v, M, H, trace, loss, gn, _, _ = c
        count = t_grid[seg + 1] - t_grid[seg]
        if unroll == 1:  # a loop of `count` steps
            v1, M1, H1 = jax.lax.fori_loop(0, count, step, (v, M, H))
        else:  # a static-length loop, `unroll` steps per iteration
            v1, M1, H1 = jax.lax.fori_loop(0, seg_len, _masked_step(step, count) if masked else step,
                                           (v, M, H), unroll=unroll)
        loss1, gn1 = loss_and_gnorm(v1, H1)
        bad = ~(jnp.isfinite(loss1) & jnp.isfinite(gn1) & (loss1 <= limit))
        bad = bad | ~(jnp.all(jnp.isfinite(v1)) & jnp.all(jnp.isfinite(M1)))
        v, M, H = jnp.where(bad, v, v1), jnp.where(bad, M, M1), jnp.where(bad, H, H1)
        loss, gn = jnp.where(bad, loss, loss1), jnp.where(bad, gn, gn1)
        trace = trace.at[seg + 1].set(target(v, M))
        return seg + 1, v, M, H, trace, loss, gn, (~bad) & _is_converged(gn, gn0, loss, y, n, gtol), bad

    init = (0, v0, M0, H0, trace0, loss0, gn0, jnp.asarray(False), jnp.asarray(False))
    seg, v, M, _, trace, loss, gn, conv, div = jax.lax.while_loop(cond, body, init)
    idx = jnp.arange(T)
    trace = jnp.where(idx <= seg, trace, trace[seg])
    # A diverged segment is not counted: the state is the one at the segment's start.
    steps_taken = jnp.where(div, t_grid[jnp.maximum(seg - 1, 0)], t_grid[seg])
    return GDResult(
        v=v,
        B=problem.B_src + M @ R,
        train_loss=loss,
        target_loss=trace[seg],
        trace=trace,
        record_steps=t_grid,
        steps_taken=steps_taken,
        grad_norm=gn,
        grad_norm0=gn0,
        converged=conv,
        diverged=div,
        lr=jnp.asarray(lr),
    )


def _masked_step(step, count):
    """``step`` for the first ``count`` iterations of a segment, the identity after (a short last
    segment run inside a loop of the static segment length)."""
    def masked(i, state):
        new = step(i, state)
        return jax.tree.map(lambda a, b: jnp.where(i < count, a, b), new, state)
    return masked


#: GD steps per loop iteration of the span iteration on an accelerator, where every loop iteration
#: costs a launch and a host round trip for its predicate (1 on CPU, where iterations are cheap).
ACCELERATOR_UNROLL = 8


def default_unroll(platform: str | None = None) -> int:
    """Steps per loop iteration of the span iteration: 1 on CPU, :data:`ACCELERATOR_UNROLL` elsewhere.

    >>> default_unroll("cpu"), default_unroll("gpu")
    (1, 8)
    """
    return 1 if (platform or jax.default_backend()) == "cpu" else ACCELERATOR_UNROLL


def uses_closed_form(tune: str, activation: str) -> bool:
    """Whether ``method="auto"`` runs the closed-form trajectory for this (tune, activation).

    Example:
        >>> uses_closed_form("first", "linear"), uses_closed_form("first", "relu")
        (True, False)
    """
    return tune == "last" or (tune == "first" and activation == "linear")


def finetune_core(
    problem: Problem,
    X: jnp.ndarray,
    y: jnp.ndarray,
    *,
    tune: str,
    activation: str,
    family: str,
    steps: int = 2000,
    lr: float | jnp.ndarray | None = None,
    gtol: float = 1e-8,
    n_records: int = 20,
    method: str = "auto",
    n_valid=None,
    unroll: int | None = None,
) -> GDResult:
    """:func:`finetune` without input validation: pure, jit- and vmap-able (strings/ints static).

    ``unroll``: GD steps per loop iteration of the span iteration (static; default
    :func:`default_unroll`). The steps and their results do not depend on it.

    Example:
        >>> import twolayer as tl
        >>> p = tl.make_problem(jax.random.PRNGKey(0), d=3, k=2, activation="linear", family="gaussian",
        ... shift=tl.OutputShift(-1.0))
        >>> X, y = tl.sample_target(jax.random.PRNGKey(1), p, "gaussian", "linear", 4)
        >>> r = finetune_core(p, X, y, tune="last", activation="linear", family="gaussian", steps=50,
        ... lr=None, gtol=1e-8, n_records=5)
        >>> r.trace.shape
        (6,)
    """
    schedule = record_schedule(steps, n_records)
    t_grid = jnp.asarray(schedule)
    n = X.shape[0] if n_valid is None else jnp.asarray(n_valid, X.dtype)
    L = smoothness_bound(problem, X, y, tune, activation, n)
    # L = 0: the objective is constant in the tuned parameters (e.g. every ReLU feature dead on the
    # samples), the start is stationary; step 0 returns it unchanged and converged.
    default = jnp.where(L > 0, 1.0 / jnp.where(L > 0, L, 1.0), 0.0)
    # lr None (or NaN, used by batched calls) means the default step 1/L.
    eta = default if lr is None else jnp.where(jnp.isnan(lr), default, jnp.asarray(lr, X.dtype))
    if method == "auto" and uses_closed_form(tune, activation):
        return _closed_form_run(problem, X, y, tune, activation, family, t_grid, eta, gtol, n)
    # Each segment between records is a loop of static length (the longest segment; only a short
    # last segment masks its extra iterations), so the loop can be unrolled.
    lengths = np.diff(schedule)
    return _span_run(problem, X, y, tune, activation, family, t_grid, eta, gtol, n,
                     seg_len=int(lengths.max()), masked=bool(np.any(lengths != lengths.max())),
                     unroll=int(unroll or default_unroll()))


_STATIC = ("tune", "activation", "family", "steps", "n_records", "method")


@partial(jax.jit, static_argnames=_STATIC)
def _finetune_jit(
    problem, X, y, lr, gtol, n_valid, *, tune, activation, family, steps, n_records, method
):
    return finetune_core(
        problem, X, y, tune=tune, activation=activation, family=family, steps=steps,
        lr=lr, gtol=gtol, n_records=n_records, method=method, n_valid=n_valid,
    )


@partial(jax.jit, static_argnames=(*_STATIC, "chunk_size", "unroll"))
def _finetune_batch_jit(
    problems, X, y, lr, gtol, n_valid, *, tune, activation, family, steps, n_records, method, chunk_size,
    unroll=None,
):
    def one(args):
        p, x, t, eta, nv = args
        return finetune_core(
            p, x, t, tune=tune, activation=activation, family=family, steps=steps,
            lr=eta, gtol=gtol, n_records=n_records, method=method, n_valid=nv, unroll=unroll,
        )

    args = (problems, X, y, lr, n_valid)
    if chunk_size is None:  # one vectorized batch (lax.map with batch_size=None would run it serially)
        return jax.vmap(one)(args)
    return jax.lax.map(one, args, batch_size=chunk_size)


def _check_run_args(tune, activation, family, method, steps, n_records, gtol):
    check_choice("tune mode", tune, TUNE_MODES)
    check_choice("activation", activation, ACTIVATIONS)
    check_choice("family", family, FAMILIES)
    check_choice("method", method, GD_METHODS)
    for name, value in (("steps", steps), ("n_records", n_records)):
        if isinstance(value, bool) or not float(value).is_integer():
            raise ValueError(f"{name} = {value!r}: expected an integer >= 1")
    record_schedule(int(steps), int(n_records))
    if not (gtol >= 0 and np.isfinite(gtol)):
        raise ValueError(f"gtol = {gtol}: expected a finite number >= 0")


def _check_lr(lr, batch: int | None = None) -> None:
    """Step sizes must be positive and finite; in a batch, NaN entries stand for the default 1/L."""
    if lr is None:
        return
    a = np.asarray(lr)
    if batch is not None and a.ndim == 1 and a.shape[0] != batch:
        raise ValueError(f"lr has {a.shape[0]} entries: expected one per problem ({batch})")
    if batch is not None:
        a = a[~np.isnan(a)]
    if not (np.all(np.isfinite(a)) and np.all(a > 0)):
        raise ValueError(f"lr = {lr}: expected positive finite step sizes")


def _check_unroll(unroll) -> int:
    if isinstance(unroll, bool) or not isinstance(unroll, (int, np.integer)) or unroll < 1:
        raise ValueError(f"unroll = {unroll!r}: expected a positive integer (or None for the default)")
    return int(unroll)


def _check_padding(X: np.ndarray, y: np.ndarray, n_valid: np.ndarray) -> None:
    """Rows at or past n_valid must be zero in X and y; 1 <= n_valid <= rows. X (P, n, d), y (P, n)."""
    rows = X.shape[1]
    if np.any(n_valid < 1) or np.any(n_valid > rows) or np.any(n_valid != np.round(n_valid)):
        raise ValueError(f"n_valid = {n_valid}: expected integers between 1 and the {rows} rows of X")
    pad = np.arange(rows)[None, :] >= n_valid[:, None]  # (P, n)
    if np.any(X[pad] != 0) or np.any(y[pad] != 0):
        raise ValueError("rows of X or y past n_valid are not zero: expected zero padding there")


def finetune(
    problem: Problem,
    X,
    y,
    *,
    tune: str,
    activation: str,
    family: str,
    steps: int = 2000,
    lr: float | None = None,
    gtol: float = 1e-8,
    n_records: int = 20,
    method: str = "auto",
    n_valid: int | None = None,
) -> GDResult:
    """Fine-tune one problem by gradient descent from (v_src, B_src); validated and jit-compiled.

    Args:
        problem: the :class:`~twolayer.problems.Problem` (unbatched).
        X: (n, d) target inputs.  y: (n,) target labels.
        tune: ``"first"`` (B only), ``"last"`` (v only) or ``"full"`` (both).
        activation: ``"linear"`` or ``"relu"``.  family: ``"gaussian"`` or ``"sparse"`` (for the
            exact target loss).
        steps: number of GD steps.  lr: step size (default 1/L, module docstring).
        gtol: relative gradient-norm tolerance for convergence.
        n_records: number of recorded target losses after the start.
        method: ``"auto"`` (closed-form trajectory where exact) or ``"iterate"`` (always step).
        n_valid: number of real samples when the last rows of X and y are zero padding (so that
            problems with different n share one compiled shape); results equal the unpadded run's.

    Returns:
        A :class:`GDResult`.

    Raises:
        ValueError: unknown mode/activation/family/method, wrong shapes, non-finite inputs, bad lr.

    Example:
        >>> import twolayer as tl
        >>> p = tl.make_problem(jax.random.PRNGKey(0), d=3, k=2, activation="linear", family="gaussian",
        ... shift=tl.OutputShift(-1.0))
        >>> X, y = tl.sample_target(jax.random.PRNGKey(1), p, "gaussian", "linear", 4)
        >>> r = finetune(p, X, y, tune="last", activation="linear", family="gaussian", steps=200)
        >>> bool(r.target_loss < r.trace[0])
        True
    """
    _check_run_args(tune, activation, family, method, steps, n_records, gtol)
    check_problem(problem)
    d = np.shape(problem.B_src)[1]
    check_array("X", X, (None, d))
    check_array("y", y, (np.shape(X)[0],))
    _check_lr(lr)
    n_rows = np.shape(X)[0]
    nv = n_rows if n_valid is None else int(n_valid)
    _check_padding(np.asarray(X)[None], np.asarray(y)[None], np.array([nv]))
    return _finetune_jit(
        problem, X, y, lr, gtol, jnp.asarray(nv, X.dtype), tune=tune, activation=activation, family=family,
        steps=int(steps), n_records=int(n_records), method=method,
    )


#: Problems per chunk of :func:`finetune_batch` on CPU: keeps a chunk's state in cache.
CPU_CHUNK = 16
#: Bytes of working memory a batched call may use on an accelerator.
ACCELERATOR_MEMORY_BYTES = 4e9


def auto_chunk_size(P: int, n: int, d: int, k: int, platform: str | None = None) -> int | None:
    """The default ``chunk_size`` of :func:`finetune_batch` for P problems of shape (n, d, k).

    On CPU, :data:`CPU_CHUNK` problems per chunk (cache-sized; sequential chunks cost nothing
    there). On an accelerator, every problem at once (``None``: one vectorized step per GD step,
    so a step is not launch-bound) unless a rough estimate of the float64 working set exceeds
    :data:`ACCELERATOR_MEMORY_BYTES`; then the largest chunk that fits.

    >>> auto_chunk_size(256, 64, 128, 16, platform="cpu"), auto_chunk_size(256, 64, 128, 16, "gpu")
    (16, None)
    """
    platform = platform or jax.default_backend()
    if platform == "cpu":
        return CPU_CHUNK
    m = max(n, d)
    per_problem = 8 * 4 * (2 * n * d + 2 * d * d + 4 * n * n + 8 * k * m)
    fit = max(1, int(ACCELERATOR_MEMORY_BYTES // per_problem))
    return None if fit >= P else fit


def finetune_batch(
    problems: Problem,
    X,
    y,
    *,
    tune: str,
    activation: str,
    family: str,
    steps: int = 2000,
    lr=None,
    gtol: float = 1e-8,
    n_records: int = 20,
    method: str = "auto",
    chunk_size: int | str | None = "auto",
    n_valid=None,
    unroll: int | None = None,
) -> GDResult:
    """:func:`finetune` over a leading batch axis of (problems, X, y), in cache-sized chunks.

    Args:
        problems: a :class:`~twolayer.problems.Problem` whose arrays have a leading axis of size P.
        X: (P, n, d).  y: (P, n).  lr: None, a float, or (P,) step sizes (NaN entries: default 1/L).
        chunk_size: problems per vectorized chunk (``jax.lax.map`` over chunks of ``vmap``); ``None``
            vectorizes the whole batch at once; ``"auto"`` (default) is :func:`auto_chunk_size`.
            Results do not depend on it.
        n_valid: None or (P,) numbers of real samples; rows past them must be zero (padding).
        unroll: GD steps per loop iteration of the span iteration (default :func:`default_unroll`);
            results do not depend on it.
        Other arguments as in :func:`finetune`.

    Returns:
        A :class:`GDResult` whose fields have a leading axis of size P.

    Example:
        >>> import twolayer as tl
        >>> keys = jax.random.split(jax.random.PRNGKey(0), 3)
        >>> ps = jax.vmap(lambda k: tl.make_problem(k, d=3, k=2, activation="linear", family="gaussian",
        ... shift=tl.OutputShift(-1.0)))(keys)
        >>> X, y = jax.vmap(lambda k, p: tl.sample_target(k, p, "gaussian", "linear", 4))(keys, ps)
        >>> r = finetune_batch(ps, X, y, tune="full", activation="linear", family="gaussian", steps=20,
        ... n_records=4)
        >>> r.trace.shape
        (3, 5)
    """
    _check_run_args(tune, activation, family, method, steps, n_records, gtol)
    if np.ndim(X) != 3:
        raise ValueError(f"X has shape {np.shape(X)}: expected (P, n, d) for a batch of P problems")
    P, n, d = np.shape(X)
    k = np.shape(problems.B_src)[-2] if np.ndim(problems.B_src) == 3 else None
    if k is None:
        raise ValueError(f"problems.B_src has shape {np.shape(problems.B_src)}: expected (P, k, {d})")
    want = {"v_src": (P, k), "B_src": (P, k, d), "A": (P, d, d), "t": (P,), "basis": (P, d, d),
            "probs": (P, d), "v_star": (P, k), "B_star": (P, k, d)}
    for name, arr in problems._asdict().items():
        check_array(f"problems.{name}", arr, want[name])
    check_array("y", y, (P, n))
    check_array("X", X, (P, n, d))
    _check_lr(lr, P)
    nv = np.full((P,), n) if n_valid is None else np.broadcast_to(np.asarray(n_valid), (P,))
    _check_padding(np.asarray(X), np.asarray(y), nv)
    lr_b = jnp.full((P,), jnp.nan, X.dtype) if lr is None else jnp.broadcast_to(
        jnp.asarray(lr, X.dtype), (P,))
    if chunk_size == "auto":
        chunk_size = auto_chunk_size(P, n, d, k)
    elif chunk_size is not None and (isinstance(chunk_size, (str, bool)) or int(chunk_size) < 1):
        raise ValueError(f"chunk_size = {chunk_size!r}: expected 'auto', None or a positive integer")
    chunk = None if chunk_size is None else max(1, min(int(chunk_size), P))
    return _finetune_batch_jit(
        problems, X, y, lr_b, gtol, jnp.asarray(nv, X.dtype), tune=tune, activation=activation, family=family,
        steps=int(steps), n_records=int(n_records), method=method, chunk_size=chunk,
        unroll=None if unroll is None else _check_unroll(unroll),
    )
