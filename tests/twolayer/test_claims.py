"""Property tests of claims C1–C7 (THEORY.md) and of the invariants behind them."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import assume, example, given
from hypothesis import strategies as st
from scipy.stats import binomtest

import twolayer as tl
from twolayer import bounds

from .conftest import PROPERTY, input_shifts, output_shifts, problem_and_data, rel, seeds

acts = st.sampled_from(["linear", "relu"])
fams = st.sampled_from(["gaussian", "sparse"])


@PROPERTY
@given(seed=seeds, act=acts, fam=fams, shift=input_shifts, d=st.integers(4, 12), k=st.integers(1, 5))
def test_c1_inverse_first_layer_has_zero_loss(seed, act, fam, shift, d, k):
    p, _, _ = problem_and_data(seed, d=d, k=k, n=1, activation=act, family=fam, shift=shift)
    B = np.linalg.solve(np.asarray(p.A).T, np.asarray(p.B_src).T).T  # B_src A⁻¹, computed afresh
    scale = float(tl.population_loss(p.v_src, p.B_src, p, fam, act)) + 1e-300
    assert float(tl.population_loss(p.v_src, jnp.asarray(B), p, fam, act)) <= 1e-12 * max(scale, 1.0)


@PROPERTY
@given(seed=seeds, fam=fams, shift=input_shifts, n=st.integers(1, 12), k=st.integers(1, 4))
def test_c2_last_layer_never_beats_the_floor(seed, fam, shift, n, k):
    d = 6
    p, X, y = problem_and_data(seed, d=d, k=k, n=n, activation="linear", family=fam, shift=shift)
    floor = float(bounds.c2_floor_of(p, fam))
    v_inf = tl.last_layer_limit(p.v_src, p.B_src, X, y, "linear")
    loss = float(tl.population_loss(v_inf, p.B_src, p, fam, "linear"))
    assert loss >= floor * (1 - 1e-9) - 1e-14
    # The floor is attained by the population-optimal head, so it is the min over v.
    cov = tl.target_second_moment(p, fam)
    w_star = p.B_star.T @ p.v_star
    v_opt = jnp.linalg.lstsq(p.B_src @ cov @ p.B_src.T, p.B_src @ cov @ w_star)[0]
    at_opt = float(tl.population_loss(v_opt, p.B_src, p, fam, "linear"))
    assert abs(at_opt - floor) <= 1e-9 * max(floor, 1e-12) + 1e-15
    # Positive when Σ^{1/2}w* is outside the range of Σ^{1/2}B_srcᵀ: generic for k < d, Gaussian.
    if fam == "gaussian" and k < d:
        assert floor > 1e-10 * float(w_star @ cov @ w_star)


@PROPERTY
@given(seed=seeds, act=acts, fam=fams, shift=output_shifts, extra=st.integers(0, 6))
def test_c3_last_layer_reaches_zero_when_features_have_rank_k(seed, act, fam, shift, extra):
    k = 3
    p, X, y = problem_and_data(seed, d=7, k=k, n=k + extra, activation=act, family=fam, shift=shift)
    assert float(tl.population_loss(shift.t * p.v_src, p.B_src, p, fam, act)) <= 1e-20
    Z = np.asarray(tl.features(p.B_src, X, act))
    assume(np.linalg.matrix_rank(Z, tol=1e-8 * np.abs(Z).max()) == k)  # rank-deficient runs: counted apart
    v_inf = tl.last_layer_limit(p.v_src, p.B_src, X, y, act)
    loss0 = float(tl.population_loss(p.v_src, p.B_src, p, fam, act))
    assert float(tl.population_loss(v_inf, p.B_src, p, fam, act)) <= 1e-10 * loss0


@PROPERTY
@given(seed=seeds, fam=fams, t=st.sampled_from([-2.0, -1.0, -0.5]), n=st.integers(1, 10))
def test_c4_first_layer_never_crosses_the_relu_floor(seed, fam, t, n):
    p, X, y = problem_and_data(seed, d=5, k=4, n=n, activation="relu", family=fam,
                               shift=tl.OutputShift(t), nonneg_head=True)
    floor = float(bounds.c4_floor(p, fam, "relu"))
    assert floor > 0
    r = tl.finetune(p, X, y, tune="first", activation="relu", family=fam, steps=3000, n_records=30)
    assert not bool(r.diverged)
    assert np.all(np.asarray(r.trace) >= floor * (1 - 1e-10))
    # Also for arbitrary first layers (the floor is over every B).
    B = jax.random.normal(jax.random.PRNGKey(seed % 101), p.B_src.shape) * 2
    assert float(tl.population_loss(p.v_src, B, p, fam, "relu")) >= floor * (1 - 1e-10)


@PROPERTY
@given(seed=seeds, shift=output_shifts, n=st.integers(3, 7), fam=fams)
def test_c6_output_shift_linear(seed, shift, n, fam):
    d, k = 8, 3  # k <= n < d
    p, X, y = problem_and_data(seed, d=d, k=k, n=n, activation="linear", family=fam, shift=shift)
    cov = tl.target_second_moment(p, fam)
    w0 = p.B_src.T @ p.v_src
    loss0 = float(tl.population_loss(p.v_src, p.B_src, p, fam, "linear"))
    # Sparse samples can repeat a direction; C6 needs rank(Z) = k (always so for Gaussian inputs).
    assume(np.linalg.matrix_rank(np.asarray(tl.features(p.B_src, X, "linear")), tol=1e-9) == k)
    v_inf = tl.last_layer_limit(p.v_src, p.B_src, X, y, "linear")
    assert float(tl.population_loss(v_inf, p.B_src, p, fam, "linear")) <= 1e-10 * loss0
    first = tl.finetune(p, X, y, tune="first", activation="linear", family=fam, steps=10**7, gtol=1e-12)
    predicted = float(bounds.first_layer_linear_loss(w0, shift.t * w0, X, cov))
    B_inf = tl.first_layer_limit(p.v_src, p.B_src, X, y)
    at_limit = float(tl.population_loss(p.v_src, B_inf, p, fam, "linear"))
    assert abs(at_limit - predicted) <= 1e-6 * predicted + 1e-15
    # GD reaches it where it converged (sparse samples with a tiny |z| converge on a time scale
    # n/(η s²) that can exceed 10^7 steps; the closed form then reports converged = False).
    if bool(first.converged):
        assert abs(float(first.target_loss) - predicted) <= 1e-6 * predicted + 1e-15
    if fam == "gaussian":
        assert predicted > 0


@PROPERTY
@given(seed=seeds, shift=input_shifts | output_shifts, fam=fams, n=st.integers(1, 10), d=st.integers(5, 9))
@example(seed=2, shift=tl.OutputShift(-1.0), fam="gaussian", n=5, d=5)  # κ² = 5.6e7: not in 1e8 steps
def test_c7_first_layer_limit_and_loss(seed, shift, fam, n, d):
    p, X, y = problem_and_data(seed, d=d, k=3, n=n, activation="linear", family=fam, shift=shift)
    B_inf = tl.first_layer_limit(p.v_src, p.B_src, X, y)
    w0, w_star = p.B_src.T @ p.v_src, p.B_star.T @ p.v_star
    cov = tl.target_second_moment(p, fam)
    predicted = float(bounds.first_layer_linear_loss(w0, w_star, X, cov))
    loss = float(tl.population_loss(p.v_src, B_inf, p, fam, "linear"))
    assert abs(loss - predicted) <= 1e-8 * max(predicted, 1e-12) + 1e-14
    steps, gtol = 10**8, 1e-13
    gd = tl.finetune(p, X, y, tune="first", activation="linear", family=fam, steps=steps, gtol=gtol)
    # With the step 1/L the slowest direction of the span of X contracts by 1 - 1/κ² per step
    # (κ = σ_max/σ_min of X), so reaching gtol takes about κ² ln(1/gtol) steps: GD must converge
    # when that is well inside the budget (e.g. not for n = d = 5 with σ_min = 5e-4, κ² = 5.6e7).
    s = np.linalg.svd(np.asarray(X), compute_uv=False)
    s = s[s > s[0] * 1e-12]
    if (s[0] / s[-1]) ** 2 * np.log(1 / gtol) < steps / 2:
        assert bool(gd.converged)
    if bool(gd.converged):
        assert rel(gd.B, B_inf) < 1e-6


@PROPERTY
@given(seed=seeds, shift=input_shifts | output_shifts, n=st.integers(1, 5), steps=st.integers(1, 400))
def test_first_layer_update_stays_in_v_times_span_x(seed, shift, n, steps):
    p, X, y = problem_and_data(seed, d=8, k=3, n=n, activation="linear", family="gaussian", shift=shift)
    r = tl.finetune(p, X, y, tune="first", activation="linear", family="gaussian", steps=steps,
                    method="iterate", gtol=0.0)
    D = np.asarray(r.B - p.B_src)
    v = np.asarray(p.v_src)
    a = v @ D / (v @ v)
    scale = np.linalg.norm(D) + 1e-300
    assert np.linalg.norm(D - np.outer(v, a)) <= 1e-10 * scale  # rank one along v_src
    Xn = np.asarray(X)
    a_perp = a - np.linalg.pinv(Xn) @ (Xn @ a)
    assert np.linalg.norm(a_perp) <= 1e-10 * (np.linalg.norm(a) + 1e-300)  # a in span{x_i}


def _u1_sampled(p, X) -> bool:
    u = np.asarray(tl.target_directions(p))[0]
    Xn = np.asarray(X) / np.linalg.norm(X, axis=1, keepdims=True)
    return bool(np.any(np.abs(Xn @ (u / np.linalg.norm(u))) > 1 - 1e-9))


@PROPERTY
@given(seed=seeds, n=st.integers(1, 6), p1=st.sampled_from([0.2, 0.3, 0.5]),
       alpha=st.sampled_from([-1.0, 0.5, 2.0]))
def test_c5_sparse_family_first_layer_zero_full_positive(seed, n, p1, alpha):
    d, k = 10, 3
    p, X, y = problem_and_data(seed, d=d, k=k, n=n, activation="linear", family="sparse",
                               shift=tl.InputShift(1, alpha), p1=p1)
    loss0 = float(tl.population_loss(p.v_src, p.B_src, p, "sparse", "linear"))
    first = float(tl.population_loss(p.v_src, tl.first_layer_limit(p.v_src, p.B_src, X, y), p, "sparse",
                                     "linear"))
    if _u1_sampled(p, X):
        assert first < 1e-10 * loss0
        # n < d, so some direction with p_j > 0 is unsampled: full fine-tuning keeps a positive loss.
        full = tl.finetune(p, X, y, tune="full", activation="linear", family="sparse", steps=4000,
                           n_records=40)
        assert not bool(full.diverged)
        assert np.all(np.asarray(full.trace) > 1e-8 * loss0)
    else:
        assert first > 1e-10 * loss0


def test_c5_success_rate_matches_binomial():
    d, k, n, p1, runs = 10, 3, 3, 0.3, 300
    successes = 0
    for seed in range(runs):
        p, X, y = problem_and_data(seed, d=d, k=k, n=n, activation="linear", family="sparse",
                                   shift=tl.InputShift(1, 2.0), p1=p1)
        loss0 = float(tl.population_loss(p.v_src, p.B_src, p, "sparse", "linear"))
        B = tl.first_layer_limit(p.v_src, p.B_src, X, y)
        successes += float(tl.population_loss(p.v_src, B, p, "sparse", "linear")) < 1e-10 * loss0
    prob = float(bounds.c5_success_probability(p1, n))
    assert binomtest(successes, runs, prob).pvalue > 1e-3, (successes, runs, prob)


@PROPERTY
@given(seed=seeds, fam=fams, shift=input_shifts | output_shifts, k=st.integers(1, 6))
def test_c2_floor_of_equals_the_eigendecomposition_route(seed, fam, shift, k):
    """c2_floor_of (Σ's factor from the construction) = c2_floor on Σ (factor from eigh), and
    first_layer_linear_loss_of (‖·‖²_Σ without Σ) = first_layer_linear_loss on Σ."""
    p, X, _ = problem_and_data(seed, d=6, k=k, n=3, activation="linear", family=fam, shift=shift)
    cov = tl.target_second_moment(p, fam)
    w0, w_star = p.B_src.T @ p.v_src, p.B_star.T @ p.v_star
    scale = float(w_star @ cov @ w_star) + float(w0 @ cov @ w0)
    want = float(bounds.c2_floor(p.B_src, w_star, cov))
    assert abs(float(bounds.c2_floor_of(p, fam)) - want) <= 1e-10 * max(want, 1e-3 * scale)
    want = float(bounds.first_layer_linear_loss(w0, w_star, X, cov))
    assert abs(float(bounds.first_layer_linear_loss_of(p, fam, X)) - want) <= 1e-10 * max(want, scale)
