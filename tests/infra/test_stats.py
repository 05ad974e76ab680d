"""The paired t criterion of every verdict (``sims.infra.stats``): critical values against a t
table, monotone in n and in the confidence, the normal limit, errors that name the fix."""

from __future__ import annotations

import doctest
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sims.infra import stats
from sims.infra.stats import CONFIDENCE, beyond, criterion, t_critical, threshold

#: two-sided 95% critical values of Student's t (a printed table), by number of pairs n (df n - 1)
TABLE_95 = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776, 8: 2.365, 11: 2.228, 31: 2.042}
#: two-sided 99% values
TABLE_99 = {2: 63.657, 3: 9.925, 8: 3.499}


def test_critical_values_match_a_t_table():
    assert CONFIDENCE == 0.95
    for n, v in TABLE_95.items():
        assert t_critical(n) == pytest.approx(v, abs=5e-4), n
    for n, v in TABLE_99.items():
        assert t_critical(n, 0.99) == pytest.approx(v, abs=5e-4), n


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 5000), st.sampled_from([0.8, 0.9, 0.95, 0.99]))
def test_decreasing_in_n_and_above_the_normal_value(n, conf):
    normal = {0.8: 1.2816, 0.9: 1.6449, 0.95: 1.9600, 0.99: 2.5758}[conf]
    assert t_critical(n + 1, conf) < t_critical(n, conf)
    assert t_critical(n, conf) > normal - 1e-4


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 200), st.floats(0.5, 0.98), st.floats(0.001, 0.01))
def test_increasing_in_the_confidence(n, conf, step):
    assert t_critical(n, conf + step) > t_critical(n, conf)


def test_tends_to_1_96_as_n_grows():
    assert t_critical(10_000) == pytest.approx(1.95996, abs=1e-3)
    assert t_critical(10**7) == pytest.approx(1.959964, abs=1e-5)


@pytest.mark.parametrize("n", [1, 0, -3])
def test_fewer_than_two_pairs_is_an_error_naming_the_fix(n):
    with pytest.raises(ValueError, match=r"n >= 2 pairs.*run more seeds or pass a fixed z"):
        t_critical(n)


@pytest.mark.parametrize("conf", [0.0, 1.0, 95, -0.1])
def test_a_confidence_outside_0_1_is_an_error_naming_the_fix(conf):
    with pytest.raises(ValueError, match=r"confidence must be in \(0, 1\), e.g. 0.95"):
        t_critical(5, conf)


def test_three_s_e_at_three_seeds_is_beyond_2_but_not_beyond_t():
    # the case the fixed threshold got wrong: 3 s.e. over 3 pairs is not a 95% claim
    assert beyond(3.0, 1.0, 3, z=2.0) and not beyond(3.0, 1.0, 3)
    assert not beyond(-3.0, 1.0, 3, z=2.0)  # one direction only
    # over 32 pairs both criteria agree
    assert beyond(3.0, 1.0, 32) and beyond(3.0, 1.0, 32, z=2.0)
    assert not beyond(1.9, 1.0, 32) and not beyond(1.9, 1.0, 32, z=2.0)
    # no standard error: never beyond, under either criterion
    for kw in ({}, {"z": 2.0}):
        assert not beyond(1.0, math.nan, 5, **kw) and not beyond(1.0, 0.1, 1, **kw)
    assert threshold(3, z=2.0) == 2.0 and math.isnan(threshold(1))
    assert threshold(8) == pytest.approx(2.365, abs=5e-4)


def test_criterion_names_the_rule():
    assert criterion() == "t(n−1, two-sided 95%) s.e." and criterion(z=2) == "2 s.e."
    assert criterion(confidence=0.99) == "t(n−1, two-sided 99%) s.e."


def test_the_examples_in_the_docstrings_hold():
    result = doctest.testmod(stats)
    assert result.attempted >= 5 and result.failed == 0
