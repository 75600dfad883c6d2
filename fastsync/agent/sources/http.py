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

The body is read only after its Content-Length (digits only, at most `maxRequestSize`) was
checked, and never past it. With `ssl = true` the source speaks HTTPS (TLS 1.2 or later),
its key and certificate from a PKCS12 `keystore` (as Flume's) or PEM `ssl.certfile` /
`ssl.keyfile`. The listening socket and its limits (`backlog`, `maxConnections`,
`idleTimeout`) are listener.py's; a connection past `maxConnections` is answered 503.
"""
from __future__ import annotations

import json
import logging
import re
import ssl
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler

from fastsync.agent.component import SOURCES, Place, setting
from fastsync.agent.errors import ChannelException
from fastsync.agent.source import Source
from fastsync.agent.sources.listener import Listener, ListenerConfig
from fastsync.event import EventBatch
from fastsync.keystore import load_key_chain

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
class HttpSourceConfig(ListenerConfig):
    PASSTHROUGH = ("handler.",)
    port: int = setting("port", doc="TCP port to listen on", min=0, max=65535)
    bind: str = setting("bind", "127.0.0.1", "address to listen on")
    handler: str = setting("handler", JSON_HANDLER[0], "request format: Flume's JSONHandler")
    maxRequestSize: int = setting("maxRequestSize", 64 << 20, "largest request body accepted, bytes", min=1)
    sslEnabled: bool = setting("ssl", False, "serve HTTPS")
    keystore: str = setting("keystore", "", "ssl: PKCS12 file with the private key and its certificate chain")
    keystorePassword: str = setting("keystorePassword", "", "ssl: the keystore's password (or an encrypted ssl.keyfile's)")
    keystoreType: str = setting("keystore-type", "PKCS12", "ssl: the keystore's format; PKCS12 only")
    certfile: str = setting("ssl.certfile", "", "ssl: PEM certificate chain (instead of a keystore)")
    keyfile: str = setting("ssl.keyfile", "", "ssl: PEM private key, if not in ssl.certfile")

    def validate(self, place: Place) -> None:
        if self.handler.strip().lower() not in [h.lower() for h in JSON_HANDLER]:
            raise place.error("handler", "handler '%s' is not supported (supported: %s)" % (self.handler, JSON_HANDLER[0]))
        if not self.sslEnabled:
            return
        if self.keystoreType.strip().upper() != "PKCS12":
            raise place.error("keystore-type", "keystore-type %s is not supported, only PKCS12 (convert it with "
                              "keytool -importkeystore -deststoretype PKCS12)" % self.keystoreType)
        if bool(self.keystore) == bool(self.certfile):
            raise place.error("ssl", "ssl = true needs either keystore or ssl.certfile (not both)")
        try:
            self.ssl_context()
        except (OSError, ValueError) as exc:
            key = "keystore" if self.keystore else "ssl.certfile"
            raise place.error(key, "cannot load the TLS key and certificate: %s" % _reason(exc)) from None

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.certfile:
            # a callable, so an encrypted key without its password fails instead of prompting on the terminal
            ctx.load_cert_chain(self.certfile, self.keyfile or None, lambda: self.keystorePassword.encode())
            return ctx
        from cryptography.hazmat.primitives.serialization import pkcs12
        with open(self.keystore, "rb") as f:
            key, cert, chain = pkcs12.load_key_and_certificates(f.read(), self.keystorePassword.encode() or None)
        if key is None or cert is None:
            raise ValueError("%s holds no private key with its certificate" % self.keystore)
        load_key_chain(ctx, key, cert, chain)
        return ctx


def _reason(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return "%s: %s" % (exc.filename or "", exc.strerror) if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__


class _Handler(BaseHTTPRequestHandler):
    source: "HttpSource"

    def _reply(self, code: int, message: str = "") -> None:
        body = (message + "\n").encode() if message else b""
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        code, message = self.source.handle(self.headers, self.rfile)
        self._reply(code, message)

    def do_GET(self):
        self._reply(405, "POST a JSON array of events")

    do_PUT = do_DELETE = do_GET

    def log_message(self, fmt, *args):
        log.debug("http source: " + fmt, *args)


@SOURCES.register("http", "org.apache.flume.source.http.HTTPSource")
class HttpSource(Source):
    Config = HttpSourceConfig

    def __init__(self, name, config, processor=None):
        super().__init__(name, config, processor)
        self.listener: Listener | None = None
        self.tls: ssl.SSLContext | None = None
        self.port = config.port

    def start(self) -> None:
        super().start()
        c = self.config
        self.tls = c.ssl_context() if c.sslEnabled else None
        # the handler reads with idleTimeout as its socket timeout
        self.Handler = type("Handler", (_Handler,), {"source": self, "timeout": c.idle_seconds})
        text = b"too many connections (maxConnections %d)\n" % c.maxConnections
        refusal = b"" if self.tls else (b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
                                        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(text), text))
        what = "http%s source %s" % ("s" if self.tls else "", self.name)
        self.listener = Listener(what, c.bind, c.port, c, self._serve, self.counters, refusal)
        self.port = self.listener.port
        self.listener.start()

    def _serve(self, conn, peer) -> None:
        if self.tls is None:
            self.Handler(conn, peer, None)
            return
        conn.settimeout(self.config.idle_seconds)       # a client that never completes the handshake
        try:
            tls = self.tls.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            log.info("http source %s: TLS handshake with %s:%s failed: %s", self.name, peer[0], peer[1], exc)
            return
        with tls:
            self.Handler(tls, peer, None)

    def handle(self, headers, rfile) -> tuple[int, str]:
        if headers.get("Transfer-Encoding"):
            return 411, "Transfer-Encoding is not supported: send a Content-Length"
        lengths = headers.get_all("Content-Length") or []
        if not lengths:
            return 411, "a Content-Length is required"
        if len(set(v.strip() for v in lengths)) > 1 or not re.fullmatch(r"[0-9]+", lengths[0].strip()):
            self.counters.add(EventReadFail=1)
            return 400, "Content-Length must be one non-negative integer, got %s" % ", ".join(map(repr, lengths))
        length = int(lengths[0])
        if length > self.config.maxRequestSize:
            return 413, "request of %d bytes is larger than maxRequestSize (%d)" % (length, self.config.maxRequestSize)
        data = rfile.read(length)
        charset = headers.get_content_charset() or "utf-8"
        try:
            batch = parse_json_events(data, charset)
        except BadRequest as exc:
            self.counters.add(EventReadFail=1)
            return 400, str(exc)
        except RecursionError:
            self.counters.add(EventReadFail=1)
            return 400, "not JSON this parser accepts: nested too deeply"
        if len(batch) > self.processor.max_batch:
            return 413, "%d events are more than one channel transaction holds (%d)" % (len(batch), self.processor.max_batch)
        try:
            self.deliver(batch)
        except ChannelException as exc:
            log.warning("http source %s: the channel refused %d events: %s", self.name, len(batch), exc)
            return 503, "channel refused the events: %s" % exc
        return 200, ""

    def stop(self) -> None:
        if self.listener is not None:
            self.listener.stop()
            self.listener = None
        super().stop()
