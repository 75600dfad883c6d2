"""Whole agents through the CLI: seq -> memory -> null and seq -> memory -> file_roll.

Each run moves N events with --exit-when-done; the agent prints its events/s, and the
test checks that every event arrived before reporting it."""
import re
import subprocess

import pytest

N = 5_000_000

CONFIG = """
a1.sources = r1
a1.channels = c1
a1.sinks = k1
a1.sources.r1.type = seq
a1.sources.r1.totalEvents = {n}
a1.sources.r1.batchSize = 1000
a1.sources.r1.channels = c1
a1.channels.c1.type = memory
a1.channels.c1.capacity = 100000
a1.channels.c1.transactionCapacity = 1000
a1.sinks.k1.channel = c1
{sink}
"""
SINKS = {
    "null": "a1.sinks.k1.type = null\na1.sinks.k1.batchSize = 1000",
    "file_roll": "a1.sinks.k1.type = file_roll\na1.sinks.k1.sink.batchSize = 1000\n"
                 "a1.sinks.k1.sink.rollInterval = 0\na1.sinks.k1.sink.directory = {dir}",
}


def run_agent(cmd, path):
    out = subprocess.run(cmd + ["agent", "-n", "a1", "-f", str(path), "--exit-when-done", "--log-level", "WARNING"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    m = re.search(r"(\d+) events delivered in ([\d.]+) s: (\d+) events/s", out.stdout)
    assert m, out.stdout
    return int(m.group(1)), float(m.group(3))


def bench_agent_runs(benchmark, cmd, conf, out_dir):
    """Three timed runs of the agent, `out_dir` emptied before each; the last run's
    delivered count and events/s, also recorded in the benchmark's extra_info."""
    result = {}

    def once():
        for f in out_dir.glob("*"):
            f.unlink()
        result["delivered"], result["events_per_s"] = run_agent(cmd, conf)

    benchmark.pedantic(once, rounds=3, iterations=1)
    benchmark.extra_info.update(result)
    return result


@pytest.mark.parametrize("sink", ["null", "file_roll"])
def test_agent_seq_memory(benchmark, tmp_path, fastsync_cmd, sink):
    conf = tmp_path / "agent.properties"
    conf.write_text(CONFIG.format(n=N, sink=SINKS[sink].format(dir=tmp_path / "out")))
    result = bench_agent_runs(benchmark, fastsync_cmd, conf, tmp_path / "out")
    assert result["delivered"] == N
    if sink == "file_roll":
        lines = sum(f.read_bytes().count(b"\n") for f in (tmp_path / "out").glob("*"))
        assert lines == N
