"""The `avro` source's events/s, 100-byte bodies with 3 headers, appendBatch of 1000:

    decode     in process: an appendBatch request (pre-encoded) decoded into an EventBatch
               (decode_flume_array + the header columns), the source's per-request work
               besides the channel put
    socket     our agent (avro -> memory -> null) fed over loopback by a client sending
               pre-encoded requests one at a time and waiting for each Status, as Flume's
               avro sink does: the source's throughput without a slow sender
    flume      the real Flume 1.11 (seq -> memory -> avro sink, batch-size 1000) -> our agent
               (avro -> memory -> null), against Flume -> Flume (the same Flume sender ->
               Flume's avro source -> memory -> null) in the same run: events/s while the
               receiver counts them (its metrics, sampled every 0.25 s)

    python bench/bench_avro_source.py [--events 2000000] [--rounds 3] [--no-flume]

In the test run each way runs once on few events as a check.
"""
from __future__ import annotations

import argparse
import io
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
HEADERS = {"host": "web-01", "app": "shop", "level": "INFO"}
BATCH = 1000


def request(n: int = BATCH, handshake: bool = False) -> bytes:
    """An appendBatch request of n events (fastavro writes the events)."""
    import fastavro

    from fastsync.kafkaio import FLUME_EVENT_SCHEMA
    from fastsync.rpc.avro_wire import FLUME_SDK_MD5, write_bytes
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema({"type": "array", "items": FLUME_EVENT_SCHEMA}),
                               [{"headers": HEADERS, "body": b"%099d" % i} for i in range(n)])
    hs = FLUME_SDK_MD5 + b"\x00" + FLUME_SDK_MD5 + b"\x00" if handshake else b""
    return hs + b"\x00" + write_bytes(b"appendBatch") + out.getvalue()


def decode(events: int) -> float:
    from fastsync._native import decode_flume_array
    from fastsync.kafkaio import flume_columns_batch
    msg = request()
    pos = msg.index(b"appendBatch") + len(b"appendBatch")
    start, done = time.perf_counter(), 0
    while done < events:
        batch = flume_columns_batch(*decode_flume_array(msg, pos)[:4])
        done += len(batch)
    return done / (time.perf_counter() - start)


def agent_config(directory: Path, port: int) -> Path:
    cfg = directory / "avro-null.properties"
    cfg.write_text("a1.sources = r1\na1.channels = c1\na1.sinks = k1\n"
                   "a1.sources.r1.type = avro\na1.sources.r1.bind = 127.0.0.1\na1.sources.r1.port = %d\n"
                   "a1.sources.r1.channels = c1\na1.channels.c1.type = memory\na1.channels.c1.capacity = 100000\n"
                   "a1.channels.c1.transactionCapacity = %d\na1.sinks.k1.type = null\na1.sinks.k1.channel = c1\n"
                   "a1.sinks.k1.batchSize = %d\n" % (port, BATCH, BATCH))
    return cfg


def start_agent(directory: Path, port: int, mport: int) -> subprocess.Popen:
    from e2e_support import wait_for_port
    p = subprocess.Popen([sys.executable, "-m", "fastsync", "agent", "-n", "a1", "-f", str(agent_config(directory, port)),
                          "--metrics-port", str(mport)], stdout=subprocess.DEVNULL, stderr=open(directory / "agent.log", "ab"))
    wait_for_port(port, timeout=30, alive=lambda: p.poll() is None)
    return p


def stop(p: subprocess.Popen) -> None:
    p.terminate()
    try:
        p.wait(30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def over_socket(directory: Path, events: int) -> float:
    from e2e_support import free_port
    from fastsync.rpc.avro_wire import encode_frame
    port, mport = free_port(), free_port()
    p = start_agent(directory, port, mport)
    first, rest = request(handshake=True), request()
    frames = [encode_frame(i, [rest[j:j + 8192] for j in range(0, len(rest), 8192)]) for i in range(2)]
    try:
        with socket.create_connection(("127.0.0.1", port)) as s:
            start, done = time.perf_counter(), 0
            s.sendall(encode_frame(0, [first]))
            reply(s)
            done = BATCH
            while done < events:
                s.sendall(frames[done // BATCH % 2])
                assert reply(s)[-1] == 0, "not OK"
                done += BATCH
            rate = done / (time.perf_counter() - start)
    finally:
        stop(p)
    return rate


def reply(s: socket.socket) -> bytes:
    """The message of the one reply due on s."""
    from fastsync.rpc.avro_wire import FrameReader
    got = FrameReader().next_frame(lambda: s.recv(1 << 16))
    assert got is not None, "connection closed"
    return got[1]


def counted(url: str, component: str) -> int:
    from e2e_support import get_json
    try:
        return int(get_json(url)[component]["EventAcceptedCount"])
    except (OSError, KeyError, ValueError):
        return 0


def rate_while(url: str, component: str, events: int, alive, timeout: float = 600) -> float:
    """events/s of the receiver between its first and its last counted events."""
    deadline = time.monotonic() + timeout
    t0 = c0 = None
    last = None         # the read before: the events of a run shorter than one interval count from it
    while time.monotonic() < deadline and alive():
        c = counted(url, component)
        now = time.perf_counter()
        if c and t0 is None:
            t0, c0 = last or (now, c)
        if c >= events:
            return (c - c0) / (now - t0) if now > t0 else float("nan")
        last = (now, c)
        time.sleep(0.25)
    raise AssertionError("%s counted %d of %d events" % (component, counted(url, component), events))


def flume_sender(directory: Path, port: int, events: int) -> subprocess.Popen:
    from flume_support import flume_command
    cfg = directory / "flume-sender.properties"
    cfg.write_text("f1.sources = s1\nf1.channels = c1\nf1.sinks = k1\n"
                   "f1.sources.s1.type = seq\nf1.sources.s1.totalEvents = %d\nf1.sources.s1.batchSize = %d\n"
                   "f1.sources.s1.channels = c1\nf1.channels.c1.type = memory\nf1.channels.c1.capacity = 100000\n"
                   "f1.channels.c1.transactionCapacity = %d\nf1.sinks.k1.type = avro\nf1.sinks.k1.channel = c1\n"
                   "f1.sinks.k1.hostname = 127.0.0.1\nf1.sinks.k1.port = %d\nf1.sinks.k1.batch-size = %d\n"
                   % (events, BATCH, BATCH, port, BATCH))
    return subprocess.Popen(flume_command("f1", cfg, directory, java_opts=("-Xmx1g",)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def flume_receiver(directory: Path, port: int, mport: int) -> subprocess.Popen:
    from e2e_support import wait_for_port
    from flume_support import flume_command
    cfg = directory / "flume-receiver.properties"
    cfg.write_text("a1.sources = r1\na1.channels = c1\na1.sinks = k1\n"
                   "a1.sources.r1.type = avro\na1.sources.r1.bind = 127.0.0.1\na1.sources.r1.port = %d\n"
                   "a1.sources.r1.channels = c1\na1.channels.c1.type = memory\na1.channels.c1.capacity = 100000\n"
                   "a1.channels.c1.transactionCapacity = %d\na1.sinks.k1.type = null\na1.sinks.k1.channel = c1\n"
                   "a1.sinks.k1.batchSize = %d\n" % (port, BATCH, BATCH))
    p = subprocess.Popen(flume_command("a1", cfg, directory, java_opts=(
        "-Xmx1g", "-Dflume.monitoring.type=http", "-Dflume.monitoring.port=%d" % mport)),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, timeout=60, alive=lambda: p.poll() is None)
    return p


def from_flume(directory: Path, events: int, receiver: str) -> float:
    """Flume's avro sink -> `receiver` ("ours" or "flume") -> null: the receiver's events/s."""
    from e2e_support import free_port
    port, mport = free_port(), free_port()
    recv = start_agent(directory, port, mport) if receiver == "ours" else flume_receiver(directory, port, mport)
    send = flume_sender(directory, port, events)
    try:
        return rate_while("http://127.0.0.1:%d/metrics" % mport, "SOURCE.r1", events,
                          lambda: recv.poll() is None and send.poll() is None)
    finally:
        stop(send)
        stop(recv)


def test_avro_source_ways():
    assert decode(5000) > 0
    with tempfile.TemporaryDirectory() as tmp:
        assert over_socket(Path(tmp), 5000) > 0
        assert from_flume(Path(tmp), 5000, "ours") > 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-flume", action="store_true")
    a = ap.parse_args(argv)
    print("%d events, batch %d, 100-byte bodies, 3 headers, load %s" % (a.events, BATCH, os.getloadavg()))
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):
            res = {"decode": decode(a.events), "socket": over_socket(Path(tmp), a.events)}
            if not a.no_flume:
                res["flume->ours"] = from_flume(Path(tmp), a.events, "ours")
                res["flume->flume"] = from_flume(Path(tmp), a.events, "flume")
            line = ", ".join("%s %.0f ev/s" % kv for kv in res.items())
            if not a.no_flume:
                line += "; ours / flume's avro source %.2f" % (res["flume->ours"] / res["flume->flume"])
            print("round %d: %s" % (r + 1, line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
