"""Shared strategies and helpers for the twolayer tests (float64, 2 CPU devices via tests/conftest.py)."""

from __future__ import annotations

import jax
import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

import twolayer as tl

# JIT compilation dominates each example; keep example counts modest and drop the deadline.
settings.register_profile(
    "twolayer", max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
PROPERTY = settings.get_profile("twolayer")


def problem_and_data(seed, *, d, k, n, activation, family, shift, nonneg_head=False, p1=0.3):
    """A seeded problem with n target samples: (problem, X, y)."""
    key = jax.random.PRNGKey(seed)
    kp, ks = jax.random.split(key)
    p = tl.make_problem(
        kp, d=d, k=k, activation=activation, family=family, shift=shift, nonneg_head=nonneg_head, p1=p1
    )
    X, y = tl.sample_target(ks, p, family, activation, n)
    return p, X, y


def rel(a, b) -> float:
    """Relative difference ‖a − b‖ / max(‖b‖, 1e-300)."""
    a, b = np.asarray(a), np.asarray(b)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


seeds = st.integers(0, 2**31 - 1)
input_shifts = st.builds(
    tl.InputShift,
    rank=st.integers(1, 2),
    alpha=st.sampled_from([-1.5, 0.5, 2.0, 3.0]),
    kind=st.just("scale"),
) | st.builds(tl.InputShift, rank=st.integers(1, 2), alpha=st.floats(0.3, 2.5), kind=st.just("rotate"))
output_shifts = st.builds(tl.OutputShift, t=st.sampled_from([-2.0, -1.0, 0.5, 3.0]))
