"""CPU seconds of one shape group's parts (problems and samples, runners, Monte Carlo), cold and warm.

    python scripts/profile_group.py --d 256 --n-ratios 0.0625,2 --families gaussian,sparse
        [--seeds 8 --gd-seeds 4 --repeat 2]

For each group of the full preset reduced to width 2 and the given d, n/d and families, calls
``sims.engine.compute_group`` once cold (compiling) and ``--repeat`` times warm in this process, and
prints one JSON line per group: wall and CPU seconds, and CPU seconds of the ``preparer`` (the
group's problems and samples: the engine's ``_preparer``, or its ``_padded_builder`` and
``_expander`` with shape buckets), each ``runner[activation]`` (every run) and ``mc`` (the Monte
Carlo evidence), cold and the best warm call. CPU seconds (``time.process_time``) are less
disturbed than wall seconds by other jobs on a shared machine; still compare within one process.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import time

import jax

import sims.runtime  # noqa: F401  (float64, XLA flags)
from sims import config, engine
from sims.grid import shape_groups


def _instrument(seconds: collections.Counter) -> None:
    """Wrap the engine's compiled parts so that each call adds its CPU seconds to ``seconds``."""

    def timed(name, fn):
        def wrap(*a, **k):
            c0 = time.process_time()
            out = jax.block_until_ready(fn(*a, **k))
            seconds[name] += time.process_time() - c0
            return out
        return wrap

    for attr in ("_runner", "_preparer", "_padded_builder", "_expander"):  # those the engine has
        make = getattr(engine, attr, None)
        if make is None:
            continue

        def cached(*a, make=make, attr=attr, **k):
            label = "runner[" + a[0] + "]" if attr == "_runner" else "preparer"  # + samples
            return timed(label, make(*a, **k))

        setattr(engine, attr, cached)
    engine._mc_batch = timed("mc", engine._mc_batch)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--d", type=int, default=256)
    ap.add_argument("--n-ratios", default="0.0625")
    ap.add_argument("--families", default="gaussian")
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--gd-seeds", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args(argv)
    cfg = dataclasses.replace(config.preset("full"), dims=(a.d,), widths=(2,),
                              n_ratios=tuple(float(r) for r in a.n_ratios.split(",")),
                              families=tuple(a.families.split(",")), seeds=a.seeds,
                              gd_seeds=a.gd_seeds)
    seconds: collections.Counter = collections.Counter()
    _instrument(seconds)
    for group in shape_groups(cfg):
        rows = []
        for _ in range(1 + a.repeat):
            seconds.clear()
            c0, t0 = time.process_time(), time.perf_counter()
            records = engine.compute_group(group)
            rows.append({"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
                         **seconds})
        warm = {k: round(min(r[k] for r in rows[1:]), 3) for k in rows[1]}
        print(json.dumps({"d": group.d, "family": group.family, "k": group.ks[0], "n": group.ns[0],
                          "records": len(records), "cold": {k: round(v, 3) for k, v in rows[0].items()},
                          "warm_best": warm}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
