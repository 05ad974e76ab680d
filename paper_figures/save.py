"""Save a matplotlib figure atomically (rendered in memory, then ``sims.infra.atomic``), and the
common ending of every figure CLI (print the paths, or a one-line error with exit 2)."""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sims.infra.atomic import write_bytes_atomic

__all__ = ["print_drawn", "save_figure"]


def save_figure(fig: Any, path: str | Path, dpi: int = 150) -> Path:
    """Render ``fig`` in the format of ``path``'s suffix (``png``, ``pdf``, ...) and write it
    atomically with mode ``0o666`` minus the umask; returns ``path``."""
    path = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, dpi=dpi, format=path.suffix.lstrip("."))
    write_bytes_atomic(path, buf.getvalue())
    return path


def print_drawn(draw: Callable[[], Sequence[Path]]) -> int:
    """Run ``draw`` and print each path it wrote; a ``ValueError`` (bad results folder) becomes
    ``error: ...`` on stderr. Returns the CLI exit code (0, or 2 on bad input)."""
    try:
        paths = draw()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0
