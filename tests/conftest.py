"""Test-wide setup: JAX on two CPU devices, float64 (as the entry points do), XLA CPU deadlock guards."""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")  # read when jax is imported
# Entry points called by tests cache compilations in the per-user folder under XDG_CACHE_HOME: a
# folder of this test session, so tests neither read nor fill the user's cache.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="surgical-finetuning-tests-")
atexit.register(shutil.rmtree, os.environ["XDG_CACHE_HOME"], ignore_errors=True)

from sims.runtime import configure, with_flags  # noqa: E402  (after the environment)

# XLA reads its flags when the backend starts (first device use), not at import.
os.environ["XLA_FLAGS"] = with_flags(os.environ.get("XLA_FLAGS", ""),
                                     ("--xla_force_host_platform_device_count=2",))
configure()  # the entry points' runtime: XLA CPU guards, float64
