"""Flume's syslog sources: `syslogtcp` (newline-delimited messages on TCP connections) and
`syslogudp` (one message per datagram).

Messages are parsed a batch at a time with Arrow's regex kernels, RFC 5424
(`<PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG`) or RFC 3164 (`<PRI>Mmm dd hh:mm:ss HOST
MSG`), into Flume's headers: `Facility`, `Severity`, `host`, `timestamp` (ms since the
epoch; RFC 3164 dates, which have no year or zone, are taken in the current year, UTC).
The body is the message part (with `keepFields = true`, the whole line). A message that is
neither gets Flume's header `flume.syslog.status = Invalid` and its raw bytes as the body:
it is stored, not dropped, and the source keeps running.

TCP: a line longer than `eventSize` is cut there while it is read (the rest, up to its
newline, is dropped), so a connection never holds more than `eventSize` bytes of a line
whatever a client sends; the listening socket and its limits (`backlog`,
`maxConnections`, `idleTimeout`) are listener.py's.
"""
from __future__ import annotations

import datetime as dt
import logging
import socket
import threading
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from fastsync._native import split_lines
from fastsync.agent.component import SOURCES, setting
from fastsync.agent.errors import ChannelException
from fastsync.agent.source import Source, SourceConfig
from fastsync.agent.sources.listener import Listener, ListenerConfig
from fastsync.event import EventBatch, as_utf8

log = logging.getLogger("fastsync.source.syslog")
MAX_BATCH = 1000
READ_SIZE = 256 << 10       # TCP: bytes read at a time

RFC5424 = (r"^<(?P<pri>\d{1,3})>(?P<ver>[1-9]\d{0,2}) (?P<ts>\S+) (?P<host>\S+) (?P<app>\S+) (?P<procid>\S+) "
           r"(?P<msgid>\S+) (?P<sd>-|(?:\[(?:[^\]\\]|\\.)*\])+)(?: (?P<msg>(?s:.*)))?$")
RFC3164 = r"^<(?P<pri>\d{1,3})>(?P<ts>[A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d) (?P<host>\S+) (?P<msg>(?s:.*))$"


def _ms(ts: pa.Array) -> pa.Array:
    """timestamp array -> ms since the epoch, as strings."""
    ms = pc.cast(ts, pa.timestamp("ms", tz="UTC"), safe=False)      # microseconds truncated
    return pc.cast(pc.cast(ms, pa.int64()), pa.string())


def _iso_ms(text: pa.Array) -> pa.Array:
    try:
        return _ms(pc.cast(text, pa.timestamp("us", tz="UTC")))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):   # one bad date: element by element
        out = []
        for t in text.to_pylist():
            try:
                out.append(_ms(pc.cast(pa.array([t], pa.string()), pa.timestamp("us", tz="UTC")))[0].as_py())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, TypeError):
                out.append(None)
        return pa.array(out, pa.string())


def parse_syslog(raw: pa.Array, keep_fields: bool = False) -> EventBatch:
    """Syslog messages (a binary array) -> one EventBatch with Flume's syslog headers."""
    n = len(raw)
    text = as_utf8(raw)          # not UTF-8: parsed with the bad bytes replaced
    m5 = pc.extract_regex(text, RFC5424)
    m3 = pc.extract_regex(text, RFC3164)
    ok5, ok3 = pc.is_valid(m5), pc.is_valid(m3)
    valid = pc.or_(ok5, ok3)

    def field(m, name):
        return pc.struct_field(m, [m.type.get_field_index(name)])

    pri = pc.cast(pc.coalesce(field(m5, "pri"), field(m3, "pri")), pa.int32())
    facility = pc.divide(pri, 8)
    severity = pc.subtract(pri, pc.multiply(facility, 8))
    host = pc.coalesce(field(m5, "host"), field(m3, "host"))
    # RFC 5424: ISO 8601 or "-"; RFC 3164: no year, no zone
    ts5 = _iso_ms(pc.if_else(pc.equal(field(m5, "ts"), "-"), pa.scalar(None, pa.string()), field(m5, "ts")))
    year = str(dt.datetime.now(dt.timezone.utc).year)
    ts3 = pc.replace_substring(pc.binary_join_element_wise(year, field(m3, "ts"), " "), "  ", " ")
    ts3 = _ms(pc.strptime(ts3, format="%Y %b %d %H:%M:%S", unit="ms", error_is_null=True))
    msg = pc.coalesce(field(m5, "msg"), field(m3, "msg"), "")
    if keep_fields:
        body = raw
    else:
        body = pc.if_else(valid, pc.cast(msg, pa.large_binary()), raw.cast(pa.large_binary()))
    status = pc.if_else(valid, pa.scalar(None, pa.string()), "Invalid")
    headers = {
        "Facility": pc.cast(facility, pa.string()), "Severity": pc.cast(severity, pa.string()),
        "host": pc.cast(host, pa.string()), "timestamp": pc.coalesce(ts5, ts3),
    }
    if pc.any(pc.invert(valid)).as_py():
        headers["flume.syslog.status"] = status
    out = EventBatch.from_arrow(body.cast(pa.large_binary()))
    return EventBatch(out.data, out.offsets, {k: v for k, v in headers.items() if v.null_count < n})


@dataclass
class SyslogSourceConfig(SourceConfig):
    port: int = setting("port", doc="port to listen on", min=0, max=65535)
    host: str = setting("host", "127.0.0.1", "address to listen on")
    keepFields: str = setting("keepFields", "false", "true/all: the body is the whole message", choices=("false", "true", "all", "none"))
    eventSize: int = setting("eventSize", 2500, "TCP: longest message, bytes", min=16)

    @property
    def keep(self) -> bool:
        return self.keepFields in ("true", "all")


class _SyslogSource(Source):
    Config = SyslogSourceConfig

    def __init__(self, name, config):
        super().__init__(name, config)
        self._stop = threading.Event()
        self.port = config.port

    @property
    def batch_limit(self) -> int:
        """Messages per channel transaction: what the channels take, at most MAX_BATCH."""
        return min(MAX_BATCH, self.processor.max_batch)

    def _put(self, raw: pa.Array) -> bool:
        for start in range(0, len(raw), self.batch_limit):
            batch = parse_syslog(raw.slice(start, self.batch_limit), self.config.keep)
            while True:
                try:
                    self.deliver(batch)
                    break
                except ChannelException as exc:
                    if self._stop.is_set():
                        return False
                    log.warning("%s source %s could not write to channel, retrying: %s", self.TYPE, self.name, exc)
                    self._stop.wait(0.5)
        return True


@dataclass
class SyslogTcpSourceConfig(ListenerConfig, SyslogSourceConfig):
    pass


@SOURCES.register("syslogtcp", "org.apache.flume.source.SyslogTcpSource")
class SyslogTcpSource(_SyslogSource):
    Config = SyslogTcpSourceConfig

    def start(self) -> None:
        super().start()
        c = self.config
        self._stop.clear()
        self.listener = Listener("syslogtcp source %s" % self.name, c.host, c.port, c, self._connection, self.counters)
        self.port = self.listener.port

    def stop(self) -> None:
        self._stop.set()
        self.listener.stop()
        super().stop()

    def _connection(self, conn: socket.socket, peer) -> None:
        """Lines of one connection; TCP's flow control is the back-pressure. At most
        eventSize bytes of an unfinished line are kept: a longer one is cut there and the
        rest of it skipped."""
        size = self.config.eventSize
        pending = b""
        skipping = False        # in the rest of a line already cut
        while True:
            chunk = self.listener.recv(conn, READ_SIZE)
            if chunk is None:
                return
            final = not chunk
            if skipping:
                nl = chunk.find(b"\n")
                if nl < 0:
                    continue
                chunk, skipping = chunk[nl + 1:], False
            data = pending + chunk
            buf, offsets, n, used, _ = split_lines(data, True, final, size)
            lines = pa.Array.from_buffers(pa.large_binary(), n, [None, offsets, buf])
            pending = data[used:]
            if len(pending) > size:
                lines = pa.concat_arrays([lines, pa.array([pending[:size]], pa.large_binary())])
                pending, skipping = b"", True
            if len(lines) and not self._put(lines):
                return
            if final:
                return


@SOURCES.register("syslogudp", "org.apache.flume.source.SyslogUDPSource")
class SyslogUdpSource(_SyslogSource):
    def start(self) -> None:
        super().start()
        c = self.config
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((c.host, c.port))
        except OSError as exc:
            raise OSError("%s source %s: cannot listen on %s:%d: %s" % (self.TYPE, self.name, c.host, c.port, exc.strerror)) from None
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop.clear()
        threading.Thread(target=self._serve, name="%s-%s" % (self.TYPE, self.name), daemon=True).start()
        log.info("%s source %s listening on %s:%d", self.TYPE, self.name, c.host, self.port)

    def stop(self) -> None:
        self._stop.set()
        self.sock.close()
        super().stop()

    def _serve(self) -> None:
        """Datagrams that arrive together form a batch; UDP has no back-pressure, so a
        batch the channel keeps refusing is retried while the socket buffer fills."""
        while not self._stop.is_set():
            try:
                first = self.sock.recv(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            msgs = [first.rstrip(b"\n")]
            self.sock.setblocking(False)
            try:
                while len(msgs) < self.batch_limit:
                    msgs.append(self.sock.recv(65535).rstrip(b"\n"))
            except (BlockingIOError, OSError):
                pass
            finally:
                self.sock.settimeout(0.2)
            if not self._put(pa.array(msgs, pa.large_binary())):
                return
