"""Flume's `netcat` source: every line received on a TCP connection becomes an event.

Lines that arrive together are put into the channels as one batch; with ack-every-event,
each event is answered "OK\n" only after that batch was committed, or
"FAILED: <reason>\n" if a channel refused it. A line longer than max-line-length
(characters as Flume counts them: Java chars of the line decoded from UTF-8, newline
included) is answered with Flume's FAILED message and the connection is closed.
The listening socket and its limits (`backlog`, `maxConnections`, `idleTimeout`) are
listener.py's; a connection past `maxConnections` is answered "FAILED: ..." and closed.
"""
from __future__ import annotations

import logging
import socket
from dataclasses import dataclass

import numpy as np

from fastsync._native import split_lines
from fastsync.agent.component import SOURCES, setting
from fastsync.agent.errors import ChannelException
from fastsync.agent.source import Source
from fastsync.agent.sources.listener import Listener, ListenerConfig
from fastsync.event import EventBatch

log = logging.getLogger("fastsync.source.netcat")


@dataclass
class NetcatSourceConfig(ListenerConfig):
    bind: str = setting("bind", doc="address to listen on")
    port: int = setting("port", doc="TCP port to listen on", min=0, max=65535)
    maxLineLength: int = setting("max-line-length", 512, "longest line accepted, in characters, newline included", min=2)
    ackEveryEvent: bool = setting("ack-every-event", True, "answer OK for every committed event")
    encoding: str = setting("encoding", "utf-8", "accepted for compatibility; bodies are the raw bytes")


@SOURCES.register("netcat", "org.apache.flume.source.NetcatSource")
class NetcatSource(Source):
    Config = NetcatSourceConfig

    def __init__(self, name, config, processor=None):
        super().__init__(name, config, processor)
        self.listener: Listener | None = None
        self.port = config.port
        self._utf8 = True

    def start(self) -> None:
        super().start()
        c = self.config
        self._utf8 = c.encoding.strip().lower().replace("_", "-") in ("utf-8", "utf8")
        refusal = b"FAILED: too many connections (maxConnections %d)\n" % c.maxConnections
        self.listener = Listener("netcat source %s" % self.name, c.bind, c.port, c, self._serve, self.counters, refusal)
        self.port = self.listener.port
        self.listener.start()

    def stop(self) -> None:
        if self.listener is not None:
            self.listener.stop(wait=10)
        super().stop()

    def _serve(self, conn: socket.socket, peer) -> None:
        c = self.config
        buf = bytearray()
        try:
            while True:
                chunk = self.listener.recv(conn)
                if not chunk:       # end, stop or idle
                    break
                buf += chunk
                data, offsets, n, used, _ = split_lines(buf, strip_cr=False)
                offsets = np.frombuffer(offsets, dtype=np.int64)
                lengths = np.diff(offsets)
                if len(lengths) and lengths.max() + 1 > c.maxLineLength:     # in bytes: count the chars
                    lengths = np.diff(char_counts(memoryview(data)[:offsets[-1]], self._utf8)[offsets])
                too_long = np.flatnonzero(lengths + 1 > c.maxLineLength)
                good = int(too_long[0]) if len(too_long) else n
                if good:
                    lines = EventBatch(data, offsets[:good + 1])
                    step = self.processor.max_batch
                    for start in range(0, good, step):
                        self._commit_and_ack(conn, lines.slice(start, start + step))
                if good < n or (good == n and len(buf) - used >= c.maxLineLength
                                and char_counts(memoryview(buf)[used:], self._utf8)[-1] >= c.maxLineLength):
                    conn.sendall(b"FAILED: Event exceeds the maximum length (%d chars, including newline)\n" % c.maxLineLength)
                    self.counters.add(EventReadFail=1)
                    break
                del buf[:used]
        except OSError as exc:
            log.info("netcat source %s: connection from %s ended: %s", self.name, peer, exc)

    def _commit_and_ack(self, conn: socket.socket, batch: EventBatch) -> None:
        try:
            self.deliver(batch)
        except ChannelException as exc:
            msg = str(exc).replace("\n", " ")
            conn.sendall(("FAILED: %s\n" % msg).encode() * len(batch))
            return
        if self.config.ackEveryEvent:
            conn.sendall(b"OK\n" * len(batch))


def char_counts(buf, utf8: bool = True) -> np.ndarray:
    """Java chars in buf[:i] for every i in 0..len(buf): a UTF-8 lead byte counts 1, a
    4-byte sequence's lead 2 (a surrogate pair), continuation bytes 0; other charsets are
    taken as one char a byte."""
    a = np.frombuffer(bytes(buf), dtype=np.uint8)
    w = np.ones(len(a), dtype=np.int64) if not utf8 else ((a & 0xC0) != 0x80).astype(np.int64) + (a >= 0xF0)
    out = np.zeros(len(a) + 1, dtype=np.int64)
    np.cumsum(w, out=out[1:])
    return out
