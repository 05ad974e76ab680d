"""Accuracy against target-set size (the paper's Figure 3).

:func:`run_size_curve` runs the benchmark grid once per number of labelled target examples per
class (``--train-n-grid 1 2 5 10 20 50``), all into one folder (finished runs are skipped on a
rerun); everything else is the task's protocol. :func:`size_rows` and :func:`size_verdicts`
summarize the stored records; ``python -m paper_figures realdata --figure size`` draws them.

Definitions, per ``(task, shift)``:

* ``n_per_class``: ``n_train // num_classes`` of a record.
* followed block (``best_block``): one block per shift, so the curve follows one option. Per
  seed, each single block's accuracy is averaged over the sizes it ran at; the block with the
  highest mean of these is followed. It is the paired winner (``winner``,
  :func:`realdata.summary.winner`) when its per-seed difference to every other single block is
  beyond the criterion (below); otherwise it is only the highest mean (``choice`` says which, ``top_set``
  lists the blocks it is not separated from) and the gaps and verdict below describe that block,
  not "the best block". Chosen on test accuracy, which favours it slightly at every size alike.
* gap at a size: mean over seeds of ``acc(best block) - acc(all)`` (paired by seed), with its s.e.
* verdict (the claim that surgical fine-tuning's advantage shrinks as data grow): per seed,
  ``gap(smallest size) - gap(largest size)``; ``holds`` when its mean is positive beyond the
  criterion, ``fails`` when it is negative beyond it, ``inconclusive`` otherwise (and with fewer
  than two seeds).
* criterion (:func:`sims.infra.stats.beyond`): a mean paired difference over ``n`` seeds must
  exceed the two-sided Student-t critical value with ``n - 1`` degrees of freedom (confidence
  :data:`sims.infra.stats.CONFIDENCE`) times its standard error; ``z=`` asks for a fixed number
  of standard errors instead. Which records count: per ``(task, variant)`` those sharing the latest record's
  settings apart from ``train_n``.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from realdata.summary import paired_diff, summary_csv, winner
from sims.infra.stats import CONFIDENCE, beyond, criterion, mean_se, threshold

__all__ = ["SIZE_COLUMNS", "run_size_curve", "size_csv", "size_rows", "size_verdicts"]

SIZE_COLUMNS = ("task", "shift", "level", "n_per_class", "tuned", "n_seeds", "mean_acc", "se",
                "rel_vs_all", "rel_se")


def run_size_curve(cfg: Any, per_class: Sequence[int], out: str | Path, *,
                   progress: bool = True) -> dict[str, Any]:
    """Run ``cfg`` (a :class:`realdata.benchmark.BenchmarkConfig`) once per size in
    ``per_class`` into ``out``; write ``size_summary.csv`` and ``size_verdicts.json``.

    Raises:
        ValueError: an empty grid or a size below 1.
    """
    from realdata.benchmark import run_benchmark
    from realdata.records import load_records
    from realdata.tasks import get_task
    from sims.infra import write_json_atomic, write_text_atomic

    if not per_class or min(per_class) < 1:
        raise ValueError(f"--train-n-grid needs sizes >= 1 (examples per class); got {per_class}")
    out = Path(out)
    reports = []
    for name in cfg.tasks:
        k = get_task(name).num_classes
        for n in per_class:
            sub = dataclasses.replace(cfg, tasks=(name,), protocol_overrides={
                **cfg.protocol_overrides, "train_n": int(n) * k})
            # the sizes share OUT and differ in train_n, which is part of the settings: each size
            # accepts the other sizes' records (the summaries below group by size)
            reports.append(run_benchmark(sub, out, progress=progress, force_new_settings=True))
    records = [r for r in load_records(out)[0] if r["task"] in cfg.tasks]
    rows = size_rows(records)
    write_text_atomic(out / "size_summary.csv", size_csv(rows))
    verdicts = size_verdicts(records)
    write_json_atomic(out / "size_verdicts.json", verdicts)
    return {"units": sum(r["units"] for r in reports), "run": sum(r["run"] for r in reports),
            "skipped": sum(r["skipped"] for r in reports),
            "failed": sum(r["failed"] for r in reports),
            "wall_s": sum(r["wall_s"] for r in reports), "verdicts": verdicts, "rows": rows}


def _n_per_class(rec: Mapping[str, Any]) -> int:
    return int(rec["n_train"]) // int(rec.get("num_classes_data") or rec["head_size"])


def _settings(rec: Mapping[str, Any]) -> str:
    proto = dict(rec.get("protocol") or {})
    proto.pop("train_n", None)
    return repr((sorted(proto.items()), rec.get("bn"), rec.get("checkpoint_sha256"),
                 rec.get("objective"), rec.get("extra_id"), rec.get("package_version")))


Series = dict[tuple[str, str], dict[int, dict[str, dict[int, float]]]]


def _group(records: Iterable[Mapping[str, Any]]
           ) -> tuple[Series, dict[tuple[str, str], str], dict[tuple[str, str], list[str]]]:
    """``(task, shift) -> n_per_class -> option -> seed -> test metric`` for ``ok`` fixed runs."""
    records = [r for r in records if r.get("method", "fixed") == "fixed"]
    latest = {(r["task"], r["variant"] or ""): _settings(r) for r in records}
    series: Series = defaultdict(lambda: defaultdict(lambda: defaultdict(dict)))
    levels, blocks = {}, {}
    for r in records:
        key = (r["task"], r["variant"] or "")
        if _settings(r) != latest[key] or r["status"] != "ok":
            continue
        series[key][_n_per_class(r)][r["tuned"]][int(r["seed"])] = float(r["test_metric"])
        levels[key], blocks[key] = r["level"], list(r["blocks"])
    return series, levels, blocks


#: ``choice`` of an entry, by (a paired winner?, another block to compare with?).
_CHOICE = {(True, True): "paired winner", (False, True): "highest mean, not a significant winner",
           (False, False): "the only single block"}


def _pooled(by_n: Mapping[int, Mapping[str, Mapping[int, float]]], blocks: Sequence[str]
            ) -> dict[str, dict[int, float]]:
    """Block -> seed -> accuracy averaged over the sizes where that block ran that seed."""
    acc: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for by in by_n.values():
        for b in blocks:
            for seed, v in by.get(b, {}).items():
                acc[b][seed].append(v)
    return {b: {seed: math.fsum(v) / len(v) for seed, v in d.items()} for b, d in acc.items()}


def size_rows(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per ``(task, shift, n_per_class, option)`` (columns :data:`SIZE_COLUMNS`), options
    in block order then ``all`` and ``none``."""
    series, levels, blocks = _group(records)
    rows = []
    for key in sorted(series):
        for n in sorted(series[key]):
            by = series[key][n]
            base = by.get("all", {})
            for lab in [b for b in blocks[key] if b in by] + [x for x in ("all", "none") if x in by]:
                m, se = mean_se(list(by[lab].values()))
                rm, rse, _ = (0.0, 0.0, 0) if lab == "all" else paired_diff(by[lab], base)
                rows.append({"task": key[0], "shift": key[1], "level": levels[key],
                             "n_per_class": n, "tuned": lab, "n_seeds": len(by[lab]),
                             "mean_acc": m, "se": se,
                             "rel_vs_all": rm if base else math.nan,
                             "rel_se": rse if base else math.nan})
    return rows


def size_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """CSV text of :func:`size_rows` rows (floats with 4 decimals)."""
    return summary_csv(rows, SIZE_COLUMNS)


def size_verdicts(records: Iterable[Mapping[str, Any]], *, z: float | None = None,
                  confidence: float = CONFIDENCE) -> list[dict[str, Any]]:
    """Per ``(task, shift)``: the followed block, its gap to ``all`` at each size, and whether the
    gap shrinks from the smallest to the largest size (see the module doc).

    Each entry: ``task, shift, level, best_block`` (the followed block), ``winner`` (it, when it is
    the paired winner, else ``None``), ``top_set``, ``winner_label`` (``"block1"`` or ``"tie:
    block1, block2"``), ``choice`` (``"paired winner"``, ``"highest mean, not a significant
    winner"`` or ``"the only single block"``), ``gaps`` (size -> paired ``diff, se, n``),
    ``sizes``, ``verdict``, ``shrink``, ``shrink_se``, ``shrink_n`` (paired seeds),
    ``threshold`` (standard errors the shrink had to exceed), ``criterion`` (in words),
    ``reason``.
    """
    series, levels, blocks = _group(records)
    out = []
    for key in sorted(series):
        by_n = series[key]
        win = winner(_pooled(by_n, blocks[key]), blocks[key], z=z, confidence=confidence)
        best = win["best_block"]
        sizes = sorted(n for n in by_n if best in by_n[n] and "all" in by_n[n])
        gaps = {}
        per_seed: dict[int, dict[int, float]] = {}
        for n in sizes:
            d, se, k = paired_diff(by_n[n][best], by_n[n]["all"])
            gaps[n] = {"diff": d, "se": se, "n": k}
            per_seed[n] = {s: by_n[n][best][s] - by_n[n]["all"][s]
                           for s in by_n[n][best] if s in by_n[n]["all"]}
        entry: dict[str, Any] = {
            "task": key[0], "shift": key[1], "level": levels[key], "best_block": best,
            "winner": win["winner"], "top_set": win["top_set"], "winner_label": win["label"],
            "choice": _CHOICE[bool(win["winner"]), len(win["comparisons"]) > 0],
            "gaps": gaps, "sizes": sizes, "criterion": criterion(z=z, confidence=confidence)}
        if len(sizes) < 2:
            out.append({**entry, "verdict": "not judged", "shrink": math.nan,
                        "shrink_se": math.nan, "shrink_n": 0, "threshold": math.nan,
                        "reason": "needs the best block and all at two sizes or more"})
            continue
        d, se, k = paired_diff(per_seed[sizes[0]], per_seed[sizes[-1]])
        if beyond(d, se, k, z=z, confidence=confidence):
            verdict = "holds"
        elif beyond(-d, se, k, z=z, confidence=confidence):
            verdict = "fails"
        else:
            verdict = "inconclusive"
        thr = threshold(k, z=z, confidence=confidence)
        out.append({**entry, "verdict": verdict, "shrink": d, "shrink_se": se, "shrink_n": k,
                    "threshold": thr,
                    "reason": f"gap({sizes[0]}/class) - gap({sizes[-1]}/class) = "
                              f"{100 * d:+.1f} ± {100 * se:.1f} pts over {k} seeds "
                              f"(criterion {thr:.3g} s.e.)"})
    return out
