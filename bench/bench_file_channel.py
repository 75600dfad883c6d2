"""File channel throughput vs the same-run fdatasync-per-batch baseline (issue: file channel),
and the whole agent `seq -> file -> file_roll`.

Run: `pytest bench/bench_file_channel.py --benchmark-enable` (or `fastsync bench channel
--channel file`). In the normal test run benchmarks are disabled and each body runs once,
on fewer events, as a check.
"""
import pytest

from bench_agent import bench_agent_runs
from fastsync.bench import bench_channel


@pytest.mark.parametrize("batch,events", [(1000, 3_000_000), (10_000, 5_000_000)])
def test_file_channel(benchmark, tmp_path, batch, events):
    if not benchmark.enabled:
        events = 20 * batch
    result = benchmark.pedantic(bench_channel, kwargs=dict(kind="file", events=events, batch=batch, size=100,
                                                           directory=str(tmp_path)), rounds=3, iterations=1)
    benchmark.extra_info.update({k: result[k] for k in ("events_per_s", "mb_per_s", "baseline_mb_per_s", "ratio", "fdatasyncs")})
    assert result["events"] == events
    # one group fdatasync per put batch at most (take-only commits ride along), plus the
    # checkpoint's and stop's
    assert result["fdatasyncs"] <= events // batch + 5


CONFIG = """
a1.sources = r1
a1.channels = c1
a1.sinks = k1
a1.sources.r1.type = seq
a1.sources.r1.totalEvents = {n}
a1.sources.r1.batchSize = 1000
a1.sources.r1.channels = c1
a1.channels.c1.type = file
a1.channels.c1.checkpointDir = {dir}/checkpoint
a1.channels.c1.dataDirs = {dir}/data
a1.channels.c1.capacity = 1000000
a1.channels.c1.transactionCapacity = 1000
a1.channels.c1.minimumRequiredSpace = 0
a1.sinks.k1.channel = c1
a1.sinks.k1.type = file_roll
a1.sinks.k1.sink.batchSize = 1000
a1.sinks.k1.sink.rollInterval = 0
a1.sinks.k1.sink.directory = {dir}/out
"""


def test_agent_seq_file_file_roll(benchmark, tmp_path, fastsync_cmd):
    n = 5_000_000 if benchmark.enabled else 50_000
    conf = tmp_path / "agent.properties"
    conf.write_text(CONFIG.format(n=n, dir=tmp_path))
    (tmp_path / "out").mkdir()
    result = bench_agent_runs(benchmark, fastsync_cmd, conf, tmp_path / "out")
    assert result["delivered"] == n
    lines = b"".join(f.read_bytes() for f in sorted((tmp_path / "out").glob("*"))).split()
    assert lines == [str(i).encode() for i in range(n)]
