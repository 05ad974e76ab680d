"""``python -m sims.bench``: the engine against a plain per-run NumPy loop, in one process.

The engine computes the quick grid (every run, every tune mode, closed forms, exact losses) in
this process, compilation included (``engine_s``; a second, warm pass is ``engine_warm_s``). The
baseline is ``twolayer.reference.numpy_finetune``: textbook GD, one run and one step at a time,
with the step size the engine used, for ``steps_taken`` steps of each (run, tune mode). With
``--loop-sample N`` (default 300) the loop times N random (run, tune) pairs and scales the mean
to all of them (``loop_extrapolated``); ``--loop-sample 0`` times every pair.

The last line printed is JSON: speedup (loop_s / engine_s), engine_s, engine_warm_s, loop_s,
runs, gd_runs, achieved_gflops (GD-equivalent work 6·k·n·d per step over the engine's time),
matmul_peak_gflops (a 2048² float64 matmul timed here), peak_rss_mb, devices.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import time

import jax
import numpy as np

import sims.runtime  # noqa: F401  (XLA flags and float64 before anything computes)
from sims.config import SweepConfig, resolve
from sims.engine import build_run, compute_group
from sims.grid import Run, record_id, shape_groups
from twolayer.reference import numpy_finetune

__all__ = ["bench", "main"]


def _matmul_peak_gflops(n: int = 2048, reps: int = 3) -> float:
    a = np.random.default_rng(0).standard_normal((n, n))
    a @ a
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def _problem_arrays(cfg: SweepConfig, run: Run):
    """(v_src, B_src, X, y) of a run as NumPy arrays, built by the engine's :func:`build_run`."""
    p, X, y = build_run(cfg, run)
    return np.asarray(p.v_src), np.asarray(p.B_src), np.asarray(X), np.asarray(y)


def bench(cfg: SweepConfig, loop_sample: int, seed: int = 0) -> dict:
    """Time engine and loop on ``cfg``; returns the JSON-ready result."""
    groups = shape_groups(cfg)
    t = time.perf_counter()
    records = [r for g in groups for r in compute_group(g)]
    engine_s = time.perf_counter() - t
    t = time.perf_counter()
    for g in groups:
        compute_group(g)
    engine_warm_s = time.perf_counter() - t
    by_id = {r["id"]: r for r in records}
    pairs = [(run, tune) for g in groups for run in g.runs() for tune in ("first", "last", "full")
             if tune in cfg.tunes]
    sample = pairs if loop_sample <= 0 or loop_sample >= len(pairs) else random.Random(
        seed).sample(pairs, loop_sample)
    work = sum(6 * r["k"] * r["n"] * r["d"] * r["steps_taken"] for r in records
               if r["method"] in ("first", "last", "full"))
    loop_time = 0.0
    for run, tune in sample:
        rec = by_id[record_id(cfg, run, tune)]
        v0, B0, X, y = _problem_arrays(cfg, run)
        t = time.perf_counter()
        numpy_finetune(v0, B0, X, y, tune=tune, activation=run.activation,
                       steps=rec["steps_taken"], lr=rec["lr"])
        loop_time += time.perf_counter() - t
    loop_s = loop_time * len(pairs) / len(sample)
    return {
        "speedup": loop_s / engine_s,
        "engine_s": engine_s,
        "engine_warm_s": engine_warm_s,
        "loop_s": loop_s,
        "loop_pairs_timed": len(sample),
        "loop_extrapolated": len(sample) < len(pairs),
        "runs": len({(r["d"], r["k"], r["n"], r["activation"], r["family"], r["shift_kind"],
                      r["alpha"], r["t"], r["seed_index"]) for r in records}),
        "gd_runs": len(pairs),
        "records": len(records),
        "achieved_gflops": work / engine_s / 1e9,
        "matmul_peak_gflops": _matmul_peak_gflops(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "devices": [str(d) for d in jax.devices()],
    }


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m sims.bench [--full] [--loop-sample N] [--seeds N]``."""
    p = argparse.ArgumentParser(prog="python -m sims.bench", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--loop-sample", type=int, default=300,
                   help="(run, tune) pairs timed in the NumPy loop; 0 = all")
    p.add_argument("--seeds", type=int, default=None, help="override the quick grid's seeds")
    p.add_argument("--seed", type=int, default=0, help="seed of the loop's random sample")
    args = p.parse_args(argv)
    try:
        cfg = resolve("quick", None, {"seeds": args.seeds} if args.seeds else None)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = bench(cfg, args.loop_sample, args.seed)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
