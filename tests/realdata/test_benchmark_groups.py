"""``--batch-targets``: seeds and variants of one task and option as one batched model give the
same records as running each alone."""

from __future__ import annotations

import json

import pytest

import realdata.benchmark as bench
from tests.realdata.test_benchmark import ARGS as TINY_ARGS  # registers the tiny task

ARGS = (*TINY_ARGS, "--grid-batch", "on")  # on CPU the default (auto) is the per-lr loop

SAME = ("status", "best_lr", "best_epoch", "val_metric", "test_metric", "test_accuracy",
        "start_val_metric", "val_curves", "tuned_blocks", "n_trainable", "cached")


def _records(out) -> dict[str, dict]:
    return {r["id"]: r for r in map(json.loads, (out / "runs.jsonl").read_text().splitlines())}


def test_batched_targets_give_the_records_of_single_runs(tmp_path, capsys):
    alone, grouped = tmp_path / "alone", tmp_path / "grouped"
    assert bench.main([*ARGS, "--out", str(alone)]) == 0
    assert bench.main([*ARGS, "--out", str(grouped), "--batch-targets", "3"]) == 0
    a, g = _records(alone), _records(grouped)
    assert a.keys() == g.keys()
    for rid, rec in a.items():
        assert {k: rec[k] for k in SAME} == {k: g[rid][k] for k in SAME}, rec["tuned"]
    targets = {(r["tuned"], r["method"]): r["grid"].get("targets") for r in g.values()}
    # 2 variants x 2 seeds = 4 runs per option: groups of 3 and 1 (a group of one runs alone:
    # one lr, one target, so the per-lr loop)
    assert sorted(r["grid"].get("targets") or 0 for r in g.values()
                  if (r["tuned"], r["method"]) == ("head", "fixed")) == [0, 3, 3, 3]
    assert targets[("all", "rgn")] is None  # Auto-RGN runs the per-lr loop, alone
    config = json.loads((grouped / "config.json").read_text())
    assert config["config"]["batch_targets"] == 3 and config["n_groups"] < config["n_units"]
    capsys.readouterr()
    # resume: every record stored, nothing runs again
    assert bench.main([*ARGS, "--out", str(grouped), "--batch-targets", "3"]) == 0
    assert _records(grouped).keys() == g.keys()


def test_group_units_keeps_every_unit_limits_and_unshareable_runs_alone(tmp_path):
    cfg = bench._config_from_args(bench._parser().parse_args([*ARGS, "--out", "o"]))
    units = bench.build_units(cfg, [bench.plan_task(cfg, "tinytask", tmp_path)])
    groups = bench.group_units(units, 3)
    assert [u.id for g in groups for u in g] == [u.id for u in units] or sorted(
        u.id for g in groups for u in g) == sorted(u.id for u in units)
    for g in groups:
        assert len(g) <= 3 and len({(u.tuned, u.method) for u in g}) == 1
        if g[0].method != "fixed":
            assert len(g) == 1
    assert all(len(g) == 1 for g in bench.group_units(units, 1))


def test_bad_batch_targets_exits_2(tmp_path, capsys):
    assert bench.main([*ARGS, "--out", str(tmp_path), "--batch-targets", "0"]) == 2
    assert "--batch-targets must be >= 1" in capsys.readouterr().err
    with pytest.raises(ValueError, match="batch-targets"):
        bench.BenchmarkConfig(tasks=("tinytask",), batch_targets=0)


@pytest.mark.parametrize("mode, off, device, batched", [
    ("auto", False, "cpu", False), ("auto", False, "cuda", True), ("auto", False, "cuda:1", True),
    ("on", False, "cpu", True), ("off", False, "cuda", False), ("on", True, "cuda", False)])
def test_grid_batch_mode(mode, off, device, batched):
    assert bench.grid_batch_enabled(mode, off, device) is batched
