"""Memory channel throughput vs the same-run memcpy baseline (issue: agent core).

Run: `pytest bench/bench_channel.py --benchmark-enable` (or `fastsync bench channel`).
In the normal test run benchmarks are disabled and each body runs once as a check.
"""
import pytest

from fastsync.bench import bench_channel

EVENTS = 5_000_000


@pytest.mark.parametrize("producers", [1, 2])
def test_memory_channel(benchmark, producers):
    result = benchmark.pedantic(bench_channel, kwargs=dict(kind="memory", events=EVENTS, batch=1000, size=100,
                                                           producers=producers), rounds=3, iterations=1)
    benchmark.extra_info.update({k: result[k] for k in ("events_per_s", "mb_per_s", "baseline_mb_per_s", "ratio")})
    assert result["events"] == EVENTS
