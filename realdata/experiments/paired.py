"""One paired verdict: does an expected option beat every other option, seed by seed?

Given per-option test metrics keyed by seed, the expected option is compared with each other option
on their common seeds: the mean of ``expected - other`` and its standard error (``sd / sqrt(n)``,
``ddof=1``). ``holds``: it beats every other option by more than ``z`` paired standard errors;
``fails``: some option beats it by more than ``z`` paired standard errors; ``inconclusive``:
otherwise, including fewer than two paired seeds for some option.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from sims.infra.stats import mean_se

__all__ = ["Z", "paired_diff", "paired_verdict"]

#: Paired standard errors a difference must exceed for ``holds`` or ``fails``.
Z = 2.0


def paired_diff(a: Mapping[int, float], b: Mapping[int, float]) -> tuple[float, float, int]:
    """Mean and s.e. over the common seeds of ``a - b``, and the number of pairs."""
    diffs = [a[s] - b[s] for s in sorted(a) if s in b]
    if not diffs:
        return math.nan, math.nan, 0
    m, se = mean_se(diffs)
    return m, se, len(diffs)


def paired_verdict(series: Mapping[str, Mapping[int, float]], expected: str,
                   others: Sequence[str], *, z: float = Z) -> dict[str, Any]:
    """Verdict of ``expected`` against ``others`` (see the module doc).

    Args:
        series: option -> seed -> metric (fractions); options absent or empty are skipped.
        expected: the option the claim says is best.
        others: the options it must beat.
        z: paired standard errors a difference must exceed.

    Returns:
        ``{"verdict", "reason", "expected", "comparisons": {other: {"diff", "se", "n"}},
        "missing": [...]}``; ``verdict`` is ``"not judged"`` when ``expected`` or every other
        option is missing.
    """
    present = {k for k, v in series.items() if v}
    missing = [o for o in [expected, *others] if o not in present]
    have = [o for o in others if o in present and o != expected]
    out: dict[str, Any] = {"expected": expected, "comparisons": {}, "missing": missing}
    if expected not in present or not have:
        what = expected if expected not in present else "every other option"
        return {**out, "verdict": "not judged", "reason": f"nothing to compare: {what} missing"}
    comps = {}
    for o in have:
        d, se, n = paired_diff(series[expected], series[o])
        comps[o] = {"diff": d, "se": se, "n": n}
    out["comparisons"] = comps
    sig = {o: c for o, c in comps.items() if c["n"] >= 2 and math.isfinite(c["se"])}
    worse = [o for o, c in sig.items() if c["diff"] < -z * c["se"]]
    if len(sig) == len(comps) and all(c["diff"] > z * c["se"] for c in sig.values()):
        return {**out, "verdict": "holds",
                "reason": f"{expected} beats every other option by > {z:g} paired s.e."}
    if worse:
        return {**out, "verdict": "fails",
                "reason": f"{', '.join(worse)} beat(s) {expected} by > {z:g} paired s.e."}
    return {**out, "verdict": "inconclusive",
            "reason": f"{expected} is not separated from every other option by > {z:g} paired s.e."}
