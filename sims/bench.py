"""``python -m sims.bench``: the engine against a plain per-run NumPy loop, and what compilation costs.

The engine computes a preset's grid (every run, every tune mode, closed forms, exact losses; default
the quick preset) three ways, each in the same kind of process:

* **cold**: a fresh process with an empty compilation cache (a new temporary folder): tracing,
  lowering and compiling every program, then running;
* **cached**: a second fresh process on that folder: the programs load from the disk cache;
* **warm**: a second pass in the cached process: nothing compiles.

Each process reports ``programs`` (executables compiled or loaded), ``cache_hits`` and
``compile_s`` (seconds spent tracing, lowering, compiling or loading). With ``--no-compile-cache``
the cached phase is skipped (``cached_s`` is null). The bench never reads or writes the per-user
cache of ``python -m sims.sweep``.

The baseline is ``twolayer.reference.numpy_finetune``: textbook GD, one run and one step at a time,
with the step size the engine used, for ``steps_taken`` steps of each (run, tune mode), timed in
the cached (or, without a cache, the only) process. With ``--loop-sample N`` (default 300) the loop
times N random (run, tune) pairs and scales the mean to all of them (``loop_extrapolated``);
``--loop-sample 0`` times every pair.

``--batch-curve 1,16,256,...`` instead times one GD step of ``twolayer.finetune_batch`` (ReLU, full
tuning: the span iteration) against the number of problems in the batch.

The last line printed is JSON: speedup_cold / speedup_cached / speedup_warm (loop_s over each
time), cold_s, cached_s, warm_s, compile (per phase), host_s (per phase: the seconds of the pass
spent outside the engine's compiled calls, i.e. seeds and record assembly on the host), loop_s,
runs, gd_runs, achieved_gflops (GD-equivalent work 6·k·n·d per step over the warm time),
matmul_peak_gflops (a 2048² float64 matmul timed here), peak_rss_mb, devices.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np

import sims.runtime  # noqa: F401  (XLA flags and float64 before anything computes)
import twolayer as tl
from sims.config import PRESETS, SweepConfig, resolve
from sims.engine import build_run, compute_group, device_clock
from sims.grid import Run, record_id, shape_groups
from sims.runtime import compile_stats, use_compile_cache
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


def _engine_pass(cfg: SweepConfig) -> tuple[list, float, dict]:
    """All records of ``cfg``, the wall seconds and the compile counters of this pass (with
    ``host_s``: the seconds outside the engine's compiled calls, see ``sims.engine.DeviceClock``)."""
    before, clock = compile_stats(), device_clock.seconds
    t = time.perf_counter()
    records = [r for g in shape_groups(cfg) for r in compute_group(g)]
    seconds = time.perf_counter() - t
    after = compile_stats()
    stats = {k: after[k] - before[k] for k in after}
    stats["host_s"] = seconds - (device_clock.seconds - clock)
    return records, seconds, stats


def _loop(cfg: SweepConfig, records: list, loop_sample: int, seed: int) -> dict:
    by_id = {r["id"]: r for r in records}
    pairs = [(run, tune) for g in shape_groups(cfg) for run in g.runs()
             for tune in ("first", "last", "full") if tune in cfg.tunes]
    sample = pairs if loop_sample <= 0 or loop_sample >= len(pairs) else random.Random(
        seed).sample(pairs, loop_sample)
    loop_time = 0.0
    for run, tune in sample:
        rec = by_id[record_id(cfg, run, tune)]
        v0, B0, X, y = _problem_arrays(cfg, run)
        t = time.perf_counter()
        numpy_finetune(v0, B0, X, y, tune=tune, activation=run.activation,
                       steps=rec["steps_taken"], lr=rec["lr"])
        loop_time += time.perf_counter() - t
    return {"loop_s": loop_time * len(pairs) / len(sample), "loop_pairs_timed": len(sample),
            "loop_extrapolated": len(sample) < len(pairs), "gd_runs": len(pairs)}


def phase(cfg: SweepConfig, passes: int, loop_sample: int | None, seed: int = 0) -> dict:
    """``passes`` engine passes over ``cfg`` in this process (the first compiles or loads from the
    cache, later ones are warm), then the NumPy loop unless ``loop_sample`` is None."""
    out: dict = {"pass_s": [], "compile": []}
    records: list = []
    for _ in range(passes):
        records, seconds, stats = _engine_pass(cfg)
        out["pass_s"].append(seconds)
        out["compile"].append(stats)
    work = sum(6 * r["k"] * r["n"] * r["d"] * r["steps_taken"] for r in records
               if r["method"] in ("first", "last", "full"))
    out.update(records=len(records), gd_work_flop=work,
               runs=len({(r["d"], r["k"], r["n"], r["activation"], r["family"], r["shift_kind"],
                          r["alpha"], r["t"], r["seed_index"]) for r in records}))
    if loop_sample is not None:
        out.update(_loop(cfg, records, loop_sample, seed))
    return out


def _child(args: argparse.Namespace, cache: str | None, passes: int, loop: bool) -> dict:
    """Run :func:`phase` in a fresh process (``--phase``) and return its JSON."""
    cmd = [sys.executable, "-m", "sims.bench", "--phase", "--passes", str(passes),
           "--preset", args.preset, "--loop-sample", str(args.loop_sample if loop else -1),
           "--seed", str(args.seed)]
    if args.seeds is not None:
        cmd += ["--seeds", str(args.seeds)]
    cmd += ["--compile-cache", cache] if cache else ["--no-compile-cache"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=os.environ.copy())
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"bench phase failed: {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench(args: argparse.Namespace) -> dict:
    """Cold, cached and warm engine times and the loop baseline; returns the JSON-ready result."""
    if args.use_compile_cache:
        with tempfile.TemporaryDirectory(prefix="sims-bench-cache-") as folder:
            cold = _child(args, folder, passes=1, loop=False)
            cached = _child(args, folder, passes=2, loop=True)
        cold_s, cached_s, warm_s = cold["pass_s"][0], cached["pass_s"][0], cached["pass_s"][1]
        compile_ = {"cold": cold["compile"][0], "cached": cached["compile"][0],
                    "warm": cached["compile"][1]}
        main = cached
    else:
        main = _child(args, None, passes=2, loop=True)
        cold_s, cached_s, warm_s = main["pass_s"][0], None, main["pass_s"][1]
        compile_ = {"cold": main["compile"][0], "cached": None, "warm": main["compile"][1]}
    loop_s = main["loop_s"]
    return {
        "preset": args.preset,
        "speedup_cold": loop_s / cold_s,
        "speedup_cached": None if cached_s is None else loop_s / cached_s,
        "speedup_warm": loop_s / warm_s,
        "cold_s": cold_s, "cached_s": cached_s, "warm_s": warm_s,
        "compile_s": compile_["cold"]["compile_s"],
        "programs": compile_["cold"]["programs"],
        "compile": compile_,
        "host_s": {phase: None if c is None else c["host_s"] for phase, c in compile_.items()},
        "loop_s": loop_s,
        "loop_pairs_timed": main["loop_pairs_timed"],
        "loop_extrapolated": main["loop_extrapolated"],
        "runs": main["runs"], "gd_runs": main["gd_runs"], "records": main["records"],
        "achieved_gflops": main["gd_work_flop"] / warm_s / 1e9,
        "matmul_peak_gflops": _matmul_peak_gflops(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "devices": [str(d) for d in jax.devices()],
    }


def batch_curve(sizes: list[int], *, d: int = 64, n: int = 32, k: int = 8, steps: int = 200,
                chunk_size: int | str | None = "auto") -> list[dict]:
    """Seconds per GD step of ``twolayer.finetune_batch`` (ReLU, full tuning) against batch size.

    The batch tiles 64 distinct problems; each size is compiled once, then timed over ``steps``
    steps (``gtol=0``: no early stop). Returns one row per size with ``step_s`` (seconds per step
    of the whole batch) and ``problem_step_ns`` (per problem and step).
    """
    base = 64
    keys = jax.random.split(jax.random.PRNGKey(0), base)
    ps = jax.vmap(lambda key: tl.make_problem(key, d=d, k=k, activation="relu",
                                              family="gaussian", shift=tl.InputShift(1, 2.0)))(keys)
    X, y = jax.vmap(lambda key, p: tl.sample_target(key, p, "gaussian", "relu", n))(keys, ps)
    rows = []
    for size in sizes:
        idx = np.arange(size) % base
        args = jax.tree.map(lambda a, idx=idx: a[idx], (ps, X, y))
        kw = dict(tune="full", activation="relu", family="gaussian", steps=steps, gtol=0.0,
                  n_records=1, chunk_size=chunk_size)
        jax.block_until_ready(tl.finetune_batch(*args, **kw))  # compile
        t = time.perf_counter()
        jax.block_until_ready(tl.finetune_batch(*args, **kw))
        seconds = time.perf_counter() - t
        rows.append({"batch": size, "step_s": seconds / steps,
                     "problem_step_ns": seconds / steps / size * 1e9, "chunk_size": chunk_size})
    return rows


def build_parser() -> argparse.ArgumentParser:
    """The CLI (every flag documented in ``--help``)."""
    p = argparse.ArgumentParser(prog="python -m sims.bench", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--preset", choices=PRESETS, default="quick", help="grid to compute")
    p.add_argument("--loop-sample", type=int, default=300,
                   help="(run, tune) pairs timed in the NumPy loop; 0 = all")
    p.add_argument("--seeds", type=int, default=None, help="override the preset's seeds")
    p.add_argument("--seed", type=int, default=0, help="seed of the loop's random sample")
    p.add_argument("--compile-cache", default=None, metavar="DIR",
                   help="(with --phase) the cache folder of this process")
    p.add_argument("--no-compile-cache", dest="use_compile_cache", action="store_false",
                   help="no compilation cache: report cold and warm only")
    p.add_argument("--batch-curve", default=None, metavar="N,N,...",
                   help="instead: seconds per GD step of twolayer.finetune_batch per batch size")
    p.add_argument("--curve-chunk", default="auto",
                   help="chunk_size of finetune_batch for --batch-curve (auto, none or an integer)")
    p.add_argument("--passes", type=int, default=2, help=argparse.SUPPRESS)
    p.add_argument("--phase", action="store_true", help=argparse.SUPPRESS)
    return p


def _parse_chunk(text: str) -> int | str | None:
    if text in ("auto", "none"):
        return None if text == "none" else "auto"
    value = int(text)
    if value < 1:
        raise ValueError
    return value


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m sims.bench [--preset P] [--loop-sample N] [--seeds N] [--batch-curve ...]``."""
    args = build_parser().parse_args(argv)
    try:
        if args.batch_curve:
            try:
                sizes = [int(s) for s in args.batch_curve.split(",") if s.strip()]
                chunk = _parse_chunk(args.curve_chunk)
            except ValueError:
                raise ValueError("--batch-curve/--curve-chunk: expected comma-separated positive "
                                 "integers / auto, none or a positive integer") from None
            if not sizes or min(sizes) < 1:
                raise ValueError("--batch-curve: expected comma-separated positive integers")
            rows = batch_curve(sizes, chunk_size=chunk)
            print(json.dumps({"batch_curve": rows, "devices": [str(d) for d in jax.devices()]}))
            return 0
        cfg = resolve(args.preset, None, None if args.seeds is None else {"seeds": args.seeds})
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.phase:
        use_compile_cache(args.compile_cache if args.use_compile_cache else None)
        loop = None if args.loop_sample < 0 else args.loop_sample
        print(json.dumps(phase(cfg, args.passes, loop, args.seed)))
        return 0
    print(json.dumps(bench(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
