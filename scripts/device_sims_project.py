"""Project the wall time of a whole sweep from a finished slice of it (a projection, not a measurement).

Reads the records of a slice (``--results``: a ``python -m sims.sweep`` folder, e.g. the first groups
of ``--full`` run with ``--max-minutes``) and fits, over its shape groups (at least 3 with different
work; otherwise every group is projected at the measured mean),
``group seconds = overhead + GD work / rate`` (least squares), where a group's GD work is the sum of
6·k·n_pad·d·steps_taken over its gradient-descent records (n_pad, k_pad: the group's largest n and k)
and its seconds are the sum of its runs' ``wall_s`` (compilation included). The whole preset's work
is counted with each (activation, tune) mode's mean ``steps_taken / steps`` measured in the slice
(early stop), and also with every run taking all its steps (``upper``). Larger d runs at a higher
rate on an accelerator than the slice's small d, so the projection leans high.

Usage: python scripts/device_sims_project.py --results DIR --preset full [--seeds N] [--steps N]
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from sims.config import resolve
from sims.grid import shape_groups
from sims.infra import RunStore
from twolayer import uses_closed_form

GD = ("first", "last", "full")


def _is_gd(method: str, activation: str) -> bool:
    return method in GD and not uses_closed_form(method, activation)


def _group_work(g, steps_of) -> float:
    """GD work of group ``g`` with ``steps_of(activation, tune)`` steps per run."""
    n_pad, k_pad = max(g.ns), max(g.ks)
    runs = len(g.runs()) // len(g.activations)
    return sum(runs * 6 * k_pad * n_pad * g.d * steps_of(a, t)
               for a in g.activations for t in GD if t in g.config.tunes and _is_gd(t, a))


def project(results: Path, preset: str, overrides: dict) -> dict:
    cfg = resolve(preset, None, overrides)
    records = RunStore(results).load()
    groups = shape_groups(cfg)
    by_group: dict[str, list[dict]] = defaultdict(list)
    index = {}
    for g in groups:
        for rid in g.record_ids():
            index[rid] = g.key
    for r in records:
        if r["id"] in index:
            by_group[index[r["id"]]].append(r)
    done = [g for g in groups if len(by_group[g.key]) == len(g.record_ids())]
    if not done:
        raise SystemExit(f"error: no complete shape group of preset {preset} in {results}")
    frac: dict[tuple, list[float]] = defaultdict(list)
    for r in records:
        if _is_gd(r["method"], r["activation"]):
            frac[(r["activation"], r["method"])].append(r["steps_taken"] / r["steps"])
    mean_frac = {key: float(np.mean(v)) for key, v in frac.items()}
    rows = []
    for g in done:
        recs = by_group[g.key]
        seen = {}
        for r in recs:
            seen[(r["activation"], r["k"], r["n"], r["shift_kind"], r["alpha"], r["t"],
                  r["seed_index"])] = r["wall_s"]
        steps_taken = defaultdict(list)
        for r in recs:
            if _is_gd(r["method"], r["activation"]):
                steps_taken[(r["activation"], r["method"])].append(r["steps_taken"])
        work = _group_work(g, lambda a, t, st=steps_taken: float(np.mean(st[(a, t)]))
                           if st[(a, t)] else 0.0)
        rows.append((sum(seen.values()), work))
    secs = np.array([s for s, _ in rows])
    work = np.array([w for _, w in rows])
    model = "overhead + work / rate (least squares over the measured groups)"
    overhead, per_flop = 0.0, 0.0
    if len(rows) >= 3 and np.ptp(work) > 0:
        A = np.stack([np.ones_like(work), work], axis=1)
        (overhead, per_flop), *_ = np.linalg.lstsq(A, secs, rcond=None)
    if not (per_flop > 0 and overhead >= 0):  # too few or too similar groups to separate the two
        model = "mean seconds per measured group (work not separable from overhead)"
        overhead, per_flop = float(secs.mean()), 0.0
    expected = sum(_group_work(g, lambda a, t: mean_frac.get((a, t), 1.0) * cfg.steps)
                   for g in groups)
    upper = sum(_group_work(g, lambda a, t: cfg.steps) for g in groups)
    return {
        "projection": True,
        "preset": preset, "overrides": overrides,
        "groups_total": len(groups), "groups_measured": len(done),
        "measured_s": float(secs.sum()),
        "model": model,
        "fit_overhead_s_per_group": float(overhead),
        "fit_gflops": float(1 / per_flop / 1e9) if per_flop > 0 else None,
        "steps_fraction": {f"{a}/{t}": v for (a, t), v in mean_frac.items()},
        "projected_s": float(len(groups) * overhead + expected * per_flop),
        "projected_upper_s": float(len(groups) * overhead + upper * per_flop),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--results", type=Path, required=True, help="sweep folder of the slice")
    p.add_argument("--preset", default="full", help="preset whose whole grid is projected")
    p.add_argument("--seeds", type=int, default=None, help="seeds override used by the slice")
    p.add_argument("--steps", type=int, default=None, help="steps override used by the slice")
    args = p.parse_args()
    overrides = {k: v for k, v in (("seeds", args.seeds), ("steps", args.steps)) if v is not None}
    print(json.dumps(project(args.results, args.preset, overrides)))


if __name__ == "__main__":
    main()
