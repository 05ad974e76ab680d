"""Compile seconds of a sweep's programs, by kind, in one process with no compilation cache.

    python scripts/profile_compile.py --full --dims 16,64 --slice 1/9 --seeds 10 --gd-seeds 4 \
        --gd-steps 300 --mc-samples 1024 [--per-width-builder] [--groups N]

Takes the sweep's flags (``python -m sims.sweep --help``), computes the shape groups of the
slice in order (``sims.engine.compute_group``, nothing stored), and attributes the tracing,
lowering and compiling seconds of this process (``sims.runtime.compile_stats``) to the engine's
program kinds: ``build`` (a bucket's problem builder), ``expand`` (a bucketed group's sample-size
expansion), ``prepare`` (an unbucketed group's preparer), ``run[activation]`` (one runner for
both seed tiers), ``mc[activation]`` and ``other`` (small eager operations between them and the
Monte Carlo runs' gather). Prints one JSON line per group (its new programs and seconds by kind)
and a summary (programs, seconds and seconds per program by kind). ``--per-width-builder``
builds a bucketed group's problems as before the width was an argument (``make_problem`` at the
group's width, one builder program per (d, k, family)), for a comparison in the same process
kind. Wall seconds on a shared machine are noisy; compare kinds within one run.
"""

from __future__ import annotations

import collections
import functools
import json
import time

import jax

import sims.runtime  # noqa: F401  (float64, XLA flags; no compilation cache unless configured)
from sims import engine
from sims.grid import shape_groups, shifts_of
from sims.runtime import compile_stats
from sims.sweep import build_parser, config_from_args, slice_groups

#: (kind, programs, seconds) of every compile attributed so far.
_SEEN: list[tuple[str, int, float]] = []


def _timed(kind: str, fn):
    """``fn`` whose calls add the programs and compile seconds they cause to ``_SEEN``."""

    def wrap(*args, **kwargs):
        before = compile_stats()
        out = fn(*args, **kwargs)
        after = compile_stats()
        if after["programs"] > before["programs"]:
            _SEEN.append((kind, after["programs"] - before["programs"],
                          after["compile_s"] - before["compile_s"]))
        return out

    return wrap


def _instrument() -> None:
    """Wrap the engine's program factories so that each compiled call is attributed."""

    def factory(attr: str, kind_of):
        make = getattr(engine, attr)

        @functools.wraps(make)
        def cached(*args, **kwargs):
            return _timed(kind_of(*args), make(*args, **kwargs))

        setattr(engine, attr, cached)

    factory("_padded_builder", lambda *a: "build")
    factory("_expander", lambda *a: "expand")
    factory("_preparer", lambda *a: "prepare")
    factory("_runner", lambda act, *a: f"run[{act}]")  # one for both seed tiers
    factory("_mc_runner", lambda act, *a: f"mc[{act}]")


@functools.lru_cache(maxsize=64)
def _seeded(build):
    return jax.jit(lambda seeds: build(engine._keys(seeds)))


def per_width_problems(group, seeds):
    """``sims.engine._bucket_problems`` with one builder program per width, as before the width
    was an argument: ``make_problem`` at the group's k (``engine._builder``), padded afterwards.
    (Also the mutation of ``tests/sims/test_buckets.py``.)"""
    cfg = group.config
    build = engine._builder(group.d, group.ks, shifts_of(cfg), group.activations, group.family,
                            group.pool_n, cfg.nonneg_head, cfg.p1, group.padded[0])
    return _seeded(build)(seeds)


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    p.description = __doc__.split("\n")[0]
    p.add_argument("--per-width-builder", action="store_true",
                   help="one builder program per (d, k, family), as before the width was traced")
    p.add_argument("--groups", type=int, default=None, help="only the first N groups of the slice")
    args = p.parse_args(argv)
    cfg = config_from_args(args)
    groups = slice_groups(shape_groups(cfg), args.slice)[: args.groups]
    _instrument()
    if args.per_width_builder:
        engine._bucket_problems = _timed("build", per_width_problems)
    total = collections.defaultdict(lambda: [0, 0.0])
    t0 = time.perf_counter()
    for group in groups:
        start, g0 = len(_SEEN), time.perf_counter()
        c0 = compile_stats()
        engine.compute_group(group)
        c1 = compile_stats()
        rows = collections.defaultdict(lambda: [0, 0.0])
        for kind, n, s in _SEEN[start:]:
            rows[kind][0] += n
            rows[kind][1] += s
        rows["other"] = [c1["programs"] - c0["programs"] - sum(r[0] for r in rows.values()),
                         c1["compile_s"] - c0["compile_s"] - sum(r[1] for r in rows.values())]
        for kind, (n, s) in rows.items():
            total[kind][0] += n
            total[kind][1] += s
        print(json.dumps({"group": group.key, "padded": group.padded,
                          "wall_s": round(time.perf_counter() - g0, 2),
                          "programs": c1["programs"] - c0["programs"],
                          "compile_s": round(c1["compile_s"] - c0["compile_s"], 2),
                          "by_kind": {k: [n, round(s, 2)] for k, (n, s) in sorted(rows.items())}}),
              flush=True)
    stats = compile_stats()
    print(json.dumps({"summary": True, "groups": len(groups), "per_width_builder": args.per_width_builder,
                      "wall_s": round(time.perf_counter() - t0, 1), "programs": stats["programs"],
                      "compile_s": round(stats["compile_s"], 1),
                      "by_kind": {k: {"programs": n, "compile_s": round(s, 2),
                                      "s_per_program": round(s / n, 2) if n else None}
                                  for k, (n, s) in sorted(total.items())}}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
