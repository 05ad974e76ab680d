"""The JAX runtime of the sims entry points: importing this module configures the process.

It adds :data:`XLA_SAFE_FLAGS` to ``XLA_FLAGS`` (read when the JAX backend starts, i.e. at the first
array operation, so it must happen before any computation) and enables ``jax_enable_x64`` (the theory
checks run in float64). ``python -m sims.sweep``, ``python -m sims.bench`` and :mod:`sims.engine` (whose
``run_group`` also runs in executor workers) import it before anything computes, so every other module
imports jax at top level. ``twolayer`` never imports it: the math library leaves the process as it is.

>>> import jax
>>> import sims.runtime
>>> jax.config.jax_enable_x64
True
"""

from __future__ import annotations

import os

import jax

# XLA CPU (jaxlib 0.10.2) deadlocks (0% CPU, threads parked) on some large vmapped while-loops and on
# multi-device executions unless these are off; both only matter for the CPU backend.
XLA_SAFE_FLAGS = ("--xla_cpu_multi_thread_eigen=false",
                  "--xla_cpu_enable_concurrency_optimized_scheduler=false")

__all__ = ["XLA_SAFE_FLAGS", "configure", "with_flags"]


def with_flags(flags: str, extra: tuple[str, ...]) -> str:
    """``flags`` (an ``XLA_FLAGS`` value) plus every flag of ``extra`` whose name it lacks.

    >>> with_flags("--a=1", ("--a=2", "--b=3"))
    '--a=1 --b=3'
    """
    for flag in extra:
        if flag.split("=")[0] not in flags:
            flags = f"{flags} {flag}".strip()
    return flags


def configure() -> None:
    """Add :data:`XLA_SAFE_FLAGS` to ``XLA_FLAGS`` and enable float64 (idempotent)."""
    os.environ["XLA_FLAGS"] = with_flags(os.environ.get("XLA_FLAGS", ""), XLA_SAFE_FLAGS)
    jax.config.update("jax_enable_x64", True)


configure()
