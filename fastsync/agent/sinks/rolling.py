"""What the `hdfs` and `parquet` sinks share: Flume's bucket paths and file rolling.

A path template (`<prefix>.path` + `/` + `<prefix>.filePrefix`) holds Flume's escapes:
`%Y %m %d %H %M %S %y %j` (local time, or `timeZone`), `%s` (epoch seconds) from the event's `timestamp`
header (ms) or the local clock, rounded down with `round`/`roundValue`/`roundUnit`, and
`%{header}`. A batch is routed without a Python step per event: the distinct timestamps and
header values are found with numpy/Arrow, a path is rendered once per distinct combination,
and each path's events are taken out with one Arrow `take`.

Each resolved path is a bucket with at most one open file, written under its in-use name
(`<inUsePrefix><filePrefix>.<counter><fileSuffix><inUseSuffix>`, the counter starting at
the bucket's creation time in ms, as Flume's BucketWriter) and renamed when it is rolled:
after `rollCount` events, `rollSize` bytes, `rollInterval` seconds, `idleTimeout` seconds
without a write, or at stop. A take is committed after every file it wrote to was flushed.
"""
from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import make_dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from fastsync.agent.component import Place, setting
from fastsync.agent.sink import Sink, SinkConfig
from fastsync.event import EventBatch

log = logging.getLogger("fastsync.sink.rolling")

TIME_ESCAPES = "YmdHMSyjs"
ROUND_UNITS = {"second": 1, "minute": 60, "hour": 3600}
_ESCAPE = re.compile(r"%(\{[^}]*\}|.?)")


def rolling_config(prefix: str, name: str, file_prefix: str = "FlumeData", file_suffix: str = ""):
    """The config dataclass (a SinkConfig) of the shared keys, all under `<prefix>.`."""
    def s(key, *args, **kw):
        return setting("%s.%s" % (prefix, key), *args, **kw)
    specs = [
        ("path", str, s("path", doc="directory (local path or filesystem URL) with escapes")),
        ("filePrefix", str, s("filePrefix", file_prefix, "file name prefix (escapes allowed)")),
        ("fileSuffix", str, s("fileSuffix", file_suffix, "file name suffix")),
        ("inUsePrefix", str, s("inUsePrefix", "", "prefix of a file being written")),
        ("inUseSuffix", str, s("inUseSuffix", ".tmp", "suffix of a file being written")),
        ("rollInterval", int, s("rollInterval", 30, "seconds before a file is rolled; 0: never", min=0)),
        ("rollSize", int, s("rollSize", 1024, "bytes before a file is rolled; 0: never", min=0)),
        ("rollCount", int, s("rollCount", 10, "events before a file is rolled; 0: never", min=0)),
        ("idleTimeout", int, s("idleTimeout", 0, "seconds without writes before a file is closed; 0: never", min=0)),
        ("maxOpenFiles", int, s("maxOpenFiles", 5000, "open files at most; the least recently written is closed", min=1)),
        ("batchSize", int, s("batchSize", 100, "events per take transaction", min=1)),
        ("timeZone", str, s("timeZone", "", "time zone of the escapes, e.g. UTC (default: the local one)")),
        ("useLocalTimeStamp", bool, s("useLocalTimeStamp", False, "escape times from the local clock")),
        ("round", bool, s("round", False, "round the timestamp down")),
        ("roundValue", int, s("roundValue", 1, "round down to this many roundUnits", min=1)),
        ("roundUnit", str, s("roundUnit", "second", "unit of roundValue", choices=tuple(ROUND_UNITS))),
        ("fsync", bool, s("fsync", False, "fsync each file a take wrote to before the commit (local files)")),
    ]
    cls = make_dataclass(name, specs, bases=(SinkConfig,))
    cls.KEY_PREFIX = prefix
    cls.validate = _validate_rolling
    return cls


def _validate_rolling(self, place: Place) -> None:
    key = self.KEY_PREFIX + ".%s"
    if not self.path:
        raise place.error(key % "path", "required key is missing")
    limit = 24 if self.roundUnit == "hour" else 60
    if self.round and self.roundValue > limit:
        raise place.error(key % "roundValue", "must be at most %d for roundUnit %s, got %d" % (limit, self.roundUnit, self.roundValue))
    try:
        self.template = PathTemplate(self.path, self.filePrefix, self.timeZone)
    except TemplateError as exc:
        raise place.error(key % exc.key, str(exc)) from None


class TemplateError(ValueError):
    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


# pyarrow's filesystem URL schemes; a remote one is connected to on the first write, so an
# unreachable store is retried like any failed delivery instead of failing the start
REMOTE_SCHEMES = ("hdfs", "viewfs", "s3", "gs", "gcs", "abfs", "abfss", "mock")


class PathTemplate:
    """`path/filePrefix` parsed into literals, time escapes and header escapes; the
    filesystem is taken from the part before the first escape."""

    def __init__(self, path: str, file_prefix: str, zone: str = ""):
        try:
            self.zone = ZoneInfo(zone) if zone else None
        except (ZoneInfoNotFoundError, ValueError):
            raise TemplateError("timeZone", "unknown time zone %r" % zone) from None
        cut = path.find("%")
        self.static = path if cut < 0 else path[:cut]
        rest = _parse("" if cut < 0 else path[cut:], "path")
        self.name_parts = _parse(file_prefix, "filePrefix")
        scheme = self.static.split("://", 1)[0].lower() if "://" in self.static else ""
        self._fs = None
        if scheme in ("", "file", "local"):
            self._connect()
        elif scheme not in REMOTE_SCHEMES:
            raise TemplateError("path", "unsupported filesystem %r in %r (supported: local paths, file://, %s)"
                                % (scheme, path, ", ".join(s + "://" for s in REMOTE_SCHEMES)))
        self.rest = rest
        parts = rest + self.name_parts
        self.uses_time = any(kind == "time" for kind, _ in parts)
        self.headers = list(dict.fromkeys(v for kind, v in parts if kind == "header"))

    def _connect(self) -> None:
        try:
            if "://" in self.static:
                fs, head = pafs.FileSystem.from_uri(self.static)
            else:
                fs, head = pafs.LocalFileSystem(), os.path.abspath(self.static) + ("/" if self.static.endswith("/") else "")
        except (pa.ArrowInvalid, ValueError, OSError) as exc:
            raise TemplateError("path", "cannot open filesystem %r: %s" % (self.static, str(exc).splitlines()[0])) from None
        if self.static.endswith("/") and not head.endswith("/"):
            head += "/"
        self._fs, self.head = fs, head

    @property
    def fs(self):
        if self._fs is None:
            self._connect()
        return self._fs

    @property
    def local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def when(self, secs: int):
        """(struct_time, UTC offset in s) of an instant in the template's time zone."""
        if self.zone is None:
            t = time.localtime(secs)
            return t, t.tm_gmtoff
        d = datetime.fromtimestamp(secs, self.zone)
        return d.timetuple(), int(d.utcoffset().total_seconds())

    def render(self, secs: int | None, values: dict) -> tuple[str, str]:
        """(directory, file name prefix) for one bucket."""
        t = self.when(secs)[0] if secs is not None else None

        def one(parts):
            out = []
            for kind, v in parts:
                if kind == "lit":
                    out.append(v)
                elif kind == "header":
                    out.append(values.get(v) or "")
                else:
                    out.append(str(secs) if v == "s" else time.strftime("%" + v, t))
            return "".join(out)
        self.fs   # noqa: B018  (connects, setting self.head)
        return (self.head + one(self.rest)).rstrip("/") or "/", one(self.name_parts)


def _parse(text: str, key: str):
    parts, pos = [], 0
    for m in _ESCAPE.finditer(text):
        if m.start() > pos:
            parts.append(("lit", text[pos:m.start()]))
        esc = m.group(1)
        if esc.startswith("{"):
            if len(esc) < 3:
                raise TemplateError(key, "empty header escape %{}")
            parts.append(("header", esc[1:-1]))
        elif esc and esc in TIME_ESCAPES:
            parts.append(("time", esc))
        else:
            raise TemplateError(key, "unsupported escape %%%s in %r (supported: %s, %%{header})"
                                % (esc, text, " ".join("%" + c for c in TIME_ESCAPES)))
        pos = m.end()
    if pos < len(text):
        parts.append(("lit", text[pos:]))
    return parts


def _codes(col) -> tuple[np.ndarray, list]:
    """(index per event, distinct values) of a string column or shared value."""
    if isinstance(col, str) or col is None:
        return None, [col]
    enc = pc.dictionary_encode(col.fill_null(""))
    return enc.indices.to_numpy(zero_copy_only=False).astype(np.int64), enc.dictionary.to_pylist()


def event_seconds(batch: EventBatch, config) -> tuple[np.ndarray | None, int | None]:
    """(seconds per event, or None with one shared value) for the path's time escapes."""
    if config.useLocalTimeStamp:
        return None, int(time.time())
    col = batch.headers.get("timestamp")
    if col is None or (not isinstance(col, str) and col.null_count):
        raise ValueError("Expected timestamp in the Flume event headers, but it wasn't found")
    try:
        if isinstance(col, str):
            return None, int(col) // 1000
        return np.floor_divide(pc.cast(col, pa.int64()).to_numpy(), 1000), None
    except (ValueError, pa.ArrowInvalid) as exc:
        raise ValueError("invalid timestamp header: %s" % str(exc).splitlines()[0]) from None


def route(batch: EventBatch, template: PathTemplate, config) -> list[tuple[tuple[str, str], EventBatch]]:
    """The batch split by resolved bucket: [((directory, name prefix), events)]."""
    dims = []          # (codes per event or None when shared by the batch, distinct values)
    if template.uses_time:
        secs, shared = event_seconds(batch, config)
        if secs is None:
            dims.append((None, [shared]))
        else:
            distinct, inv = np.unique(secs, return_inverse=True)
            dims.append((inv.reshape(-1).astype(np.int64), [int(s) for s in distinct]))
    dims.extend(_codes(batch.headers.get(h)) for h in template.headers)
    step = ROUND_UNITS[config.roundUnit] * config.roundValue if config.round else 1

    def render(combo):
        secs = combo.pop(0) if template.uses_time else None
        if secs is not None and step > 1:
            off = template.when(secs)[1]
            secs = (secs + off) // step * step - off
        return template.render(secs, dict(zip(template.headers, combo)))

    keys = [codes for codes, _ in dims if codes is not None]
    if not keys:
        return [(render([values[0] for _, values in dims]), batch)]
    groups, gid = np.unique(np.stack(keys, axis=1), axis=0, return_inverse=True)
    paths: dict[tuple[str, str], int] = {}
    path_of_group = np.empty(len(groups), dtype=np.int64)
    for g, row in enumerate(groups):
        it = iter(row)
        combo = [values[next(it)] if codes is not None else values[0] for codes, values in dims]
        path_of_group[g] = paths.setdefault(render(combo), len(paths))
    if len(paths) == 1:
        return [(next(iter(paths)), batch)]
    pid = path_of_group[gid.reshape(-1)]
    order = np.argsort(pid, kind="stable")
    bounds = np.searchsorted(pid[order], np.arange(len(paths) + 1))
    table = batch.to_arrow()
    return [(path, EventBatch.from_arrow(table.take(pa.array(order[bounds[p]:bounds[p + 1]]))))
            for path, p in paths.items()]


class FileWriter:
    """One open file of a bucket. Subclasses write events in their format."""

    def __init__(self, fs, path: str):
        self.path = path
        self.raw = fs.open_output_stream(path)
        self.count = 0          # events written
        self.bytes = 0          # bytes counted for rollSize

    def sizes(self, events: EventBatch):
        """Each event's contribution to rollSize, when known before writing (else None)."""
        return None

    def accepts(self, events: EventBatch) -> bool:
        """Whether these events fit this file (e.g. its schema)."""
        return True

    def write(self, events: EventBatch) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        pass

    def close(self) -> None:
        raise NotImplementedError


class Bucket:
    """A resolved path and its open file, if any."""

    def __init__(self, directory: str, name: str, least: int = 0):
        self.directory, self.name = directory, name
        # Flume: the BucketWriter's creation time in ms, + 1 per file; never below a counter
        # this sink already used, so a bucket reopened within the same ms reuses no name
        self.counter = max(int(time.time() * 1000), least)
        self.writer: FileWriter | None = None
        self.tmp = self.final = ""
        self.opened_at = self.last_write = 0.0


class RollingSink(Sink):
    """Routes each batch to its buckets and rolls their files; subclasses make writers."""

    KIND = "?"
    DEFAULT_EXTENSION = ""

    def __init__(self, name, config):
        super().__init__(name, config)
        self.template: PathTemplate = config.template
        self.buckets: dict[tuple[str, str], Bucket] = {}
        self.next_counter = 0

    def new_writer(self, fs, path: str) -> FileWriter:
        raise NotImplementedError

    # -- files --
    def _open(self, b: Bucket) -> FileWriter:
        c = self.config
        stem = "%s.%d%s" % (b.name, b.counter, c.fileSuffix or self.DEFAULT_EXTENSION)
        b.counter += 1
        self.next_counter = max(self.next_counter, b.counter)
        b.final = "%s/%s" % (b.directory.rstrip("/"), stem)
        b.tmp = "%s/%s%s%s" % (b.directory.rstrip("/"), c.inUsePrefix, stem, c.inUseSuffix)
        try:
            self.template.fs.create_dir(b.directory, recursive=True)
            b.writer = self.new_writer(self.template.fs, b.tmp)
        except OSError:
            self.counters.add(ConnectionFailedCount=1)
            raise
        b.opened_at = b.last_write = time.monotonic()
        self.counters.add(ConnectionCreatedCount=1)
        log.info("%s sink %s: creating %s", self.KIND, self.name, b.tmp)
        return b.writer

    def _close(self, b: Bucket, why: str) -> None:
        w, b.writer = b.writer, None
        if w is None:
            return
        w.close()
        if self.config.fsync and self.template.local:
            _fsync(b.tmp)
        if b.tmp != b.final:
            self.template.fs.move(b.tmp, b.final)
        self.counters.add(ConnectionClosedCount=1)
        log.info("%s sink %s: closed %s (%s, %d events)", self.KIND, self.name, b.final, why, w.count)

    def _abandon(self, b: Bucket) -> None:
        try:
            self._close(b, "write failed")
        except Exception as exc:
            log.warning("%s sink %s: cannot close %s after a failed write: %s", self.KIND, self.name, b.tmp, exc)

    def _full(self, w: FileWriter) -> bool:
        c = self.config
        return (c.rollCount > 0 and w.count >= c.rollCount) or (c.rollSize > 0 and w.bytes >= c.rollSize)

    # -- delivery --
    def deliver(self, batch: EventBatch) -> None:
        self._roll_on_time()
        touched = []
        for key, events in route(batch, self.template, self.config):
            b = self.buckets.pop(key, None)     # re-inserted last: the dict is in LRU order
            if b is None:
                while len(self.buckets) >= self.config.maxOpenFiles:
                    self._close(self.buckets.pop(next(iter(self.buckets))), "maxOpenFiles")
                b = Bucket(*key, self.next_counter)
            self.buckets[key] = b
            try:
                self._write(b, events)
            except Exception:
                self._abandon(b)    # the take is rolled back: its retry opens a new file
                raise
            touched.append(b)
        for b in touched:
            if b.writer is not None:
                b.writer.flush()
                if self.config.fsync and self.template.local:
                    _fsync(b.tmp)

    def _write(self, b: Bucket, events: EventBatch) -> None:
        c = self.config
        pos, n = 0, len(events)
        while pos < n:
            w = b.writer
            if w is not None and not w.accepts(events.slice(pos, n)):
                self._close(b, "new header")
                w = None
            if w is None:
                w = self._open(b)
            take = n - pos
            if c.rollCount > 0:
                take = min(take, c.rollCount - w.count)
            sizes = w.sizes(events.slice(pos, pos + take)) if c.rollSize > 0 else None
            if sizes is not None and len(sizes):
                # up to and including the event that reaches rollSize
                reach = np.searchsorted(np.cumsum(sizes), c.rollSize - w.bytes, side="left")
                take = min(take, int(reach) + 1)
            w.write(events.slice(pos, pos + take))
            w.count += take
            pos += take
            b.last_write = time.monotonic()
            if self._full(w):
                self._close(b, "rollCount" if c.rollCount > 0 and w.count >= c.rollCount else "rollSize")

    def _roll_on_time(self) -> None:
        c = self.config
        now = time.monotonic()
        for key, b in list(self.buckets.items()):
            if b.writer is not None and c.rollInterval > 0 and now - b.opened_at >= c.rollInterval:
                self._close(b, "rollInterval")
            elif b.writer is not None and c.idleTimeout > 0 and now - b.last_write >= c.idleTimeout:
                self._close(b, "idleTimeout")
            if b.writer is None:
                del self.buckets[key]     # closed: a later event opens a new bucket (new counter)

    def idle(self) -> None:
        self._roll_on_time()

    def stop(self) -> None:
        for b in self.buckets.values():
            try:
                self._close(b, "stop")
            except Exception:
                log.exception("%s sink %s: cannot close %s", self.KIND, self.name, b.tmp)
        self.buckets.clear()
        super().stop()


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
