"""Forward pass, problem construction, sampling and input validation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import twolayer as tl

from .conftest import PROPERTY, input_shifts, problem_and_data, seeds


def test_forward_matches_definition():
    key = jax.random.PRNGKey(0)
    B = jax.random.normal(key, (3, 5))
    v = jnp.array([1.0, -2.0, 0.5])
    X = jax.random.normal(jax.random.PRNGKey(1), (7, 5))
    for act, phi in [("linear", lambda h: h), ("relu", lambda h: np.maximum(h, 0))]:
        want = np.array([v @ phi(B @ x) for x in np.asarray(X)])
        np.testing.assert_allclose(tl.forward(v, B, X, act), want, rtol=1e-12)


@PROPERTY
@given(seed=seeds, shift=input_shifts, d=st.integers(4, 9))
def test_input_shift_matrix_is_invertible_and_low_rank(seed, shift, d):
    key = jax.random.PRNGKey(seed)
    p = tl.make_problem(key, d=d, k=3, activation="linear", family="gaussian", shift=shift)
    A = np.asarray(p.A)
    moved = shift.rank if shift.kind == "scale" else 2 * shift.rank
    assert np.linalg.matrix_rank(A - np.eye(d), tol=1e-9) <= moved
    if shift.kind == "rotate":
        np.testing.assert_allclose(A @ A.T, np.eye(d), atol=1e-12)
    # The teacher is B_src A⁻¹: composing with A gives back the source first layer.
    np.testing.assert_allclose(np.asarray(p.B_star) @ A, np.asarray(p.B_src), atol=1e-10)


def test_sparse_family_inputs_lie_on_shifted_directions():
    p, X, _ = problem_and_data(
        3, d=6, k=3, n=50, activation="linear", family="sparse", shift=tl.InputShift(1, 2.0)
    )
    D = np.asarray(tl.target_directions(p))
    Dn = D / np.linalg.norm(D, axis=1, keepdims=True)
    cos = np.abs(np.asarray(X) / np.linalg.norm(X, axis=1, keepdims=True) @ Dn.T)
    np.testing.assert_allclose(cos.max(axis=1), 1.0, atol=1e-10)
    np.testing.assert_allclose(np.asarray(p.probs).sum(), 1.0)
    assert float(p.probs[0]) == pytest.approx(0.3)


def test_same_key_same_problem_and_samples():
    a = problem_and_data(5, d=5, k=2, n=4, activation="relu", family="gaussian", shift=tl.OutputShift(-1))
    b = problem_and_data(5, d=5, k=2, n=4, activation="relu", family="gaussian", shift=tl.OutputShift(-1))
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_array_equal(x, y)


def test_nonneg_head():
    p = tl.make_problem(
        jax.random.PRNGKey(0), d=4, k=8, activation="relu", family="gaussian",
        shift=tl.OutputShift(-1.0), nonneg_head=True,
    )
    assert np.all(np.asarray(p.v_src) >= 0)


# ---- bad input: each raises ValueError naming what was expected ----

def _problem(**kw):
    args = dict(d=4, k=2, activation="linear", family="gaussian", shift=tl.InputShift())
    args.update(kw)
    return tl.make_problem(jax.random.PRNGKey(0), **args)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(activation="tanh"), "activation 'tanh': expected one of 'linear', 'relu'"),
        (dict(family="uniform"), "family 'uniform': expected one of"),
        (dict(d=0), "expected positive integers"),
        (dict(p1=1.5), r"expected a probability in \(0, 1\]"),
        (dict(shift="flip"), "expected an InputShift or an OutputShift"),
        (dict(shift=tl.InputShift(rank=5)), "expected rank <= d"),
        (dict(shift=tl.InputShift(rank=3, kind="rotate")), "needs 2\\*rank <= d"),
    ],
)
def test_bad_problem_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _problem(**kwargs)


def test_singular_shift_rejected():
    with pytest.raises(ValueError, match="singular"):
        tl.InputShift(rank=1, alpha=0.0)
    with pytest.raises(ValueError, match="expected an invertible matrix"):
        tl.problems.check_invertible(jnp.diag(jnp.array([1.0, 1e-14, 1.0])))


def test_bad_shift_fields():
    with pytest.raises(ValueError, match="expected one of 'scale', 'rotate'"):
        tl.InputShift(kind="shear")
    with pytest.raises(ValueError, match="expected an integer >= 1"):
        tl.InputShift(rank=0)
    with pytest.raises(ValueError, match="finite"):
        tl.OutputShift(t=float("nan"))


def test_activation_unknown_in_forward():
    with pytest.raises(ValueError, match="expected one of 'linear', 'relu'"):
        tl.forward(jnp.ones(2), jnp.ones((2, 3)), jnp.ones((1, 3)), "sigmoid")
