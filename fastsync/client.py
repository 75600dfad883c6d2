"""The RPC client, as Flume's SDK has it: send events to an avro source (Flume's or ours).

    from fastsync.client import RpcClient
    with RpcClient.from_properties({"hosts": "h1", "hosts.h1": "collector:41414"}) as c:
        c.append_batch([b"one", b"two"], headers={"host": "web1"})

Client properties are Flume's (RpcClientFactory): `client.type` = default | default_failover
| default_loadbalance, `hosts` = h1 h2 ..., `hosts.<h>` = host:port, `batch-size` (100),
`connect-timeout` / `request-timeout` (ms, 20000), `max-attempts` (failover), `host-selector`
= round_robin | random, `backoff`, `maxBackoff` (load balancing), `compression-type` = none |
deflate, `compression-level`, `ssl`, `trust-all-certs`, `truststore`, `truststore-password`,
`truststore-type`, `exclude-protocols`, `include-protocols`.

A batch is delivered when the server answered Status OK; anything else (FAILED, a timeout, a
closed connection, a refused connection) raises EventDeliveryError naming host:port and the
cause, and the connection is dropped (the next call connects again), as Flume's client does.

On the wire (Flume's Netty pipeline): frames, inside TLS when `ssl`, inside a zlib stream
flushed per write when `compression-type = deflate` (so with both, compression is outside
TLS, as Netty's handlers are ordered in Flume's client and source).
"""
from __future__ import annotations

import random
import socket
import ssl
import threading
import time
import zlib
from typing import Iterable, Mapping, Sequence

from fastsync.agent.errors import EventDeliveryException
from fastsync.event import EventBatch
from fastsync.kafkaio import flume_header_columns
from fastsync.keystore import KeystoreError, client_context
from fastsync.rpc import avro_wire

__all__ = ["RpcClient", "EventDeliveryError", "ClientConfigError", "AvroConnection"]

DEFAULT_TIMEOUT_MS = 20000
DEFAULT_BATCH = 100
RECV = 1 << 16


class EventDeliveryError(EventDeliveryException):
    """A batch was not acknowledged (Status OK) by host:port; `cause` says why."""

    def __init__(self, address: str, cause: str):
        self.address, self.cause = address, cause
        super().__init__("%s: %s" % (address, cause))


class ClientConfigError(ValueError):
    """Client properties that can't work: the key and what is wrong."""


class _Stream:
    """A connected socket with Flume's optional layers: TLS (an SSLObject over memory, so a
    zlib stream can wrap it) and deflate (zlib, one sync flush per write)."""

    def __init__(self, sock: socket.socket, tls: ssl.SSLContext | None, deflate_level: int | None):
        self.sock = sock
        self.zout = zlib.compressobj(deflate_level) if deflate_level is not None else None
        self.zin = zlib.decompressobj() if deflate_level is not None else None
        self.tls = None
        if tls is not None:
            self.bio_in, self.bio_out = ssl.MemoryBIO(), ssl.MemoryBIO()
            self.tls = tls.wrap_bio(self.bio_in, self.bio_out, server_side=False)
            while True:
                try:
                    self.tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    self._flush_tls()
                    self._fill()
            self._flush_tls()

    def _send_raw(self, pieces) -> None:
        if self.zout is not None:
            data = b"".join(self.zout.compress(p) for p in pieces) + self.zout.flush(zlib.Z_SYNC_FLUSH)
            self.sock.sendall(data)
        elif len(pieces) == 1:
            self.sock.sendall(pieces[0])
        else:
            views = [memoryview(p).cast("B") for p in pieces]
            while views:
                sent = self.sock.sendmsg(views[:512])
                while views and sent >= views[0].nbytes:
                    sent -= views[0].nbytes
                    views.pop(0)
                if sent:
                    views[0] = views[0][sent:]

    def _flush_tls(self) -> None:
        out = self.bio_out.read()
        if out:
            self._send_raw([out])

    def _recv_raw(self) -> bytes:
        data = self.sock.recv(RECV)
        if not data:
            raise ConnectionError("connection closed by the server")
        if self.zin is not None:
            data = self.zin.decompress(data)
        return data

    def _fill(self) -> None:
        """Feed the TLS object what the socket has."""
        self.bio_in.write(self._recv_raw())

    def send(self, pieces: list) -> None:
        if self.tls is None:
            self._send_raw(pieces)
            return
        for p in pieces:
            self.tls.write(p)
        self._flush_tls()

    def recv(self) -> bytes:
        if self.tls is None:
            return self._recv_raw()
        while True:
            try:
                data = self.tls.read(RECV)
            except ssl.SSLWantReadError:
                self._flush_tls()
                self._fill()
                continue
            except ssl.SSLZeroReturnError:
                raise ConnectionError("connection closed by the server") from None
            if not data:
                raise ConnectionError("connection closed by the server")
            return data

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class AvroConnection:
    """One connection to one avro source (Flume's NettyAvroRpcClient): connects on first
    use, handshakes with the first call, one call at a time."""

    def __init__(self, host: str, port: int, *, connect_timeout: float = 20.0, request_timeout: float = 20.0,
                 tls: ssl.SSLContext | None = None, deflate_level: int | None = None):
        self.host, self.port = host, port
        self.address = "%s:%d" % (host, port)
        self.connect_timeout, self.request_timeout = connect_timeout, request_timeout
        self.tls, self.deflate_level = tls, deflate_level
        self.stream: _Stream | None = None
        self.handshaken = self.handshake_sent = False
        self.handshake_serial = -1                # the call that carried the handshake
        self.serial = 0
        self.frames = avro_wire.FrameReader()
        self.answers: dict[int, bytes] = {}       # serial -> answer not yet waited for
        self.deadlines: dict[int, float] = {}     # serial -> when a call sent gives up

    def connect(self) -> None:
        if self.stream is not None:
            return
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except socket.timeout:
            raise EventDeliveryError(self.address, "connect timed out after %d ms" % (self.connect_timeout * 1000)) from None
        except OSError as exc:
            raise EventDeliveryError(self.address, "cannot connect: %s" % (exc.strerror or exc)) from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.stream = _Stream(sock, self.tls, self.deflate_level)
        except (OSError, ssl.SSLError) as exc:
            sock.close()
            raise EventDeliveryError(self.address, "TLS handshake failed: %s" % exc) from None
        sock.settimeout(self.request_timeout)
        self.handshaken = self.handshake_sent = False
        self.frames = avro_wire.FrameReader()
        self.answers.clear()
        self.deadlines.clear()

    def close(self) -> None:
        stream, self.stream = self.stream, None
        if stream is not None:
            stream.close()
        self.deadlines.clear()

    @property
    def connected(self) -> bool:
        return self.stream is not None

    def append_batch(self, batch: EventBatch) -> None:
        """Send one appendBatch call of the whole batch; return on Status OK, else raise
        EventDeliveryError (and drop the connection)."""
        self.wait(self.send_batch(batch), len(batch))

    def send_batch(self, batch: EventBatch) -> int:
        """Send an appendBatch call of the whole batch without waiting for its answer: its
        serial, for wait(). Calls may be sent before earlier ones are answered (the server
        answers in order)."""
        from fastsync._native import encode_flume_events
        data, offsets = encode_flume_events(batch.data, batch.offsets, flume_header_columns(batch))
        n = len(batch)
        try:
            self.connect()
            stream = self.stream        # interrupt() may close the connection from another thread
            if stream is None:
                raise ConnectionError("connection closed")
            head, tail = avro_wire.append_batch_request(n, b"" if self.handshake_sent else avro_wire.handshake_request())
            self.serial = (self.serial + 1) & 0x7FFFFFFF
            serial = self.serial
            self.deadlines[serial] = time.monotonic() + self.request_timeout
            stream.sock.settimeout(self.request_timeout)
            stream.send(avro_wire.frame(serial, [head, data, tail] if n else [head]))
            if not self.handshake_sent:
                self.handshake_sent, self.handshake_serial = True, serial
            return serial
        except Exception as exc:
            raise self._failed(exc, n) from None

    def wait(self, serial: int, n: int) -> None:
        """Until the answer of call `serial` (of n events): return on Status OK, else raise
        EventDeliveryError (and drop the connection)."""
        try:
            stream = self.stream
            if stream is None or serial not in self.deadlines:
                raise ConnectionError("connection closed")
            while serial not in self.answers:
                left = self.deadlines[serial] - time.monotonic()
                if left <= 0:
                    raise socket.timeout()
                stream.sock.settimeout(left)       # the whole call, not each read, has request-timeout
                for got, message in self.frames.feed(stream.recv()):
                    self.answers[got] = message
            del self.deadlines[serial]
            self._status(self.answers.pop(serial), serial == self.handshake_serial)
        except Exception as exc:
            raise self._failed(exc, n) from None

    def _failed(self, exc: Exception, n: int) -> Exception:
        """The EventDeliveryError for exc (the connection is dropped)."""
        self.close()
        if isinstance(exc, EventDeliveryError):
            return exc
        if isinstance(exc, socket.timeout):
            return EventDeliveryError(self.address, "request timed out after %d ms (batch of %d events)"
                                      % (self.request_timeout * 1000, n))
        if isinstance(exc, (OSError, ssl.SSLError, avro_wire.ProtocolError, avro_wire.RemoteError, zlib.error)):
            cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
            return EventDeliveryError(self.address, "batch of %d events not acknowledged: %s" % (n, cause))
        return exc

    def _status(self, message: bytes, handshake: bool) -> None:
        r = avro_wire.Reader(message)
        if handshake:
            match, _, _ = avro_wire.read_handshake_response(r)
            if match == "NONE":
                raise avro_wire.ProtocolError("the server did not accept our protocol (handshake NONE)")
            self.handshaken = True
        status = avro_wire.read_call_response(r)
        if status != "OK":
            raise EventDeliveryError(self.address, "the server answered Status %s" % status)


def as_batch(bodies, headers=None) -> EventBatch:
    """An EventBatch from bodies (an EventBatch passes as it is) and headers: one mapping for
    every event (name -> value, or name -> a value per event), or one mapping per event."""
    if isinstance(bodies, EventBatch):
        return bodies
    bodies = [b.encode() if isinstance(b, str) else bytes(b) for b in bodies]
    if headers is None or isinstance(headers, Mapping):
        return EventBatch.from_bodies(bodies, headers)
    per_event = list(headers)
    if len(per_event) != len(bodies):
        raise ValueError("%d header mappings for %d bodies" % (len(per_event), len(bodies)))
    names: dict[str, None] = {}
    for h in per_event:
        names.update(dict.fromkeys(h or ()))
    return EventBatch.from_bodies(bodies, {k: [(h or {}).get(k) for h in per_event] for k in names})


# -- properties --

def _prop(props: Mapping[str, str], key: str, default=None):
    v = props.get(key)
    return default if v is None or not str(v).strip() else str(v).strip()


def _int(props, key: str, default: int, minimum: int = 0) -> int:
    v = _prop(props, key)
    if v is None:
        return default
    try:
        n = int(v)
    except ValueError:
        raise ClientConfigError("%s: %r is not a whole number" % (key, v)) from None
    if n < minimum:
        raise ClientConfigError("%s: %d is below %d" % (key, n, minimum))
    return n


def _bool(props, key: str, default: bool = False) -> bool:
    v = _prop(props, key)
    if v is None:
        return default
    if v.lower() not in ("true", "false"):
        raise ClientConfigError("%s: %r is not true or false" % (key, v))
    return v.lower() == "true"


def connection_factory(props: Mapping[str, str]):
    """What every connection of these properties shares: a function (host, port) -> AvroConnection."""
    ct = _int(props, "connect-timeout", DEFAULT_TIMEOUT_MS, 1) / 1000.0
    rt = _int(props, "request-timeout", DEFAULT_TIMEOUT_MS, 1) / 1000.0
    compression = (_prop(props, "compression-type", "none") or "none").lower()
    if compression not in ("none", "deflate"):
        raise ClientConfigError("compression-type: %r is not none or deflate" % compression)
    level = _int(props, "compression-level", 6, 0) if compression == "deflate" else None
    if level is not None and level > 9:
        raise ClientConfigError("compression-level: %d is not 0..9" % level)
    tls = None
    if _bool(props, "ssl"):
        try:
            tls = client_context(_bool(props, "trust-all-certs"), _prop(props, "truststore"),
                                 _prop(props, "truststore-password"), _prop(props, "truststore-type", "JKS"),
                                 (_prop(props, "exclude-protocols", "SSLv3") or "").split(),
                                 (_prop(props, "include-protocols", "") or "").split())
        except (KeystoreError, ssl.SSLError) as exc:     # a KeystoreError names its setting
            raise ClientConfigError("%s: %s" % (getattr(exc, "key", "truststore"), exc)) from None

    def make(host: str, port: int) -> AvroConnection:
        return AvroConnection(host, port, connect_timeout=ct, request_timeout=rt, tls=tls, deflate_level=level)
    return make


def host_list(props: Mapping[str, str]) -> list[tuple[str, str, int]]:
    """[(alias, host, port)] of `hosts` and `hosts.<alias>`."""
    names = (_prop(props, "hosts", "") or "").split()
    if not names:
        raise ClientConfigError("hosts: no host alias given (hosts = h1 h2 ..., hosts.h1 = host:port)")
    out = []
    for alias in names:
        spec = _prop(props, "hosts." + alias)
        if spec is None:
            raise ClientConfigError("hosts.%s: missing (host:port of host alias %s)" % (alias, alias))
        host, sep, port = spec.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ClientConfigError("hosts.%s: %r is not host:port" % (alias, spec))
        out.append((alias, host, int(port)))
    return out


class RpcClient:
    """Flume's RpcClient: `default` (one host), `default_failover` (the hosts in order, the
    next when one fails, up to `max-attempts` of them per batch), `default_loadbalance` (a
    host per batch by `host-selector`, the others tried when it fails; with `backoff` a
    failed host is left out for 1 s, 2 s ... up to `maxBackoff` ms)."""

    def __init__(self, hosts: Sequence[tuple[str, int]], *, client_type: str = "default", batch_size: int = DEFAULT_BATCH,
                 max_attempts: int | None = None, selector: str = "round_robin", backoff: bool = False,
                 max_backoff_ms: int = 30000, connect=None):
        if not hosts:
            raise ClientConfigError("hosts: no host given")
        if client_type not in ("default", "default_failover", "default_loadbalance"):
            raise ClientConfigError("client.type: %r is not default, default_failover or default_loadbalance" % client_type)
        if selector not in ("round_robin", "random"):
            raise ClientConfigError("host-selector: %r is not round_robin or random" % selector)
        connect = connect or connection_factory({})
        self.type = client_type
        hosts = list(hosts)[:1] if client_type == "default" else list(hosts)
        self.connections = [connect(h, p) for h, p in hosts]
        self.batch_size = batch_size
        self.max_attempts = min(max_attempts or len(self.connections), len(self.connections))
        self.selector, self.backoff, self.max_backoff = selector, backoff, max_backoff_ms / 1000.0
        self.next = 0                      # round robin position / failover's current host
        self.failures = [0] * len(self.connections)
        self.until = [0.0] * len(self.connections)      # backoff: not before this monotonic time
        self.closed = False
        self.lock = threading.Lock()       # calls from several threads go one at a time

    @classmethod
    def from_properties(cls, props: Mapping[str, str]) -> "RpcClient":
        """A client from Flume's client properties (keys as in an rpcProps file)."""
        props = {str(k): str(v) for k, v in props.items()}
        ctype = (_prop(props, "client.type", "default") or "default").lower()
        ctype = {"default_failover": "default_failover", "default_loadbalance": "default_loadbalance",
                 "failover": "default_failover", "load_balance": "default_loadbalance",
                 "loadbalance": "default_loadbalance"}.get(ctype, ctype)
        return cls([(h, p) for _, h, p in host_list(props)], client_type=ctype,
                   batch_size=_int(props, "batch-size", DEFAULT_BATCH, 1),
                   max_attempts=_int(props, "max-attempts", 0, 0) or None,
                   selector=(_prop(props, "host-selector", "round_robin") or "").lower(),
                   backoff=_bool(props, "backoff"), max_backoff_ms=_int(props, "maxBackoff", 30000, 0),
                   connect=connection_factory(props))

    # -- sending --

    def append(self, body: bytes, headers: Mapping[str, str] | None = None) -> None:
        self.append_batch([body], [headers or {}])

    def append_batch(self, bodies: Iterable[bytes] | EventBatch, headers=None) -> None:
        """Send the events, `batch-size` per call; raises EventDeliveryError when a call is
        not acknowledged by any host tried (what came before it was delivered)."""
        if self.closed:
            raise EventDeliveryError(self.describe(), "client is closed")
        batch = as_batch(bodies, headers)
        for start in range(0, len(batch), self.batch_size):
            self.send(batch.slice(start, start + self.batch_size))

    def send(self, batch: EventBatch) -> None:
        """One appendBatch call of the whole batch, to the host(s) the client type picks."""
        with self.lock:
            self._send(batch)

    def _send(self, batch: EventBatch) -> None:
        errors = []
        for i in self._order():
            try:
                self.connections[i].append_batch(batch)
            except EventDeliveryError as exc:
                errors.append(exc)
                self._failed(i)
                continue
            self._ok(i)
            return
        if not errors:
            raise EventDeliveryError(self.describe(), "every host is backing off after failures")
        if len(errors) == 1:
            raise errors[0]
        raise EventDeliveryError(self.describe(), "no host took the batch: " + "; ".join(str(e) for e in errors))

    def _order(self) -> list[int]:
        n = len(self.connections)
        if self.type == "default":
            return [0]
        if self.type == "default_failover":
            return [(self.next + k) % n for k in range(self.max_attempts)]
        now = time.monotonic()
        if self.selector == "random":
            order = random.sample(range(n), n)
        else:
            order = [(self.next + k) % n for k in range(n)]
            self.next = (self.next + 1) % n
        return [i for i in order if not self.backoff or self.until[i] <= now]

    def _failed(self, i: int) -> None:
        self.failures[i] += 1
        if self.type == "default_failover" and self.next == i:
            self.next = (i + 1) % len(self.connections)
        if self.backoff:
            self.until[i] = time.monotonic() + min(2 ** (self.failures[i] - 1), self.max_backoff)

    def _ok(self, i: int) -> None:
        self.failures[i] = 0
        self.until[i] = 0.0

    def describe(self) -> str:
        return " ".join(c.address for c in self.connections)

    def close(self) -> None:
        self.closed = True
        for c in self.connections:
            c.close()

    def __enter__(self) -> "RpcClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
