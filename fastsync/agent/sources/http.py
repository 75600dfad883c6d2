"""Flume's HTTP source with its JSON handler: a POST of
`[{"headers": {"k": "v"}, "body": "text"}, ...]` puts those events into the channels as one
batch, and is answered 200 only after the channel transactions committed.

400: the request is not a JSON array of such objects (nothing is stored); 413: larger than
`maxRequestSize` bytes, or more events than one channel transaction may hold; 503: a
channel refused the batch (full: the client should retry); 405 for other methods. Bodies
are the strings' UTF-8 bytes (the request's charset is decoded first). Listens on
127.0.0.1 unless `bind` says otherwise.
"""
from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from fastsync.agent.component import SOURCES, Place, setting
from fastsync.agent.errors import ChannelException
from fastsync.agent.source import Source, SourceConfig
from fastsync.event import EventBatch

log = logging.getLogger("fastsync.source.http")
JSON_HANDLER = ("org.apache.flume.source.http.JSONHandler", "json")


class BadRequest(Exception):
    pass


def parse_json_events(data: bytes, charset: str = "utf-8") -> EventBatch:
    """Flume's JSONHandler format -> one EventBatch; BadRequest naming what is wrong."""
    try:
        doc = json.loads(data.decode(charset))
    except (UnicodeDecodeError, LookupError, ValueError) as exc:
        raise BadRequest("not JSON: %s" % exc) from None
    if not isinstance(doc, list):
        raise BadRequest("expected a JSON array of events, got %s" % type(doc).__name__)
    bodies, headers = [], []
    for i, ev in enumerate(doc):
        if not isinstance(ev, dict) or not isinstance(ev.get("body", ""), str):
            raise BadRequest("event %d: expected {\"headers\": {...}, \"body\": \"...\"}" % i)
        h = ev.get("headers") or {}
        if not isinstance(h, dict) or not all(isinstance(v, str) for v in h.values()):
            raise BadRequest("event %d: headers must map names to strings" % i)
        bodies.append(ev.get("body", "").encode("utf-8"))
        headers.append(h)
    names = dict.fromkeys(k for h in headers for k in h)      # in the order they first appear
    return EventBatch.from_bodies(bodies, {k: [h.get(k) for h in headers] for k in names})


@dataclass
class HttpSourceConfig(SourceConfig):
    PASSTHROUGH = ("handler.",)
    port: int = setting("port", doc="TCP port to listen on", min=0, max=65535)
    bind: str = setting("bind", "127.0.0.1", "address to listen on")
    handler: str = setting("handler", JSON_HANDLER[0], "request format: Flume's JSONHandler")
    maxRequestSize: int = setting("maxRequestSize", 64 << 20, "largest request body accepted, bytes", min=1)

    def validate(self, place: Place) -> None:
        if self.handler.strip().lower() not in [h.lower() for h in JSON_HANDLER]:
            raise place.error("handler", "handler '%s' is not supported (supported: %s)" % (self.handler, JSON_HANDLER[0]))


@SOURCES.register("http", "org.apache.flume.source.http.HTTPSource")
class HttpSource(Source):
    Config = HttpSourceConfig

    def __init__(self, name, config):
        super().__init__(name, config)
        self.server: ThreadingHTTPServer | None = None
        self.port = config.port

    def start(self) -> None:
        super().start()
        source = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, code: int, message: str = "") -> None:
                body = (message + "\n").encode() if message else b""
                self.send_response(code)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                code, message = source.handle(self.headers, self.rfile)
                self._reply(code, message)

            def do_GET(self):
                self._reply(405, "POST a JSON array of events")

            do_PUT = do_DELETE = do_GET

            def log_message(self, fmt, *args):
                log.debug("http source: " + fmt, *args)

        c = self.config
        try:
            self.server = ThreadingHTTPServer((c.bind, c.port), Handler)
        except OSError as exc:
            raise OSError("http source %s: cannot listen on %s:%d: %s" % (self.name, c.bind, c.port, exc.strerror)) from None
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, name="http-%s" % self.name, daemon=True).start()
        log.info("http source %s listening on %s:%d", self.name, c.bind, self.port)

    def handle(self, headers, rfile) -> tuple[int, str]:
        try:
            length = int(headers.get("Content-Length", ""))
        except ValueError:
            return 411, "a Content-Length is required"
        if length > self.config.maxRequestSize:
            return 413, "request of %d bytes is larger than maxRequestSize (%d)" % (length, self.config.maxRequestSize)
        data = rfile.read(length)
        charset = headers.get_content_charset() or "utf-8"
        try:
            batch = parse_json_events(data, charset)
        except BadRequest as exc:
            self.counters.add(EventReadFail=1)
            return 400, str(exc)
        if len(batch) > self.processor.max_batch:
            return 413, "%d events are more than one channel transaction holds (%d)" % (len(batch), self.processor.max_batch)
        try:
            self.deliver(batch)
        except ChannelException as exc:
            log.warning("http source %s: the channel refused %d events: %s", self.name, len(batch), exc)
            return 503, "channel refused the events: %s" % exc
        return 200, ""

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        super().stop()
