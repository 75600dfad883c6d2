"""Our `flight` source: the receiving end of the hop between fastsync agents, an Apache
Arrow Flight server (pyarrow.flight, gRPC) taking EventBatches as Arrow record batches.

Each DoPut stream (one per connected `flight` sink) is served on a gRPC thread: a record
batch becomes an EventBatch on the same buffers (fastsync.event.EventBatch.from_arrow, no
per-event object), is put into the channels, and only once committed is it acknowledged
(`OK`, flightio.py). A batch the channels refuse is answered `FAILED: reason` and the
stream ends, so nothing sent after it is committed: the sink rolls them all back and
sends them again. A stream that breaks (a truncated or invalid message, a record batch
with no `body` column, a client gone mid-stream) ends with an error and counts in
`StreamFailCount`; the server goes on serving the others (a client gone between two messages
is told from a clean end by its cancelled call). Bytes that are not gRPC at all
are refused by gRPC itself, which closes that connection (it tells us nothing, so they are
not counted).

With `ssl = true` the source speaks TLS with the PEM `ssl.certificate` and `ssl.key`.
With `auth.token` / `auth.tokenFile` every call must carry `authorization: Bearer <token>`
(checked by a server middleware before the call runs, compared in constant time); a call
without it fails with UNAUTHENTICATED and counts in `AuthFailCount`. The token is never logged.
"""
from __future__ import annotations

import hmac
import logging
import ssl
import threading
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.flight as fl

from fastsync.agent.component import SOURCES, Place, setting
from fastsync.agent.errors import ChannelException
from fastsync.agent.flightio import ACTION_PING, FAILED, OK, TokenSettings, keep_heap, read_pem
from fastsync.agent.metrics import SOURCE_COUNTERS, Counters
from fastsync.agent.source import Source, SourceConfig
from fastsync.event import EventBatch

log = logging.getLogger("fastsync.source.flight")
STOP_WAIT = 5.0     # seconds stop() waits for the batches being committed
SHUTDOWN_WAIT = 1.0  # seconds it waits for gRPC to end the calls


@dataclass(repr=False)
class FlightSourceConfig(TokenSettings, SourceConfig):
    bind: str = setting("bind", doc="address to listen on")
    port: int = setting("port", doc="TCP port to listen on (0: any free port)", min=0, max=65535)
    ssl: bool = setting("ssl", False, "serve TLS, with ssl.certificate and ssl.key")
    certificate: str = setting("ssl.certificate", "", "ssl: PEM certificate chain of the server")
    key: str = setting("ssl.key", "", "ssl: PEM private key of the certificate (not encrypted)")

    def validate(self, place: Place) -> None:
        self.check_token(place)
        if self.ssl:
            for key, path in (("ssl.certificate", self.certificate), ("ssl.key", self.key)):
                if not path:
                    raise place.missing(key, "ssl = true needs %s (a PEM file)" % key)
                read_pem(place, key, path)
            try:        # gRPC would only say the server "did not start properly"
                ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(self.certificate, self.key)
            except (ssl.SSLError, OSError) as exc:
                raise place.error("ssl.key", "%s and %s: not a certificate chain and its unencrypted private key (%s)"
                                  % (self.certificate, self.key, exc.strerror or exc)) from None


class _TokenCheck(fl.ServerMiddlewareFactory):
    """Refuses every call that does not carry the token, before it runs."""

    def __init__(self, token: bytes, counters: Counters):
        super().__init__()
        self.expected = b"Bearer " + token
        self.counters = counters

    def start_call(self, info, headers):
        for value in headers.get("authorization", ()):
            if hmac.compare_digest(value.encode() if isinstance(value, str) else value, self.expected):
                return None
        self.counters.add(AuthFailCount=1)
        raise fl.FlightUnauthenticatedError("unauthenticated: no valid bearer token (auth.token)")


class _Server(fl.FlightServerBase):
    def __init__(self, source: "FlightSource", location: str, **kw):
        super().__init__(location, **kw)
        self.source = source

    def do_put(self, context, descriptor, reader, writer):
        self.source.serve(context, reader, writer)

    def do_action(self, context, action):
        if action.type != ACTION_PING:
            raise fl.FlightServerError("unknown action %r" % action.type)
        return iter(())

    def list_actions(self, context):
        return [(ACTION_PING, "check that the source is reachable and the token accepted")]


@SOURCES.register("flight")
class FlightSource(Source):
    Config = FlightSourceConfig

    def __init__(self, name, config, processor=None):
        super().__init__(name, config, processor)
        self.counters = Counters("SOURCE", SOURCE_COUNTERS + ("StreamFailCount", "AuthFailCount"))
        self.server: _Server | None = None
        self.port = config.port
        self.stopping = threading.Event()
        self._busy = 0                      # batches being committed now
        self._lock = threading.Condition()

    def start(self) -> None:
        keep_heap()
        super().start()
        c = self.config
        kw: dict = {}
        if c.ssl:
            with open(c.certificate, "rb") as cert, open(c.key, "rb") as key:
                kw["tls_certificates"] = [(cert.read(), key.read())]
        token = c.secret()
        if token:
            kw["middleware"] = {"token": _TokenCheck(token, self.counters)}
        host = "[%s]" % c.bind if ":" in c.bind else c.bind
        location = "%s://%s:%d" % ("grpc+tls" if c.ssl else "grpc", host, c.port)
        self.stopping.clear()
        try:
            self.server = _Server(self, location, **kw)
        except (pa.ArrowException, OSError) as exc:
            raise OSError("flight source %s: cannot listen on %s:%d: %s" % (self.name, c.bind, c.port, _first_line(exc))) from None
        self.port = self.server.port
        log.info("flight source %s listening on %s:%d%s%s", self.name, c.bind, self.port,
                 " (TLS)" if c.ssl else "", " (token required)" if token else "")

    def serve(self, context, reader, writer) -> None:
        """One DoPut stream: commit each record batch, then acknowledge it."""
        peer = context.peer()
        self.counters.add(OpenConnectionCount=1)
        try:
            self._serve(reader, writer)
        except ChannelException:
            return          # answered FAILED; the stream ends
        except Exception as exc:
            if self.stopping.is_set():
                return
            self._bad(peer, _first_line(exc))
            raise fl.FlightServerError("flight source %s: bad stream: %s" % (self.name, _first_line(exc))) from None
        finally:
            self.counters.add(OpenConnectionCount=-1)
        # a client gone between two messages looks like their end, but for the cancelled call
        if context.is_cancelled() and not self.stopping.is_set():
            self._bad(peer, "the client went away without ending the stream")

    def _bad(self, peer: str, why: str) -> None:
        self.counters.add(StreamFailCount=1)
        log.warning("flight source %s: stream from %s closed: %s", self.name, peer, why)

    def _serve(self, reader, writer) -> None:
        per_tx = self.processor.max_batch
        while True:
            try:
                chunk = reader.read_chunk()
            except StopIteration:
                return
            seq = chunk.app_metadata
            if seq is None or seq.size != 8 or chunk.data is None:
                raise ValueError("a record batch without its 8-byte sequence number")
            batch = EventBatch.from_arrow(chunk.data)
            if not self._enter():
                return      # stopping: not committed, not acknowledged (the sink sends it again)
            try:
                self.deliver_each(batch, per_tx)
            except ChannelException as exc:
                reason = str(exc).replace("\n", " ")
                log.warning("flight source %s: a batch of %d events refused by the channel: %s", self.name, len(batch), reason)
                writer.write(pa.py_buffer(seq.to_pybytes() + FAILED + reason.encode()))
                raise
            finally:
                self._leave()
            writer.write(pa.py_buffer(seq.to_pybytes() + OK))

    def _enter(self) -> bool:
        with self._lock:
            if self.stopping.is_set():
                return False
            self._busy += 1
            return True

    def _leave(self) -> None:
        with self._lock:
            self._busy -= 1
            self._lock.notify_all()

    def stop(self) -> None:
        # no batch is committed once stop() returns; the ones being committed finish first
        self.stopping.set()
        with self._lock:
            self._lock.wait_for(lambda: self._busy == 0, STOP_WAIT)
        if self.server is not None:
            # shutdown() waits for every call to end, and a connected sink's stream does not
            # end by itself: it is left to end with the process if it takes longer
            t = threading.Thread(target=self.server.shutdown, name="flight source %s shutdown" % self.name, daemon=True)
            t.start()
            t.join(SHUTDOWN_WAIT)
            self.server = None
        super().stop()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]

