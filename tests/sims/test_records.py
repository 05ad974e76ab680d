"""sims.records: the engine writes records of the declared schema; read_records checks it."""

from __future__ import annotations

import dataclasses
import json
import typing

import pytest

from sims.engine import compute_group
from sims.grid import shape_groups
from sims.infra import RunStore
from sims.records import SCHEMA_VERSION, SimsRecord, read_records
from tests.sims.tiny import TINY

GD_ONLY = {"trace", "record_steps", "train_loss", "converged", "diverged", "steps_taken",
           "grad_norm_rel", "limit_target_loss", "limit_gap", "start_train_loss", "cf_gap",
           "cf_moved", "cf_norm", "cf_target_loss"}


@pytest.fixture(scope="module")
def records() -> list[dict]:
    cfg = dataclasses.replace(TINY, families=("gaussian",), seeds=2, widths=(2,))
    return compute_group(shape_groups(cfg)[0])


def test_engine_records_have_exactly_the_schema_fields(records):
    declared = set(typing.get_type_hints(SimsRecord))
    for r in records:
        assert r["schema_version"] == SCHEMA_VERSION
        want = declared if r["method"] in ("first", "last", "full") else declared - GD_ONLY
        assert set(r) == want, (r["method"], set(r) ^ want)


def test_read_records_round_trips(records, tmp_path):
    RunStore(tmp_path).append(records)
    assert read_records(tmp_path) == json.loads(json.dumps(records))


@pytest.mark.parametrize(("change", "match"), [
    ({"schema_version": SCHEMA_VERSION + 1}, "schema_version"),
    ({"target_loss": None}, "lacks"),
])
def test_read_records_rejects_other_layouts(records, tmp_path, change, match):
    bad = dict(records[0])
    for key, value in change.items():
        if value is None:
            del bad[key]
        else:
            bad[key] = value
    RunStore(tmp_path).append([bad])
    with pytest.raises(ValueError, match=match) as info:
        read_records(tmp_path)
    assert "runs.jsonl" in str(info.value) and "\n" not in str(info.value)


def test_records_without_schema_version_read_as_version_1(records, tmp_path):
    old = [{k: v for k, v in r.items() if k != "schema_version"} for r in records]
    RunStore(tmp_path).append(old)
    assert len(read_records(tmp_path)) == len(records)
