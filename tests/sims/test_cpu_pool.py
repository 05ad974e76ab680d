"""XLA's CPU thread pool: sims processes run it with one thread unless told otherwise."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import sims.runtime as runtime

REPO = Path(__file__).resolve().parents[2]

# Imports the sims runtime, runs one compiled computation on the CPU and reports PJRT_NPROC and the
# threads of XLA's CPU pool (named tf_XLAEigen by jaxlib 0.10.2).
PROBE = """
import json, os
import jax, jax.numpy as jnp
import sims.runtime
x = jnp.ones((64, 64))
jax.jit(lambda a: jnp.tanh(a @ a).sum())(x).block_until_ready()
names = [open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")]
print(json.dumps({"env": os.environ.get("PJRT_NPROC"), "pool": names.count("tf_XLAEigen")}))
"""

needs_proc = pytest.mark.skipif(not Path("/proc/self/task").is_dir(),
                                reason="reads thread names from /proc")


def _probe(**env_vars: str) -> dict:
    """Run :data:`PROBE` in a fresh process with one CPU device and the given variables."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    for name in (runtime.POOL_ENV, runtime.CPU_THREADS_ENV):
        env.pop(name, None)
    env.update(env_vars)
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env,
                          check=False, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@needs_proc
def test_cpu_pool_has_one_thread_by_default_and_the_opt_out_restores_xla_default() -> None:
    cores = len(os.sched_getaffinity(0))
    assert _probe() == {"env": "1", "pool": 1}
    # opt-out: XLA's own default, one thread per schedulable core
    assert _probe(**{runtime.CPU_THREADS_ENV: "auto"}) == {"env": None, "pool": cores}
    if cores >= 2:
        assert _probe(**{runtime.CPU_THREADS_ENV: "2"}) == {"env": "2", "pool": 2}
        # a PJRT_NPROC of the user's own is kept
        assert _probe(**{runtime.POOL_ENV: "2"}) == {"env": "2", "pool": 2}


@pytest.fixture
def clean_env(monkeypatch):
    """No pool variables; restored after the test (limit_cpu_pool writes os.environ)."""
    for name in (runtime.POOL_ENV, runtime.CPU_THREADS_ENV):
        monkeypatch.setenv(name, "placeholder")  # registers the original value for undo
        monkeypatch.delenv(name)
    return monkeypatch


@pytest.mark.parametrize(("platforms", "limited"), [("cpu", True), ("cuda", False),
                                                    ("cuda,cpu", False), (" cpu ", True)])
def test_pool_is_limited_only_when_jax_runs_on_the_cpu_alone(clean_env, platforms, limited) -> None:
    clean_env.setenv("JAX_PLATFORMS", platforms)
    assert runtime.limit_cpu_pool() == ("1" if limited else None)
    assert os.environ.get(runtime.POOL_ENV) == ("1" if limited else None)


def test_without_jax_platforms_installed_accelerator_plugins_decide(clean_env) -> None:
    clean_env.delenv("JAX_PLATFORMS", raising=False)
    before = runtime.jax.config.jax_platforms
    runtime.jax.config.update("jax_platforms", None)  # a string only; the running backend stays
    try:
        clean_env.setattr(runtime, "accelerator_plugins", lambda: ["xla_cuda12"])
        assert runtime.limit_cpu_pool() is None
        clean_env.setattr(runtime, "accelerator_plugins", lambda: [])
        assert runtime.limit_cpu_pool() == "1"
    finally:
        runtime.jax.config.update("jax_platforms", before)


def test_accelerator_plugins_reads_the_jax_plugins_entry_points(monkeypatch) -> None:
    ep = importlib.metadata.EntryPoint("xla_cuda12", "jax_plugins.xla_cuda12", "jax_plugins")
    real = importlib.metadata.entry_points
    monkeypatch.setattr(runtime.importlib.metadata, "entry_points",
                        lambda group=None, **kw: [ep] if group == "jax_plugins" else real(**kw))
    assert "xla_cuda12" in runtime.accelerator_plugins()


@pytest.mark.parametrize("value", ["0", "-1", "two", ""])
def test_a_bad_thread_count_is_a_one_line_error_naming_the_variable(clean_env, value) -> None:
    clean_env.setenv(runtime.CPU_THREADS_ENV, value)
    with pytest.raises(ValueError, match=f"{runtime.CPU_THREADS_ENV}=.*'auto'"):
        runtime.limit_cpu_pool()


def _records(out: Path, threads: str) -> dict[str, str]:
    """Records (JSON text without wall times, by id) of a tiny sweep run with the given pool size."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "",
           runtime.CPU_THREADS_ENV: threads}
    env.pop(runtime.POOL_ENV, None)
    flags = ["--dims", "8", "--widths", "2,4", "--n-ratios", "0.5,1", "--seeds", "2", "--steps", "200",
             "--n-records", "4", "--activations", "relu", "--families", "gaussian",
             "--tunes", "none,first", "--executor", "serial", "--quiet", "--no-figures",
             "--no-compile-cache"]
    proc = subprocess.run([sys.executable, "-m", "sims.sweep", *flags, "--out", str(out)],
                          capture_output=True, text=True, env=env, check=False, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = {}
    for line in (out / "runs.jsonl").read_text().splitlines():
        rec = json.loads(line)
        rec.pop("wall_s")
        records[rec["id"]] = json.dumps(rec, sort_keys=True)
    return records


@pytest.mark.slow  # two sweeps compiling from scratch
def test_records_do_not_depend_on_the_pool_size(tmp_path: Path) -> None:
    one, default = _records(tmp_path / "one", "1"), _records(tmp_path / "auto", "auto")
    assert one and one == default  # JSON floats round-trip exactly: equal text = equal bits


def test_a_bad_thread_count_stops_the_sweep_with_exit_2() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), runtime.CPU_THREADS_ENV: "two"}
    proc = subprocess.run([sys.executable, "-m", "sims.sweep", "--help"], capture_output=True,
                          text=True, env=env, check=False, cwd=REPO)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        f"error: {runtime.CPU_THREADS_ENV}='two': expected a positive number of threads or 'auto' "
        "(XLA's default, one per core)"]
