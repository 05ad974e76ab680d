"""Single-run baselines (L1-regularize, gradual unfreezing), the average-rank table and the
Auto-RGN block-weights figure, from unit level to the benchmark CLI."""

from __future__ import annotations

import json
import math

import pytest
import torch

import realdata.benchmark as bench
from paper_figures import rgn_weights
from realdata import ranks
from realdata.baselines import gradual_frozen
from realdata.data.base import LoadRequest, TargetSplits
from realdata.models import assign_parameters
from realdata.tasks import Protocol, TaskSpec, register_task
from realdata.train import FinetuneConfig, finetune
from tests.realdata.conftest import blobs, prepare_tiny_source, tiny

pytestmark = pytest.mark.usefixtures("one_thread")


def _load(req: LoadRequest) -> TargetSplits:
    return TargetSplits(blobs(req.train_n, seed=req.seed), blobs(16, seed=50), blobs(16, seed=60),
                        num_classes=4, info={"source": "generated"})



register_task(TaskSpec(
    name="tinybaselines", shift_level="input", backbone="resnet26", num_classes=4, load=_load,
    protocol=Protocol(epochs=2, lrs=(1e-2, 1e-3), train_n=32, batch_size=16),
    backbone_kwargs={"depth": 8}, needs_data=False, prepare_source=prepare_tiny_source))


def test_gradual_schedule_both_directions():
    blocks = ["b1", "b2", "b3", "head"]
    owned = {b: [f"{b}.w"] for b in blocks}
    down = [gradual_frozen("gradual-down", blocks, owned, e, every=2) for e in range(1, 9)]
    assert down[0] == down[1] == {"b1.w", "b2.w", "b3.w"}  # head first
    assert down[2] == {"b1.w", "b2.w"} and down[6] == down[7] == set()
    up = [gradual_frozen("gradual-up", blocks, owned, e, every=1) for e in range(1, 5)]
    assert up == [{"b2.w", "b3.w", "head.w"}, {"b3.w", "head.w"}, {"head.w"}, set()]


def _changed_blocks(method: str, toy_splits) -> set[str]:
    model = tiny("resnet26")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    bm = model.block_map()
    finetune(model, bm, *toy_splits, protocol=Protocol(epochs=1, lrs=(1e-2,), batch_size=16),
             config=FinetuneConfig(tuned="all", method=method, gradual_every=1), seed=0)
    owned = assign_parameters(model, bm)
    sd = model.state_dict()
    return {b for b, ns in owned.items() if any(not torch.equal(sd[n], before[n]) for n in ns)}


def test_gradual_first_epoch_trains_only_the_end_block(toy_splits):
    assert _changed_blocks("gradual-down", toy_splits) == {"head"}
    assert _changed_blocks("gradual-up", toy_splits) == {"block1"}
    assert _changed_blocks("fixed", toy_splits) == {"block1", "block2", "block3", "head"}


def test_l1_grid_selection_and_strength_pulls_to_source(toy_splits):
    dist = {}
    for lam in (1e-6, 1.0):
        model = tiny("resnet26")
        src = {k: v.detach().clone() for k, v in model.named_parameters()}
        res = finetune(model, model.block_map(), *toy_splits,
                       protocol=Protocol(epochs=2, lrs=(1e-2,), batch_size=16),
                       config=FinetuneConfig(method="l1", l1_strengths=(lam,)), seed=0)
        assert res.best_l1 == lam
        dist[lam] = sum(float((p.detach() - src[n]).abs().sum())
                        for n, p in model.named_parameters())
    assert dist[1.0] < 0.5 * dist[1e-6]
    model = tiny("resnet26")
    res = finetune(model, model.block_map(), *toy_splits,
                   protocol=Protocol(epochs=1, lrs=(1e-2, 1e-3), batch_size=16),
                   config=FinetuneConfig(method="l1", l1_strengths=(1e-4, 1e-2)), seed=0)
    assert sorted((t.lr, t.l1) for t in res.traces) == [(1e-3, 1e-4), (1e-3, 1e-2),
                                                         (1e-2, 1e-4), (1e-2, 1e-2)]
    best = max((v, -i) for i, t in enumerate(res.traces) for v in t.val_metric)
    assert res.val_metric == best[0] and res.best_l1 in (1e-4, 1e-2)


def test_l1_diverging_strength_is_excluded_not_its_lr(toy_splits):
    """A strength whose loss overflows is recorded as diverged (its pair excluded); the other
    strength at the same lr stays a candidate and is selected."""
    model = tiny("resnet26")
    res = finetune(model, model.block_map(), *toy_splits,
                   protocol=Protocol(epochs=2, lrs=(1e-2,), batch_size=16),
                   config=FinetuneConfig(method="l1", l1_strengths=(1e-4, 1e38)), seed=0)
    by = {t.l1: t for t in res.traces}
    assert by[1e38].error is not None and "non-finite" in by[1e38].error
    assert by[1e-4].error is None and len(by[1e-4].val_metric) == 2
    assert res.status == "ok" and res.best_l1 == 1e-4
    assert res.val_metric == max(by[1e-4].val_metric)


@pytest.mark.parametrize("bad", [(0.0,), (-1e-3,), (float("nan"),)])
def test_nonpositive_l1_strength_refused(bad):
    with pytest.raises(ValueError, match="positive finite"):
        FinetuneConfig(method="l1", l1_strengths=bad)


def test_cli_bad_l1_strength_exit_2(tmp_path, capsys):
    rc = bench.main(["--task", "tinybaselines", "--out", str(tmp_path), "--methods", "l1",
                     "--l1-strengths", "0", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error:") and err.count("\n") == 1
    assert not (tmp_path / "runs.jsonl").exists()


def test_baselines_through_cli_ranks_and_rgn_figure(tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--task", "tinybaselines", "--seeds", "0", "1", "--no-progress", "--tuned", "all",
            "--methods", "rgn", "l1", "gradual-down", "gradual-up", "--l1-strengths", "1e-4",
            "1e-2", "--out", str(out)]
    assert bench.main(argv) == 0
    recs = [json.loads(x) for x in (out / "runs.jsonl").read_text().splitlines()]
    assert sorted({r["method"] for r in recs}) == ["fixed", "gradual-down", "gradual-up", "l1",
                                                   "rgn"]
    assert all(r["status"] == "ok" for r in recs)
    l1 = [r for r in recs if r["method"] == "l1"]
    assert all(r["extra_id"]["l1"]["strengths"] == [1e-4, 1e-2] and r["best_l1"] in (1e-4, 1e-2)
               for r in l1)
    # every (lr, strength) pair is a selection candidate with its own validation curve
    assert all(len(r["val_curves"]) == 2 * len(r["protocol"]["lrs"]) for r in l1)
    assert all(r["extra_id"]["gradual_every"] == "epochs // blocks" for r in recs
               if "gradual" in r["method"])
    assert all(r["best_l1"] is None for r in recs if r["method"] != "l1")
    # a method's own parameters are not part of the benchmark setting: one setting per folder
    assert len({r["settings"] for r in recs}) == 1 and len({r["id"] for r in recs}) == len(recs)
    rgn = [r for r in recs if r["method"] == "rgn"]
    for r in rgn:  # the largest multiplier is exactly 1, so some block mean is > 0 and <= 1
        w = r["rgn_block_weights"]
        assert list(w) == r["blocks"] and all(0 < x <= 1 for x in w.values())
    capsys.readouterr()
    assert ranks.main([str(out)]) == 0
    text = capsys.readouterr().out
    for m in ("all", "auto-rgn", "l1", "gradual-down", "gradual-up"):
        assert m in text
    assert (out / "ranks.csv").read_text().startswith("method,n_tasks,avg_rank")
    assert rgn_weights.main(["--results", str(out)]) == 0
    assert (out / "figures" / "rgn_weights.png").stat().st_size > 3000


def _row(task, tuned, acc, rel=0.0, se=0.0):
    return {"task": task, "shift": "", "tuned": tuned, "mean_acc": acc, "rel_vs_all": rel,
            "rel_se": se}


def test_average_ranks_with_ties_and_missing_methods():
    rows = [_row("a", "all", 0.5), _row("a", "auto-rgn", 0.7), _row("a", "l1", 0.5),
            _row("a", "none", 0.9),  # not a single-run method: ignored
            _row("b", "all", 0.8), _row("b", "auto-rgn", 0.6), _row("b", "gradual-up", 0.1),
            _row("c", "all", 0.3)]  # only one method: not ranked
    per = ranks.task_ranks(rows)
    assert per == {("a", ""): {"all": 2.5, "auto-rgn": 1.0, "l1": 2.5},
                   ("b", ""): {"all": 1.0, "auto-rgn": 2.0, "gradual-up": 3.0}}
    table = {r["method"]: r for r in ranks.rank_rows(rows)}
    assert table["all"]["avg_rank"] == 1.75 and table["auto-rgn"]["avg_rank"] == 1.5
    assert table["l1"]["n_tasks"] == 1
    assert [r["method"] for r in ranks.rank_rows(rows)] == ["auto-rgn", "all", "l1", "gradual-up"]
    rows.append(_row("d", "all", math.nan))
    assert ("d", "") not in ranks.task_ranks(rows)


def test_ranks_cli_bad_folder(tmp_path, capsys):
    assert ranks.main([str(tmp_path / "nothing")]) == 2
    assert "no runs.jsonl" in capsys.readouterr().err
