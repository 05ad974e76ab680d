"""Results folders: validate ``--out`` before anything is written, and one writer per folder.

:func:`check_out_dir` turns every way an output folder can be unusable (a file, under a file,
not writable, a result file that is a folder) into an :class:`InputError` naming the path.

:class:`FolderLock` holds ``OUT/.lock`` for a whole run. The lock is an exclusive ``flock`` on
that file (the kernel drops it when the holder dies, whatever the signal) and the file records the
holder's pid, host and process start time. A second run on the folder is refused with
:class:`FolderBusyError`. A lock whose recorded holder is a dead process on this host (or whose
pid now belongs to another process) is stale and taken over; a holder recorded on another host
cannot be checked, so that lock is refused with the path to delete if no run is using it. On
release the record is cleared; the empty file stays (deleting it would race with a new holder).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["LOCK_NAME", "FolderBusyError", "FolderLock", "InputError", "check_out_dir"]

LOCK_NAME = ".lock"


class InputError(ValueError):
    """Bad input a user can fix; CLIs print it as one ``error: ...`` line and exit 2."""


class FolderBusyError(InputError):
    """Another live run holds the results folder's lock."""


def check_out_dir(out: str | Path, files: Iterable[str] = ("runs.jsonl",)) -> Path:
    """Check that ``out`` can be the results folder, creating it if missing.

    Args:
        out: the folder.
        files: result files inside ``out`` that must be regular files if they exist.

    Returns:
        ``out`` as a :class:`~pathlib.Path`.

    Raises:
        InputError: ``out`` is a file, lies under a file, cannot be created or written, or one of
            ``files`` is not a regular file.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file, not a folder; give a folder path")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"--out {out} lies under the file {parent}; give a folder path")
            break
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"--out {out} cannot be created ({exc.strerror}); give a writable "
                         "folder") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise InputError(f"--out {out} is not writable; give a writable folder")
    for name in files:
        path = out / name
        if path.exists() and not path.is_file():
            raise InputError(f"{path} is not a regular file; move it away or choose another --out")
    return out


def _proc_start(pid: int) -> str | None:
    """Start time of ``pid`` in clock ticks since boot (Linux ``/proc``), else ``None``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()  # after "pid (comm) "
    return fields[19] if len(fields) > 19 else None


def _alive(pid: int, start: str | None) -> bool:
    """Whether ``pid`` is a live (non-zombie) process that started at ``start`` (if known)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: trust kill(0)
    if stat[stat.rfind(")") + 2:].startswith("Z"):
        return False
    return start is None or _proc_start(pid) in (None, start)


def _describe(holder: dict[str, Any]) -> str:
    started = holder.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if started else "?"
    return f"pid {holder.get('pid')} on {holder.get('host')}, since {when}"


class FolderLock:
    """Exclusive lock of a results folder for one run (see the module docstring).

    Use as a context manager (``with FolderLock(out): ...``) or call :meth:`acquire` and
    :meth:`release`.

    Attributes:
        path: the lock file, ``folder/.lock``.
        took_over: the stale holder record that was replaced, or ``None``.
    """

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder) / LOCK_NAME
        self.took_over: dict[str, Any] | None = None
        self._fd: int | None = None

    def __repr__(self) -> str:
        return f"FolderLock({str(self.path)!r}, held={self._fd is not None})"

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def _read(self, fd: int) -> dict[str, Any]:
        data = os.pread(fd, 1 << 16, 0)
        try:
            holder = json.loads(data.decode("utf-8")) if data.strip() else {}
        except (UnicodeDecodeError, json.JSONDecodeError):
            return {}  # a torn record: its writer died while writing, so nobody holds it
        return holder if isinstance(holder, dict) else {}

    def acquire(self) -> FolderLock:
        """Take the lock (taking over a stale one).

        Raises:
            FolderBusyError: another live run holds it.
            InputError: the lock file cannot be created.
        """
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this FolderLock")
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise InputError(f"cannot create the lock file {self.path} ({exc.strerror}); give a "
                             "writable --out") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise FolderBusyError(
                    f"{self.path.parent} is in use by another run ({_describe(self._read(fd))});"
                    " wait for it to finish or choose another --out") from None
            holder = self._read(fd)
            host = socket.gethostname()
            if holder and not (holder.get("host") == host and holder.get("pid") == os.getpid()):
                if holder.get("host") != host:
                    raise FolderBusyError(
                        f"{self.path.parent} is locked by a run on another host ({_describe(holder)}"
                        f"); if no run is using it, delete {self.path}")
                if isinstance(holder.get("pid"), int) and _alive(holder["pid"], holder.get("start")):
                    raise FolderBusyError(
                        f"{self.path.parent} is in use by another run ({_describe(holder)}); wait "
                        "for it to finish or choose another --out")
                self.took_over = holder
            record = {"pid": os.getpid(), "host": host, "start": _proc_start(os.getpid()),
                      "started": time.time()}
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(record) + "\n").encode("utf-8"), 0)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def release(self) -> None:
        """Clear the holder record and drop the lock. Safe to call twice."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # closing drops the flock

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
