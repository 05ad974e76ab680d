"""Cost tiers: seeds past ``gd_seeds`` run only the closed-form tune modes, ``gd_steps`` bounds the
span iteration; the records, their ids and the verdicts stay consistent with that."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sims.claims import evaluate
from sims.engine import _runner, build_run, compute_group
from sims.evidence import mc_selected
from sims.grid import shape_groups, tunes_of
from sims.records import RUN_KEYS
from tests.sims.tiny import TINY
from twolayer import TUNE_MODES, uses_closed_form

UNTIERED = dataclasses.replace(TINY, families=("sparse",), seeds=3, mc_runs=1,
                               output_shifts=(-1.0,))
TIERED = dataclasses.replace(UNTIERED, gd_seeds=1, gd_steps=60)
SAME = ("target_loss", "initial_target_loss", "trace", "record_steps", "train_loss", "converged",
        "diverged", "steps_taken", "grad_norm_rel", "lr", "limit_target_loss", "cf_gap",
        "cf_target_loss", "rank_z", "first_layer_bound", "c2_floor", "c4_floor", "e1_sampled",
        "steps")


def _span(rec: dict) -> bool:
    return rec["method"] in TUNE_MODES and not uses_closed_form(rec["method"], rec["activation"])


@pytest.fixture(scope="module")
def records() -> tuple[list[dict], list[dict]]:
    return (compute_group(shape_groups(UNTIERED)[0]), compute_group(shape_groups(TIERED)[0]))


def test_tiered_group_records_exactly_its_ids(records) -> None:
    _, tiered = records
    assert sorted(r["id"] for r in tiered) == sorted(shape_groups(TIERED)[0].record_ids())
    assert all(r["gd_seeds"] == 1 and r["gd_steps"] == 60 for r in tiered)  # records carry them
    assert {r["seed_index"] for r in tiered if _span(r)} == {0}
    assert {r["seed_index"] for r in tiered if not _span(r)} == {0, 1, 2}
    for r in tiered:
        if _span(r):
            assert r["steps"] == 60 and r["record_steps"][-1] == 60 and r["steps_taken"] <= 60
        elif r["method"] in TUNE_MODES:
            assert r["steps"] == 300 and r["record_steps"][-1] == 300


def test_closed_form_records_do_not_depend_on_the_tiers(records) -> None:
    untiered, tiered = records
    base = {(tuple(r[k] for k in RUN_KEYS), r["method"]): r for r in untiered}
    assert len(base) == len(untiered)
    compared = 0
    for r in tiered:
        if _span(r):
            continue
        ref = base[(tuple(r[k] for k in RUN_KEYS), r["method"])]
        for key in SAME:
            assert r.get(key) == ref.get(key), (key, r["method"], r["seed_index"])
        compared += 1
    assert compared == len(tiered) - sum(map(_span, tiered)) > 0


def test_monte_carlo_runs_come_from_the_gradient_descent_tier(records) -> None:
    _, tiered = records
    assert {r["seed_index"] for r in tiered if r["mc"]} == {0}
    cell = {"d": 8, "k": 2, "n": 4}
    assert mc_selected(dataclasses.replace(TIERED, mc_runs=5), cell) == {0}
    assert mc_selected(dataclasses.replace(UNTIERED, mc_runs=5), cell) == {0, 1, 2}


def test_claims_on_gradient_descent_are_judged_on_the_gradient_descent_tier(records) -> None:
    untiered, tiered = records
    full, tier = ({v.claim: v for v in evaluate(recs, cfg)}
                  for recs, cfg in ((untiered, UNTIERED), (tiered, TIERED)))
    judged = {c: v.checked + sum(v.excluded.values()) for c, v in tier.items()}
    # C4 reads ReLU first-layer GD: one seed of three; the closed-form claims read every seed.
    assert judged["C4"] * 3 == full["C4"].checked + sum(full["C4"].excluded.values()) > 0
    for claim in ("C3", "C5", "C6", "C7"):
        assert judged[claim] == full[claim].checked + sum(full[claim].excluded.values()) > 0
    assert tier["C4"].verdict == "holds" and tier["C7"].verdict == "holds"


def test_an_unconverged_run_judged_against_the_wrong_budget_fails(records) -> None:
    """Mutation: GD records that claim the closed-form budget (300 steps) but stopped at their
    60-step budget unconverged are reported, so the verdict reads each record's own budget."""
    _, tiered = records
    unconverged = [r for r in tiered if _span(r) and not r["converged"] and not r["diverged"]]
    assert unconverged, "every GD run converged within 60 steps: the mutation cannot bite"
    mutated = [{**r, "steps": 300} if _span(r) else r for r in tiered]
    verdicts = {v.claim: v.verdict for v in evaluate(mutated, TIERED)}
    assert verdicts["C4"] == "fails"
    assert {v.claim: v.verdict for v in evaluate(tiered, TIERED)}["C4"] == "holds"


def _primitives(jaxpr) -> list[str]:
    """Names of every primitive in ``jaxpr`` and its sub-jaxprs."""
    out = []
    for eqn in jaxpr.eqns:
        out.append(eqn.primitive.name)
        for param in eqn.params.values():
            for sub in param if isinstance(param, (list, tuple)) else [param]:
                sub = getattr(sub, "jaxpr", sub)
                if hasattr(sub, "eqns"):
                    out.extend(_primitives(sub))
    return out


def test_the_closed_form_tier_skips_the_span_iterations_in_the_shared_runner() -> None:
    """Both tiers run one runner; with ``gd_on`` false (the closed-form tier) its span iterations
    do not run, by a real branch (``cond`` on the batch-wide flag, not a select that computes
    both), and their outputs are NaN placeholders; the closed-form modes are unchanged."""
    cfg = TIERED
    runs = [r for r in shape_groups(cfg)[0].runs() if r.activation == "relu"][:3]
    built = [build_run(cfg, r) for r in runs]
    n_max = max(r.n for r in runs)
    problems = jax.tree.map(lambda *a: jnp.stack(a), *[p for p, _, _ in built])
    X = jnp.stack([jnp.pad(x, ((0, n_max - x.shape[0]), (0, 0))) for _, x, _ in built])
    y = jnp.stack([jnp.pad(v, (0, n_max - v.shape[0])) for _, _, v in built])
    n_valid = jnp.asarray([float(r.n) for r in runs])
    is_input = jnp.asarray([r.shift.__class__.__name__ == "InputShift" for r in runs])
    runner = _runner("relu", cfg.families[0], tunes_of(cfg, "relu", True), cfg.steps,
                     cfg.gd_step_budget, cfg.n_records, cfg.gtol, cfg.lr, tuple(jax.devices()[:1]))
    args = (problems, X, y, n_valid, is_input)
    on, off = runner(*args, jnp.asarray(True)), runner(*args, jnp.asarray(False))
    for tune in ("first", "full"):  # ReLU: span iterations
        assert np.all(np.isfinite(on[tune]["target_loss"])) and np.all(on[tune]["steps_taken"] > 0)
        assert np.all(np.isnan(off[tune]["target_loss"])) and np.all(off[tune]["steps_taken"] == 0)
    np.testing.assert_array_equal(on["last"]["target_loss"], off["last"]["target_loss"])
    assert "cond" in _primitives(jax.make_jaxpr(runner)(*args, jnp.asarray(False)).jaxpr)
