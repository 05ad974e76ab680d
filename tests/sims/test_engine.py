"""Engine: padded, batched runs equal unpadded twolayer calls; merged == unmerged groups."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import twolayer as tl
from sims.engine import _builder, build_run, compute_group
from sims.grid import record_id, shape_groups
from tests.sims.tiny import TINY

NUMERIC = ("target_loss", "initial_target_loss", "train_loss", "limit_target_loss")


@pytest.fixture(scope="module")
def merged_records() -> dict[str, dict]:
    cfg = dataclasses.replace(TINY, families=("sparse",), seeds=3)
    return {r["id"]: r for r in compute_group(shape_groups(cfg)[0])}


def test_every_record_is_complete(merged_records) -> None:
    recs = list(merged_records.values())
    assert len(recs) == 2 * 2 * 2 * 2 * 3 * 5  # acts, k, shifts, n, seeds, methods
    for r in recs:
        assert np.isfinite(r["target_loss"]) and r["initial_target_loss"] > 0
        if r["method"] in ("first", "last", "full"):
            assert len(r["trace"]) == len(r["record_steps"]) == 6
            assert r["trace"][0] == pytest.approx(r["initial_target_loss"], rel=1e-12)
            assert isinstance(r["converged"], bool) and r["diverged"] is False


@pytest.mark.slow
def test_unmerged_groups_give_the_same_numbers(merged_records) -> None:
    cfg = dataclasses.replace(TINY, families=("sparse",), seeds=3, merge_shapes=False)
    split = {r["id"]: r for g in shape_groups(cfg) for r in compute_group(g)}
    assert split.keys() == merged_records.keys()
    for rid, r in split.items():
        m = merged_records[rid]
        for key in NUMERIC:
            if r.get(key) is not None:
                np.testing.assert_allclose(m[key], r[key], rtol=1e-9, atol=1e-14 * m[
                    "initial_target_loss"], err_msg=f"{key} {r['method']} k={r['k']} n={r['n']}")
        if "trace" in r:
            np.testing.assert_allclose(m["trace"], r["trace"], rtol=1e-9, atol=1e-14)
        assert m["converged"] == r["converged"] if "converged" in r else True


def test_engine_matches_direct_twolayer_call(merged_records) -> None:
    """A padded run (k=2 padded to 4, n=4 padded to 8) equals twolayer.finetune on the raw data."""
    cfg = dataclasses.replace(TINY, families=("sparse",), seeds=3)
    group = shape_groups(cfg)[0]
    run = next(r for r in group.runs() if r.k == 2 and r.n == 4 and r.seed_index == 1
               and r.activation == "relu" and isinstance(r.shift, tl.InputShift))
    p, X, y = build_run(cfg, run)
    assert X.shape == (4, 8) and p.B_src.shape == (2, 8)

    for tune in ("first", "last", "full"):
        direct = tl.finetune(p, X, y, tune=tune, activation="relu", family="sparse",
                             steps=cfg.steps, n_records=cfg.n_records, gtol=cfg.gtol)
        rec = merged_records[record_id(cfg, run, tune)]
        # losses are O(0.1); atol covers runs that reach zero up to rounding (1e-35 vs 8e-35)
        np.testing.assert_allclose(rec["target_loss"], float(direct.target_loss), rtol=1e-9,
                                   atol=1e-15)
        np.testing.assert_allclose(rec["trace"], np.asarray(direct.trace), rtol=1e-9, atol=1e-15)
        np.testing.assert_allclose(rec["train_loss"], float(direct.train_loss), rtol=1e-9,
                                   atol=1e-15)
        assert rec["converged"] == bool(direct.converged)
    assert _builder.cache_info().currsize >= 1
