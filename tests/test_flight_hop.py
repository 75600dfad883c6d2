"""The `flight` hop between fastsync agents: an edge agent's flight sink => a collector's
flight source, both `python -m fastsync agent` processes on loopback. Every event arrives
with its body and headers; a batch is acknowledged only after the collector's commit, so
stopping, killing or refusing the collector loses nothing (duplicates only as batches sent
again); TLS, the bearer token, sink groups over two collectors, and bad connections."""
from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.flight as fl
import pyarrow.parquet as pq
import pytest

from e2e_support import free_port, get_json, lines_so_far, multiset_problems, poll, wait_for_port, write_config
from tls_support import self_signed_pem

TOKEN = "s3cret-t0ken-for-the-hop"


def collector_conf(tmp_path: Path, port: int, name: str = "c", channel: str = "file", sink: str = "file_roll",
                   **source) -> Path:
    """flight source -> file (or memory) channel -> file_roll (or parquet) in tmp_path/name."""
    root = tmp_path / name
    p = "%s." % name
    cfg = {p + "sources": "r1", p + "channels": "ch", p + "sinks": "k1",
           p + "sources.r1.type": "flight", p + "sources.r1.bind": "127.0.0.1", p + "sources.r1.port": port,
           p + "sources.r1.channels": "ch", p + "channels.ch.type": channel, p + "sinks.k1.channel": "ch"}
    cfg.update({p + "sources.r1." + k.replace("_", "."): v for k, v in source.items()})
    if channel == "file":
        cfg.update({p + "channels.ch.checkpointDir": root / "ckpt", p + "channels.ch.dataDirs": root / "data"})
    else:
        cfg.update({p + "channels.ch.capacity": 100000, p + "channels.ch.transactionCapacity": 1000})
    if sink == "file_roll":
        cfg.update({p + "sinks.k1.type": "file_roll", p + "sinks.k1.sink.directory": root / "out",
                    p + "sinks.k1.sink.rollInterval": 0, p + "sinks.k1.sink.batchSize": 1000})
    else:
        cfg.update({p + "sinks.k1.type": "parquet", p + "sinks.k1.parquet.path": root / "out",
                    p + "sinks.k1.parquet.rollInterval": 0, p + "sinks.k1.parquet.rollSize": 0,
                    p + "sinks.k1.parquet.rollCount": 0, p + "sinks.k1.parquet.batchSize": 1000})
    return write_config(tmp_path, cfg, "%s.properties" % name)


def edge_conf(tmp_path: Path, ports, source: dict, group: str | None = None, name: str = "e", **sink) -> Path:
    """`source` -> memory -> one flight sink per port (in a sink group `group` if given)."""
    p = "%s." % name
    sinks = ["k%d" % (i + 1) for i in range(len(ports))]
    cfg = {p + "sources": "r1", p + "channels": "ch", p + "sinks": " ".join(sinks),
           p + "sources.r1.channels": "ch", p + "channels.ch.type": "memory",
           p + "channels.ch.capacity": 100000, p + "channels.ch.transactionCapacity": 1000}
    cfg.update({p + "sources.r1." + k: v for k, v in source.items()})
    for k, port in zip(sinks, ports):
        cfg.update({p + "sinks.%s.type" % k: "flight", p + "sinks.%s.channel" % k: "ch",
                    p + "sinks.%s.hostname" % k: "127.0.0.1", p + "sinks.%s.port" % k: port,
                    p + "sinks.%s.batch-size" % k: 100})
        cfg.update({p + "sinks.%s.%s" % (k, key.replace("_", "-")): v for key, v in sink.items()})
    if group:
        cfg.update({p + "sinkgroups": "g1", p + "sinkgroups.g1.sinks": " ".join(sinks),
                    p + "sinkgroups.g1.processor.type": group, p + "sinkgroups.g1.processor.backoff": "true",
                    p + "sinkgroups.g1.processor.maxpenalty": 2000, p + "sinkgroups.g1.processor.selector.maxTimeOut": 2000,
                    p + "sinkgroups.g1.processor.priority.k1": 10, p + "sinkgroups.g1.processor.priority.k2": 5})
    return write_config(tmp_path, cfg, "%s.properties" % name)


def seq_source(n: int) -> dict:
    return {"type": "seq", "totalEvents": n, "batchSize": 1000}


def taildir_source(tmp_path: Path) -> dict:
    (tmp_path / "logs").mkdir(exist_ok=True)
    return {"type": "TAILDIR", "filegroups": "f1", "filegroups.f1": tmp_path / "logs" / "app.log",
            "positionFile": tmp_path / "pos" / "taildir.json", "batchSize": 100}


def start_collector(agent, tmp_path: Path, port: int, name: str = "c", **kw):
    mport = free_port()
    p = agent(name, collector_conf(tmp_path, port, name, **kw), "--metrics-port", mport)
    wait_for_port(port, 20, alive=p.alive)
    p.metrics = "http://127.0.0.1:%d/metrics" % mport
    return p


def source_counter(p, counter: str) -> int:
    return int(get_json(p.metrics)["SOURCE.r1"][counter])


def out_lines(tmp_path: Path, *names: str) -> list[bytes]:
    return [line for n in names for line in lines_so_far(tmp_path / n / "out")]


def append_lines(path: Path, start: int, stop: int) -> list[bytes]:
    lines = [b"line %06d" % i for i in range(start, stop)]
    with open(path, "ab") as f:
        f.write(b"".join(x + b"\n" for x in lines))
    return lines


def duplicates(lines) -> int:
    return sum(c - 1 for c in collections.Counter(lines).values())


def wait_all(tmp_path: Path, expected: list[bytes], *names: str, timeout: float = 30) -> list[bytes]:
    want = set(expected)
    return poll(lambda: (lambda got: got if want <= set(got) else None)(out_lines(tmp_path, *names)), timeout,
                message="every line at the collector(s)")


def test_seq_events_cross_the_hop_into_a_file_channel(tmp_path, agent):
    port = free_port()
    c = start_collector(agent, tmp_path, port)
    e = agent("e", edge_conf(tmp_path, [port], seq_source(20000)), "--exit-when-done")
    assert e.wait(30) == 0, e.stderr
    got = poll(lambda: (lambda x: x if len(x) >= 20000 else None)(out_lines(tmp_path, "c")), 20)
    assert multiset_problems(got, [b"%d" % i for i in range(20000)]) == ""
    assert source_counter(c, "EventAcceptedCount") == 20000
    assert c.stop() == 0, c.stderr


def put_batches(port: int, batches: list[pa.RecordBatch]) -> None:
    """What a flight sink sends, from this test: each batch with its sequence number, and
    wait for the acknowledgements (OK)."""
    client = fl.FlightClient("grpc://127.0.0.1:%d" % port)
    for i, batch in enumerate(batches, 1):     # a schema per stream
        writer, reader = client.do_put(fl.FlightDescriptor.for_command(b"test"), batch.schema)
        writer.write_with_metadata(batch, pa.py_buffer(i.to_bytes(8, "little")))
        ack = reader.read().to_pybytes()
        assert ack == i.to_bytes(8, "little") + b"OK", ack
        writer.done_writing()
        writer.close()
    client.close()


def test_binary_empty_and_large_bodies_and_headers_arrive_identical(tmp_path, agent):
    """An edge agent (flight source -> memory -> flight sink) relays to a collector writing
    Parquet (a column per header): bodies of any bytes, empty and 1 MB, and headers
    shared, per event or absent, are what was sent."""
    relay_port, port = free_port(), free_port()
    c = start_collector(agent, tmp_path, port, sink="parquet")
    relay_conf = edge_conf(tmp_path, [port], {"type": "flight", "bind": "127.0.0.1", "port": relay_port})
    relay = agent("e", relay_conf)
    wait_for_port(relay_port, 20, alive=relay.alive)
    binary = [bytes(range(256)), b"\n\r\x00", b"", b"\xff\xfe not utf-8 \x80", os.urandom(1 << 20), b"last"]
    b1 = pa.RecordBatch.from_arrays(
        [pa.array(binary, pa.large_binary()), pa.array(["a", None, "c\nd", "é", "", "f"]),
         pa.DictionaryArray.from_arrays(pa.array([0] * 6, pa.int32()), pa.array(["shared"]))], names=["body", "h1", "host"])
    b2 = pa.RecordBatch.from_arrays([pa.array([b"plain %d" % i for i in range(1000)], pa.binary())], names=["body"])
    put_batches(relay_port, [b1, b2])
    poll(lambda: source_counter(c, "EventAcceptedCount") >= 1006, 30, message="1006 events at the collector")
    assert relay.stop() == 0, relay.stderr
    assert c.stop() == 0, c.stderr
    table = pa.concat_tables([pq.read_table(p) for p in sorted((tmp_path / "c" / "out").rglob("*.parquet"))],
                             promote_options="default")
    rows = sorted(zip(table.column("body").to_pylist(), table.column("h1").to_pylist(),
                      table.column("host").to_pylist()), key=repr)
    expected = sorted([(b, h, "shared") for b, h in zip(binary, ["a", None, "c\nd", "é", "", "f"])]
                      + [(b"plain %d" % i, None, None) for i in range(1000)], key=repr)
    assert len(rows) == len(expected)
    assert rows == expected


@pytest.mark.parametrize("trust", ["trustedCertificates", "trust-all-certs"])
def test_tls(tmp_path, agent, trust):
    pem, key = self_signed_pem(tmp_path)
    port = free_port()
    c = start_collector(agent, tmp_path, port, ssl="true", ssl_certificate=pem, ssl_key=key)
    sink = {"ssl": "true"}
    sink.update({"ssl.trustedCertificates": pem} if trust == "trustedCertificates" else {"trust-all-certs": "true"})
    e = agent("e", edge_conf(tmp_path, [port], seq_source(5000), **sink), "--exit-when-done")
    assert e.wait(30) == 0, e.stderr
    assert "connected to 127.0.0.1:%d (TLS)" % port in e.stderr
    got = poll(lambda: (lambda x: x if len(x) >= 5000 else None)(out_lines(tmp_path, "c")), 20)
    assert multiset_problems(got, [b"%d" % i for i in range(5000)]) == ""
    # a plain-text client gets nothing through
    with pytest.raises(fl.FlightError):
        put_batches(port, [pa.RecordBatch.from_arrays([pa.array([b"x"], pa.large_binary())], names=["body"])])
    assert c.stop() == 0, c.stderr


def test_token_right_wrong_and_from_a_file(tmp_path, agent):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    port = free_port()
    c = start_collector(agent, tmp_path, port, auth_tokenFile=token_file)
    wrong = agent("w", edge_conf(tmp_path, [port], seq_source(100), name="w", **{"auth.token": "not-" + TOKEN}),
                  "--drain-timeout", "1")
    m = wrong.wait_for_stderr(r"^.*unauthenticated.*$", 20)
    line = m.group(0)
    assert "127.0.0.1:%d" % port in line and "flight sink k1" in line, line
    right = agent("e", edge_conf(tmp_path, [port], seq_source(3000), **{"auth.token": TOKEN}), "--exit-when-done")
    assert right.wait(30) == 0, right.stderr
    got = poll(lambda: (lambda x: x if len(x) >= 3000 else None)(out_lines(tmp_path, "c")), 20)
    assert multiset_problems(got, [b"%d" % i for i in range(3000)]) == ""    # nothing of the wrong one's
    assert source_counter(c, "AuthFailCount") >= 1
    wrong.stop()
    # the sink's token from a file too
    agent_file = agent("f", edge_conf(tmp_path, [port], seq_source(10), name="f", **{"auth.tokenFile": token_file}),
                       "--exit-when-done")
    assert agent_file.wait(30) == 0, agent_file.stderr
    poll(lambda: len(out_lines(tmp_path, "c")) >= 3010, 20)
    assert c.stop() == 0, c.stderr
    for p in (c, wrong, right, agent_file):
        assert TOKEN not in p.stderr and TOKEN not in p.stdout


def test_file_channel_edge_sends_several_takes_per_message(tmp_path, agent):
    """An edge on a file channel (not a memory channel's grouped take): a message of several
    takes is a transaction per take, the batches put end to end; every event arrives once."""
    port = free_port()
    c = start_collector(agent, tmp_path, port)
    conf = edge_conf(tmp_path, [port], seq_source(20000))
    text, n = re.subn(r"^(e\.channels\.ch\.type\s*=\s*)memory$", r"\1file", conf.read_text(), flags=re.M)
    assert n == 1
    conf.write_text(text + "e.channels.ch.checkpointDir = %s\ne.channels.ch.dataDirs = %s\n"
                    % (tmp_path / "e-ckpt", tmp_path / "e-data"))
    e = agent("e", conf, "--exit-when-done")
    assert e.wait(60) == 0, e.stderr
    got = poll(lambda: (lambda x: x if len(x) >= 20000 else None)(out_lines(tmp_path, "c")), 30)
    assert multiset_problems(got, [b"%d" % i for i in range(20000)]) == ""
    assert c.stop() == 0


def test_collector_down_when_the_edge_starts(tmp_path, agent):
    port = free_port()
    e = agent("e", edge_conf(tmp_path, [port], seq_source(5000)))
    e.wait_for_stderr(r"127\.0\.0\.1:%d: cannot connect" % port, 20)
    c = start_collector(agent, tmp_path, port)
    got = poll(lambda: (lambda x: x if len(x) >= 5000 else None)(out_lines(tmp_path, "c")), 30)
    assert multiset_problems(got, [b"%d" % i for i in range(5000)]) == ""
    assert e.stop() == 0 and c.stop() == 0


def test_stopped_collector_times_out_rolls_back_and_everything_arrives_after(tmp_path, agent):
    port = free_port()
    c = start_collector(agent, tmp_path, port)
    log = tmp_path / "logs" / "app.log"
    e = agent("e", edge_conf(tmp_path, [port], taildir_source(tmp_path),
                             **{"request-timeout": 1000, "connect-timeout": 1000, "batches-in-flight": 16}))
    sent = append_lines(log, 0, 1000)
    wait_all(tmp_path, sent, "c")
    c.send_signal(signal.SIGSTOP)
    try:
        sent += append_lines(log, 1000, 3000)
        e.wait_for_stderr(r"no acknowledgement within request-timeout \(1000 ms\).*rolled back", 20)
    finally:
        c.send_signal(signal.SIGCONT)
    got = wait_all(tmp_path, sent, "c")
    assert e.stop() == 0 and c.stop() == 0
    got = out_lines(tmp_path, "c")
    assert set(got) == set(sent)
    print("duplicates after SIGSTOP/SIGCONT: %d" % duplicates(got))
    # at most the batches in flight when it stopped (16 of 100 events), sent again
    assert duplicates(got) <= 16 * 100


def test_collector_killed_mid_run_and_restarted(tmp_path, agent):
    """kill -9 of the collector while lines are appended; restarted on its file channel, it
    gets them all: nothing acknowledged is lost, duplicates only as batches sent again."""
    port = free_port()
    c = start_collector(agent, tmp_path, port)
    log = tmp_path / "logs" / "app.log"
    e = agent("e", edge_conf(tmp_path, [port], taildir_source(tmp_path), **{"request-timeout": 2000, "maxBackoff": 1000}))
    sent: list[bytes] = []
    stop = threading.Event()

    def writer():
        i = 0
        while not stop.is_set() and i < 20000:
            sent.extend(append_lines(log, i, i + 200))
            i += 200
            time.sleep(0.02)
    t = threading.Thread(target=writer)
    t.start()
    try:
        poll(lambda: len(out_lines(tmp_path, "c")) >= 2000, 20)
        c.proc.kill()
        c.wait(10)
        time.sleep(1)
        c = start_collector(agent, tmp_path, port)
    finally:
        t.join()
    got = wait_all(tmp_path, sent, "c", timeout=60)
    assert e.stop() == 0 and c.stop() == 0
    got = out_lines(tmp_path, "c")
    assert set(got) == set(sent), multiset_problems(set(got), set(sent))
    print("lines %d, duplicates after kill -9: %d" % (len(sent), duplicates(got)))
    # the edge's batches in flight (16 of 100 events) and what the collector's file_roll wrote
    # without committing its take (1000 events)
    assert duplicates(got) <= 16 * 100 + 1000


@pytest.mark.parametrize("group", ["load_balance", "failover"])
def test_sink_group_over_two_collectors_one_killed(tmp_path, agent, group):
    p1, p2 = free_port(), free_port()
    c1 = start_collector(agent, tmp_path, p1, name="c1")
    c2 = start_collector(agent, tmp_path, p2, name="c2")
    log = tmp_path / "logs" / "app.log"
    e = agent("e", edge_conf(tmp_path, [p1, p2], taildir_source(tmp_path), group=group,
                             **{"request-timeout": 2000, "connect-timeout": 1000}))
    sent = append_lines(log, 0, 2000)
    wait_all(tmp_path, sent, "c1", "c2")
    if group == "load_balance":
        assert lines_so_far(tmp_path / "c1" / "out") and lines_so_far(tmp_path / "c2" / "out")
    c1.proc.kill()      # the one failover prefers; one of two for load_balance
    c1.wait(10)
    sent += append_lines(log, 2000, 5000)
    got = wait_all(tmp_path, sent, "c1", "c2", timeout=40)
    assert e.stop() == 0 and c2.stop() == 0
    assert set(got) == set(sent)
    print("%s: duplicates %d" % (group, duplicates(out_lines(tmp_path, "c1", "c2"))))


TRUNCATED_CLIENT = r"""
import os, sys, pyarrow as pa, pyarrow.flight as fl
port, size = sys.argv[1], int(sys.argv[2])
client = fl.FlightClient("grpc://127.0.0.1:%s" % port)
batch = pa.RecordBatch.from_arrays([pa.array([b"x" * 1000] * size, pa.large_binary())], names=["body"])
writer, reader = client.do_put(fl.FlightDescriptor.for_command(b"t"), batch.schema)
writer.write_with_metadata(batch, pa.py_buffer((1).to_bytes(8, "little")))
if size < 100:
    assert reader.read().to_pybytes().endswith(b"OK")     # committed; then gone between two messages
os._exit(0)      # gone mid-stream: no end of stream, no close
"""


def test_garbage_and_truncated_streams_are_closed_counted_and_the_source_stays_up(tmp_path, agent):
    import socket
    port = free_port()
    c = start_collector(agent, tmp_path, port, channel="memory")
    # bytes that are not gRPC: gRPC closes the connection
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n" + os.urandom(4096))
        s.settimeout(10)
        try:
            while s.recv(65536):
                pass
        except ConnectionResetError:
            pass
    # clients that die in the middle of a stream: between two messages, and (most likely)
    # in the middle of a 20 MB one
    for size in ("10", "20000"):
        subprocess.run([sys.executable, "-c", TRUNCATED_CLIENT, str(port), size], check=True, timeout=30)
    # a stream of record batches that are not events (no body column)
    client = fl.FlightClient("grpc://127.0.0.1:%d" % port)
    bad = pa.RecordBatch.from_arrays([pa.array([1, 2])], names=["n"])
    writer, reader = client.do_put(fl.FlightDescriptor.for_command(b"t"), bad.schema)
    with pytest.raises(fl.FlightError, match="bad stream"):
        writer.write_with_metadata(bad, pa.py_buffer((1).to_bytes(8, "little")))
        reader.read()
        writer.close()
    client.close()
    poll(lambda: source_counter(c, "StreamFailCount") >= 3, 20, message="3 bad streams counted")
    # and the next good client is served
    e = agent("e", edge_conf(tmp_path, [port], seq_source(1000)), "--exit-when-done")
    assert e.wait(30) == 0, e.stderr
    got = poll(lambda: (lambda x: x if len(x) >= 1000 else None)(out_lines(tmp_path, "c")), 20)
    assert set(got) >= {b"%d" % i for i in range(1000)}
    assert c.stop() == 0, c.stderr
    assert "the client went away without ending the stream" in c.stderr
    assert "without a 'body' column" in c.stderr or "needs a 'body' column" in c.stderr


def test_config_errors_name_the_key(tmp_path, run_agent):
    port = free_port()
    conf = collector_conf(tmp_path, port, channel="memory", ssl="true", ssl_certificate=tmp_path / "nope.pem",
                          ssl_key=tmp_path / "nope.key")
    p = run_agent("c", conf, "--validate")
    assert p.returncode != 0
    assert "c.sources.r1.ssl.certificate" in p.stderr and "nope.pem" in p.stderr and "Traceback" not in p.stderr
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (pem, _), (_, other_key) = self_signed_pem(tmp_path / "a"), self_signed_pem(tmp_path / "b")
    conf = collector_conf(tmp_path, port, channel="memory", ssl="true", ssl_certificate=pem, ssl_key=other_key)
    p = run_agent("c", conf, "--validate")
    assert p.returncode != 0 and "c.sources.r1.ssl.key" in p.stderr and "mismatch" in p.stderr, p.stderr
    conf = edge_conf(tmp_path, [port], seq_source(1), **{"auth.token": TOKEN, "auth.tokenFile": tmp_path / "t"})
    p = run_agent("e", conf, "--validate")
    assert p.returncode != 0 and "auth.tokenFile" in p.stderr and TOKEN not in p.stderr


def test_a_batch_the_collector_cannot_commit_is_answered_failed_and_sent_again(tmp_path, agent):
    """The collector's file channel fills up (its sink, a flight sink to nowhere, drains
    nothing): the batches it cannot commit are answered FAILED, the edge rolls them back and
    tries again; once the collector drains (restarted with a file_roll sink on the same
    channel) every event arrives, those committed before the failure exactly once."""
    port = free_port()
    full = {"c.channels.ch.capacity": 500, "c.channels.ch.transactionCapacity": 100, "c.channels.ch.keep-alive": 0.2}
    conf = collector_conf(tmp_path, port).read_text()
    stuck = conf.replace("c.sinks.k1.type = file_roll", "c.sinks.k1.type = flight\nc.sinks.k1.hostname = 127.0.0.1\n"
                         "c.sinks.k1.port = %d" % free_port())
    stuck = "".join(line + "\n" for line in stuck.splitlines() if not line.startswith("c.sinks.k1.sink."))
    c = agent("c", write_config(tmp_path, stuck + "".join("%s = %s\n" % kv for kv in full.items()), "c.properties"),
              "--drain-timeout", "1")
    wait_for_port(port, 20, alive=c.alive)
    e = agent("e", edge_conf(tmp_path, [port], seq_source(2000)))
    e.wait_for_stderr(r"flight sink k1: 127\.0\.0\.1:%d: the source refused the batch: .*rolled back" % port, 30)
    assert c.stop() == 0, c.stderr
    assert "refused by the channel" in c.stderr
    c = agent("c", write_config(tmp_path, conf + "".join("%s = %s\n" % kv for kv in full.items()), "c.properties"))
    got = poll(lambda: (lambda x: x if len(x) >= 2000 else None)(out_lines(tmp_path, "c")), 40)
    assert e.stop() == 0 and c.stop() == 0
    got = out_lines(tmp_path, "c")
    assert set(got) == {b"%d" % i for i in range(2000)}
    print("duplicates after FAILED: %d" % duplicates(got))
    assert duplicates(got) <= 16 * 100
