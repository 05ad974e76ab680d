"""Summary statistics shared by every summary and figure (one definition, one answer).

* :func:`mean_se`: mean and standard error of the mean.
* :func:`t_critical`: the two-sided Student-t critical value for a mean paired difference over
  ``n`` pairs (``n - 1`` degrees of freedom) at a confidence level (default :data:`CONFIDENCE`).
* :func:`threshold` / :func:`beyond`: the criterion every paired verdict uses -- a mean paired
  difference counts when it exceeds the threshold times its standard error; the threshold is
  :func:`t_critical` of the comparison's own ``n`` unless a fixed ``z`` is asked for.
* :func:`criterion` / :func:`criterion_legend`: the criterion in words, for reasons and result
  files / for the legend of a table or figure.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

__all__ = ["CONFIDENCE", "beyond", "criterion", "criterion_legend", "mean_se", "t_critical",
           "threshold"]

#: Default two-sided confidence level of a paired verdict (the t criterion of :func:`t_critical`).
CONFIDENCE = 0.95


def mean_se(xs: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (sample s.d. / sqrt(n)) of ``xs``.

    The standard error of one value is ``nan`` (unknown, not zero); both are ``nan`` for none.

    >>> mean_se([1.0, 3.0])
    (2.0, 1.0)
    >>> mean_se([5.0])
    (5.0, nan)
    """
    n = len(xs)
    if n == 0:
        return math.nan, math.nan
    m = sum(xs) / n
    if n < 2:
        return m, math.nan
    var = sum((x - m) ** 2 for x in xs) / (n - 1)
    return m, math.sqrt(var / n)


@functools.lru_cache(maxsize=1024)
def _t_ppf(q: float, df: int) -> float:
    from scipy.stats import t  # imported on first use: scipy.stats takes about a second to load

    return float(t.ppf(q, df))


def t_critical(n: int, confidence: float = CONFIDENCE) -> float:
    """Two-sided Student-t critical value for a mean paired difference over ``n`` pairs.

    A mean paired difference ``d`` with standard error ``se`` (``sd / sqrt(n)``) differs from zero
    at the two-sided ``confidence`` level when ``|d| > t_critical(n, confidence) * se``: the
    ``(1 + confidence) / 2`` quantile of Student's t with ``n - 1`` degrees of freedom. It falls
    with ``n`` towards the normal value (1.96 at 95%).

    Args:
        n: number of pairs (seeds), at least 2.
        confidence: two-sided confidence level in (0, 1).

    Raises:
        ValueError: ``n < 2`` (one pair has no standard error) or ``confidence`` outside (0, 1).

    >>> [round(t_critical(n), 3) for n in (2, 3, 5, 8, 32)]
    [12.706, 4.303, 2.776, 2.365, 2.04]
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"a paired t criterion needs n >= 2 pairs (one pair has no standard "
                         f"error); got n={n!r}: run more seeds or pass a fixed z")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), e.g. 0.95; got {confidence!r}")
    return _t_ppf((1.0 + confidence) / 2.0, n - 1)


def threshold(n: int, *, z: float | None = None, confidence: float = CONFIDENCE) -> float:
    """Standard errors a mean paired difference over ``n`` pairs must exceed: ``z`` when given
    (a fixed criterion, any ``n``), else :func:`t_critical` of ``n`` at ``confidence``; ``nan``
    under the t criterion with fewer than two pairs (no verdict).

    >>> threshold(3, z=2.0), round(threshold(3), 3), threshold(1)
    (2.0, 4.303, nan)
    """
    if z is not None:
        return float(z)
    return t_critical(n, confidence) if n >= 2 else math.nan


def beyond(diff: float, se: float, n: int, *, z: float | None = None,
           confidence: float = CONFIDENCE) -> bool:
    """Whether a mean paired difference ``diff`` (standard error ``se``, over ``n`` pairs) is
    positive beyond the criterion: ``diff > threshold(n) * se``. Never with fewer than two pairs or
    a non-finite ``se``; pass ``-diff`` for the other direction.

    >>> beyond(3.0, 1.0, 3), beyond(3.0, 1.0, 3, z=2.0), beyond(3.0, 1.0, 32)
    (False, True, True)
    """
    if n < 2 or not math.isfinite(se):
        return False
    return diff > threshold(n, z=z, confidence=confidence) * se


def criterion(*, z: float | None = None, confidence: float = CONFIDENCE) -> str:
    """The criterion of :func:`beyond` in words, short enough for a reason or a legend: ``"2
    s.e."`` for a fixed ``z``, else ``"t(n−1, two-sided 95%) s.e."`` (the critical value of the
    comparison's own number of pairs ``n``).

    >>> criterion(), criterion(z=2.0)
    ('t(n−1, two-sided 95%) s.e.', '2 s.e.')
    """
    if z is not None:
        return f"{z:g} s.e."
    return f"t(n−1, two-sided {100 * confidence:g}%) s.e."


def criterion_legend(*, z: float | None = None, confidence: float = CONFIDENCE) -> str:
    """A legend's definition of ``c``, the standard errors a paired difference must exceed
    (:func:`threshold`), with the values at a few numbers of pairs under the t criterion.

    >>> criterion_legend(z=2.0)
    'c = 2, a fixed number of standard errors'
    >>> criterion_legend()  # doctest: +NORMALIZE_WHITESPACE
    'c = the two-sided 95% Student-t critical value for the n seeds paired in that comparison
     (n − 1 degrees of freedom: 12.7 at n = 2, 4.30 at 3, 2.78 at 5, 2.36 at 8)'
    """
    if z is not None:
        return f"c = {z:g}, a fixed number of standard errors"
    vals = ", ".join(f"{t_critical(n, confidence):#.3g}" + (" at n = 2" if n == 2 else f" at {n}")
                     for n in (2, 3, 5, 8))
    return (f"c = the two-sided {100 * confidence:g}% Student-t critical value for the n seeds "
            f"paired in that comparison (n − 1 degrees of freedom: {vals})")
