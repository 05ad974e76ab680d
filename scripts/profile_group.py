"""CPU seconds of one shape group's parts (problems and samples, runners, Monte Carlo), cold and warm.

    python scripts/profile_group.py --d 256 --n-ratios 0.0625,2 --families gaussian,sparse
        [--seeds 8 --gd-seeds 4 --repeat 2]

For each group of the full preset reduced to width ``--k`` (default 2) and the given d, n/d and
families, calls ``sims.engine.compute_group`` once cold (compiling) and ``--repeat`` times warm in
this process (0: cold only), and
prints one JSON line per group: wall and CPU seconds, and CPU seconds of the ``preparer`` (the
group's problems and samples: the engine's ``_preparer``, or its ``_padded_builder`` and
``_expander`` with shape buckets), each ``runner[activation]`` (every run) and ``mc`` (the Monte
Carlo evidence), cold and the best warm call. CPU seconds (``time.process_time``) are less
disturbed than wall seconds by other jobs on a shared machine; still compare within one process.

``--bucketed`` keeps the preset's widths, sample sizes and shape buckets, so the group is padded
as ``--full`` pads it (k to 16, n to 2d: every group of a d costs about the same). Each line also
has the wall seconds of each part (``<part>_wall``: read these on a GPU), ``gd_steps_max`` (the
steps each span-iteration mode ran: a vmapped while-loop runs until its slowest problem stops),
the group's runs and Monte Carlo runs at these seeds and at the preset's, and
``projected_full_group_warm_s``: the warm wall seconds scaled to the preset's seeds (a projection;
a larger batch may fill a device better, or a CPU's caches worse). ``--gd-steps`` overrides the
span iterations' step budget (the GD tier's work scales with it).
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
from twolayer import TUNE_MODES, uses_closed_form


def _instrument(seconds: collections.Counter) -> None:
    """Wrap the engine's compiled parts so that each call adds its CPU seconds to ``seconds[part]``
    and its wall seconds to ``seconds[part + "_wall"]`` (on a GPU the CPU seconds leave out the
    device's time: read the wall ones there)."""

    def timed(name, fn):
        def wrap(*a, **k):
            c0, t0 = time.process_time(), time.perf_counter()
            out = jax.block_until_ready(fn(*a, **k))
            seconds[name] += time.process_time() - c0
            seconds[name + "_wall"] += time.perf_counter() - t0
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


def _mc_runs(group) -> int:
    """Runs of ``group`` in their cell's Monte Carlo subset."""
    wanted = engine._mc_selector(group.config)
    return sum(1 for r in group.runs() if wanted(r))


def _projected(warm: dict, counts: dict) -> float:
    """Warm wall seconds of the group at the preset's seeds (a projection): the Monte Carlo part
    scaled by its runs, the rest (problems, samples, runners, host work) by the group's runs."""
    mc = warm.get("mc_wall", 0.0)
    rest = warm["wall_s"] - mc
    return round(rest * counts["full_runs"] / counts["runs"]
                 + mc * counts["full_mc_runs"] / max(counts["mc_runs"], 1), 3)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--d", type=int, default=256)
    ap.add_argument("--n-ratios", default="0.0625")
    ap.add_argument("--families", default="gaussian")
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--gd-seeds", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--k", type=int, default=2, help="the width of the groups")
    ap.add_argument("--bucketed", action="store_true",
                    help="pad as --full does (the preset's widths and shape buckets)")
    ap.add_argument("--gd-steps", type=int, default=None, help="override the GD step budget")
    a = ap.parse_args(argv)
    full = config.preset("full")
    ratios = tuple(float(r) for r in a.n_ratios.split(","))
    cfg = dataclasses.replace(full, dims=(a.d,), widths=full.widths if a.bucketed else (a.k,),
                              n_ratios=full.n_ratios if a.bucketed else ratios,
                              families=tuple(a.families.split(",")), seeds=a.seeds,
                              gd_seeds=a.gd_seeds, gd_steps=a.gd_steps or full.gd_steps)
    full_cfg = dataclasses.replace(cfg, seeds=full.seeds, gd_seeds=full.gd_seeds)
    ns = set(dataclasses.replace(cfg, n_ratios=ratios).sample_sizes(a.d))
    seconds: collections.Counter = collections.Counter()
    _instrument(seconds)
    for group in (g for g in shape_groups(cfg) if g.ks == (a.k,) and g.ns[0] in ns):
        rows = []
        for _ in range(1 + a.repeat):
            seconds.clear()
            c0, t0 = time.process_time(), time.perf_counter()
            records = engine.compute_group(group)
            rows.append({"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
                         **seconds})
        warm = {k: round(min(r[k] for r in rows[1:]), 3) for k in rows[1]} if a.repeat else None
        full_group = dataclasses.replace(group, config=full_cfg)
        gd_max: dict[str, int] = {}  # per span-iteration mode: the steps its batches ran
        for r in records:
            if r["method"] in TUNE_MODES and not uses_closed_form(r["method"], r["activation"]):
                mode = f"{r['activation']}/{r['method']}"
                gd_max[mode] = max(gd_max.get(mode, 0), r["steps_taken"])
        counts = {"runs": len(group.runs()), "full_runs": len(full_group.runs()),
                  "mc_runs": _mc_runs(group), "full_mc_runs": _mc_runs(full_group)}
        print(json.dumps({"d": group.d, "family": group.family, "k": group.ks[0], "n": group.ns[0],
                          "padded": list(group.padded), "gd_steps": cfg.gd_steps,
                          "gd_steps_max": gd_max, **counts,
                          "records": len(records), "cold": {k: round(v, 3) for k, v in rows[0].items()},
                          "warm_best": warm,
                          "projected_full_group_warm_s": warm and _projected(warm, counts)}),
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
