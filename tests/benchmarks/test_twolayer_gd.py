"""Benchmark: batched JAX gradient descent vs a plain NumPy per-problem loop, in one process.

256 problems, d = 128, n = 64, k = 16, 2000 steps, float64, for both activations and all tune modes.
Prints, per configuration, the JAX engine time, the NumPy loop time, their ratio, the engine's
achieved GFLOP/s (flops it actually executes) and the same as a fraction of a large float64 matmul
timed in the same run. The loop's time is measured on ``LOOP_PROBLEMS`` problems and scaled to 256
(it is a per-problem loop, linear in their number).

Run: python -m pytest tests/benchmarks/test_twolayer_gd.py --benchmark-only -m "slow or not slow" -s
"""

from __future__ import annotations

import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import twolayer as tl
from twolayer.reference import numpy_finetune

P, D, N, K, STEPS = 256, 128, 64, 16, 2000
LOOP_PROBLEMS = 8
RESULTS: dict[tuple[str, str], dict[str, float]] = {}

pytestmark = pytest.mark.slow


def _span_step_flops(tune: str, activation: str, *, general: bool = False) -> float:
    """Flops of one span-iteration step (n ≤ d), as twolayer.descent executes it.

    ``general=True`` counts the general O(k n²) update (G @ Q) even for φ = identity, where the engine
    uses the rank-one update O(n² + k n): the prototype's algorithm that the issue's 40% target refers to.
    """
    flops = 2 * K * N + 2 * N + 2 * K * N  # v @ Z, residual, gradient of v
    if tune == "last":
        return float(flops)
    if activation == "linear" and not general:
        return float(flops + 2 * N * N + 4 * K * N)  # K u, two outer products
    return float(flops + 2 * K * N * N + 6 * K * N)  # G @ Q, G and the updates


def _closed_form_flops() -> float:
    """Flops of one closed-form trajectory: an SVD of the (n, p) matrix (~4 n p² + 8 p³ with p ≤ n)."""
    p = min(N, D)
    return float(4 * N * p * p + 8 * p**3)


@pytest.fixture(scope="module")
def matmul_peak_gflops() -> float:
    a = jnp.asarray(np.random.default_rng(0).standard_normal((2048, 2048)))
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    best = np.inf
    for _ in range(3):
        t = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2 * 2048**3 / best / 1e9


def _problems(activation: str):
    keys = jax.random.split(jax.random.PRNGKey(0), P)
    ps = jax.vmap(
        lambda key: tl.make_problem(key, d=D, k=K, activation=activation, family="gaussian",
                                    shift=tl.InputShift(4, 2.0))
    )(keys)
    X, y = jax.vmap(lambda key, p: tl.sample_target(key, p, "gaussian", activation, N))(keys, ps)
    return ps, X, y


@pytest.mark.parametrize("tune", ["first", "last", "full"])
@pytest.mark.parametrize("activation", ["linear", "relu"])
def test_batched_gd_vs_numpy_loop(benchmark, matmul_peak_gflops, activation, tune):
    ps, X, y = _problems(activation)
    kw = dict(tune=tune, activation=activation, family="gaussian", steps=STEPS, gtol=0.0, n_records=1)
    # chunk_size: the library default ("auto": 16 problems per chunk on CPU, the whole batch on
    # an accelerator unless memory requires chunks)
    out = jax.block_until_ready(tl.finetune_batch(ps, X, y, **kw))  # compile
    out = benchmark.pedantic(
        lambda: jax.block_until_ready(tl.finetune_batch(ps, X, y, **kw)), rounds=3, iterations=1
    )
    engine_s = benchmark.stats.stats.min

    t = time.perf_counter()
    for i in range(LOOP_PROBLEMS):
        v, B, _ = numpy_finetune(np.asarray(ps.v_src[i]), np.asarray(ps.B_src[i]), np.asarray(X[i]),
                                 np.asarray(y[i]), tune=tune, activation=activation, steps=STEPS,
                                 lr=float(out.lr[i]))
        np.testing.assert_allclose(B, out.B[i], rtol=1e-7, atol=1e-10)  # same math
        np.testing.assert_allclose(v, out.v[i], rtol=1e-7, atol=1e-10)
    loop_s = (time.perf_counter() - t) / LOOP_PROBLEMS * P

    closed = tl.uses_closed_form(tune, activation)
    flops = P * (_closed_form_flops() if closed else STEPS * _span_step_flops(tune, activation))
    gflops = flops / engine_s / 1e9
    general = P * STEPS * _span_step_flops(tune, activation, general=True) / engine_s / 1e9
    RESULTS[(activation, tune)] = dict(
        engine_s=engine_s, loop_s=loop_s, speedup=loop_s / engine_s, gflops=gflops,
        peak_fraction=gflops / matmul_peak_gflops, general_gflops=general,
    )
    print(json.dumps({"activation": activation, "tune": tune, "device": str(jax.devices()[0]),
                      "chunk": tl.auto_chunk_size(P, N, D, K), "matmul_peak_gflops":
                      matmul_peak_gflops, **RESULTS[(activation, tune)]}))
    print(
        f"\n[twolayer GD] {activation:6s} {tune:5s} {'closed-form' if closed else 'span-iter  '} "
        f"engine {engine_s:7.3f}s  numpy loop {loop_s:8.2f}s  speedup {loop_s / engine_s:8.1f}x  "
        f"{gflops:6.1f} GFLOP/s = {100 * gflops / matmul_peak_gflops:5.1f}% of matmul peak "
        f"({matmul_peak_gflops:.1f} GFLOP/s)"
        + ("" if closed else f"; O(kn²)-update equivalent {general:6.1f} GFLOP/s = "
           f"{100 * general / matmul_peak_gflops:5.1f}%")
    )
