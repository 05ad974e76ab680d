"""Test-wide setup: JAX on two CPU devices, float64 (as the entry points do), XLA CPU deadlock guards."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")  # read when jax is imported

import jax

from sims.engine import XLA_SAFE_FLAGS

# XLA reads its flags when the backend starts (first device use), not at import.
_flags = os.environ.get("XLA_FLAGS", "")
for _flag in ("--xla_force_host_platform_device_count=2", *XLA_SAFE_FLAGS):
    if _flag.split("=")[0] not in _flags:
        _flags = f"{_flags} {_flag}".strip()
os.environ["XLA_FLAGS"] = _flags
jax.config.update("jax_enable_x64", True)
