"""Project the wall time of a whole sweep from a measured slice of it: a projection, not a measurement.

Reads a ``python -m sims.sweep`` folder (``--results``: its ``config.json`` and ``runs.jsonl``, e.g. a
``--slice`` or ``--max-minutes`` part of ``--full``) and fits, over its complete shape groups,

    group seconds = a + p * new programs + b * closed-form work + c * gradient-descent work
                                                                          (a, p, b, c >= 0)

by non-negative least squares, where for a group of runs with padded shape (n, d, k) (the group's
own, or its shape bucket's: ``ShapeGroup.padded``):

* new programs = the compiled programs of the group (``sims.engine.program_keys``) that no group
  stored before it (in ``runs.jsonl`` order) had: the programs it compiled, assuming the slice ran
  in one process with an empty compilation cache (``p`` = seconds per program). The bucketed
  expansion steps (``"expand"`` keys: a repeat and a reshape, 0.33 s to compile on 2 CPU cores
  against 4-8 s for a builder, runner or Monte Carlo program, ``scripts/profile_compile.py``) and
  the gathers of the Monte Carlo runs' problems (``"take"``, 0.10 s) are not counted;
  ``programs_by_kind`` lists every kind;

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
model with the target's seeds and step budgets, plus a compile term, ``p`` times the number of
distinct programs of the whole target (one process, empty cache; ``--s-per-program`` replaces the
fitted ``p``, e.g. by a figure measured on the device): ``expected`` with each mode's steps executed at the
fraction of its budget measured in the slice (largest over the slice's groups of that mode), and
``upper`` with every mode running its whole budget. What the sweep's last call does after its
groups (``post_s``: check the store, then load it, judge and summarise while the figures' process
loads it again and draws) scales with the number of records: seconds per record (and the figures'
fixed seconds) are measured on the slice's records in this process and multiplied out
(``post_total``; ``post_serial_s`` on one core).
The rate measured on small groups is assumed for large ones (an accelerator usually runs large
batches at a higher rate, so the projection leans high there).
``bucket_choices`` applies the fitted model to the target under other ``shape_buckets`` (none, one
bucket per (d, family), several sample-size buckets): programs against padded work.

``--coef a,p,b,c`` skips the fit and evaluates the bucket choices of ``--preset`` with the given
coefficients (no slice needed): the cost model behind the full preset's buckets.

``--probe FILE`` projects instead from one group per d measured by ``scripts/profile_group.py
--bucketed`` (:func:`probe_projection`): a d the slice cannot reach in one device call (every
d = 1024 group costs a bucket's compilation and n = 2d work) is then measured, not extrapolated.

Usage: python scripts/device_sims_project.py --results DIR [--preset full] [--s-per-program S]
       python scripts/device_sims_project.py --probe FILE [--preset full] [--dims D,..] [--post-s S]
       python scripts/device_sims_project.py --coef A,P,B,C [--preset full]
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from scipy.optimize import nnls

from sims.claims import evaluate
from sims.config import PRESETS, SweepConfig, preset, with_overrides
from sims.engine import DEFAULT_MEMORY_BYTES, default_devices, device_memory_budget, program_keys
from sims.grid import ShapeGroup, in_gd_tier, run_methods, shape_groups
from sims.infra import RunStore
from sims.summary import summarize, to_csv
from twolayer import TUNE_MODES, uses_closed_form

TERMS = ("overhead_s_per_group", "s_per_program", "s_per_closed_form_unit", "s_per_gd_unit")

#: Sample-size buckets (ratios n/d) compared by :func:`bucket_choices`; () = no padding.
BUCKET_CHOICES = ((), (2.0,), (0.25, 1.0, 2.0), (0.125, 0.5, 1.0, 2.0))


def span_modes(cfg: SweepConfig) -> list[tuple[str, str]]:
    """(activation, tune) pairs of the config that run the span iteration."""
    return [(a, t) for a in cfg.activations for t in TUNE_MODES
            if t in cfg.tunes and not uses_closed_form(t, a)]


def step_work(activation: str, n: int, d: int, k: int) -> float:
    """Work of one span-iteration GD step of a run of padded shape (n, d, k)."""
    m = min(n, d)
    return 6.0 * k * n * m if activation == "relu" else 6.0 * (n * m + k * n)


def features(g: ShapeGroup, steps_of, new_programs: int = 0) -> np.ndarray:
    """(1, new programs, closed-form work, GD work) of group ``g`` at its padded shape;
    ``steps_of(activation, tune)`` = steps run."""
    cfg, d = g.config, g.d
    k, n = g.padded
    runs = g.runs()
    cf = len(runs) * (d ** 3 + n * d * min(n, d))
    gd = 0.0
    for a, t in span_modes(cfg):
        gd_runs = sum(1 for r in runs if r.activation == a and in_gd_tier(cfg, r))
        gd += gd_runs * steps_of(a, t) * step_work(a, n, d, k)
    return np.array([1.0, float(new_programs), float(cf), float(gd)])


#: Program kinds (first item of a :func:`sims.engine.program_keys` key) whose compilation the
#: model leaves out: the bucketed expansion step (0.33 s on 2 CPU cores) and the gather of the
#: Monte Carlo runs' problems (0.10 s at d = 16 and d = 1024) compile in a few percent of a
#: runner's time (4-8 s).
CHEAP_KINDS = ("expand", "take")


def counted_programs(groups: list[ShapeGroup],
                     memory_bytes: float = DEFAULT_MEMORY_BYTES) -> list[set[tuple]]:
    """The program keys each group compiles when ``groups`` run in this order in one process with
    an empty cache (its :func:`sims.engine.program_keys` that no earlier group had), all kinds."""
    seen: set[tuple] = set()
    out = []
    for g in groups:
        keys = program_keys(g, memory_bytes=memory_bytes)
        out.append(keys - seen)
        seen |= keys
    return out


def new_programs(groups: list[ShapeGroup], memory_bytes: float = DEFAULT_MEMORY_BYTES) -> list[int]:
    """Programs each group compiles (:func:`counted_programs`), leaving out :data:`CHEAP_KINDS`."""
    return [sum(1 for key in keys if key[0] not in CHEAP_KINDS)
            for keys in counted_programs(groups, memory_bytes)]


def whole_sweep(target: SweepConfig, coef: np.ndarray, steps_of,
                memory_bytes: float = DEFAULT_MEMORY_BYTES) -> dict:
    """Seconds of the runs of ``target`` under the model ``coef`` (TERMS order): per d, the
    compile term (distinct programs x seconds per program) and the padded work."""
    groups = shape_groups(target)
    per_d: dict[int, float] = defaultdict(float)
    work = np.zeros(4)
    for g in groups:
        f = features(g, steps_of)
        work += f
        per_d[g.d] += float(f @ coef)
    programs = sum(new_programs(groups, memory_bytes))
    compile_s = programs * float(coef[1])
    by_kind = Counter(key[0] for keys in counted_programs(groups, memory_bytes) for key in keys)
    return {"runs_s": sum(per_d.values()) + compile_s, "compile_s": compile_s,
            "programs": programs, "programs_by_kind": dict(sorted(by_kind.items())),
            "per_d_s": {str(d): s for d, s in per_d.items()},
            "closed_form_work": float(work[2]), "gd_work": float(work[3])}


def bucket_choices(target: SweepConfig, coef: np.ndarray, steps_of,
                   memory_bytes: float = DEFAULT_MEMORY_BYTES) -> list[dict]:
    """:func:`whole_sweep` of ``target`` (unmerged groups) under each of :data:`BUCKET_CHOICES`."""
    out = []
    for buckets in BUCKET_CHOICES:
        cfg = dataclasses.replace(target, merge_shapes=False, shape_buckets=buckets)
        res = whole_sweep(cfg, coef, steps_of, memory_bytes)
        out.append({"shape_buckets": list(buckets), **{k: res[k] for k in (
            "programs", "programs_by_kind", "compile_s", "closed_form_work", "gd_work",
            "runs_s")}})
    return out


def _config(results: Path) -> SweepConfig:
    path = results / "config.json"
    if not path.is_file():
        raise ValueError(f"{path} not found: expected the --out folder of python -m sims.sweep")
    return with_overrides(SweepConfig(), json.loads(path.read_text())["config"])


def _post_seconds(records: list[dict], cfg: SweepConfig, results: Path) -> dict:
    """What the sweep's last call does after its groups, measured in this process: per record,
    checking the store (``done_ids`` of a fresh store, the sweep's first read), loading it, judging
    and summarising; and drawing the figures (``paper_figures.theory.draw_theory``; its subprocess
    loads the store once more, counted by :func:`post_total`) as seconds per record, from timings
    on every other seed's records and on all (the same cells, so the same drawing), plus the fixed
    seconds of the slice's drawing (the whole sweep draws more points into the same figures).

    Judging, summarising and drawing run once untimed first: their first calls import scipy and
    matplotlib (about 0.5 s and 1 s once per process), which divided by a slice's few thousand
    records would be projected onto every one of the 1.2 M (41 against 8.6 µs per record for the
    judge on the quick preset's records)."""
    from paper_figures.theory import draw_theory  # the figures' package; only this script needs it

    evaluate(records, cfg)
    to_csv(summarize(records))

    def timed(fn) -> float:
        gc.collect()  # the collection the warm-up owes is not charged to the next step
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t

    check = timed(lambda: RunStore(results).done_ids())
    load = timed(lambda: RunStore(results).load())
    judge = timed(lambda: (evaluate(records, cfg), to_csv(summarize(records))))
    n = max(len(records), 1)
    out = {"check_s_per_record": check / n, "load_s_per_record": load / n,
           "judge_s_per_record": judge / n,
           "bytes_per_record": (results / "runs.jsonl").stat().st_size / n}
    half = [r for r in records if r["seed_index"] % 2 == 0]
    with tempfile.TemporaryDirectory() as tmp:
        draw_theory(results, tmp, records=half)
        seconds = [timed(lambda part=part: draw_theory(results, tmp, records=part))
                   for part in (half, records)]
    per = max(0.0, (seconds[1] - seconds[0]) / max(len(records) - len(half), 1))
    out.update(figures_s_per_record=per, figures_fixed_s=max(0.0, seconds[1] - per * n))
    return out


def post_total(post: dict, n_records: int, overlap: bool = True) -> float:
    """Seconds of a complete sweep's last call after its groups, from :func:`_post_seconds`'
    measurements: check the store, then load, judge and summarise ``n_records`` records while the
    figures' process loads the store again and draws (``sims.sweep`` starts it before it judges):
    ``n_records`` x (check + max(load + judge, load + figures) per record) + the figures' fixed
    seconds. ``overlap=False``: the two one after the other (one core), check + 2 loads + judge +
    figures per record.

    >>> post = {"check_s_per_record": 1.0, "load_s_per_record": 2.0, "judge_s_per_record": 3.0,
    ...         "figures_s_per_record": 4.0, "figures_fixed_s": 5.0}
    >>> post_total(post, 10), post_total(post, 10, overlap=False)
    (75.0, 125.0)
    """
    load, judge, figures = (post[f"{k}_s_per_record"] for k in ("load", "judge", "figures"))
    after_check = max(load + judge, load + figures) if overlap else 2 * load + judge + figures
    return n_records * (post["check_s_per_record"] + after_check) + post["figures_fixed_s"]


def project(results: Path, target: SweepConfig | None = None, s_per_program: float | None = None,
            memory_bytes: float = DEFAULT_MEMORY_BYTES) -> dict:
    """The projection (module docstring) of ``target`` (default: the slice's preset) from the
    slice in ``results``, as a JSON-ready dict; ValueError if it cannot be made."""
    cfg = _config(results)
    if target is None:
        target = preset(cfg.preset) if cfg.preset in PRESETS else cfg
    records = RunStore(results).load()
    by_id = {r["id"]: r for r in records}
    order = {i: r["id"] for i, r in enumerate(records)}
    first_at = {}
    for i in sorted(order):
        r = by_id[order[i]]
        first_at.setdefault((r["d"], r["family"], r["k"], r["n"]), i)
    stored = [g for g in shape_groups(cfg)
              if any((g.d, g.family, k, n) in first_at for k in g.ks for n in g.ns)]
    stored.sort(key=lambda g: min(first_at.get((g.d, g.family, k, n), len(records))
                                  for k in g.ks for n in g.ns))
    compiled = dict(zip((g.key for g in stored), new_programs(stored, memory_bytes)))
    rows = []
    frac: dict[tuple, float] = defaultdict(float)
    for g in stored:  # in the order they were stored
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
        rows.append((g, features(g, lambda a, t, s=steps: s[(a, t)], compiled[g.key]),
                     sum(walls.values())))
    free = [i for i in range(len(TERMS)) if not (i == 1 and s_per_program is not None)]
    need = len(free) + 1
    if len(rows) < need:
        raise ValueError(f"{len(rows)} complete shape groups in {results}: the fit of {len(free)} "
                         f"terms needs at least {need}; measure more groups (--slice, --max-minutes)"
                         + ("" if s_per_program else " or pass --s-per-program"))
    X = np.stack([f for _, f, _ in rows])
    secs = np.array([s for _, _, s in rows])
    fixed = 0.0 if s_per_program is None else s_per_program
    scale = np.where(X.max(axis=0) > 0, X.max(axis=0), 1.0)
    coef = np.zeros(len(TERMS))
    coef[1] = fixed
    sol, _ = nnls(X[:, free] / scale[free], secs - fixed * X[:, 1])
    coef[free] = sol / scale[free]
    fitted = X @ coef
    fit = dict(zip(TERMS, map(float, coef)))
    post = _post_seconds([by_id[i] for g, _, _ in rows for i in g.record_ids()], cfg, results)
    n_records = sum(len(run_methods(target, r)) for g in shape_groups(target) for r in g.runs())
    post_s = post_total(post, n_records)
    post_serial_s = post_total(post, n_records, overlap=False)  # on one core

    def whole(steps_of) -> dict:
        res = whole_sweep(target, coef, steps_of, memory_bytes)
        return {**res, "records": n_records, "post_s": post_s, "post_serial_s": post_serial_s,
                "total_s": res["runs_s"] + post_s}

    budget = {(a, t): target.gd_step_budget for a, t in span_modes(target)}
    expected_steps = lambda a, t: frac.get((a, t), 1.0) * budget[(a, t)]  # noqa: E731
    expected = whole(expected_steps)
    upper = whole(lambda a, t: budget[(a, t)])
    differ = {k: [v, target.to_dict()[k]] for k, v in cfg.to_dict().items()
              if k != "preset" and v != target.to_dict()[k]}
    measured_d = {g.d for g, _, _ in rows}
    warnings = [f"{name} fitted as 0: the measured groups do not resolve it, the projection "
                "leaves that work out" for name, c in fit.items()
                if name != TERMS[0] and c == 0 and not (name == "s_per_program" and s_per_program)]
    if s_per_program is None and np.ptp(X[:, 1]) == 0:
        warnings.append("every measured group compiled as many programs: s_per_program and the "
                        "per-group overhead are not separable; pass --s-per-program")
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
        "model": "group seconds = a + p * new programs + b * closed-form work + c * GD work "
                 "(non-negative least squares); whole sweep: sum of a + b cf + c gd over its groups "
                 "+ p * its distinct programs (expansion steps not counted)",
        "fit": fit, "s_per_program_given": s_per_program,
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
        "bucket_choices": bucket_choices(target, coef, expected_steps, memory_bytes),
    }


def probe_projection(rows: list[dict], target: SweepConfig, post_s: float | None = None) -> dict:
    """The runs of ``target`` projected from ``scripts/profile_group.py --bucketed`` lines (one
    process per d, its first line the group that compiled the bucket): a projection.

    With shape buckets every group of a (d, family) has the same padded shape, so a group's warm
    seconds at the target's seeds (``projected_full_group_warm_s``) stand for each group of its d
    (the mean over the probed groups of that d); each (d, family) bucket compiles once, in the
    first probed group's cold call (cold minus warm wall seconds; a family not probed takes its
    d's figure). ``post_s`` (e.g. :func:`post_total` of a slice) is added when given. ValueError
    when a d of the target was not probed or was probed at another padded shape.

    >>> rows = [{"d": 8, "family": "gaussian", "padded": [2, 16], "projected_full_group_warm_s": 1.0,
    ...          "cold": {"wall_s": 3.0}, "warm_best": {"wall_s": 0.5}}]
    >>> cfg = SweepConfig(dims=(8,), widths=(2,), families=("gaussian", "sparse"),
    ...                   merge_shapes=False, shape_buckets=(2.0,))
    >>> out = probe_projection(rows, cfg)
    >>> out["groups"], out["compile_s"], out["runs_s"]
    (8, 5.0, 13.0)
    """
    groups = shape_groups(target)
    padded = {(g.d, g.family): list(g.padded) for g in groups}
    warm: dict[int, list[float]] = defaultdict(list)
    compile_s: dict[tuple, float] = {}
    for row in rows:
        key = (row["d"], row["family"])
        if key not in padded or row["padded"] != padded[key]:
            raise ValueError(f"probe of d = {row['d']} {row['family']} padded to {row['padded']}: "
                             f"the target pads it to {padded.get(key)} (run profile_group.py "
                             "--bucketed)")
        if row.get("warm_best") is None:
            raise ValueError(f"probe of d = {row['d']} has no warm call: run profile_group.py "
                             "with --repeat 1 or more")
        warm[row["d"]].append(row["projected_full_group_warm_s"])
        compile_s.setdefault(key, max(0.0, row["cold"]["wall_s"] - row["warm_best"]["wall_s"]))
    missing = sorted({g.d for g in groups} - set(warm))
    if missing:
        raise ValueError(f"no probe of d = {missing}: run profile_group.py --bucketed --d D")
    by_d_compile = defaultdict(list)
    for (d, _), c in compile_s.items():
        by_d_compile[d].append(c)
    per_d = {d: sum(1 for g in groups if g.d == d) * float(np.mean(w)) for d, w in warm.items()}
    comp = sum(compile_s.get(key, float(np.mean(by_d_compile[key[0]]))) for key in padded)
    runs_s = sum(per_d.values()) + comp
    return {"projection": True,
            "note": "a projection from one-group probes per d, not a measurement of the sweep",
            "target": target.preset, "dims": list(target.dims), "groups": len(groups),
            "per_d_s": {str(d): s for d, s in sorted(per_d.items())},
            "compile_s": comp, "runs_s": runs_s, "post_s": post_s,
            "total_s": runs_s + (post_s or 0.0)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--results", type=Path, default=None, help="sweep folder of the measured slice")
    p.add_argument("--preset", default=None,
                   help="preset whose whole grid is projected (default: the slice's preset)")
    p.add_argument("--s-per-program", type=float, default=None,
                   help="seconds per compiled program in the projection (default: fitted)")
    p.add_argument("--memory-gb", type=float, default=None,
                   help="working memory per compiled call, which sets the batch sizes, hence the "
                        "programs (default: the engine's budget on this machine's devices)")
    p.add_argument("--probe", type=Path, default=None, metavar="FILE",
                   help="no slice: project --preset from profile_group.py --bucketed JSON lines")
    p.add_argument("--dims", default=None, metavar="D,D,...",
                   help="(with --probe) project only these d of --preset ('probed': those "
                        "the probe has)")
    p.add_argument("--post-s", type=float, default=None,
                   help="(with --probe) seconds of the last call after its groups, added")
    p.add_argument("--coef", default=None, metavar="A,P,B,C",
                   help="no fit: evaluate the bucket choices of --preset with these coefficients")
    args = p.parse_args(argv)
    try:
        mem = (device_memory_budget(default_devices()) if args.memory_gb is None
               else args.memory_gb * 1e9)
        if args.probe is not None:
            rows = [json.loads(line) for line in args.probe.read_text().splitlines()
                    if line.startswith("{")]
            target = preset(args.preset or "full")
            if args.dims:
                dims = (sorted({r["d"] for r in rows}) if args.dims == "probed"
                        else [int(d) for d in args.dims.split(",")])
                target = dataclasses.replace(target, dims=tuple(dims))
            print(json.dumps(probe_projection(rows, target, args.post_s)))
            return 0
        if args.coef is not None:
            coef = np.array([float(c) for c in args.coef.split(",")])
            if coef.shape != (len(TERMS),):
                raise ValueError(f"--coef {args.coef!r}: expected {len(TERMS)} numbers "
                                 f"({', '.join(TERMS)})")
            target = preset(args.preset or "full")
            print(json.dumps({"projection": True, "target": target.preset,
                              "coef": dict(zip(TERMS, coef.tolist())),
                              "bucket_choices": bucket_choices(
                                  target, coef, lambda a, t: target.gd_step_budget, mem)}))
            return 0
        if args.results is None:
            raise ValueError("expected --results DIR (a measured slice) or --coef A,P,B,C")
        print(json.dumps(project(args.results, None if args.preset is None else preset(args.preset),
                                 args.s_per_program, mem)))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
