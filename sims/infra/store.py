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
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

from sims.infra.ids import to_jsonable

__all__ = ["RunStore"]


#: Bytes before the index's end that must be unchanged for the index to stay valid.
TAIL_BYTES = 256


def _tail(fh: BinaryIO, upto: int) -> bytes:
    """The ``TAIL_BYTES`` bytes of ``fh`` before offset ``upto`` (fewer near the start); leaves
    ``fh`` at ``upto``."""
    start = max(0, upto - TAIL_BYTES)
    fh.seek(start)
    data = fh.read(upto - start)
    fh.seek(upto)
    return data


def _share_strings(rec: dict, shared: dict[str, str], key_sets: dict[tuple, tuple]) -> dict:
    """``rec`` with its keys and its top-level string values other than ``"id"`` replaced by the
    equal string already in ``shared`` (added if new), the keys through ``key_sets`` (a record's
    key tuple -> its shared keys): one object per distinct string across the records of a load
    instead of one per record and field (``json.loads`` makes new ones per line). On sims records
    this halves their memory (``scripts/bench_store.py``)."""
    share = shared.setdefault
    for key, value in rec.items():
        if type(value) is str and key != "id":
            rec[key] = share(value, value)
    keys = tuple(rec)
    shared_keys = key_sets.get(keys)
    if shared_keys is None:
        shared_keys = key_sets[keys] = tuple(share(k, k) for k in keys)
    return dict(zip(shared_keys, rec.values()))


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
        self._forget()

    def __repr__(self) -> str:
        return f"RunStore({str(self.path)!r})"

    def _lines(self, fh: BinaryIO, first_line: int) -> Iterator[tuple[int, str, int]]:
        """(line number, text, bytes consumed) of each complete line from ``fh``'s position on,
        decoded as UTF-8 (``""`` for a blank line); a torn (newline-less) last line ends the
        iteration unread. Streams: one line is held at a time."""
        lineno = first_line - 1
        for raw in fh:
            if not raw.endswith(b"\n"):
                return  # torn: a writer died mid-record
            lineno += 1
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ValueError(f"{self.path}:{lineno}: not UTF-8 text (byte "
                                 f"{exc.start + 1} of the line)") from None
            if line.strip():
                yield lineno, line, len(raw)
            else:
                yield lineno, "", len(raw)

    def _parse(self, lineno: int, line: str) -> dict:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{self.path}:{lineno}: not a JSON record ({exc.msg})") from None
        if not isinstance(rec, dict) or "id" not in rec:
            raise ValueError(f"{self.path}:{lineno}: expected a JSON object with an 'id' field")
        return rec

    def _scan(self, fh: BinaryIO, keep: list[dict] | None) -> None:
        """Read the lines after the index (``_seen_upto``) from ``fh`` into it; when ``keep`` is a
        list, append each record whose id was not seen before to it, with its keys and string
        values (except the id) shared across records (:func:`_share_strings`)."""
        fh.seek(self._seen_upto)
        shared: dict[str, str] = {}
        key_sets: dict[tuple, tuple] = {}
        try:
            for lineno, line, size in self._lines(fh, first_line=self._seen_lines + 1):
                if line:
                    rec = self._parse(lineno, line)  # a corrupt line raises, the index stays before it
                    if rec["id"] not in self._seen:  # the first occurrence wins
                        self._seen.add(rec["id"])
                        if keep is not None:
                            keep.append(_share_strings(rec, shared, key_sets))
                self._seen_upto += size
                self._seen_lines += 1
        finally:
            self._seen_tail = _tail(fh, self._seen_upto)

    def _forget(self) -> None:
        """Empty the index: the ids of the first ``_seen_lines`` lines (``_seen_upto`` bytes, the
        last of them ``_seen_tail``) of the file with inode ``_seen_inode``."""
        self._seen: set[str] = set()
        self._seen_upto = 0
        self._seen_lines = 0
        self._seen_tail = b""
        self._seen_inode = -1

    def _sync_index(self, fh: BinaryIO) -> None:
        """Forget the index unless ``fh`` still starts with what it covers: same inode, at least
        ``_seen_upto`` bytes, and the same bytes just before that offset (a file truncated,
        replaced or rewritten in place is read again from the start)."""
        stat = os.fstat(fh.fileno())
        if (stat.st_ino != self._seen_inode or stat.st_size < self._seen_upto
                or _tail(fh, self._seen_upto) != self._seen_tail):
            self._forget()
            self._seen_inode = stat.st_ino

    def load(self) -> list[dict]:
        """All complete records, in file order, one per id.

        A well-behaved store holds each id once; if a file holds an id twice anyway (written by
        two writers without the folder lock, or edited by hand), the FIRST occurrence wins and
        later ones are ignored, so summaries never count a run twice. The file is streamed (one
        line in memory at a time) and records share their keys and repeated string values, so
        a large store costs about half the memory of plain ``json.loads`` dicts; the ids read
        are kept, so a later :meth:`done_ids` or :meth:`append` reads only what was added since.

        Raises:
            ValueError: if a complete line is not UTF-8 or not a JSON object with an ``"id"``
                (corruption that a crash cannot produce), naming the file and line.
        """
        self._forget()  # every record is returned, so every line is read
        records: list[dict] = []
        if self.path.exists():
            with self.path.open("rb") as fh:
                self._sync_index(fh)
                self._scan(fh, records)
        return records

    def done_ids(self) -> set[str]:
        """Ids of all complete records (a torn last line is ignored). Reads only the lines added
        since this store last read the file (every line on the first call, which checks each
        like :meth:`load`)."""
        if not self.path.exists():
            self._forget()
            return set()
        with self.path.open("rb") as fh:
            self._sync_index(fh)
            self._scan(fh, None)
        return set(self._seen)

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
            start = max(0, self._seen_upto - TAIL_BYTES)
            self._seen_tail = os.pread(fd, self._seen_upto - start, start)
        finally:
            os.close(fd)  # closing releases the lock
        return len(new)

    def _refresh_seen(self, fd: int) -> None:
        """Add the ids of lines appended since the index was last read. Caller holds the lock
        (``fd`` is open for appending, so moving its offset here moves no write)."""
        with os.fdopen(os.dup(fd), "rb") as fh:
            self._sync_index(fh)
            self._scan(fh, None)

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

