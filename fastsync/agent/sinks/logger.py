"""Flume's `logger` sink: logs each event as Flume's LoggerSink prints it, e.g.
`Event: { headers:{a=b} body: 68 65 6C 6C 6F                                  hello }`."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from fastsync.agent.component import SINKS, setting
from fastsync.agent.sink import Sink, SinkConfig

log = logging.getLogger("fastsync.sink.logger")


def dump_event(body: bytes, headers: dict, max_bytes: int = 16) -> str:
    """Flume's EventHelper.dumpEvent: hex, then printable ASCII, 16 bytes a line."""
    head = "{%s}" % ", ".join("%s=%s" % kv for kv in headers.items())
    body = body[:max_bytes]
    if not body:
        return "Event: { headers:%s body: }" % head
    rows = []
    for start in range(0, len(body), 16):
        row = body[start:start + 16]
        hexs = "".join("%02X " % b for b in row) + "   " * (16 - len(row))
        text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in row)
        prefix = "" if start == 0 else "%08X" % start
        rows.append("%s %s%s" % (prefix, hexs, text))
    return "Event: { headers:%s body:%s }" % (head, "\n".join(rows))


@dataclass
class LoggerSinkConfig(SinkConfig):
    maxBytesToLog: int = setting("maxBytesToLog", 16, "body bytes shown per event", min=0)
    batchSize: int = setting("batchSize", 100, "events per take transaction", min=1)


@SINKS.register("logger", "org.apache.flume.sink.LoggerSink")
class LoggerSink(Sink):
    Config = LoggerSinkConfig

    def deliver(self, batch) -> None:
        if not log.isEnabledFor(logging.INFO):
            return
        for event in batch.events():
            log.info(dump_event(event.body, event.headers, self.config.maxBytesToLog))
