"""Verdicts on claims C1–C7 (THEORY.md) from stored records only, each on independent evidence.

A claim is a row of :data:`CLAIMS`: ``Claim(id, statement, applies, judge)``. ``applies(run)`` says
whether the claim is about a run (a :class:`RunView` of its records); ``judge(run, tol)`` returns a
:class:`Judgement` that compares quantities computed by *different routes*:

* exact population losses against Monte Carlo means from fresh samples drawn by the shift's
  definition (``sample_target``; a random subset of runs per cell, :mod:`sims.evidence`);
* the solver's final point against the closed-form GD iterate recomputed after the same number of
  steps (last layer; first layer with φ = identity), and a converged run against its gradient-flow
  limit;
* closed-form limits against the theorem's formulas (``twolayer.bounds``);
* C1 pointwise on the run's own samples (drawn from the definition), C2's floor against the loss of a
  head fitted by least squares on fresh samples, C4's floor against E[y²] estimated from fresh samples.

GD evidence is part of pass/fail: a converged run away from its limit fails the claim; a run that
stopped early without converging fails; C4 and C5(b) are judged only on solvers that moved (steps
taken and the training loss decreased). Verdicts: ``holds``; ``holds (limits only)`` (C3, C5, C6,
C7 with no converged GD run); ``inconclusive`` (every GD run the claim reads diverged, or no run
could be judged because its solver did not move); ``fails``; ``not checked`` (the claim applies to
no run of the sweep).

Tolerances (:class:`Tolerances`) are relative to the run's initial target loss L0 plus an absolute
rounding floor from the loss scale S = E[y²] + E[f_src²] and the dtype's eps: ``ROUND_CANCEL·eps·S``
for the ReLU-Gaussian kernel form cᵀKc (terms of size S cancel), ``(ROUND_DIFF·eps)²·S`` for the
forms that square a computed difference (φ = identity, sparse ReLU). Monte Carlo agreement:
|mean − exact| ≤ z·se + floor with z Bonferroni-corrected over every comparison of the sweep at
family-wise level ``test_level``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sims.config import SweepConfig
from sims.records import CELL_KEYS, RUN_KEYS

ROUND_CANCEL = 1e3
ROUND_DIFF = 1e4
MOVE_RTOL = 1e-9  # a solver moved if its training loss fell by more than this fraction
C2_SLACK = 20.0  # L(fitted head) - floor <= C2_SLACK * floor * k / n_mc (least-squares excess risk)
GD_STATUSES = ("at_limit", "off_limit", "unconverged", "diverged", "unmoved", "moved")


# --------------------------------------------------------------------------------------- records


class RunView:
    """The records of one run, ``{method: record}``; ``run["field"]`` reads a run-level field."""

    def __init__(self, records: dict[str, dict]):
        self.records = records
        self.base = next(iter(records.values()))

    def __getitem__(self, key: str) -> Any:
        return self.base[key]

    def get(self, key: str, default: Any = None) -> Any:
        """A run-level field, or ``default``."""
        return self.base.get(key, default)

    def method(self, name: str) -> dict | None:
        """The record of ``name`` (``first``, ``last``, ``full``, ...) or None."""
        return self.records.get(name)

    @property
    def L0(self) -> float:
        """Initial target loss."""
        return float(self.base["initial_target_loss"])

    @property
    def is_input(self) -> bool:
        return self.base["shift"] == "input"

    @property
    def linear(self) -> bool:
        return self.base["activation"] == "linear"

    def fields(self) -> dict[str, Any]:
        """The run's identifying fields (for failure reports)."""
        return {k: self.base[k] for k in RUN_KEYS if k in self.base}


def group_runs(records: Iterable[dict]) -> list[dict[str, dict]]:
    """Records grouped per run: a list of ``{method: record}``."""
    runs: dict[tuple, dict[str, dict]] = defaultdict(dict)
    for r in records:
        runs[tuple(r.get(k) for k in RUN_KEYS)][r["method"]] = r
    return list(runs.values())


# ------------------------------------------------------------------------------------ tolerances


@dataclass(frozen=True)
class Tolerances:
    """Absolute + relative tolerances (module docstring); ``mc_z`` is the Monte Carlo threshold."""

    zero_rtol: float = 1e-10
    positive_rtol: float = 1e-8
    agree_rtol: float = 1e-6
    mc_z: float = 5.0

    @classmethod
    def of(cls, cfg: SweepConfig, mc_comparisons: int = 1) -> Tolerances:
        """From a config; z = Φ⁻¹(1 − level / (2m)) over ``mc_comparisons`` = m comparisons."""
        from scipy.stats import norm

        z = float(norm.isf(cfg.test_level / (2 * max(mc_comparisons, 1))))
        return cls(cfg.zero_rtol, cfg.positive_rtol, cfg.agree_rtol, z)

    @staticmethod
    def floor(run: RunView) -> float:
        """Absolute rounding floor of the run's exact loss formula."""
        eps = float(np.finfo(np.dtype(run.get("dtype") or "float64")).eps)
        scale = float(run.get("loss_scale") or run.L0)
        if run["activation"] == "relu" and run["family"] == "gaussian":
            return ROUND_CANCEL * eps * scale
        return (ROUND_DIFF * eps) ** 2 * scale

    def is_zero(self, x: float, run: RunView) -> bool:
        """x is zero up to zero_rtol·L0 + rounding floor."""
        return x <= self.zero_rtol * run.L0 + self.floor(run)

    def is_positive(self, x: float, run: RunView) -> bool:
        """x is above positive_rtol·L0 + rounding floor."""
        return x > self.positive_rtol * run.L0 + self.floor(run)

    def agree(self, a: float, b: float, run: RunView) -> bool:
        """|a − b| <= agree_rtol·max(L0, |a|, |b|) + rounding floor."""
        return abs(a - b) <= self.agree_rtol * max(run.L0, abs(a), abs(b)) + self.floor(run)

    def mc_agree(self, exact: float, mean: float, se: float, run: RunView) -> bool:
        """The Monte Carlo mean is within z standard errors (+ rounding floor) of ``exact``."""
        return abs(mean - exact) <= self.mc_z * se + self.floor(run) + 1e-9 * abs(exact)


# ------------------------------------------------------------------------------------- judgements


@dataclass
class Judgement:
    """One claim on one run.

    Attributes:
        ok: True (holds), False (fails) or None (not judged: ``reason`` says why).
        reason: the failed checks, or why the run is not judged.
        solver_excluded: not judged because its solver did not move (or diverged).
        gd: statuses of the GD records read (:data:`GD_STATUSES`).
        mc: Monte Carlo comparisons made.
    """

    ok: bool | None
    reason: str = ""
    solver_excluded: bool = False
    gd: Counter = field(default_factory=Counter)
    mc: int = 0


class Checks:
    """Accumulates a judge's checks on one run."""

    def __init__(self, run: RunView, tol: Tolerances):
        self.run, self.tol = run, tol
        self.failed: list[str] = []
        self.gd: Counter = Counter()
        self.mc = 0

    def need(self, cond: bool, what: str) -> bool:
        """Record a check; ``what`` names it when it fails."""
        if not cond:
            self.failed.append(what)
        return bool(cond)

    def exact_at(self, point: str) -> float | None:
        """The record's exact target loss at an MC point name."""
        run = self.run
        if point == "pretrained":
            return run.L0
        if point == "c1":
            return 0.0
        if point.endswith("_limit"):
            rec = run.method(point[: -len("_limit")])
            return None if rec is None else rec.get("limit_target_loss")
        rec = run.method(point)
        return None if rec is None else rec.get("target_loss")

    def mc_points(self, *points: str) -> None:
        """Compare the exact losses at ``points`` with the run's Monte Carlo means (if sampled)."""
        mc = self.run.get("mc")
        if not mc:
            return
        for p in points:
            if p not in mc:
                continue
            exact = self.exact_at(p)
            if exact is None:
                continue
            mean, se = mc[p][-2:]
            self.mc += 1
            self.need(self.tol.mc_agree(exact, mean, se, self.run),
                      f"Monte Carlo {p}: {mean:.6g} ± {se:.2g} vs exact {exact:.6g}")

    def mc_value(self, name: str, exact: float, what: str) -> None:
        """Compare ``exact`` with the run's Monte Carlo estimate ``name`` (if sampled)."""
        mc = self.run.get("mc")
        if not mc or name not in mc:
            return
        mean, se = mc[name][-2:]
        self.mc += 1
        self.need(self.tol.mc_agree(exact, mean, se, self.run),
                  f"Monte Carlo {what}: {mean:.6g} ± {se:.2g} vs {exact:.6g}")

    def trajectory(self, rec: dict, tune: str) -> None:
        """The solver's final point is the closed-form iterate after its ``steps_taken`` steps, and
        a run that is neither converged nor diverged ran every step."""
        if rec.get("cf_gap") is not None:
            eps = float(np.finfo(np.dtype(self.run.get("dtype") or "float64")).eps)
            allowed = self.tol.agree_rtol * rec["cf_moved"] + ROUND_DIFF * eps * rec["cf_norm"]
            self.need(rec["cf_gap"] <= allowed
                      and self.tol.agree(rec["target_loss"], rec["cf_target_loss"], self.run),
                      f"{tune} GD is {rec['cf_gap']:.3g} from the closed-form iterate after "
                      f"{rec['steps_taken']} steps (which moved {rec['cf_moved']:.3g})")
        if not rec["converged"] and not rec["diverged"]:
            self.need(rec["steps_taken"] >= rec["steps"],
                      f"{tune} GD stopped after {rec['steps_taken']} of {rec['steps']} steps "
                      f"without converging or diverging")

    def gd_at_limit(self, rec: dict, tune: str, limit: float) -> None:
        """Trajectory check, then: a converged run's target loss equals ``limit``."""
        self.trajectory(rec, tune)
        if rec["diverged"]:
            self.gd["diverged"] += 1
        elif not rec["converged"]:
            self.gd["unconverged"] += 1
        elif self.need(self.tol.agree(rec["target_loss"], limit, self.run),
                       f"converged {tune} GD at {rec['target_loss']:.6g}, its limit is {limit:.6g}"):
            self.gd["at_limit"] += 1
        else:
            self.gd["off_limit"] += 1

    def moved(self, rec: dict, tune: str) -> bool:
        """Whether the solver moved (took steps and lowered its training loss); counts statuses."""
        self.trajectory(rec, tune)
        if rec["diverged"]:
            self.gd["diverged"] += 1
        ok = (rec["steps_taken"] > 0
              and rec["train_loss"] < rec["start_train_loss"] * (1 - MOVE_RTOL))
        if not rec["diverged"]:
            self.gd["moved" if ok else "unmoved"] += 1
        return ok

    def result(self, excluded: str = "", solver_excluded: bool = False) -> Judgement:
        """The judgement (``excluded`` set: not judged, unless a check already failed)."""
        if self.failed:
            return Judgement(False, "; ".join(self.failed), gd=self.gd, mc=self.mc)
        if excluded:
            return Judgement(None, excluded, solver_excluded, gd=self.gd, mc=self.mc)
        return Judgement(True, gd=self.gd, mc=self.mc)


# ----------------------------------------------------------------------------------------- claims


@dataclass(frozen=True)
class Claim:
    """A claim of THEORY.md: ``applies(run) -> bool`` and ``judge(run, tol) -> Judgement``.

    ``gd_limit``: the claim is about GD reaching its limit (without a converged GD run the verdict
    reads ``holds (limits only)``).
    """

    id: str
    statement: str
    applies: Callable[[RunView], bool]
    judge: Callable[[RunView, Tolerances], Judgement]
    gd_limit: bool = False


def _c1_applies(run: RunView) -> bool:
    return run.is_input


def _c1_judge(run: RunView, tol: Tolerances) -> Judgement:
    c = Checks(run, tol)
    # On the run's samples (drawn from the definition): f_{v_src, B_src A^-1}(A x_src) = y_src.
    c.need(run["c1_pool_loss"] <= tol.zero_rtol * run["pool_y2"] + tol.floor(run),
           f"B_src A^-1 misfits the samples: mean squared residual {run['c1_pool_loss']:.3g}")
    c.mc_points("pretrained", "c1")
    return c.result()


def _c2_applies(run: RunView) -> bool:
    return run.is_input and run.linear and run.method("last") is not None


def _c2_judge(run: RunView, tol: Tolerances) -> Judgement:
    c = Checks(run, tol)
    last, floor = run.method("last"), run["c2_floor"]
    slack = tol.floor(run) + tol.zero_rtol * run.L0
    c.need(last["target_loss"] >= floor - slack, f"last-layer GD {last['target_loss']:.6g} "
           f"below the floor {floor:.6g}")
    c.need(last["limit_target_loss"] >= floor - slack,
           f"last-layer limit {last['limit_target_loss']:.6g} below the floor {floor:.6g}")
    if run["k"] < run["d"]:
        c.need(tol.is_positive(floor, run), f"floor {floor:.3g} not positive with k < d")
    c.gd["diverged" if last["diverged"] else "read"] += 1
    mc = run.get("mc")
    if mc and "c2_head" in mc:  # the floor is attained: a least-squares head on fresh samples
        fitted, n_mc = mc["c2_head"][0], run.get("mc_samples") or 8192
        c.need(floor - slack <= fitted <= floor * (1 + C2_SLACK * run["k"] / n_mc) + slack,
               f"least-squares head on fresh samples has loss {fitted:.6g}, floor {floor:.6g}")
        c.mc_value("c2_head", fitted, "loss of the fitted head")
    c.mc_points("pretrained", "last", "last_limit")
    return c.result()


def _c3_applies(run: RunView) -> bool:
    return not run.is_input and run.method("last") is not None


def _c3_judge(run: RunView, tol: Tolerances) -> Judgement:
    c = Checks(run, tol)
    last = run.method("last")
    c.mc_points("pretrained", "last", "last_limit")
    if run["rank_z"] < run["k"]:
        return c.result(excluded="rank Z < k")
    lim = last["limit_target_loss"]
    c.need(tol.is_zero(lim, run), f"last-layer limit {lim:.3g} is not zero")
    c.gd_at_limit(last, "last", lim)
    return c.result()


def _c4_applies(run: RunView) -> bool:
    return (not run.is_input and not run.linear and bool(run.get("nonneg_head"))
            and run["t"] < 0 and run.method("first") is not None)


def _c4_judge(run: RunView, tol: Tolerances) -> Judgement:
    c = Checks(run, tol)
    first, floor = run.method("first"), run["c4_floor"]
    c.mc_value("labels2", floor, "E[y^2] = t^2 E[y_src^2] (the C4 floor)")
    c.mc_points("pretrained", "first")
    if not c.moved(first, "first"):
        return c.result(excluded="GD did not move", solver_excluded=True)
    slack = tol.floor(run) + tol.zero_rtol * run.L0
    c.need(min(first["trace"]) >= floor - slack and first["target_loss"] >= floor - slack,
           f"first-layer GD {min(first['trace']):.6g} below the floor {floor:.6g}")
    return c.result()


def _c5_applies(run: RunView) -> bool:
    return (run.is_input and run.linear and run["family"] == "sparse"
            and run["shift_kind"] == "scale" and run["rank"] == 1 and run.method("first") is not None)


def _c5_judge(run: RunView, tol: Tolerances) -> Judgement:
    c = Checks(run, tol)
    first, full = run.method("first"), run.method("full")
    lim = first["limit_target_loss"]
    zero = tol.is_zero(lim, run)
    c.need(zero == bool(run["e1_sampled"]),
           f"first-layer limit {lim:.3g} {'zero' if zero else 'positive'} while u_1 is "
           f"{'' if run['e1_sampled'] else 'not '}sampled")
    c.gd_at_limit(first, "first", lim)
    if zero and run["n_unsampled"] > 0 and full is not None and c.moved(full, "full"):
        c.need(tol.is_positive(min(full["trace"][1:] or full["trace"]), run)
               and tol.is_positive(full["target_loss"], run),
               f"full fine-tuning reached {min(full['trace']):.3g} with directions unsampled")
    c.mc_points("pretrained", "first", "first_limit", "full")
    return c.result()


def _c6_applies(run: RunView) -> bool:
    return (not run.is_input and run.linear and run["k"] <= run["n"] < run["d"]
            and run.method("first") is not None and run.method("last") is not None)


def _c6_judge(run: RunView, tol: Tolerances) -> Judgement:
    c = Checks(run, tol)
    first, last = run.method("first"), run.method("last")
    c.mc_points("pretrained", "first", "first_limit", "last", "last_limit")
    if run["rank_z"] < run["k"]:
        return c.result(excluded="rank Z < k")
    bound = run["first_layer_bound"]
    c.need(tol.is_zero(last["limit_target_loss"], run),
           f"last-layer limit {last['limit_target_loss']:.3g} is not zero")
    c.need(tol.is_positive(bound, run), f"first-layer loss {bound:.3g} is not positive")
    c.need(tol.agree(first["limit_target_loss"], bound, run),
           f"first-layer limit {first['limit_target_loss']:.6g} != ||(I-P_X)(t-1)w0||^2 {bound:.6g}")
    c.gd_at_limit(first, "first", bound)
    c.gd_at_limit(last, "last", last["limit_target_loss"])
    return c.result()


def _c7_applies(run: RunView) -> bool:
    return run.linear and run.method("first") is not None


def _c7_judge(run: RunView, tol: Tolerances) -> Judgement:
    c = Checks(run, tol)
    first, bound = run.method("first"), run["first_layer_bound"]
    c.need(tol.agree(first["limit_target_loss"], bound, run),
           f"first-layer limit {first['limit_target_loss']:.6g} != "
           f"||(I-P_X)(w*-w0)||^2_Sigma {bound:.6g}")
    c.gd_at_limit(first, "first", first["limit_target_loss"])
    c.mc_points("pretrained", "first", "first_limit")
    return c.result()


CLAIMS: tuple[Claim, ...] = (
    Claim("C1", "input shift: B = B_src A^-1 gives zero target loss", _c1_applies, _c1_judge),
    Claim("C2", "input shift, linear: last-layer loss >= population floor, attained, > 0 when k < d",
          _c2_applies, _c2_judge),
    Claim("C3", "output shift: last layer reaches v = t v_src (zero loss) when rank Z = k",
          _c3_applies, _c3_judge, gd_limit=True),
    Claim("C4", "output shift, ReLU, v_src >= 0, t < 0: first layer never below t^2 E[y_src^2]",
          _c4_applies, _c4_judge),
    Claim("C5", "sparse, linear, rank-1 input shift: first layer zero iff u_1 sampled; full > 0",
          _c5_applies, _c5_judge, gd_limit=True),
    Claim("C6", "output shift, linear, k <= n < d: last layer zero, first layer = ||(I-P_X)(t-1)w0||^2",
          _c6_applies, _c6_judge, gd_limit=True),
    Claim("C7", "first layer, linear: GD -> closed form, loss = ||(I-P_X)(w*-w0)||^2_Sigma",
          _c7_applies, _c7_judge, gd_limit=True),
)


# --------------------------------------------------------------------------------------- verdicts


@dataclass
class Verdict:
    """Counts for one claim over a sweep (see module docstring for the verdict rules)."""

    claim: str
    statement: str
    gd_limit: bool = False
    checked: int = 0
    held: int = 0
    excluded: dict[str, int] = field(default_factory=dict)
    solver_excluded: int = 0
    gd: Counter = field(default_factory=Counter)
    mc: int = 0
    mc_runs: int = 0
    tests: list[dict] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)
    test_note: str = ""

    def add(self, run: RunView, j: Judgement) -> None:
        """Count one judgement (keep up to 5 failing runs for the report)."""
        self.gd.update(j.gd)
        self.mc += j.mc
        self.mc_runs += j.mc > 0
        if j.ok is None:
            self.excluded[j.reason] = self.excluded.get(j.reason, 0) + 1
            self.solver_excluded += j.solver_excluded
            return
        self.checked += 1
        if j.ok:
            self.held += 1
        elif len(self.failures) < 5:
            self.failures.append({**run.fields(), "why": j.reason})

    @property
    def verdict(self) -> str:
        """``holds``, ``holds (limits only)``, ``inconclusive``, ``fails`` or ``not checked``."""
        if self.held < self.checked or not all(t["passed"] for t in self.tests):
            return "fails"
        if self.checked == 0:
            return "inconclusive" if self.solver_excluded else "not checked"
        total = sum(self.gd.values())
        if total and self.gd["diverged"] == total:
            return "inconclusive"
        if self.gd_limit and self.gd["at_limit"] == 0:
            return "holds (limits only)"
        return "holds"

    def notes(self) -> list[str]:
        """Short notes for the table."""
        out = [f"{n} excluded ({r})" for r, n in self.excluded.items()]
        gd = {k: v for k, v in self.gd.items() if v and k != "read"}
        if gd:
            out.append("GD " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in sorted(gd.items())))
        total = sum(self.gd.values())
        if total and self.gd["diverged"] == total:
            out.append(f"all {total} GD runs diverged")
        if self.mc:
            out.append(f"Monte Carlo {self.mc} comparisons on {self.mc_runs} runs")
        if self.tests:
            passed = sum(t["passed"] for t in self.tests)
            pmin = min(t["pvalue"] for t in self.tests)
            out.append(f"binomial {passed}/{len(self.tests)} cells pass, min p={pmin:.3g}")
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"claim": self.claim, "statement": self.statement, "verdict": self.verdict,
                "checked": self.checked, "held": self.held, "excluded": self.excluded,
                "gd": dict(self.gd), "monte_carlo_comparisons": self.mc,
                "monte_carlo_runs": self.mc_runs, "statistical_test": self.test_note,
                "tests": self.tests, "example_failures": self.failures}


def _c5_binomial(runs: list[RunView], verdict: Verdict, cfg: SweepConfig, tol: Tolerances) -> None:
    """Per cell: the count of runs whose first-layer limit is zero against 1 − (1 − p1)ⁿ."""
    from scipy.stats import binomtest

    cells: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    for run in runs:
        cell = cells[tuple(run[k] for k in CELL_KEYS)]
        cell[0] += tol.is_zero(run.method("first")["limit_target_loss"], run)
        cell[1] += 1
    if not cells:
        return
    level = cfg.test_level / len(cells)
    for key, (succ, trials) in sorted(cells.items(), key=lambda kv: str(kv[0])):
        fields = dict(zip(CELL_KEYS, key))
        expected = 1.0 - (1.0 - cfg.p1) ** fields["n"]
        pvalue = float(binomtest(succ, trials, expected).pvalue)
        verdict.tests.append({**fields, "successes": succ, "trials": trials,
                              "expected_rate": expected, "pvalue": pvalue, "level": level,
                              "passed": pvalue >= level})
    verdict.test_note = (f"two-sided exact binomial test per cell of the success count against "
                         f"1-(1-p1)^n, level {cfg.test_level} Bonferroni-corrected over "
                         f"{len(cells)} cells")


def evaluate(records: Iterable[dict], cfg: SweepConfig,
             claims: tuple[Claim, ...] = CLAIMS) -> list[Verdict]:
    """Judge ``claims`` on ``records`` (records of one sweep)."""
    runs = [RunView(r) for r in group_runs(records)]
    comparisons = sum(len(run.get("mc") or {}) for run in runs)
    tol = Tolerances.of(cfg, comparisons)
    verdicts = []
    for claim in claims:
        v = Verdict(claim.id, claim.statement, claim.gd_limit)
        applicable = [run for run in runs if claim.applies(run)]
        for run in applicable:
            v.add(run, claim.judge(run, tol))
        if claim.id == "C5":
            _c5_binomial(applicable, v, cfg, tol)
        verdicts.append(v)
    return verdicts


def verdict_table(verdicts: list[Verdict]) -> str:
    """Plain-text table for stdout."""
    lines = [f"{'claim':<6}{'verdict':<21}{'checked':>8}{'held':>8}  notes"]
    for v in verdicts:
        lines.append(f"{v.claim:<6}{v.verdict:<21}{v.checked:>8}{v.held:>8}  {'; '.join(v.notes())}")
        lines.append(f"{'':<6}{v.statement}")
        for f in v.failures[:2]:
            lines.append(f"{'':<6}e.g. fails on {f}")
    return "\n".join(lines)


def exit_worthy(verdicts: list[Verdict]) -> list[str]:
    """Claims that make ``--strict`` exit 1: those that fail or are inconclusive."""
    return [v.claim for v in verdicts if v.verdict in ("fails", "inconclusive")]
