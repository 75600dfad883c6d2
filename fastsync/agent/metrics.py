"""Flume's counters, per component, updated per batch, and the HTTP server for them.

The JSON at /metrics has Flume's shape: {"SOURCE.r1": {"EventReceivedCount": "10", ...},
"CHANNEL.c1": {...}, "SINK.k1": {...}}, every value a string, as Flume's HTTP monitoring.
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


GAUGES = {"ChannelSize", "ChannelCapacity", "ChannelFillPercentage", "StartTime", "StopTime"}


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def prometheus_text(metrics: dict) -> str:
    """Flume's metrics ({"CHANNEL.c1": {"EventPutAttemptCount": "12", ...}}) in Prometheus'
    text format: fastsync_<kind>_<name>_total counters and gauges, labelled by component."""
    samples: dict[str, list] = {}
    for component, values in sorted(metrics.items()):
        kind, _, name = component.partition(".")
        for key, value in sorted(values.items()):
            if key == "Type":
                continue
            if key in GAUGES:
                metric, mtype = "fastsync_%s_%s" % (kind.lower(), _snake(key)), "gauge"
                if key in ("StartTime", "StopTime"):
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
    GET /metrics/prometheus (Prometheus' text format)."""

    def __init__(self, port: int, collect: Callable[[], dict], host: str = "127.0.0.1"):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer   # only with a metrics port
        collect_ = collect

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                path = self.path.split("?")[0].lower().rstrip("/")
                if path == "/metrics":
                    body, ctype = json.dumps(collect_(), sort_keys=True).encode(), "application/json;charset=utf-8"
                elif path in ("/metrics/prometheus", "/prometheus"):
                    body, ctype = prometheus_text(collect_()).encode(), "text/plain; version=0.0.4; charset=utf-8"
                else:
                    self.send_error(404, "served: /metrics (Flume's JSON), /metrics/prometheus")
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt, *args):
                log.debug("metrics: " + fmt, *args)

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="metrics-http", daemon=True)

    def start(self) -> None:
        self._thread.start()
        log.info("metrics served at http://127.0.0.1:%d/metrics", self.port)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
