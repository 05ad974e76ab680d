"""Noise in one block: the perturbation, the verdicts (with mutations) and the CLI end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import realdata.benchmark as bench
from realdata.data.base import LoadRequest
from realdata.experiments import noise_in_block as nib
from realdata.summary import paired_verdict
from realdata.tasks import Protocol, get_task, register_task
from tests.realdata.conftest import tiny


def test_only_the_perturbed_block_changes_and_by_the_documented_size():
    model = tiny("resnet26")
    bm = model.block_map()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ratios = nib.perturb_block(model, bm, "block2", 0.5, seed=3)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all(n.startswith("layer2.") for n in changed)
    assert changed == {n for n, r in ratios.items() if r > 0}
    big = [r for n, r in ratios.items() if before[n].numel() >= 500]
    assert big and all(abs(r - 0.5) < 0.1 for r in big)


@settings(max_examples=10, deadline=None)
@given(level=st.floats(0.0, 3.0), seed=st.integers(0, 2**31), block=st.sampled_from(
    ["block1", "block2", "block3", "head"]))
def test_perturbation_is_reproducible_and_zero_level_is_identity(level, seed, block):
    a, b = tiny("resnet26"), tiny("resnet26")
    nib.perturb_block(a, a.block_map(), block, level, seed)
    nib.perturb_block(b, b.block_map(), block, level, seed)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                  b.state_dict().values()))
    c = tiny("resnet26")
    nib.perturb_block(c, c.block_map(), block, 0.0, seed)
    assert all(torch.equal(x, y) for x, y in zip(c.state_dict().values(),
                                                  tiny("resnet26").state_dict().values()))


def test_bad_block_or_level_is_refused():
    model = tiny("resnet26")
    with pytest.raises(ValueError, match="unknown block 'block9'"):
        nib.perturb_block(model, model.block_map(), "block9", 1.0, 0)
    with pytest.raises(ValueError, match="noise level must be >= 0"):
        nib.perturb_block(model, model.block_map(), "head", -1.0, 0)


def _recs(accs: dict[str, list[float]], perturbed: str = "block1") -> list[dict]:
    blocks = ["block1", "block2", "head"]
    return [{"task": "noise-in-block", "variant": perturbed, "tuned": t, "method": "fixed",
             "seed": s, "status": "ok", "test_metric": v, "blocks": blocks, "protocol": {},
             "bn": "eval", "checkpoint": "c.pt"}
            for t, vals in accs.items() for s, v in enumerate(vals)]


GOOD = {"block1": [0.80, 0.82, 0.81], "block2": [0.60, 0.63, 0.61], "head": [0.30, 0.31, 0.33],
        "all": [0.70, 0.71, 0.69]}


def test_verdict_holds_when_the_perturbed_block_wins_and_fails_when_another_does():
    [v] = nib.noise_verdicts(_recs(GOOD))
    assert v["verdict"] == "holds" and v["best"] == "block1"
    assert v["comparisons"]["all"]["diff"] == pytest.approx(0.11)
    # mutation: the records say block2 was perturbed -> block1 beats it -> fails
    [v] = nib.noise_verdicts(_recs(GOOD, perturbed="block2"))
    assert v["verdict"] == "fails" and "block1" in v["reason"]
    # mutation: a noisy comparison is inconclusive
    noisy = {**GOOD, "all": [0.95, 0.60, 0.75]}
    assert nib.noise_verdicts(_recs(noisy))[0]["verdict"] == "inconclusive"


def test_paired_verdict_needs_two_seeds_and_names_what_is_missing():
    assert paired_verdict({"a": {0: 1.0}, "b": {0: 0.0}}, "a", ["b"])["verdict"] == "inconclusive"
    v = paired_verdict({"b": {0: 0.0}}, "a", ["b"])
    assert v["verdict"] == "not judged" and v["missing"] == ["a"]


def test_tasks_are_registered_with_blocks_as_variants():
    spec = get_task("noise-in-block")
    assert spec.variants == ("block1", "block2", "block3", "head")
    assert spec.model_transform is not None and spec.task_verdicts is nib.noise_verdicts
    assert get_task("noise-in-block-cifar10").needs_data


def test_synthetic_source_reader_is_source_data_offset_from_pretraining():
    req = LoadRequest(data_root=Path("."), variant="block2", train_n=10, val_per_class=1,
                      test_per_class=1)
    sp = nib.load_synthetic_source(req)
    assert sp.info["variant"] == "source" and sp.info["perturbed_block"] == "block2"
    from realdata.data.synthetic import load_synthetic
    pre = load_synthetic(LoadRequest(data_root=Path("."), variant="source", train_n=10,
                                     val_per_class=1, test_per_class=1))
    assert not torch.equal(sp.train.images, pre.train.images)


def _tiny_noise_task(tmp_path: Path) -> list[str]:
    from realdata.data.synthetic import BACKBONE_KWARGS

    base = get_task("synthetic")
    spec = nib.noise_task("tinynoise", base, nib.load_synthetic_source, protocol=Protocol(
        epochs=1, lrs=(1e-2,), train_n=20, val_per_class=2, test_per_class=10, batch_size=10))
    register_task(spec, replace_existing=True)
    ckpt = tmp_path / "src.pt"
    with torch.random.fork_rng():
        torch.manual_seed(0)
        from realdata.models import build_backbone
        torch.save(build_backbone("resnet26", 10, **BACKBONE_KWARGS).state_dict(), ckpt)
    return ["--task", "tinynoise", "--checkpoint", str(ckpt), "--seeds", "0", "1", "--methods",
            "--no-progress", "--threads", "1", "--variants", "block1", "head", "--tuned", "none",
            "block1", "head", "all", "--out", str(tmp_path / "out")]


def test_cli_end_to_end_writes_records_matrix_and_verdicts(tmp_path, capsys):
    assert bench.main(_tiny_noise_task(tmp_path)) == 0
    out = tmp_path / "out"
    recs = [json.loads(x) for x in (out / "runs.jsonl").read_text().splitlines()]
    assert len(recs) == 2 * 2 * 4
    assert {r["transform_info"]["perturbed_block"] for r in recs} == {"block1", "head"}
    # the untuned perturbed model differs between perturbed blocks (the transform really ran)
    none = {(r["variant"], r["seed"]): r["test_metric"] for r in recs if r["tuned"] == "none"}
    assert len(set(none.values())) > 1
    tv = json.loads((out / "task_verdicts.json").read_text())
    assert [v["perturbed"] for v in tv] == ["block1", "head"]
    assert all(v["verdict"] in ("holds", "fails", "inconclusive") for v in tv)
    assert "tinynoise/block1:" in capsys.readouterr().out
    from paper_figures.realdata import main as fig
    assert fig(["--results", str(out), "--figure", "noise"]) == 0
    table = (out / "figures" / "noise_in_block.md").read_text()
    assert "| block1 |" in table and "| head |" in table
    assert (out / "figures" / "noise_in_block_tinynoise.png").is_file()


def test_noise_figure_on_a_folder_without_noise_records_exits_2(tmp_path, capsys):
    (tmp_path / "runs.jsonl").write_text(json.dumps({"id": "x", "task": "t"}) + "\n")
    from paper_figures.realdata import main as fig
    assert fig(["--results", str(tmp_path), "--figure", "noise"]) == 2
    assert "no noise-in-block records" in capsys.readouterr().err


def test_cifar10_noise_task_runs_on_the_cifar10_layout_and_refuses_a_wrong_root(tmp_path, capsys):
    from realdata.models import build_backbone
    from tests.realdata.data.fixtures import FIXTURE_PROTOCOL, TINY_BACKBONE, build_task_fixture

    fx = build_task_fixture("cifarflip", tmp_path / "data")
    kwargs = TINY_BACKBONE["resnet26"]
    ckpt = tmp_path / "source.pt"
    torch.save(build_backbone("resnet26", 10, **kwargs).state_dict(), ckpt)
    proto = [x for k, v in FIXTURE_PROTOCOL["cifarflip"].items()
             for x in (f"--{k.replace('_', '-')}", str(v))]
    argv = ["--task", "noise-in-block-cifar10", "--checkpoint", str(ckpt), "--seed", "0",
            "--backbone-kwargs", json.dumps(kwargs), "--epochs", "1", "--lrs", "1e-2",
            "--methods", "--no-progress", "--variants", "block2", "--tuned", "none", "block2",
            *proto]
    out = tmp_path / "out"
    assert bench.main([*argv, "--data-root", str(fx["data_root"]), "--out", str(out)]) == 0
    recs = [json.loads(x) for x in (out / "runs.jsonl").read_text().splitlines()]
    assert {r["data_info"]["labels"] for r in recs} == {"true"} and len(recs) == 2
    assert bench.main([*argv, "--data-root", str(tmp_path / "nowhere"), "--out",
                       str(tmp_path / "o2")]) == 2
    assert "cifar-10-batches-py" in capsys.readouterr().err


def test_the_noise_level_is_part_of_the_run_id_and_the_settings():
    base = get_task("synthetic")
    cfg = bench._config_from_args(bench._parser().parse_args(
        ["--task", "synthetic", "--out", "o", "--seed", "0"]))
    units = []
    for level in (1.0, 0.5):
        spec = nib.noise_task("levelnoise", base, nib.load_synthetic_source, level=level)
        plan = bench.TaskPlan(
            task="levelnoise", protocol=spec.protocol, variants=("head",), blocks=("head",),
            options=(("head", "fixed"),), checkpoint=bench.SourceCheckpoint("c.pt", "0"),
            fingerprints={("head", 0): "f"}, reader_version="1",
            model_transform=bench._transform_id(spec))
        unit = bench.build_units(cfg, [plan])[0]
        assert unit.id_fields()["extra_id"]["model_transform"]["noise_level"] == level
        units.append(unit)
    assert units[0].id != units[1].id and units[0].settings != units[1].settings


def test_a_transform_without_run_id_is_refused():
    from dataclasses import replace

    spec = nib.noise_task("levelnoise", get_task("synthetic"), nib.load_synthetic_source)

    def bare(model, request):
        return {}

    with pytest.raises(ValueError, match="run_id"):
        bench._transform_id(replace(spec, model_transform=bare))
    assert bench._transform_id(get_task("synthetic")) == ()
