"""The flight hop between two agent processes on loopback: seq -> memory -> flight sink =>
flight source -> memory -> null, 100-byte events, batch 1000, plain and with TLS.

Counted on the downstream agent: its null sink's EventDrainSuccessCount, read from its
metrics every 20 ms; events/s is taken between the samples at 10 % and 90 % of the events
(the start-up of the sending agent and the last partial samples left out). Every event must
arrive, 100 bytes long. `python bench/bench_flight_hop.py [events] [rounds]` prints the figures and the
load average; under pytest (`--benchmark-disable`, the normal run) it runs once, small, as
a check.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from tls_support import self_signed_pem  # noqa: E402

EDGE = """
e.sources = r1
e.channels = ch
e.sinks = k1
e.sources.r1.type = TAILDIR
e.sources.r1.filegroups = f1
e.sources.r1.filegroups.f1 = {log}
e.sources.r1.positionFile = {pos}
e.sources.r1.batchSize = 1000
e.sources.r1.channels = ch
e.channels.ch.type = memory
e.channels.ch.capacity = 100000
e.channels.ch.transactionCapacity = 1000
e.sinks.k1.type = flight
e.sinks.k1.channel = ch
e.sinks.k1.hostname = 127.0.0.1
e.sinks.k1.port = {port}
e.sinks.k1.batch-size = 1000
e.sinks.k1.batches-in-flight = {in_flight}
{tls_sink}
"""
COLLECTOR = """
c.sources = r1
c.channels = ch
c.sinks = k1
c.sources.r1.type = flight
c.sources.r1.bind = 127.0.0.1
c.sources.r1.port = {port}
c.sources.r1.channels = ch
c.channels.ch.type = memory
c.channels.ch.capacity = 100000
c.channels.ch.transactionCapacity = 1000
c.sinks.k1.type = null
c.sinks.k1.channel = ch
c.sinks.k1.batchSize = 1000
{tls_source}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _drained(url: str) -> int:
    with urllib.request.urlopen(url, timeout=5) as r:
        return int(json.load(r)["SINK.k1"]["EventDrainSuccessCount"])


def write_lines(path: Path, n: int) -> None:
    """n lines of 100 bytes (then a newline): the counter, zero-padded."""
    with open(path, "wb") as f:
        for start in range(0, n, 1 << 20):
            f.write(b"".join(b"%0100d\n" % i for i in range(start, min(n, start + (1 << 20)))))


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process so far."""
    fields = Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


CPU: dict[str, float] = {}      # the last hop()'s CPU seconds per agent ("edge", "collector")


def hop(n: int, tls: bool = False, log: Path | None = None, in_flight: int = 16) -> float:
    """events/s of the hop for n events of 100 bytes, lines of a file the upstream agent's
    TAILDIR reads (`log`, written if None). Not seq with two search_replace interceptors
    padding its counters to 100 bytes, as bench/peers' hop rows have it: that upstream alone
    makes 0.2 - 0.5 M events/s here (Arrow's replace_substring_regex), well below the hop."""
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        port, mport = _free_port(), _free_port()
        tls_sink = tls_source = ""
        if tls:
            pem, key = self_signed_pem(d, "bench")
            tls_source = "c.sources.r1.ssl = true\nc.sources.r1.ssl.certificate = %s\nc.sources.r1.ssl.key = %s" % (pem, key)
            tls_sink = "e.sinks.k1.ssl = true\ne.sinks.k1.ssl.trustedCertificates = %s" % pem
        (d / "c.properties").write_text(COLLECTOR.format(port=port, tls_source=tls_source))
        if log is None:
            log = d / "events.log"
            write_lines(log, n)
        (d / "e.properties").write_text(EDGE.format(log=log, pos=d / "pos.json", port=port, tls_sink=tls_sink, in_flight=in_flight))
        cmd = [sys.executable, "-m", "fastsync", "agent", "--log-level", "WARNING"]
        col_log, edge_log = open(d / "c.log", "wb"), open(d / "e.log", "wb")
        col = subprocess.Popen(cmd + ["-n", "c", "-f", str(d / "c.properties"), "--metrics-port", str(mport)],
                               stdout=subprocess.DEVNULL, stderr=col_log)
        edge = None
        try:
            url = "http://127.0.0.1:%d/metrics" % mport
            deadline = time.monotonic() + 30
            while True:
                try:
                    _drained(url)
                    break
                except OSError:
                    if time.monotonic() > deadline or col.poll() is not None:
                        raise RuntimeError("collector did not start: %s" % (d / "c.log").read_text()[-2000:])
                    time.sleep(0.05)
            edge = subprocess.Popen(cmd + ["-n", "e", "-f", str(d / "e.properties")],
                                    stdout=subprocess.DEVNULL, stderr=edge_log)
            samples = []
            deadline = time.monotonic() + 300
            while True:
                got = _drained(url)
                samples.append((time.monotonic(), got))
                if got >= n:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("only %d of %d events arrived" % (got, n))
                time.sleep(0.02)
            time.sleep(0.5)
            got = _drained(url)
            CPU.update(edge=_cpu_seconds(edge.pid), collector=_cpu_seconds(col.pid))
            if got != n:
                raise RuntimeError("%d events arrived, %d sent" % (got, n))
        finally:
            for p in (edge, col):       # TAILDIR never ends: the edge is stopped, then the collector
                if p is not None:
                    p.terminate()
                    if p.wait(30) != 0:
                        raise RuntimeError("agent failed: %s" % (d / ("e.log" if p is edge else "c.log")).read_text()[-2000:])
            col_log.close()
            edge_log.close()
    lo = next(s for s in samples if s[1] >= n * 0.1)
    hi = next(s for s in samples if s[1] >= n * 0.9)
    return (hi[1] - lo[1]) / (hi[0] - lo[0]) if hi[0] > lo[0] else float("nan")


def test_flight_hop():
    """A check (the normal test run): the hop moves every event, plain and with TLS."""
    assert hop(100_000) > 0
    assert hop(100_000, tls=True) > 0


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000_000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    with tempfile.TemporaryDirectory() as tmp:
        lines = Path(tmp) / "events.log"
        write_lines(lines, n)
        for r in range(rounds):
            for tls in (False, True):
                load = os.getloadavg()
                rate = hop(n, tls, lines)
                print("round %d %-5s %d events: %.2f M events/s; CPU s edge %.1f, collector %.1f (start-up "
                      "included); load average before %.2f %.2f %.2f"
                      % (r + 1, "tls" if tls else "plain", n, rate / 1e6, CPU["edge"], CPU["collector"], *load),
                      flush=True)
