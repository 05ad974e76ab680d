"""Shared cases of the CLI fault tests: unusable ``--out`` folders and the one-line error check."""

from __future__ import annotations

import re
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
