"""GPU check of twolayer: batched GD throughput on the accelerator (float64), for the lead's device batch.

Times :func:`twolayer.finetune_batch` (warm, after compilation) for the benchmark configuration of
tests/benchmarks/test_twolayer_gd.py (256 problems, d = 128, n = 64, k = 16, 2000 steps) and for a
16x larger batch, for both activations and all tune modes, and a large float64 matmul for reference.
Prints one JSON line per configuration.  Usage: python scripts/device_twolayer.py
"""

from __future__ import annotations

import json
import time

import jax
import jax.numpy as jnp

import twolayer as tl

jax.config.update("jax_enable_x64", True)


def timed(f) -> float:
    jax.block_until_ready(f())
    t = time.perf_counter()
    jax.block_until_ready(f())
    return time.perf_counter() - t


def main() -> None:
    a = jnp.ones((4096, 4096))
    mm = timed(lambda: a @ a)
    print(json.dumps({"device": str(jax.devices()[0]), "matmul_f64_gflops": 2 * 4096**3 / mm / 1e9}))
    d, n, k, steps = 128, 64, 16, 2000
    for P in (256, 4096):
        keys = jax.random.split(jax.random.PRNGKey(0), P)
        for act in ("linear", "relu"):
            ps = jax.vmap(lambda key, act=act: tl.make_problem(
                key, d=d, k=k, activation=act, family="gaussian", shift=tl.InputShift(4, 2.0)))(keys)
            X, y = jax.vmap(lambda key, p, act=act: tl.sample_target(key, p, "gaussian", act, n))(keys, ps)
            for tune in ("first", "last", "full"):
                s = timed(lambda tune=tune, act=act, ps=ps, X=X, y=y: tl.finetune_batch(
                    ps, X, y, tune=tune, activation=act, family="gaussian", steps=steps, gtol=0.0,
                    n_records=1, chunk_size=None))
                print(json.dumps({"problems": P, "activation": act, "tune": tune, "seconds": s,
                                  "problem_steps_per_s": P * steps / s}), flush=True)


if __name__ == "__main__":
    main()
