"""Closed forms against gradient descent (neural-tangents style), and GD against a plain NumPy loop."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import twolayer as tl
from twolayer.reference import numpy_finetune

from .conftest import PROPERTY, input_shifts, output_shifts, problem_and_data, rel, seeds

TOL = 1e-6  # relative agreement of GD limits with closed forms (float64)


def _long_gd(p, X, y, tune, act, fam):
    """Iterated GD (no closed form) to a tight gradient tolerance."""
    return tl.finetune(p, X, y, tune=tune, activation=act, family=fam, steps=60_000, gtol=1e-13,
                       n_records=60, method="iterate")


@PROPERTY
@given(seed=seeds, shift=input_shifts | output_shifts, act=st.sampled_from(["linear", "relu"]),
       n=st.integers(2, 5))
def test_last_layer_gd_limit_equals_closed_form(seed, shift, act, n):
    p, X, y = problem_and_data(seed, d=8, k=3, n=n, activation=act, family="gaussian", shift=shift)
    Z = np.asarray(tl.features(p.B_src, X, act))
    s = np.linalg.svd(Z, compute_uv=False)
    # Iterated GD needs ~(s_max/s_min)² log(1/gtol) steps: keep problems it can finish in 60k steps
    # (ill-conditioned ones are covered by the closed-form trajectory tests).
    assume(s[-1] >= 0.05 * s[0])
    r = _long_gd(p, X, y, "last", act, "gaussian")
    assert bool(r.converged)
    assert rel(r.v, tl.last_layer_limit(p.v_src, p.B_src, X, y, act)) < TOL


@PROPERTY
@given(seed=seeds, shift=input_shifts | output_shifts, n=st.integers(1, 4))
def test_first_layer_gd_limit_equals_closed_form(seed, shift, n):
    p, X, y = problem_and_data(seed, d=8, k=3, n=n, activation="linear", family="gaussian", shift=shift)
    r = _long_gd(p, X, y, "first", "linear", "gaussian")
    assert bool(r.converged)
    assert rel(r.B, tl.first_layer_limit(p.v_src, p.B_src, X, y)) < TOL


@pytest.mark.parametrize("tune", ["first", "last", "full"])
@pytest.mark.parametrize("act", ["linear", "relu"])
def test_jax_gd_equals_numpy_loop(tune, act):
    """Both methods (closed-form trajectory where exact, span iteration) equal plain GD on (v, B)."""
    p, X, y = problem_and_data(11, d=12, k=4, n=6, activation=act, family="gaussian",
                               shift=tl.InputShift(2, 2.5))
    lr, steps = 0.05, 300
    v_np, B_np, loss_np = numpy_finetune(p.v_src, p.B_src, X, y, tune=tune, activation=act,
                                         steps=steps, lr=lr)
    for method in ["auto", "iterate"]:
        r = tl.finetune(p, X, y, tune=tune, activation=act, family="gaussian", steps=steps, lr=lr,
                        gtol=0.0, method=method)
        assert rel(r.v, v_np) < 1e-9 and rel(r.B, B_np) < 1e-9, method
        assert float(r.train_loss) == pytest.approx(loss_np, rel=1e-9)
        assert int(r.steps_taken) == steps


def test_span_iteration_when_n_exceeds_d():
    p, X, y = problem_and_data(2, d=4, k=3, n=9, activation="relu", family="gaussian",
                               shift=tl.InputShift(1, 2.0))
    v_np, B_np, _ = numpy_finetune(p.v_src, p.B_src, X, y, tune="full", activation="relu", steps=200,
                                   lr=0.05)
    r = tl.finetune(p, X, y, tune="full", activation="relu", family="gaussian", steps=200, lr=0.05,
                    gtol=0.0)
    assert rel(r.B, B_np) < 1e-9 and rel(r.v, v_np) < 1e-9


@pytest.mark.parametrize("steps", [1, 7, 250])
def test_closed_form_trajectory_equals_iteration(steps):
    p, X, y = problem_and_data(4, d=10, k=3, n=5, activation="linear", family="sparse",
                               shift=tl.OutputShift(-1.0))
    for tune in ["first", "last"]:
        a = tl.finetune(p, X, y, tune=tune, activation="linear", family="sparse", steps=steps, gtol=0.0,
                        n_records=5)
        b = tl.finetune(p, X, y, tune=tune, activation="linear", family="sparse", steps=steps, gtol=0.0,
                        n_records=5, method="iterate")
        np.testing.assert_allclose(a.trace, b.trace, rtol=1e-9, atol=1e-14)
        np.testing.assert_array_equal(a.record_steps, b.record_steps)


def test_lsq_gd_iterate_small_singular_values():
    """c_t(s) → tη s/n for tiny s: no blow-up, and matches stepping."""
    F = np.diag([1.0, 1e-9])
    y = np.array([1.0, 1.0])
    u = tl.lsq_gd_iterate(F, y, np.zeros(2), 1000, 0.5)
    u_loop = np.zeros(2)
    for _ in range(1000):
        u_loop = u_loop - 0.5 * F.T @ (F @ u_loop - y) / 2
    np.testing.assert_allclose(u, u_loop, rtol=1e-9)
    assert np.all(np.isfinite(np.asarray(tl.lsq_flow_limit(F, y, np.zeros(2)))))


def test_record_schedule():
    np.testing.assert_array_equal(tl.record_schedule(10, 3), [0, 4, 8, 10])
    np.testing.assert_array_equal(tl.record_schedule(5, 20), [0, 1, 2, 3, 4, 5])
    with pytest.raises(ValueError, match="expected both >= 1"):
        tl.record_schedule(0, 3)


def test_jit_vmap_over_problems():
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    ps = jax.vmap(lambda k: tl.make_problem(k, d=5, k=2, activation="relu", family="gaussian",
                                            shift=tl.OutputShift(-1.0)))(keys)
    X, y = jax.vmap(lambda k, p: tl.sample_target(k, p, "gaussian", "relu", 4))(keys, ps)
    run = jax.jit(jax.vmap(lambda p, x, t: tl.finetune_core(p, x, t, tune="full", activation="relu",
                                                            family="gaussian", steps=50)))
    out = run(ps, X, y)
    for i in range(3):
        one = tl.finetune(jax.tree_util.tree_map(lambda a, i=i: a[i], ps), X[i], y[i], tune="full",
                          activation="relu", family="gaussian", steps=50)
        np.testing.assert_allclose(out.B[i], one.B, rtol=1e-10)
