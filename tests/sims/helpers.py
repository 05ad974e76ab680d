"""Stand-in unit functions for executor tests (top level, so they pickle by reference)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from sims.infra import stable_id


def square_ids(unit: tuple[int, ...]) -> list[str]:
    """Record ids produced by :func:`square_unit`."""
    return [stable_id({"x": x}) for x in unit]


def square_unit(unit: tuple[int, ...]) -> list[dict]:
    """One record per integer in ``unit``: ``y = x**2`` plus the pid that computed it."""
    return [{"id": stable_id({"x": x}), "x": x, "y": x * x, "pid": os.getpid()} for x in unit]


def slow_square_unit(unit: tuple[int, ...]) -> list[dict]:
    """:func:`square_unit` after a short sleep, so several units are in flight at once."""
    time.sleep(0.2)
    return square_unit(unit)


def kill_once_unit(job: tuple[str, int, tuple[int, ...]]) -> list[dict]:
    """``job = (marker, trigger, unit)``: if ``trigger`` is in ``unit`` and the marker file does
    not exist yet, create it and SIGKILL the current (worker) process; otherwise behave like
    :func:`slow_square_unit`."""
    marker, trigger, unit = job
    if trigger in unit and not Path(marker).exists():
        Path(marker).write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return slow_square_unit(unit)


def kill_once_ids(job: tuple[str, int, tuple[int, ...]]) -> list[str]:
    """Record ids produced by :func:`kill_once_unit`."""
    return square_ids(job[2])
