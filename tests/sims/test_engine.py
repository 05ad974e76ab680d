"""Engine: padded, batched runs equal unpadded twolayer calls; merged == unmerged groups."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import sims.engine as engine
import twolayer as tl
from sims import evidence
from sims.engine import _padded_build, build_run, compute_group, problem_key
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
    assert _padded_build.cache_info().currsize >= 1  # the merged group's widths, mapped


def test_monte_carlo_evidence_is_the_direct_call_on_the_run_key(merged_records) -> None:
    """The engine's Monte Carlo estimates (keys made inside its program from the problem seeds,
    problems gathered from the batch) equal ``evidence.mc_evidence`` on the run's own key and
    unpadded problem, for the points that need no tuning."""
    cfg = dataclasses.replace(TINY, families=("sparse",), seeds=3)
    runs = {record_id(cfg, run, "none"): run for run in shape_groups(cfg)[0].runs()}
    checked = [rid for rid in runs if merged_records[rid]["mc"] is not None]
    assert checked
    for rid in checked[:4]:
        run, rec = runs[rid], merged_records[rid]
        p, _, _ = build_run(cfg, run)
        direct = evidence.mc_evidence(problem_key(cfg, run), p, {"pretrained": (p.v_src, p.B_src)},
                                      activation=run.activation, family=run.family,
                                      n_mc=cfg.mc_samples)
        for name in ("pretrained", "labels2"):
            np.testing.assert_allclose(rec["mc"][name], np.asarray(direct[name]), rtol=1e-10,
                                       err_msg=name)


def test_monte_carlo_evidence_does_not_depend_on_its_batch_size(merged_records,
                                                                 monkeypatch) -> None:
    """One run per vectorized Monte Carlo step instead of the CPU's 8 (an accelerator takes all
    it can hold): the same estimates up to rounding (some are zero up to rounding, ~1e-32)."""
    monkeypatch.setattr(engine, "CPU_MC_BATCH", 1)
    cfg = dataclasses.replace(TINY, families=("sparse",), seeds=3)
    again = {r["id"]: r for r in compute_group(shape_groups(cfg)[0])}
    compared = 0
    for rid, r in again.items():
        if r["mc"] is not None:
            for name, values in r["mc"].items():
                np.testing.assert_allclose(values, merged_records[rid]["mc"][name], rtol=1e-12,
                                           atol=1e-14 * r["initial_target_loss"], err_msg=name)
            compared += 1
    assert compared > 0


def test_monte_carlo_batch_size_by_platform_and_memory() -> None:
    assert engine.mc_batch_size(1024, 16, 8192, 300, "cpu") == engine.CPU_MC_BATCH
    assert engine.mc_batch_size(16, 8, 8192, 3, "cpu") == 3
    assert engine.mc_batch_size(64, 16, 8192, 300, "gpu", memory_bytes=40e9) == 300  # all at once
    capped = engine.mc_batch_size(1024, 16, 8192, 300, "gpu", memory_bytes=4e9)
    assert 1 <= capped < 300  # memory-bound
    assert engine.mc_batch_size(1024, 16, 8192, 300, "gpu", memory_bytes=1.0) == 1
