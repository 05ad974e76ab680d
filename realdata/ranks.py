"""Average rank of the single-run methods across the tasks of a results folder (the paper's table).

``python -m realdata.ranks OUT`` reads ``OUT/runs.jsonl`` (never recomputes), summarizes it with
:func:`realdata.summary.summarize`, and for every ``(task, shift)`` ranks the single-run methods
present by mean test metric over seeds (1 = best; tied methods share the mean of their ranks). A
"task" is one ``(task, shift)`` pair, so each synthetic shift and each corruption counts once. The
average rank of a method is the mean of its ranks over the tasks where it ran; the table also gives
its paired difference to full fine-tuning (``all``) with the standard error over seeds, averaged
over tasks. Writes ``OUT/ranks.csv`` and prints the table.

Single-run methods (:data:`SINGLE_RUN`): ``all`` (full fine-tuning), ``auto-rgn``, ``auto-snr``,
``l1``, ``gradual-down``, ``gradual-up``. Cross-Val needs one run per block, so it is left out (as
in the paper's ranking).
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import sys
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["SINGLE_RUN", "main", "rank_rows", "ranks_csv", "task_ranks"]

SINGLE_RUN = ("all", "auto-rgn", "auto-snr", "l1", "gradual-down", "gradual-up")


def task_ranks(rows: Sequence[Mapping[str, Any]], methods: Sequence[str] = SINGLE_RUN
               ) -> dict[tuple[str, str], dict[str, float]]:
    """Per ``(task, shift)``: method -> rank among the ``methods`` present (1 = best mean
    metric; ties get the mean of the ranks they span). Tasks with fewer than two methods, and
    methods whose mean is NaN (every seed failed), are skipped."""
    by: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    for r in rows:
        if r["tuned"] in methods and not math.isnan(r["mean_acc"]):
            by[(r["task"], r["shift"])][r["tuned"]] = float(r["mean_acc"])
    out = {}
    for key, accs in sorted(by.items()):
        if len(accs) < 2:
            continue
        ranks = {}
        for m, a in accs.items():
            better = sum(1 for b in accs.values() if b > a)
            ties = sum(1 for b in accs.values() if b == a)
            ranks[m] = better + (ties + 1) / 2
        out[key] = ranks
    return out


def rank_rows(rows: Sequence[Mapping[str, Any]], methods: Sequence[str] = SINGLE_RUN
              ) -> list[dict[str, Any]]:
    """One row per method: ``method, n_tasks, avg_rank, mean_acc, rel_vs_all, rel_se`` (means
    over the ranked tasks; ``rel_se`` combines the per-task standard errors as
    ``sqrt(sum se^2) / n``), sorted by average rank."""
    ranks = task_ranks(rows, methods)
    info = {(r["task"], r["shift"], r["tuned"]): r for r in rows}
    out = []
    for m in methods:
        keys = [k for k, rk in ranks.items() if m in rk]
        if not keys:
            continue
        n = len(keys)
        sub = [info[(k[0], k[1], m)] for k in keys]
        rel = [s["rel_vs_all"] for s in sub]
        se = [s["rel_se"] for s in sub]
        out.append({"method": m, "n_tasks": n,
                    "avg_rank": sum(ranks[k][m] for k in keys) / n,
                    "mean_acc": sum(s["mean_acc"] for s in sub) / n,
                    "rel_vs_all": sum(rel) / n,
                    "rel_se": math.sqrt(sum(x * x for x in se)) / n})
    return sorted(out, key=lambda r: (r["avg_rank"], r["method"]))


def ranks_csv(table: Sequence[Mapping[str, Any]],
              per_task: Mapping[tuple[str, str], Mapping[str, float]]) -> str:
    """CSV text: the average-rank rows, then one ``rank@task/shift`` column per task."""
    keys = list(per_task)
    cols = ["method", "n_tasks", "avg_rank", "mean_acc", "rel_vs_all", "rel_se",
            *(f"rank@{t}/{s or '-'}" for t, s in keys)]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in table:
        w.writerow([r["method"], r["n_tasks"], *(f"{r[c]:.4f}" for c in cols[2:6]),
                    *(f"{per_task[k].get(r['method'], math.nan):g}" for k in keys)])
    return buf.getvalue()


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``OUT [--methods ...]``; exit 2 with a one-line reason on bad input."""
    p = argparse.ArgumentParser(prog="python -m realdata.ranks",
                                description="Average rank of the single-run methods across the "
                                            "tasks of a realdata results folder.")
    p.add_argument("results", help="output folder of python -m realdata.benchmark")
    p.add_argument("--methods", nargs="+", default=list(SINGLE_RUN),
                   help=f"row labels to rank (default: {' '.join(SINGLE_RUN)})")
    a = p.parse_args(argv)
    from realdata.records import load_records
    from realdata.summary import summarize
    from sims.infra import write_text_atomic

    out = Path(a.results)
    if not (out / "runs.jsonl").is_file():
        print(f"error: no runs.jsonl in {out}; run python -m realdata.benchmark with --methods "
              "first", file=sys.stderr)
        return 2
    rows = summarize(load_records(out)[0])
    per_task = task_ranks(rows, a.methods)
    table = rank_rows(rows, a.methods)
    if not table:
        print(f"error: no task in {out} has two or more of the methods {a.methods}",
              file=sys.stderr)
        return 2
    write_text_atomic(out / "ranks.csv", ranks_csv(table, per_task))
    print(f"average rank over {len(per_task)} task(s) (1 = best); rel = method - all, paired by "
          "seed, +- s.e.")
    print(f"{'method':<14}{'tasks':>6}{'avg rank':>10}{'mean acc':>10}{'rel vs all':>18}")
    for r in table:
        print(f"{r['method']:<14}{r['n_tasks']:>6}{r['avg_rank']:>10.2f}{r['mean_acc']:>10.3f}"
              f"{r['rel_vs_all']:>+11.3f} +- {r['rel_se']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
