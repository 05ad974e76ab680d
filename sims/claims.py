"""Verdicts on claims C1–C7 (``spec/theory.md``) from stored records only.

Each claim reports: ``checked`` (runs it applies to and that are judged), ``held`` (runs where it
holds), ``excluded`` (runs it applies to but which are not judged, with the reason, e.g. a
rank-deficient feature matrix for C3), ``unconverged`` (GD runs that did not meet the gradient
test; they are judged only on what does not need convergence, e.g. the closed-form limit or every
recorded step, and are counted here), and a verdict: ``holds`` (checked > 0, held == checked and,
for C5, every binomial test passes), ``fails`` or ``not checked``.

Tolerances are relative to the run's initial target loss L0 (config: ``zero_rtol``,
``positive_rtol``, ``agree_rtol``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from scipy.stats import binomtest

from sims.config import SweepConfig
from sims.records import CELL_KEYS, RUN_KEYS

CLAIMS = {
    "C1": "input shift: B = B_src A^-1 gives zero target loss",
    "C2": "input shift, linear: last-layer loss >= population floor (> 0 when k < d)",
    "C3": "output shift: v = t v_src gives zero loss; last layer reaches it when rank Z = k",
    "C4": "output shift, ReLU, v_src >= 0, t < 0: first layer never below t^2 E[y_src^2]",
    "C5": "sparse, linear, rank-1 input shift: first layer zero iff u_1 sampled; full > 0",
    "C6": "output shift, linear, k <= n < d: last layer zero, first layer = ||(I-P_X)(t-1)w0||^2",
    "C7": "first layer, linear: GD = closed form, loss = ||(I-P_X)(w*-w0)||^2_Sigma",
}



@dataclass
class Verdict:
    """Counts for one claim (see module docstring)."""

    claim: str
    statement: str
    checked: int = 0
    held: int = 0
    excluded: dict[str, int] = field(default_factory=dict)
    unconverged: int = 0
    tests: list[dict] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)
    test_note: str = ""
    gd_checked: int = 0
    gd_agree: int = 0

    def gd(self, agrees: bool) -> bool:
        """Count one converged GD run compared with its closed-form limit; returns ``agrees``."""
        self.gd_checked += 1
        self.gd_agree += bool(agrees)
        return agrees

    @property
    def verdict(self) -> str:
        """``holds``, ``fails`` or ``not checked``."""
        if self.checked == 0:
            return "not checked"
        ok = self.held == self.checked and all(t["passed"] for t in self.tests)
        return "holds" if ok else "fails"

    def judge(self, run: dict[str, Any], ok: bool) -> None:
        """Count one judged run (keep up to 5 failing runs for the report)."""
        self.checked += 1
        if ok:
            self.held += 1
        elif len(self.failures) < 5:
            self.failures.append({k: run[k] for k in RUN_KEYS if k in run})

    def exclude(self, reason: str) -> None:
        """Count a run the claim applies to but that is not judged."""
        self.excluded[reason] = self.excluded.get(reason, 0) + 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"claim": self.claim, "statement": self.statement, "verdict": self.verdict,
                "checked": self.checked, "held": self.held, "excluded": self.excluded,
                "unconverged_gd_runs": self.unconverged,
                "converged_gd_runs_compared": self.gd_checked,
                "converged_gd_runs_at_limit": self.gd_agree, "statistical_test": self.test_note,
                "tests": self.tests, "example_failures": self.failures}


def group_runs(records: Iterable[dict]) -> list[dict[str, dict]]:
    """Records grouped per run: a list of ``{method: record}``."""
    runs: dict[tuple, dict[str, dict]] = defaultdict(dict)
    for r in records:
        runs[tuple(r.get(k) for k in RUN_KEYS)][r["method"]] = r
    return list(runs.values())


def _le(a: float, b: float, slack: float) -> bool:
    return a <= b + slack


def evaluate(records: Iterable[dict], cfg: SweepConfig) -> list[Verdict]:
    """Judge claims C1–C7 on ``records`` (records of one sweep)."""
    zr, pr, ar = cfg.zero_rtol, cfg.positive_rtol, cfg.agree_rtol
    v = {c: Verdict(c, s) for c, s in CLAIMS.items()}
    c5_cells: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    for run in group_runs(records):
        any_rec = next(iter(run.values()))
        L0 = any_rec["initial_target_loss"]
        lin = any_rec["activation"] == "linear"
        inp = any_rec["shift"] == "input"
        first, last, full = run.get("first"), run.get("last"), run.get("full")
        oracle = run.get("oracle")
        # C1
        if inp and oracle is not None:
            v["C1"].judge(any_rec, oracle["target_loss"] <= zr * L0)
        # C2
        if inp and lin and last is not None:
            floor = any_rec["c2_floor"]
            ok = (last["target_loss"] >= floor - zr * L0
                  and last["limit_target_loss"] >= floor - zr * L0
                  and (any_rec["k"] >= any_rec["d"] or floor > zr * L0))
            v["C2"].judge(any_rec, ok)
        # C3
        if not inp and oracle is not None and last is not None:
            if any_rec["rank_z"] < any_rec["k"]:
                v["C3"].exclude("rank Z < k")
            else:
                ok = oracle["target_loss"] <= zr * L0 and last["limit_target_loss"] <= zr * L0
                if last["converged"]:
                    v["C3"].gd(last["target_loss"] <= ar * L0)
                else:
                    v["C3"].unconverged += 1
                v["C3"].judge(any_rec, ok)
        # C4
        if (not inp and not lin and cfg.nonneg_head and any_rec["t"] < 0 and first is not None):
            floor = any_rec["c4_floor"]
            ok = min(first["trace"]) >= floor - zr * L0 and first["target_loss"] >= floor - zr * L0
            v["C4"].unconverged += not first["converged"]
            v["C4"].judge(any_rec, ok)
        # C5
        if (inp and lin and any_rec["family"] == "sparse" and any_rec["shift_kind"] == "scale"
                and any_rec["rank"] == 1 and first is not None):
            zero = first["limit_target_loss"] <= zr * L0
            ok = zero == bool(any_rec["e1_sampled"])
            if zero and first["converged"]:
                ok = ok and v["C5"].gd(
                    abs(first["target_loss"] - first["limit_target_loss"]) <= ar * L0)
            elif zero:
                v["C5"].unconverged += 1
            if zero and any_rec["n_unsampled"] > 0 and full is not None:
                ok = ok and min(full["trace"]) > pr * L0 and full["target_loss"] > pr * L0
                v["C5"].unconverged += not full["converged"]
            v["C5"].judge(any_rec, ok)
            cell = c5_cells[tuple(any_rec[k] for k in CELL_KEYS)]
            cell[0] += zero
            cell[1] += 1
        # C6
        if (not inp and lin and any_rec["k"] <= any_rec["n"] < any_rec["d"]
                and first is not None and last is not None):
            if any_rec["rank_z"] < any_rec["k"]:
                v["C6"].exclude("rank Z < k")
            else:
                bound = any_rec["first_layer_bound"]
                ok = (last["limit_target_loss"] <= zr * L0 and bound > zr * L0
                      and abs(first["limit_target_loss"] - bound) <= ar * max(bound, zr * L0))
                if first["converged"]:
                    v["C6"].gd(abs(first["target_loss"] - bound) <= ar * L0)
                else:
                    v["C6"].unconverged += 1
                v["C6"].judge(any_rec, ok)
        # C7
        if lin and first is not None:
            bound = any_rec["first_layer_bound"]
            ok = abs(first["limit_target_loss"] - bound) <= ar * max(bound, zr * L0)
            if first["converged"]:
                v["C7"].gd(abs(first["target_loss"] - first["limit_target_loss"]) <= ar * L0)
            else:
                v["C7"].unconverged += 1
            v["C7"].judge(any_rec, ok)
    if c5_cells:
        level = cfg.test_level / len(c5_cells)
        p1 = cfg.p1
        for key, (succ, trials) in sorted(c5_cells.items(), key=lambda kv: str(kv[0])):
            expected = 1.0 - (1.0 - p1) ** dict(zip(CELL_KEYS, key))["n"]
            pvalue = float(binomtest(succ, trials, expected).pvalue)
            v["C5"].tests.append({**dict(zip(CELL_KEYS, key)), "successes": succ,
                                  "trials": trials, "expected_rate": expected,
                                  "pvalue": pvalue, "level": level, "passed": pvalue >= level})
        v["C5"].test_note = (f"two-sided exact binomial test per cell of the success count against "
                             f"1-(1-p1)^n, level {cfg.test_level} Bonferroni-corrected over "
                             f"{len(c5_cells)} cells")
    return list(v.values())


def verdict_table(verdicts: list[Verdict]) -> str:
    """Plain-text table for stdout."""
    lines = [f"{'claim':<6}{'verdict':<13}{'checked':>8}{'held':>8}  notes"]
    for v in verdicts:
        notes = []
        if v.excluded:
            notes += [f"{n} excluded ({r})" for r, n in v.excluded.items()]
        if v.unconverged:
            notes.append(f"{v.unconverged} GD runs unconverged (judged on limits/recorded steps)")
        if v.gd_checked:
            notes.append(f"converged GD at its limit in {v.gd_agree}/{v.gd_checked}")
        if v.tests:
            passed = sum(t["passed"] for t in v.tests)
            pmin = min(t["pvalue"] for t in v.tests)
            notes.append(f"binomial {passed}/{len(v.tests)} cells pass, min p={pmin:.3g}")
        lines.append(f"{v.claim:<6}{v.verdict:<13}{v.checked:>8}{v.held:>8}  {'; '.join(notes)}")
        lines.append(f"{'':<6}{v.statement}")
    return "\n".join(lines)
