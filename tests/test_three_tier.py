"""The three-tier example of examples/three-tier/, run as its header comments say (each agent
in its own directory), over avro and over flight: 4 edge agents (TAILDIR -> file channel ->
a load_balance group of two sinks) -> 2 collectors (avro/flight source -> file channel ->
file_roll), with lines appended to every edge's log while they run. One collector is killed
with kill -9 mid-run and restarted later, and so is one whole edge agent. Every appended
line must reach the collectors' out/ files; a line may come twice only as part of a batch
sent again (as many as the batch sizes and the batches in flight allow). And the avro files
as Apache Flume 1.11 runs them, Flume and fastsync agents mixed in both tiers."""
from __future__ import annotations

import collections
import re
import signal
import threading
import time
from pathlib import Path

import pytest

from e2e_support import PYTHON, free_port, lines_so_far, multiset_problems, poll, read_dir_lines, wait_for_port
from flume_support import flume_command

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
# the example files each run uses (tests/test_examples.py checks every example is named by a test)
FILES = {
    "avro": ("three-tier/edge-avro.properties", "three-tier/collector-avro.properties"),
    "flight": ("three-tier/edge-flight.properties", "three-tier/collector-flight.properties"),
}
PORT_KEYS = {   # the fixed ports of the examples, replaced by free ones
    "edge": ("edge.sinks.k1.port", "edge.sinks.k2.port"),
    "collector": ("collector1.sources.r1.port", "collector2.sources.r1.port"),
}
EDGES = 4
PHASE = 1000            # lines per edge in each of the first 3 phases of the test
CHUNK = 50              # lines the appender adds to each log at a time
# the settings of the examples the duplicate bound comes from
BATCH = 1000            # TAILDIR batchSize, the sinks' batch-size, file_roll's sink.batchSize
IN_FLIGHT = {"avro": 1,     # the avro sink sends one take per turn in a load_balance group
             "flight": 64}  # the flight sink keeps up to batches-in-flight (default 64) unacknowledged


def example_copy(name: str, dest: Path, ports: dict[str, int]) -> Path:
    """examples/<name> as it is, but for the values of the port keys, written to dest."""
    text = (EXAMPLES / name).read_text(encoding="utf-8")
    for key, port in ports.items():
        text, n = re.subn(r"^(%s\s*=\s*)\d+$" % re.escape(key), lambda m: m.group(1) + str(port), text, flags=re.M)
        assert n == 1, "%s: key %s defined %d times, expected once" % (name, key, n)
    dest.write_text(text, encoding="utf-8")
    return dest


def header_argv(name: str, agent_name: str, conf: Path) -> list[str]:
    """The `fastsync agent ...` line of the example's header, for `agent_name`, on conf."""
    lines = re.findall(r"&& (fastsync agent .*)$", (EXAMPLES / name).read_text(), re.M)
    assert len(lines) == 1, "%s: expected one `cd ... && fastsync agent` line in its header, found %r" % (name, lines)
    argv = lines[0].split()
    assert "../examples/" + name in argv, lines[0]
    argv = [str(conf) if a == "../examples/" + name else a for a in argv[1:]]
    argv[argv.index("-n") + 1] = agent_name     # collector1 in the header; collector2 "the same"
    return [PYTHON, "-m", "fastsync"] + argv


class Appender(threading.Thread):
    """Appends distinct lines to every edge's log, CHUNK at a time, up to `quota` lines each:
    the test raises the quota phase by phase, so the lines of a phase are written only after
    what the test did before raising it (a kill) -- whatever the machine's speed."""

    def __init__(self, logs: list[Path]):
        super().__init__(daemon=True)
        self.logs, self.written, self.quota = logs, 0, 0
        self.stopping = threading.Event()

    def line(self, edge: int, i: int) -> bytes:
        return b"edge%d line %06d of the three-tier run" % (edge, i)

    def run(self) -> None:
        while not self.stopping.is_set():
            if self.written >= self.quota:
                time.sleep(0.01)
                continue
            end = min(self.written + CHUNK, self.quota)
            for e, log in enumerate(self.logs):
                with log.open("ab") as f:
                    f.write(b"".join(self.line(e, i) + b"\n" for i in range(self.written, end)))
            self.written = end
            time.sleep(0.01)

    def up_to(self, quota: int) -> None:
        self.quota = quota
        poll(lambda: self.written >= quota, 30, interval=0.01, message="lines appended up to %d" % quota)

    def finish(self) -> list[bytes]:
        """Stops appending; every line appended."""
        self.quota = self.written
        self.stopping.set()
        self.join()
        return [self.line(e, i) for e in range(len(self.logs)) for i in range(self.written)]


@pytest.fixture
def appender(tmp_path):
    """An Appender (not started) to tmp_path/edgeN/logs/app.log, N = 1 .. EDGES; stopped at the end."""
    a = Appender([tmp_path / ("edge%d" % (i + 1)) / "logs/app.log" for i in range(EDGES)])
    yield a
    a.stopping.set()


def numbers_from(lines: list[bytes], edge: int) -> list[int]:
    prefix = b"edge%d line " % edge
    return [int(s[len(prefix):len(prefix) + 6]) for s in lines if s.startswith(prefix)]


@pytest.mark.slow
@pytest.mark.parametrize("hop", ["avro", "flight"])
def test_three_tier_run_with_a_collector_and_an_edge_killed(tmp_path, agent, appender, hop):
    started = time.monotonic()
    edge_name, collector_name = FILES[hop]
    ports = [free_port(), free_port()]
    edge_conf = example_copy(edge_name, tmp_path / "edge.properties", dict(zip(PORT_KEYS["edge"], ports)))
    col_conf = example_copy(collector_name, tmp_path / "collector.properties", dict(zip(PORT_KEYS["collector"], ports)))

    # the collectors, each in its own directory with out/, then the edges with logs/
    col_dirs = [tmp_path / ("collector%d" % (i + 1)) for i in range(2)]
    for d in col_dirs:
        (d / "out").mkdir(parents=True)

    def start_collector(i: int):
        c = agent("", "", argv=header_argv(collector_name, "collector%d" % (i + 1), col_conf), cwd=col_dirs[i])
        wait_for_port(ports[i], 30, alive=c.alive)
        return c
    cols = [start_collector(0), start_collector(1)]
    edge_dirs = [tmp_path / ("edge%d" % (i + 1)) for i in range(EDGES)]
    for d in edge_dirs:
        (d / "logs").mkdir(parents=True)
    appender.start()
    appender.up_to(CHUNK)       # every log exists before its edge starts

    def start_edge(i: int):
        return agent("", "", argv=header_argv(edge_name, "edge", edge_conf), cwd=edge_dirs[i])
    edges = [start_edge(i) for i in range(EDGES)]

    def alive():
        dead = [p.argv for p in cols + edges if not p.alive() and p.returncode != -signal.SIGKILL]
        assert not dead, "agents exited: %s\n%s" % (dead, "\n".join(p.stderr[-2000:] for p in cols + edges))
        return True

    def received(i: int) -> list[bytes]:
        alive()
        return lines_so_far(col_dirs[i] / "out")

    def delivered(edge: int) -> int:
        return len(set(numbers_from(received(0) + received(1), edge)))

    # phase 1: lines flow to both collectors
    appender.quota = PHASE
    poll(lambda: len(received(0)) >= 200, 60, interval=0.05, message="collector 1 receiving")
    # phase 2: collector 1 killed while lines are being appended; those appended after the
    # kill can only go to collector 2, from every edge
    appender.quota = 2 * PHASE
    poll(lambda: appender.written >= PHASE + 2 * CHUNK, 30, interval=0.005, message="phase 2 under way")
    cols[0].send_signal(signal.SIGKILL)
    cols[0].wait()
    after = appender.written
    at_kill = ["collector 1 killed with %d of %d lines per edge appended, %d delivered"
               % (after, 2 * PHASE, sum(delivered(e) for e in range(EDGES)) // EDGES)]
    poll(lambda: (lambda got: all(any(n >= after for n in numbers_from(got, e)) for e in range(EDGES)))(received(1)),
         60, interval=0.05, message="collector 2 taking lines appended after collector 1's kill, from every edge")
    appender.up_to(2 * PHASE)
    # phase 3: edge 1 killed while lines are being appended to its log; the rest of the phase
    # is appended while it (and collector 1) are down
    appender.quota = 3 * PHASE
    poll(lambda: appender.written >= 2 * PHASE + 2 * CHUNK, 30, interval=0.005, message="phase 3 under way")
    edges[0].send_signal(signal.SIGKILL)
    edges[0].wait()
    at_kill.append("edge 1 killed with %d of its %d lines delivered" % (delivered(0), appender.written))
    appender.up_to(3 * PHASE)
    cols[0] = start_collector(0)
    edges[0] = start_edge(0)
    # phase 4: appending goes on (slower) until the edges' backoff of collector 1 is over and
    # it takes lines again, appended after its restart
    def collector_1_back() -> bool:
        appender.quota = appender.written + CHUNK
        return any(n >= 3 * PHASE for e in range(EDGES) for n in numbers_from(received(0), e))
    poll(collector_1_back, 60, interval=0.1, message="the restarted collector 1 taking lines again")
    want = appender.finish()
    everything = set(want)
    poll(lambda: everything <= set(received(0) + received(1)), 90, interval=0.1, message="every line at the collectors")

    for p in edges + cols:      # all at once: each takes a moment to stop
        p.send_signal(signal.SIGTERM)
    for p in edges + cols:
        assert p.wait() == 0, p.stderr[-3000:]
    got = read_dir_lines(col_dirs[0] / "out") + read_dir_lines(col_dirs[1] / "out")
    counts = collections.Counter(got)
    assert set(counts) == everything, multiset_problems(got, want)
    duplicates = len(got) - len(want)
    # duplicates only from batches sent again: collector 1's kill loses the acknowledgements of
    # the batches in flight to it (each edge's) and its file_roll's uncommitted take; edge 1's
    # kill re-reads the TAILDIR batch not yet in its position file and sends again what its
    # two sinks had in flight
    bound = (EDGES * IN_FLIGHT[hop] + 1 + 1 + 2 * IN_FLIGHT[hop]) * BATCH
    # a batch sent again is a run of consecutive lines of one edge
    runs = sum(1 for e in range(EDGES) for n in numbers_from([k for k, c in counts.items() if c > 1], e)
               if counts[appender.line(e, n - 1)] < 2)
    print("\nthree-tier %s: %d lines per edge, %d edges; %s; %d duplicate lines in %d runs (bound %d lines); "
          "collector 1 wrote %d lines, collector 2 %d; %.1f s"
          % (hop, appender.written, EDGES, "; ".join(at_kill), duplicates, runs, bound,
             len(read_dir_lines(col_dirs[0] / "out")), len(read_dir_lines(col_dirs[1] / "out")), time.monotonic() - started))
    assert duplicates <= bound, multiset_problems(got, want)
    assert max(counts.values()) <= 3, multiset_problems(got, want)      # sent again at most once per kill


@pytest.mark.slow
def test_the_avro_files_run_as_flume_agents_too_in_a_mixed_tier(tmp_path, agent):
    """As their headers say, the avro files run as Apache Flume 1.11 as they are: a Flume edge
    and a fastsync edge, each load-balancing over a Flume collector and a fastsync collector.
    Every line of both edges' logs arrives once (Flume's file_roll writes a body per line too)."""
    edge_name, collector_name = FILES["avro"]
    ports = [free_port(), free_port()]
    edge_conf = example_copy(edge_name, tmp_path / "edge.properties", dict(zip(PORT_KEYS["edge"], ports)))
    col_conf = example_copy(collector_name, tmp_path / "collector.properties", dict(zip(PORT_KEYS["collector"], ports)))
    dirs = {name: tmp_path / name for name in ("collector1", "collector2", "edge1", "edge2")}
    for name, d in dirs.items():
        (d / ("out" if name.startswith("collector") else "logs")).mkdir(parents=True)
    # Flume: collector1 and edge1 (each its flume.log in its directory); fastsync: the others
    flume_col = agent("", "", argv=flume_command("collector1", col_conf, dirs["collector1"]), cwd=dirs["collector1"])
    ours_col = agent("", "", argv=header_argv(collector_name, "collector2", col_conf), cwd=dirs["collector2"])
    for port, p in zip(ports, (flume_col, ours_col)):
        wait_for_port(port, 60, alive=p.alive)
    want = []
    for i in (1, 2):
        lines = [b"edge%d line %06d" % (i, n) for n in range(3000)]
        (dirs["edge%d" % i] / "logs/app.log").write_bytes(b"".join(s + b"\n" for s in lines))
        want += lines
    edges = [agent("", "", argv=flume_command("edge", edge_conf, dirs["edge1"]), cwd=dirs["edge1"]),
             agent("", "", argv=header_argv(edge_name, "edge", edge_conf), cwd=dirs["edge2"])]
    procs = [flume_col, ours_col] + edges

    def received() -> list[bytes]:
        assert all(p.alive() for p in procs), "\n".join(p.stderr[-2000:] for p in procs)
        return [s for d in ("collector1", "collector2") for s in lines_so_far(dirs[d] / "out")]
    poll(lambda: set(want) <= set(received()), 90, interval=0.2, message="every line at the collectors")
    by_collector = [len(lines_so_far(dirs[d] / "out")) for d in ("collector1", "collector2")]
    for p in procs:
        p.kill()        # what they wrote is on disk (checked above); Flume's graceful stop costs seconds
    got = [s for d in ("collector1", "collector2") for s in lines_so_far(dirs[d] / "out")]
    assert not multiset_problems(got, want), multiset_problems(got, want)     # no kill here: no duplicates either
    assert all(by_collector), by_collector      # both collectors took lines (round robin)
