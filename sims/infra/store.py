"""Append-only JSON-lines store of run records (``OUT/runs.jsonl``).

Every record carries an ``"id"`` (:func:`sims.infra.ids.stable_id` of the run's config fields
and the package version), so a re-run of the same sweep skips what is already there and an
interrupted sweep resumes with nothing lost and nothing duplicated.

:meth:`RunStore.append` writes a whole batch of records with one locked ``write`` followed by
``fsync``. A crash can therefore leave at most one torn (newline-less) last line; readers ignore
it and the next append truncates it away before writing.

No id is stored twice: under the file lock, :meth:`RunStore.append` first reads what other
writers appended since its last look and drops records whose id is already in the file. Readers
still de-duplicate by id (first occurrence wins), so a file written by older code reads cleanly.
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
        if self.path.exists() and not self.path.is_file():
            raise ValueError(f"{self.path} is not a regular file; move it away or choose another "
                             "folder")
        self._seen: set[str] = set()  # ids of the first _seen_lines lines (_seen_upto bytes)
        self._seen_upto = 0
        self._seen_lines = 0

    def __repr__(self) -> str:
        return f"RunStore({str(self.path)!r})"

    def _complete_lines(self) -> list[tuple[int, str]]:
        """(line number, text) of each complete line; a torn (newline-less) last line is dropped."""
        if not self.path.exists():
            return []
        return self._decode(self.path.read_bytes(), first_line=1)

    def _decode(self, data: bytes, first_line: int) -> list[tuple[int, str]]:
        """Complete lines of ``data`` (numbered from ``first_line``), each decoded as UTF-8."""
        end = data.rfind(b"\n") + 1  # everything after the last newline is torn
        lines = []
        for i, raw in enumerate(data[:end].split(b"\n")[:-1]):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ValueError(f"{self.path}:{first_line + i}: not UTF-8 text (byte "
                                 f"{exc.start + 1} of the line)") from None
            if line.strip():
                lines.append((first_line + i, line))
        return lines

    def _parse(self, lineno: int, line: str) -> dict:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{self.path}:{lineno}: not a JSON record ({exc.msg})") from None
        if not isinstance(rec, dict) or "id" not in rec:
            raise ValueError(f"{self.path}:{lineno}: expected a JSON object with an 'id' field")
        return rec

    def load(self) -> list[dict]:
        """All complete records, in file order, one per id.

        A well-behaved store holds each id once; if a file holds an id twice anyway (written by
        two writers without the folder lock, or edited by hand), the FIRST occurrence wins and
        later ones are ignored, so summaries never count a run twice.

        Raises:
            ValueError: if a complete line is not UTF-8 or not a JSON object with an ``"id"``
                (corruption that a crash cannot produce), naming the file and line.
        """
        records = []
        seen: set[str] = set()
        for lineno, line in self._complete_lines():
            rec = self._parse(lineno, line)
            if rec["id"] not in seen:
                seen.add(rec["id"])
                records.append(rec)
        return records

    def done_ids(self) -> set[str]:
        """Ids of all complete records (a torn last line is ignored)."""
        return {rec["id"] for rec in self.load()}

    def append(self, records: Sequence[Mapping]) -> int:
        """Append the records whose id is not in the file yet, with one locked write + fsync.

        Under the lock, a torn last line left by a crashed writer is truncated away, then the
        lines appended since this store last looked (by any writer) are read, so a record whose
        id is already in the file, or repeated within ``records``, is not written again.

        Returns:
            The number of records written.

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
            lines.append((rec["id"], line + "\n"))
        if not lines:
            return 0
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._repair_torn_tail(fd)
            self._refresh_seen(fd)
            new = []
            for rid, line in lines:
                if rid not in self._seen:
                    self._seen.add(rid)
                    new.append(line)
            payload = "".join(new).encode("utf-8")
            view = memoryview(payload)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
            self._seen_upto = os.fstat(fd).st_size
            self._seen_lines += len(new)
        finally:
            os.close(fd)  # closing releases the lock
        return len(new)

    def _refresh_seen(self, fd: int) -> None:
        """Add the ids of lines appended since ``_seen_upto``. Caller holds the lock."""
        size = os.fstat(fd).st_size
        if size < self._seen_upto:  # the file was truncated or replaced: read it all again
            self._seen, self._seen_upto, self._seen_lines = set(), 0, 0
        if size == self._seen_upto:
            return
        data = os.pread(fd, size - self._seen_upto, self._seen_upto)
        for lineno, line in self._decode(data, first_line=self._seen_lines + 1):
            self._seen.add(self._parse(lineno, line)["id"])
        self._seen_upto = size
        self._seen_lines += data.count(b"\n")

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

