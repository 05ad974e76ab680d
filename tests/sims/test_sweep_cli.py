"""python -m sims.sweep end to end on a tiny grid: outputs, verdicts, resume, bad input, help."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from sims.sweep import build_parser, main
from tests.sims.tiny import TINY_FLAGS

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sweep")
    assert main([*TINY_FLAGS, "--out", str(out), "--executor", "serial", "--quiet",
                 "--strict"]) == 0
    return out


def test_outputs_and_verdicts(sweep_dir: Path, capsys) -> None:
    for name in ("runs.jsonl", "config.json", "summary.csv", "verdicts.json"):
        assert (sweep_dir / name).is_file(), name
    cfg = json.loads((sweep_dir / "config.json").read_text())["config"]
    assert cfg["seeds"] == 6 and cfg["dims"] == [8]
    verdicts = {v["claim"]: v for v in json.loads((sweep_dir / "verdicts.json").read_text())[
        "verdicts"]}
    assert set(verdicts) == {f"C{i}" for i in range(1, 8)}
    for v in verdicts.values():
        assert v["verdict"] in ("holds", "holds (limits only)", "not checked"), v
        assert v["held"] <= v["checked"]
    assert verdicts["C5"]["tests"] and "binomial" in verdicts["C5"]["statistical_test"]
    rows = list(csv.DictReader((sweep_dir / "summary.csv").read_text().splitlines()))
    assert rows and {"mean_target_loss", "se_target_loss", "method"} <= rows[0].keys()
    assert {r["method"] for r in rows} == {"none", "oracle", "first", "last", "full"}
    # figures come from `python -m paper_figures theory` run in a subprocess
    for name in ("loss_vs_n_gaussian", "phase_sparse", "c5_success"):
        assert (sweep_dir / "figures" / f"{name}.png").is_file(), name


def test_failed_figures_print_the_command(sweep_dir: Path, monkeypatch, capsys) -> None:
    import sims.sweep as sweep

    assert sweep.figures_command(sweep_dir)[1:4] == ["-m", "paper_figures", "theory"]
    monkeypatch.setattr(sweep, "figures_command",
                        lambda out: [sys.executable, "-c", "raise SystemExit('boom')"])
    assert sweep.finish_figures(sweep.start_figures(sweep_dir)) is False
    err = capsys.readouterr().err
    assert "boom" in err and "draw them with:" in err


def test_figures_draw_while_the_records_are_judged(sweep_dir: Path, monkeypatch, capsys) -> None:
    """The figures' subprocess starts before the judging (it reads only the stored records) and
    is waited for, also when the judging fails."""
    import sims.sweep as sweep

    events, procs = [], []
    real_start, real_evaluate = sweep.start_figures, sweep.evaluate

    def start(out):
        events.append("figures started")
        procs.append(real_start(out))
        return procs[-1]

    def judge(records, cfg):
        events.append("judged")
        return real_evaluate(records, cfg)

    monkeypatch.setattr(sweep, "figures_command", lambda out: [sys.executable, "-c", "print('a.png')"])
    monkeypatch.setattr(sweep, "start_figures", start)
    monkeypatch.setattr(sweep, "evaluate", judge)
    flags = [*TINY_FLAGS, "--out", str(sweep_dir), "--executor", "serial", "--quiet"]
    assert main(flags) == 0
    assert events == ["figures started", "judged"] and procs[0].returncode == 0
    assert "figures: a.png" in capsys.readouterr().out

    def broken(records, cfg):
        raise RuntimeError("judge broke")

    monkeypatch.setattr(sweep, "evaluate", broken)
    with pytest.raises(RuntimeError, match="judge broke"):
        main(flags)
    assert procs[1].returncode == 0  # waited for, not left running
    assert "figures: a.png" in capsys.readouterr().out


def test_rerun_resumes_without_duplicates(sweep_dir: Path, capsys) -> None:
    before = (sweep_dir / "runs.jsonl").read_bytes()
    assert main([*TINY_FLAGS, "--out", str(sweep_dir), "--executor", "serial", "--quiet",
                 "--no-figures"]) == 0
    assert "(0 new" in capsys.readouterr().out
    assert (sweep_dir / "runs.jsonl").read_bytes() == before
    ids = [json.loads(line)["id"] for line in before.decode().splitlines()]
    assert len(ids) == len(set(ids))


def test_torn_store_resumes(sweep_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "torn"
    out.mkdir()
    lines = (sweep_dir / "runs.jsonl").read_text().splitlines(keepends=True)
    (out / "runs.jsonl").write_text("".join(lines[: len(lines) // 2]) + lines[-1][:30])
    assert main([*TINY_FLAGS, "--out", str(out), "--executor", "serial", "--quiet",
                 "--no-figures"]) == 0
    got = [json.loads(x) for x in (out / "runs.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in got) == sorted(json.loads(x)["id"] for x in lines)
    assert "new" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "match"),
    [(["--seeds", "0"], "seeds"), (["--dims", "a,b"], "expected comma-separated"),
     (["--input-shifts", "warp:1:2"], "kind"), (["--slurm", "oops"], "KEY=VALUE")],
)
def test_bad_input_exits_2_with_one_line(argv, match, tmp_path: Path, capsys) -> None:
    extra = ["--executor", "slurm"] if argv[0] == "--slurm" else []
    assert main([*argv, *extra, "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and match in err and "\n" not in err


def test_every_config_field_has_one_documented_flag() -> None:
    from sims.config import FIELDS, field_help

    text = " ".join(build_parser().format_help().split())
    for name in FIELDS:
        if name == "preset":
            continue
        assert f"--{name.replace('_', '-')}" in text, name
        assert " ".join(field_help(name).split())[:30] in text, name


def test_flags_reach_the_config() -> None:
    from sims.sweep import config_from_args

    args = build_parser().parse_args(["--no-merge-shapes", "--chunk", "64", "--gtol", "1e-9",
                                      "--input-shifts", "rotate:1:0.5", "--output-shifts", ""])
    cfg = config_from_args(args)
    assert (cfg.merge_shapes, cfg.chunk, cfg.gtol) == (False, 64, 1e-9)
    assert cfg.output_shifts == () and cfg.input_shifts[0].kind == "rotate"


def test_help_documents_every_flag() -> None:
    text = build_parser().format_help()
    for flag in ("--quick", "--full", "--config", "--out", "--seed", "--executor", "--scheduler",
                 "--workers", "--slurm", "--quiet", "--strict", "--no-figures", "--steps"):
        assert flag in text
    proc = subprocess.run([sys.executable, "-m", "sims.sweep", "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "--executor" in proc.stdout


def test_full_on_a_cpu_says_what_to_do_before_it_starts(tmp_path: Path, capsys) -> None:
    """--full on a CPU names the heavy d and the way out (a GPU, --max-minutes, --medium) before
    anything runs; time-boxed, or without a heavy d, it says nothing."""
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    assert main(["--full", "--out", str(not_a_folder)]) == 2  # stops at --out, after the note
    err = capsys.readouterr().err
    assert "d = [256, 1024] on a CPU" in err and "--max-minutes" in err and "--medium" in err
    assert main(["--full", "--max-minutes", "5", "--out", str(not_a_folder)]) == 2
    assert main([*TINY_FLAGS, "--out", str(not_a_folder)]) == 2
    assert "on a CPU" not in capsys.readouterr().err

