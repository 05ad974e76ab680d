"""Append-only JSON-lines store of run records (``OUT/runs.jsonl``).

Every record carries an ``"id"`` (:func:`sims.infra.ids.stable_id` of the run's config fields
and the package version), so a re-run of the same sweep skips what is already there and an
interrupted sweep resumes with nothing lost and nothing duplicated.

:meth:`RunStore.append` writes a whole batch of records with one locked ``write`` followed by
``fsync``. A crash can therefore leave at most one torn (newline-less) last line; readers ignore
it and the next append truncates it away before writing.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from sims.infra.ids import to_jsonable

__all__ = ["RunStore"]


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

