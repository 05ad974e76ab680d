"""The run store's id index and its memory: a resumed sweep reads its ``runs.jsonl`` only as often
as it must, and never trusts an index of a file that changed under it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sims.infra import RunStore, make_executor, run_units, stable_id
from tests.infra.parse_counter import ParseCounter


def _recs(xs, tag: str = "x") -> list[dict]:
    return [{"id": stable_id({tag: x}), tag: x, "kind": "gd" if x % 2 else "exact"} for x in xs]


def _reference(path: Path) -> list[dict]:
    """The store's contract, read the plain way: complete lines, first record per id."""
    if not path.exists():
        return []
    data = path.read_bytes()
    out, seen = [], set()
    for raw in data[:data.rfind(b"\n") + 1].split(b"\n")[:-1]:
        if raw.strip():
            rec = json.loads(raw)
            if rec["id"] not in seen:
                seen.add(rec["id"])
                out.append(rec)
    return out


def test_done_ids_and_append_read_only_new_lines(tmp_path: Path) -> None:
    writer, reader = RunStore(tmp_path), RunStore(tmp_path)
    writer.append(_recs(range(10)))
    with ParseCounter() as parsed:
        assert reader.done_ids() == {r["id"] for r in _recs(range(10))}
        assert parsed.lines == 10  # the first call checks every line
        assert len(reader.done_ids()) == 10
        assert parsed.lines == 10  # nothing new
        writer.append(_recs(range(10, 13)))  # another writer's lines
        assert len(reader.done_ids()) == 13
        assert parsed.lines == 13 + 0  # the writer's own index was current: it parsed nothing
        assert reader.append(_recs(range(12, 15))) == 2  # 12 is there: the index knew it
        assert parsed.lines == 13
        assert [r["x"] for r in reader.load()] == list(range(15))
        assert parsed.lines == 13 + 15


def test_a_resumed_sweep_parses_the_store_twice(tmp_path: Path) -> None:
    """The store calls of ``sims.sweep``'s resume: check, ``run_units``, one unit's append, load."""
    RunStore(tmp_path).append(_recs(range(20)))
    units = [tuple(range(0, 10)), tuple(range(10, 20)), (20, 21)]
    with ParseCounter() as parsed:
        store = RunStore(tmp_path)
        store.done_ids()
        report = run_units(units, _recs, store, make_executor("serial"),
                           unit_ids=lambda u: [r["id"] for r in _recs(u)], progress=False)
        records = store.load()
    assert report.units_run == 1 and report.records_written == 2 and len(records) == 22
    assert parsed.lines == 20 + 22  # the check and the final load; run_units and append read none


@pytest.mark.parametrize("change", ["rewrite in place, longer", "replace by rename", "truncate",
                                    "rewrite in place, same length", "replace by rename, same end"])
def test_an_index_of_a_changed_file_is_not_trusted(tmp_path: Path, change: str) -> None:
    store = RunStore(tmp_path)
    store.append(_recs(range(8)))
    assert len(store.done_ids()) == 8
    other = _recs(range(100, 108), tag="y")
    if change == "rewrite in place, longer":
        with store.path.open("r+b") as fh:
            fh.write(b"".join(json.dumps(r).encode() + b"\n" for r in other))
    elif change == "replace by rename":
        tmp = tmp_path / "new.jsonl"
        tmp.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in other[:6]))
        os.replace(tmp, store.path)
    elif change == "truncate":
        lines = store.path.read_bytes().splitlines(keepends=True)
        store.path.write_bytes(b"".join(lines[:2]))
    elif change == "rewrite in place, same length":  # near the end, other ids
        data = store.path.read_bytes()
        store.path.write_bytes(data.replace(stable_id({"x": 7}).encode(), b"f" * 16))
    else:  # another file whose last bytes (all the index compares) are the same
        data = store.path.read_bytes()
        first = stable_id({"x": 0}).encode()
        assert data.index(first) < len(data) - 256
        tmp = tmp_path / "new.jsonl"
        tmp.write_bytes(data.replace(first, b"f" * 16))
        os.replace(tmp, store.path)
    assert store.done_ids() == {r["id"] for r in _reference(store.path)}
    store.append(_recs([50]))
    assert store.load() == _reference(store.path)


def test_a_corrupt_line_after_the_index_raises_each_time(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.append(_recs(range(3)))
    store.done_ids()
    with store.path.open("a") as fh:
        fh.write("not json\n")
    for _ in range(2):  # the index does not move past the bad line
        with pytest.raises(ValueError, match=r"runs\.jsonl:4"):
            store.done_ids()
    with pytest.raises(ValueError, match=r"runs\.jsonl:4"):
        store.append(_recs([9]))


def test_loaded_records_share_keys_and_repeated_strings(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.append(_recs(range(4)))
    a, b, c, _ = store.load()
    key_a = next(k for k in a if k == "kind")
    key_b = next(k for k in b if k == "kind")
    assert key_a is key_b  # one key object for every record
    assert a["kind"] is c["kind"] and a["kind"] == "exact"  # one object per repeated value
    assert a["id"] is not b["id"] and a["id"] != b["id"]


def test_shared_strings_halve_the_memory_of_a_load(tmp_path: Path) -> None:
    """Measured with tracemalloc against plain ``json.loads`` dicts of the same lines (a sims-like
    record: a few dozen keys, repeated string values)."""
    import tracemalloc

    fields = {f"field_{i:02d}": ("linear" if i % 3 else float(i)) for i in range(40)}
    store = RunStore(tmp_path)
    store.append([{**fields, "id": f"{i:016x}", "seed": i} for i in range(2000)])

    def held(fn) -> int:
        tracemalloc.start()
        kept = fn()
        size = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        del kept
        return size

    plain = held(lambda: [json.loads(line) for line in store.path.read_text().splitlines()])
    shared = held(RunStore(tmp_path).load)
    assert shared < 0.6 * plain


ops = st.lists(st.one_of(
    st.tuples(st.just("append"), st.sampled_from("AB"), st.lists(st.integers(0, 30), max_size=5)),
    st.tuples(st.just("torn"), st.binary(min_size=1, max_size=20).filter(lambda b: b"\n" not in b)),
    st.tuples(st.just("rewrite"), st.lists(st.integers(0, 30), max_size=6)),
    st.tuples(st.just("read"), st.sampled_from("AB"), st.sampled_from(["load", "done_ids"])),
), max_size=12)


@given(ops)
@settings(max_examples=60, deadline=None)
def test_two_stores_on_one_file_agree_with_the_plain_reader(tmp_path_factory, steps) -> None:
    """Any interleaving of two writers, torn tails and whole-file rewrites: every read of either
    store equals the plain reading of the file at that moment."""
    folder = tmp_path_factory.mktemp("store")
    stores = {"A": RunStore(folder), "B": RunStore(folder)}
    for step in steps:
        if step[0] == "append":
            stores[step[1]].append(_recs(step[2]))
        elif step[0] == "torn":
            with stores["A"].path.open("ab") as fh:
                fh.write(step[1])
        elif step[0] == "rewrite":
            stores["A"].path.write_bytes(
                b"".join(json.dumps(r).encode() + b"\n" for r in _recs(step[1], tag="z")))
        else:
            expected = _reference(stores["A"].path)
            got = getattr(stores[step[1]], step[2])()
            if step[2] == "load":
                assert got == expected
            else:
                assert got == {r["id"] for r in expected}


def test_the_store_benchmark_script_runs_and_counts_two_parses(capsys) -> None:
    """``scripts/bench_store.py`` at a tiny size: its JSON has every figure, and a resumed call
    parses the store twice (the check and the final load)."""
    import importlib.util

    script = Path(__file__).resolve().parents[2] / "scripts" / "bench_store.py"
    spec = importlib.util.spec_from_file_location("bench_store", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--records", "300", "--repeat", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["records"] == 300 and out["resume_parses"] == 2.0
    assert out["memory_ratio"] > 1.5 and out["load_s"] > 0 and out["plain_load_s"] > 0
