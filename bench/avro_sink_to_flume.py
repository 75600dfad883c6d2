"""Our side of the avro hop against the real Apache Flume 1.11 collector (avro source ->
memory -> null), events/s:

* fastsync.client.RpcClient sending batches of 1000 events of 100 bytes: plain, deflate, TLS
  (best of `--rounds` runs of `--events` each, after a warm-up of Flume's JIT);
* the agent `seq -> memory -> avro sink (batch-size 1000)` through the CLI with
  --exit-when-done (its own events/s line), with batchesInFlight 4 (ours) and 1 (Flume's way)
  in alternating rounds.

    python bench/avro_sink_to_flume.py [--events 300000] [--rounds 3] [--agent-events 2000000]

Flume's jars come from scripts/flume.sh (tests/flume_support.py). The Flume -> Flume and
fastsync -> fastsync comparison of the hop is the hop benchmark's; this one tells what our
client and sink reach against Flume's own source.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from tls_support import keystore  # noqa: E402
from e2e_support import free_port, wait_for_port, write_config  # noqa: E402
from flume_support import flume_command  # noqa: E402

from fastsync.client import RpcClient  # noqa: E402
from fastsync.event import EventBatch  # noqa: E402


def collector(tmp: Path, port: int, **source) -> subprocess.Popen:
    cfg = {"f.sources": "r1", "f.channels": "c1", "f.sinks": "k1",
           "f.sources.r1.type": "avro", "f.sources.r1.bind": "127.0.0.1", "f.sources.r1.port": port,
           "f.sources.r1.channels": "c1", "f.channels.c1.type": "memory", "f.channels.c1.capacity": 1000000,
           "f.channels.c1.transactionCapacity": 10000, "f.sinks.k1.type": "null", "f.sinks.k1.channel": "c1",
           "f.sinks.k1.batchSize": 1000}
    cfg.update({"f.sources.r1." + k: v for k, v in source.items()})
    conf = write_config(tmp, cfg, "f%d.properties" % port)
    p = subprocess.Popen(flume_command("f", conf, tmp, java_opts=("-Xmx1g",)), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    wait_for_port(port, 60, alive=lambda: p.poll() is None)
    return p


def client_rate(port: int, props: dict, events: int, rounds: int) -> float:
    batch = EventBatch.from_bodies([(b"%08d" % i) * 12 + b"abcd" for i in range(1000)])    # 100-byte bodies
    with RpcClient.from_properties({"hosts": "h1", "hosts.h1": "127.0.0.1:%d" % port, **props}) as c:
        for _ in range(20):
            c.send(batch)
        best = 0.0
        for _ in range(rounds):
            t = time.perf_counter()
            for _ in range(events // 1000):
                c.send(batch)
            best = max(best, events // 1000 * 1000 / (time.perf_counter() - t))
    return best


def agent_rate(tmp: Path, port: int, events: int, in_flight: int) -> str:
    cfg = {"a1.sources": "r1", "a1.channels": "c1", "a1.sinks": "k1", "a1.sources.r1.type": "seq",
           "a1.sources.r1.totalEvents": events, "a1.sources.r1.batchSize": 1000, "a1.sources.r1.channels": "c1",
           "a1.channels.c1.type": "memory", "a1.channels.c1.capacity": 100000, "a1.channels.c1.transactionCapacity": 1000,
           "a1.sinks.k1.type": "avro", "a1.sinks.k1.channel": "c1", "a1.sinks.k1.hostname": "127.0.0.1",
           "a1.sinks.k1.port": port, "a1.sinks.k1.batch-size": 1000, "a1.sinks.k1.batchesInFlight": in_flight}
    r = subprocess.run([sys.executable, "-m", "fastsync", "agent", "-n", "a1", "-f", str(write_config(tmp, cfg, "a1.properties")),
                        "--exit-when-done"], capture_output=True, text=True, timeout=600)
    return next((line for line in (r.stdout + r.stderr).splitlines() if "events/s" in line), r.stderr[-300:])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=300000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--agent-events", type=int, default=2000000)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        ks = keystore(tmp)
        modes = {"plain": ({}, {}),
                 "deflate": ({"compression-type": "deflate"}, {"compression-type": "deflate"}),
                 "ssl": ({"ssl": "true", "keystore": ks, "keystore-password": "secret1", "keystore-type": "PKCS12"},
                         {"ssl": "true", "trust-all-certs": "true"})}
        for mode, (source, props) in modes.items():
            port = free_port()
            p = collector(tmp, port, **source)
            try:
                rate = client_rate(port, props, a.events, a.rounds)
                print("RpcClient -> Flume avro source, %-7s batch 1000, 100-byte events: %9.0f events/s" % (mode, rate),
                      flush=True)
                if mode == "plain":     # alternating rounds; the first warms Flume's JIT
                    for in_flight in [4, 1] * a.rounds:
                        print("agent seq -> memory -> avro sink (batchesInFlight %d) -> Flume: %s"
                              % (in_flight, agent_rate(tmp, port, a.agent_events, in_flight)), flush=True)
            finally:
                p.kill()
                p.wait()


if __name__ == "__main__":
    main()
