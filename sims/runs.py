"""Run records and their append-only store (shared by ``sims`` and ``realdata``).

A sweep writes one JSON object per run to ``OUT/runs.jsonl``. Every record carries an ``"id"``
(:func:`stable_id` of the run's config fields and the package version), so a re-run of the same
sweep skips what is already there and an interrupted sweep resumes with nothing lost and nothing
duplicated.

Durability rules:

* :meth:`RunStore.append` writes a whole batch of records with one locked ``write`` followed by
  ``fsync``. A crash can therefore leave at most one torn (newline-less) last line; readers ignore
  it and the next append truncates it away before writing.
* :func:`write_json_atomic` / :func:`write_text_atomic` write a temporary file in the target's
  folder, ``fsync`` it and ``os.replace`` it over the target, so readers see the old or the new
  file, never a partial one.
"""

from __future__ import annotations

import dataclasses
import fcntl
import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "RunStore",
    "canonical_json",
    "package_version",
    "stable_id",
    "to_jsonable",
    "write_json_atomic",
    "write_text_atomic",
]

_DIST_NAME = "surgical-finetuning"


@functools.lru_cache(maxsize=1)
def package_version() -> str:
    """Version of the installed ``surgical-finetuning`` distribution.

    Falls back to ``[project].version`` of the repository's ``pyproject.toml`` when the package
    is used from a source checkout without being installed.
    """
    try:
        return metadata.version(_DIST_NAME)
    except metadata.PackageNotFoundError:
        pass
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover - python 3.10
        tomllib = None
    if tomllib is not None and pyproject.is_file():
        with pyproject.open("rb") as fh:
            return str(tomllib.load(fh)["project"]["version"])
    return "0+unknown"  # pragma: no cover


def to_jsonable(obj: Any) -> Any:
    """Convert ``obj`` to plain JSON types (dict, list, str, int, float, bool, None).

    Handles dataclass instances (as dicts of their fields), mappings (keys become ``str``),
    tuples/lists/sets (lists; sets sorted), ``pathlib.Path`` (``str``), NumPy/JAX scalars and
    arrays (``.item()`` / nested lists) and enum-like objects with a ``value``. Floats are kept,
    including non-finite ones (Python's ``json`` writes them as ``NaN``/``Infinity``).

    Raises:
        TypeError: for objects of any other type (say which).
    """
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (int, float)) and not isinstance(obj, bool):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted((to_jsonable(v) for v in obj), key=canonical_json)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, np.ndarray) or hasattr(obj, "__array__"):
        arr = np.asarray(obj)
        return arr.item() if arr.ndim == 0 else arr.tolist()
    raise TypeError(f"to_jsonable: cannot convert object of type {type(obj).__name__!r} to JSON")


def canonical_json(obj: Any) -> str:
    """Canonical JSON text of ``obj``: sorted keys, no whitespace, after :func:`to_jsonable`."""
    return json.dumps(to_jsonable(obj), sort_keys=True, separators=(",", ":"))


def stable_id(fields: Mapping[str, Any]) -> str:
    """16 hex characters identifying a run: sha256 of canonical JSON of ``fields`` + version.

    The same fields give the same id in any process or machine; a different package version
    gives a different id (results of another version are not reused).
    """
    if not isinstance(fields, Mapping):
        raise TypeError(
            f"stable_id expects a mapping of config fields, got {type(fields).__name__}"
        )
    payload = canonical_json({"fields": fields, "package_version": package_version()})
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


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


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically: temp file in its folder, fsync, replace."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write ``obj`` (via :func:`to_jsonable`) as indented JSON to ``path`` atomically."""
    text = json.dumps(to_jsonable(obj), indent=2, sort_keys=True) + "\n"
    write_text_atomic(path, text)


class RunStore:
    """Append-only JSON-lines store of run records, ``OUT/<filename>``.

    Args:
        out_dir: folder of the sweep (created if missing).
        filename: name of the JSON-lines file inside ``out_dir``.
    """

    def __init__(self, out_dir: str | Path, filename: str = "runs.jsonl") -> None:
        if not filename or "/" in filename or filename in {".", ".."}:
            raise ValueError(f"RunStore filename must be a plain file name, got {filename!r}")
        self.out_dir = Path(out_dir)
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise ValueError(f"RunStore out_dir must be a folder, got an existing file: {out_dir}")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.out_dir / filename

    def __repr__(self) -> str:
        return f"RunStore({str(self.path)!r})"

    def _complete_lines(self) -> list[tuple[int, str]]:
        """(line number, text) of each complete line; a torn (newline-less) last line is dropped."""
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1  # everything after the last newline is torn
        text = data[:end].decode("utf-8", errors="strict")
        return [(i + 1, line) for i, line in enumerate(text.splitlines()) if line.strip()]

    def load(self) -> list[dict]:
        """All complete records, in file order.

        Raises:
            ValueError: if a complete line is not a JSON object with an ``"id"`` (corruption that
                a crash cannot produce), naming the file and line.
        """
        records = []
        for lineno, line in self._complete_lines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{self.path}:{lineno}: not a JSON record ({exc.msg})") from None
            if not isinstance(rec, dict) or "id" not in rec:
                raise ValueError(f"{self.path}:{lineno}: expected a JSON object with an 'id' field")
            records.append(rec)
        return records

    def done_ids(self) -> set[str]:
        """Ids of all complete records (a torn last line is ignored)."""
        return {rec["id"] for rec in self.load()}

    def append(self, records: Sequence[Mapping]) -> None:
        """Append ``records`` with one locked write + fsync.

        Before writing, a torn last line left by a crashed writer is truncated away.

        Raises:
            ValueError: if a record is not a mapping with a string ``"id"``.
        """
        if isinstance(records, Mapping):
            raise ValueError("RunStore.append expects a sequence of records, got a single mapping")
        lines = []
        for rec in records:
            if not isinstance(rec, Mapping) or not isinstance(rec.get("id"), str):
                raise ValueError("every record must be a mapping with a string 'id' field")
            line = json.dumps(to_jsonable(rec), sort_keys=True, separators=(",", ":"))
            lines.append(line + "\n")
        if not lines:
            return
        payload = "".join(lines).encode("utf-8")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._repair_torn_tail(fd)
            view = memoryview(payload)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)  # closing releases the lock

    @staticmethod
    def _repair_torn_tail(fd: int) -> None:
        """Truncate everything after the last newline (a torn record). Caller holds the lock."""
        size = os.fstat(fd).st_size
        if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
            return
        block = 1 << 16
        pos = size
        while pos > 0:
            start = max(0, pos - block)
            chunk = os.pread(fd, pos - start, start)
            idx = chunk.rfind(b"\n")
            if idx >= 0:
                os.ftruncate(fd, start + idx + 1)
                return
            pos = start
        os.ftruncate(fd, 0)

