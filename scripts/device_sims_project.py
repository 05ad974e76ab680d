"""Project the wall time of a whole sweep from a measured slice of it: a projection, not a measurement.

Reads a ``python -m sims.sweep`` folder (``--results``: its ``config.json`` and ``runs.jsonl``, e.g. a
``--slice`` or ``--max-minutes`` part of ``--full``) and fits, over its complete shape groups,

    group seconds = a + b * closed-form work + c * gradient-descent work      (a, b, c >= 0)

by non-negative least squares, where for a group of runs with padded shape (n, d, k):

* closed-form work = runs * (d^3 + n d min(n, d)): the solves, eigendecompositions and SVDs every
  run pays (the closed-form tune modes, the limits, the evidence), counted in flop-like units;
* gradient-descent work = sum over the span-iteration modes (ReLU first/full, linear full) of
  runs * steps executed * per-step work, with per-step work 6 k n min(n, d) (ReLU) or
  6 (n min(n, d) + k n) (linear, rank-one step), and steps executed = the largest ``steps_taken`` of
  the mode in the group (a vmapped while-loop runs until its last problem stops).

A group's seconds are the sum of its runs' ``wall_s`` (the engine's wall time of the group,
compilation included). The fit needs more groups than parameters (at least 4) with different work;
with fewer the script refuses (exit 2). It prints every measured group's seconds, the fitted
seconds and the relative residual.

The target (``--preset``, default the slice's preset) is projected group by group from the same
model with the target's seeds and step budgets: ``expected`` with each mode's steps executed at the
fraction of its budget measured in the slice (largest over the slice's groups of that mode), and
``upper`` with every mode running its whole budget. Judging, summarising and reading the records
back scale with the number of records: their seconds per record are measured on the slice's records
in this process and multiplied out. The rate measured on small groups is assumed for large ones (an
accelerator usually runs large batches at a higher rate, so the projection leans high there).

Usage: python scripts/device_sims_project.py --results DIR [--preset full]
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy.optimize import nnls

from sims.claims import evaluate
from sims.config import PRESETS, SweepConfig, preset, with_overrides
from sims.grid import ShapeGroup, in_gd_tier, run_methods, shape_groups
from sims.infra import RunStore
from sims.summary import summarize, to_csv
from twolayer import TUNE_MODES, uses_closed_form

TERMS = ("overhead_s_per_group", "s_per_closed_form_unit", "s_per_gd_unit")


def span_modes(cfg: SweepConfig) -> list[tuple[str, str]]:
    """(activation, tune) pairs of the config that run the span iteration."""
    return [(a, t) for a in cfg.activations for t in TUNE_MODES
            if t in cfg.tunes and not uses_closed_form(t, a)]


def step_work(activation: str, n: int, d: int, k: int) -> float:
    """Work of one span-iteration GD step of a run of padded shape (n, d, k)."""
    m = min(n, d)
    return 6.0 * k * n * m if activation == "relu" else 6.0 * (n * m + k * n)


def features(g: ShapeGroup, steps_of) -> np.ndarray:
    """(1, closed-form work, GD work) of group ``g``; ``steps_of(activation, tune)`` = steps run."""
    cfg, n, k, d = g.config, max(g.ns), max(g.ks), g.d
    runs = g.runs()
    cf = len(runs) * (d ** 3 + n * d * min(n, d))
    gd = 0.0
    for a, t in span_modes(cfg):
        gd_runs = sum(1 for r in runs if r.activation == a and in_gd_tier(cfg, r))
        gd += gd_runs * steps_of(a, t) * step_work(a, n, d, k)
    return np.array([1.0, float(cf), float(gd)])


def _config(results: Path) -> SweepConfig:
    path = results / "config.json"
    if not path.is_file():
        raise ValueError(f"{path} not found: expected the --out folder of python -m sims.sweep")
    return with_overrides(SweepConfig(), json.loads(path.read_text())["config"])


def _post_seconds(records: list[dict], cfg: SweepConfig, results: Path) -> dict:
    """Seconds per record of reading the store back, judging and summarising, in this process."""
    t0 = time.perf_counter()
    RunStore(results).load()
    t1 = time.perf_counter()
    evaluate(records, cfg)
    to_csv(summarize(records))
    t2 = time.perf_counter()
    size = (results / "runs.jsonl").stat().st_size
    n = max(len(records), 1)
    return {"load_s_per_record": (t1 - t0) / n, "judge_s_per_record": (t2 - t1) / n,
            "bytes_per_record": size / n}


def project(results: Path, target: SweepConfig | None = None) -> dict:
    """The projection (module docstring) of ``target`` (default: the slice's preset) from the
    slice in ``results``, as a JSON-ready dict; ValueError if it cannot be made."""
    cfg = _config(results)
    if target is None:
        target = preset(cfg.preset) if cfg.preset in PRESETS else cfg
    records = RunStore(results).load()
    by_id = {r["id"]: r for r in records}
    present = {(r["d"], r["family"], r["k"], r["n"]) for r in records}
    rows = []
    frac: dict[tuple, float] = defaultdict(float)
    for g in shape_groups(cfg):
        if not any((g.d, g.family, k, n) in present for k in g.ks for n in g.ns):
            continue  # no record of the group: not measured (skips hashing its ids)
        ids = g.record_ids()
        if not all(i in by_id for i in ids):
            continue
        recs = [by_id[i] for i in ids]
        steps = defaultdict(int)
        for r in recs:
            if (r["activation"], r["method"]) in span_modes(cfg):
                key = (r["activation"], r["method"])
                steps[key] = max(steps[key], r["steps_taken"])
                frac[key] = max(frac[key], r["steps_taken"] / r["steps"])
        walls = {tuple(r[k] for k in ("activation", "k", "n", "shift_kind", "rank", "alpha", "t",
                                      "seed_index")): r["wall_s"] for r in recs}
        rows.append((g, features(g, lambda a, t, s=steps: s[(a, t)]), sum(walls.values())))
    need = len(TERMS) + 1
    if len(rows) < need:
        raise ValueError(f"{len(rows)} complete shape groups in {results}: the fit of {len(TERMS)} "
                         f"terms needs at least {need}; measure more groups (--slice, --max-minutes)")
    X = np.stack([f for _, f, _ in rows])
    secs = np.array([s for _, _, s in rows])
    scale = np.where(X.max(axis=0) > 0, X.max(axis=0), 1.0)
    coef, _ = nnls(X / scale, secs)
    coef = coef / scale
    fitted = X @ coef
    post = _post_seconds([by_id[i] for g, _, _ in rows for i in g.record_ids()], cfg, results)

    def whole(steps_of) -> dict:
        per_d: dict[int, float] = defaultdict(float)
        for g in shape_groups(target):
            per_d[g.d] += float(features(g, steps_of) @ coef)
        n_records = sum(len(run_methods(target, r)) for g in shape_groups(target)
                        for r in g.runs())
        post_s = n_records * (post["load_s_per_record"] + post["judge_s_per_record"])
        return {"runs_s": sum(per_d.values()), "per_d_s": {str(d): s for d, s in per_d.items()},
                "records": n_records, "judge_and_load_s": post_s,
                "total_s": sum(per_d.values()) + post_s}

    budget = {(a, t): target.gd_step_budget for a, t in span_modes(target)}
    expected = whole(lambda a, t: frac.get((a, t), 1.0) * budget[(a, t)])
    upper = whole(lambda a, t: budget[(a, t)])
    differ = {k: [v, target.to_dict()[k]] for k, v in cfg.to_dict().items()
              if k != "preset" and v != target.to_dict()[k]}
    measured_d = {g.d for g, _, _ in rows}
    warnings = [f"{name} fitted as 0: the measured groups do not resolve it, the projection "
                "leaves that work out" for name, c in zip(TERMS[1:], coef[1:]) if c == 0]
    beyond = sorted({g.d for g in shape_groups(target)} - measured_d)
    if beyond:
        warnings.append(f"d = {beyond} extrapolated from d = {sorted(measured_d)}")
    warnings += [f"measured with {k} = {v[0]}, projected for {v[1]}" for k, v in differ.items()
                 if k not in ("dims", "families", "widths", "n_ratios", "ns")]
    return {
        "projection": True,
        "note": "a projection from a measured slice, not a measurement of the whole sweep",
        "target": target.preset, "measured_config_differs": differ,
        "groups_total": len(shape_groups(target)), "groups_measured": len(rows),
        "measured_dims": sorted(measured_d), "extrapolated_dims": beyond, "warnings": warnings,
        "measured_s": float(secs.sum()),
        "model": "group seconds = a + b * closed-form work + c * GD work (non-negative least squares)",
        "fit": dict(zip(TERMS, map(float, coef))),
        "residuals": [{"group": g.key, "measured_s": round(float(s), 3),
                       "fitted_s": round(float(f), 3),
                       "rel_residual": round(float((s - f) / s), 3) if s > 0 else None}
                      for (g, _, s), f in zip(rows, fitted)],
        "rms_rel_residual": float(np.sqrt(np.mean(((secs - fitted) / secs) ** 2))),
        "steps_fraction": {f"{a}/{t}": v for (a, t), v in frac.items()},
        "post_per_record": post,
        "projected_runs_jsonl_bytes": expected["records"] * post["bytes_per_record"],
        "expected": expected, "upper": upper,
        "projected_s": expected["total_s"], "projected_upper_s": upper["total_s"],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--results", type=Path, required=True, help="sweep folder of the measured slice")
    p.add_argument("--preset", default=None,
                   help="preset whose whole grid is projected (default: the slice's preset)")
    args = p.parse_args(argv)
    try:
        print(json.dumps(project(args.results, None if args.preset is None else preset(args.preset))))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
