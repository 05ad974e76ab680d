"""Device check of twolayer: batched GD throughput on the accelerator (float64).

Times :func:`twolayer.finetune_batch` (warm, after compilation) for the benchmark configuration of
tests/benchmarks/test_twolayer_gd.py (256 problems, d = 128, n = 64, k = 16, 2000 steps) and,
by default, a 16x larger batch, for both activations and all tune modes, once per ``--chunks``
value (``auto``: the library default, ``16``: the CPU chunking, ``none``: one vectorized batch)
and ``--unrolls`` value (GD steps per loop iteration of the span iteration; ``default`` is
``twolayer.default_unroll()``), and a large float64 matmul for reference. Prints one JSON line per
configuration.

Usage: python scripts/device_twolayer.py [--problems 256,4096] [--steps 2000] [--chunks auto,16]
       [--unrolls default,1,32]
"""

from __future__ import annotations

import argparse
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


def _chunk(text: str) -> int | str | None:
    return None if text == "none" else "auto" if text == "auto" else int(text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--problems", default="256,4096", help="batch sizes, comma-separated")
    p.add_argument("--steps", type=int, default=2000, help="GD steps (no early stop)")
    p.add_argument("--chunks", default="auto", help="chunk_size values: auto, none or integers")
    p.add_argument("--unrolls", default="default", help="unroll values: default or integers")
    args = p.parse_args()
    a = jnp.ones((4096, 4096))
    mm = timed(lambda: a @ a)
    print(json.dumps({"device": str(jax.devices()[0]), "matmul_f64_gflops": 2 * 4096**3 / mm / 1e9}))
    d, n, k, steps = 128, 64, 16, args.steps
    unroll_values = [None if u == "default" else int(u) for u in args.unrolls.split(",")]
    for P in (int(s) for s in args.problems.split(",")):
        keys = jax.random.split(jax.random.PRNGKey(0), P)
        for act in ("linear", "relu"):
            ps = jax.vmap(lambda key, act=act: tl.make_problem(
                key, d=d, k=k, activation=act, family="gaussian", shift=tl.InputShift(4, 2.0)))(keys)
            X, y = jax.vmap(lambda key, p, act=act: tl.sample_target(key, p, "gaussian", act, n))(keys, ps)
            for tune in ("first", "last", "full"):
                unrolls = [None] if tl.uses_closed_form(tune, act) else unroll_values
                for chunk, unroll in ((_chunk(c), u) for c in args.chunks.split(",") for u in unrolls):
                    s = timed(lambda tune=tune, act=act, ps=ps, X=X, y=y, chunk=chunk, unroll=unroll:
                              tl.finetune_batch(ps, X, y, tune=tune, activation=act, family="gaussian",
                                                steps=steps, gtol=0.0, n_records=1, chunk_size=chunk,
                                                unroll=unroll))
                    print(json.dumps({"problems": P, "activation": act, "tune": tune, "chunk": chunk,
                                      "resolved_chunk": tl.auto_chunk_size(P, n, d, k)
                                      if chunk == "auto" else chunk,
                                      "unroll": unroll or tl.default_unroll(), "seconds": s,
                                      "problem_steps_per_s": P * steps / s}), flush=True)


if __name__ == "__main__":
    main()
