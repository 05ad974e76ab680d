"""Tests of sims.infra.executors: every backend gives the serial result; resume; fault tolerance."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from sims.infra import RunReport, RunStore, make_executor, run_units
from tests.sims import helpers

REPO = Path(__file__).resolve().parents[2]
UNITS = [(0, 1), (2,), (3, 4, 5), (6,), (7, 8)]


def _by_x(records: list[dict]) -> dict[int, int]:
    return {r["x"]: r["y"] for r in records}


def _run(tmp: Path, executor, units=UNITS, fn=helpers.square_unit, ids=helpers.square_ids):
    store = RunStore(tmp)
    report = run_units(units, fn, store, executor, unit_ids=ids, progress=False)
    return store, report


def _assert_complete(store: RunStore, xs) -> None:
    records = store.load()
    counts = Counter(r["id"] for r in records)
    assert max(counts.values()) == 1, "duplicate records"
    assert _by_x(records) == {x: x * x for x in xs}


def test_serial_runs_all_and_reports(tmp_path: Path) -> None:
    store, report = _run(tmp_path, make_executor("serial"))
    _assert_complete(store, range(9))
    assert report == RunReport(units_total=5, units_skipped=0, units_run=5, records_written=9,
                               wall_s=report.wall_s)


class _Interrupt(Exception):
    pass


def test_interrupted_run_resumes_without_loss_or_duplicates(tmp_path: Path) -> None:
    calls: list[tuple[int, ...]] = []

    def flaky(unit):
        calls.append(unit)
        if len(calls) == 3:
            raise _Interrupt  # stands in for Ctrl-C in the middle of the sweep
        return helpers.square_unit(unit)

    store = RunStore(tmp_path)
    with pytest.raises(_Interrupt):
        run_units(UNITS, flaky, store, make_executor("serial"), unit_ids=helpers.square_ids,
                  progress=False)
    assert _by_x(store.load()) == {0: 0, 1: 1, 2: 4}
    calls.clear()
    report = run_units(UNITS, helpers.square_unit, store, make_executor("serial"),
                       unit_ids=helpers.square_ids, progress=False)
    assert report.units_skipped == 2 and report.units_run == 3 and report.records_written == 6
    _assert_complete(store, range(9))
    again = run_units(UNITS, helpers.square_unit, store, make_executor("serial"),
                      unit_ids=helpers.square_ids, progress=False)
    assert again.units_run == 0 and again.records_written == 0
    _assert_complete(store, range(9))


def test_partly_stored_unit_reruns_but_writes_only_missing(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.append(helpers.square_unit((3,)))
    report = run_units(UNITS, helpers.square_unit, store, make_executor("serial"),
                       unit_ids=helpers.square_ids, progress=False)
    assert report.units_run == 5 and report.records_written == 8
    _assert_complete(store, range(9))


def test_unit_returning_bad_records_raises(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'id'"):
        _run(tmp_path, make_executor("serial"), fn=lambda u: [{"x": 1}])
    with pytest.raises(ValueError, match="list of records"):
        _run(tmp_path, make_executor("serial"), fn=lambda u: {"id": "x"})


def test_processes_equal_serial(tmp_path: Path) -> None:
    ex = make_executor("processes", workers=2)
    try:
        store, report = _run(tmp_path, ex)
    finally:
        ex.close()
    _assert_complete(store, range(9))
    assert report.units_run == 5
    assert len({r["pid"] for r in store.load()}) >= 1


def test_make_executor_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="serial, processes, dask, slurm"):
        make_executor("threads")
    with pytest.raises(ValueError, match="positive integer"):
        make_executor("processes", workers=0)
    with pytest.raises(ValueError, match="only applies to executor 'dask'"):
        make_executor("serial", scheduler="tcp://127.0.0.1:8786")
    with pytest.raises(ValueError, match="only apply to executor 'slurm'"):
        make_executor("dask", slurm={"cluster": "local"})
    with pytest.raises(ValueError, match="tcp://HOST:PORT"):
        make_executor("dask", scheduler="127.0.0.1:8786")


def test_dask_local_cluster_equals_serial(tmp_path: Path) -> None:
    serial, _ = _run(tmp_path / "serial", make_executor("serial"))
    ex = make_executor("dask", workers=2)
    try:
        assert ex.address.startswith("tcp://127.0.0.1:")
        assert len(ex.client.scheduler_info()["workers"]) == 2
        store, report = _run(tmp_path / "dask", ex, fn=helpers.slow_square_unit)
    finally:
        ex.close()
    assert report.units_run == 5
    assert _by_x(store.load()) == _by_x(serial.load())
    _assert_complete(store, range(9))


def test_dask_external_scheduler_address(tmp_path: Path) -> None:
    import distributed

    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address="127.0.0.1:0") as cluster:
        ex = make_executor("dask", scheduler=cluster.scheduler_address)
        try:
            store, _ = _run(tmp_path, ex)
        finally:
            ex.close()
    _assert_complete(store, range(9))


def test_dask_worker_killed_mid_sweep_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "killed.marker"
    units = [(2 * i, 2 * i + 1) for i in range(8)]
    jobs = [(str(marker), 8, u) for u in units]  # the unit holding 8 kills its worker once
    ex = make_executor("dask", workers=2)
    try:
        store, report = _run(tmp_path / "out", ex, units=jobs, fn=helpers.kill_once_unit,
                             ids=helpers.kill_once_ids)
    finally:
        ex.close()
    assert marker.exists(), "the fault was not injected"
    assert report.units_run == 8 and report.records_written == 16
    _assert_complete(store, range(16))


def test_slurm_via_submitit_local_executor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    ex = make_executor("slurm", slurm={"folder": tmp_path / "submitit", "cluster": "local",
                                       "timeout_min": 5, "poll_s": 0.2})
    try:
        store, report = _run(tmp_path / "out", ex, units=UNITS[:3])
    finally:
        ex.close()
    assert report.units_run == 3
    _assert_complete(store, range(6))
