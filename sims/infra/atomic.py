"""Atomic file writes: readers see the old or the new file, never a partial one.

A temporary file is written in the target's folder, ``fsync``-ed and ``os.replace``-d over the
target; the folder is then ``fsync``-ed so the rename survives a crash. Every file gets mode
``0o666`` minus the umask, like a file created by ``open``. :func:`atomic_path` gives writers that
need a file name (``numpy`` memory maps, ``torch.save`` of large objects) the same guarantees.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sims.infra.ids import to_jsonable

__all__ = ["atomic_path", "write_bytes_atomic", "write_json_atomic", "write_text_atomic"]


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    """The process umask (read without changing it for longer than one call)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path, mode: int = 0o666) -> Iterator[Path]:
    """Yield a fresh temporary path next to ``path``; on success it replaces ``path`` atomically.

    Write the whole file to the yielded path (any writer that takes a file name). When the block
    ends without an exception, the file is ``fsync``-ed, given ``mode`` minus the umask, and
    ``os.replace``-d over ``path``; on an exception it is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDWR)
        try:
            os.fchmod(fd, mode & ~_umask())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def write_bytes_atomic(path: str | Path, data: bytes, mode: int = 0o666) -> None:
    """Write ``data`` to ``path`` atomically: temp file in its folder, fsync, replace.

    The file gets ``mode`` minus the umask, like a file created by ``open`` (``mkstemp``'s
    private 0600 would hide results from others sharing the folder).

    Example:
        >>> import pathlib, tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     write_bytes_atomic(pathlib.Path(tmp) / "a.bin", b"ok")
        ...     (pathlib.Path(tmp) / "a.bin").read_bytes()
        b'ok'
    """
    with atomic_path(path, mode) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`write_bytes_atomic`).

    Example:
        >>> import pathlib, tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     write_text_atomic(pathlib.Path(tmp) / "a.txt", "hello")
        ...     (pathlib.Path(tmp) / "a.txt").read_text()
        'hello'
    """
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write ``obj`` (via :func:`to_jsonable`) as indented JSON to ``path`` atomically.

    Example:
        >>> import json, pathlib, tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     write_json_atomic(pathlib.Path(tmp) / "a.json", {"b": 1, "a": (1, 2)})
        ...     json.loads((pathlib.Path(tmp) / "a.json").read_text())
        {'a': [1, 2], 'b': 1}
    """
    text = json.dumps(to_jsonable(obj), indent=2, sort_keys=True) + "\n"
    write_text_atomic(path, text)
