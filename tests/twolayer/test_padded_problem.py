"""``make_padded_problem``: ``make_problem``'s problem zero-padded to a larger width, with the
width traced (one program for every width), because JAX's draws are prefix-stable."""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import twolayer as tl

from .conftest import PROPERTY, input_shifts, output_shifts, seeds

#: The (d, k) of the full sims grid (``configs/sims-full.toml``), padded to k = 16.
FULL_DIMS, FULL_WIDTHS, K_PAD = (16, 64, 256, 1024), (2, 4, 8, 16), 16


@functools.cache
def _draws(d: int, widths: tuple[int, ...]):
    """Jitted ``(kb, kv) -> ([normal(kb, (k, d)) for k], [normal(kv, (k,)) for k])``."""
    return jax.jit(lambda kb, kv: ([jax.random.normal(kb, (k, d)) for k in widths],
                                   [jax.random.normal(kv, (k,)) for k in widths]))


def prefix_mismatches(dims=(16,), widths=(1, 3, 8), k_pad=K_PAD) -> list[str]:
    """The draws of ``make_problem`` that depend on the width (B_src (k, d), v_src (k,)) whose
    values at width k are NOT the first k rows of the same draw at width ``k_pad``."""
    bad = []
    for d in dims:
        kb, kv = jax.random.split(jax.random.PRNGKey(d), 2)
        Bs, vs = _draws(d, (k_pad, *widths))(kb, kv)
        for k, B, v in zip(widths, Bs[1:], vs[1:]):
            if not np.array_equal(np.asarray(Bs[0])[:k], np.asarray(B)):
                bad.append(f"B_src d={d} k={k}")
            if not np.array_equal(np.asarray(vs[0])[:k], np.asarray(v)):
                bad.append(f"v_src k={k}")
    return bad


@pytest.mark.parametrize("dims", [(16,), pytest.param(FULL_DIMS, marks=pytest.mark.slow)])
def test_draws_are_prefix_stable(dims) -> None:
    """Pins the PRNG property the shape-bucket builder of ``sims.engine`` rests on (fast: d = 16;
    slow: every d and width of the full grid)."""
    bad = prefix_mismatches(dims, (1, 3, 8) if dims == (16,) else (1, 3, *FULL_WIDTHS[:-1]))
    assert not bad, (
        f"jax.random draws are not prefix-stable in JAX {jax.__version__} "
        f"(jax_threefry_partitionable = {jax.config.jax_threefry_partitionable}): "
        f"normal(key, (16, d))[:k] != normal(key, (k, d)) for {bad[:4]}; "
        "twolayer.make_padded_problem would no longer reproduce make_problem (bucketed sims "
        "records would change): restore partitionable threefry or draw at each width")
    assert tl.prefix_stable_draws()


def test_the_pin_fails_without_partitionable_threefry() -> None:
    """Mutation: the older threefry draws by shape, and the pin above turns red."""
    with jax.threefry_partitionable(False):
        _draws.cache_clear()
        try:
            assert prefix_mismatches(dims=(16,), widths=(2,))
            assert not tl.prefix_stable_draws()
            with pytest.raises(RuntimeError, match="prefix-stable"):
                tl.make_padded_problem(jax.random.PRNGKey(0), d=4, k=2, k_pad=4,
                                       activation="linear", family="gaussian",
                                       shift=tl.OutputShift(-1.0))
        finally:
            _draws.cache_clear()


@functools.cache
def _padded(d: int, k_pad: int, family: str, shift, nonneg: bool):
    """Jitted ``(key, k) -> make_padded_problem``: the width is traced."""
    return jax.jit(lambda key, k: tl.make_padded_problem(
        key, d=d, k=k, k_pad=k_pad, activation="relu", family=family, shift=shift,
        nonneg_head=nonneg))


@functools.cache
def _plain(d: int, k: int, family: str, shift, nonneg: bool):
    """Jitted ``key -> make_problem`` (as the engine's unbucketed builder traces it)."""
    return jax.jit(lambda key: tl.make_problem(key, d=d, k=k, activation="relu", family=family,
                                               shift=shift, nonneg_head=nonneg))


def _assert_is_padded(padded: tl.Problem, plain: tl.Problem, k: int) -> None:
    """The draws and everything built from them alone are bit for bit ``plain``'s; v_src is
    scaled by a traced 1/√k, which XLA cannot fold into the draw as it does a constant (1 ulp);
    B_star is solved for more right-hand sides."""
    for name in ("v_src", "B_src", "A", "t", "basis", "probs", "v_star", "B_star"):
        a, b = np.asarray(getattr(padded, name)), np.asarray(getattr(plain, name))
        if name in ("v_src", "B_src", "v_star", "B_star"):
            assert not np.any(a[k:]) and not np.any(np.signbit(a[k:])), name  # +0 past k
            a = a[:k]
        if name in ("v_src", "v_star"):
            np.testing.assert_allclose(a, b, rtol=5e-16, atol=0, err_msg=name)
        elif name == "B_star":
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15, err_msg=name)
        else:
            assert np.array_equal(a, b), name


@pytest.mark.slow
@PROPERTY
@given(seed=seeds, shift=input_shifts | output_shifts, k=st.integers(1, 4),
       family=st.sampled_from(["gaussian", "sparse"]), nonneg=st.booleans())
def test_padded_problem_is_make_problem_padded(seed, shift, k, family, nonneg) -> None:
    key = jax.random.PRNGKey(seed)
    plain = _plain(6, k, family, shift, nonneg)(key)
    _assert_is_padded(_padded(6, 4, family, shift, nonneg)(key, k), plain, k)


@pytest.mark.parametrize("family", ["gaussian", pytest.param("sparse", marks=pytest.mark.slow)])
def test_one_padded_program_serves_the_full_grid_widths(family) -> None:
    """The smallest and largest width of the full grid (d = 16) from one traced program."""
    shift, key = tl.InputShift(1, 2.0), jax.random.PRNGKey(3)
    for k in (FULL_WIDTHS[0], FULL_WIDTHS[-1]):
        _assert_is_padded(_padded(16, K_PAD, family, shift, True)(key, k),
                          _plain(16, k, family, shift, True)(key), k)
    assert _padded(16, K_PAD, family, shift, True)._cache_size() == 1


def test_padded_problem_rejects_a_width_over_the_padding() -> None:
    with pytest.raises(ValueError, match="k_pad"):
        tl.make_padded_problem(jax.random.PRNGKey(0), d=4, k=5, k_pad=4, activation="linear",
                               family="gaussian", shift=tl.OutputShift(-1.0))
