"""Science-free execution and storage floor shared by ``sims``, ``realdata`` and ``paper_figures``.

It imports nothing scientific (no ``twolayer``, ``sims`` science, ``realdata``, jax or torch):

* :mod:`sims.infra.store`: the append-only run store (``runs.jsonl``), resumable by id.
* :mod:`sims.infra.executors`: serial, process-pool, dask and SLURM executors; ``run_units``.
* :mod:`sims.infra.atomic`: atomic file writes that respect the umask.
* :mod:`sims.infra.folder`: results-folder checks, one writer per folder, the user-error type.
* :mod:`sims.infra.ids`: plain-JSON conversion and stable run ids.
* :mod:`sims.infra.version`: the package version that enters every id.
* :mod:`sims.infra.stats`: mean and standard error, the paired t criterion of every verdict.

A unit of work returns records (dicts with an ``id``); ``run_units`` runs the units whose ids are not
stored yet and appends their records:

>>> import json, tempfile
>>> from sims.infra import RunStore, make_executor, run_units, stable_id
>>> def square(unit):
...     return [{"id": stable_id({"x": x}), "x": x, "y": x * x} for x in unit]
>>> def ids(unit):
...     return [stable_id({"x": x}) for x in unit]
>>> with tempfile.TemporaryDirectory() as tmp:
...     store = RunStore(tmp)
...     first = run_units([(1, 2), (3,)], square, store, make_executor("serial"), unit_ids=ids,
...                       progress=False)
...     again = run_units([(1, 2), (3,)], square, store, make_executor("serial"), unit_ids=ids,
...                       progress=False)
...     (first.records_written, again.records_written, sorted(r["y"] for r in store.load()))
(3, 0, [1, 4, 9])
"""

from sims.infra.atomic import atomic_path, write_bytes_atomic, write_json_atomic, write_text_atomic
from sims.infra.executors import EXECUTORS, RunReport, make_executor, run_units
from sims.infra.folder import FolderBusyError, FolderLock, InputError, check_out_dir
from sims.infra.ids import canonical_json, stable_id, stable_id_with, to_jsonable
from sims.infra.stats import mean_se
from sims.infra.store import RunStore
from sims.infra.version import package_version

__all__ = [
    "EXECUTORS",
    "FolderBusyError",
    "FolderLock",
    "InputError",
    "RunReport",
    "RunStore",
    "atomic_path",
    "canonical_json",
    "check_out_dir",
    "make_executor",
    "mean_se",
    "package_version",
    "run_units",
    "stable_id",
    "stable_id_with",
    "to_jsonable",
    "write_bytes_atomic",
    "write_json_atomic",
    "write_text_atomic",
]
