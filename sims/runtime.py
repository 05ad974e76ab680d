"""The JAX runtime of the sims entry points: importing this module configures the process.

It adds :data:`XLA_SAFE_FLAGS` to ``XLA_FLAGS`` (read when the JAX backend starts, i.e. at the first
array operation, so it must happen before any computation) and enables ``jax_enable_x64`` (the theory
checks run in float64). ``python -m sims.sweep``, ``python -m sims.bench`` and :mod:`sims.engine` (whose
``run_group`` also runs in executor workers) import it before anything computes, so every other module
imports jax at top level. ``twolayer`` never imports it: the math library leaves the process as it is.

Compilation cache: :func:`use_compile_cache` points JAX's persistent compilation cache at a folder
(default :func:`default_cache_dir`, per user, outside any checkout) and records the choice in the
environment variable :data:`CACHE_ENV`, so worker processes started afterwards (executors spawn them
and import this module) use the same folder. Without that variable nothing is cached: importing the
package (as the tests do) changes no files. A cached executable is the same compiled program, so the
numbers do not depend on the cache (``tests/sims/test_compile_cache.py`` checks it bit for bit).
:func:`compile_stats` counts the programs compiled (or loaded from the cache) in this process and the
seconds spent tracing, lowering and compiling them.

>>> import jax
>>> import sims.runtime
>>> jax.config.jax_enable_x64
True
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import jax
from jax import monitoring
from jax.experimental.compilation_cache import compilation_cache

# XLA CPU (jaxlib 0.10.2) deadlocks (0% CPU, threads parked) on some large vmapped while-loops and on
# multi-device executions unless these are off; both only matter for the CPU backend.
XLA_SAFE_FLAGS = ("--xla_cpu_multi_thread_eigen=false",
                  "--xla_cpu_enable_concurrency_optimized_scheduler=false")

#: Environment variable naming the compilation-cache folder of this process and its workers ("off":
#: none). Set by :func:`use_compile_cache`; read by :func:`configure`.
CACHE_ENV = "SIMS_COMPILE_CACHE"

__all__ = ["CACHE_ENV", "XLA_SAFE_FLAGS", "add_cache_flags", "cache_from_args", "compile_stats",
           "configure", "default_cache_dir", "use_compile_cache", "with_flags"]


def with_flags(flags: str, extra: tuple[str, ...]) -> str:
    """``flags`` (an ``XLA_FLAGS`` value) plus every flag of ``extra`` whose name it lacks.

    >>> with_flags("--a=1", ("--a=2", "--b=3"))
    '--a=1 --b=3'
    """
    for flag in extra:
        if flag.split("=")[0] not in flags:
            flags = f"{flags} {flag}".strip()
    return flags


def default_cache_dir() -> Path:
    """The per-user compilation-cache folder: ``$XDG_CACHE_HOME/surgical-finetuning/jax`` (default
    ``~/.cache/surgical-finetuning/jax``). JAX keys every entry by the program, the jax/jaxlib
    versions, the backend and the devices, so one folder serves every version and machine."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "surgical-finetuning" / "jax"


def _apply_cache(folder: str | None) -> None:
    jax.config.update("jax_compilation_cache_dir", folder)
    compilation_cache.reset_cache()  # JAX decides once per process; let it decide again
    if folder is not None:
        # Cache every program: the engine's small builders compile in well under a second each,
        # but a sweep has many of them.
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def use_compile_cache(folder: str | Path | None) -> Path | None:
    """Use the persistent compilation cache in ``folder`` (created if missing), or none (``None``).

    Entry points call it right after parsing their flags; programs compiled earlier in the process
    are not written. Worker processes started afterwards inherit the choice through
    :data:`CACHE_ENV`.
    Returns the folder used.
    """
    if folder is None:
        os.environ[CACHE_ENV] = "off"
        _apply_cache(None)
        return None
    path = Path(folder).expanduser().resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"compilation cache folder {path}: {exc.strerror}; pass another folder "
                         "with --compile-cache DIR or --no-compile-cache") from None
    os.environ[CACHE_ENV] = str(path)
    _apply_cache(str(path))
    return path


def add_cache_flags(p: argparse.ArgumentParser) -> None:
    """``--compile-cache DIR`` and ``--no-compile-cache`` (read back by :func:`cache_from_args`)."""
    p.add_argument("--compile-cache", type=Path, default=None, metavar="DIR",
                   help="persistent JAX compilation cache folder (default: "
                        f"{default_cache_dir()}); a re-run skips compilation")
    p.add_argument("--no-compile-cache", dest="use_compile_cache", action="store_false",
                   help="compile everything afresh; write no cache")


def cache_from_args(args: argparse.Namespace) -> Path | None:
    """Apply the flags of :func:`add_cache_flags` (:func:`use_compile_cache`); returns the folder."""
    if not args.use_compile_cache:
        return use_compile_cache(None)
    return use_compile_cache(args.compile_cache or default_cache_dir())


def configure() -> None:
    """Add :data:`XLA_SAFE_FLAGS` to ``XLA_FLAGS``, enable float64 and the compilation cache named
    by :data:`CACHE_ENV` if any (idempotent)."""
    os.environ["XLA_FLAGS"] = with_flags(os.environ.get("XLA_FLAGS", ""), XLA_SAFE_FLAGS)
    jax.config.update("jax_enable_x64", True)
    folder = os.environ.get(CACHE_ENV, "off")
    if folder != "off":
        _apply_cache(folder)


_COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration",
                   "/jax/core/compile/jaxpr_to_mlir_module_duration",
                   "/jax/core/compile/backend_compile_duration")
_STATS = {"programs": 0, "compile_s": 0.0, "cache_hits": 0}


def _on_duration(event: str, seconds: float, **_: object) -> None:
    if event in _COMPILE_EVENTS:
        _STATS["compile_s"] += seconds
        if event == _COMPILE_EVENTS[-1]:
            _STATS["programs"] += 1


def _on_event(event: str, **_: object) -> None:
    if event == "/jax/compilation_cache/cache_hits":
        _STATS["cache_hits"] += 1


def compile_stats() -> dict[str, float]:
    """Counters of this process since it started: ``programs`` (executables compiled or loaded from
    the persistent cache), ``cache_hits`` (of those, loaded) and ``compile_s`` (seconds tracing,
    lowering and compiling or loading them).

    >>> sorted(compile_stats())
    ['cache_hits', 'compile_s', 'programs']
    """
    return dict(_STATS)


monitoring.register_event_duration_secs_listener(_on_duration)
monitoring.register_event_listener(_on_event)


configure()
