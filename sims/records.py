"""The record of one (run, method) of a sweep: its schema, how the engine's arrays become records,
and how a sweep folder's records are read back.

A record is one JSON object per line of ``OUT/runs.jsonl`` (see :class:`SimsRecord` for the fields).
The engine writes them through :func:`to_records`; verdicts, the summary and ``paper_figures`` read
them through :func:`read_records` (or receive them from the sweep) and use the key tuples below.
``schema_version`` changes whenever a field changes meaning; records written before the field existed
have the layout of version 1.

>>> SCHEMA_VERSION
1
>>> CELL_KEYS[:4]
('d', 'k', 'n', 'activation')
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

from sims.infra import RunStore

__all__ = ["CELL_KEYS", "DIAGNOSTIC_KEYS", "RUN_KEYS", "SCHEMA_VERSION", "SimsRecord",
           "read_records", "to_records"]

SCHEMA_VERSION = 1

#: Fields that identify a run (a seeded problem with its data size and activation).
RUN_KEYS = ("d", "k", "n", "activation", "family", "shift", "shift_kind", "rank", "alpha", "t",
            "seed_index", "pool_n")
#: Fields of a cell (a run without its seed): summaries average over the seeds of a cell.
CELL_KEYS = ("d", "k", "n", "activation", "family", "shift", "shift_kind", "rank", "alpha", "t")
#: Per-run theory diagnostics (None where they do not apply to the run).
DIAGNOSTIC_KEYS = ("rank_z", "c2_floor", "c4_floor", "first_layer_bound", "e1_sampled",
                   "n_unsampled")


class _Required(TypedDict):
    id: str
    schema_version: int
    seed: int
    steps: int  # step budget (GD methods: their solver's; gd_steps for span iteration when set)
    n_records: int
    lr: float | None  # the config's lr; for GD methods the step size actually used
    gtol: float
    p1: float
    nonneg_head: bool
    d: int
    k: int
    family: str
    shift: str  # "input" or "output"
    shift_kind: str  # "scale", "rotate" or "output"
    rank: int | None
    alpha: float | None
    t: float | None
    seed_index: int
    pool_n: int
    activation: str
    n: int
    package_version: str
    wall_s: float  # wall time of the shape group divided by its runs (seconds)
    initial_target_loss: float
    rank_z: int
    c2_floor: float | None
    c4_floor: float | None
    first_layer_bound: float | None
    e1_sampled: bool | None
    n_unsampled: int | None
    mc_runs: int
    mc_samples: int
    dtype: str  # float dtype of the computation (rounding floors of the tolerances)
    loss_scale: float  # E[y^2] + E[f_src^2], the size of the terms a loss is a difference of
    c1_pool_loss: float  # mean (f_{v_src, B_src A^-1}(x_i) - y_i)^2 on the run's samples
    pool_y2: float  # mean y_i^2 on the run's samples
    mc: dict[str, list[float]] | None  # Monte Carlo (mean, se) per point (sims.evidence), or None
    method: str  # one of sims.grid.RECORD_METHODS
    solver: str  # "exact", "closed_form_gd" or "gd"
    target_loss: float


class SimsRecord(_Required, total=False):
    """One (run, method) record; the fields below exist for the GD methods (first, last, full)."""

    trace: list[float]  # target loss at record_steps
    record_steps: list[int]
    train_loss: float
    converged: bool
    diverged: bool
    steps_taken: int
    grad_norm_rel: float  # final / initial gradient norm
    limit_target_loss: float | None  # target loss of the closed-form limit (first: linear only)
    limit_gap: float | None  # twolayer.diagnostics.limit_gap of B (first layer, linear only)
    start_train_loss: float  # training loss at the start
    cf_gap: float | None  # distance of the final parameters to the closed-form iterate (sims.evidence)
    cf_moved: float | None  # distance of that iterate to the start
    cf_norm: float | None  # norms of start and iterate (rounding floor)
    cf_target_loss: float | None  # exact target loss of that iterate


_REQUIRED = frozenset(_Required.__annotations__)


def _as_py(x: Any) -> Any:
    if isinstance(x, (list, bool, int, float)):  # already Python (the engine's rows)
        return x
    a = np.asarray(x)
    return a.tolist() if a.ndim else a.item()


def to_records(common: Mapping[str, Any], res: Mapping[str, Any], methods: tuple[str, ...],
               ids: Mapping[str, str], solvers: Mapping[str, str],
               record_steps: Mapping[str, list[int]],
               budgets: Mapping[str, int] | None = None) -> list[SimsRecord]:
    """The records of one run from the engine's per-run results.

    Args:
        common: run settings and run fields (the grid's) plus ``package_version`` and ``wall_s``.
        res: the engine's arrays of the run: ``L0``, ``oracle``, the diagnostics, the limits
            (``last_limit``, ``first_limit``, ``first_limit_gap``) and one dict per tune mode.
        methods: record methods of the run, in order.
        ids: record id per method.
        solvers: solver name per GD method.
        record_steps: steps at which the trace of each GD method is recorded.
        budgets: step budget per GD method (its record's ``steps``; default: ``common["steps"]``).
    """
    base = {**common, "initial_target_loss": float(res["L0"])}
    base.update({key: (_as_py(res[key]) if key in res else None) for key in DIAGNOSTIC_KEYS})
    out = []
    for method in methods:
        rec: dict[str, Any] = {"id": ids[method], "schema_version": SCHEMA_VERSION, **base,
                               "method": method}
        if method in ("none", "oracle"):
            rec.update(solver="exact", target_loss=float(res["L0" if method == "none" else "oracle"]))
        else:
            r = res[method]
            limit = {"last": "last_limit", "first": "first_limit"}.get(method)
            rec.update(
                solver=solvers[method],
                target_loss=float(r["target_loss"]),
                trace=_as_py(r["trace"]),
                record_steps=list(record_steps[method]),
                train_loss=float(r["train_loss"]),
                converged=bool(r["converged"]),
                diverged=bool(r["diverged"]),
                steps_taken=int(r["steps_taken"]),
                grad_norm_rel=float(r["grad_norm_rel"]),
                lr=float(r["lr"]),
                limit_target_loss=float(res[limit]) if limit in res else None,
                limit_gap=(float(res["first_limit_gap"]) if method == "first"
                           and "first_limit_gap" in res else None),
            )
            if budgets is not None:
                rec["steps"] = int(budgets[method])
        out.append(rec)  # type: ignore[arg-type]
    return out  # type: ignore[return-value]


def read_records(folder: str | Path) -> list[SimsRecord]:
    """The records of a sweep folder (``folder/runs.jsonl``), checked against the schema.

    Raises:
        ValueError: no ``runs.jsonl``, a record of another schema version, or missing fields.
    """
    path = Path(folder) / "runs.jsonl"
    if not path.is_file():
        raise ValueError(f"{path} not found: expected the --out folder of python -m sims.sweep")
    records = RunStore(folder).load()
    for rec in records:
        version = rec.get("schema_version", 1)
        if version != SCHEMA_VERSION:
            raise ValueError(f"{path}: record {rec.get('id')} has schema_version {version}: expected "
                             f"{SCHEMA_VERSION} (re-run the sweep with this package version)")
        missing = _REQUIRED - rec.keys() - {"schema_version"}
        if missing:
            raise ValueError(f"{path}: record {rec.get('id')} lacks {sorted(missing)}: expected a "
                             "python -m sims.sweep record")
    return records  # type: ignore[return-value]
