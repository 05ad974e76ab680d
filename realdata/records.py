"""The realdata run record: one typed schema, written and read only through this module.

Every record in ``OUT/runs.jsonl`` written by :mod:`realdata.benchmark` is a :class:`RunRecord`
serialized by :meth:`RunRecord.to_json` with ``schema_version`` = :data:`SCHEMA_VERSION`.
:func:`load_records` reads a folder back and splits it into current records (validated: every
field present) and others (older schemas, foreign files), which the benchmark treats as records
of other settings.

Metrics are fractions in ``[0, 1]``; ``best_epoch`` is 1-based, 0 when the untuned network was
selected; ``val_curves`` maps every lr of the grid (``"%g"``) to its per-epoch validation scores
(diverged lrs included up to their last finished epoch, their error in ``lr_errors``); an ``l1``
run's keys are ``"<lr>,l1=<strength>"`` (one per pair of its grids), an online run's curves hold
one score per lr (its validation stream's).

Schema 3 added ``objective``, ``online``, ``best_l1``, ``rgn_block_weights`` and ``grid`` (how
the lr grid was trained: batched or the per-lr loop, group sizes, out-of-memory fallbacks).
Schema 4 added ``transform_info`` (what the task's model transform did to the source model, e.g.
the perturbed block and realised noise ratio of noise-in-block; ``None`` without a transform).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sims.infra import RunStore, to_jsonable

__all__ = ["SCHEMA_VERSION", "RecordSchemaError", "RunRecord", "load_records"]

SCHEMA_VERSION = 4


class RecordSchemaError(ValueError):
    """A record does not follow the current schema (names the missing fields or the version)."""


@dataclass(frozen=True)
class RunRecord:
    """One fine-tuning run of the benchmark.

    Identity (what the run id hashes): ``task, variant, tuned, method, seed, protocol, bn,
    checkpoint_sha256, data_fingerprint, package_version`` and ``extra_id`` (method parameters,
    precision, backbone overrides). ``settings`` hashes the identity minus the run's coordinates
    (variant, tuned, method, seed, data fingerprint) and the method's own parameters (SNR
    threshold, L1 grid, gradual interval): records of one benchmark setting share it. The
    objective (``"supervised"``, ``"memo"``, ``"tent"``) and ``online`` (the online settings,
    ``None`` when supervised) are part of the identity and of the settings.

    ``best_l1``: the L1 strength selected with the lr (``l1`` runs, else ``None``).
    ``rgn_block_weights``: Auto-RGN runs, per block the mean over epochs of the selected lr's
    mean lr multiplier of the block's tensors (else ``None``).
    ``transform_info``: what the task's model transform reported (``None`` without one); the
    transform's own parameters (its ``run_id``, e.g. the noise level) are in ``extra_id``.
    """

    id: str
    settings: str
    task: str
    variant: str | None
    tuned: str
    method: str
    seed: int
    protocol: Mapping[str, Any]
    bn: str
    checkpoint: str
    checkpoint_sha256: str
    data_fingerprint: str
    package_version: str
    level: str
    backbone: str
    blocks: list[str]
    metric: str
    status: str
    error: str | None
    tuned_blocks: list[str]
    best_lr: float | None
    best_epoch: int
    epochs: int
    val_metric: float
    test_metric: float
    test_accuracy: float
    start_val_metric: float
    start_test_metric: float
    start_test_accuracy: float
    lr_at_grid_edge: bool | None
    best_epoch_last: bool | None
    cached: bool
    n_trainable: int
    train_seconds: float
    wall_s: float
    threads: int
    lr_errors: Mapping[str, str]
    val_curves: Mapping[str, list[float]]
    data_info: Mapping[str, Any]
    n_train: int
    num_classes_data: int
    head_size: int
    objective: str
    online: Mapping[str, Any] | None
    best_l1: float | None
    rgn_block_weights: Mapping[str, float] | None
    grid: Mapping[str, Any]
    transform_info: Mapping[str, Any] | None
    extra_id: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The plain-JSON record (with ``schema_version``)."""
        return {"schema_version": SCHEMA_VERSION, **to_jsonable(self)}

    @classmethod
    def from_json(cls, rec: Mapping[str, Any]) -> RunRecord:
        """Parse a stored record.

        Raises:
            RecordSchemaError: another schema version or missing fields.
        """
        version = rec.get("schema_version")
        if version != SCHEMA_VERSION:
            raise RecordSchemaError(f"record {rec.get('id')} has schema_version {version!r}; "
                                    f"this package reads {SCHEMA_VERSION}")
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if n not in rec and n != "extra_id"]
        if missing:
            raise RecordSchemaError(f"record {rec.get('id')} lacks {missing}")
        return cls(**{n: rec[n] for n in names if n in rec})


def load_records(out: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(current, other)``: the folder's records of the current schema (validated, as dicts)
    and every other record (older schemas or other writers), in file order."""
    current, other = [], []
    for rec in RunStore(out).load():
        try:
            RunRecord.from_json(rec)
        except RecordSchemaError:
            other.append(rec)
        else:
            current.append(rec)
    return current, other


def is_finite(x: float | None) -> bool:
    """Whether ``x`` is a finite float."""
    return x is not None and math.isfinite(x)
