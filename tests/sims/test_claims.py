"""Each claim of sims.claims on hand-made records: it holds on good evidence and fails on bad."""

from __future__ import annotations

import copy

import pytest

from sims.claims import CLAIMS, RunView, Tolerances, evaluate, exit_worthy, verdict_table
from sims.config import SweepConfig

TOL = Tolerances(zero_rtol=1e-10, positive_rtol=1e-8, agree_rtol=1e-6, mc_z=5.0)
BY_ID = {c.id: c for c in CLAIMS}


def gd(target=0.2, limit=0.2, **kw) -> dict:
    """A converged, moved GD record at its limit (closed-form evidence consistent)."""
    rec = {"target_loss": target, "limit_target_loss": limit, "trace": [1.0, 0.5, target],
           "converged": True, "diverged": False, "steps_taken": 100, "steps": 100,
           "train_loss": 0.01, "start_train_loss": 0.5, "cf_gap": 0.0, "cf_moved": 1.0,
           "cf_norm": 2.0, "cf_target_loss": target}
    rec.update(kw)
    return rec


def run(shift="input", activation="linear", family="gaussian", methods=None, **kw) -> RunView:
    base = {"d": 8, "k": 2, "n": 4, "activation": activation, "family": family, "shift": shift,
            "shift_kind": "scale" if shift == "input" else "output", "rank": 1 if shift == "input"
            else None, "alpha": 3.0 if shift == "input" else None,
            "t": None if shift == "input" else -1.0, "seed_index": 0, "pool_n": 8,
            "initial_target_loss": 1.0, "loss_scale": 4.0, "dtype": "float64", "mc": None,
            "c1_pool_loss": 1e-32, "pool_y2": 2.0, "rank_z": 2, "c2_floor": 0.2, "c4_floor": 1.0,
            "first_layer_bound": 0.2, "e1_sampled": True, "n_unsampled": 3, "nonneg_head": True,
            "mc_samples": 8192}
    base.update(kw)
    recs = {"none": {**base, "method": "none", "target_loss": 1.0}}
    for name, rec in (methods or {}).items():
        recs[name] = {**base, "method": name, **rec}
    return RunView(recs)


def judge(claim: str, r: RunView):
    c = BY_ID[claim]
    assert c.applies(r)
    return c.judge(r, TOL)


# ---------------------------------------------------------------------------------- C1


def test_c1_holds_on_pointwise_zero_and_fails_on_a_misfit():
    assert judge("C1", run()).ok
    assert not judge("C1", run(c1_pool_loss=1e-6)).ok
    assert not BY_ID["C1"].applies(run(shift="output"))


def test_c1_monte_carlo_of_the_pretrained_loss_must_agree():
    good = {"pretrained": [1.0, 0.01], "c1": [1e-31, 1e-33]}
    assert judge("C1", run(mc=good)).ok
    assert not judge("C1", run(mc={**good, "pretrained": [2.0, 0.01]})).ok
    assert not judge("C1", run(mc={**good, "c1": [1e-3, 1e-5]})).ok


# ---------------------------------------------------------------------------------- C2


def test_c2_floor_bound_positivity_and_attainment():
    last = {"last": gd(0.25, 0.25)}
    assert judge("C2", run(methods=last)).ok
    assert not judge("C2", run(methods={"last": gd(0.1, 0.1)})).ok  # below the floor
    assert not judge("C2", run(methods=last, c2_floor=0.0)).ok  # not positive with k < d
    mc = {"c2_head": [0.2001, 0.2, 0.002]}
    assert judge("C2", run(methods=last, mc=mc)).ok
    assert not judge("C2", run(methods=last, mc={"c2_head": [0.3, 0.3, 0.002]})).ok  # not attained
    assert not judge("C2", run(methods=last, mc={"c2_head": [0.2001, 0.4, 0.002]})).ok


# ---------------------------------------------------------------------------------- C3


def test_c3_limit_zero_and_gd_at_its_limit():
    ok = {"last": gd(1e-14, 1e-14)}
    assert judge("C3", run(shift="output", methods=ok)).ok
    assert not judge("C3", run(shift="output", methods={"last": gd(1e-3, 1e-3)})).ok
    off = {"last": gd(1e-3, 1e-14, cf_target_loss=1e-3)}  # converged but away from the limit
    assert not judge("C3", run(shift="output", methods=off)).ok
    j = judge("C3", run(shift="output", methods=ok, rank_z=1))
    assert j.ok is None and j.reason == "rank Z < k"


def test_trajectory_check_catches_a_solver_that_did_not_move_or_stopped():
    stuck = gd(1.0, 1e-14, converged=False, cf_gap=1.0, cf_target_loss=0.3)
    assert not judge("C3", run(shift="output", methods={"last": stuck})).ok
    stopped = gd(0.3, 1e-14, converged=False, steps_taken=10)
    assert not judge("C3", run(shift="output", methods={"last": stopped})).ok
    unconverged = gd(0.3, 1e-14, converged=False)
    j = judge("C3", run(shift="output", methods={"last": unconverged}))
    assert j.ok and j.gd["unconverged"] == 1


# ---------------------------------------------------------------------------------- C4


def test_c4_floor_only_on_solvers_that_moved():
    r = dict(shift="output", activation="relu")
    first = gd(1.2, None, trace=[4.0, 2.0, 1.2])
    assert judge("C4", run(methods={"first": first}, **r)).ok
    below = gd(0.5, None, trace=[4.0, 2.0, 0.5])
    assert not judge("C4", run(methods={"first": below}, **r)).ok
    unmoved = gd(4.0, None, trace=[4.0] * 3, train_loss=0.5, converged=False)
    j = judge("C4", run(methods={"first": unmoved}, **r))
    assert j.ok is None and j.solver_excluded
    assert not judge("C4", run(methods={"first": first}, mc={"labels2": [2.0, 0.01]}, **r)).ok


# ---------------------------------------------------------------------------------- C5


def test_c5_zero_iff_sampled_and_full_positive():
    r = dict(family="sparse")
    zero = {"first": gd(1e-30, 1e-30), "full": gd(0.01, None, trace=[1.0, 0.1, 0.01])}
    assert judge("C5", run(methods=zero, **r)).ok
    assert not judge("C5", run(methods=zero, e1_sampled=False, **r)).ok
    full_zero = {**zero, "full": gd(1e-30, None, trace=[1.0, 0.1, 1e-30])}
    assert not judge("C5", run(methods=full_zero, **r)).ok
    pos = {"first": gd(0.3, 0.3), "full": gd(0.01, None)}
    assert judge("C5", run(methods=pos, e1_sampled=False, **r)).ok


# ---------------------------------------------------------------------------------- C6, C7


def test_c6_last_zero_first_at_the_formula():
    r = dict(shift="output")
    ok = {"first": gd(0.2, 0.2), "last": gd(1e-14, 1e-14)}
    assert judge("C6", run(methods=ok, **r)).ok
    assert not judge("C6", run(methods=ok, first_layer_bound=0.3, **r)).ok
    assert not judge("C6", run(methods=ok, first_layer_bound=0.0, **r)).ok


def test_c7_limit_equals_formula_and_gd_equals_limit():
    ok = {"first": gd(0.2, 0.2)}
    assert judge("C7", run(methods=ok)).ok
    assert not judge("C7", run(methods=ok, first_layer_bound=0.25)).ok
    assert not judge("C7", run(methods={"first": gd(0.25, 0.2, cf_target_loss=0.25)})).ok
    assert not judge("C7", run(methods=ok, mc={"first": [0.3, 0.01]})).ok


# ---------------------------------------------------------------------------------- verdicts


def _records(r: RunView) -> list[dict]:
    return [copy.deepcopy(rec) for rec in r.records.values()]


def _cfg() -> SweepConfig:
    return SweepConfig(dims=(8,), widths=(2,), seeds=1)


def test_verdicts_limits_only_inconclusive_and_strict():
    unconv = gd(0.2, 0.2, converged=False)
    v = {x.claim: x for x in evaluate(_records(run(methods={"first": unconv})), _cfg())}
    assert v["C7"].verdict == "holds (limits only)" and v["C1"].verdict == "holds"
    assert v["C3"].verdict == "not checked"
    diverged = gd(0.2, 0.2, converged=False, diverged=True)
    v = {x.claim: x for x in evaluate(_records(run(methods={"first": diverged})), _cfg())}
    assert v["C7"].verdict == "inconclusive"
    assert "C7" in exit_worthy(list(v.values()))
    assert "all 1 GD runs diverged" in verdict_table(list(v.values()))
    bad = gd(0.25, 0.2, cf_target_loss=0.25)
    v = {x.claim: x for x in evaluate(_records(run(methods={"first": bad})), _cfg())}
    assert v["C7"].verdict == "fails" and v["C7"].failures
    assert exit_worthy(list(v.values())) == ["C7"]


def test_tolerance_has_an_absolute_rounding_floor():
    r = run(activation="relu", initial_target_loss=1e-10, loss_scale=1.0)
    assert TOL.is_zero(-3e-16, r) and TOL.is_zero(1e-16, r)  # kernel form cancels at eps·S
    assert not TOL.is_zero(1e-9, r)
    lin = run(initial_target_loss=1e-10, loss_scale=1.0)
    assert not TOL.is_zero(1e-16, lin)  # differences squared: floor ~ (1e4 eps)^2 S


@pytest.mark.parametrize("claim", [c.id for c in CLAIMS])
def test_every_claim_has_a_statement_and_callables(claim):
    c = BY_ID[claim]
    assert c.statement and callable(c.applies) and callable(c.judge)
