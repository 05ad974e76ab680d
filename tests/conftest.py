"""Test-wide setup: JAX on two CPU devices, float64 (as the entry points do), XLA CPU deadlock guards."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")  # read when jax is imported

from sims.runtime import configure, with_flags

# XLA reads its flags when the backend starts (first device use), not at import.
os.environ["XLA_FLAGS"] = with_flags(os.environ.get("XLA_FLAGS", ""),
                                     ("--xla_force_host_platform_device_count=2",))
configure()  # the entry points' runtime: XLA CPU guards, float64
