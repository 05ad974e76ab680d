"""Benchmark the run store on a large ``runs.jsonl``: reading records back, their memory, and what a
resumed sweep call pays before it runs anything.

Builds ``--records N`` sims-shaped records (the fields, types and value mix of a ``python -m
sims.sweep`` record, each with its own id and values) in a temporary folder, then measures in this
one process:

* ``plain_load_s``: the baseline, the simplest reader (read the file, ``json.loads`` each line, keep
  the first record of each id);
* ``load_s``: :meth:`RunStore.load`; ``done_ids_s``: :meth:`RunStore.done_ids` on a fresh store;
* ``resume_s``: what ``python -m sims.sweep`` asks of the store when it resumes a folder with one
  shape group left (check the file is readable, the stored ids for ``run_units``, append the
  group's records, load the records to judge); ``resume_parses``: the lines that parses, in units
  of the file's lines after the call;
* ``bytes_per_record`` (tracemalloc, current after the load) for the plain reader and the store,
  and ``peak_bytes_per_record`` during each load.

Usage: python scripts/bench_store.py [--records 200000] [--repeat 3]
Prints one JSON object; times are the best of ``--repeat``, ratios are baseline / store.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from unittest import mock

from sims.infra import RunStore, run_units
from sims.infra.executors import make_executor

ACTIVATIONS = ("linear", "relu")
METHODS = ("none", "oracle", "last", "first", "full")


def sims_like_record(i: int, rng: random.Random) -> dict:
    """A record with the keys and value types of a sims sweep record (44 fields)."""
    rec = {
        "activation": ACTIVATIONS[i % 2], "alpha": 3.0, "c1_pool_loss": rng.random() * 1e-30,
        "c2_floor": rng.random(), "c4_floor": None, "converged": bool(i % 3), "d": 64,
        "dtype": "float64", "e1_sampled": None, "family": "gaussian",
        "first_layer_bound": rng.random(), "grad_norm_rel": rng.random() * 1e-9, "gtol": 1e-08,
        "id": f"{i:016x}", "initial_target_loss": rng.random(), "k": 8, "limit_target_loss":
        rng.random(), "loss_scale": rng.random(), "lr": rng.random(), "mc": None, "mc_runs": 3,
        "mc_samples": 8192, "method": METHODS[i % 5], "n": 32, "n_records": 20,
        "n_unsampled": None, "nonneg_head": True, "p1": 0.3, "package_version": "0.1.0",
        "pool_n": 128, "pool_y2": rng.random(), "rank": 1, "rank_z": 8, "schema_version": 1,
        "seed": i // 5, "seed_index": i // 5, "shift": "input", "shift_kind": "scale",
        "solver": "gd", "steps": 2000, "steps_taken": rng.randrange(2000), "t": None,
        "target_loss": rng.random(), "wall_s": rng.random(),
    }
    if i % 50 == 0:
        rec["mc"] = {"first": {"mean": rng.random(), "se": rng.random()}}
    return rec


def plain_load(path: Path) -> list[dict]:
    """The baseline reader: the whole file, ``json.loads`` per line, first record per id."""
    records, seen = [], set()
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if rec["id"] not in seen:
            seen.add(rec["id"])
            records.append(rec)
    return records


def _best(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _memory(fn) -> tuple[float, float]:
    """(bytes held by what ``fn`` returns, peak bytes during ``fn``), by tracemalloc."""
    gc.collect()
    tracemalloc.start()
    kept = fn()
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del kept
    return current, peak


def resume(folder: Path, fresh_id: str) -> int:
    """The store calls of ``sims.sweep._run_locked`` resuming ``folder`` with one unit left, whose
    one record has id ``fresh_id``; returns the number of lines parsed (``json.loads`` calls)."""
    parsed = 0
    real = json.loads

    def counting(text, *a, **k):
        nonlocal parsed
        parsed += 1
        return real(text, *a, **k)

    with mock.patch("sims.infra.store.json.loads", counting):
        store = RunStore(folder)
        store.done_ids()  # the readability check
        run_units([fresh_id], lambda u: [{"id": u}], store, make_executor("serial"),
                  unit_ids=lambda u: [u], progress=False)
        store.load()
    return parsed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--records", type=int, default=200_000)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        store = RunStore(folder)
        step = 10_000
        for start in range(0, args.records, step):
            store.append([sims_like_record(i, rng) for i in range(start, min(start + step,
                                                                               args.records))])
        n = args.records
        path = store.path
        out: dict = {"records": n, "file_bytes_per_record": path.stat().st_size / n}
        out["plain_load_s"] = _best(lambda: plain_load(path), args.repeat)
        out["load_s"] = _best(lambda: RunStore(folder).load(), args.repeat)
        out["done_ids_s"] = _best(lambda: RunStore(folder).done_ids(), args.repeat)
        fresh = iter(range(10**9))
        out["resume_s"] = _best(lambda: resume(folder, f"fresh-{next(fresh)}"), args.repeat)
        parsed = resume(folder, f"fresh-{next(fresh)}")
        out["resume_parses"] = round(parsed / len(RunStore(folder).done_ids()), 2)
        out["load_ratio"] = out["plain_load_s"] / out["load_s"]
        plain_cur, plain_peak = _memory(lambda: plain_load(path))
        cur, peak = _memory(lambda: RunStore(folder).load())
        out.update({"plain_bytes_per_record": plain_cur / n, "bytes_per_record": cur / n,
                    "plain_peak_bytes_per_record": plain_peak / n, "peak_bytes_per_record": peak / n,
                    "memory_ratio": plain_cur / cur, "peak_ratio": plain_peak / peak})
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
