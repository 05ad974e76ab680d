"""Scale features: time-boxed sweep slices, device-sized calls, batch-size curve, bench flags."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sims.bench as bench
import sims.engine as engine
import twolayer as tl
from sims.grid import shape_groups
from sims.sweep import EXIT_INCOMPLETE, main, run_group_until
from tests.infra.parse_counter import ParseCounter
from tests.sims.tiny import TINY, TINY_FLAGS


def test_run_group_until_skips_after_the_deadline(monkeypatch) -> None:
    group = shape_groups(TINY)[0]
    monkeypatch.setattr("sims.sweep.run_group", lambda g: ["computed"])
    assert run_group_until(group, deadline=0.0) == []
    assert run_group_until(group, deadline=float("inf")) == ["computed"]


def test_max_minutes_stops_with_exit_3_and_no_verdicts(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr("sims.sweep.run_group_until", lambda g, deadline: [])  # budget spent
    out = tmp_path / "o"
    code = main([*TINY_FLAGS, "--out", str(out), "--executor", "serial", "--quiet",
                 "--max-minutes", "5", "--no-compile-cache"])
    assert code == EXIT_INCOMPLETE
    text = capsys.readouterr().out
    assert "0 of 2 shape groups done" in text and "re-run the same command" in text
    assert not (out / "verdicts.json").exists()


class _Dev:
    def __init__(self, limit):
        self.limit = limit

    def memory_stats(self):
        return None if self.limit is None else {"bytes_limit": self.limit}


def test_device_memory_budget() -> None:
    assert engine.device_memory_budget(jax.devices()[:1]) == engine.DEFAULT_MEMORY_BYTES  # CPU
    assert engine.device_memory_budget([_Dev(80e9), _Dev(40e9)]) == 20e9
    assert engine.device_memory_budget([_Dev(80e9), _Dev(None)]) == engine.DEFAULT_MEMORY_BYTES


def test_chunk_size_grows_with_memory_and_devices() -> None:
    group = shape_groups(TINY)[0]
    small = engine.chunk_size(group, 1, memory_bytes=1.0)
    assert small == 1 and engine.chunk_size(group, 2, memory_bytes=1.0) == 2
    assert engine.chunk_size(group, 1, memory_bytes=1e12) == min(TINY.chunk, len(group.runs()))


def test_auto_chunk_size() -> None:
    assert tl.auto_chunk_size(256, 64, 128, 16, platform="cpu") == tl.descent.CPU_CHUNK
    assert tl.auto_chunk_size(256, 64, 128, 16, platform="gpu") is None  # fits: one batch
    huge = tl.auto_chunk_size(10**6, 2048, 1024, 16, platform="gpu")
    assert 1 <= huge < 10**6  # memory-bound: chunks


@pytest.mark.parametrize("name, bad", [
    *(("chunk_size", b) for b in ("big", 0, -3, True)),
    *(("unroll", b) for b in (0, -1, 2.5, True, "8"))])
def test_finetune_batch_rejects_bad_chunk_size_and_unroll(name, bad) -> None:
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    ps = jax.vmap(lambda k: tl.make_problem(k, d=4, k=2, activation="relu", family="gaussian",
                                            shift=tl.InputShift(1, 2.0)))(keys)
    X, y = jax.vmap(lambda k, p: tl.sample_target(k, p, "gaussian", "relu", 3))(keys, ps)
    with pytest.raises(ValueError, match=name):
        tl.finetune_batch(ps, X, y, tune="full", activation="relu", family="gaussian", steps=5,
                          **{name: bad})


def test_batch_curve_rows() -> None:
    rows = bench.batch_curve([1, 3], d=4, n=3, k=2, steps=5)
    assert [r["batch"] for r in rows] == [1, 3]
    assert all(r["step_s"] > 0 and r["problem_step_ns"] > 0 for r in rows)


@pytest.mark.parametrize("argv", [["--batch-curve", "0"], ["--batch-curve", "x"],
                                  ["--batch-curve", "4", "--curve-chunk", "-1"],
                                  ["--seeds", "0", "--no-compile-cache"]])
def test_bench_bad_input_exits_2(argv, capsys) -> None:
    assert bench.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1


def test_bench_phase_reports_compile_counters(capsys) -> None:
    cfg_flags = ["--phase", "--passes", "2", "--loop-sample", "-1", "--no-compile-cache",
                 "--seeds", "1"]
    monkey_cfg = TINY.__class__(dims=(4,), widths=(2,), n_ratios=(1.0,), seeds=1, steps=5,
                                n_records=1, activations=("linear",), families=("gaussian",),
                                input_shifts=TINY.input_shifts, output_shifts=())
    orig = bench.resolve
    try:
        bench.resolve = lambda *a, **k: monkey_cfg
        assert bench.main(cfg_flags) == 0
    finally:
        bench.resolve = orig
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(out["pass_s"]) == 2 and out["compile"][0]["programs"] > 0
    assert out["compile"][1]["programs"] == 0  # the second pass is warm: nothing compiles
    for seconds, stats in zip(out["pass_s"], out["compile"]):  # host work is part of the pass
        assert 0 < stats["host_s"] < seconds



def _stored(out: Path) -> dict[str, str]:
    """Records of a sweep folder by id, as canonical JSON text without the wall time."""
    recs = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    return {r["id"]: json.dumps({k: v for k, v in r.items() if k != "wall_s"}, sort_keys=True)
            for r in recs}


def test_two_slices_give_the_records_and_verdicts_of_one_run(tmp_path: Path, capsys) -> None:
    flags = [*TINY_FLAGS, "--gd-seeds", "2", "--gd-steps", "100", "--executor", "serial", "--quiet",
             "--no-figures", "--compile-cache", str(tmp_path / "cache")]
    whole, sliced = tmp_path / "whole", tmp_path / "sliced"
    assert main([*flags, "--out", str(whole)]) == 0
    with ParseCounter() as first:
        assert main([*flags, "--out", str(sliced), "--slice", "2/2"]) == EXIT_INCOMPLETE
    text = capsys.readouterr().out
    assert "slice 2/2: 1 of its 1 shape groups done; 1 of 2 shape groups done" in text
    assert "re-run the other slices" in text and not (sliced / "verdicts.json").exists()
    assert first.lines == 0  # an unfinished call counts its records with the index: no load
    stored_first = len(_stored(sliced))
    with ParseCounter() as last:
        assert main([*flags, "--out", str(sliced), "--slice", "1/2"]) == 0
    assert _stored(sliced) == _stored(whole)
    assert last.lines == stored_first + len(_stored(whole))  # the check, then the one load
    verdicts = [json.loads((o / "verdicts.json").read_text()) for o in (whole, sliced)]
    assert verdicts[0] == verdicts[1] and "on seeds 0..1" in verdicts[0]["tiers"]


@pytest.mark.parametrize("bad", ["0/2", "3/2", "1", "a/b"])
def test_bad_slice_exits_2(bad: str, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*TINY_FLAGS, "--out", str(tmp_path / "o"), "--slice", bad])
    assert exc.value.code == 2 and "--slice" in capsys.readouterr().err


@settings(max_examples=80, deadline=None)
@given(gd=st.integers(1, 64), cf=st.integers(1, 200), cap=st.integers(1, 300))
def test_shared_seed_chunk_fits_memory_and_is_the_cheapest(gd, cf, cap) -> None:
    """The two tiers' common chunk respects the memory cap and has the least padded work of all
    chunks that do (the cost the docstring states)."""
    chunk = engine.shared_seed_chunk(gd, cf, cap)
    assert 1 <= chunk <= max(1, min(cap, max(gd, cf)))

    def cost(c):
        calls = -(-gd // c) + -(-cf // c)
        return engine.GD_SEED_WEIGHT * -(-gd // c) * c + -(-cf // c) * c + calls

    assert all(cost(chunk) <= cost(c) for c in range(1, max(1, min(cap, max(gd, cf))) + 1))
