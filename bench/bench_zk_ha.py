"""Active/standby take-over time (issue 17): two agents in one --ha-group on the ZooKeeper of
scripts/services.sh (FASTSYNC_TEST_ZK, default 127.0.0.1:2181), `spooldir -> memory -> null`
on one spool directory into which a small file is dropped every 20 ms. The leader is killed
with -9; the take-over time is from just before the kill until the standby's source has
accepted its first event (its /metrics read every 20 ms). The killed agent is started again
(a standby now) and the new leader is killed next: `--kills` take-overs in a row.

    python bench/bench_zk_ha.py [--kills 5] [--session-timeout 6]

A take-over cannot be faster than the session timeout: ZooKeeper keeps a killed leader's
ephemeral node until its session expires. In the test run the body runs once (one kill,
2 s sessions) as a check.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid

ZK = os.environ.get("FASTSYNC_TEST_ZK", "127.0.0.1:2181")
CONFIG = """a1.sources = r1
a1.channels = c1
a1.sinks = k1
a1.sources.r1.type = spooldir
a1.sources.r1.spoolDir = {spool}
a1.sources.r1.channels = c1
a1.channels.c1.type = memory
a1.sinks.k1.type = null
a1.sinks.k1.channel = c1
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Member:
    def __init__(self, conf: str, base: str, session: float, log: str):
        self.port = free_port()
        self.log = open(log, "ab")
        self.p = subprocess.Popen([sys.executable, "-m", "fastsync", "agent", "-n", "a1", "-f", conf, "--no-reload-conf",
                                   "--ha-group", "bench", "-z", ZK, "-p", base, "--zk-session-timeout", str(session),
                                   "--metrics-port", str(self.port)], stdout=self.log, stderr=self.log)

    def metrics(self) -> dict:
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.port, timeout=2) as r:
                return json.loads(r.read())
        except OSError:
            return {}

    def role(self) -> str:
        return self.metrics().get("AGENT.a1", {}).get("HaRole", "")

    def accepted(self) -> int:
        return int(self.metrics().get("SOURCE.r1", {}).get("EventAcceptedCount", -1))

    def kill(self) -> None:
        self.p.kill()
        self.p.wait(10)
        self.log.close()


def wait(fn, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError("timed out waiting for %s" % what)


def drop_files(spool: str, halt: threading.Event) -> None:
    i = 0
    while not halt.is_set():
        tmp = os.path.join(spool, ".f%06d" % i)
        with open(tmp, "w") as f:
            f.write("".join("f%06d-%d\n" % (i, j) for j in range(10)))
        os.rename(tmp, os.path.join(spool, "f%06d.log" % i))
        i += 1
        halt.wait(0.02)


def measure(kills: int, session: float) -> list[float]:
    """Seconds from each kill of the leader to the standby's first event."""
    from kazoo.client import KazooClient
    base = "/fastsync-bench/ha-%s" % uuid.uuid4().hex[:8]
    halt = threading.Event()
    members: list[Member] = []
    with tempfile.TemporaryDirectory() as work:
        spool = os.path.join(work, "spool")
        os.mkdir(spool)
        conf = os.path.join(work, "a.properties")
        with open(conf, "w") as f:
            f.write(CONFIG.format(spool=spool))
        dropper = threading.Thread(target=drop_files, args=(spool, halt), daemon=True)
        dropper.start()
        times = []
        try:
            members = [Member(conf, base, session, os.path.join(work, "agent%d.log" % i)) for i in range(2)]
            wait(lambda: sorted(m.role() for m in members) == ["leader", "standby"], 60, "a leader and a standby")
            for k in range(kills):
                leader, standby = sorted(members, key=lambda m: m.role() != "leader")
                before = standby.accepted()
                t0 = time.monotonic()
                leader.kill()
                wait(lambda: standby.accepted() > before, 60, "the standby's first event")
                times.append(time.monotonic() - t0)
                members.remove(leader)
                members.append(Member(conf, base, session, os.path.join(work, "agent%d.log" % (k + 2))))
                wait(lambda: members[-1].role() == "standby", 60, "the restarted agent a standby")
        finally:
            halt.set()
            for m in members:
                m.kill()
            client = KazooClient(hosts=ZK)
            client.start(timeout=15)
            client.delete(base, recursive=True)
            client.stop()
            client.close()
    return times


def test_takeover(benchmark):
    kills, session = (5, 6.0) if benchmark.enabled else (1, 2.0)
    times: list[float] = []
    benchmark.pedantic(lambda: times.extend(measure(kills, session)), rounds=1, iterations=1)
    benchmark.extra_info.update(takeover_s=times, session_timeout_s=session)
    assert len(times) == kills


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--session-timeout", type=float, default=6.0)
    args = ap.parse_args(argv)
    times = measure(args.kills, args.session_timeout)
    print("session timeout %g s, %d kills: take-over %s s; median %.2f s, range %.2f - %.2f s" % (
        args.session_timeout, len(times), " ".join("%.2f" % t for t in times), statistics.median(times), min(times), max(times)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
