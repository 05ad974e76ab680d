"""twolayer.diagnostics: rank, limit gap and sampled directions against constructions with known
answers (property tests)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import twolayer as tl
from twolayer.diagnostics import feature_rank, limit_gap, sampled_directions, unsampled_count

FAST = settings(max_examples=15, deadline=None)
SHAPES = st.sampled_from([3, 8])  # few shapes: each new shape compiles


@functools.lru_cache
def _problem(d: int) -> tl.Problem:
    return tl.make_problem(jax.random.PRNGKey(d), d=d, k=2, activation="linear", family="sparse",
                           shift=tl.InputShift(1, 2.5))


@given(seed=st.integers(0, 2**31 - 1), n=SHAPES, k=st.sampled_from([2, 5]),
       r=st.integers(0, 6), scale=st.sampled_from([1e-6, 1.0, 1e6]))
@FAST
def test_feature_rank_is_the_rank_of_a_product(seed, n, k, r, scale):
    """Z = scale · L R with L (n, r), R (r, k) Gaussian has rank min(r, n, k) at any scale."""
    rng = np.random.default_rng(seed)
    Z = scale * rng.standard_normal((n, r)) @ rng.standard_normal((r, k))
    assert int(jax.jit(feature_rank)(jnp.asarray(Z))) == min(r, n, k)


@given(seed=st.integers(0, 2**31 - 1), n=SHAPES, k=st.sampled_from([2, 5]))
@FAST
def test_feature_rank_ignores_round_off_of_a_duplicated_column(seed, n, k):
    Z = np.random.default_rng(seed).standard_normal((n, k))
    Z[:, -1] = Z[:, 0] * (1 + 1e-15)
    assert int(jax.jit(feature_rank)(jnp.asarray(Z))) == min(n, k - 1)


@given(seed=st.integers(0, 2**31 - 1), c=st.floats(-3, 3))
@FAST
def test_limit_gap_on_the_segment(seed, c):
    """B = B_limit + c (B_start − B_limit) has gap |c|: 0 at the limit, 1 at the start."""
    rng = np.random.default_rng(seed)
    B0, Bl = rng.standard_normal((2, 3, 4))
    B = Bl + c * (B0 - Bl)
    np.testing.assert_allclose(float(limit_gap(B, Bl, B0)), abs(c), rtol=1e-10, atol=1e-12)


def test_limit_gap_of_a_limit_that_does_not_move_is_the_plain_distance():
    B0 = jnp.ones((2, 2))
    assert float(limit_gap(B0 + 3.0, B0, B0)) == 6.0


@given(d=st.sampled_from([3, 5]), picks=st.lists(st.integers(0, 4), min_size=1, max_size=8),
       zs=st.lists(st.floats(0.1, 5.0) | st.floats(-5.0, -0.1), min_size=8, max_size=8))
@FAST
def test_sampled_directions_are_the_drawn_ones(d, picks, zs):
    """Rows z_i · A u_{j_i} (zero rows pad to 8, as the engine pads) sample exactly {j_i}."""
    p = _problem(d)
    js = [j % d for j in picks]
    A, U = np.asarray(p.A), np.asarray(p.basis)
    X = np.zeros((8, d))
    for i, j in enumerate(js):
        X[i] = zs[i] * A @ U[j]
    got = np.asarray(jax.jit(sampled_directions)(p, jnp.asarray(X)))
    assert got.tolist() == [j in js for j in range(d)]
    assert int(unsampled_count(p, jnp.asarray(got))) == d - len(set(js))


def test_diagnostics_vmap_and_jit():
    Z = jnp.stack([jnp.eye(3)[:, :2], jnp.zeros((3, 2))])
    assert jax.jit(jax.vmap(feature_rank))(Z).tolist() == [2, 0]
