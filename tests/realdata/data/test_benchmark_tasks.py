"""Every real-data task through ``python -m realdata.benchmark`` on its published-layout fixture
(tiny backbones, one epoch), and a wrong ``--data-root`` for each task exits non-zero printing its
layout. The full default grid per task is in the slow test at the end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from realdata import benchmark, tasks
from realdata.data.base import LoadRequest
from realdata.data.layout import LAYOUTS
from realdata.models import build_backbone
from tests.realdata.data.fixtures import FIXTURE_PROTOCOL, TINY_BACKBONE, build_task_fixture

TASKS = ["cifar10c", "cifarflip", "imagenetc", "living17", "entity30", "waterbirds", "celeba",
         "camelyon17", "fmow"]  # fmt: skip
REPO = Path(__file__).resolve().parents[3]


def _setup(task: str, tmp_path: Path) -> tuple[list[str], dict]:
    """The fixture, a tiny source checkpoint with the task's own head size (e.g. 1000 outputs for
    ImageNet-C although the fixture has 3 wnid folders), and the CLI arguments that run the task
    on it: tiny backbone, fixture-sized protocol, one epoch and one learning rate."""
    fx = build_task_fixture(task, tmp_path / "data")
    spec = tasks.get_task(task)
    kwargs = TINY_BACKBONE[spec.backbone]
    torch.manual_seed(0)
    ckpt = tmp_path / "source.pt"
    torch.save(build_backbone(spec.backbone, spec.num_classes, **kwargs).state_dict(), ckpt)
    proto = {f"--{k.replace('_', '-')}": str(v) for k, v in FIXTURE_PROTOCOL[task].items()}
    args = ["--task", task, "--quick", "--data-root", str(fx["data_root"]), "--checkpoint",
            str(ckpt), "--seed", "0", "--no-progress", "--backbone-kwargs", json.dumps(kwargs),
            "--epochs", "1", "--lrs", "1e-2", "--batch-size", "8",
            *(x for kv in proto.items() for x in kv)]  # fmt: skip
    if fx["variant"]:
        args += ["--variants", fx["variant"]]
    if "breeds_info" in fx["extra"]:
        args += ["--breeds-info", str(fx["extra"]["breeds_info"])]
    return args, fx


def _records(out: Path) -> list[dict]:
    return [json.loads(ln) for ln in (out / "runs.jsonl").read_text().splitlines() if ln.strip()]


@pytest.mark.parametrize("task", TASKS)
def test_task_runs_through_benchmark_cli(task, tmp_path, capsys):
    args, fx = _setup(task, tmp_path)
    req = LoadRequest(data_root=fx["data_root"], variant=fx["variant"], extra=fx["extra"],
                      **FIXTURE_PROTOCOL[task])  # fmt: skip
    k = tasks.get_task(task).load(req).num_classes
    out = tmp_path / "out"
    tuned = ["none", "block1", "head", "all"]
    rc = benchmark.main([*args, "--out", str(out), "--tuned", *tuned, "--methods"])
    assert rc == 0, capsys.readouterr().err
    recs = _records(out)
    assert sorted(r["tuned"] for r in recs) == sorted(tuned)
    spec = tasks.get_task(task)
    metric = spec.metric
    for r in recs:
        # one head-size rule: the task's (= the checkpoint's); the fixture's labels lie below it
        assert (r["head_size"], r["num_classes_data"]) == (spec.num_classes, k)
        assert r["status"] == "ok", r["error"]
        assert r["task"] == task and r["metric"] == metric
        assert 0.0 <= r["test_metric"] <= 1.0 and 0.0 <= r["test_accuracy"] <= 1.0
        assert r["data_info"]["source"]
    if metric == "worst_group":  # worst-group accuracy can never exceed the average
        assert all(r["test_metric"] <= r["test_accuracy"] + 1e-12 for r in recs)
    assert (out / "summary.csv").is_file() and (out / "verdicts.json").is_file()
    # resumable: a second call finds every run done
    assert benchmark.main([*args, "--out", str(out), "--tuned", *tuned, "--methods"]) == 0
    assert len(_records(out)) == len(recs) and "4 resumed" in capsys.readouterr().out


@pytest.mark.parametrize("task", TASKS)
def test_wrong_data_root_exits_nonzero_printing_layout(task, tmp_path, capsys):
    args, fx = _setup(task, tmp_path)
    for wrong in (tmp_path / "missing", tmp_path / "empty"):
        if wrong.name == "empty":
            wrong.mkdir()
        bad = [str(wrong) if a == str(fx["data_root"]) else a for a in args]
        rc = benchmark.main([*bad, "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert rc != 0
        assert err.startswith("error:") and LAYOUTS[task].splitlines()[1].strip() in err
    assert not (tmp_path / "out" / "runs.jsonl").exists()


def test_wrong_data_root_subprocess(tmp_path):
    """The real entry point: ``python -m realdata.benchmark`` with a wrong root exits 2."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "realdata.benchmark", "--task", "waterbirds", "--data-root",
         str(tmp_path), "--out", str(tmp_path / "o"), "--checkpoint", str(tmp_path / "x.pt")],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "waterbirds_v1.0/" in proc.stderr and "metadata.csv" in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_task_full_quick_grid(task, tmp_path):
    """The default grid (none, every block, all, Auto-RGN) of every task on its fixture."""
    args, _ = _setup(task, tmp_path)
    out = tmp_path / "out"
    assert benchmark.main([*args, "--out", str(out)]) == 0
    recs = _records(out)
    assert all(r["status"] == "ok" for r in recs)
    assert {r["method"] for r in recs} == {"fixed", "rgn"}


def test_every_registered_dataset_task_is_covered_here():
    """A new dataset task must get its fixture, end-to-end run and wrong-root test above."""
    shipped = {n for n, s in tasks.all_tasks().items()
               if s.needs_data and s.load.__module__.startswith("realdata.data.")}  # fmt: skip
    assert shipped == set(TASKS) and set(TASKS) <= set(LAYOUTS)
