"""Tidy summary of a sweep's records: mean and standard error of the target loss per cell and method."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable

from sims.infra.stats import mean_se
from sims.records import CELL_KEYS

__all__ = ["COLUMNS", "summarize", "to_csv"]

COLUMNS = (*CELL_KEYS, "n_over_d", "k_over_d", "method", "runs", "mean_target_loss",
           "se_target_loss", "mean_rel_target_loss", "se_rel_target_loss", "converged",
           "unconverged")




def summarize(records: Iterable[dict]) -> list[dict]:
    """One row per (cell, method); relative loss = target loss / initial target loss."""
    cells: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        cells[(*(r[k] for k in CELL_KEYS), r["method"])].append(r)
    rows = []
    for key, recs in sorted(cells.items(), key=lambda kv: str(kv[0])):
        cell = dict(zip(CELL_KEYS, key[:-1]))
        m, se = mean_se([r["target_loss"] for r in recs])
        rel = [r["target_loss"] / r["initial_target_loss"] if r["initial_target_loss"] > 0
               else 0.0 for r in recs]
        mr, ser = mean_se(rel)
        conv = sum(1 for r in recs if r.get("converged") is True)
        unconv = sum(1 for r in recs if r.get("converged") is False)
        rows.append({**cell, "n_over_d": cell["n"] / cell["d"], "k_over_d": cell["k"] / cell["d"],
                     "method": key[-1], "runs": len(recs), "mean_target_loss": m,
                     "se_target_loss": se, "mean_rel_target_loss": mr, "se_rel_target_loss": ser,
                     "converged": conv, "unconverged": unconv})
    return rows


def to_csv(rows: list[dict]) -> str:
    """CSV text with :data:`COLUMNS`."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r[k] is None else r[k]) for k in COLUMNS})
    return buf.getvalue()
