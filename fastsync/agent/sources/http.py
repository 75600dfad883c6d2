"""Flume's HTTP source with its JSON handler: a POST of
`[{"headers": {"k": "v"}, "body": "text"}, ...]` puts those events into the channels as one
batch, and is answered 200 only after the channel transactions committed.

400: the request is not a JSON array of such objects (nothing is stored); 413: larger than
`maxRequestSize` bytes, or more events than one channel transaction may hold; 503: a
channel refused the batch (full: the client should retry); 405 for other methods. Listens
on 127.0.0.1 unless `bind` says otherwise.

As Flume's JSONHandler (Gson into Map<String, String> and String): a header value or body
that is a JSON number or true/false is taken as its JSON text, exactly as written (`1.50`
stays "1.50"); null is no header / an empty body; an object or array there is a 400, and so
is a header name given twice. The request's charset (UTF-8, UTF-16 or UTF-32; others are a
400) decodes the request and encodes the bodies, as Java does: UTF-16 bodies are big-endian
with a byte order mark, UTF-32 big-endian.
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


# charset -> (BOM-less decoding, as Java reads it; how Java's String.getBytes writes a body)
CHARSETS = {
    "utf-8": ("utf-8", lambda t: t.encode("utf-8", "replace")),
    "utf-16": ("utf-16-be", lambda t: b"\xfe\xff" + t.encode("utf-16-be", "replace") if t else b""),
    "utf-32": ("utf-32-be", lambda t: t.encode("utf-32-be", "replace")),
}
_BOMS = {"utf-16": (b"\xfe\xff", b"\xff\xfe"), "utf-32": (b"\x00\x00\xfe\xff", b"\xff\xfe\x00\x00")}


class _Object(dict):
    """A JSON object; `twice` is a name it had more than once (Gson refuses those in a map)."""
    twice = None


_JSON_TYPES = {type(None): "null", bool: "true/false", _Object: "an object"}


def _object(pairs: list) -> _Object:
    obj = _Object(pairs)
    if len(obj) < len(pairs):
        seen = set()
        obj.twice = next(k for k, _ in pairs if k in seen or seen.add(k))
    return obj


def _string(value, what: str) -> str | None:
    """A value Gson reads as a String: numbers (kept as text by the parse) and strings as they
    are, true/false as text, null as None; Arrow needs UTF-8, so lone surrogates become '?'."""
    if value is None or isinstance(value, str):
        return value if value is None or value.isascii() else value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, bool):
        return "true" if value else "false"
    raise BadRequest("%s: expected a string, number or true/false, got %s" % (what, _JSON_TYPES.get(type(value), "an array")))


def parse_json_events(data: bytes, charset: str = "utf-8") -> EventBatch:
    """Flume's JSONHandler format -> one EventBatch; BadRequest naming what is wrong (any
    bytes: nothing else is raised)."""
    cs = charset.strip().lower()
    if cs not in CHARSETS:
        raise BadRequest("charset %s is not supported: UTF-8, UTF-16 or UTF-32" % charset)
    decoding, encode = CHARSETS[cs]
    if data.startswith(_BOMS.get(cs, ())):
        decoding = cs                      # the BOM says which byte order
    try:
        doc = json.loads(data.decode(decoding), parse_int=str, parse_float=str, parse_constant=str,
                         object_pairs_hook=_object)
    except UnicodeDecodeError as exc:
        raise BadRequest("not %s: %s" % (charset, exc)) from None
    except ValueError as exc:
        raise BadRequest("not JSON: %s" % exc) from None
    except RecursionError:
        raise BadRequest("not JSON: nested too deeply") from None
    if not isinstance(doc, list):
        raise BadRequest("expected a JSON array of events, got %s" % _JSON_TYPES.get(type(doc), "a string or number"))
    bodies, headers = [], []
    for i, ev in enumerate(doc):
        if not isinstance(ev, dict):
            raise BadRequest("event %d: expected {\"headers\": {...}, \"body\": \"...\"}" % i)
        h = ev.get("headers")
        h = {} if h is None else h
        if not isinstance(h, dict):
            raise BadRequest("event %d: headers must map names to strings" % i)
        if getattr(h, "twice", None) is not None:
            raise BadRequest("event %d: header %r is given twice" % (i, h.twice))
        body = _string(ev.get("body"), "event %d: body" % i)
        bodies.append(encode(body) if body else b"")
        headers.append({_string(k, "event %d: header name" % i): _string(v, "event %d: header %r" % (i, k))
                        for k, v in h.items()})
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
