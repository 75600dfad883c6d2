"""Flume's counters, per component, updated per batch, and the HTTP server for them.

The JSON at /metrics has Flume's shape: {"SOURCE.r1": {"EventReceivedCount": "10", ...},
"CHANNEL.c1": {...}, "SINK.k1": {...}}, every value a string, as Flume's HTTP monitoring.
An agent in an HA group (--ha-group) adds "AGENT.<name>": its role, leader and role changes.
"""
from __future__ import annotations

import json
import re
import logging
import threading
import time
from typing import Callable

log = logging.getLogger("fastsync.metrics")

SOURCE_COUNTERS = (
    "EventReceivedCount", "EventAcceptedCount", "AppendReceivedCount", "AppendAcceptedCount",
    "AppendBatchReceivedCount", "AppendBatchAcceptedCount", "OpenConnectionCount",
    "EventReadFail", "ChannelWriteFail", "GenericProcessingFail",
    "EventAcceptedBytes",       # not Flume's: body bytes of the accepted events, for MB/s
)
CHANNEL_COUNTERS = (
    "EventPutAttemptCount", "EventPutSuccessCount", "EventTakeAttemptCount", "EventTakeSuccessCount",
)
SINK_COUNTERS = (
    "ConnectionCreatedCount", "ConnectionClosedCount", "ConnectionFailedCount", "BatchEmptyCount",
    "BatchUnderflowCount", "BatchCompleteCount", "EventDrainAttemptCount", "EventDrainSuccessCount",
    "ChannelReadFail", "EventWriteFail",
    "EventDrainSuccessBytes",   # not Flume's: body bytes of the delivered events, for MB/s
)


class Counters:
    """A component's counter group. add() is called once per batch, never per event."""

    def __init__(self, kind: str, names, gauges: Callable[[], dict] | None = None):
        self.kind = kind
        self._values = dict.fromkeys(names, 0)
        self._gauges = gauges
        self._lock = threading.Lock()
        self.start_time = 0
        self.stop_time = 0

    def add(self, **deltas: int) -> None:
        with self._lock:
            for name, delta in deltas.items():
                self._values[name] += delta

    def __getitem__(self, name: str) -> int:
        return self._values[name]

    def started(self) -> None:
        self.start_time = int(time.time() * 1000)
        self.stop_time = 0

    def stopped(self) -> None:
        self.stop_time = int(time.time() * 1000)

    def snapshot(self) -> dict[str, str]:
        with self._lock:
            out = {k: str(v) for k, v in self._values.items()}
        if self._gauges:
            out.update({k: str(v) for k, v in self._gauges().items()})
        out.update(Type=self.kind, StartTime=str(self.start_time), StopTime=str(self.stop_time))
        return out


GAUGES = {"ChannelSize", "ChannelCapacity", "ChannelFillPercentage", "StartTime", "StopTime",
          "Open",                         # the file channel's, "true"/"false": 1/0
          "IsLeader", "HaRoleSince",   # the AGENT entry of an HA member (fastsync.agent.ha)
          "ConfigVersion", "ZkConnected"}  # AGENT.<name> of an agent on a znode (fastsync.agent.zkconfig)
TEXT = {"Type", "HaGroup", "HaRole", "HaLeader", "HaId", "ConfigSource"}   # not numbers: left out of Prometheus' text


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def prometheus_text(metrics: dict) -> str:
    """Flume's metrics ({"CHANNEL.c1": {"EventPutAttemptCount": "12", ...}}) in Prometheus'
    text format: fastsync_<kind>_<name>_total counters and gauges, labelled by component."""
    samples: dict[str, list] = {}
    for component, values in sorted(metrics.items()):
        kind, _, name = component.partition(".")
        for key, value in sorted(values.items()):
            if key in TEXT:
                continue
            value = {"true": "1", "false": "0"}.get(value, value)
            if key in GAUGES:
                metric, mtype = "fastsync_%s_%s" % (kind.lower(), _snake(key)), "gauge"
                if key in ("StartTime", "StopTime", "HaRoleSince"):
                    metric += "_ms"
            else:
                metric, mtype = "fastsync_%s_%s_total" % (kind.lower(), _snake(re.sub(r"Count$", "", key))), "counter"
            samples.setdefault(metric, [mtype]).append('%s{component="%s"} %s' % (
                metric, name.replace("\\", "\\\\").replace('"', '\\"'), value))
    lines = []
    for metric, (mtype, *rows) in samples.items():
        lines.append("# TYPE %s %s" % (metric, mtype))
        lines.extend(rows)
    return "\n".join(lines) + "\n"


class MetricsServer:
    """Serves, on a port of 127.0.0.1 in a daemon thread, GET /metrics (Flume's JSON) and
    GET /metrics/prometheus (Prometheus' text format), one HTTP/1.0 request per connection.

    Built on socketserver, not http.server: http.server imports http.client, ssl and email,
    some 6 MB of the agent's resident memory for two fixed answers. A thread per request, as
    before; a client silent for TIMEOUT s is dropped."""
    TIMEOUT = 5.0
    LIMIT = 8192            # bytes of a request or header line; 100 header lines at most
    ROUTES = "served: /metrics (Flume's JSON), /metrics/prometheus\n"

    def __init__(self, port: int, collect: Callable[[], dict], host: str = "127.0.0.1"):
        import socketserver
        answer = self.answer

        class Handler(socketserver.StreamRequestHandler):
            timeout = self.TIMEOUT

            def handle(self):
                try:
                    request = self.rfile.readline(MetricsServer.LIMIT).split()
                    for _ in range(100):         # the headers: nothing in them changes the answer
                        if self.rfile.readline(MetricsServer.LIMIT).strip() == b"":
                            break
                    status, ctype, body = answer(request, collect)
                    self.wfile.write(b"HTTP/1.0 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
                                     b"Connection: close\r\n\r\n%s" % (status, _REASONS[status], ctype, len(body), body))
                except OSError as exc:           # timed out, reset by the client
                    log.debug("metrics: %s: %s", self.client_address, exc)

        class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
            daemon_threads = True
            allow_reuse_address = True

            def handle_error(self, request, client_address):
                log.debug("metrics: %s: request failed", client_address, exc_info=True)

        self.server = Server((host, port), Handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="metrics-http", daemon=True)

    @classmethod
    def answer(cls, request: list[bytes], collect: Callable[[], dict]) -> tuple[int, bytes, bytes]:
        """(status, content type, body) for a request line split at spaces."""
        if len(request) != 3 or not request[2].startswith(b"HTTP/"):
            return 400, b"text/plain; charset=utf-8", b"bad request line\n"
        if request[0] != b"GET":
            return 501, b"text/plain; charset=utf-8", b"only GET is served\n"
        path = request[1].split(b"?")[0].lower().rstrip(b"/")
        if path == b"/metrics":
            return 200, b"application/json;charset=utf-8", json.dumps(collect(), sort_keys=True).encode()
        if path in (b"/metrics/prometheus", b"/prometheus"):
            return 200, b"text/plain; version=0.0.4; charset=utf-8", prometheus_text(collect()).encode()
        return 404, b"text/plain; charset=utf-8", cls.ROUTES.encode()

    def start(self) -> None:
        self._thread.start()
        log.info("metrics served at http://127.0.0.1:%d/metrics", self.port)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 501: b"Not Implemented"}
