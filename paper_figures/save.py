"""Save a matplotlib figure atomically (rendered in memory, then ``sims.infra.atomic``)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from sims.infra.atomic import write_bytes_atomic

__all__ = ["save_figure"]


def save_figure(fig: Any, path: str | Path, dpi: int = 150) -> Path:
    """Render ``fig`` in the format of ``path``'s suffix (``png``, ``pdf``, ...) and write it
    atomically with mode ``0o666`` minus the umask; returns ``path``."""
    path = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, dpi=dpi, format=path.suffix.lstrip("."))
    write_bytes_atomic(path, buf.getvalue())
    return path
