"""Executors under faults: pool workers die with their parent (kill -9), an unreachable dask
scheduler fails fast with a one-line reason, the LocalCluster binds no dashboard port."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

import sims.infra.executors as executors
from sims.infra import InputError, make_executor

#: Seconds a worker may outlive its parent (the watchdog polls every PARENT_POLL_S).
GRACE_S = 20.0


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Poll until none of ``pids`` is a live (non-zombie) process; return those still alive."""
    deadline = time.monotonic() + timeout
    while True:
        alive = []
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.NoSuchProcess:
                pass
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.2)


def kill_parent_and_check_workers(argv: list[str], n_workers: int, cwd: Path) -> None:
    """Start ``argv``, wait for ``n_workers`` pool workers, SIGKILL the parent alone, and assert
    every worker exits within :data:`GRACE_S` seconds."""
    with subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL) as proc:
        parent = psutil.Process(proc.pid)
        workers: list[psutil.Process] = []
        deadline = time.monotonic() + 300
        try:
            while time.monotonic() < deadline and proc.poll() is None:
                # pool workers are the children running multiprocessing's spawn main
                workers = [c for c in parent.children(recursive=True)
                           if "spawn_main" in " ".join(c.cmdline())]
                if len(workers) >= n_workers:
                    break
                time.sleep(0.2)
            assert len(workers) >= n_workers, "the pool workers never started"
            time.sleep(1.0)  # let them pass their initializer and pick up a task
        except BaseException:
            proc.kill()
            raise
        proc.send_signal(signal.SIGKILL)  # the parent alone, as `kill -9 PID`
        proc.wait()
    pids = [w.pid for w in workers]
    try:
        alive = wait_gone(pids, GRACE_S)
    finally:
        for pid in pids:  # never leave strays behind, even when the assertion fails
            try:
                psutil.Process(pid).kill()
            except psutil.NoSuchProcess:
                pass
    assert not alive, f"pool workers {alive} outlived their killed parent by {GRACE_S} s"


def test_process_pool_workers_exit_when_the_parent_is_killed(tmp_path: Path) -> None:
    code = textwrap.dedent("""
        import time
        from sims.infra import make_executor
        ex = make_executor("processes", workers=2)
        for _ in ex.map_unordered(time.sleep, [120, 120, 120]):
            pass
    """)
    kill_parent_and_check_workers([sys.executable, "-c", code], 2, tmp_path)


def test_unreachable_scheduler_fails_fast_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executors, "SCHEDULER_TIMEOUT_S", 1.0)
    with socket.socket() as s:  # a free port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(InputError, match=f"cannot reach the dask scheduler tcp://127.0.0.1:{port}"
                                         " within 1 s") as info:
        make_executor("dask", scheduler=f"tcp://127.0.0.1:{port}")
    assert "\n" not in str(info.value)  # the error names the 1 s bound it applied


def test_local_cluster_binds_no_fixed_port_and_only_loopback() -> None:
    with socket.socket() as busy:  # hold dask's default dashboard port when it is free
        try:
            busy.bind(("127.0.0.1", 8787))
            busy.listen()
        except OSError:
            pass
        ex = make_executor("dask", workers=1)  # warnings are errors: "port in use" would fail
        try:
            http = ex.cluster.scheduler.http_server  # /health etc.; no dashboard pages
            assert http is not None
            ours = [c.laddr for c in psutil.Process().net_connections("tcp")
                    if c.status == psutil.CONN_LISTEN and c.laddr != busy.getsockname()]
        finally:
            ex.close()
    assert ours, "the scheduler should listen in this process"
    assert all(a.ip == "127.0.0.1" for a in ours), ours
    assert 8787 not in {a.port for a in ours}
