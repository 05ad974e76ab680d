"""``python -m sims.sweep`` under faults: two sweeps into one folder, kill -9 of the parent, bad
input (one line, exit 2), a finished folder's config.json never rewritten by a failing run, and
output files that respect the umask."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import sims.infra.executors as executors
from sims.sweep import main
from tests.infra.cli_faults import OUT_CASES, assert_refused_keeps_folder, one_line_error
from tests.infra.test_executor_faults import kill_parent_and_check_workers

REPO = Path(__file__).resolve().parents[2]

#: A sweep of two shape groups (seconds after JAX's start-up).
SMALL = ["--dims", "8", "--widths", "2", "--n-ratios", "1", "--seeds", "2", "--steps", "50",
         "--n-records", "2", "--tunes", "none,full"]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished sweep folder, written under umask 022 (figures: tests/paper_figures)."""
    out = tmp_path_factory.mktemp("finished") / "out"
    old = os.umask(0o022)
    try:
        assert main([*SMALL, "--out", str(out), "--executor", "serial", "--quiet",
                     "--no-figures"]) == 0
    finally:
        os.umask(old)
    return out


def test_outputs_respect_the_umask(finished: Path) -> None:
    files = [p for p in finished.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"runs.jsonl", "config.json", "summary.csv", "verdicts.json", ".lock"} <= names
    modes = {str(p.relative_to(finished)): oct(p.stat().st_mode & 0o777) for p in files}
    assert set(modes.values()) == {"0o644"}, modes
    assert not [p for p in files if p.name.endswith(".tmp")]


def test_two_sweeps_into_one_folder_at_once_one_is_refused_no_duplicate(tmp_path: Path) -> None:
    out = tmp_path / "shared"
    argv = [sys.executable, "-m", "sims.sweep", *SMALL, "--out", str(out), "--executor", "serial",
            "--quiet", "--no-figures"]
    procs = [subprocess.Popen(argv, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=600), *p.communicate()) for p in procs]
    codes = sorted(rc for rc, _, _ in results)
    assert codes == [0, 2], results
    err = next(e for rc, _, e in results if rc == 2).strip()
    assert err.startswith("error:") and "in use by another run" in err and "\n" not in err, err
    assert "Traceback" not in err
    won = next(o for rc, o, _ in results if rc == 0)
    n = int(re.search(r"(\d+) records \((\d+) new", won).group(2))
    ids = [json.loads(x)["id"] for x in (out / "runs.jsonl").read_text().splitlines()]
    assert n > 0 and len(ids) == n == len(set(ids))


def test_kill_parent_leaves_no_pool_worker(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "sims.sweep", *SMALL, "--steps", "200000", "--out",
            str(tmp_path / "o"), "--executor", "processes", "--workers", "2", "--quiet",
            "--no-figures"]
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(REPO)
    try:
        kill_parent_and_check_workers(argv, 2, tmp_path)
    finally:
        if old is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = old


# ------------------------------------------------------------------ bad input, config.json kept




def _bad_line(out: Path, raw: bytes) -> list[str]:
    with (out / "runs.jsonl").open("ab") as fh:
        fh.write(raw)
    return []


def _toml(tmp: Path, raw: bytes) -> list[str]:
    path = tmp / "bad.toml"
    path.write_bytes(raw)
    return ["--config", str(path)]


#: case -> (prepare(out, tmp) -> extra argv, what the one-line error must say). ``out`` is a copy
#: of a finished folder unless the case replaces it.
CASES: dict[str, tuple[Callable[[Path, Path], list[str]], str]] = {
    "runs.jsonl not UTF-8": (lambda o, t: _bad_line(o, b'{"id": "\xff"}\n'),
                             r"runs\.jsonl:{n}: not UTF-8"),
    "runs.jsonl not JSON": (lambda o, t: _bad_line(o, b"{oops\n"), r"runs\.jsonl:{n}: not a JSON"),
    "runs.jsonl is a folder": (lambda o, t: [(o / "runs.jsonl").unlink(),
                                             (o / "runs.jsonl").mkdir()] and [],
                               r"runs\.jsonl is not a regular file"),
    "TOML syntax": (lambda o, t: _toml(t, b"seeds = 2\ndims = [8, x]\nsteps = 5\n"),
                    r"bad\.toml is not valid TOML: .*line 2"),
    "TOML cut short": (lambda o, t: _toml(t, b"seeds = 2\ndims = [8,\n"),
                       r"bad\.toml is not valid TOML: .*end of document.*line 2"),
    "TOML not UTF-8": (lambda o, t: _toml(t, b"seeds = 2\n# \xff\n"),
                       r"bad\.toml is not UTF-8 text \(line 2\)"),
    "bad flag value": (lambda o, t: ["--seeds", "0"], "seeds"),
    "unreachable scheduler": (lambda o, t: ["--executor", "dask", "--scheduler",
                                            "tcp://127.0.0.1:9"], "cannot reach the dask scheduler"),
    "bad slurm parameter": (lambda o, t: ["--executor", "slurm", "--slurm", "oops"], "KEY=VALUE"),
    "folder in use": (lambda o, t: [], "in use by another run"),
}





@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_keeps_the_finished_folder(
        case: str, finished: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(executors, "SCHEDULER_TIMEOUT_S", 1.0)
    assert_refused_keeps_folder(lambda a: main([*SMALL, *a, "--quiet", "--no-figures"]), case,
                                CASES, finished, tmp_path, capsys)


@pytest.mark.parametrize("case", list(OUT_CASES))
def test_unusable_out_is_one_line(case: str, tmp_path: Path, capsys) -> None:
    make, match = OUT_CASES[case]
    assert main([*SMALL, "--out", str(make(tmp_path)), "--quiet", "--no-figures"]) == 2
    one_line_error(capsys, match)


def test_bad_input_from_the_command_line_prints_no_traceback(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    proc = subprocess.run([sys.executable, "-m", "sims.sweep", "--out", str(tmp_path / "f" / "o")],
                          cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error:") and proc.stderr.count("\n") == 1, proc.stderr
