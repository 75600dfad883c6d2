"""--metrics-port: Flume's JSON at /metrics and Prometheus' text format at
/metrics/prometheus, read by the official Prometheus client's parser, agree value by value."""
from __future__ import annotations

import re

from prometheus_client.parser import text_string_to_metric_families

from e2e_support import LineClient, free_port, get_json, http_get, wait_for_json, wait_for_port, write_config


def test_prometheus_text_matches_the_json(tmp_path, agent):
    port, mport = free_port(), free_port()
    cfg = {"a1.sources": "r1", "a1.channels": "c1", "a1.sinks": "k1",
           "a1.sources.r1.type": "netcat", "a1.sources.r1.bind": "127.0.0.1", "a1.sources.r1.port": port,
           "a1.sources.r1.channels": "c1", "a1.channels.c1.type": "memory",
           "a1.sinks.k1.type": "null", "a1.sinks.k1.channel": "c1"}
    p = agent("a1", write_config(tmp_path, cfg), "--metrics-port", mport)
    wait_for_port(port, timeout=15, alive=p.alive)
    with LineClient(port) as c:
        c.send(b"".join(b"line %d\n" % i for i in range(50)))
        assert c.read_lines(50) == [b"OK"] * 50
    base = "http://127.0.0.1:%d" % mport
    wait_for_json(base + "/metrics", timeout=10, alive=p.alive)
    import time
    time.sleep(1.0)            # the sink drains; nothing moves afterwards
    status, headers, body = http_get(base + "/metrics/prometheus")
    flume = get_json(base + "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            samples[(s.name, s.labels["component"])] = s.value
            assert family.type in ("counter", "gauge")
    assert samples[("fastsync_source_event_accepted_total", "r1")] == 50
    assert samples[("fastsync_channel_event_put_success_total", "c1")] == 50
    assert samples[("fastsync_sink_event_drain_success_total", "k1")] == 50
    assert samples[("fastsync_channel_channel_size", "c1")] == 0
    # every JSON value is there, under its Prometheus name
    for component, values in flume.items():
        kind, _, name = component.partition(".")
        for key, value in values.items():
            if key == "Type":
                continue
            snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", re.sub(r"Count$", "", key) if key not in (
                "ChannelSize", "ChannelCapacity", "ChannelFillPercentage") else key).lower()
            candidates = [(n, name) for n in ("fastsync_%s_%s_total" % (kind.lower(), snake),
                                              "fastsync_%s_%s" % (kind.lower(), snake),
                                              "fastsync_%s_%s_ms" % (kind.lower(), snake))]
            got = [samples[c] for c in candidates if c in samples]
            assert got == [float(value)], (component, key, value, got)
    assert http_get(base + "/nothing")[0] == 404
    assert p.stop(timeout=20) == 0


def test_metrics_answers_raw_requests(tmp_path, agent):
    """What the metrics port answers, byte for byte on a socket: GET with a query string or
    a trailing slash, 404 elsewhere, 501 for another method, 400 for a bad request line."""
    import json
    import socket
    mport = free_port()
    cfg = {"a1.sources": "r1", "a1.channels": "c1", "a1.sinks": "k1",
           "a1.sources.r1.type": "seq", "a1.sources.r1.totalEvents": 10, "a1.sources.r1.channels": "c1",
           "a1.channels.c1.type": "memory", "a1.sinks.k1.type": "null", "a1.sinks.k1.channel": "c1"}
    p = agent("a1", write_config(tmp_path, cfg), "--metrics-port", mport)
    wait_for_json("http://127.0.0.1:%d/metrics" % mport, timeout=15, alive=p.alive)

    def ask(request: bytes) -> tuple[int, dict, bytes]:
        with socket.create_connection(("127.0.0.1", mport), timeout=10) as s:
            s.sendall(request)
            answer = b""
            while chunk := s.recv(65536):       # the server closes after answering
                answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        status, *headers = head.decode().split("\r\n")
        return int(status.split()[1]), dict(h.split(": ", 1) for h in headers), body

    status, headers, body = ask(b"GET /metrics/?x=1 HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert int(headers["Content-Length"]) == len(body)
    assert json.loads(body)["SOURCE.r1"]["Type"] == "SOURCE"
    status, headers, body = ask(b"GET /prometheus HTTP/1.0\r\n\r\n")
    assert status == 200 and b"fastsync_channel_event_put_success_total" in body
    assert ask(b"GET /other HTTP/1.0\r\n\r\n")[0] == 404
    assert ask(b"POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n")[0] == 501
    assert ask(b"nonsense\r\n\r\n")[0] == 400
    assert p.stop(timeout=20) == 0
