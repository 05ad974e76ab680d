"""Summaries of benchmark records: per-block means, relative accuracy vs ``all``, Cross-Val.

Pure functions of the stored records (``OUT/runs.jsonl``); used by the benchmark and by
``python -m paper_figures realdata`` (which never recomputes runs).

Definitions (over the seeds of one ``(task, variant)``):

* accuracy of a tuned option: mean test metric; standard error ``sd / sqrt(n)`` (``ddof=1``).
* relative accuracy of a block: mean over seeds of ``metric(block) - metric(all)`` (paired by
  seed), with its standard error -- the paper's Figure 2.
* Cross-Val: per seed, the single block (``block1 .. head``) with the best validation metric; its
  test metric.
* best block: the single block with the highest mean test metric.

A folder may hold records of several runs of the benchmark; for each ``(task, variant)`` only the
records sharing the *latest* record's settings (protocol, BN mode, checkpoint) are summarized, so
a rerun with other settings (or another ``--objective``) into the same folder never mixes into
the means.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sims.infra.stats import mean_se

__all__ = ["SUMMARY_COLUMNS", "label_of", "summarize", "summary_csv", "verdicts"]

SUMMARY_COLUMNS = ("task", "shift", "level", "tuned", "n_seeds", "mean_acc", "se",
                   "rel_vs_all", "rel_se", "failed")


def label_of(rec: Mapping[str, Any]) -> str:
    """Row label of a record: the tuned spec, ``auto-rgn`` / ``auto-snr``, or the baseline's
    method name (``l1``, ``gradual-down``, ``gradual-up``)."""
    if rec["method"] in ("rgn", "snr"):
        return f"auto-{rec['method']}"
    return rec["tuned"] if rec["method"] == "fixed" else rec["method"]




def _settings(rec: Mapping[str, Any]) -> str:
    return repr((rec.get("protocol"), rec.get("bn"), rec.get("checkpoint"),
                 rec.get("objective", "supervised"), rec.get("online")))


def summarize(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per ``(task, variant, option)`` (columns :data:`SUMMARY_COLUMNS`), in a stable
    order: tasks and variants sorted, options in depth order then ``all``, ``none``, automatic
    methods, ``cross-val``."""
    groups: dict[tuple[str, str], dict[str, dict[int, Mapping[str, Any]]]] = defaultdict(
        lambda: defaultdict(dict))
    levels: dict[tuple[str, str], str] = {}
    order: dict[tuple[str, str], list[str]] = {}
    records = list(records)
    latest = {(r["task"], r["variant"] or ""): _settings(r) for r in records}
    for r in records:
        if _settings(r) != latest[(r["task"], r["variant"] or "")]:
            continue
        key = (r["task"], r["variant"] or "")
        groups[key][label_of(r)][int(r["seed"])] = r
        levels[key] = r["level"]
        order[key] = list(r["blocks"])
    rows = []
    for key in sorted(groups):
        by = groups[key]
        blocks = order[key]
        ok = {lab: {s: r["test_metric"] for s, r in d.items() if r["status"] == "ok"}
              for lab, d in by.items()}
        labels = [b for b in blocks if b in by] + [x for x in ("all", "none") if x in by]
        labels += sorted(x for x in by if x.startswith("auto-"))
        labels += [x for x in by if x not in labels]
        # Cross-Val: per seed, the single block with the best validation metric
        cv: dict[int, float] = {}
        seeds = set().union(*(by[b].keys() for b in blocks if b in by)) if blocks else set()
        for s in sorted(seeds):
            cands = [(by[b][s]["val_metric"], -i, by[b][s]["test_metric"])
                     for i, b in enumerate(blocks) if b in by and s in by[b]
                     and by[b][s]["status"] == "ok"]
            if cands:
                cv[s] = max(cands)[2]
        series = {lab: ok[lab] for lab in labels}
        if cv:
            series["cross-val"] = cv
            labels.append("cross-val")
        base = ok.get("all", {})
        for lab in labels:
            vals = series[lab]
            m, se = mean_se(list(vals.values()))
            diffs = [v - base[s] for s, v in vals.items() if s in base]
            rm, rse = mean_se(diffs) if lab != "all" else (0.0, 0.0)
            failed = len(by[lab]) - len(vals) if lab in by else 0
            rows.append({"task": key[0], "shift": key[1], "level": levels[key], "tuned": lab,
                         "n_seeds": len(vals), "mean_acc": m, "se": se,
                         "rel_vs_all": rm if base else math.nan,
                         "rel_se": rse if base else math.nan, "failed": failed})
    return rows


def summary_csv(rows: Sequence[Mapping[str, Any]],
                columns: Sequence[str] = SUMMARY_COLUMNS) -> str:
    """CSV text of :func:`summarize` rows (or rows with other ``columns``; floats with 4
    decimals)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


_EXPECTED = {"input": "first", "feature": "middle", "output": "last"}


def verdicts(rows: Sequence[Mapping[str, Any]], blocks_of: Mapping[tuple[str, str], Sequence[str]]
             ) -> list[dict[str, Any]]:
    """Per ``(task, shift)``: the best single block, its accuracy, ``all``'s, and whether the
    paper's ordering holds (input: first block best; output: head best; feature: a middle block
    best). ``holds`` is ``None`` for the ``natural`` level (no prediction)."""
    out = []
    keys = sorted({(r["task"], r["shift"]) for r in rows})
    for key in keys:
        blocks = list(blocks_of[key])
        sub = {r["tuned"]: r for r in rows if (r["task"], r["shift"]) == key}
        cand = [(sub[b]["mean_acc"], -i, b) for i, b in enumerate(blocks) if b in sub
                and not math.isnan(sub[b]["mean_acc"])]
        if not cand:
            continue
        acc, _, best = max(cand)  # ties: the earliest block
        level = next(iter(sub.values()))["level"]
        exp = _EXPECTED.get(level)
        pos = blocks.index(best)
        holds = None if exp is None else (
            (exp == "first" and pos == 0) or (exp == "last" and pos == len(blocks) - 1)
            or (exp == "middle" and 0 < pos < len(blocks) - 1))
        all_acc = sub["all"]["mean_acc"] if "all" in sub else math.nan
        out.append({"task": key[0], "shift": key[1], "level": level, "best_block": best,
                    "best_acc": acc, "all_acc": all_acc,
                    "best_beats_all": bool(acc > all_acc) if not math.isnan(all_acc) else None,
                    "paper_ordering": exp, "holds": holds,
                    "accs": {b: sub[b]["mean_acc"] for b in blocks if b in sub}})
    return out
