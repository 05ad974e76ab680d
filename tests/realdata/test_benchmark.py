"""The benchmark CLI end to end on a tiny registered task: grid, resume, bad input, failures."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

import realdata.benchmark as bench
from realdata import tasks
from realdata.data.base import LoadRequest, TargetSplits
from realdata.summary import summarize, verdicts
from realdata.tasks import Protocol, TaskSpec, register_task
from tests.realdata.conftest import blobs, prepare_tiny_source, tiny


def _load_tiny(req: LoadRequest) -> TargetSplits:
    off = {"a": 0, "b": 100}[req.variant or "a"]
    return TargetSplits(blobs(req.train_n, seed=req.seed + off), blobs(16, seed=50 + off),
                        blobs(16, seed=60 + off), num_classes=4, num_groups=2,
                        info={"source": "generated"})



register_task(TaskSpec(
    name="tinytask", shift_level="input", backbone="resnet26", num_classes=4, load=_load_tiny,
    variants=("a", "b"), protocol=Protocol(epochs=1, lrs=(1e-2,), train_n=32, batch_size=16),
    backbone_kwargs={"depth": 8}, needs_data=False, variant_levels={"b": "output"},
    prepare_source=prepare_tiny_source))

ARGS = ["--task", "tinytask", "--seeds", "0", "1", "--no-progress", "--tuned", "none", "block1",
        "head", "all"]


def test_grid_runs_and_summarizes(tmp_path, capsys):
    assert bench.main([*ARGS, "--out", str(tmp_path)]) == 0
    recs = [json.loads(x) for x in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert len(recs) == 2 * 2 * (4 + 1)  # variants x seeds x (tuned + rgn)
    assert len({r["id"] for r in recs}) == len(recs)
    r = recs[0]
    for key in ("task", "variant", "tuned", "method", "seed", "protocol", "bn", "test_metric",
                "val_metric", "best_lr", "package_version", "level", "cached"):
        assert key in r
    assert {x["level"] for x in recs} == {"input", "output"}
    csv = (tmp_path / "summary.csv").read_text().splitlines()
    assert csv[0] == ("task,shift,level,tuned,n_seeds,mean_acc,se,rel_vs_all,rel_se,failed,"
                      "lr_edge_frac,epoch_last_frac,is_winner,in_top_set")
    assert any(",cross-val," in line for line in csv) and any(",auto-rgn," in line for line in csv)
    assert json.loads((tmp_path / "config.json").read_text())["config"]["tasks"] == ["tinytask"]
    assert "best" in capsys.readouterr().out
    # resume: nothing new
    assert bench.main([*ARGS, "--out", str(tmp_path)]) == 0
    assert len((tmp_path / "runs.jsonl").read_text().splitlines()) == len(recs)


def test_interrupted_run_resumes_without_loss_or_duplicates(tmp_path, monkeypatch):
    real = bench.run_unit
    calls = {"n": 0}

    def flaky(unit):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(unit)

    monkeypatch.setattr(bench, "run_unit", flaky)
    argv = [*ARGS, "--out", str(tmp_path), "--methods", "--seeds", "0"]  # 8 units
    with pytest.raises(KeyboardInterrupt):
        bench.main(argv)
    assert len((tmp_path / "runs.jsonl").read_text().splitlines()) == 4
    monkeypatch.setattr(bench, "run_unit", real)
    assert bench.main(argv) == 0
    ids = [json.loads(x)["id"] for x in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert len(ids) == 8 and len(set(ids)) == 8


def test_divergence_marks_run_failed_and_grid_goes_on(tmp_path):
    argv = [*ARGS[:-4], "none", "block1", "all", "--out", str(tmp_path), "--lrs", "1e30",
            "--methods", "--variants", "a"]
    assert bench.main(argv) == 0
    recs = [json.loads(x) for x in (tmp_path / "runs.jsonl").read_text().splitlines()]
    failed = [r for r in recs if r["status"] == "failed"]
    assert len(failed) == 4 and all("lr=1e+30" in r["error"] for r in failed)
    assert {r["tuned"] for r in recs if r["status"] == "ok"} == {"none"}


@pytest.mark.parametrize(("argv", "msg"), [
    (["--task", "nope"], "unknown task 'nope'; known tasks:"),
    (["--task", "tinytask", "--tuned", "block9"], "unknown block 'block9'"),
    (["--task", "tinytask", "--variants", "zzz"], "unknown variant(s) ['zzz']"),
    (["--task", "tinytask", "--checkpoint", "/no/such.pt"], "checkpoint file not found"),
    (["--task", "tinytask", "--backbone-kwargs", "[8]"], "--backbone-kwargs must be a JSON object"),
    (["--task", "tinytask", "--backbone-kwargs", "{depth: 8}"], "must be a JSON object"),
    (["--task", "tinytask", "--backbone-kwargs", '{"depth": 8}'],
     "--backbone-kwargs needs --checkpoint for task tinytask"),
])
def test_bad_input_exits_2_with_reason(tmp_path, capsys, argv, msg):
    assert bench.main([*argv, "--out", str(tmp_path), "--no-progress"]) == 2
    assert msg in capsys.readouterr().err


def test_task_without_checkpoint_or_data_says_what_is_needed(tmp_path, capsys):
    register_task(TaskSpec(name="needsckpt", shift_level="input", backbone="resnet26",
                           num_classes=4, load=_load_tiny, needs_data=False,
                           backbone_kwargs={"depth": 8}))
    assert bench.main(["--task", "needsckpt", "--out", str(tmp_path)]) == 2
    assert "needs --checkpoint" in capsys.readouterr().err
    wrong = tmp_path / "wrn.pt"
    torch.save(tiny("wrn28_10").state_dict(), wrong)
    out = tmp_path / "o"
    assert bench.main(["--task", "needsckpt", "--out", str(out), "--checkpoint", str(wrong),
                       "--no-progress", "--tuned", "head", "--methods"]) == 2
    err = capsys.readouterr().err
    assert "does not fit ResNetCifar" in err and "unexpected keys" in err
    assert not (out / "runs.jsonl").exists()  # checked before any run starts


def test_summary_relative_accuracy_and_cross_val():
    def rec(tuned, seed, test, val, method="fixed", protocol="p1"):
        return {"task": "t", "variant": "v", "level": "input", "tuned": tuned, "seed": seed,
                "method": method, "status": "ok", "test_metric": test, "val_metric": val,
                "blocks": ["block1", "block2", "head"], "protocol": protocol}
    older = [rec("block1", 0, 0.0, 1.0, protocol="p0"), rec("block1", 7, 0.0, 1.0, protocol="p0")]
    recs = [*older, rec("block1", 0, 0.8, 0.5), rec("block1", 1, 0.6, 0.9), rec("block2", 0, 0.7, 0.9),
            rec("block2", 1, 0.7, 0.1), rec("head", 0, 0.1, 0.0), rec("head", 1, 0.1, 0.0),
            rec("all", 0, 0.5, 0.5), rec("all", 1, 0.7, 0.5)]
    rows = {r["tuned"]: r for r in summarize(recs)}  # the older protocol's records are ignored
    assert rows["block1"]["mean_acc"] == pytest.approx(0.7) and rows["block1"]["n_seeds"] == 2
    assert rows["block1"]["rel_vs_all"] == pytest.approx(((0.8 - 0.5) + (0.6 - 0.7)) / 2)
    assert rows["block1"]["rel_se"] == pytest.approx(0.2)  # sd 0.2828 / sqrt(2)
    assert rows["cross-val"]["mean_acc"] == pytest.approx((0.7 + 0.6) / 2)  # best val per seed
    v = verdicts(recs)
    assert v[0]["best_block"] == "block1"  # tie 0.7: first in order
    # block1 - block2 = +0.1, -0.1 (s.e. 0.1); block1 - all = +0.3, -0.1: not separated
    assert v[0]["verdict"] == "inconclusive" and v[0]["holds"] is None
    assert v[0]["comparisons"]["head"]["diff"] == pytest.approx(0.6)


# ----------------------------------------------------------------------------- head size, flags


def _load_sized(req: LoadRequest) -> TargetSplits:
    """4 classes; split sizes and image side taken from the request (the CLI overrides)."""
    return TargetSplits(blobs(req.train_n, side=req.image_size, seed=req.seed),
                        blobs(4 * req.val_per_class, side=req.image_size, seed=50),
                        blobs(4 * (req.test_per_class or 4), side=req.image_size, seed=60),
                        num_classes=4, info={"source": "generated", "severity": req.severity})


def _sized_task(monkeypatch, tmp_path: Path, head: int) -> list[str]:
    """Register a 4-class task whose head (and checkpoint) has ``head`` outputs."""
    name = f"sized{head}"
    monkeypatch.setitem(tasks._REGISTRY, name, TaskSpec(
        name=name, shift_level="input", backbone="resnet26", num_classes=head, load=_load_sized,
        protocol=Protocol(epochs=1, lrs=(1e-2,), train_n=16, batch_size=8, val_per_class=2,
                          test_per_class=2, image_size=16), backbone_kwargs={"depth": 8},
        needs_data=False))
    ckpt = tmp_path / f"head{head}.pt"
    torch.save(tiny("resnet26", num_classes=head).state_dict(), ckpt)
    return ["--task", name, "--checkpoint", str(ckpt), "--seeds", "0", "--no-progress",
            "--methods", "--out", str(tmp_path / "out")]


def test_head_size_is_the_tasks_and_may_exceed_the_datas_classes(tmp_path, monkeypatch):
    """Rule: model head = spec.num_classes = checkpoint's head; the data may have fewer classes
    (e.g. a subset of ImageNet-C's 1000), never more."""
    argv = _sized_task(monkeypatch, tmp_path, head=6)
    assert bench.main([*argv, "--tuned", "none", "head"]) == 0
    recs = [json.loads(x) for x in (tmp_path / "out" / "runs.jsonl").read_text().splitlines()]
    assert [(r["head_size"], r["num_classes_data"], r["status"]) for r in recs] == [(6, 4, "ok")] * 2


def test_head_smaller_than_the_datas_classes_is_refused(tmp_path, monkeypatch, capsys):
    argv = _sized_task(monkeypatch, tmp_path, head=3)
    assert bench.main([*argv, "--tuned", "head"]) == 2
    err = capsys.readouterr().err
    assert "the data have 4 classes but the model head (and its checkpoint) has 3" in err
    assert "labels must be < 3" in err
    assert not (tmp_path / "out" / "runs.jsonl").exists()  # refused before any run
    # the same rule inside a run (a worker that loads other data than the preflight)
    spec = tasks.get_task("sized3")
    with pytest.raises(ValueError, match="labels must be < 3"):
        bench.check_head(spec, _load_sized(LoadRequest(data_root=tmp_path, train_n=8,
                                                       image_size=8)))


def test_protocol_and_loader_flags_reach_the_reader_and_the_runs(tmp_path, monkeypatch):
    argv = _sized_task(monkeypatch, tmp_path, head=4)
    extra = ["--tuned", "head", "--train-n", "8", "--val-per-class", "3", "--test-per-class", "5",
             "--image-size", "12", "--severity", "2", "--loader-workers", "1", "--no-bf16",
             "--no-channels-last", "--no-pin-memory"]
    cfg = bench._config_from_args(bench._parser().parse_args([*argv, *extra]))
    assert (cfg.loader_workers, cfg.bf16, cfg.channels_last, cfg.pin_memory) == (1, False, False,
                                                                                 False)
    plan = bench.plan_task(cfg, "sized4", tmp_path / "out")
    unit = bench.build_units(cfg, [plan])[0]
    fc = unit.finetune_config()
    assert (fc.workers, fc.bf16, fc.channels_last, fc.pin_memory) == (1, False, False, False)
    assert bench.main([*argv, *extra]) == 0
    (rec,) = [json.loads(x) for x in (tmp_path / "out" / "runs.jsonl").read_text().splitlines()]
    p = rec["protocol"]
    assert (p["train_n"], p["val_per_class"], p["test_per_class"], p["image_size"],
            p["severity"]) == (8, 3, 5, 12, 2)
    assert rec["n_train"] == 8 and rec["data_info"]["severity"] == 2
    assert "precision" not in rec["extra_id"]  # no bf16 on CPU, so the id is the fp32 one


def test_default_flags_allow_gpu_accelerations_and_bf16_changes_the_id(tmp_path, monkeypatch):
    cfg = bench._config_from_args(bench._parser().parse_args(["--task", "tinytask", "--out", "o"]))
    assert (cfg.loader_workers, cfg.bf16, cfg.channels_last, cfg.pin_memory) == (0, True, True, True)
    unit = bench.build_units(cfg, [bench.plan_task(cfg, "tinytask", tmp_path)])[0]
    cuda = dataclasses.replace(unit, finetune=dataclasses.replace(unit.finetune, device="cuda"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert cuda.id_fields()["extra_id"]["precision"] == "bf16-autocast" and cuda.id != unit.id
    no_bf16 = dataclasses.replace(cuda, finetune=dataclasses.replace(cuda.finetune, bf16=False))
    assert no_bf16.id == unit.id


@pytest.mark.parametrize(("argv", "msg"), [
    (["--val-per-class", "0"], "val_per_class must be >= 1; got 0"),  # an empty split
    (["--test-per-class", "-1"], "test_per_class must be >= 1 or None; got -1"),
    (["--image-size", "4"], "image_size must be >= 8; got 4"),
    (["--loader-workers", "-2"], "--loader-workers must be >= 0"),
])
def test_bad_protocol_flags_exit_2(tmp_path, monkeypatch, capsys, argv, msg):
    sized = [*_sized_task(monkeypatch, tmp_path, head=4), "--tuned", "head", *argv]
    # needs_data=False tasks skip the preflight read; make this one read its data first
    monkeypatch.setitem(tasks._REGISTRY, "sized4",
                        dataclasses.replace(tasks.get_task("sized4"), needs_data=True))
    assert bench.main([*sized, "--data-root", str(tmp_path)]) == 2
    assert msg in capsys.readouterr().err


def test_every_cli_flag_is_documented_in_the_readme():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    start, end = readme.index("<!-- section:realdata -->"), readme.index("<!-- /section:datasets -->")
    section = readme[start:end]
    flags = [o for a in bench._parser()._actions for o in a.option_strings if o.startswith("--")]
    assert len(flags) > 30
    assert [f for f in flags if f != "--help" and f"`{f}" not in section] == []
