"""Tests of sims.infra: ids, JSON conversion, atomic writes, the append-only store."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sims.infra import (
    RunStore,
    package_version,
    stable_id,
    to_jsonable,
    write_json_atomic,
    write_text_atomic,
)

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**9), 10**9),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=12,
)
fields_st = st.dictionaries(st.text(min_size=1, max_size=6), json_values, max_size=6)


def test_package_version_is_nonempty_string() -> None:
    v = package_version()
    assert isinstance(v, str) and v and v[0].isdigit()


@given(fields_st)
@settings(max_examples=60, deadline=None)
def test_stable_id_is_16_hex_and_independent_of_key_order(fields: dict) -> None:
    sid = stable_id(fields)
    assert len(sid) == 16 and int(sid, 16) >= 0
    reordered = dict(reversed(list(fields.items())))
    assert stable_id(reordered) == sid


@given(fields_st, st.text(min_size=1, max_size=6), json_scalars)
@settings(max_examples=60, deadline=None)
def test_stable_id_changes_when_a_field_changes(fields: dict, key: str, value) -> None:
    changed = dict(fields)
    changed[key] = [value, "changed"]
    assert stable_id(changed) != stable_id(fields)


def test_stable_id_depends_on_package_version(monkeypatch: pytest.MonkeyPatch) -> None:
    import sims.infra.ids as runs

    before = stable_id({"a": 1})
    monkeypatch.setattr(runs, "package_version", lambda: "999.0")
    assert stable_id({"a": 1}) != before


def test_stable_id_rejects_non_mapping() -> None:
    with pytest.raises(TypeError, match="mapping"):
        stable_id([("a", 1)])  # type: ignore[arg-type]


@dataclasses.dataclass(frozen=True)
class _Cfg:
    d: int
    ratios: tuple[float, ...]
    path: Path


def test_to_jsonable_converts_dataclasses_numpy_tuples_paths() -> None:
    obj = {
        "cfg": _Cfg(d=np.int64(4), ratios=(0.5, np.float32(2.0)), path=Path("/tmp/x")),
        "arr": np.arange(6, dtype=np.float64).reshape(2, 3),
        "scalar": np.float64(1.5),
        "flag": np.bool_(True),
        3: {"nested": (1, 2)},
    }
    out = to_jsonable(obj)
    assert out == {
        "cfg": {"d": 4, "ratios": [0.5, 2.0], "path": "/tmp/x"},
        "arr": [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]],
        "scalar": 1.5,
        "flag": True,
        "3": {"nested": [1, 2]},
    }
    assert type(out["cfg"]["d"]) is int and type(out["flag"]) is bool
    json.dumps(out)  # plain JSON types only


def test_to_jsonable_handles_jax_arrays() -> None:
    import jax.numpy as jnp

    assert to_jsonable(jnp.array([1.0, 2.0])) == [1.0, 2.0]
    assert to_jsonable(jnp.float64(3.0)) == 3.0


def test_to_jsonable_rejects_unknown_objects() -> None:
    with pytest.raises(TypeError, match="object"):
        to_jsonable(object())


def test_atomic_writes_replace_and_leave_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "config.json"
    write_json_atomic(target, {"b": (1, 2), "a": np.float64(0.5)})
    assert json.loads(target.read_text()) == {"a": 0.5, "b": [1, 2]}
    write_text_atomic(target, "replaced\n")
    assert target.read_text() == "replaced\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["config.json"]


def test_atomic_write_failure_keeps_old_file(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    write_json_atomic(target, {"ok": 1})
    with pytest.raises(TypeError):
        write_json_atomic(target, {"bad": object()})
    assert json.loads(target.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def _recs(xs) -> list[dict]:
    return [{"id": stable_id({"x": x}), "x": x} for x in xs]


def test_store_roundtrip_and_done_ids(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "out")
    assert store.load() == [] and store.done_ids() == set()
    store.append(_recs(range(3)))
    store.append([])
    store.append(_recs(range(3, 5)))
    assert [r["x"] for r in store.load()] == [0, 1, 2, 3, 4]
    assert store.done_ids() == {r["id"] for r in _recs(range(5))}
    assert store.path == tmp_path / "out" / "runs.jsonl"


@given(
    batches=st.lists(st.lists(st.integers(0, 10**6), max_size=5), max_size=6),
    torn=st.binary(min_size=1, max_size=40).filter(lambda b: b"\n" not in b),
)
@settings(max_examples=40, deadline=None)
def test_torn_last_line_is_ignored_then_repaired(tmp_path_factory, batches, torn) -> None:
    store = RunStore(tmp_path_factory.mktemp("store"))
    expected = []
    for batch in batches:
        store.append(_recs(batch))
        for r in _recs(batch):
            if r not in expected:  # an id is stored once, first occurrence
                expected.append(r)
    with store.path.open("ab") as fh:  # a writer died mid-record
        fh.write(torn)
    assert store.load() == expected
    assert store.done_ids() == {r["id"] for r in expected}
    store.append(_recs([-1]))
    assert store.load() == [*expected, *_recs([-1])]
    assert store.path.read_bytes().endswith(b"\n")
    assert torn not in store.path.read_bytes().split(b"\n")


def test_torn_only_line_is_repaired(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.path.write_bytes(b'{"id": "abc", "x"')
    assert store.load() == []
    store.append(_recs([7]))
    assert store.load() == _recs([7])


def test_corrupt_complete_line_raises_with_location(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.append(_recs([1]))
    with store.path.open("a") as fh:
        fh.write("not json\n")
    with pytest.raises(ValueError, match=r"runs\.jsonl:2"):
        store.load()
    store.path.write_text('{"x": 1}\n')
    with pytest.raises(ValueError, match="'id'"):
        store.done_ids()


def test_store_rejects_bad_input(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    with pytest.raises(ValueError, match="'id'"):
        store.append([{"x": 1}])
    with pytest.raises(ValueError, match="sequence of records"):
        store.append({"id": "a"})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="plain file name"):
        RunStore(tmp_path, filename="a/b.jsonl")
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="folder"):
        RunStore(tmp_path / "file")
    assert store.load() == []
