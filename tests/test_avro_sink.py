"""The avro sink against the real Apache Flume 1.11: our seq -> memory -> avro sink ->
Flume's avro source -> Flume's file_roll (Avro event files: bodies and headers come back
exactly). Plain, deflate, TLS; a collector down at the start, stopped (SIGSTOP) mid-call,
and failover / load_balance groups over two collectors, one killed with kill -9."""
from __future__ import annotations

import collections
import signal
import subprocess
import time

import pytest

from avro_hop_support import bodies, collector_config, flume_events, start_collector, wait_for_bodies
from fastsync.client import RpcClient
from e2e_support import AGENT_CMD, LineClient, free_port, get_json, line_of, poll, wait_for_port, write_config
from tls_support import keystore, truststore


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    """keytool-made stores, once for the module: the collector's keystore (PKCS12), another
    key pair's, and truststores of the collector's certificate (JKS and PKCS12) and of the other."""
    d = tmp_path_factory.mktemp("tls")
    ks, other = keystore(d), keystore(d, "other")
    return {"keystore": ks, "jks": truststore(d, ks, storetype="JKS"), "pkcs12": truststore(d, ks, storetype="PKCS12"),
            "other": truststore(d, other, alias="other")}


def tls_source(tls) -> dict:
    return {"ssl": "true", "keystore": tls["keystore"], "keystore-password": "secret1", "keystore-type": "PKCS12"}


def edge(port: int, n: int, batch: int = 100, **sink) -> dict:
    """seq (n events) -> memory -> avro sink to 127.0.0.1:port; a shared and a per-event header."""
    cfg = {
        "a1.sources": "r1", "a1.channels": "c1", "a1.sinks": "k1",
        "a1.sources.r1.type": "seq", "a1.sources.r1.totalEvents": n, "a1.sources.r1.batchSize": batch,
        "a1.sources.r1.channels": "c1",
        "a1.sources.r1.interceptors": "st uu",
        "a1.sources.r1.interceptors.st.type": "static", "a1.sources.r1.interceptors.st.key": "tier",
        "a1.sources.r1.interceptors.st.value": "edge-\u00e9",
        "a1.sources.r1.interceptors.uu.type": "org.apache.flume.sink.solr.morphline.UUIDInterceptor$Builder",
        "a1.channels.c1.type": "memory", "a1.channels.c1.capacity": 100000, "a1.channels.c1.transactionCapacity": batch,
        "a1.sinks.k1.type": "avro", "a1.sinks.k1.channel": "c1", "a1.sinks.k1.hostname": "127.0.0.1",
        "a1.sinks.k1.port": port, "a1.sinks.k1.batch-size": batch,
    }
    cfg.update({"a1.sinks.k1." + k: v for k, v in sink.items()})
    return cfg


def expected(n: int) -> list[bytes]:
    return [b"%d" % i for i in range(n)]


def check_events(out, n: int) -> None:
    """Exactly the n seq events, once each, with both headers."""
    events = flume_events(out)
    got = sorted(b for _, b in events)
    assert len(got) == n and got == sorted(expected(n))
    assert all(h["tier"] == "edge-\u00e9" for h, _ in events)
    ids = [h["id"] for h, _ in events]
    assert len(set(ids)) == n and all(len(i) == 36 for i in ids)


def test_seq_memory_avro_sink_to_flume_bodies_headers_counts(tmp_path, flume, run_agent):
    proc, port, out = start_collector(flume, tmp_path)
    n = 5000
    p = run_agent("a1", write_config(tmp_path, edge(port, n)), "--exit-when-done", timeout=60)
    assert p.returncode == 0, p.stderr
    wait_for_bodies(out, n)
    proc.kill()     # what it wrote is on disk (read above); its graceful stop costs seconds
    check_events(out, n)


def test_deflate_to_flume(tmp_path, flume, run_agent):
    proc, port, out = start_collector(flume, tmp_path, **{"compression-type": "deflate"})
    n = 3000
    p = run_agent("a1", write_config(tmp_path, edge(port, n, **{"compression-type": "deflate", "compression-level": 9})),
                  "--exit-when-done", timeout=60)
    assert p.returncode == 0, p.stderr
    wait_for_bodies(out, n)
    proc.kill()     # what it wrote is on disk (read above); its graceful stop costs seconds
    check_events(out, n)


def test_ssl_to_flume_with_jks_pkcs12_truststores_trust_all_and_an_untrusted_certificate(tmp_path, flume, agent, run_agent,
                                                                                        tls):
    """One TLS collector: a sink whose truststore lacks its certificate delivers nothing (every
    batch rolled back); then three agents trusting it by a JKS truststore, a PKCS12 one and
    trust-all-certs deliver everything (each run tags its events)."""
    proc, port, out = start_collector(flume, tmp_path, **tls_source(tls))
    bad = agent("a1", write_config(tmp_path, edge(port, 100, ssl="true", truststore=tls["other"],
                                                  **{"truststore-password": "trust12"}), "untrusted.properties"))
    bad.wait_for_stderr("certificate verify failed", timeout=30)
    assert bad.alive and bodies(out) == []
    bad.kill()
    n = 1000
    runs = {"jks": {"truststore": tls["jks"], "truststore-password": "trust12"},
            "pkcs12": {"truststore": tls["pkcs12"], "truststore-password": "trust12", "truststore-type": "PKCS12"},
            "all": {"trust-all-certs": "true"}}
    for name, sink in runs.items():
        cfg = edge(port, n, ssl="true", **sink)
        cfg["a1.sources.r1.interceptors.st.value"] = name
        p = run_agent("a1", write_config(tmp_path, cfg, name + ".properties"), "--exit-when-done", timeout=60)
        assert p.returncode == 0, p.stderr
    wait_for_bodies(out, len(runs) * n)
    proc.kill()     # what it wrote is on disk (read above); its graceful stop costs seconds
    events = flume_events(out)
    assert len(events) == len(runs) * n
    for name in runs:
        assert sorted(b for h, b in events if h["tier"] == name) == sorted(expected(n)), name


@pytest.mark.parametrize("kind, message", [("jks", "wrong truststore password"), ("pkcs12", "cannot read the PKCS12")])
def test_wrong_truststore_password_is_a_config_error(tmp_path, tls, kind, message):
    cfg = edge(1, 10, ssl="true", truststore=tls[kind], **{"truststore-password": "wrong-one"})
    conf = write_config(tmp_path, cfg)
    p = subprocess.run(AGENT_CMD + ["-n", "a1", "-f", str(conf), "--validate"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "a1.sinks.k1.truststore: " in p.stderr and message in p.stderr and "wrong-one" not in p.stderr, p.stderr


def test_ssl_and_deflate_to_flume(tmp_path, flume, run_agent, tls):
    proc, port, out = start_collector(flume, tmp_path, **tls_source(tls), **{"compression-type": "deflate"})
    n = 2000
    cfg = edge(port, n, ssl="true", **{"trust-all-certs": "true", "compression-type": "deflate"})
    p = run_agent("a1", write_config(tmp_path, cfg), "--exit-when-done", timeout=60)
    assert p.returncode == 0, p.stderr
    wait_for_bodies(out, n)
    # include-protocols: TLS 1.2 only, which Flume's JVM offers too; then TLS 1.3 only, through the client
    for only in ("TLSv1.2", "TLSv1.3"):
        client = {"hosts": "h1", "hosts.h1": "127.0.0.1:%d" % port, "ssl": "true", "trust-all-certs": "true",
                  "compression-type": "deflate", "include-protocols": only}
        with RpcClient.from_properties(client) as c:
            c.append(only.encode())
    wait_for_bodies(out, n + 2)
    proc.kill()     # what it wrote is on disk (read above); its graceful stop costs seconds
    got = bodies(out)
    assert len(got) == n + 2 and sorted(got) == sorted(expected(n) + [b"TLSv1.2", b"TLSv1.3"])


def test_collector_down_at_start_then_up(tmp_path, flume, agent):
    port = free_port()
    n = 3000
    a = agent("a1", write_config(tmp_path, edge(port, n)), "--exit-when-done")
    a.wait_for_stderr(r"127\.0\.0\.1:%d: cannot connect" % port, timeout=30)
    proc, _, out = start_collector(flume, tmp_path, port=port)
    assert a.wait(90) == 0, a.stderr
    wait_for_bodies(out, n)
    proc.kill()     # what it wrote is on disk (read above); its graceful stop costs seconds
    check_events(out, n)


def test_request_timeout_rolls_back_then_delivers_after_sigcont(tmp_path, flume, agent):
    proc, port, out = start_collector(flume, tmp_path)
    proc.send_signal(signal.SIGSTOP)
    n = 1000
    a = agent("a1", write_config(tmp_path, edge(port, n, **{"request-timeout": 1000})), "--exit-when-done")
    try:
        a.wait_for_stderr(r"request timed out after 1000 ms", timeout=30)
        assert bodies(out) == []
    finally:
        proc.send_signal(signal.SIGCONT)
    assert a.wait(90) == 0, a.stderr
    wait_for_bodies(out, n)
    proc.kill()     # what it wrote is on disk (read above); its graceful stop costs seconds
    got = collections.Counter(bodies(out))
    # every event; a batch Flume read before it was stopped may come twice (sent again after
    # its timeout): duplicates only as whole batches of 100
    assert set(got) == set(expected(n))
    dups = sum(c - 1 for c in got.values())
    assert dups % 100 == 0, dups


def group_edge(ports: list[int], n: int, processor: dict) -> dict:
    cfg = edge(ports[0], n, batch=100)
    cfg["a1.sources.r1.batchSize"] = 100
    cfg["a1.sinks"] = "k1 k2"
    for k, v in list(cfg.items()):
        if k.startswith("a1.sinks.k1."):
            cfg["a1.sinks.k2." + k[len("a1.sinks.k1."):]] = v
    cfg["a1.sinks.k2.port"] = ports[1]
    cfg["a1.sinks.k1.request-timeout"] = cfg["a1.sinks.k2.request-timeout"] = 3000
    cfg.update({"a1.sinkgroups": "g1", "a1.sinkgroups.g1.sinks": "k1 k2"})
    cfg.update({"a1.sinkgroups.g1.processor." + k: v for k, v in processor.items()})
    return cfg


@pytest.mark.slow
@pytest.mark.parametrize("processor", [
    {"type": "failover", "priority.k1": 10, "priority.k2": 5, "maxpenalty": 2000},
    {"type": "load_balance", "backoff": "true", "selector": "round_robin", "selector.maxTimeOut": 2000},
], ids=["failover", "load_balance"])
def test_group_over_two_collectors_one_killed_and_restarted(tmp_path, flume, agent, processor):
    """TAILDIR -> memory -> a sink group of two avro sinks -> two durable Flume collectors.
    Half the lines are appended, collector 1 is killed with kill -9 once it received some, the
    other half is appended (so they can only go to collector 2 while 1 is down), then 1 is
    restarted (its file channel gives back what it had acknowledged): every line arrives;
    duplicates are bounded by what was in flight when it died (4 takes of 100) plus what
    Flume's own file_roll may write twice after its restart (a batch of 1000)."""
    c1, p1, out1 = start_collector(flume, tmp_path, "col1", durable=True)
    c2, p2, out2 = start_collector(flume, tmp_path, "col2", durable=True)
    n, log = 40000, tmp_path / "in.log"
    log.write_bytes(b"".join(b"%d\n" % i for i in range(n // 2)))
    cfg = group_edge([p1, p2], 0, processor)
    del cfg["a1.sources.r1.totalEvents"]
    cfg.update({"a1.sources.r1.type": "TAILDIR", "a1.sources.r1.filegroups": "f1",
                "a1.sources.r1.filegroups.f1": log, "a1.sources.r1.positionFile": tmp_path / "pos.json"})
    a = agent("a1", write_config(tmp_path, cfg))
    poll(lambda: len(bodies(out1)) >= 1000, 60, message="collector 1 receiving")
    c1.kill()
    with log.open("ab") as f:
        f.write(b"".join(b"%d\n" % i for i in range(n // 2, n)))
    poll(lambda: any(int(b) >= n // 2 for b in bodies(out2)), 60, message="collector 2 taking the new lines")
    c1b, _, _ = start_collector(flume, tmp_path, "col1", port=p1, out=out1, durable=True)
    got = collections.Counter(poll(lambda: (lambda b: b if len(set(b)) >= n else None)(bodies(out1) + bodies(out2)), 120,
                                   message="every line at the collectors"))
    a.stop()
    c1b.kill()
    c2.kill()
    assert set(got) == set(expected(n))
    dups = sum(c - 1 for c in got.values())
    assert dups <= 4 * 100 + 1000, dups


@pytest.mark.parametrize("key, value, fragment", [
    ("compression-type", "gzip", "must be one of none, deflate, got 'gzip'"),
    ("hostname", " ", "No hostname specified"),
    ("port", "70000", "must be at most 65535"),
    ("truststore-type", "PEM", "must be one of jks, jceks, pkcs12"),
    ("truststore", "/nonexistent/trust.jks", "cannot read truststore /nonexistent/trust.jks: No such file or directory"),
    ("include-protocols", "TLSv1.1", "leave no TLS version"),
    ("exclude-protocols", "SSLv3 TLSv1.2 TLSv1.3", "leave no TLS version"),
])
def test_bad_settings_are_one_line_errors_naming_file_line_key(tmp_path, key, value, fragment):
    cfg = edge(1, 10, ssl="true")
    cfg["a1.sinks.k1." + key] = value
    conf = write_config(tmp_path, cfg)
    p = subprocess.run(AGENT_CMD + ["-n", "a1", "-f", str(conf), "--validate"], capture_output=True, text=True, timeout=60)
    text = conf.read_text()
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert p.stderr.startswith("fastsync: error: %s:%d: a1.sinks.k1.%s: " % (conf, line_of(text, "a1.sinks.k1." + key), key)), p.stderr
    assert fragment in p.stderr, p.stderr


def test_reset_connection_interval_reconnects(tmp_path, flume, agent):
    """netcat -> memory -> avro sink with reset-connection-interval = 1: a batch sent more
    than 1 s after the connection was made goes over a new one; nothing is lost."""
    proc, port, out = start_collector(flume, tmp_path)
    nc, metrics = free_port(), free_port()
    cfg = edge(port, 0, **{"reset-connection-interval": 1})
    cfg.update({"a1.sources.r1.type": "netcat", "a1.sources.r1.bind": "127.0.0.1", "a1.sources.r1.port": nc})
    a = agent("a1", write_config(tmp_path, cfg), "--metrics-port", str(metrics))
    wait_for_port(nc, alive=lambda: a.alive)
    with LineClient(nc) as c:
        c.send(b"first\n")
        assert c.read_lines(1) == [b"OK"]
        wait_for_bodies(out, 1)
        time.sleep(1.2)
        c.send(b"second\n")
        assert c.read_lines(1) == [b"OK"]
        wait_for_bodies(out, 2)
    counters = get_json("http://127.0.0.1:%d/metrics" % metrics)["SINK.k1"]
    # without the reset one connection serves both; with it the second event, sent more than 1 s
    # after the first connection was made, goes over a new one
    assert int(counters["ConnectionCreatedCount"]) >= 2 and int(counters["ConnectionClosedCount"]) >= 1, counters
    assert counters["EventWriteFail"] == "0"
    proc.kill()
    assert bodies(out) == [b"first", b"second"]


def test_status_failed_rolls_back_and_a_new_collector_gets_the_rest(tmp_path, flume, agent):
    """A collector whose channel is full (its file_roll can't write: its directory is a file)
    answers FAILED: the takes are rolled back and kept. Once a working collector is on that
    port, every event the first did not acknowledge arrives."""
    port = free_port()
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    cfg = collector_config("bad", port, tmp_path / "unused", tmp_path)
    text = cfg.read_text().replace("bad.sinks.k1.sink.directory = %s" % (tmp_path / "unused"),
                                   "bad.sinks.k1.sink.directory = %s" % blocked)
    text = text.replace("bad.channels.c1.capacity = 200000", "bad.channels.c1.capacity = 1000\nbad.channels.c1.keep-alive = 0")
    text = text.replace("bad.channels.c1.transactionCapacity = 10000", "bad.channels.c1.transactionCapacity = 100")
    cfg.write_text(text)
    bad = flume("bad", cfg)
    wait_for_port(port, timeout=60, alive=lambda: bad.alive)
    n = 3000
    a = agent("a1", write_config(tmp_path, edge(port, n, batchesInFlight=1)), "--exit-when-done")
    a.wait_for_stderr("the server answered Status FAILED", timeout=60)
    bad.kill()      # what its channel held (acknowledged) is lost with it: Flume's memory channel
    good, _, out = start_collector(flume, tmp_path, "good", port=port)
    assert a.wait(90) == 0, a.stderr
    got = set(wait_for_bodies(out, n - 1000))
    good.kill()
    # the first 1000 events filled the bad collector's channel and were acknowledged; none after
    assert set(expected(n)[1000:]) <= got, len(set(expected(n)[1000:]) - got)
