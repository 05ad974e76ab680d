"""Results a reader can trust: selection rules, paired verdicts, run identity, a user's tasks."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import realdata.benchmark as bench
from realdata import summary, tasks, train
from realdata.data.base import LoadRequest, TargetSplits
from realdata.fingerprint import file_sha256
from realdata.records import SCHEMA_VERSION, RecordSchemaError, RunRecord, load_records
from realdata.summary import verdicts
from realdata.tasks import Protocol, TaskSpec, register_task
from realdata.train import FinetuneConfig, FinetuneResult, LrTrace, finetune, select_best
from tests.realdata.conftest import blobs, tiny

ROOT = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------- selection rules


def test_a_lr_that_diverges_at_any_epoch_is_never_selected(toy_splits, monkeypatch):
    """1e6 scores best at epoch 1 and diverges at epoch 2: 0.01 must win; scores are kept."""
    def fake(model, block_map, tuned, lr, cfg, protocol, train_, val, start, seed, metric,
             on_better, *, epochs=None, on_epoch=None, l1=None):
        scores = {1e6: [0.9], 1e-2: [0.5, 0.6]}[lr]
        for e, v in enumerate(scores, 1):
            on_better(v, lr, e)
        return LrTrace(lr=lr, val_metric=list(scores),
                       error="non-finite loss at epoch 2" if lr == 1e6 else None)

    monkeypatch.setattr(train, "_train_one_lr", fake)
    res = finetune(tiny("resnet26"), tiny("resnet26").block_map(), *toy_splits,
                   protocol=Protocol(epochs=2, lrs=(1e6, 1e-2), batch_size=16),
                   config=FinetuneConfig(tuned="head", grid_batch=False), seed=0)
    assert (res.status, res.best_lr, res.best_epoch, res.val_metric) == ("ok", 1e-2, 2, 0.6)
    assert [t.val_metric for t in res.traces] == [[0.9], [0.5, 0.6]]
    assert res.traces[0].error


def test_selection_shared_by_loop_and_batched_grid_excludes_diverged_traces():
    """``select_best`` (used by both grid paths) never picks a trace that diverged."""
    diverged = LrTrace(lr=1e6, val_metric=[0.9], error="non-finite loss at epoch 2")
    assert select_best([diverged, LrTrace(lr=1e-2, val_metric=[0.5, 0.6, 0.6])]) == (1, 2)
    assert select_best([diverged]) is None
    assert select_best([LrTrace(lr=1e6, val_metric=[0.9])]) == (0, 1)


def test_divergence_later_than_epoch_one_is_recorded_with_its_scores(toy_splits, monkeypatch):
    real = train.F.cross_entropy
    calls = {"n": 0}

    def loss(*a, **k):  # the second step of the first lr (its epoch 2) goes non-finite
        calls["n"] += 1
        out = real(*a, **k)
        return out * math.nan if calls["n"] == 5 else out

    monkeypatch.setattr(train.F, "cross_entropy", loss)
    train_, val, test = toy_splits
    res = finetune(tiny("resnet26"), tiny("resnet26").block_map(), train_, val, test,
                   protocol=Protocol(epochs=3, lrs=(1e-1, 1e-2), batch_size=16),
                   config=FinetuneConfig(tuned="head", grid_batch=False), seed=0)
    first, second = res.traces
    assert len(first.val_metric) == 1 and "epoch 2" in first.error
    assert res.best_lr == 1e-2 and len(second.val_metric) == 3


def test_untuned_metrics_are_always_recorded_and_select_with_start(toy_splits):
    model = tiny("resnet26")
    proto = Protocol(epochs=2, lrs=(1e-12,), batch_size=16)  # no visible change: ties epoch 0
    res = finetune(model, model.block_map(), *toy_splits, protocol=proto,
                   config=FinetuneConfig(tuned="head"), seed=0)
    assert res.best_epoch >= 1 and res.best_lr == 1e-12  # official: tuned snapshots only
    assert res.start_val_metric == pytest.approx(res.val_metric)
    model = tiny("resnet26")
    res0 = finetune(model, model.block_map(), *toy_splits,
                    protocol=proto.override(select_with_start=True),
                    config=FinetuneConfig(tuned="head"), seed=0)
    assert (res0.best_epoch, res0.best_lr) == (0, None)  # ties keep the untuned network
    assert res0.test_metric == res0.start_test_metric == res.start_test_metric


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 20), st.integers(1, 300), st.integers(1, 64), st.integers(0, 500))
def test_epochs_for_min_steps_is_the_smallest_sufficient(epochs, n, batch, min_steps):
    p = Protocol(epochs=epochs, batch_size=batch, min_steps=min_steps)
    e = p.epochs_for(n)
    per = math.ceil(n / batch)
    assert e >= epochs and e * per >= min_steps
    assert e == epochs or (e - 1) * per < min_steps


def test_grid_edge_and_best_epoch_last_flags():
    def res(lr, epoch):
        return FinetuneResult("ok", ("head",), lr, epoch, 0.5, 0.5, 0.5, [], False, 1, 0.0,
                              epochs=5, lrs=(1e-1, 1e-2, 1e-3))
    assert res(1e-1, 5).lr_at_grid_edge and res(1e-3, 2).lr_at_grid_edge
    assert res(1e-2, 2).lr_at_grid_edge is False and res(1e-2, 5).best_epoch_last
    assert res(None, 0).lr_at_grid_edge is None and res(1e-2, 4).best_epoch_last is False


# ----------------------------------------------------------------------------- paired verdicts


def _recs(level, accs, shift="s"):
    """Records for one target: option -> per-seed test accuracies."""
    blocks = ["block1", "block2", "block3", "head"]
    return [{"task": "t", "variant": shift, "level": level, "tuned": o, "method": "fixed",
             "seed": s, "status": "ok", "test_metric": v, "val_metric": v, "blocks": blocks,
             "settings": "x", "lr_at_grid_edge": False, "best_epoch_last": s == 0}
            for o, vals in accs.items() for s, v in enumerate(vals)]


BASE = {"block1": [0.60, 0.62, 0.61], "block2": [0.50, 0.51, 0.52], "block3": [0.40, 0.41, 0.40],
        "head": [0.30, 0.32, 0.31], "all": [0.45, 0.47, 0.46]}


def test_verdict_holds_only_beyond_the_paired_criterion():
    (v,) = verdicts(_recs("input", BASE))
    assert v["verdict"] == "holds" and v["expected_block"] == "block1"
    assert v["comparisons"]["all"]["diff"] == pytest.approx(0.15)
    assert v["best_minus_all"] == pytest.approx(0.15) and v["epoch_last_runs"] == [5, 15]
    # mutation: one noisy seed makes block1 - block2 uncertain -> inconclusive, not holds
    noisy = {**BASE, "block2": [0.50, 0.75, 0.40]}
    assert verdicts(_recs("input", noisy))[0]["verdict"] == "inconclusive"
    # mutation: the reverse is significant -> fails
    reverse = {**BASE, "all": [0.70, 0.72, 0.71]}
    (f,) = verdicts(_recs("input", reverse))
    assert f["verdict"] == "fails" and f["holds"] is False and "all" in f["reason"]
    # the expected block of a feature shift is the best middle block
    assert verdicts(_recs("feature", BASE))[0]["verdict"] == "fails"


def test_a_single_seed_is_never_a_verdict():
    one = {k: v[:1] for k, v in BASE.items()}
    assert verdicts(_recs("input", one))[0]["verdict"] == "inconclusive"


def test_nothing_to_compare_is_not_judged_and_names_what_is_missing():
    (v,) = verdicts(_recs("output", {"head": [0.9, 0.8]}))
    assert v["verdict"] == "not judged" and v["holds"] is None
    assert v["missing"] == ["block1", "block2", "block3", "all"]
    assert "block1, block2, block3, all" in v["reason"]
    assert verdicts(_recs("natural", BASE))[0]["verdict"] == "not judged"


def test_edge_warning_names_the_options():
    recs = _recs("input", BASE)
    assert summary.edge_warning(recs) is None
    recs[0]["lr_at_grid_edge"] = True
    assert "1 of 15 runs (block1 1/3)" in summary.edge_warning(recs)


# ----------------------------------------------------------------------------- run identity


def _load_tiny(req: LoadRequest) -> TargetSplits:
    return TargetSplits(blobs(req.train_n, seed=req.seed), blobs(16, seed=50), blobs(16, seed=60),
                        num_classes=4, info={"source": "generated"})


register_task(TaskSpec(
    name="trusttask", shift_level="input", backbone="resnet26", num_classes=4, load=_load_tiny,
    variants=("a", "b"), protocol=Protocol(epochs=1, lrs=(1e-2, 1e-3), train_n=16, batch_size=16),
    backbone_kwargs={"depth": 8}, needs_data=False))


def _ckpt(path: Path, seed: int) -> Path:
    torch.save(tiny("resnet26", seed=seed).state_dict(), path)
    return path


def _argv(out, ckpt, *extra):
    return ["--task", "trusttask", "--checkpoint", str(ckpt), "--seeds", "0", "--no-progress",
            "--methods", "--tuned", "block1", "head", "all", "--threads", "1", "--out", str(out),
            *extra]


def _lines(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "runs.jsonl").read_text().splitlines()]


def test_retrained_checkpoint_is_never_resumed_and_other_settings_are_refused(tmp_path, capsys):
    out, ckpt = tmp_path / "out", _ckpt(tmp_path / "source.pt", seed=0)
    assert bench.main(_argv(out, ckpt, "--variants", "a")) == 0
    before = (out / "runs.jsonl").read_bytes()
    old = _lines(out)
    assert {r["threads"] for r in old} == {1} and all(r["schema_version"] == SCHEMA_VERSION
                                                       for r in old)
    _ckpt(ckpt, seed=1)  # retrained: same file name, new content
    capsys.readouterr()
    assert bench.main(_argv(out, ckpt, "--variants", "a")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "checkpoint content" in err
    assert "--out" in err and "--force-new-settings" in err
    assert (out / "runs.jsonl").read_bytes() == before  # nothing lost, nothing added
    assert bench.main(_argv(out, ckpt, "--variants", "a", "--force-new-settings")) == 0
    new = _lines(out)[len(old):]
    assert len(new) == len(old) and not {r["id"] for r in new} & {r["id"] for r in old}
    assert {r["checkpoint_sha256"] for r in new} == {file_sha256(ckpt)}
    assert "3 runs (3 new, 0 resumed" in capsys.readouterr().out
    # the summary uses the new settings only
    rows = [x.split(",") for x in (out / "summary.csv").read_text().splitlines()[1:]]
    assert {r[4] for r in rows} == {"1"}


def test_changed_data_or_protocol_is_refused(tmp_path, capsys, monkeypatch):
    out, ckpt = tmp_path / "out", _ckpt(tmp_path / "s.pt", seed=0)
    assert bench.main(_argv(out, ckpt, "--variants", "a")) == 0
    capsys.readouterr()
    assert bench.main(_argv(out, ckpt, "--variants", "a", "--epochs", "2")) == 2
    assert "protocol changed" in capsys.readouterr().err
    changed = lambda req: _load_tiny(dataclasses_replace(req, seed=req.seed + 9))  # noqa: E731
    monkeypatch.setitem(tasks._REGISTRY, "trusttask",
                        dataclasses_replace(tasks.get_task("trusttask"), load=changed))
    assert bench.main(_argv(out, ckpt, "--variants", "a")) == 2
    assert "data changed" in capsys.readouterr().err
    # same settings, another variant: accepted; the printout lists only this invocation's target
    monkeypatch.undo()
    assert bench.main(_argv(out, ckpt, "--variants", "b")) == 0
    printed = capsys.readouterr().out
    assert "trusttask/b" in printed and "trusttask/a" not in printed
    assert {v["shift"] for v in json.loads((out / "verdicts.json").read_text())} == {"a", "b"}


def dataclasses_replace(obj, **kw):
    import dataclasses

    return dataclasses.replace(obj, **kw)


def test_an_old_schema_folder_is_refused(tmp_path, capsys):
    out, ckpt = tmp_path / "out", _ckpt(tmp_path / "s.pt", seed=0)
    out.mkdir()
    (out / "runs.jsonl").write_text(json.dumps({"id": "x", "task": "trusttask"}) + "\n")
    assert bench.main(_argv(out, ckpt, "--variants", "a")) == 2
    assert "older record schema" in capsys.readouterr().err
    assert load_records(out) == ([], [{"id": "x", "task": "trusttask"}])
    with pytest.raises(RecordSchemaError, match="schema_version"):
        RunRecord.from_json({"id": "x"})


def test_checkpoint_hash_is_cached_by_path_mtime_and_size(tmp_path, monkeypatch):
    f, cache = tmp_path / "c.pt", tmp_path / "cache.json"
    f.write_bytes(b"abc")
    h = file_sha256(f, cache)
    assert h == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    opened = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda p, *a, **k: opened.append(p) or real_open(p, *a, **k))
    assert file_sha256(f, cache) == h and opened == []  # from the cache
    monkeypatch.undo()
    f.write_bytes(b"abd")
    os.utime(f, ns=(1, 1))
    assert file_sha256(f, cache) != h


def test_no_progress_prints_one_line_per_lr_and_epoch(tmp_path, capsys):
    assert bench.main(_argv(tmp_path / "o", _ckpt(tmp_path / "s.pt", 0), "--variants", "a",
                            "--tuned", "head")) == 0
    err = capsys.readouterr().err
    assert "trusttask/a head/fixed seed 0: lr=0.01 epoch 1/1" in err
    assert "lr=0.001 epoch 1/1" in err


def test_source_flips_is_an_explicit_recorded_option(tmp_path, monkeypatch):
    seen = []

    def prepare(req, folder):
        seen.append(req.extra["source_flips"])
        return _ckpt(tmp_path / "auto.pt", 0)

    monkeypatch.setitem(tasks._REGISTRY, "trusttask", dataclasses_replace(
        tasks.get_task("trusttask"), prepare_source=prepare, source_flips=False))
    base = ["--task", "trusttask", "--seeds", "0", "--no-progress", "--methods", "--tuned",
            "none", "--variants", "a"]
    assert bench.main([*base, "--out", str(tmp_path / "a")]) == 0
    assert bench.main([*base, "--out", str(tmp_path / "b"), "--source-flips", "on"]) == 0
    assert seen == [False, True]
    cfg = json.loads((tmp_path / "b" / "config.json").read_text())["config"]
    assert cfg["source_flips"] == "on"
    # pretrain flips only when asked
    from realdata import pretrain as pre

    calls = []
    monkeypatch.setattr(pre, "_flip", lambda x, g: calls.append(1) or x)
    pre.pretrain(tiny("resnet26"), blobs(8), epochs=1, lr=0.01, batch_size=8, seed=0)
    assert calls == []
    pre.pretrain(tiny("resnet26"), blobs(8), epochs=1, lr=0.01, batch_size=8, seed=0,
                 augment=True)
    assert calls == [1]


def test_threads_are_set_in_the_run(tmp_path):
    cfg = bench._config_from_args(bench._parser().parse_args(
        _argv(tmp_path / "o", _ckpt(tmp_path / "s.pt", 0), "--variants", "a", "--tuned", "none")))
    plan = bench.plan_task(cfg, "trusttask", tmp_path / "o")
    (unit,) = bench.build_units(cfg, [plan])
    was = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        (rec,) = bench.run_unit(unit)
        assert torch.get_num_threads() == 1 and rec["threads"] == 1
    finally:
        torch.set_num_threads(was)
    default = bench.BenchmarkConfig(tasks=("trusttask",), executor="processes", workers=2)
    assert bench._threads(default) == max(1, (os.cpu_count() or 1) // 2)


# ----------------------------------------------------------------------------- a user's tasks


def _cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "realdata.benchmark", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_a_task_defined_outside_the_package_runs_under_processes(tmp_path):
    ckpt = tmp_path / "toy.pt"
    torch.save(tiny("resnet26", num_classes=4).state_dict(), ckpt)
    out = tmp_path / "toy"
    r = _cli("--task-module", "tests.realdata.plugins.digits", "--task", "toydigits",
             "--checkpoint", str(ckpt), "--executor", "processes", "--workers", "1",
             "--seeds", "0", "1", "--tuned", "block1", "head", "all", "--methods",
             "--no-progress", "--out", str(out))
    assert r.returncode == 0, r.stderr
    recs = _lines(out)
    assert len(recs) == 6 and {x["status"] for x in recs} == {"ok"}
    assert "toydigits/- (feature):" in r.stdout


@pytest.mark.parametrize(("module", "msg"), [
    ("tests.realdata.plugins.no_such_module",
     "--task-module tests.realdata.plugins.no_such_module failed to import: ModuleNotFoundError"),
    ("tests.realdata.plugins.broken_import", "No module named 'realdata_missing_dependency'"),
    ("tests.realdata.plugins.empty", "registered no task"),
])
def test_bad_task_modules_exit_2_in_one_line_and_keep_out(tmp_path, capsys, module, msg):
    out, ckpt = tmp_path / "out", _ckpt(tmp_path / "s.pt", seed=0)
    assert bench.main(_argv(out, ckpt, "--variants", "a", "--tuned", "none")) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    capsys.readouterr()
    assert bench.main([*_argv(out, ckpt, "--variants", "a"), "--task-module", module]) == 2
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_a_reader_that_raises_is_one_line_and_keeps_out(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert bench.main(["--task-module", "tests.realdata.plugins.broken_reader", "--task",
                       "brokenreader", "--checkpoint", str(_ckpt(tmp_path / "s.pt", 0)),
                       "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "its reader failed on variant None, seed 0: RuntimeError: cannot decode shard 3" in err
    assert sorted(p.name for p in out.iterdir() if p.name != ".lock") == ["keep.txt"]


def test_an_import_error_inside_a_builtin_reader_surfaces(monkeypatch):
    monkeypatch.setattr(tasks, "_loaded", False)
    monkeypatch.setitem(sys.modules, "realdata.task_table", None)  # importing it now fails
    with pytest.raises(ImportError, match=r"realdata\.task_table"):
        tasks.get_task("synthetic")


def test_entry_points_register_tasks(monkeypatch):
    from importlib import metadata

    class EP:
        name, value = "toy", "tests.realdata.plugins.broken_reader"

        def load(self):
            import tests.realdata.plugins.broken_reader as m

            return m

    monkeypatch.setattr(tasks, "_loaded", False)
    monkeypatch.setattr(metadata, "entry_points",
                        lambda group: [EP()] if group == tasks.ENTRY_POINT_GROUP else [])
    assert "brokenreader" in tasks.all_tasks()


def test_selection_flags_reach_the_protocol_and_the_run_id(tmp_path):
    argv = _argv(tmp_path / "o", _ckpt(tmp_path / "s.pt", 0), "--variants", "a")
    cfg = bench._config_from_args(bench._parser().parse_args(argv))
    flagged = bench._config_from_args(bench._parser().parse_args(
        [*argv, "--select-with-start", "--min-steps", "7"]))
    p0 = bench.plan_task(cfg, "trusttask", tmp_path / "o")
    p1 = bench.plan_task(flagged, "trusttask", tmp_path / "o")
    assert (p1.protocol.select_with_start, p1.protocol.min_steps) == (True, 7)
    assert (p0.protocol.select_with_start, p0.protocol.min_steps) == (False, 0)
    u0, u1 = bench.build_units(cfg, [p0])[0], bench.build_units(flagged, [p1])[0]
    assert u0.id != u1.id and u0.settings != u1.settings


def test_readers_are_pure_functions_of_the_request():
    """No reader module imports the registry, the training code or a run store."""
    import ast

    banned = {"realdata.tasks", "realdata.train", "realdata.pretrain", "realdata.benchmark",
              "sims.infra.store", "sims.infra"}
    for path in sorted((ROOT / "realdata" / "data").glob("*.py")):
        tree = ast.parse(path.read_text())
        mods = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        mods |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not mods & banned, (path.name, mods & banned)
