"""Flume's `avro` source: the receiving end of Flume's avro sink, RPC client and avro-client.

Each connection speaks Avro RPC over Netty's framing (fastsync/rpc/avro_wire.py). An
`appendBatch` request is decoded natively into one EventBatch (no Python object per
event) and put into the channels as one transaction per channel; it is answered Status OK
only once they committed, FAILED when a channel refused it (full, or more events than its
transactionCapacity): then nothing of it was kept and the client sends it again.

Bytes that are not Flume's Avro RPC (garbage, a truncated frame, a failed TLS or deflate
stream) close that connection only; each such connection is counted (EventReadFail) and
logged once. `ipFilter` with `ipFilterRules` (Flume's syntax: `allow:ip:127.*,deny:name:*`,
the first rule matching the peer decides, none matching: allowed) closes refused
connections at once. A request larger than `maxRequestSize` is refused (the connection
closed, counted) before it is read. The listening socket and its limits (`backlog`,
`maxConnections`, `idleTimeout`) are listener.py's.
"""
from __future__ import annotations

import logging
import re
import socket
import ssl
from dataclasses import dataclass

from fastsync.agent.component import SOURCES, Place, setting
from fastsync.agent.errors import ChannelException
from fastsync.agent.source import Source
from fastsync.agent.sources.listener import Listener, ListenerConfig
from fastsync.keystore import server_context
from fastsync.rpc import avro_wire as wire
from fastsync.rpc.avro_server import Handshake, Transport

log = logging.getLogger("fastsync.source.avro")


@dataclass
class IpRule:
    allow: bool
    by_name: bool           # match the peer's host name, not its address
    pattern: re.Pattern

    def matches(self, ip: str, name) -> bool:
        if self.by_name and self.pattern.pattern == _glob("localhost").pattern and ip in ("127.0.0.1", "::1"):
            return True     # Flume's "name:localhost" is any loopback address
        return bool(self.pattern.fullmatch(name() if self.by_name else ip))


def _glob(text: str) -> re.Pattern:
    """Flume's pattern: `*` any characters, `?` one, everything else literal."""
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in text))


def parse_ip_rules(text: str) -> list[IpRule]:
    """`allow|deny:ip|name:pattern`, comma separated (ValueError naming the bad rule)."""
    rules = []
    for item in text.split(","):
        item = item.strip()
        parts = item.split(":", 2)
        if len(parts) != 3 or parts[0] not in ("allow", "deny") or parts[1] not in ("ip", "name"):
            raise ValueError("invalid rule %r: expected <allow|deny>:<ip|name>:<pattern>" % item)
        rules.append(IpRule(parts[0] == "allow", parts[1] == "name", _glob(parts[2])))
    return rules


@dataclass(kw_only=True)
class AvroSourceConfig(ListenerConfig):
    bind: str = setting("bind", doc="address to listen on")
    port: int = setting("port", doc="TCP port to listen on (0: any free port)", min=0, max=65535)
    # Flume's avro sink keeps its connection between batches, however quiet: never closed by default
    idleTimeout: int = setting("idleTimeout", 0, "ms after which a connection that sent nothing is closed; 0: never", min=0)
    threads: int = setting("threads", 0, "accepted as Flume's; as in Flume 1.11 it limits nothing "
                           "(maxConnections bounds the connections served at once)", min=0)
    compression: str = setting("compression-type", "none", "deflate: each direction is one zlib stream, as Flume's",
                               choices=("none", "deflate"))
    sslEnabled: bool = setting("ssl", False, "TLS (inside the deflate stream when both are on, as Flume)")
    keystore: str = setting("keystore", "", "ssl: the JKS or PKCS12 keystore with the private key and its certificate chain")
    keystorePassword: str = setting("keystore-password", "", "ssl: the keystore's password")
    keystoreType: str = setting("keystore-type", "JKS", "ssl: JKS or PKCS12 (either file is read whatever "
                                "this says, as Java does)")
    excludeProtocols: str = setting("exclude-protocols", "SSLv3", "ssl: TLS versions not offered, space separated")
    maxRequestSize: int = setting("maxRequestSize", 512 << 20, "bytes of one request (one batch) at most; a larger "
                                  "one closes the connection", min=1024)
    ipFilter: bool = setting("ipFilter", False, "refuse the connections ipFilterRules deny")
    ipFilterRules: str = setting("ipFilterRules", "", "ipFilter: rules <allow|deny>:<ip|name>:<pattern>, comma separated")

    def validate(self, place: Place) -> None:
        if self.ipFilter:
            if not self.ipFilterRules.strip():
                raise place.error("ipFilterRules", "ipFilter = true needs ipFilterRules")
            try:
                parse_ip_rules(self.ipFilterRules)
            except ValueError as exc:
                raise place.error("ipFilterRules", str(exc)) from None
        if not self.sslEnabled:
            return
        if self.keystoreType.strip().upper() not in ("JKS", "PKCS12"):
            raise place.error("keystore-type", "keystore-type %s is not supported: JKS or PKCS12" % self.keystoreType)
        if not self.keystore:
            raise place.error("keystore", "ssl = true needs a keystore")
        try:
            self.ssl_context()
        except (OSError, ValueError) as exc:
            raise place.error(getattr(exc, "key", "keystore"), "cannot load the TLS key and certificate: %s" % _reason(exc)) from None

    def ssl_context(self) -> ssl.SSLContext:
        return server_context(self.keystore, self.keystorePassword, self.excludeProtocols)


def _reason(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return "%s: %s" % (exc.filename, exc.strerror) if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__


@SOURCES.register("avro", "org.apache.flume.source.AvroSource")
class AvroSource(Source):
    Config = AvroSourceConfig

    def __init__(self, name, config, processor=None):
        super().__init__(name, config, processor)
        self.listener: Listener | None = None
        self.port = config.port
        self.rules = parse_ip_rules(config.ipFilterRules) if config.ipFilter else []
        self.tls = config.ssl_context() if config.sslEnabled else None
        self.what = "avro source %s" % name

    def start(self) -> None:
        super().start()
        c = self.config
        self.listener = Listener(self.what, c.bind, c.port, c, self._serve, self.counters)
        self.port = self.listener.port
        self.listener.start()

    def stop(self) -> None:
        if self.listener is not None:
            self.listener.stop(wait=10)
        super().stop()

    def _allowed(self, peer) -> bool:
        ip = peer[0]
        for rule in self.rules:
            if rule.matches(ip, lambda: _host_name(ip)):
                return rule.allow
        return True

    def _serve(self, conn: socket.socket, peer) -> None:
        if self.rules and not self._allowed(peer):
            log.info("%s: connection from %s refused by ipFilterRules", self.what, peer[0])
            return
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport = Transport(lambda: self.listener.recv(conn, 1 << 20), conn.sendall,
                                   deflate=self.config.compression == "deflate", tls=self.tls)
        try:
            if not transport.handshake():
                return
            frames, handshake = wire.FrameReader(self.config.maxRequestSize, "maxRequestSize"), Handshake()
            while True:
                frame = frames.next_frame(transport.recv)
                if frame is None:
                    return
                serial, message = frame
                transport.send(wire.encode_frame(serial, [self._respond(handshake, message)]))
        except (wire.ProtocolError, ssl.SSLError) as exc:
            if self.listener.stopping.is_set():
                return                      # cut short by our stop, not by the client
            # one line per bad connection; the source and its other connections go on
            self.counters.add(EventReadFail=1)
            log.warning("%s: closing the connection from %s:%s: %s", self.what, peer[0], peer[1], exc)

    def _respond(self, handshake: Handshake, message: bytes) -> bytes:
        """The reply to one request message (raises ProtocolError when it does not decode)."""
        answer, pos = handshake.answer(message)
        if not handshake.done:
            return answer                  # NONE: the client repeats the call with its protocol
        name, pos = wire.decode_call(message, pos)
        if name == "":
            return answer                  # a handshake ping
        if name not in ("appendBatch", "append"):
            return answer + wire.encode_error("No such remote message: %s" % name)
        from fastsync._native import decode_flume_array
        from fastsync.kafkaio import flume_columns_batch
        try:
            if name == "appendBatch":
                data, offsets, names, columns, end = decode_flume_array(message, pos)
            else:   # one event: decoded as an array of one, in place
                data, offsets, names, columns, end = decode_flume_array(wire.write_long(1) + message[pos:] + b"\x00")
        except ValueError as exc:
            raise wire.ProtocolError("%s request: %s" % (name, exc)) from None
        batch = flume_columns_batch(data, offsets, names, columns)
        try:
            # one transaction per channel: all of it or none
            self.deliver(batch, "AppendBatch" if name == "appendBatch" else "Append")
        except ChannelException as exc:
            log.warning("%s: unable to put a batch of %d events: %s (answered FAILED)", self.what, len(batch), exc)
            return answer + wire.encode_status(wire.FAILED)
        return answer + wire.encode_status(wire.OK)


def _host_name(ip: str) -> str:
    try:
        return socket.gethostbyaddr(ip)[0]
    except OSError:
        return ip
