"""Flume's syslog sources: `syslogtcp` (newline-delimited messages on TCP connections) and
`syslogudp` (one message per datagram).

Messages are parsed a batch at a time with Arrow's regex kernels, with Flume's two patterns
(SyslogUtils): RFC 5424 `<PRI>VERSION TIMESTAMP HOST MSG` and RFC 3164 `<PRI>Mmm dd hh:mm:ss
HOST MSG`. As in Flume, the body is everything after the host (for RFC 5424 that keeps app
name, procid, msgid and structured data: `evntslog - ID47 [...] An application event`), and
the headers are `Facility`, `Severity`, `priority` (the PRI digits), `version`, `host` and
`timestamp` (ms since the epoch). RFC 3164 dates have no year or zone: they are read in the
local zone, in the year that puts them between 11 months ago and 1 month ahead (Flume's
window). RFC 5424 timestamps without an offset are local too; unlike Flume, which drops the
offset of a timestamp with a fraction and reads `.3` as 3 ms, an offset and the fraction are
honoured.

A message that starts with `<` 1-3 digits `>` but fits neither pattern (a bare `<13>`, free
text) is valid: Facility and Severity from PRI, the whole line as the body. Anything else
gets Flume's `flume.syslog.status = Invalid`, `Facility = 0`, `Severity = 0` and its raw
bytes as the body: it is stored, not dropped, and the source keeps running. Empty lines are
skipped, as Flume skips them. With `keepFields = true` the body is always the whole line.

TCP: as in Flume, a line is cut every `eventSize` bytes while it is read: each piece of
`eventSize` bytes is an event with `flume.syslog.status = Incomplete` (parsed as far as it
goes), and the bytes after a cut are read as the next message (so a piece that does not
start with a `<PRI>` is `Invalid`), none of it dropped. A connection never holds more than
`eventSize` bytes of a line whatever a client sends; the listening socket and its limits
(`backlog`, `maxConnections`, `idleTimeout`) are listener.py's.
"""
from __future__ import annotations

import calendar
import datetime as dt
import logging
import re
import socket
import threading
import time
from dataclasses import dataclass

import numpy as np
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

# Flume's patterns (SyslogUtils.SYSLOG_MSG_RFC5424_0 / _RFC3164_0), in RE2: Java's \s, and
# Java's `.`, which stops at line terminators (Flume matches the whole message with matches()).
_SP = r"[\t\n\x0B\f\r ]"
_MSG = r"(?P<msg>[^\n\r\x{85}\x{2028}\x{2029}]*)$"
PRI = r"^<(?P<pri>\d{1,3})>"
RFC5424 = (PRI + r"(?P<ver>\d?)" + _SP + r"?(?:(?P<ts>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?"
           r"(?:[+-]\d{2}:\d{2}|Z)?)|-)" + _SP + r"(?:(?P<host>\w[\w.@\-]*)|-)" + _SP + _MSG)
RFC3164 = (PRI + r"(?P<ver>\d)?" + _SP + r"?(?P<ts>[A-Z][a-z][a-z]" + _SP + r"{1,2}\d{1,2}" + _SP +
           r"\d{2}:\d{2}:\d{2})" + _SP + r"(?P<host>\w[\w.@-]*)" + _SP + _MSG)
_RFC3164_TS = re.compile(r"([A-Z][a-z][a-z])\s{1,2}(\d{1,2})\s(\d\d):(\d\d):(\d\d)")
_MONTHS = {m: i for i, m in enumerate(calendar.month_abbr) if m}


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


def _per_value(text: pa.Array, convert) -> pa.Array:
    """convert(str) -> str | None applied once per distinct value (a batch's messages share
    few timestamps), mapped back over the array with Arrow."""
    distinct = pc.unique(text.drop_null())
    values = pa.array([convert(t) for t in distinct.to_pylist()], pa.string())
    return pc.take(values, pc.index_in(text, distinct))


def _local_ms(t: dt.datetime) -> int:
    """A wall-clock time in the local zone (TZ) -> ms since the epoch."""
    return round(t.timestamp() * 1000)


def _add_months(t: dt.datetime, months: int) -> dt.datetime:
    """Java's Calendar.add(MONTH, n): the day is clamped to the month's length."""
    y, m = divmod(t.month - 1 + months, 12)
    year = t.year + y
    return t.replace(year=year, month=m + 1, day=min(t.day, calendar.monthrange(year, m + 1)[1]))


def _rfc3164_ms(text: str, now_ms: int, year: int) -> str | None:
    """`Mmm dd hh:mm:ss` -> ms, read as Flume reads it: leniently (`Feb 30` is 2 March), in
    the local zone, in this (UTC) year moved a year back when it is more than a month ahead
    or a year on when it is more than 11 months ago."""
    m = _RFC3164_TS.fullmatch(text)
    month = _MONTHS.get(m.group(1)) if m else None
    if month is None:
        return None
    day, hh, mm, ss = (int(g) for g in m.groups()[1:])
    t = dt.datetime(year, month, 1) + dt.timedelta(days=day - 1, hours=hh, minutes=mm, seconds=ss)
    at = _local_ms(t)
    if at > now_ms and _local_ms(_add_months(t, -1)) > now_ms:
        t = _add_months(t, -12)
    elif at < now_ms and _local_ms(_add_months(t, 11)) < now_ms:
        t = _add_months(t, 12)
    return str(_local_ms(t))


def _zoneless_ms(text: str) -> str | None:
    """An RFC 5424 timestamp without an offset: local time, as Flume reads it."""
    try:
        return str(_local_ms(dt.datetime.fromisoformat(text)))
    except (ValueError, OverflowError, OSError):
        return None


def _text(a: pa.Array) -> pa.Array:
    """A regex group: "" (did not take part) -> null."""
    return pc.if_else(pc.equal(a, ""), pa.scalar(None, pa.string()), a)


def parse_syslog(raw: pa.Array, keep_fields: bool = False, incomplete: pa.Array | None = None) -> EventBatch:
    """Syslog messages (a binary array) -> one EventBatch with Flume's syslog headers.
    Never raises on the messages' content: what fits no pattern is stored as it came.
    `incomplete` marks the pieces of a line cut at eventSize (Flume's status Incomplete)."""
    raw = raw.cast(pa.large_binary())
    nonempty = pc.greater(pc.binary_length(raw), 0)
    raw = raw.filter(nonempty)      # Flume skips empty lines
    if incomplete is not None:
        incomplete = incomplete.filter(nonempty)
    n = len(raw)
    if not n:
        return EventBatch.empty()
    text = as_utf8(raw)          # not UTF-8: parsed with the bad bytes replaced, as Flume decodes
    prefix = pc.extract_regex(text, PRI)
    valid = pc.is_valid(prefix)
    # each pattern only where it can still match (others blanked): a batch of one kind pays once
    empty = pa.scalar("", pa.string())
    m5 = pc.extract_regex(pc.if_else(valid, text, empty), RFC5424)
    m3 = pc.extract_regex(pc.if_else(pc.and_not(valid, pc.is_valid(m5)), text, empty), RFC3164)

    def field(name):      # RFC 5424's group, else RFC 3164's (Flume tries 5424 first)
        return pc.coalesce(*(pc.struct_field(m, [m.type.get_field_index(name)]) for m in (m5, m3)
                             if m.type.get_field_index(name) >= 0))

    pri = pc.cast(pc.struct_field(prefix, [0]), pa.int32())     # Invalid: null -> 0, as in Flume
    facility = pc.divide(pri, 8)
    severity = pc.fill_null(pc.subtract(pri, pc.multiply(facility, 8)), 0)
    facility = pc.fill_null(facility, 0)
    ts5 = _text(pc.struct_field(m5, [m5.type.get_field_index("ts")]))
    zoned = pc.match_substring_regex(ts5, r"(Z|[+-]\d\d:\d\d)$")
    ts5_zoned = _iso_ms(pc.if_else(zoned, ts5, pa.scalar(None, pa.string())))
    ts5_local = _per_value(pc.if_else(zoned, pa.scalar(None, pa.string()), ts5), _zoneless_ms)
    now = time.time()
    year = dt.datetime.fromtimestamp(now, dt.timezone.utc).year
    ts3 = _per_value(pc.struct_field(m3, [m3.type.get_field_index("ts")]),
                     lambda t: _rfc3164_ms(t, round(now * 1000), year))
    msg = field("msg")
    if keep_fields:
        body = raw
    else:    # as Flume: the message part, or the whole line when that is empty or nothing matched
        body = pc.if_else(pc.fill_null(pc.not_equal(msg, ""), False), pc.cast(msg, pa.large_binary()), raw)
    headers = {
        "Facility": pc.cast(facility, pa.string()), "Severity": pc.cast(severity, pa.string()),
        "priority": field("pri"), "version": _text(field("ver")),
        "timestamp": pc.coalesce(ts5_zoned, ts5_local, ts3), "host": _text(field("host")),
        # as in Flume, Invalid wins over Incomplete
        "flume.syslog.status": pc.if_else(valid, pa.scalar(None, pa.string()) if incomplete is None else
                                          pc.if_else(incomplete, "Incomplete", pa.scalar(None, pa.string())), "Invalid"),
    }
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

    def __init__(self, name, config, processor=None):
        super().__init__(name, config, processor)
        self._stop = threading.Event()
        self.port = config.port

    @property
    def batch_limit(self) -> int:
        """Messages per channel transaction: what the channels take, at most MAX_BATCH."""
        return min(MAX_BATCH, self.processor.max_batch)

    def _put(self, raw: pa.Array, incomplete: pa.Array | None = None) -> bool:
        for start in range(0, len(raw), self.batch_limit):
            batch = parse_syslog(raw.slice(start, self.batch_limit), self.config.keep,
                                 None if incomplete is None else incomplete.slice(start, self.batch_limit))
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
    """Syslog messages, one per line, on TCP connections; each becomes an event with the syslog fields as headers."""

    Config = SyslogTcpSourceConfig

    def start(self) -> None:
        super().start()
        c = self.config
        self._stop.clear()
        self.listener = Listener("syslogtcp source %s" % self.name, c.host, c.port, c, self._connection, self.counters)
        self.port = self.listener.port
        self.listener.start()

    def stop(self) -> None:
        self._stop.set()
        self.listener.stop()
        super().stop()

    def _connection(self, conn: socket.socket, peer) -> None:
        """Lines of one connection; TCP's flow control is the back-pressure. At most
        eventSize bytes of an unfinished line are kept: a longer one goes on in pieces."""
        size = self.config.eventSize
        pending = bytearray()       # holds no newline between reads
        while True:
            chunk = self.listener.recv(conn, READ_SIZE)
            if chunk is None:
                return
            final = not chunk
            pending += chunk
            if not final and len(pending) < size and b"\n" not in chunk:
                continue            # a line still short of eventSize: wait for more
            lines, used = tcp_pieces(pending, size, final)
            del pending[:used]
            if len(lines) and not self._put(lines, pc.equal(pc.binary_length(lines), size)):
                return
            if final:
                return


def tcp_pieces(data, size: int, final: bool) -> tuple[pa.Array, int]:
    """The messages of data as Flume's syslogtcp reads them: each line (its '\r\n' or '\n'
    dropped) cut every `size` bytes, and the front of an unfinished last line too while it
    has `size` bytes or more. A piece of exactly `size` bytes is an incomplete message.
    Returns (messages, bytes of data used)."""
    buf, offsets, n, used, _ = split_lines(data, True, final)
    offs = np.frombuffer(offsets, dtype=np.int64)
    lens = np.diff(offs)
    if n and lens.max() > size:       # cut the long lines: more offsets into the same bodies
        counts = np.maximum(1, -(-lens // size))
        first = np.repeat(np.cumsum(counts) - counts, counts)
        offs = np.append(np.repeat(offs[:-1], counts) + size * (np.arange(counts.sum()) - first), offs[-1])
    lines = pa.Array.from_buffers(pa.large_binary(), len(offs) - 1, [None, pa.py_buffer(offs), buf])
    k = (len(data) - used) // size
    if k:       # the front of the unfinished line
        rest = bytes(data[used:used + k * size])
        cut = pa.Array.from_buffers(pa.large_binary(), k, [None, pa.py_buffer(np.arange(k + 1, dtype=np.int64) * size),
                                                            pa.py_buffer(rest)])
        lines = pa.concat_arrays([lines, cut])
        used += k * size
    return lines, used


@SOURCES.register("syslogudp", "org.apache.flume.source.SyslogUDPSource")
class SyslogUdpSource(_SyslogSource):
    """Syslog messages, one per UDP datagram; each becomes an event with the syslog fields as headers."""

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
