"""The `avro` source against the real Apache Flume 1.11: Flume's avro sink (plain, deflate,
TLS, both) and Flume's avro-client send to our source; the bodies (binary, empty, 1 MB) and
headers (Flume's static, host and timestamp interceptors) we store are those Flume stored
itself from the same events. A hand-written client (events encoded by fastavro) checks
Status FAILED with nothing half-committed, ipFilter, and that garbage or a truncated frame
closes only that connection."""
from __future__ import annotations

import io
import socket
import ssl
import struct
import zlib
from collections import Counter
from pathlib import Path

import fastavro
import pyarrow.parquet as pq
import pytest

from e2e_support import (count_lines, free_port, get_json, poll, read_dir_lines, wait_for_port,
                         write_config)
from flume_support import flume_log
from tls_support import keystore
from fastsync.kafkaio import FLUME_EVENT_SCHEMA

FLUME_MD5 = bytes.fromhex("86aadae2c45474c0fe93ffd0f2350a65")   # Flume SDK's AvroSourceProtocol
EVENTS = fastavro.parse_schema({"type": "array", "items": FLUME_EVENT_SCHEMA})


def our_agent_config(port: int, sink: dict, **source) -> dict:
    cfg = {"a1.sources": "r1", "a1.channels": "c1", "a1.sinks": "k1",
           "a1.sources.r1.type": "avro", "a1.sources.r1.bind": "127.0.0.1", "a1.sources.r1.port": port,
           "a1.sources.r1.channels": "c1", "a1.channels.c1.type": "memory",
           "a1.channels.c1.capacity": 100000, "a1.channels.c1.transactionCapacity": 1000, "a1.sinks.k1.channel": "c1"}
    cfg.update({"a1.sources.r1." + k: v for k, v in source.items()})
    cfg.update({"a1.sinks.k1." + k: v for k, v in sink.items()})
    return cfg


def file_roll(out: Path) -> dict:
    return {"type": "file_roll", "sink.directory": out, "sink.rollInterval": 0, "sink.batchSize": 1000}


def parquet(out: Path, n: int) -> dict:
    """A parquet sink whose one file closes (and becomes readable) after n events."""
    return {"type": "parquet", "parquet.path": out, "parquet.rollCount": n, "parquet.rollSize": 0,
            "parquet.rollInterval": 0, "parquet.batchSize": 1000}


def bodies_file(path: Path) -> list[bytes]:
    """Lines Flume's exec source (cat, charset ISO-8859-1: every byte a char) reads back as
    they are: binary bytes (all but \\n and \\r), an empty body, a 1 MB body, plain text."""
    binary = bytes(b for b in range(256) if b not in (10, 13))
    bodies = [binary, b"", b"x" * (1 << 20), binary[::-1] * 3] + [b"event %d \xe9" % i for i in range(2000)]
    path.write_bytes(b"".join(b + b"\n" for b in bodies))
    return bodies


def flume_to_us_config(src: Path, port: int, flume_out: Path, **sink) -> dict:
    """Flume: exec (cat src) with static, host and timestamp interceptors, replicated to our
    source through its avro sink (k1) and to its own file_roll of avro_event records (k2)."""
    cfg = {"f1.sources": "s1", "f1.channels": "c1 c2", "f1.sinks": "k1 k2",
           "f1.sources.s1.type": "exec", "f1.sources.s1.command": "cat %s" % src, "f1.sources.s1.charset": "ISO-8859-1",
           "f1.sources.s1.batchSize": 100, "f1.sources.s1.channels": "c1 c2",
           "f1.sources.s1.interceptors": "st ho ts",
           "f1.sources.s1.interceptors.st.type": "static", "f1.sources.s1.interceptors.st.key": "tier",
           "f1.sources.s1.interceptors.st.value": "edge-1",
           "f1.sources.s1.interceptors.ho.type": "host", "f1.sources.s1.interceptors.ts.type": "timestamp",
           "f1.channels.c1.type": "memory", "f1.channels.c1.capacity": 10000, "f1.channels.c1.transactionCapacity": 1000,
           "f1.channels.c2.type": "memory", "f1.channels.c2.capacity": 10000, "f1.channels.c2.transactionCapacity": 1000,
           "f1.sinks.k1.type": "avro", "f1.sinks.k1.hostname": "127.0.0.1", "f1.sinks.k1.port": port,
           "f1.sinks.k1.channel": "c1", "f1.sinks.k1.batch-size": 100,
           "f1.sinks.k2.type": "file_roll", "f1.sinks.k2.channel": "c2", "f1.sinks.k2.sink.directory": flume_out,
           "f1.sinks.k2.sink.rollInterval": 0, "f1.sinks.k2.sink.serializer": "avro_event"}
    cfg.update({"f1.sinks.k1." + k: v for k, v in sink.items()})
    return cfg


def flume_records(directory: Path) -> list[tuple[bytes, tuple]]:
    out = []
    for f in sorted(directory.iterdir()):
        if f.stat().st_size:
            with open(f, "rb") as fh:
                out += [(r["body"], tuple(sorted(r["headers"].items()))) for r in fastavro.reader(fh)]
    return out


def our_records(directory: Path) -> list[tuple[bytes, tuple]]:
    out = []
    for f in sorted(directory.iterdir()):
        if f.name.endswith(".tmp"):
            continue
        for row in pq.read_table(f).to_pylist():
            body = row.pop("body")
            out.append((body, tuple(sorted((k, v) for k, v in row.items() if v is not None))))
    return out


def parquet_done(directory: Path) -> bool:
    return directory.exists() and any(not f.name.endswith(".tmp") for f in directory.iterdir())


def run_flume_to_us(tmp_path, agent, flume, sink: dict, source: dict, file_channel: bool = False):
    src, out, flume_out = tmp_path / "in.txt", tmp_path / "out", tmp_path / "flume-out"
    flume_out.mkdir()
    bodies = bodies_file(src)
    port = free_port()
    cfg = our_agent_config(port, parquet(out, len(bodies)), **source)
    if file_channel:
        cfg.update({"a1.channels.c1.type": "file", "a1.channels.c1.checkpointDir": tmp_path / "ck",
                    "a1.channels.c1.dataDirs": tmp_path / "data", "a1.channels.c1.minimumRequiredSpace": 0})
    p = agent("a1", write_config(tmp_path, cfg))
    wait_for_port(port, timeout=20, alive=p.alive)
    f = flume("f1", write_config(tmp_path, flume_to_us_config(src, port, flume_out, **sink), "flume.properties"))
    poll(lambda: parquet_done(out) or not p.alive() or not f.alive(), 90,
         message="our parquet file of %d events" % len(bodies))
    assert p.alive() and f.alive(), flume_log(tmp_path)[-3000:] + p.stderr
    f.stop(timeout=30)
    assert p.stop(timeout=30) == 0, p.stderr
    ours, theirs = our_records(out), flume_records(flume_out)
    assert len(ours) == len(bodies) and Counter(ours) == Counter(theirs)
    assert sorted(b for b, _ in ours) == sorted(bodies)
    names = {k for _, h in ours for k, _ in h}
    assert names == {"tier", "host", "timestamp"} and all(dict(h)["tier"] == "edge-1" for _, h in ours)
    return p


@pytest.mark.slow
@pytest.mark.parametrize("compression", ["none", "deflate"])
def test_flume_avro_sink_to_our_source_bodies_and_headers_identical(tmp_path, agent, flume, compression):
    """With deflate, into a file channel on our side."""
    p = run_flume_to_us(tmp_path, agent, flume, {"compression-type": compression},
                        {"compression-type": compression}, file_channel=compression == "deflate")
    assert "closing the connection" not in p.stderr


@pytest.mark.slow
@pytest.mark.parametrize("compression", ["none", "deflate"])
def test_flume_avro_sink_over_tls(tmp_path, agent, flume, compression):
    """TLS alone, and TLS inside the deflate stream as Flume stacks them; the keystore a true
    JKS file, then keytool's default kind (PKCS12 on Java 9+), both under Flume's default
    keystore-type JKS."""
    ks = keystore(tmp_path, storetype="JKS" if compression == "none" else None, password="secret12")
    source = {"ssl": "true", "keystore": ks, "keystore-password": "secret12", "compression-type": compression}
    run_flume_to_us(tmp_path, agent, flume, {"ssl": "true", "trust-all-certs": "true", "compression-type": compression},
                    source)


@pytest.mark.slow
def test_flume_avro_client_against_our_source(tmp_path, agent, flume):
    lines = [b"line %d" % i for i in range(3000)] + [b"", b"last"]
    src, out = tmp_path / "in.txt", tmp_path / "out"
    src.write_bytes(b"".join(x + b"\n" for x in lines))
    port = free_port()
    p = agent("a1", write_config(tmp_path, our_agent_config(port, file_roll(out))))
    wait_for_port(port, timeout=20, alive=p.alive)
    c = flume(None, main="org.apache.flume.client.avro.AvroCLIClient", args=("-H", "127.0.0.1", "-p", str(port), "-F", str(src)))
    assert c.wait(timeout=60) == 0, flume_log(tmp_path)[-3000:]
    poll(lambda: count_lines(out) >= len(lines) or not p.alive(), 20, message="the client's lines")
    assert p.stop(timeout=20) == 0, p.stderr
    assert read_dir_lines(out) == lines


# -- a client written here: frames and handshake by hand, the events by fastavro --

def zigzag(v: int) -> bytes:
    z, out = (v << 1) ^ (v >> 63), bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    return bytes(out + bytes([z]))


def frame(serial: int, message: bytes, cut: int = 8192) -> bytes:
    parts = [message[i:i + cut] for i in range(0, len(message), cut)] or [b""]
    return struct.pack(">ii", serial, len(parts)) + b"".join(struct.pack(">i", len(x)) + x for x in parts)


def append_batch(events: list[tuple[dict, bytes]], handshake: bool = True) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, EVENTS, [{"headers": h, "body": b} for h, b in events])
    hs = FLUME_MD5 + b"\x00" + FLUME_MD5 + b"\x00" if handshake else b""
    return hs + b"\x00" + zigzag(len(b"appendBatch")) + b"appendBatch" + out.getvalue()


def read_long(buf: bytes, pos: int) -> tuple[int, int]:
    acc = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        acc |= (b & 0x7F) << shift
        if not b & 0x80:
            return (acc >> 1) ^ -(acc & 1), pos
        shift += 7


def read_reply(sock, handshake: bool = True) -> str:
    def exact(n):
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            assert chunk, "the source closed the connection"
            buf += chunk
        return buf
    _, count = struct.unpack(">ii", exact(8))
    msg = b"".join(exact(struct.unpack(">i", exact(4))[0]) for _ in range(count))
    pos = 0
    if handshake:
        match, pos = read_long(msg, pos)
        assert match in (0, 1), "handshake match %d" % match      # BOTH or CLIENT
        if msg[pos] == 2:                                          # serverProtocol
            n, pos = read_long(msg, pos + 1)
            pos += n
        else:
            pos += 1
        pos += 17 if msg[pos] == 2 else 1                          # serverHash
        pos += 1                                                   # meta: null
    assert msg[pos] == 0 and msg[pos + 1] == 0, msg   # no metadata, not an error
    return ["OK", "FAILED", "UNKNOWN"][msg[pos + 2] >> 1]


def test_failed_batch_is_not_half_committed_and_the_connection_goes_on(tmp_path, agent):
    """A batch larger than the channel's transactionCapacity is refused whole (FAILED); the
    next, on the same connection, is stored."""
    port, out = free_port(), tmp_path / "out"
    cfg = our_agent_config(port, file_roll(out))
    cfg["a1.channels.c1.transactionCapacity"] = 100
    p = agent("a1", write_config(tmp_path, cfg))
    wait_for_port(port, timeout=20, alive=p.alive)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(frame(1, append_batch([({"h": "1"}, b"big %d" % i) for i in range(150)])))
        assert read_reply(s) == "FAILED"
        s.sendall(frame(2, append_batch([({"h": "2"}, b"small %d" % i) for i in range(50)], handshake=False)))
        assert read_reply(s, handshake=False) == "OK"
    poll(lambda: count_lines(out) >= 50 or not p.alive(), 20, message="the second batch")
    assert p.stop(timeout=20) == 0, p.stderr
    assert read_dir_lines(out) == [b"small %d" % i for i in range(50)]


class Conn:
    """A client connection as Flume's client stacks it: TCP, maybe zlib, maybe TLS inside."""

    def __init__(self, port: int, mode: str = "plain"):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.deflate = zlib.compressobj() if mode == "deflate" else None
        self.inflate = zlib.decompressobj() if mode == "deflate" else None
        self.pending = b""
        if mode == "tls":
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
            self.sock = ctx.wrap_socket(self.sock)

    def sendall(self, data: bytes) -> None:
        if self.deflate is not None:
            data = self.deflate.compress(data) + self.deflate.flush(zlib.Z_SYNC_FLUSH)
        self.sock.sendall(data)

    def recv(self, n: int) -> bytes:
        if self.inflate is None:
            return self.sock.recv(n)
        while not self.pending:
            raw = self.sock.recv(1 << 16)
            if not raw:
                return b""
            self.pending = self.inflate.decompress(raw)
        out, self.pending = self.pending[:n], self.pending[n:]
        return out

    def closed_by_the_source(self) -> bool:
        """Half-closed by us, then closed by the source with no answer (over TLS the socket
        is plain once shut down: what comes is TLS records, session tickets, to skip)."""
        tls = isinstance(self.sock, ssl.SSLSocket)
        self.sock.shutdown(socket.SHUT_WR)
        try:
            while True:
                data = self.sock.recv(1 << 16)
                if not data:
                    return True
                if not tls:
                    return False
        except ConnectionResetError:
            return True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.sock.close()


@pytest.mark.parametrize("mode", ["plain", "deflate", "tls"])
def test_garbage_and_truncated_frames_close_only_their_connection(tmp_path, agent, mode):
    port, mport, out = free_port(), free_port(), tmp_path / "out"
    source = {"plain": {}, "deflate": {"compression-type": "deflate"},
              "tls": {"ssl": "true", "keystore": keystore(tmp_path, password="secret12"), "keystore-password": "secret12"}}[mode]
    source["maxRequestSize"] = 100000
    p = agent("a1", write_config(tmp_path, our_agent_config(port, file_roll(out), **source)), "--metrics-port", mport)
    wait_for_port(port, timeout=20, alive=p.alive)
    good = frame(1, append_batch([({}, b"good %d" % i) for i in range(10)]))
    # raw garbage on the socket: a frame of 0x2f204854 buffers, or not zlib, or not TLS
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        s.shutdown(socket.SHUT_WR)
        assert s.recv(100) == b""                              # closed by the source, nothing answered
    bad = [good[:len(good) // 2],                              # a frame cut short, then the end
           struct.pack(">ii", 1, 1) + struct.pack(">i", 40) + b"\x07" * 40,   # a whole frame, not a handshake
           frame(1, append_batch([({}, b"x")])[:-3]),          # a handshake then a truncated array
           frame(1, append_batch([({}, b"y" * 60000)] * 2), cut=1 << 20)[:70000]]  # over maxRequestSize: refused unread
    for data in bad:
        with Conn(port, mode) as c:
            try:
                c.sendall(data)
            except (ssl.SSLError, ConnectionError):
                continue        # closed by the source before we wrote it all (the oversized one, refused unread)
            assert c.closed_by_the_source()
    with Conn(port, mode) as c:
        c.sendall(good)
        assert read_reply(c) == "OK"
    poll(lambda: count_lines(out) >= 10 or not p.alive(), 20, message="the good client's events")
    metrics = get_json("http://127.0.0.1:%d/metrics" % mport)["SOURCE.r1"]
    assert metrics["EventReadFail"] == str(1 + len(bad)) and metrics["EventAcceptedCount"] == "10"
    assert p.stop(timeout=20) == 0, p.stderr
    assert p.stderr.count("avro source r1: closing the connection from 127.0.0.1") == 1 + len(bad), p.stderr
    assert "a request of more than 100000 bytes (maxRequestSize)" in p.stderr
    assert read_dir_lines(out) == [b"good %d" % i for i in range(10)]


@pytest.mark.parametrize("rules,served", [("allow:ip:127.*,deny:ip:*", True), ("deny:name:localhost", False),
                                          ("allow:ip:10.?.0.1,deny:ip:127.0.0.*", False)])
def test_ip_filter(tmp_path, agent, rules, served):
    port, out = free_port(), tmp_path / "out"
    p = agent("a1", write_config(tmp_path, our_agent_config(port, file_roll(out), ipFilter="true", ipFilterRules=rules)))
    wait_for_port(port, timeout=20, alive=p.alive)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        try:
            s.sendall(frame(1, append_batch([({}, b"ok")])))
            answer = read_reply(s)
        except (AssertionError, ConnectionResetError, BrokenPipeError):
            answer = None
    assert answer == ("OK" if served else None)
    if served:
        poll(lambda: count_lines(out) >= 1, 20, message="the event")
    assert p.stop(timeout=20) == 0, p.stderr
    assert (out.exists() and read_dir_lines(out)) == ([b"ok"] if served else (out.exists() and []))
    assert ("refused by ipFilterRules" in p.stderr) != served


@pytest.mark.parametrize("props,key,message", [
    ({"ipFilter": "true"}, "ipFilterRules", "ipFilter = true needs ipFilterRules"),
    ({"ipFilter": "true", "ipFilterRules": "allow:host:x"}, "ipFilterRules", "expected <allow|deny>:<ip|name>:<pattern>"),
    ({"ssl": "true"}, "keystore", "ssl = true needs a keystore"),
    ({"ssl": "true", "keystore": "/nonexistent.p12", "keystore-password": "x"}, "keystore", "No such file"),
    ({"ssl": "true", "keystore": "JKS", "keystore-password": "wrong"}, "keystore", "wrong keystore password"),
    ({"ssl": "true", "keystore": "PKCS12", "keystore-password": "wrong"}, "keystore", "cannot load the TLS key"),
    ({"ssl": "true", "keystore": "JKS", "keystore-password": "secret12", "exclude-protocols": "TLSv1.2 TLSv1.3"},
     "exclude-protocols", "leave no TLS version"),
    ({"compression-type": "snappy"}, "compression-type", "must be one of none, deflate"),
])
def test_config_errors_name_the_key(tmp_path, run_agent, props, key, message):
    if props.get("keystore") in ("JKS", "PKCS12"):
        props = dict(props, keystore=keystore(tmp_path, storetype=props["keystore"], password="secret12"))
    cfg = write_config(tmp_path, our_agent_config(free_port(), file_roll(tmp_path / "o"), **props))
    r = run_agent("a1", cfg, "--validate", timeout=30)
    assert r.returncode == 2 and "a1.sources.r1.%s" % key in r.stderr and message in r.stderr, r.stderr


def test_unknown_client_protocol_then_append(tmp_path, agent):
    """A client hash the source does not know is answered NONE with our protocol; the client
    repeats the call with its protocol text and is served (CLIENT). Then Flume's single-event
    `append` on the same connection."""
    from fastsync.rpc.avro_wire import PROTOCOL_TEXT
    port, mport, out = free_port(), free_port(), tmp_path / "out"
    p = agent("a1", write_config(tmp_path, our_agent_config(port, file_roll(out))), "--metrics-port", mport)
    wait_for_port(port, timeout=20, alive=p.alive)
    call = append_batch([({"k": "v"}, b"first")])[34:]          # the call without its handshake
    other = b"\x11" * 16
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(frame(1, other + b"\x00" + other + b"\x00" + call))
        _, count = struct.unpack(">ii", s.recv(8))
        msg = s.recv(1 << 16)
        assert msg[4] == 4 and PROTOCOL_TEXT.encode() in msg        # NONE (zigzag 2), our protocol
        text = PROTOCOL_TEXT.replace('"namespace"', '"doc":"a client of its own","namespace"').encode()
        s.sendall(frame(2, other + b"\x02" + zigzag(len(text)) + text + other + b"\x00" + call))
        assert read_reply(s) == "OK"
        one = io.BytesIO()
        fastavro.schemaless_writer(one, fastavro.parse_schema(FLUME_EVENT_SCHEMA), {"headers": {}, "body": b"second"})
        s.sendall(frame(3, b"\x00" + zigzag(6) + b"append" + one.getvalue()))
        assert read_reply(s, handshake=False) == "OK"
    poll(lambda: count_lines(out) >= 2 or not p.alive(), 20, message="both events")
    counters = get_json("http://127.0.0.1:%d/metrics" % mport)["SOURCE.r1"]
    assert {k: counters[k] for k in ("AppendBatchReceivedCount", "AppendBatchAcceptedCount", "AppendReceivedCount",
                                     "AppendAcceptedCount", "EventReceivedCount", "EventAcceptedCount")} == {
        "AppendBatchReceivedCount": "1", "AppendBatchAcceptedCount": "1", "AppendReceivedCount": "1",
        "AppendAcceptedCount": "1", "EventReceivedCount": "2", "EventAcceptedCount": "2"}
    assert p.stop(timeout=20) == 0, p.stderr
    assert read_dir_lines(out) == [b"first", b"second"]


def test_concurrent_clients_each_batch_whole(tmp_path, agent):
    """Four connections at once, each on its own thread in the source: every batch stored
    once, each batch's events together and in order in one transaction."""
    import threading
    port, out = free_port(), tmp_path / "out"
    p = agent("a1", write_config(tmp_path, our_agent_config(port, file_roll(out))))
    wait_for_port(port, timeout=20, alive=p.alive)
    answers = []

    def client(k: int) -> None:
        with Conn(port) as c:
            for b in range(25):
                c.sendall(frame(b, append_batch([({"c": str(k)}, b"%d-%d-%d" % (k, b, i)) for i in range(100)], b == 0)))
                answers.append(read_reply(c, b == 0))
    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert answers == ["OK"] * 100
    poll(lambda: count_lines(out) >= 10000 or not p.alive(), 30, message="10000 events")
    assert p.stop(timeout=20) == 0, p.stderr
    lines = read_dir_lines(out)
    assert sorted(lines) == sorted(b"%d-%d-%d" % (k, b, i) for k in range(4) for b in range(25) for i in range(100))
    starts = [n for n, line in enumerate(lines) if line.endswith(b"-0")]
    assert all(lines[n:n + 100] == [lines[n][:-1] + b"%d" % i for i in range(100)] for n in starts)


def test_flume_clients_first_request_is_known_by_hash(tmp_path, flume):
    """What Flume's client sends first, caught by a bare socket: its handshake carries the
    protocol hash the source knows (so Flume is served from its first request, without
    sending its protocol text), then an appendBatch that decode_flume_array reads."""
    from fastsync._native import decode_flume_array
    from fastsync.rpc.avro_wire import FLUME_SDK_MD5, FrameReader, decode_call, decode_handshake_request
    src = tmp_path / "in.txt"
    src.write_bytes(b"one\ntwo\n")
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(60)
        c = flume(None, main="org.apache.flume.client.avro.AvroCLIClient",
                  args=("-H", "127.0.0.1", "-p", str(server.getsockname()[1]), "-F", str(src)))
        conn, _ = server.accept()
        with conn:
            conn.settimeout(30)
            _, message = FrameReader().next_frame(lambda: conn.recv(1 << 16))
    c.kill()
    client_hash, text, server_hash, _, pos = decode_handshake_request(message)
    assert client_hash == FLUME_SDK_MD5 and text is None and server_hash == FLUME_SDK_MD5
    name, pos = decode_call(message, pos)
    assert name == "appendBatch"
    data, offsets, names, columns, end = decode_flume_array(message, pos)
    assert bytes(data) == b"onetwo" and end == len(message)
