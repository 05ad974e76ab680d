"""sims tests: add the XLA CPU flags the engine needs (see sims.engine.XLA_SAFE_FLAGS).

Conftest files are imported at collection, before any test initialises the JAX backend, so the
flags still take effect for this pytest process.
"""

from sims.engine import ensure_runtime

ensure_runtime()
