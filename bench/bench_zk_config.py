"""An agent's configuration from ZooKeeper (issue 17 item 1): how soon a changed znode is
applied, and whether an agent runs as fast on a znode's configuration as on a file's.

* reload: the znode is set (its null sink's batchSize toggled) and timed until the agent
  logs that it saw the change, and until `agent a1 reloaded: sink k1` (logged once the new
  sink runs); the agent idle (its seq source done) or busy (seq -> memory -> null at full
  speed). The benchmark times the second.
* throughput: seq -> memory -> null, N events with --exit-when-done, the same properties
  from the znode and from a file in alternating rounds: the agent's events/s and the
  process's wall time (the ZooKeeper connection is in the wall time only).

Needs the ZooKeeper of scripts/services.sh on 127.0.0.1:2181 (each run its own znode path,
deleted after). Run: `pytest bench/bench_zk_config.py --benchmark-enable`; in the normal
test run each body runs once as a check. `python bench/bench_zk_config.py [rounds]` prints
the figures of bench/README.md's ZooKeeper section.
"""
import itertools
import os
import queue
import re
import statistics
import subprocess
import sys
import threading
import time
import uuid

import pytest

HOSTS = os.environ.get("FASTSYNC_TEST_ZK", "127.0.0.1:2181")
N = 20_000_000
CONFIG = """a1.sources = r1
a1.channels = c1
a1.sinks = k1
a1.sources.r1.type = seq
a1.sources.r1.totalEvents = {n}
a1.sources.r1.batchSize = 1000
a1.sources.r1.channels = c1
a1.channels.c1.type = memory
a1.channels.c1.capacity = 100000
a1.channels.c1.transactionCapacity = 1000
a1.sinks.k1.type = null
a1.sinks.k1.batchSize = {batch}
a1.sinks.k1.channel = c1
"""
FASTSYNC = [sys.executable, "-m", "fastsync"]


class Znode:
    """A base path of this run's own on the shared ZooKeeper, holding agent a1's text."""

    def __init__(self):
        from kazoo.client import KazooClient
        self.client = KazooClient(hosts=HOSTS)
        self.client.start(timeout=15)
        self.base = "/fastsync-bench/zk-config-%s" % uuid.uuid4().hex[:8]
        self.path = self.base + "/a1"

    def set(self, text: str) -> None:
        if self.client.exists(self.path):
            self.client.set(self.path, text.encode())
        else:
            self.client.create(self.path, text.encode(), makepath=True)

    def close(self) -> None:
        self.client.delete(self.base, recursive=True)
        self.client.stop()
        self.client.close()


@pytest.fixture
def znode():
    z = Znode()
    yield z
    z.close()


class ReloadingAgent:
    """An agent on the znode whose stderr lines a thread reads, each with the time it was read."""

    def __init__(self, znode: Znode):
        self.proc = subprocess.Popen(FASTSYNC + ["agent", "-n", "a1", "-z", HOSTS, "-p", znode.base],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.wait_for("agent a1 started")

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.put((time.perf_counter(), line))

    def wait_for(self, text: str, timeout: float = 30) -> float:
        deadline = time.monotonic() + timeout
        while True:
            try:
                t, line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError("no %r from the agent within %g s (exit %s)" % (text, timeout, self.proc.poll())) from None
            if text in line:
                return t

    def stop(self) -> None:
        self.proc.terminate()
        assert self.proc.wait(60) == 0


def reload_seconds(agent: ReloadingAgent, znode: Znode, n: int, batch: int) -> tuple[float, float]:
    """Seconds from the znode's set to the agent's line `configuration changed in ...` (the
    watch fired and the main loop took the text), and to its `reloaded: sink k1` line."""
    t0 = time.perf_counter()
    znode.set(CONFIG.format(n=n, batch=batch))
    seen = agent.wait_for("agent a1: configuration changed in zk://")
    return seen - t0, agent.wait_for("agent a1 reloaded: sink k1") - t0


def reload_times(znode: Znode, busy: bool, rounds: int) -> list[tuple[float, float]]:
    n = 2**62 if busy else 0
    znode.set(CONFIG.format(n=n, batch=1000))
    agent, batches = ReloadingAgent(znode), itertools.cycle([500, 1000])
    try:
        return [reload_seconds(agent, znode, n, next(batches)) for _ in range(rounds)]
    finally:
        agent.stop()


def run_once(argv: list[str]) -> tuple[float, float, float]:
    """(the agent's events/s, the process's wall seconds, its CPU seconds) of one
    --exit-when-done run of N events."""
    import resource
    t0 = time.perf_counter()
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(FASTSYNC + argv + ["--exit-when-done", "--log-level", "WARNING"],
                         capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime
    assert out.returncode == 0, out.stderr[-2000:]
    m = re.search(r"agent a1: (\d+) events delivered in [\d.]+ s: (\d+) events/s", out.stdout)
    assert m and int(m.group(1)) == N, out.stdout
    return float(m.group(2)), wall, cpu


def throughput(znode: Znode, conf, rounds: int) -> dict[str, list[tuple[float, float, float]]]:
    """Alternating rounds of the file's and the znode's run (same properties)."""
    text = CONFIG.format(n=N, batch=1000)
    conf.write_text(text)
    znode.set(text)
    runs: dict[str, list[tuple[float, float, float]]] = {"file": [], "zk": []}
    for _ in range(rounds):
        runs["file"].append(run_once(["agent", "-n", "a1", "-f", str(conf)]))
        runs["zk"].append(run_once(["agent", "-n", "a1", "-z", HOSTS, "-p", znode.base]))
    return runs


@pytest.mark.parametrize("busy", [False, True], ids=["idle", "busy"])
def test_znode_change_to_reload(benchmark, znode, busy):
    n = 2**62 if busy else 0
    znode.set(CONFIG.format(n=n, batch=1000))
    agent, batches = ReloadingAgent(znode), itertools.cycle([500, 1000])
    try:
        benchmark.pedantic(lambda: reload_seconds(agent, znode, n, next(batches))[1], rounds=10, iterations=1)
    finally:
        agent.stop()


def test_throughput_znode_against_file(benchmark, znode, tmp_path):
    runs = {}

    def pair():
        for source, figures in throughput(znode, tmp_path / "agent.properties", 1).items():
            runs.setdefault(source, []).extend(figures)

    benchmark.pedantic(pair, rounds=3, iterations=1)
    for source, figures in runs.items():
        benchmark.extra_info[source + "_events_per_s"] = statistics.median(f[0] for f in figures)
    benchmark.extra_info["zk_over_file"] = benchmark.extra_info["zk_events_per_s"] / benchmark.extra_info["file_events_per_s"]


def main(rounds: int) -> None:
    import tempfile
    from pathlib import Path
    z = Znode()
    try:
        for busy in (False, True):
            times = reload_times(z, busy, rounds)
            for i, what in enumerate(("change seen", "reloaded")):
                ts = sorted(t[i] for t in times)
                print("znode set -> %-11s agent %-4s: median %.1f ms, min %.1f, max %.1f (%d changes)"
                      % (what, "busy" if busy else "idle", statistics.median(ts) * 1e3, ts[0] * 1e3, ts[-1] * 1e3, rounds))
        with tempfile.TemporaryDirectory() as d:
            runs = throughput(z, Path(d) / "agent.properties", rounds)
        for source, figures in runs.items():
            rates = [f[0] for f in figures]
            walls = [f[1] for f in figures]
            cpus = [f[2] for f in figures]
            print("seq -> memory -> null, config from %-4s: median %.2f M events/s (%.2f - %.2f), wall median %.2f s, "
                  "CPU median %.2f s (%.2f - %.2f)" % (source, statistics.median(rates) / 1e6, min(rates) / 1e6, max(rates) / 1e6,
                                                       statistics.median(walls), statistics.median(cpus), min(cpus), max(cpus)))
        ratios = [z_[0] / f[0] for f, z_ in zip(runs["file"], runs["zk"])]
        print("zk / file events/s per round: %s; median %.2f" % (" ".join("%.2f" % r for r in ratios), statistics.median(ratios)))
    finally:
        z.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 7)
