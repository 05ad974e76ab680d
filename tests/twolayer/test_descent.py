"""GD engine behaviour: step size, convergence and divergence flags, batching, sharding, bad input."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import twolayer as tl

from .conftest import problem_and_data


def _batch(P, *, d=6, k=3, n=4, act="relu", fam="gaussian", shift=None):
    shift = shift or tl.InputShift(1, 2.0)
    keys = jax.random.split(jax.random.PRNGKey(7), P)
    ps = jax.vmap(lambda key: tl.make_problem(key, d=d, k=k, activation=act, family=fam, shift=shift))(keys)
    X, y = jax.vmap(lambda key, p: tl.sample_target(key, p, fam, act, n))(keys, ps)
    return ps, X, y


@pytest.mark.parametrize("tune", ["first", "last", "full"])
def test_default_step_decreases_train_loss_monotonically(tune):
    p, X, y = problem_and_data(3, d=8, k=4, n=5, activation="relu", family="gaussian",
                               shift=tl.OutputShift(-1.0))
    losses = [float(tl.empirical_loss(p.v_src, p.B_src, X, y, "relu"))]
    for steps in [10, 50, 200]:
        r = tl.finetune(p, X, y, tune=tune, activation="relu", family="gaussian", steps=steps, gtol=0.0)
        assert not bool(r.diverged)
        losses.append(float(r.train_loss))
    assert all(b <= a * (1 + 1e-12) for a, b in itertools.pairwise(losses))


@pytest.mark.parametrize("method", ["auto", "iterate"])
@pytest.mark.parametrize("tune", ["first", "last", "full"])
def test_divergence_is_reported_not_nan(method, tune):
    p, X, y = problem_and_data(0, d=6, k=3, n=4, activation="linear", family="gaussian",
                               shift=tl.InputShift(1, 2.0))
    r = tl.finetune(p, X, y, tune=tune, activation="linear", family="gaussian", steps=500, lr=1e3,
                    method=method)
    assert bool(r.diverged) and not bool(r.converged)
    for leaf in jax.tree_util.tree_leaves(r):
        assert np.all(np.isfinite(np.asarray(leaf, dtype=np.float64)))
    assert int(r.steps_taken) < 500


def test_convergence_flag_and_early_stop():
    p, X, y = problem_and_data(1, d=10, k=3, n=3, activation="relu", family="gaussian",
                               shift=tl.OutputShift(2.0))
    r = tl.finetune(p, X, y, tune="full", activation="relu", family="gaussian", steps=200_000,
                    gtol=1e-6, n_records=200)
    assert bool(r.converged)
    assert float(r.grad_norm) <= 1e-6 * float(r.grad_norm0)
    assert int(r.steps_taken) < 200_000
    # Records after the stop repeat the final value.
    after = np.asarray(r.record_steps) > int(r.steps_taken)
    np.testing.assert_array_equal(np.asarray(r.trace)[after], float(r.target_loss))


@pytest.mark.parametrize("tune", ["first", "last", "full"])
def test_batch_equals_single_and_chunking_invariant(tune):
    ps, X, y = _batch(5)
    kw = dict(tune=tune, activation="relu", family="gaussian", steps=120, n_records=4)
    full = tl.finetune_batch(ps, X, y, chunk_size=None, **kw)
    chunked = tl.finetune_batch(ps, X, y, chunk_size=2, **kw)
    for a, b in zip(jax.tree_util.tree_leaves(full), jax.tree_util.tree_leaves(chunked)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    one = tl.finetune(jax.tree_util.tree_map(lambda a: a[3], ps), X[3], y[3], **kw)
    np.testing.assert_allclose(full.B[3], one.B, rtol=1e-12)
    np.testing.assert_allclose(full.trace[3], one.trace, rtol=1e-12)


def _scan_lengths(jaxpr) -> list[int]:
    """Lengths of every ``scan`` in a (closed) jaxpr, nested ones included."""
    out = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "scan":
            out.append(int(eqn.params["length"]))
        for value in eqn.params.values():
            for sub in value if isinstance(value, (list, tuple)) else [value]:
                sub = getattr(sub, "jaxpr", sub)  # ClosedJaxpr -> Jaxpr
                if hasattr(sub, "eqns"):
                    out.extend(_scan_lengths(sub))
    return out


@pytest.mark.parametrize("chunk, loops", [(None, []), (2, [3])])
def test_batch_is_vectorized_not_looped_over_problems(chunk, loops):
    """chunk_size=None is one vectorized batch (no sequential loop over the 6 problems), a chunk size
    c is a loop over 6/c chunks; a serial map over problems would show a scan of length 6."""
    ps, X, y = _batch(6)
    lr = jnp.full((6,), jnp.nan)
    nv = jnp.full((6,), 4.0)
    jaxpr = jax.make_jaxpr(lambda *a: tl.descent._finetune_batch_jit(
        *a, tune="full", activation="relu", family="gaussian", steps=20, n_records=2,
        method="auto", chunk_size=chunk))(ps, X, y, lr, 1e-8, nv)
    assert sorted(_scan_lengths(jaxpr.jaxpr)) == loops


@pytest.mark.parametrize("act, tune", [("relu", "first"), ("relu", "full"), ("linear", "full")])
@pytest.mark.parametrize("steps, n_records", [(120, 4), (50, 3), (7, 7)])
def test_unrolled_span_iteration_takes_the_same_steps(act, tune, steps, n_records):
    """The accelerator's unrolled loop (and the masked short last segment, 50 = 17 + 17 + 16) runs
    the same GD steps as the one-step loop: same records, flags and final point."""
    ps, X, y = _batch(3, act=act)
    kw = dict(tune=tune, activation=act, family="gaussian", steps=steps, n_records=n_records,
              lr=None, gtol=1e-8, method="iterate")

    def run(unroll):
        return jax.jit(jax.vmap(lambda p, x, t: tl.finetune_core(p, x, t, unroll=unroll, **kw)))(ps, X, y)

    ref, unrolled = run(1), run(8)
    for a, b in zip(jax.tree_util.tree_leaves(ref), jax.tree_util.tree_leaves(unrolled)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    assert np.all(np.asarray(ref.steps_taken) <= steps)


def test_batch_sharded_over_two_devices_equals_one_device():
    devices = jax.devices()
    assert len(devices) >= 2, "tests/conftest.py asks XLA for 2 CPU devices"
    ps, X, y = _batch(4)
    kw = dict(tune="full", activation="relu", family="gaussian", steps=60, chunk_size=None)
    ref = tl.finetune_batch(ps, X, y, **kw)
    sharding = NamedSharding(Mesh(np.array(devices[:2]), ("batch",)), PartitionSpec("batch"))
    ps_s, X_s, y_s = jax.device_put((ps, X, y), sharding)
    out = tl.finetune_batch(ps_s, X_s, y_s, **kw)
    np.testing.assert_allclose(out.B, ref.B, rtol=1e-12)
    np.testing.assert_allclose(out.trace, ref.trace, rtol=1e-12)


def test_per_problem_learning_rates():
    ps, X, y = _batch(3)
    lrs = jnp.array([0.01, jnp.nan, 0.02])
    out = tl.finetune_batch(ps, X, y, tune="last", activation="relu", family="gaussian", steps=10, lr=lrs)
    default = tl.finetune(jax.tree_util.tree_map(lambda a: a[1], ps), X[1], y[1], tune="last",
                          activation="relu", family="gaussian", steps=10)
    np.testing.assert_allclose(out.lr, [0.01, float(default.lr), 0.02])


# ---- bad input ----

@pytest.fixture(scope="module")
def small():
    return problem_and_data(0, d=4, k=2, n=3, activation="linear", family="gaussian",
                            shift=tl.InputShift(1, 2.0))


def _run(problem, X, y, **kw):
    args = dict(tune="first", activation="linear", family="gaussian", steps=5)
    args.update(kw)
    return tl.finetune(problem, X, y, **args)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        (dict(tune="middle"), "tune mode 'middle': expected one of 'first', 'last', 'full'"),
        (dict(activation="gelu"), "activation 'gelu': expected one of"),
        (dict(family="cauchy"), "family 'cauchy': expected one of"),
        (dict(method="newton"), "method 'newton': expected one of"),
        (dict(steps=0), "expected both >= 1"),
        (dict(lr=-1.0), "expected positive finite step sizes"),
        (dict(gtol=float("nan")), "gtol"),
    ],
)
def test_bad_run_arguments(small, kw, match):
    p, X, y = small
    with pytest.raises(ValueError, match=match):
        _run(p, X, y, **kw)


def test_bad_shapes_and_values(small):
    p, X, y = small
    with pytest.raises(ValueError, match=r"X has shape \(3, 5\): expected \(\*, 4\)"):
        _run(p, jnp.ones((3, 5)), y)
    with pytest.raises(ValueError, match=r"y has shape \(2,\): expected \(3\)"):
        _run(p, X, y[:2])
    with pytest.raises(ValueError, match="X contains NaN or infinite values"):
        _run(p, X.at[0, 0].set(jnp.nan), y)
    with pytest.raises(ValueError, match="v_src has shape"):
        _run(p._replace(v_src=jnp.ones(3)), X, y)
    with pytest.raises(ValueError, match="B_src contains NaN"):
        _run(p._replace(B_src=p.B_src.at[0, 0].set(jnp.inf)), X, y)


def test_bad_batch_input():
    ps, X, y = _batch(3)
    kw = dict(tune="last", activation="relu", family="gaussian", steps=5)
    with pytest.raises(ValueError, match="expected \\(P, n, d\\)"):
        tl.finetune_batch(ps, X[0], y, **kw)
    with pytest.raises(ValueError, match=r"problems\.A has shape"):
        tl.finetune_batch(ps._replace(A=ps.A[:2]), X, y, **kw)
    with pytest.raises(ValueError, match="expected one per problem"):
        tl.finetune_batch(ps, X, y, lr=jnp.ones(2), **kw)


@pytest.mark.parametrize("tune", ["first", "last", "full"])
@pytest.mark.parametrize("act", ["linear", "relu"])
def test_zero_padding_with_n_valid_equals_unpadded(tune, act):
    p, X, y = problem_and_data(5, d=6, k=3, n=4, activation=act, family="gaussian",
                               shift=tl.OutputShift(-1.0))
    Xp = jnp.concatenate([X, jnp.zeros((3, 6))])
    yp = jnp.concatenate([y, jnp.zeros(3)])
    kw = dict(tune=tune, activation=act, family="gaussian", steps=80, n_records=4)
    ref = tl.finetune(p, X, y, **kw)
    pad = tl.finetune(p, Xp, yp, n_valid=4, **kw)
    for a, b in zip(jax.tree_util.tree_leaves(ref), jax.tree_util.tree_leaves(pad)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)
    batch = tl.finetune_batch(jax.tree_util.tree_map(lambda a: a[None], p), Xp[None], yp[None],
                              n_valid=jnp.array([4]), **kw)
    np.testing.assert_allclose(batch.B[0], ref.B, rtol=1e-10)
    with pytest.raises(ValueError, match="expected zero padding"):
        tl.finetune(p, Xp.at[5, 0].set(1.0), yp, n_valid=4, **kw)
    with pytest.raises(ValueError, match="expected integers between 1 and the 7 rows"):
        tl.finetune(p, Xp, yp, n_valid=9, **kw)
