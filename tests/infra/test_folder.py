"""Results folders under faults: --out checks, one writer per folder (lock, stale takeover),
id re-check under the store lock, de-duplicating readers, non-UTF-8 lines, umask-respecting writes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sims.infra import (
    FolderBusyError,
    FolderLock,
    InputError,
    RunStore,
    atomic_path,
    check_out_dir,
    stable_id,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)
from sims.infra.folder import _proc_start


def _recs(xs) -> list[dict]:
    return [{"id": stable_id({"x": x}), "x": x} for x in xs]


# ---------------------------------------------------------------- check_out_dir


def test_check_out_dir_creates_and_accepts_a_folder(tmp_path: Path) -> None:
    assert check_out_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert (tmp_path / "a" / "b").is_dir()


@pytest.mark.parametrize(("case", "match"), [
    ("is_file", "is a file"), ("under_file", "lies under the file"),
    ("runs_dir", "not a regular file"),
])
def test_check_out_dir_refuses_unusable_folders(tmp_path: Path, case: str, match: str) -> None:
    (tmp_path / "f").write_text("x")
    out = {"is_file": tmp_path / "f", "under_file": tmp_path / "f" / "sub" / "out",
           "runs_dir": tmp_path / "o"}[case]
    if case == "runs_dir":
        (out / "runs.jsonl").mkdir(parents=True)
    with pytest.raises(InputError, match=match):
        check_out_dir(out, files=("runs.jsonl",))


def unwritable_dir(tmp_path: Path) -> Path:
    """A folder path this process cannot create or write (chmod for users; /sys for root)."""
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        return ro / "out"
    probe = Path("/sys/surgical-finetuning-unwritable-probe")
    try:
        probe.mkdir()
    except OSError:
        return probe
    probe.rmdir()  # pragma: no cover - a writable /sys
    pytest.skip("no unwritable folder available to root here")


def test_check_out_dir_refuses_an_unwritable_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"cannot be created|not writable"):
        check_out_dir(unwritable_dir(tmp_path))


# ---------------------------------------------------------------- FolderLock


def test_lock_refuses_a_second_holder_and_is_released(tmp_path: Path) -> None:
    with FolderLock(tmp_path) as lock:
        holder = json.loads(lock.path.read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        with pytest.raises(FolderBusyError, match=f"in use by another run \\(pid {os.getpid()}"):
            FolderLock(tmp_path).acquire()
    assert lock.path.read_text() == ""  # released: record cleared
    with FolderLock(tmp_path) as again:
        assert again.held and again.took_over is None


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("case", ["dead_pid", "reused_pid", "torn_record"])
def test_stale_lock_is_taken_over(tmp_path: Path, case: str) -> None:
    path = tmp_path / ".lock"
    if case == "dead_pid":
        path.write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname()}))
    elif case == "reused_pid":  # a live pid whose start time differs: the holder is gone
        path.write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname(),
                                    "start": "not-its-start-time"}))
        if _proc_start(os.getppid()) is None:
            pytest.skip("no /proc start times here")
    else:
        path.write_text('{"pid": 12')
    with FolderLock(tmp_path) as lock:
        assert json.loads(path.read_text())["pid"] == os.getpid()
        assert (lock.took_over is None) == (case == "torn_record")


def test_lock_recorded_by_a_live_process_or_another_host_is_refused(tmp_path: Path) -> None:
    path = tmp_path / ".lock"
    # flock free but the record names a live process here (a file system without flock)
    path.write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname(),
                                "start": _proc_start(os.getppid())}))
    with pytest.raises(FolderBusyError, match=f"pid {os.getppid()}"):
        FolderLock(tmp_path).acquire()
    path.write_text(json.dumps({"pid": 1, "host": "elsewhere.example"}))
    with pytest.raises(FolderBusyError, match=r"another host.*delete .*\.lock"):
        FolderLock(tmp_path).acquire()


def test_lock_held_by_another_process_is_refused_then_freed_by_its_death(tmp_path: Path) -> None:
    code = textwrap.dedent(f"""
        import sys, time
        from sims.infra import FolderLock
        FolderLock({str(tmp_path)!r}).acquire()
        print("locked", flush=True)
        time.sleep(60)
    """)
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout.readline().strip() == "locked"
            with pytest.raises(FolderBusyError, match=f"pid {proc.pid}"):
                FolderLock(tmp_path).acquire()
        finally:
            proc.kill()
    with FolderLock(tmp_path) as lock:  # kill -9 left its record; the kernel dropped its flock
        assert lock.took_over is not None and lock.took_over["pid"] == proc.pid


# ---------------------------------------------------------------- the store


def test_two_stores_on_one_file_never_duplicate_an_id(tmp_path: Path) -> None:
    a, b = RunStore(tmp_path), RunStore(tmp_path)
    assert a.append(_recs([1, 2])) == 2
    assert b.append(_recs([2, 3, 3])) == 1  # 2 already there (written by a), 3 once
    assert a.append(_recs([3, 4])) == 1  # a sees b's 3 under the file lock
    ids = [json.loads(x)["id"] for x in a.path.read_text().splitlines()]
    assert len(ids) == len(set(ids)) == 4


def test_two_store_processes_appending_the_same_ids_write_each_once(tmp_path: Path) -> None:
    code = textwrap.dedent(f"""
        from sims.infra import RunStore, stable_id
        store = RunStore({str(tmp_path)!r})
        for x in range(200):
            store.append([{{"id": stable_id({{"x": x}}), "x": x}}])
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(2)]
    assert [p.wait() for p in procs] == [0, 0]
    ids = [json.loads(x)["id"] for x in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert len(ids) == 200 == len(set(ids))


def test_load_deduplicates_first_occurrence_wins(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    first, later = {"id": "a", "v": 1}, {"id": "a", "v": 2}
    store.path.write_text("\n".join(json.dumps(r) for r in (first, {"id": "b"}, later)) + "\n")
    assert store.load() == [first, {"id": "b"}]
    assert store.done_ids() == {"a", "b"}


def test_non_utf8_line_names_file_and_line(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.append(_recs([1, 2]))
    with store.path.open("ab") as fh:
        fh.write(b'{"id": "\xff\xfe"}\n')
    with pytest.raises(ValueError, match=r"runs\.jsonl:3: not UTF-8"):
        store.load()
    with pytest.raises(ValueError, match=r"runs\.jsonl:3: not UTF-8"):
        store.append(_recs([9]))


def test_store_refuses_a_runs_file_that_is_a_folder(tmp_path: Path) -> None:
    (tmp_path / "runs.jsonl").mkdir()
    with pytest.raises(ValueError, match="not a regular file"):
        RunStore(tmp_path)


# ---------------------------------------------------------------- atomic writes and the umask


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_every_atomic_writer_respects_the_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        write_bytes_atomic(tmp_path / "b", b"x")
        write_text_atomic(tmp_path / "t", "x")
        write_json_atomic(tmp_path / "j.json", {"a": 1})
        with atomic_path(tmp_path / "p") as tmp:
            tmp.write_text("x")
        RunStore(tmp_path).append(_recs([1]))
        FolderLock(tmp_path).acquire().release()
    finally:
        os.umask(old)
    for name in ("b", "t", "j.json", "p", "runs.jsonl", ".lock"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


def test_atomic_path_failure_keeps_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer died")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]
