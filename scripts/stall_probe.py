"""Run a command N times under a stall watchdog; one JSON line per attempt.

    python scripts/stall_probe.py --label baseline --attempts 4 --json probe.jsonl -- \\
        python -m sims.sweep --medium --seeds 32 --out {out} --compile-cache {cache} --no-figures

An attempt is *stalled* when its process tree (the command and every descendant) uses less than
``--cpu-pct`` percent of one core over ``--stall-s`` consecutive seconds (utime + stime read from
``/proc/PID/stat``, plus the root's reaped children). A stalled attempt gets one ``py-spy dump``
per Python process of its tree (written next to the JSON lines when ``--dumps DIR`` is given), then
its process group is killed. ``--timeout-s`` kills a run that is still busy after that long
(recorded as ``timeout``, not as a stall).

Per attempt ``{out}`` becomes a fresh empty folder and ``{cache}`` a compilation-cache folder:
``--cache fresh`` an empty one per attempt, ``--cache shared`` one folder for every attempt of
this invocation (attempt 1 fills it), ``--cache DIR`` that folder. Temporary folders are removed
at the end. The command runs under ``nice -n --nice`` (default 10) in a session of its own. Run it
from the repository root with ``PYTHONPATH=$PWD`` (it uses ``sims.infra``). JSON lines are appended
(one per finished attempt), so an interrupted probe keeps the attempts it finished.

Each line: ``label, attempt, outcome`` (``ok``, ``failed`` (nonzero exit), ``stalled``,
``timeout``), ``rc``, ``wall_s``, ``cpu_s`` (tree CPU seconds), ``load1`` (1-minute load average
at the start and the end), ``stalled_after_s`` (when the stall window began) and ``dump`` (path).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

from sims.infra.atomic import write_text_atomic

TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float, float] | None:
    """(ppid, own CPU seconds, reaped children's CPU seconds) of ``pid``, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) "
    ppid = int(fields[1])
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return ppid, (utime + stime) / TICK, (cutime + cstime) / TICK


def tree(root: int) -> list[int]:
    """``root`` and its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None:
                children.setdefault(st[0], []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def tree_cpu(root: int) -> float:
    """CPU seconds used by ``root``'s tree so far (live processes plus the root's reaped children)."""
    total = 0.0
    for pid in tree(root):
        st = _stat(pid)
        if st is not None:
            total += st[1] + (st[2] if pid == root else 0.0)
    return total


def _is_python(pid: int) -> bool:
    try:
        return "python" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except OSError:
        return False


def dump_stacks(root: int, path: Path | None, native: bool = False) -> str:
    """``py-spy dump`` (``--native``: with C/C++ frames) of every Python process in ``root``'s tree
    (text; also written to ``path``)."""
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    parts = []
    for pid in tree(root):
        if not _is_python(pid):
            continue
        try:
            proc = subprocess.run([pyspy, "dump", "--pid", str(pid)] + ["--native"] * native,
                                  capture_output=True, text=True, timeout=120, check=False)
            parts.append(f"== pid {pid}\n{proc.stdout}{proc.stderr}")
        except (OSError, subprocess.TimeoutExpired) as exc:
            parts.append(f"== pid {pid}: py-spy failed: {exc}")
    text = "\n".join(parts)
    if path is not None:
        write_text_atomic(path, text)
    return text


def run_attempt(argv: list[str], *, stall_s: float, cpu_pct: float, timeout_s: float,
                poll_s: float, dump_path: Path | None, log_path: Path, native: bool = False) -> dict:
    """Run ``argv`` once under the watchdog; returns the attempt's outcome fields."""
    load0 = os.getloadavg()[0]
    start = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        samples: deque[tuple[float, float]] = deque()
        outcome, stalled_after = None, None
        while True:
            try:
                rc = proc.wait(timeout=poll_s)
                outcome = "ok" if rc == 0 else "failed"
                break
            except subprocess.TimeoutExpired:
                pass
            now, cpu = time.monotonic(), tree_cpu(proc.pid)
            samples.append((now, cpu))
            while samples and now - samples[0][0] > stall_s:
                old = samples.popleft()
                if now - old[0] >= stall_s and 100 * (cpu - old[1]) / (now - old[0]) < cpu_pct:
                    outcome, stalled_after = "stalled", old[0] - start
            if outcome is None and now - start > timeout_s:
                outcome = "timeout"
            if outcome is not None:
                if outcome == "stalled":
                    dump_stacks(proc.pid, dump_path, native)
                os.killpg(proc.pid, signal.SIGKILL)
                rc = proc.wait()
                break
    wall = time.monotonic() - start
    return {"outcome": outcome, "rc": rc, "wall_s": round(wall, 1),
            "cpu_s": round(samples[-1][1], 1) if samples else None,
            "load1": [round(load0, 2), round(os.getloadavg()[0], 2)],
            "stalled_after_s": None if stalled_after is None else round(stalled_after, 1),
            "dump": str(dump_path) if outcome == "stalled" and dump_path else None}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--label", required=True, help="name of the candidate (goes into each line)")
    p.add_argument("--attempts", type=int, default=3)
    p.add_argument("--stop-after-stalls", type=int, default=None, metavar="K",
                   help="stop after K stalled attempts")
    p.add_argument("--stall-s", type=float, default=60.0)
    p.add_argument("--cpu-pct", type=float, default=2.0)
    p.add_argument("--timeout-s", type=float, default=900.0)
    p.add_argument("--poll-s", type=float, default=1.0)
    p.add_argument("--cache", default="fresh", help="fresh | shared | DIR")
    p.add_argument("--nice", type=int, default=10)
    p.add_argument("--native", action="store_true", help="py-spy dumps with native frames")
    p.add_argument("--json", type=Path, required=True, help="JSON lines are appended here")
    p.add_argument("--dumps", type=Path, default=None, help="folder for py-spy dumps and logs")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command")
    args = p.parse_args(argv)
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not cmd:
        p.error("give the command after --")
    logs = args.dumps or Path(tempfile.mkdtemp(prefix="stall-logs-"))
    logs.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="stall-probe-"))
    shared = tmp / "cache-shared"
    stalls = 0
    try:
        for i in range(1, args.attempts + 1):
            out = tmp / f"out-{i}"
            cache = {"fresh": tmp / f"cache-{i}", "shared": shared}.get(args.cache, Path(args.cache))
            argv_i = ["nice", "-n", str(args.nice)] + [
                a.replace("{out}", str(out)).replace("{cache}", str(cache)) for a in cmd]
            tag = f"{args.label}-{i}"
            row = {"label": args.label, "attempt": i, "command": shlex.join(argv_i),
                   **run_attempt(argv_i, stall_s=args.stall_s, cpu_pct=args.cpu_pct,
                                 timeout_s=args.timeout_s, poll_s=args.poll_s,
                                 dump_path=logs / f"{tag}.pyspy.txt", log_path=logs / f"{tag}.log",
                                 native=args.native)}
            with open(args.json, "a") as fh:
                fh.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)
            shutil.rmtree(out, ignore_errors=True)
            if args.cache == "fresh":
                shutil.rmtree(cache, ignore_errors=True)
            stalls += row["outcome"] == "stalled"
            if args.stop_after_stalls is not None and stalls >= args.stop_after_stalls:
                break
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
