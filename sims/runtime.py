"""The JAX runtime of the sims entry points: importing this module configures the process.

It adds :data:`XLA_SAFE_FLAGS` to ``XLA_FLAGS`` (read when the JAX backend starts, i.e. at the first
array operation, so it must happen before any computation), gives XLA's CPU client a thread pool of
one (:func:`limit_cpu_pool`, also read when the backend starts) and enables ``jax_enable_x64`` (the
theory checks run in float64). ``python -m sims.sweep``, ``python -m sims.bench`` and
:mod:`sims.engine` (whose ``run_group`` also runs in executor workers) import it before anything
computes, so every other module imports jax at top level. ``twolayer`` never imports it: the math
library leaves the process as it is.

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
import importlib.metadata
import importlib.util
import os
import pkgutil
import sys
from pathlib import Path

import jax
from jax import monitoring
from jax.experimental.compilation_cache import compilation_cache

# XLA CPU (jaxlib 0.10.2) deadlocks (0% CPU, threads parked) on some large vmapped while-loops and on
# multi-device executions unless these are off; both only matter for the CPU backend.
XLA_SAFE_FLAGS = ("--xla_cpu_multi_thread_eigen=false",
                  "--xla_cpu_enable_concurrency_optimized_scheduler=false")

#: Environment variable XLA's PJRT clients read for the size of their thread pool
#: (``DefaultThreadPoolSize``; default: one thread per schedulable core). The CPU client runs every
#: computation on that pool.
POOL_ENV = "PJRT_NPROC"

#: Environment variable: threads of XLA's CPU pool in sims processes ("1" by default; "auto" leaves
#: XLA's default of one per core). With two or more, jaxlib 0.10.2 can deadlock (0% CPU, every thread
#: parked) when concurrent batched LAPACK calls (``eigh``) wait for chunks queued on the pool they
#: occupy; with one thread jaxlib runs those batches inline (README, "The XLA CPU stall").
CPU_THREADS_ENV = "SIMS_XLA_CPU_THREADS"

#: Environment variable naming the compilation-cache folder of this process and its workers ("off":
#: none). Set by :func:`use_compile_cache`; read by :func:`configure`.
CACHE_ENV = "SIMS_COMPILE_CACHE"

__all__ = ["CACHE_ENV", "CPU_THREADS_ENV", "POOL_ENV", "XLA_SAFE_FLAGS", "accelerator_plugins",
           "add_cache_flags", "cache_from_args", "compile_stats", "configure", "cpu_only",
           "default_cache_dir", "limit_cpu_pool", "use_compile_cache", "with_flags"]


def with_flags(flags: str, extra: tuple[str, ...]) -> str:
    """``flags`` (an ``XLA_FLAGS`` value) plus every flag of ``extra`` whose name it lacks.

    >>> with_flags("--a=1", ("--a=2", "--b=3"))
    '--a=1 --b=3'
    """
    for flag in extra:
        if flag.split("=")[0] not in flags:
            flags = f"{flags} {flag}".strip()
    return flags


def accelerator_plugins() -> list[str]:
    """Names of the accelerator backends JAX would find in this environment without starting one:
    modules of the ``jax_plugins`` namespace package, entry points of the ``jax_plugins`` group
    (``jax-cuda12-plugin``, ...) and ``libtpu``."""
    names = [ep.name for ep in importlib.metadata.entry_points(group="jax_plugins")]
    if importlib.util.find_spec("libtpu") is not None:
        names.append("libtpu")
    try:
        import jax_plugins  # namespace package of PJRT plugins
    except ImportError:
        return names
    return names + [m.name for m in pkgutil.iter_modules(jax_plugins.__path__)]


def cpu_only() -> bool:
    """Whether JAX in this process runs on the CPU only: ``JAX_PLATFORMS`` (or ``jax_platforms``)
    names only ``cpu``, or, unset, :func:`accelerator_plugins` finds none."""
    platforms = os.environ.get("JAX_PLATFORMS") or jax.config.jax_platforms
    if platforms:
        return {p.strip() for p in platforms.split(",") if p.strip()} <= {"cpu"}
    return not accelerator_plugins()


def limit_cpu_pool() -> str | None:
    """Size XLA's CPU thread pool for this process and the workers it starts: set :data:`POOL_ENV`
    to :data:`CPU_THREADS_ENV` (default ``"1"``) when JAX runs on the CPU only (:func:`cpu_only`).
    Nothing changes with ``SIMS_XLA_CPU_THREADS=auto``, on accelerators (their clients size host
    pools by the same variable), or where :data:`POOL_ENV` is already set. XLA reads the variable
    when its CPU client starts, so this must run before the first computation; the pool has at
    least one thread per CPU device. Returns the value in effect (``None``: XLA's default).

    Raises:
        ValueError: :data:`CPU_THREADS_ENV` is neither a positive integer nor ``auto``.
    """
    want = os.environ.get(CPU_THREADS_ENV, "1").strip()
    if want != "auto" and not (want.isdigit() and int(want) > 0):
        raise ValueError(f"{CPU_THREADS_ENV}={want!r}: expected a positive number of threads or "
                         "'auto' (XLA's default, one per core)")
    if want != "auto" and POOL_ENV not in os.environ and cpu_only():
        os.environ[POOL_ENV] = want
    return os.environ.get(POOL_ENV)


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
    """Add :data:`XLA_SAFE_FLAGS` to ``XLA_FLAGS``, size XLA's CPU pool (:func:`limit_cpu_pool`),
    enable float64 and the compilation cache named by :data:`CACHE_ENV` if any (idempotent).

    A bad :data:`CPU_THREADS_ENV` ends the process with a one-line ``error: ...`` (exit 2): this
    runs at import, before any entry point can turn the error into a message."""
    os.environ["XLA_FLAGS"] = with_flags(os.environ.get("XLA_FLAGS", ""), XLA_SAFE_FLAGS)
    try:
        limit_cpu_pool()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
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
