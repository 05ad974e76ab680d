"""The persistent compilation cache: a cached run gives bit-identical records; flags; stats."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import sims.runtime as runtime
from sims.sweep import main

REPO = Path(__file__).resolve().parents[2]
# One shape group, one activation, one GD mode: a small builder and runner to compile.
FLAGS = ["--dims", "8", "--widths", "2,4", "--n-ratios", "0.5,1", "--seeds", "3", "--steps", "200",
         "--n-records", "4", "--activations", "relu", "--families", "gaussian", "--tunes", "none,first",
         "--executor", "serial", "--quiet", "--no-figures"]


def _sweep(out: Path, *cache_flags: str) -> tuple[dict[str, dict], str]:
    """Run the sweep in a fresh process; (records by id without wall times, stdout)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop(runtime.CACHE_ENV, None)
    proc = subprocess.run([sys.executable, "-m", "sims.sweep", *FLAGS, "--out", str(out),
                           *cache_flags], capture_output=True, text=True, env=env, check=False,
                          cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = {}
    for line in (out / "runs.jsonl").read_text().splitlines():
        rec = json.loads(line)
        rec.pop("wall_s")
        records[rec["id"]] = rec
    return records, proc.stdout


def _programs(stdout: str) -> tuple[int, int]:
    line = next(t for t in stdout.splitlines() if t.startswith("compilation in this process"))
    words = line.replace("(", " ").split()
    return int(words[4]), int(words[6])  # "... N programs (M from the cache) ..."


def test_cached_and_uncached_runs_give_identical_records(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cold, out_cold = _sweep(tmp_path / "cold", "--compile-cache", str(cache))
    assert any(cache.iterdir()), "the cold run wrote no cache entries"
    cached, out_cached = _sweep(tmp_path / "cached", "--compile-cache", str(cache))
    uncached, out_uncached = _sweep(tmp_path / "uncached", "--no-compile-cache")
    programs, hits = _programs(out_cached)
    assert programs > 0 and hits == programs, out_cached  # everything came from the disk cache
    assert _programs(out_cold)[1] == 0 and _programs(out_uncached)[1] == 0
    assert cached.keys() == uncached.keys() == cold.keys()
    for rid, rec in uncached.items():  # JSON floats round-trip exactly: equal text = equal bits
        assert json.dumps(cached[rid], sort_keys=True) == json.dumps(rec, sort_keys=True), rid
        assert json.dumps(cold[rid], sort_keys=True) == json.dumps(rec, sort_keys=True), rid


def test_cache_folder_is_per_user_and_outside_the_repo(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert runtime.default_cache_dir() == tmp_path / "xdg" / "surgical-finetuning" / "jax"
    monkeypatch.delenv("XDG_CACHE_HOME")
    folder = runtime.default_cache_dir()
    assert folder.is_relative_to(Path.home()) and not folder.is_relative_to(REPO)


def test_use_compile_cache_sets_the_env_for_workers(monkeypatch, tmp_path: Path) -> None:
    import jax

    monkeypatch.setenv(runtime.CACHE_ENV, "off")
    before = jax.config.jax_compilation_cache_dir
    try:
        assert runtime.use_compile_cache(tmp_path / "c") == (tmp_path / "c").resolve()
        assert os.environ[runtime.CACHE_ENV] == str((tmp_path / "c").resolve())
        assert jax.config.jax_compilation_cache_dir == str((tmp_path / "c").resolve())
        assert runtime.use_compile_cache(None) is None
        assert os.environ[runtime.CACHE_ENV] == "off"
        assert jax.config.jax_compilation_cache_dir is None
    finally:
        jax.config.update("jax_compilation_cache_dir", before)


def test_unusable_cache_folder_is_a_one_line_error(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main([*FLAGS, "--out", str(tmp_path / "o"), "--compile-cache",
                 str(blocker / "sub")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: compilation cache folder") and "--no-compile-cache" in err
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize("value", ["0", "-1"])
def test_bad_max_minutes(tmp_path: Path, capsys, value: str) -> None:
    assert main([*FLAGS, "--out", str(tmp_path / "o"), "--max-minutes", value]) == 2
    assert "--max-minutes" in capsys.readouterr().err
