"""sims tests: the runtime of the entry points (XLA CPU guards, float64) comes from tests/conftest.py."""
