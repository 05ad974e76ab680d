"""Summary statistics shared by every summary and figure (one definition, one answer)."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["mean_se"]


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
