"""Accuracy against target-set size: summary, shrink verdict (with mutations), CLI end to end."""

from __future__ import annotations

import json

import pytest

import realdata.benchmark as bench
from realdata.experiments.size_curve import size_csv, size_rows, size_verdicts
from tests.realdata.test_benchmark import ARGS  # registers the tiny task


def _recs(acc: dict[int, dict[str, list[float]]]) -> list[dict]:
    out = []
    for n, by in acc.items():
        for t, vals in by.items():
            for s, v in enumerate(vals):
                out.append({"task": "t", "variant": "v", "tuned": t, "method": "fixed",
                            "seed": s, "status": "ok", "test_metric": v, "n_train": 10 * n,
                            "num_classes_data": 10, "head_size": 10, "level": "input",
                            "blocks": ["block1", "block2", "head"],
                            "protocol": {"train_n": 10 * n, "epochs": 3}, "bn": "eval",
                            "checkpoint": "c.pt"})
    return out


SHRINKS = {
    1: {"block1": [0.50, 0.52, 0.49], "head": [0.20, 0.22, 0.21], "all": [0.30, 0.31, 0.29]},
    10: {"block1": [0.70, 0.71, 0.72], "head": [0.40, 0.42, 0.41], "all": [0.62, 0.63, 0.63]},
    50: {"block1": [0.80, 0.81, 0.82], "head": [0.50, 0.52, 0.51], "all": [0.79, 0.80, 0.82]},
}


def test_rows_group_by_size_and_pair_with_all():
    rows = size_rows(_recs(SHRINKS))
    assert [r["n_per_class"] for r in rows if r["tuned"] == "all"] == [1, 10, 50]
    r = next(r for r in rows if r["n_per_class"] == 1 and r["tuned"] == "block1")
    assert r["rel_vs_all"] == pytest.approx(0.2033, abs=1e-3) and r["n_seeds"] == 3
    assert size_csv(rows).splitlines()[0].startswith("task,shift,level,n_per_class,tuned")


def test_shrink_verdict_holds_fails_and_is_inconclusive():
    [v] = size_verdicts(_recs(SHRINKS))
    assert v["best_block"] == "block1" and v["sizes"] == [1, 10, 50]
    assert v["verdict"] == "holds" and v["shrink"] == pytest.approx(0.2033 - 0.0067, abs=1e-3)
    # mutation: the gap grows with data -> fails
    grows = {1: SHRINKS[50], 50: SHRINKS[1]}
    assert size_verdicts(_recs(grows))[0]["verdict"] == "fails"
    # mutation: one size only -> not judged; noisy gaps -> inconclusive
    assert size_verdicts(_recs({1: SHRINKS[1]}))[0]["verdict"] == "not judged"
    noisy = {1: {**SHRINKS[1], "all": [0.1, 0.6, 0.3]}, 50: SHRINKS[50]}
    assert size_verdicts(_recs(noisy))[0]["verdict"] == "inconclusive"


def test_other_settings_do_not_mix_in():
    recs = _recs(SHRINKS)
    old = [{**r, "protocol": {**r["protocol"], "epochs": 9}, "test_metric": 0.0} for r in recs]
    assert size_rows(old + recs) == size_rows(recs)


def test_cli_train_n_grid_end_to_end(tmp_path, capsys):
    out = tmp_path / "out"
    argv = [*ARGS, "--methods", "--variants", "a", "--train-n-grid", "1", "3", "--out", str(out)]
    assert bench.main(argv) == 0
    recs = [json.loads(x) for x in (out / "runs.jsonl").read_text().splitlines()]
    assert sorted({r["n_train"] for r in recs}) == [4, 12]
    assert len(recs) == 2 * 2 * 4  # sizes x seeds x tuned
    v = json.loads((out / "size_verdicts.json").read_text())
    assert v[0]["sizes"] == [1, 3] and v[0]["verdict"] in ("holds", "fails", "inconclusive")
    assert "gap to all per class size" in capsys.readouterr().out
    from paper_figures.realdata import main as fig
    assert fig(["--results", str(out), "--figure", "size"]) == 0
    assert (out / "figures" / "size_curve.png").is_file()
    assert "| tinytask | a |" in (out / "figures" / "size_curve.md").read_text()
    # resume: nothing new
    assert bench.main(argv) == 0
    assert len((out / "runs.jsonl").read_text().splitlines()) == len(recs)


def test_train_n_and_grid_together_exit_2(tmp_path, capsys):
    assert bench.main([*ARGS, "--train-n", "8", "--train-n-grid", "1", "--out",
                       str(tmp_path)]) == 2
    assert "not both" in capsys.readouterr().err
    assert bench.main([*ARGS, "--train-n-grid", "0", "--out", str(tmp_path)]) == 2


def test_size_figure_draws_the_best_block_when_it_is_the_head(tmp_path, monkeypatch):
    import paper_figures.realdata_experiments as rx
    from sims.infra import RunStore

    head_best = {n: {"block1": [0.1, 0.1], "head": [0.5 + n / 100, 0.6], "all": [0.2, 0.25]}
                 for n in (1, 10)}
    RunStore(tmp_path).append([{**r, "id": f"{i}", "settings": "s"}
                               for i, r in enumerate(_recs(head_best))])
    drawn = {}

    def keep(fig, out_dir, stem):
        drawn[stem] = [t.get_text() for ax in fig.axes if ax.get_legend()
                       for t in ax.get_legend().get_texts()]
        return []

    monkeypatch.setattr(rx, "_save", keep)
    rx.draw_size(tmp_path)
    assert drawn["size_curve"] == ["head (paired winner)", "all"], drawn
