"""scripts/stall_probe.py: an idle process tree counts as stalled (and is dumped and killed), a busy
one runs to its end, a nonzero exit is a failure; CPU of children counts."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "stall_probe.py"
spec = importlib.util.spec_from_file_location("stall_probe", SCRIPT)
probe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(probe)

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")

BUSY = "import time\nt = time.time()\nwhile time.time() - t < {s}: pass\n"


def _attempt(tmp_path: Path, code: str, stall_s: float = 1.5) -> dict:
    return probe.run_attempt([sys.executable, "-c", code], stall_s=stall_s, cpu_pct=2.0,
                             timeout_s=30.0, poll_s=0.2, dump_path=tmp_path / "dump.txt",
                             log_path=tmp_path / "log.txt")


def test_an_idle_process_is_stalled_dumped_and_killed(tmp_path: Path) -> None:
    row = _attempt(tmp_path, "import time; time.sleep(60)")
    assert row["outcome"] == "stalled" and row["rc"] == -9  # killed by the watchdog, not the timeout
    assert row["dump"] == str(tmp_path / "dump.txt")
    assert "== pid" in (tmp_path / "dump.txt").read_text()


CHILD = BUSY.format(s=3)
PARENT = f"import subprocess, sys; sys.exit(subprocess.call([sys.executable, '-c', {CHILD!r}]))"


def test_a_busy_child_keeps_its_idle_parent_alive(tmp_path: Path) -> None:
    row = _attempt(tmp_path, PARENT)
    assert row["outcome"] == "ok" and row["rc"] == 0 and row["cpu_s"] > 1.0


def test_counting_the_parent_alone_would_call_the_same_run_stalled(tmp_path: Path,
                                                                   monkeypatch) -> None:
    monkeypatch.setattr(probe, "tree", lambda root: [root])  # fault: children ignored
    assert _attempt(tmp_path, PARENT)["outcome"] == "stalled"


def test_a_nonzero_exit_is_a_failure(tmp_path: Path) -> None:
    assert _attempt(tmp_path, "raise SystemExit(3)")["outcome"] == "failed"


def test_main_writes_one_json_line_per_attempt_with_fresh_folders(tmp_path: Path) -> None:
    log = tmp_path / "probe.jsonl"
    code = "import os, sys; os.makedirs(sys.argv[1]); os.makedirs(sys.argv[2])"
    probe.main(["--label", "x", "--attempts", "2", "--stall-s", "5", "--json", str(log),
                "--dumps", str(tmp_path / "d"), "--", sys.executable, "-c", code, "{out}", "{cache}"])
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["label"], r["attempt"], r["outcome"]) for r in rows] == [("x", 1, "ok"), ("x", 2, "ok")]
