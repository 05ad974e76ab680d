"""Shape buckets: a bucketed group gives the unpadded group's records, and the groups of a bucket
share their compiled programs (each runner and the builder are traced once for two groups of
different widths; without buckets, or with a builder per width, again for the second)."""

from __future__ import annotations

import collections
import dataclasses
import importlib.util
from pathlib import Path

import jax
import numpy as np
import pytest

import twolayer as tl
from sims import engine
from sims.config import SweepConfig, preset
from sims.grid import ShapeGroup, bucket_n, shape_groups, shifts_of
from sims.runtime import compile_stats
from sims.sweep import build_parser, config_from_args, main
from tests.sims.tiny import TINY

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "profile_compile.py"
spec = importlib.util.spec_from_file_location("profile_compile", SCRIPT)
profile_compile = importlib.util.module_from_spec(spec)
spec.loader.exec_module(profile_compile)

# d = 8, k in {2, 4}, n in {4, 8}; one bucket per (d, family): k -> 4, n -> 8
BUCKETED = dataclasses.replace(TINY, families=("sparse",), seeds=3, gd_seeds=1, steps=100,
                               mc_samples=1024, merge_shapes=False, shape_buckets=(1.0,))
PLAIN = dataclasses.replace(BUCKETED, shape_buckets=())
NUMERIC = ("target_loss", "initial_target_loss", "train_loss", "limit_target_loss",
           "start_train_loss", "cf_target_loss", "c1_pool_loss", "pool_y2")
VOLATILE = ("wall_s",)


def _group(cfg, k: int, n: int) -> ShapeGroup:
    return next(g for g in shape_groups(cfg) if g.ks == (k,) and g.ns == (n,))


def _clear() -> None:
    engine.clear_caches()


def _traced(monkeypatch) -> list[str]:
    """Every trace of the per-run function (one per runner compiled) appends its activation."""
    seen: list[str] = []
    original = engine._run_one

    def counting(*args, **kwargs):
        seen.append(kwargs["activation"])
        return original(*args, **kwargs)

    monkeypatch.setattr(engine, "_run_one", counting)
    return seen


def _traced_builds(monkeypatch) -> list:
    """Every trace of a problem constructor (one per builder compiled and shift) appends the
    width it was traced at (``"traced"`` for the bucket's builder, whose width is an argument)."""
    seen: list = []
    for name in ("make_problem", "make_padded_problem"):
        original = getattr(tl, name)

        def counting(*args, original=original, **kwargs):
            seen.append("traced" if isinstance(kwargs["k"], jax.core.Tracer) else kwargs["k"])
            return original(*args, **kwargs)

        monkeypatch.setattr(tl, name, counting)
    return seen


def _by_id(records) -> dict[str, dict]:
    return {r["id"]: {k: v for k, v in r.items() if k not in VOLATILE} for r in records}


def test_padded_shapes_of_groups() -> None:
    assert [g.padded for g in shape_groups(BUCKETED)] == [(4, 8)] * 4
    assert [g.padded for g in shape_groups(PLAIN)] == [(2, 4), (2, 8), (4, 4), (4, 8)]
    cfg = dataclasses.replace(BUCKETED, dims=(64,), n_ratios=(1 / 16, 1 / 4, 1.0, 2.0),
                              shape_buckets=(0.25, 1.0))
    assert [bucket_n(cfg, 64, n) for n in (4, 16, 64, 128)] == [16, 16, 64, 128]
    assert {engine.chunk_size(g, 1) for g in shape_groups(BUCKETED)} == {len(_group(
        BUCKETED, 4, 8).runs())}


@pytest.fixture(scope="module")
def bucketed_runs():
    """Records of two groups of one bucket computed in one process, with the runner's traces."""
    mp = pytest.MonkeyPatch()
    seen, builds = _traced(mp), _traced_builds(mp)
    _clear()
    before = compile_stats()["programs"]
    small = engine.compute_group(_group(BUCKETED, 2, 4))
    mid, first_builds = compile_stats()["programs"], list(builds)
    other = engine.compute_group(_group(BUCKETED, 4, 4))
    after = compile_stats()["programs"]
    mp.undo()
    return {"small": small, "other": other, "traces": list(seen),
            "programs": (mid - before, after - mid), "builds": (first_builds, builds[len(first_builds):])}


def _assert_same_numbers(padded: dict, plain: dict) -> None:
    assert padded.keys() == plain.keys()  # padding is not part of a record's id
    for rid, r in plain.items():
        p = padded[rid]
        for key in NUMERIC:
            if r.get(key) is not None:
                np.testing.assert_allclose(p[key], r[key], rtol=1e-9,
                                           atol=1e-14 * r["initial_target_loss"],
                                           err_msg=f"{key} {r['method']} {r['activation']}")
        if "trace" in r:
            np.testing.assert_allclose(p["trace"], r["trace"], rtol=1e-9, atol=1e-14)
        for key in ("converged", "steps_taken", "rank_z", "n_unsampled", "e1_sampled"):
            assert p.get(key) == r.get(key), key
        if r["mc"] is not None:
            np.testing.assert_allclose(np.concatenate(list(p["mc"].values())),
                                       np.concatenate(list(r["mc"].values())), rtol=1e-9,
                                       atol=1e-14 * r["initial_target_loss"])


def test_a_bucketed_group_equals_the_unpadded_group(bucketed_runs) -> None:
    """k = 2 padded to 4 and n = 4 padded to 8: the same numbers as the unpadded group."""
    _assert_same_numbers(_by_id(bucketed_runs["small"]),
                         _by_id(engine.compute_group(_group(PLAIN, 2, 4))))


@pytest.mark.slow
def test_a_bucketed_group_does_not_depend_on_chunking(bucketed_runs) -> None:
    """One seed per call: the closed-form tier runs in two calls. (Unchunked, the builder draws
    the closed-form tier's 2 seeds for the gradient-descent tier's 1 too: the fixture's case.)"""
    cfg = dataclasses.replace(BUCKETED, chunk=2)
    assert [t[2] for t in engine._tier_batches(_group(cfg, 2, 4), 2, 1)] == [1, 1]
    _assert_same_numbers(_by_id(engine.compute_group(_group(cfg, 2, 4))),
                         _by_id(bucketed_runs["small"]))


def test_groups_of_a_bucket_share_their_compiled_programs(bucketed_runs) -> None:
    # one runner per activation (both seed tiers) and one builder for both groups (k = 2, then 4)
    assert sorted(bucketed_runs["traces"]) == sorted(BUCKETED.activations)
    first, second = bucketed_runs["programs"]
    small, other = (engine.program_keys(_group(BUCKETED, k, 4)) for k in (2, 4))
    # builder, expansion, 2 runners, 2 Monte Carlo programs, the Monte Carlo runs' gather
    assert second == 0 and other == small and first >= len(small) == 7
    assert bucketed_runs["builds"] == (["traced"] * len(shifts_of(BUCKETED)), [])
    plain_small, plain_other = (engine.program_keys(_group(PLAIN, k, 4)) for k in (2, 4))
    assert not plain_small & plain_other and len(plain_other) == 6  # preparer, 2 runners, 2 MC, take


def test_the_full_grid_compiles_one_builder_per_bucket() -> None:
    """The full preset's programs (``program_keys``) at d = 16 and two sample sizes (fast): one
    builder per (d, family) bucket for its four widths, not per (d, k, family); one runner per
    (bucket, activation) for both seed tiers, one Monte Carlo program per (bucket, activation)."""
    cfg = dataclasses.replace(preset("full"), dims=(16,), n_ratios=(0.0625, 2.0))
    assert len(shape_groups(cfg)) == 16 and len(cfg.widths) == 4
    keys = set().union(*(engine.program_keys(g, memory_bytes=40e9) for g in shape_groups(cfg)))
    kinds = collections.Counter(key[0] for key in keys)
    buckets = len(cfg.dims) * len(cfg.families)
    assert kinds["build"] == buckets and kinds["run"] == 2 * buckets and kinds["mc"] == 2 * buckets
    assert kinds["take"] == buckets  # the Monte Carlo runs' gather: one shape per bucket


#: One activation, one tier, a small runner and no Monte Carlo: the builder weighs.
SMALL = dataclasses.replace(BUCKETED, activations=("relu",), gd_seeds=0, tunes=("last",), mc_runs=0)


def _second_group_compiles(monkeypatch) -> tuple[int, list]:
    """(programs compiled, builder traces) by the k = 4 group of SMALL after its k = 2 group."""
    builds = _traced_builds(monkeypatch)
    _clear()
    engine.compute_group(_group(SMALL, 2, 4))
    before, traced = compile_stats()["programs"], len(builds)
    engine.compute_group(_group(SMALL, 4, 4))
    return compile_stats()["programs"] - before, builds[traced:]


@pytest.mark.slow
def test_a_group_of_another_width_compiles_nothing(monkeypatch) -> None:
    """The fixture's check on SMALL (the fast suite has it at full size above)."""
    assert _second_group_compiles(monkeypatch) == (0, [])


def test_a_builder_per_width_compiles_for_the_second_group(monkeypatch) -> None:
    """Mutation of the test above: the builder of one width per program (``make_problem`` at
    the group's k) compiles and traces again for the second group."""
    monkeypatch.setattr(engine, "_bucket_problems", profile_compile.per_width_problems)
    programs, builds = _second_group_compiles(monkeypatch)
    assert programs == 1 and builds == [4] * len(shifts_of(SMALL))


def _merged_builds(monkeypatch) -> list:
    """Problem-constructor traces of SMALL's merged group (widths 2 and 4 in one preparer)."""
    builds = _traced_builds(monkeypatch)
    _clear()
    (group,) = shape_groups(dataclasses.replace(SMALL, merge_shapes=True, shape_buckets=()))
    assert group.ks == (2, 4)
    engine.compute_group(group)
    return builds


def test_a_merged_group_traces_its_problems_once_per_shift(monkeypatch) -> None:
    """A merged group's widths are mapped inside one trace per shift (the width traced)."""
    assert _merged_builds(monkeypatch) == ["traced"] * len(shifts_of(SMALL))


def test_a_merged_group_with_static_widths_traces_per_width(monkeypatch) -> None:
    """Mutation of the test above: the merged preparer with one ``make_problem`` per width (the
    code before) traces every (width, shift)."""
    monkeypatch.setattr(engine, "_group_build", lambda g: engine._static_build(
        g.d, g.ks, shifts_of(g.config), g.activations, g.family, g.pool_n, g.config.nonneg_head,
        g.config.p1, g.padded[0]))
    per_width = len(shifts_of(SMALL))
    assert _merged_builds(monkeypatch) == [2] * per_width + [4] * per_width


def test_without_buckets_each_group_traces_its_own_runner(monkeypatch) -> None:
    """Mutation of ``test_groups_of_a_bucket_share_their_compiled_programs``: padding off, the
    same two groups trace the runner twice."""
    seen = _traced(monkeypatch)
    _clear()
    cfg = dataclasses.replace(SMALL, shape_buckets=())
    engine.compute_group(_group(cfg, 2, 4))
    engine.compute_group(_group(cfg, 4, 4))
    assert seen == ["relu", "relu"]


@pytest.mark.slow
def test_records_do_not_depend_on_the_groups_run_before(bucketed_runs) -> None:
    """The second group of the bucket, computed alone in a cleared process, is bit-identical."""
    _clear()
    alone = _by_id(engine.compute_group(_group(BUCKETED, 4, 4)))
    assert alone == _by_id(bucketed_runs["other"])


def test_shape_buckets_flag_and_bad_values(tmp_path, capsys) -> None:
    args = build_parser().parse_args(["--full", "--shape-buckets", "0.25,1"])
    assert config_from_args(args).shape_buckets == (0.25, 1.0)
    assert preset("full").shape_buckets == (2.0,) and not preset("full").merge_shapes
    for bad in ((0.0,), (1.0, 1.0), (float("nan"),)):
        with pytest.raises(ValueError, match="shape_buckets"):
            SweepConfig(shape_buckets=bad)
    assert main(["--shape-buckets", "-1", "--out", str(tmp_path / "o")]) == 2
    assert "shape_buckets" in capsys.readouterr().err
