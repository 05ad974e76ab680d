"""Regression tests for solver and validation defects: zero smoothness, divergence at an exact fit,
closed-form drift on a singular Gram matrix, the C4 floor on input shifts, C2's floor near α = 1,
and ValueErrors naming what was expected."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import twolayer as tl
from twolayer import bounds

from .conftest import PROPERTY, problem_and_data, seeds


def test_zero_smoothness_returns_start_converged():
    """ReLU last-layer tuning with every feature dead on the samples: L = 0, the start is kept."""
    p, X, y = problem_and_data(0, d=4, k=3, n=5, activation="relu", family="gaussian",
                               shift=tl.OutputShift(-1.0))
    X, y = jnp.zeros_like(X), jnp.zeros_like(y)  # all features zero: L = 0
    r = tl.finetune(p, X, y, tune="last", activation="relu", family="gaussian", steps=50,
                    n_records=5)
    assert float(r.lr) == 0.0 and bool(r.converged) and not bool(r.diverged)
    np.testing.assert_array_equal(np.asarray(r.v), np.asarray(p.v_src))
    assert np.all(np.isfinite(np.asarray(r.trace)))


def test_dead_relu_features_with_nonzero_inputs():
    """Every hidden unit negative on every sample (inputs opposite to all rows of B_src)."""
    p, _, _ = problem_and_data(1, d=3, k=1, n=4, activation="relu", family="gaussian",
                               shift=tl.OutputShift(-1.0))
    b = np.asarray(p.B_src)[0]
    X = jnp.asarray(-np.outer([1.0, 2.0, 0.5, 3.0], b))
    y = jnp.asarray([0.3, -0.2, 0.1, 0.0])
    r = tl.finetune(p, X, y, tune="last", activation="relu", family="gaussian", steps=20,
                    n_records=2)
    assert float(r.lr) == 0.0 and bool(r.converged)
    np.testing.assert_array_equal(np.asarray(r.v), np.asarray(p.v_src))


@pytest.mark.parametrize("method", ["auto", "iterate"])
def test_start_at_exact_fit_is_not_diverged(method):
    """Labels the pretrained network fits exactly: rounding noise must not count as divergence."""
    p, X, _ = problem_and_data(2, d=6, k=2, n=4, activation="linear", family="gaussian",
                               shift=tl.OutputShift(-1.0))
    y = tl.forward(p.v_src, p.B_src, X, "linear")  # exact fit at the start (train loss ~1e-33)
    for tune in ("first", "last"):
        r = tl.finetune(p, X, y, tune=tune, activation="linear", family="gaussian", steps=100,
                        n_records=4, method=method)
        assert not bool(r.diverged) and bool(r.converged), tune


def test_closed_form_does_not_drift_on_a_singular_gram():
    """Duplicated samples make X Xᵀ singular; 1e15 steps must stay at the limit."""
    p, X, y = problem_and_data(3, d=8, k=2, n=3, activation="linear", family="gaussian",
                               shift=tl.InputShift(1, 3.0))
    X = jnp.concatenate([X, X[:2]])
    y = jnp.concatenate([y, y[:2]])
    u0 = p.B_src.T @ p.v_src
    limit = tl.lsq_flow_limit(X, y, u0)
    lr = 1.0 / float(np.linalg.norm(np.asarray(X), 2) ** 2 / X.shape[0])
    path = tl.lsq_gd_path(X, y, u0, jnp.asarray([10**4, 10**15]), lr)
    for u in path:
        assert float(jnp.linalg.norm(u - limit) / jnp.linalg.norm(limit - u0)) < 1e-9
    r = tl.finetune(p, X, y, tune="first", activation="linear", family="gaussian",
                    steps=10**15, n_records=1)
    B_inf = tl.first_layer_limit(p.v_src, p.B_src, X, y)
    assert float(jnp.linalg.norm(r.B - B_inf) / jnp.linalg.norm(B_inf - p.B_src)) < 1e-9


@PROPERTY
@given(seed=seeds, fam=st.sampled_from(["gaussian", "sparse"]))
def test_c4_floor_is_on_source_inputs_for_any_shift(seed, fam):
    """t² E_src[y_src²]: an input shift (t = 1) gives E_src[y²], the same as with A = I."""
    p, _, _ = problem_and_data(seed, d=5, k=3, n=1, activation="relu", family=fam,
                               shift=tl.InputShift(1, 3.0), nonneg_head=True)
    eye = jnp.eye(5)
    unshifted = p._replace(A=eye, v_star=p.v_src, B_star=p.B_src)
    expected = tl.target_second_moment_of_labels(unshifted, fam, "relu")
    np.testing.assert_allclose(float(bounds.c4_floor(p, fam, "relu")), float(expected), rtol=1e-12)


def test_c4_floor_rejects_linear_and_negative_heads():
    p, _, _ = problem_and_data(4, d=5, k=3, n=1, activation="relu", family="gaussian",
                               shift=tl.OutputShift(-1.0), nonneg_head=True)
    with pytest.raises(ValueError, match="expected 'relu'"):
        bounds.c4_floor(p, "gaussian", "linear")
    with pytest.raises(ValueError, match="v_src >= 0"):
        bounds.c4_floor(p._replace(v_src=-p.v_src), "gaussian", "relu")


@pytest.mark.parametrize("alpha", [1.001, 1.00001])
def test_c2_floor_without_cancellation_near_alpha_one(alpha):
    """Near α = 1 the floor is a small fraction of w*ᵀΣw*; it must equal the minimum over heads
    (population-optimal head by a least-squares solve on Σ^{1/2})."""
    p, _, _ = problem_and_data(5, d=16, k=4, n=1, activation="linear", family="gaussian",
                               shift=tl.InputShift(1, alpha))
    floor = float(bounds.c2_floor_of(p, "gaussian"))
    L0 = float(tl.population_loss(p.v_src, p.B_src, p, "gaussian", "linear"))
    M = np.asarray(p.A)  # Σ = A Aᵀ, so L(v) = ‖Aᵀ(B_srcᵀ v − w*)‖²
    w_star = np.asarray(p.B_star.T @ p.v_star)
    w0 = np.asarray(p.B_src.T @ p.v_src)
    F = M.T @ np.asarray(p.B_src).T
    # Solve for the correction from v_src, so the residual is computed without cancellation.
    dv = np.linalg.lstsq(F, M.T @ (w_star - w0), rcond=None)[0]
    best = float(tl.population_loss(p.v_src + jnp.asarray(dv), p.B_src, p, "gaussian", "linear"))
    assert 0 < floor <= L0
    np.testing.assert_allclose(floor, best, rtol=1e-6)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda p: tl.population_loss(p.v_src * jnp.nan, p.B_src, p, "gaussian", "linear"),
         "v contains NaN"),
        (lambda p: tl.population_loss(p.v_src[:1], p.B_src, p, "gaussian", "linear"),
         r"v has shape \(1,\): expected \(3\)"),
        (lambda p: tl.population_loss(p.v_src, p.B_src[:, :2], p, "gaussian", "linear"),
         "B has shape"),
        (lambda p: tl.last_layer_limit(p.v_src, p.B_src, jnp.full((2, 5), jnp.nan), jnp.ones(2),
                                       "linear"), "X contains NaN"),
        (lambda p: tl.last_layer_limit(p.v_src, p.B_src, jnp.ones((2, 4)), jnp.ones(2), "linear"),
         "X has shape"),
        (lambda p: tl.first_layer_limit(jnp.zeros(3), p.B_src, jnp.ones((2, 5)), jnp.ones(2)),
         "v_src = 0"),
        (lambda p: bounds.c2_floor(p.B_src, jnp.full(5, jnp.nan), jnp.eye(5)), "w_star contains"),
        (lambda p: bounds.first_layer_linear_loss(jnp.ones(5), jnp.ones(4), jnp.ones((2, 5)),
                                                  jnp.eye(5)), "w_star has shape"),
        (lambda p: bounds.c5_success_probability(1.5, 3), "p1 = 1.5"),
        (lambda p: bounds.c5_success_probability(0.3, 2.5), "non-negative integer"),
        (lambda p: tl.InputShift(rank=1.5), "rank 1.5"),
        (lambda p: tl.finetune(p, jnp.ones((2, 5)), jnp.ones(2), tune="last", activation="linear",
                               family="gaussian", steps=2.7), "steps = 2.7"),
    ],
)
def test_bad_input_raises_value_error_naming_the_expectation(call, match):
    p, _, _ = problem_and_data(6, d=5, k=3, n=1, activation="linear", family="gaussian",
                               shift=tl.InputShift(1, 2.0))
    with pytest.raises(ValueError, match=match):
        call(p)
