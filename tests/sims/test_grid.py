"""Grid: stable, unique ids; merged and unmerged groups cover the same records."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from sims.grid import group_ids, iter_runs, methods_of, record_id, run_methods, shape_groups
from sims.infra import stable_id, stable_id_with
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


def test_group_ids_are_the_reference_record_ids() -> None:
    """The fast path (settings converted once, :class:`RecordIds`) gives :func:`record_id`'s ids,
    also with the cost tiers set (their settings enter the ids)."""
    for cfg in (TINY, dataclasses.replace(TINY, gd_seeds=2, gd_steps=100, merge_shapes=False)):
        for g in shape_groups(cfg):
            assert g.record_ids() == [record_id(cfg, r, m) for r in g.runs()
                                      for m in run_methods(cfg, r)]


_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.text(max_size=5),
                    st.floats(allow_nan=False))


@settings(max_examples=60, deadline=None)
@given(common=st.dictionaries(st.text(max_size=4), _SCALAR | st.lists(_SCALAR, max_size=3),
                              max_size=6),
       fields=st.dictionaries(st.text(max_size=4), _SCALAR | st.tuples(_SCALAR, _SCALAR),
                              max_size=6))
def test_stable_id_with_is_stable_id(common, fields) -> None:
    assert stable_id_with(common)(fields) == stable_id({**common, **fields})
