"""Benchmark: frozen-prefix caching when tuning the head of a full-size ResNet-26.

Run with ``python -m pytest tests/benchmarks/test_realdata_cache.py --benchmark-only -m "slow or
not slow" -s``; prints the per-epoch times and their ratio measured in this process (the same
measurement as ``python -m realdata.bench cache``). No assertion on wall time.
"""

import pytest

from realdata.bench import cache_speedup


@pytest.mark.slow
def test_head_tuning_cache_speedup(benchmark):
    res = benchmark.pedantic(cache_speedup, kwargs={"n": 300, "epochs": 2}, rounds=1,
                             iterations=1)
    print(f"\nResNet-26 head tuning: uncached {res['uncached_s_per_epoch']:.3f} s/epoch, "
          f"cached {res['cached_s_per_epoch']:.3f} s/epoch, speedup {res['speedup']:.1f}x")
    assert res["same_result"]
