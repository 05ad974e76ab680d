"""``paper_figures realdata``: draws from stored records only; bad input is a clear error."""

from __future__ import annotations

import dataclasses
import json

from paper_figures.realdata import main
from realdata.records import SCHEMA_VERSION, RunRecord
from sims.infra import RunStore

#: every field of the record schema (the ones a figure does not read left empty)
_EMPTY = {f.name: None for f in dataclasses.fields(RunRecord)}


def _rec(variant, level, tuned, seed, acc, method="fixed"):
    return {**_EMPTY, "schema_version": SCHEMA_VERSION, "settings": "s",
            "id": f"{variant}-{tuned}-{method}-{seed}", "task": "synthetic", "variant": variant,
            "level": level, "tuned": tuned, "method": method, "seed": seed, "status": "ok",
            "test_metric": acc, "val_metric": acc, "blocks": ["block1", "block2", "head"]}


def test_draws_figure_from_records(tmp_path):
    recs = [_rec(v, lvl, t, s, a + 0.01 * s)
            for v, lvl in (("input-noise", "input"), ("output", "output"))
            for t, a in (("block1", 0.6), ("block2", 0.5), ("head", 0.4), ("all", 0.5),
                         ("none", 0.1))
            for s in (0, 1)]
    recs.append(_rec("output", "output", "all", 0, 0.3, method="rgn"))
    RunStore(tmp_path).append(recs)
    assert main(["--results", str(tmp_path)]) == 0
    png = tmp_path / "figures" / "realdata_synthetic.png"
    assert png.is_file() and png.stat().st_size > 5000
    assert (tmp_path / "figures" / "realdata_synthetic.pdf").is_file()
    json.dumps(recs)  # records stay plain JSON


def test_records_of_an_older_schema_are_not_drawn(tmp_path, capsys):
    old = _rec("output", "output", "head", 0, 0.9)
    del old["schema_version"]
    RunStore(tmp_path).append([old])
    assert main(["--results", str(tmp_path)]) == 2
    assert "1 older ones: rerun the benchmark" in capsys.readouterr().err


def test_missing_results_exit_2(tmp_path, capsys):
    assert main(["--results", str(tmp_path / "nothing")]) == 2
    assert "no runs.jsonl" in capsys.readouterr().err
