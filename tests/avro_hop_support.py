"""The real Flume as the far end of our avro hop: a collector agent (avro source -> channel
-> file_roll writing Avro `avro_event` files, so bodies come back byte for byte, binary or
empty, with their headers) and readers of what it wrote.
"""
from __future__ import annotations

import io
from pathlib import Path

import fastavro

from e2e_support import free_port, poll, wait_for_port, write_config


def collector_config(name: str, port: int, out: Path, tmp: Path, *, durable: bool = False, **source) -> Path:
    """A Flume agent `name`: avro source on 127.0.0.1:port (extra source keys) -> memory (or
    file, durable) channel -> file_roll into `out` as avro_event files."""
    out.mkdir(parents=True, exist_ok=True)
    p = "%s." % name
    cfg = {
        p + "sources": "r1", p + "channels": "c1", p + "sinks": "k1",
        p + "sources.r1.type": "avro", p + "sources.r1.bind": "127.0.0.1", p + "sources.r1.port": port,
        p + "sources.r1.channels": "c1",
        p + "sinks.k1.type": "file_roll", p + "sinks.k1.channel": "c1", p + "sinks.k1.sink.directory": out,
        p + "sinks.k1.sink.serializer": "avro_event", p + "sinks.k1.sink.rollInterval": 0,
        p + "sinks.k1.sink.batchSize": 1000,
    }
    if durable:
        cfg.update({p + "channels.c1.type": "file", p + "channels.c1.checkpointDir": tmp / (name + "-ck"),
                    p + "channels.c1.dataDirs": tmp / (name + "-data"), p + "channels.c1.transactionCapacity": 10000,
                    p + "channels.c1.minimumRequiredSpace": 0})
    else:
        cfg.update({p + "channels.c1.type": "memory", p + "channels.c1.capacity": 200000,
                    p + "channels.c1.transactionCapacity": 10000})
    cfg.update({p + "sources.r1." + k: v for k, v in source.items()})
    return write_config(tmp, cfg, name + ".properties")


def start_collector(flume, tmp: Path, name: str = "col", port: int | None = None, out: Path | None = None, **kw):
    """(process, port, out dir) of a started Flume collector, once its port is open."""
    port = port or free_port()
    out = out or tmp / (name + "-out")
    proc = flume(name, collector_config(name, port, out, tmp, **kw))
    wait_for_port(port, timeout=60, alive=lambda: proc.alive)
    return proc, port, out


def flume_events(out: Path) -> list[tuple[dict, bytes]]:
    """(headers, body) of every event in the collector's files; a block still being written
    (or torn by kill -9) ends a file's read."""
    events: list[tuple[dict, bytes]] = []
    for f in sorted(out.iterdir()) if out.exists() else ():
        data = f.read_bytes()
        if not data:
            continue
        try:
            for rec in fastavro.reader(io.BytesIO(data)):
                events.append((rec["headers"], rec["body"]))
        except Exception:       # a partial block at the end
            pass
    return events


def bodies(out: Path) -> list[bytes]:
    return [b for _, b in flume_events(out)]


def wait_for_bodies(out: Path, n: int, timeout: float = 60) -> list[bytes]:
    """The bodies once at least n arrived."""
    return poll(lambda: (lambda got: got if len(got) >= n else None)(bodies(out)), timeout,
                message="waiting for %d events in %s" % (n, out))
