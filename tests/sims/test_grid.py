"""Grid: stable, unique ids; merged and unmerged groups cover the same records."""

from __future__ import annotations

import dataclasses

from sims.grid import group_ids, iter_runs, methods_of, shape_groups
from tests.sims.tiny import TINY


def test_ids_unique_and_stable() -> None:
    ids = [i for g in shape_groups(TINY) for i in group_ids(g)]
    assert len(ids) == len(set(ids))
    n_runs = len(list(iter_runs(TINY)))
    assert len(ids) == n_runs * len(methods_of(TINY))
    assert ids == [i for g in shape_groups(TINY) for i in group_ids(g)]


def test_merged_and_unmerged_groups_cover_same_records() -> None:
    merged = shape_groups(TINY)
    split = shape_groups(dataclasses.replace(TINY, merge_shapes=False))
    assert len(merged) == 2 and len(split) == 2 * 2 * 2  # families; x widths x sizes
    assert sorted(i for g in merged for i in g.record_ids()) == sorted(
        i for g in split for i in g.record_ids())


def test_ids_change_with_settings_that_change_numbers() -> None:
    base = set(shape_groups(TINY)[0].record_ids())
    for change in ({"steps": 301}, {"seed": 1}, {"p1": 0.31}, {"lr": 0.01}):
        other = set(shape_groups(dataclasses.replace(TINY, **change))[0].record_ids())
        assert base.isdisjoint(other), change
    # thresholds of the verdicts do not change records
    same = set(shape_groups(dataclasses.replace(TINY, zero_rtol=1e-9))[0].record_ids())
    assert same == base
