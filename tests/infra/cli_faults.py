"""Shared cases of the CLI fault tests: unusable ``--out`` folders, the one-line error check, and a
refused re-run that must leave a finished folder byte-identical."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

from tests.infra.test_folder import unwritable_dir

#: cases where --out itself is unusable (there is no finished folder to keep).
OUT_CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "out is a file": (lambda t: (t / "f").write_text("x") and t / "f", "is a file"),
    "out under a file": (lambda t: (t / "f").write_text("x") and t / "f" / "sub",
                         "lies under the file"),
    "out unwritable": (unwritable_dir, "cannot be created|not writable"),
}


def one_line_error(capsys, match: str) -> None:
    """stderr holds exactly one ``error: ...`` line matching ``match``: no traceback, no torch
    advice about ``weights_only``."""
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and "Traceback" not in err, err
    assert "weights_only" not in err, err
    assert re.search(match, err), err


REPO = Path(__file__).resolve().parents[2]


def hold_lock(out: Path) -> subprocess.Popen:
    """A separate process holding ``out``'s folder lock until killed."""
    code = textwrap.dedent(f"""
        import time
        from sims.infra import FolderLock
        FolderLock({str(out)!r}).acquire()
        print("locked", flush=True)
        time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.readline().strip() == "locked"
    return proc


def assert_refused_keeps_folder(run_cli: Callable[[list[str]], int], case: str,
                                cases: dict[str, tuple[Callable, str]], finished: Path,
                                tmp_path: Path, capsys) -> None:
    """Copy the ``finished`` results folder, apply ``cases[case]`` (a prepare(out, tmp) returning
    extra CLI arguments, and the error's regex, where ``{n}`` is the next runs.jsonl line), run
    ``run_cli(extra + ["--out", out])`` (with the folder locked by another process for
    ``"folder in use"``): it must exit 2 with one error line and leave every file byte-identical."""
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    prepare, match = cases[case]
    match = match.replace("{n}", str(len((out / "runs.jsonl").read_text().splitlines()) + 1))
    extra = prepare(out, tmp_path)

    def files() -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != ".lock"}

    before = files()
    holder = hold_lock(out) if case == "folder in use" else None
    try:
        assert run_cli([*extra, "--out", str(out)]) == 2
    finally:
        if holder is not None:
            holder.kill()
            holder.communicate()
    one_line_error(capsys, match)
    assert files() == before  # config.json (and every other result file) byte-identical
    assert (out / "config.json").read_bytes() == (finished / "config.json").read_bytes()
