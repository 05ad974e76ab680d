"""Executors: where units of work run (shared by ``sims`` and ``realdata``).

A unit is any picklable item; ``fn(unit)`` returns a list of plain-dict records. All executors
expose :meth:`Executor.map_unordered`, which yields results as they finish. :func:`run_units`
skips units already in a :class:`~sims.infra.store.RunStore` and appends each finished unit's records
from the MAIN process, so a worker that dies mid-task never loses or duplicates records: the
engine re-runs its task and only the one result that arrives is stored.

Backends:

* ``serial``: in this process, in order (debugging, tests, small sweeps).
* ``processes``: a local ``concurrent.futures.ProcessPoolExecutor`` (``spawn`` start method, which
  is safe with JAX's threads). Each worker runs a watchdog thread that ends the worker within
  :data:`PARENT_POLL_S` seconds once its parent process is gone (even after ``kill -9``).
* ``dask``: a ``distributed.Client`` connected to ``scheduler`` (``tcp://HOST:PORT``; an
  unreachable one fails after :data:`SCHEDULER_TIMEOUT_S` seconds) or, without one, to a new
  ``distributed.LocalCluster`` of worker processes bound to 127.0.0.1, without a dashboard (its
  HTTP endpoint takes a free loopback port, never the fixed 8787).
* ``slurm``: a submitit job array (``AutoExecutor``; ``slurm={"cluster": "local"}`` runs the jobs
  as local subprocesses, which is what the tests use).
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from tqdm import tqdm

from sims.infra.folder import InputError
from sims.infra.store import RunStore

__all__ = [
    "EXECUTORS",
    "PARENT_POLL_S",
    "SCHEDULER_TIMEOUT_S",
    "DaskExecutor",
    "Executor",
    "ProcessExecutor",
    "RunReport",
    "SerialExecutor",
    "SlurmExecutor",
    "make_executor",
    "run_units",
]

T = TypeVar("T")
R = TypeVar("R")
U = TypeVar("U")

EXECUTORS = ("serial", "processes", "dask", "slurm")

#: Seconds between a pool worker's checks that its parent process is still alive.
PARENT_POLL_S = 0.5

#: Seconds to wait for a dask scheduler given by address before giving up.
SCHEDULER_TIMEOUT_S = 10.0


def _exit_with_parent(creator: int | None, poll_s: float) -> None:
    """Pool worker initializer: end this worker once its parent process is gone.

    A daemon thread polls ``os.getppid()``; when the parent dies (``kill -9`` included) the
    worker is re-parented and the thread ends the process with ``os._exit``, even while a task
    runs (a task holding the GIL in one long C call delays it until that call returns). Polling
    is portable; Linux's ``PR_SET_PDEATHSIG`` is not used because it fires when the *thread*
    that started the worker exits, not the process.

    Args:
        creator: pid of the process that started the pool, when it is the worker's parent
            (``spawn``/``fork``); a different parent at start means it already died.
        poll_s: seconds between checks.
    """
    parent = os.getppid()
    if creator is not None and parent != creator:
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


class Executor(Protocol):
    """Runs ``fn`` over ``items``; results come back in completion order."""

    def map_unordered(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        """Yield ``fn(item)`` for every item, as each finishes (order not guaranteed)."""
        ...

    def close(self) -> None:
        """Release workers/clusters. Safe to call twice."""
        ...


class SerialExecutor:
    """Runs every item in this process, in order."""

    def map_unordered(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        for item in items:
            yield fn(item)

    def close(self) -> None:
        return None

    def __repr__(self) -> str:
        return "SerialExecutor()"


class ProcessExecutor:
    """A local process pool (``spawn`` start method by default).

    Args:
        workers: number of worker processes (default: ``os.cpu_count()``).
        start_method: multiprocessing start method.
    """

    def __init__(self, workers: int | None = None, start_method: str = "spawn") -> None:
        self.workers = workers or os.cpu_count() or 1
        ctx = multiprocessing.get_context(start_method)
        creator = os.getpid() if start_method in ("spawn", "fork") else None
        self._pool = cf.ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx,
                                            initializer=_exit_with_parent,
                                            initargs=(creator, PARENT_POLL_S))

    def map_unordered(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        futures = [self._pool.submit(fn, item) for item in items]
        try:
            for fut in cf.as_completed(futures):
                yield fut.result()
        finally:
            for fut in futures:
                fut.cancel()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __repr__(self) -> str:
        return f"ProcessExecutor(workers={self.workers})"


class DaskExecutor:
    """Dask distributed: an existing scheduler, or a LocalCluster on 127.0.0.1.

    Args:
        scheduler: ``tcp://HOST:PORT`` of a running scheduler; ``None`` starts a LocalCluster.
        workers: worker processes of the LocalCluster (default 2; ignored with ``scheduler``).
    """

    def __init__(self, scheduler: str | None = None, workers: int | None = None) -> None:
        try:
            import distributed
        except ModuleNotFoundError as exc:  # pragma: no cover - extra not installed
            raise ValueError(
                "executor 'dask' needs the 'cluster' extra: "
                "pip install 'surgical-finetuning[cluster]'"
            ) from exc
        self._distributed = distributed
        self.cluster = None
        if scheduler is not None:
            if not isinstance(scheduler, str) or "://" not in scheduler:
                raise ValueError(
                    f"dask scheduler must look like tcp://HOST:PORT, got {scheduler!r}"
                )
            try:
                self.client = distributed.Client(scheduler, timeout=f"{SCHEDULER_TIMEOUT_S}s")
            except (OSError, TimeoutError) as exc:
                raise InputError(f"cannot reach the dask scheduler {scheduler} within "
                                 f"{SCHEDULER_TIMEOUT_S:g} s ({type(exc).__name__}); start it or "
                                 "fix --scheduler") from None
        else:
            self.cluster = distributed.LocalCluster(
                n_workers=workers or 2,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                # the scheduler's HTTP server always starts, on port 8787 unless told otherwise
                # (dashboard_address=None still means 8787): a free loopback port, no dashboard
                dashboard_address="127.0.0.1:0",
                scheduler_kwargs={"dashboard": False},
                silence_logs=50,
            )
            self.client = distributed.Client(self.cluster)

    @property
    def address(self) -> str:
        """Scheduler address the client is connected to."""
        return self.client.scheduler.address

    def map_unordered(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        futures = self.client.map(fn, list(items), pure=False)
        try:
            for fut in self._distributed.as_completed(futures):
                yield fut.result()
        finally:
            self.client.cancel(futures)

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None

    def __repr__(self) -> str:
        return f"DaskExecutor(cluster={'local' if self.cluster else 'external'})"


class SlurmExecutor:
    """A submitit job array; one job per item.

    Args:
        params: ``folder`` (logs/pickles; default ``./submitit``), ``cluster`` (``"slurm"``,
            ``"local"`` or ``None`` for auto-detect), ``poll_s`` (seconds between status polls,
            default 1.0), and any other key passed to ``AutoExecutor.update_parameters``
            (e.g. ``timeout_min``, ``slurm_partition``, ``gpus_per_node``).
    """

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        try:
            import submitit
        except ModuleNotFoundError as exc:  # pragma: no cover - extra not installed
            raise ValueError(
                "executor 'slurm' needs the 'slurm' extra: pip install 'surgical-finetuning[slurm]'"
            ) from exc
        params = dict(params or {})
        self.folder = Path(params.pop("folder", "submitit"))
        cluster = params.pop("cluster", None)
        self.poll_s = float(params.pop("poll_s", 1.0))
        self._executor = submitit.AutoExecutor(folder=self.folder, cluster=cluster)
        if params:
            self._executor.update_parameters(**params)

    def map_unordered(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        items = list(items)
        if not items:
            return
        jobs = self._executor.map_array(fn, items)
        pending = list(jobs)
        try:
            while pending:
                still = []
                for job in pending:
                    if job.done():
                        yield job.result()
                    else:
                        still.append(job)
                pending = still
                if pending:
                    time.sleep(self.poll_s)
        finally:
            for job in pending:
                job.cancel(check=False)

    def close(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"SlurmExecutor(folder={str(self.folder)!r})"


def make_executor(
    name: str = "serial",
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    slurm: Mapping[str, Any] | None = None,
) -> Executor:
    """Build an executor by name: ``serial``, ``processes``, ``dask`` or ``slurm``.

    Args:
        name: backend name.
        workers: worker processes (``processes``: default cpu count; ``dask`` LocalCluster:
            default 2).
        scheduler: dask scheduler address ``tcp://HOST:PORT`` (``dask`` only).
        slurm: submitit parameters (``slurm`` only), see :class:`SlurmExecutor`.

    Raises:
        ValueError: unknown name, non-positive ``workers``, or options that do not apply.
    """
    if name not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}; got {name!r}")
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if scheduler is not None and name != "dask":
        raise ValueError(f"a scheduler address only applies to executor 'dask', not {name!r}")
    if slurm is not None and name != "slurm":
        raise ValueError(f"slurm parameters only apply to executor 'slurm', not {name!r}")
    if name == "serial":
        return SerialExecutor()
    if name == "processes":
        return ProcessExecutor(workers)
    if name == "dask":
        return DaskExecutor(scheduler=scheduler, workers=workers)
    return SlurmExecutor(slurm)


@dataclass(frozen=True)
class RunReport:
    """What :func:`run_units` did.

    Attributes:
        units_total: units given.
        units_skipped: units whose ids were all in the store already.
        units_run: units executed now.
        records_written: records appended now.
        wall_s: seconds spent, wall clock.
    """

    units_total: int
    units_skipped: int
    units_run: int
    records_written: int
    wall_s: float


def run_units(
    units: Sequence[U],
    fn: Callable[[U], list[dict]],
    store: RunStore,
    executor: Executor,
    *,
    unit_ids: Callable[[U], Sequence[str]],
    progress: bool = True,
    desc: str = "",
) -> RunReport:
    """Run the units not yet stored and append their records as each unit finishes.

    Args:
        units: units of work (picklable for non-serial executors).
        fn: top-level function ``unit -> list of records``; each record has an ``"id"``.
        store: where records go; units whose ``unit_ids`` are all stored are skipped.
        executor: see :func:`make_executor`. Not closed here.
        unit_ids: the record ids a unit produces.
        progress: show a tqdm bar (stderr) over units.
        desc: bar label.

    Returns:
        A :class:`RunReport`. Records whose id is already stored (e.g. a unit that was partly
        stored before) are not written twice.

    Raises:
        ValueError: if ``fn`` returns something that is not a list of records with ids.
    """
    start = time.perf_counter()
    units = list(units)
    done = store.done_ids()
    todo = [u for u in units if not set(unit_ids(u)) <= done]
    written = 0
    with tqdm(total=len(todo), desc=desc or None, disable=not progress, file=sys.stderr,
              unit="unit", dynamic_ncols=True) as bar:
        for records in executor.map_unordered(fn, todo):
            if not isinstance(records, (list, tuple)):
                raise ValueError(
                    f"unit function must return a list of records, got {type(records).__name__}"
                )
            new = []
            for rec in records:
                if not isinstance(rec, Mapping) or "id" not in rec:
                    raise ValueError("every record returned by a unit must be a dict with an 'id'")
                if rec["id"] not in done:
                    new.append(rec)
                    done.add(rec["id"])
            written += store.append(new)  # re-checks ids under the file lock
            bar.update(1)
    return RunReport(
        units_total=len(units),
        units_skipped=len(units) - len(todo),
        units_run=len(todo),
        records_written=written,
        wall_s=time.perf_counter() - start,
    )
