"""scripts/device_sims_project.py: the fit recovers a known cost model, reports its residuals, and
refuses to project from too few groups."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from sims.engine import program_keys
from sims.grid import record_id, run_methods, shape_groups
from sims.infra import RunStore, write_json_atomic
from tests.sims.tiny import TINY

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "device_sims_project.py"
spec = importlib.util.spec_from_file_location("device_sims_project", SCRIPT)
proj = importlib.util.module_from_spec(spec)
spec.loader.exec_module(proj)

SLICE = dataclasses.replace(TINY, preset="custom", dims=(8, 16), merge_shapes=False, seeds=4,
                            gd_seeds=2, steps=300, gd_steps=100, shape_buckets=(1.0,))
TARGET = dataclasses.replace(SLICE, dims=(8, 16, 32), seeds=10, gd_seeds=4)
COEF = np.array([2.0, 0.7, 3e-6, 4e-8])  # seconds per group, per program, per cf unit, per GD unit


def _steps_taken(group, activation: str, tune: str) -> int:
    return 30 + 10 * group.ks[0] + (20 if activation == "relu" else 0) + (5 if tune == "full" else 0)


def _write_slice(out: Path, groups, seconds_of, cfg=SLICE) -> None:
    """A sweep folder whose records have the fields the projection reads, groups stored in the
    order given; a group's wall time is ``seconds_of(group, programs it compiled)``."""
    write_json_atomic(out / "config.json", {"config": cfg.to_dict()})
    records = []
    for g, compiled in zip(groups, proj.new_programs(groups)):
        runs = g.runs()
        for r in runs:
            for m in run_methods(cfg, r):
                rec = {"id": record_id(cfg, r, m), **r.fields(), "method": m,
                       "wall_s": seconds_of(g, compiled) / len(runs), "steps": cfg.gd_step_budget}
                rec["steps_taken"] = _steps_taken(g, r.activation, m)
                records.append(rec)
    RunStore(out).append(records)


def _model(g, compiled: int) -> float:
    return float(proj.features(g, lambda a, t: _steps_taken(g, a, t), compiled) @ COEF)


@pytest.fixture(autouse=True)
def _no_judging(monkeypatch):
    """The synthetic records cannot be judged: no post-processing seconds."""
    monkeypatch.setattr(proj, "_post_seconds", lambda recs, cfg, res: {
        "check_s_per_record": 0.0, "load_s_per_record": 0.0, "judge_s_per_record": 0.0,
        "figures_s_per_record": 0.0, "figures_fixed_s": 0.0, "bytes_per_record": 1.0})


def test_the_fit_recovers_the_cost_model_and_projects_the_target(tmp_path: Path) -> None:
    groups = shape_groups(SLICE)
    _write_slice(tmp_path, groups[::2], _model)
    out = proj.project(tmp_path, TARGET)
    assert out["projection"] is True and "not a measurement" in out["note"]
    assert out["groups_measured"] == len(groups[::2]) and out["rms_rel_residual"] < 1e-6
    np.testing.assert_allclose(list(out["fit"].values()), COEF, rtol=1e-5)
    budget = {key: TARGET.gd_step_budget for key in proj.span_modes(TARGET)}
    keys = set().union(*(program_keys(g) for g in shape_groups(TARGET)))
    programs = sum(1 for key in keys if key[0] not in proj.CHEAP_KINDS)  # expansions, gathers
    upper = sum(float(proj.features(g, lambda a, t: budget[(a, t)]) @ COEF)
                for g in shape_groups(TARGET)) + COEF[1] * programs
    assert out["upper"]["programs"] == programs
    assert sum(out["upper"]["programs_by_kind"].values()) == len(keys)
    assert out["upper"]["runs_s"] == pytest.approx(upper, rel=1e-5)
    assert out["expected"]["runs_s"] < out["upper"]["runs_s"]
    assert set(out["expected"]["per_d_s"]) == {"8", "16", "32"}
    assert out["measured_config_differs"]["seeds"] == [4, 10]
    assert out["extrapolated_dims"] == [32] and "d = [32] extrapolated" in out["warnings"][0]
    assert not any("fitted as 0" in w for w in out["warnings"])


def test_a_wrong_cost_model_shows_in_the_residuals(tmp_path: Path) -> None:
    """Mutation: wall times that grow with d^5 per group are not fitted by the model."""
    groups = shape_groups(SLICE)
    _write_slice(tmp_path, groups[::2], lambda g, c: 1e-4 * g.d ** 5 / max(g.ns))
    assert proj.project(tmp_path, TARGET)["rms_rel_residual"] > 0.1


def test_a_work_term_the_slice_cannot_resolve_is_named(tmp_path: Path) -> None:
    _write_slice(tmp_path, shape_groups(SLICE)[::2], lambda g, c: 5.0)  # all overhead
    out = proj.project(tmp_path, TARGET)
    assert out["fit"]["s_per_gd_unit"] == 0 and any("s_per_gd_unit fitted as 0" in w
                                                     for w in out["warnings"])


def test_too_few_groups_are_refused(tmp_path: Path, capsys) -> None:
    _write_slice(tmp_path, shape_groups(SLICE)[:4], _model)
    with pytest.raises(ValueError, match="needs at least 5"):
        proj.project(tmp_path, TARGET)
    assert proj.main(["--results", str(tmp_path)]) == 2
    assert "needs at least 5" in capsys.readouterr().err
    assert proj.project(tmp_path, TARGET, s_per_program=COEF[1])["groups_measured"] == 4
    assert proj.main(["--results", str(tmp_path / "nothing")]) == 2
    assert proj.main([]) == 2 and "--coef" in capsys.readouterr().err


def test_a_given_compile_time_is_used_and_the_rest_fitted(tmp_path: Path) -> None:
    """Unbucketed groups compile as many programs each: the fit cannot separate compilation from
    the per-group overhead and says so; a given seconds-per-program fixes it."""
    plain = dataclasses.replace(SLICE, shape_buckets=())
    groups = shape_groups(plain)[::2]
    _write_slice(tmp_path, groups, _model, cfg=plain)
    assert any("not separable" in w for w in proj.project(tmp_path, TARGET)["warnings"])
    out = proj.project(tmp_path, TARGET, s_per_program=COEF[1])
    np.testing.assert_allclose(list(out["fit"].values()), COEF, rtol=1e-5)
    assert not any("not separable" in w for w in out["warnings"])


def test_bucket_choices_trade_programs_for_padded_work() -> None:
    target = dataclasses.replace(TARGET, n_ratios=(0.25, 1.0))
    budget = lambda a, t: target.gd_step_budget  # noqa: E731
    rows = {tuple(c["shape_buckets"]): c for c in proj.bucket_choices(target, COEF, budget)}
    none, one, two = rows[()], rows[(2.0,)], rows[(0.25, 1.0, 2.0)]
    assert one["programs"] < two["programs"] < none["programs"]
    assert none["gd_work"] < two["gd_work"] < one["gd_work"]
    assert none["gd_work"] == pytest.approx(sum(proj.features(g, budget)[3] for g in shape_groups(
        dataclasses.replace(target, shape_buckets=()))))


def test_coef_mode_prints_the_bucket_choices(capsys) -> None:
    assert proj.main(["--coef", "1,10,0,1e-12", "--preset", "quick"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["projection"] is True and len(out["bucket_choices"]) == len(proj.BUCKET_CHOICES)
    assert proj.main(["--coef", "1,2"]) == 2


def test_the_script_prints_one_json_object(tmp_path: Path, capsys) -> None:
    _write_slice(tmp_path, shape_groups(SLICE)[::2], _model)
    assert proj.main(["--results", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["groups_total"] == len(shape_groups(SLICE))


def _probe_rows(target, group_s, compile_s, dims=None) -> list[dict]:
    """``profile_group.py --bucketed`` lines of ``target``: one per (d, family) bucket, a group of d
    costing ``group_s(d)`` warm at the target's seeds and its bucket ``compile_s(d)`` to compile."""
    rows = []
    for g in shape_groups(target):
        if (dims is None or g.d in dims) and all(r["d"] != g.d or r["family"] != g.family
                                                 for r in rows):
            rows.append({"d": g.d, "family": g.family, "padded": list(g.padded),
                         "projected_full_group_warm_s": group_s(g.d),
                         "cold": {"wall_s": compile_s(g.d) + 0.1}, "warm_best": {"wall_s": 0.1}})
    return rows


def test_a_probe_per_bucket_projects_every_group_of_its_d(tmp_path: Path, capsys,
                                                          monkeypatch) -> None:
    target = dataclasses.replace(TARGET, shape_buckets=(2.0,))
    rows = _probe_rows(target, lambda d: d / 8, lambda d: 10.0 * d)
    groups = shape_groups(target)
    want_runs = sum(g.d / 8 for g in groups)
    want_compile = sum(10.0 * d for d in target.dims) * len(target.families)
    out = proj.probe_projection(rows, target, post_s=7.0)
    assert out["projection"] is True and out["groups"] == len(groups)
    assert out["compile_s"] == pytest.approx(want_compile)
    assert out["runs_s"] == pytest.approx(want_runs + want_compile)
    assert out["total_s"] == pytest.approx(want_runs + want_compile + 7.0)
    # one family probed: the other bucket of its d takes the same compile seconds
    gauss = [r for r in rows if r["family"] == "gaussian"]
    assert proj.probe_projection(gauss, target)["runs_s"] == pytest.approx(want_runs + want_compile)
    # the CLI reads the lines from a file (other lines, e.g. warnings, are skipped)
    path = tmp_path / "probe.jsonl"
    path.write_text("a warning\n" + "\n".join(json.dumps(r) for r in rows) + "\n")
    monkeypatch.setattr(proj, "preset", lambda name: target)
    assert proj.main(["--probe", str(path), "--post-s", "7"]) == 0
    assert json.loads(capsys.readouterr().out)["total_s"] == pytest.approx(out["total_s"])


def test_a_probe_that_misses_a_d_or_its_padding_is_refused() -> None:
    target = dataclasses.replace(TARGET, shape_buckets=(2.0,))
    with pytest.raises(ValueError, match=r"no probe of d = \[32\]"):
        proj.probe_projection(_probe_rows(target, lambda d: 1.0, lambda d: 1.0, dims=(8, 16)), target)
    rows = _probe_rows(target, lambda d: 1.0, lambda d: 1.0)
    rows[0]["padded"] = [rows[0]["padded"][0], rows[0]["padded"][1] // 2]  # not the bucket's shape
    with pytest.raises(ValueError, match="--bucketed"):
        proj.probe_projection(rows, target)
    cold_only = _probe_rows(target, lambda d: 1.0, lambda d: 1.0)
    cold_only[-1].update(warm_best=None, projected_full_group_warm_s=None)  # --repeat 0
    with pytest.raises(ValueError, match="--repeat 1"):
        proj.probe_projection(cold_only, target)


def test_profile_group_scales_the_monte_carlo_part_by_its_own_runs() -> None:
    """``scripts/profile_group.py``: the runs of a probe scale to the preset's seeds, except the
    Monte Carlo runs (a few per cell whatever the seeds), which scale by their own count."""
    spec = importlib.util.spec_from_file_location("profile_group", SCRIPT.with_name("profile_group.py"))
    pg = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pg)
    counts = {"runs": 36, "full_runs": 1200, "mc_runs": 12, "full_mc_runs": 36}
    assert pg._projected({"wall_s": 10.0, "mc_wall": 2.0}, counts) == pytest.approx(
        8.0 * 1200 / 36 + 2.0 * 3, abs=1e-3)  # rounded to ms
    assert pg._projected({"wall_s": 10.0}, counts) == pytest.approx(10.0 * 1200 / 36, abs=1e-3)
