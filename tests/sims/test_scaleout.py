"""Scale-out of the real sweep: dask LocalCluster == serial; 2 CPU devices == 1 (slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sims.engine import run_group
from sims.grid import group_ids, shape_groups
from sims.infra import RunStore, make_executor, run_units
from sims.runtime import CACHE_ENV
from tests.sims.tiny import TINY

REPO = Path(__file__).resolve().parents[2]
NUMERIC = ("target_loss", "train_loss", "limit_target_loss", "initial_target_loss")


def _numbers(records: list[dict]) -> dict[str, tuple]:
    return {r["id"]: tuple(r.get(k) for k in NUMERIC) + tuple(r.get("trace", ()))
            for r in records}


def _sweep(out: Path, executor) -> list[dict]:
    store = RunStore(out)
    try:
        run_units(shape_groups(TINY), run_group, store, executor, unit_ids=group_ids,
                  progress=False)
    finally:
        executor.close()
    return store.load()


@pytest.mark.slow
def test_dask_sweep_equals_serial(tmp_path: Path) -> None:
    serial = _numbers(_sweep(tmp_path / "serial", make_executor("serial")))
    dask = _sweep(tmp_path / "dask", make_executor("dask", workers=2))
    assert len(dask) == len({r["id"] for r in dask}) == len(serial)
    got = _numbers(dask)
    assert got.keys() == serial.keys()
    for rid, vals in serial.items():
        np.testing.assert_allclose(np.array(got[rid], float), np.array(vals, float),
                                   rtol=1e-12, atol=1e-300)


_SCRIPT = """
import dataclasses, json, sys
import jax
from sims.engine import compute_group, default_devices
from sims.grid import shape_groups
from tests.sims.tiny import TINY
n = int(sys.argv[1])
assert len(jax.devices()) == n, jax.devices()
tiered = dataclasses.replace(TINY, gd_seeds=3, gd_steps=200)  # both cost tiers, odd batches
recs = compute_group(shape_groups(tiered)[0], devices=jax.devices())
print(json.dumps({r["id"]: [r["target_loss"], r.get("trace")] for r in recs}))
"""


@pytest.mark.slow
def test_two_cpu_devices_give_the_same_numbers_as_one(tmp_path: Path) -> None:
    """1 device, 2 devices, 2 devices writing the compilation cache, 2 devices loading from it
    (XLA's 2-device CPU guards stay on in every case: sims.runtime adds them)."""
    outs = []
    cache = str(tmp_path / "cache")
    for n, folder in ((1, "off"), (2, "off"), (2, cache), (2, cache)):
        env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={n}",
               "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu", CACHE_ENV: folder}
        proc = subprocess.run([sys.executable, "-c", _SCRIPT, str(n)], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        outs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert any(Path(cache).iterdir())
    one = outs[0]
    for two in outs[1:]:
        assert one.keys() == two.keys()
        for rid in one:
            np.testing.assert_allclose(two[rid][0], one[rid][0], rtol=1e-12, atol=1e-300)
            if one[rid][1] is not None:
                np.testing.assert_allclose(two[rid][1], one[rid][1], rtol=1e-12, atol=1e-300)
    assert outs[2] == outs[3]  # cached == freshly compiled, bit for bit
