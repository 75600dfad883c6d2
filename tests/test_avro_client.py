"""fastsync.client.RpcClient and `fastsync avro-client` against the real Flume 1.11's avro
source: binary, empty and 1 MB bodies with their headers come back byte for byte (Flume's
file_roll writes Avro event files), plain and deflate; failover and load balancing through
the public API; clear errors naming host:port."""
from __future__ import annotations

import collections
import os
import subprocess
import sys

import pytest

from avro_hop_support import flume_events, start_collector, wait_for_bodies
from e2e_support import free_port, wait_for_port, write_config
from fastsync.client import ClientConfigError, EventDeliveryError, RpcClient

ODD = [bytes(range(256)), b"", b"\n\r\n\x00", b"x" * (1 << 20), "caf\u00e9 \u2028".encode(), b"\xff\xfe" * 1000]


def props(*ports: int, **extra) -> dict:
    hs = ["h%d" % i for i in range(len(ports))]
    out = {"hosts": " ".join(hs), **{"hosts." + h: "127.0.0.1:%d" % p for h, p in zip(hs, ports)}}
    out.update(extra)
    return out


@pytest.mark.parametrize("compression", ["none", "deflate"])
def test_binary_empty_and_1mb_bodies_with_headers(tmp_path, flume, compression):
    proc, port, out = start_collector(flume, tmp_path, **{"compression-type": compression})
    heads = [{"n": str(i), "u": "\u00e9t\u00e9 \u65e5", "empty": ""} for i in range(len(ODD))]
    with RpcClient.from_properties(props(port, **{"compression-type": compression, "batch-size": 4})) as c:
        c.append_batch(ODD, heads)              # two calls: 4 + 2
        c.append(b"one more", {"k": "v"})
    wait_for_bodies(out, len(ODD) + 1)
    proc.kill()
    events = flume_events(out)
    assert [b for _, b in events] == ODD + [b"one more"]
    assert [h for h, _ in events] == heads + [{"k": "v"}]


def two_source_flume(flume, tmp_path):
    """One Flume agent with two avro sources (ports), each stamping `via`, into one file_roll."""
    p1, p2, out = free_port(), free_port(), tmp_path / "out"
    out.mkdir()
    cfg = {"f.sources": "r1 r2", "f.channels": "c1", "f.sinks": "k1",
           "f.channels.c1.type": "memory", "f.channels.c1.capacity": 100000, "f.channels.c1.transactionCapacity": 1000,
           "f.sinks.k1.type": "file_roll", "f.sinks.k1.channel": "c1", "f.sinks.k1.sink.directory": out,
           "f.sinks.k1.sink.serializer": "avro_event", "f.sinks.k1.sink.rollInterval": 0}
    for r, p in (("r1", p1), ("r2", p2)):
        cfg.update({"f.sources.%s.type" % r: "avro", "f.sources.%s.bind" % r: "127.0.0.1", "f.sources.%s.port" % r: p,
                    "f.sources.%s.channels" % r: "c1", "f.sources.%s.interceptors" % r: "v",
                    "f.sources.%s.interceptors.v.type" % r: "static", "f.sources.%s.interceptors.v.key" % r: "via",
                    "f.sources.%s.interceptors.v.value" % r: r})
    proc = flume("f", write_config(tmp_path, cfg, "flume.properties"))
    wait_for_port(p1, timeout=60, alive=lambda: proc.alive)
    wait_for_port(p2, timeout=60, alive=lambda: proc.alive)
    return proc, p1, p2, out


def test_failover_and_loadbalance_clients(tmp_path, flume):
    proc, p1, p2, out = two_source_flume(flume, tmp_path)
    dead = free_port()
    # failover: the dead host first; every batch goes to the next one
    with RpcClient.from_properties(props(dead, p2, **{"client.type": "default_failover", "batch-size": 10})) as c:
        c.append_batch([b"f%d" % i for i in range(50)])
    # load balancing: round robin over the two live sources and a dead one, skipped (backoff)
    lb = props(p1, dead, p2, **{"client.type": "default_loadbalance", "host-selector": "round_robin",
                                "backoff": "true", "maxBackoff": 60000, "batch-size": 10})
    with RpcClient.from_properties(lb) as c:
        for i in range(10):
            c.append_batch([b"l%d-%d" % (i, j) for j in range(10)])
    wait_for_bodies(out, 150)
    proc.kill()
    events = flume_events(out)
    via = collections.Counter((b[:1], h["via"]) for h, b in events)
    assert sorted(b for _, b in events) == sorted([b"f%d" % i for i in range(50)] +
                                                  [b"l%d-%d" % (i, j) for i in range(10) for j in range(10)])
    assert via[(b"f", "r2")] == 50
    assert via[(b"l", "r1")] >= 30 and via[(b"l", "r2")] >= 30      # both live hosts took batches


def test_errors_name_host_and_cause(tmp_path):
    dead = free_port()
    with RpcClient.from_properties(props(dead)) as c:
        with pytest.raises(EventDeliveryError, match=r"127\.0\.0\.1:%d: cannot connect: Connection refused" % dead):
            c.append(b"x")
    with pytest.raises(EventDeliveryError, match="no host took the batch"):
        RpcClient.from_properties(props(dead, free_port(), **{"client.type": "default_failover"})).append(b"x")
    with pytest.raises(ClientConfigError, match=r"hosts\.h1: 'nohostport' is not host:port"):
        RpcClient.from_properties({"hosts": "h1", "hosts.h1": "nohostport"})
    with pytest.raises(ClientConfigError, match="compression-type: 'gzip'"):
        RpcClient.from_properties(props(1, **{"compression-type": "gzip"}))
    with pytest.raises(ClientConfigError, match="exclude-protocols: exclude-protocols / include-protocols leave no TLS"):
        RpcClient.from_properties(props(1, ssl="true", **{"exclude-protocols": "TLSv1.2 TLSv1.3"}))
    with pytest.raises(ClientConfigError, match="exclude-protocols: unknown protocol TLSv9"):
        RpcClient.from_properties(props(1, ssl="true", **{"include-protocols": "TLSv9"}))
    with pytest.raises(ClientConfigError, match="truststore: cannot read truststore /nonexistent"):
        RpcClient.from_properties(props(1, ssl="true", truststore="/nonexistent"))


def run_cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "fastsync", "avro-client", *args], input=stdin, capture_output=True,
                       timeout=60, env=dict(os.environ))
    r.stderr = r.stderr.decode()
    return r


def test_avro_client_cli_file_stdin_and_headers(tmp_path, flume):
    proc, port, out = start_collector(flume, tmp_path)
    data = tmp_path / "lines.txt"
    data.write_bytes(b"".join(b"line %d\n" % i for i in range(250)) + b"crlf\r\n\nlast-no-newline")
    hdr = tmp_path / "headers.properties"
    hdr.write_text("host = web1\nkind=caf\\u00e9\n", encoding="utf-8")
    r = run_cli("-H", "127.0.0.1", "-p", str(port), "-F", str(data), "-R", str(hdr))
    assert r.returncode == 0, r.stderr
    rpc = write_config(tmp_path, props(port, **{"batch-size": 2}), "rpc.properties")
    r = run_cli("--rpcProps", str(rpc), stdin=b"a\nb\nc\n")
    assert r.returncode == 0, r.stderr
    wait_for_bodies(out, 256)
    proc.kill()
    events = flume_events(out)
    assert [b for _, b in events] == [b"line %d" % i for i in range(250)] + [b"crlf", b"", b"last-no-newline", b"a", b"b", b"c"]
    assert all(h == {"host": "web1", "kind": "caf\u00e9"} for h, _ in events[:253])
    assert all(h == {} for h, _ in events[253:])


def test_avro_client_cli_errors(tmp_path):
    dead = free_port()
    r = run_cli("-H", "127.0.0.1", "-p", str(dead), stdin=b"x\n")
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [
        "fastsync: error: 0 events sent, then: 127.0.0.1:%d: cannot connect: Connection refused" % dead]
    r = run_cli("-H", "127.0.0.1", stdin=b"x\n")
    assert r.returncode == 2 and "give --host and --port, or --rpcProps" in r.stderr
    r = run_cli("-H", "127.0.0.1", "-p", "1", "-F", str(tmp_path / "missing"))
    assert r.returncode == 2 and "--filename %s: No such file or directory" % (tmp_path / "missing") in r.stderr
