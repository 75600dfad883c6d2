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
import posixpath
import re
import time
from dataclasses import make_dataclass
from datetime import datetime
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from fastsync.agent.component import Place, setting
from fastsync.agent.deadletter import DeadLetterFile, dead_letter_setting
from fastsync.agent.errors import EventDeliveryException
from fastsync.agent.metrics import SINK_COUNTERS, Counters
from fastsync.agent.sink import Sink, SinkConfig
from fastsync.event import EventBatch

log = logging.getLogger("fastsync.sink.rolling")

TIME_ESCAPES = "YmdHMSyjs"
ROUND_UNITS = {"second": 1, "minute": 60, "hour": 3600}
_ESCAPE = re.compile(r"%(\{[^}]*\}|.?)")
NAME_MAX = 255     # bytes in one path component (Linux, HDFS's default max-component-length)


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
        ("deadLetterFile", str, dead_letter_setting()),
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
REMOTE_SCHEMES = ("hdfs", "webhdfs", "viewfs", "s3", "gs", "gcs", "abfs", "abfss", "mock")


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
        self.rest = rest
        self._fs = None
        if scheme in ("", "file", "local"):
            self._connect()
        elif scheme not in REMOTE_SCHEMES:
            raise TemplateError("path", "unsupported filesystem %r in %r (supported: local paths, file://, %s)"
                                % (scheme, path, ", ".join(s + "://" for s in REMOTE_SCHEMES)))
        self.name_extra = 0     # bytes the sink adds to a file name prefix (counter, suffixes)
        # the components of `rest` with a NUL where a value is substituted (an encoded value has no NUL or /)
        self.marks = "".join(v if kind == "lit" else "\0" for kind, v in rest).split("/")
        parts = rest + self.name_parts
        self.uses_time = any(kind == "time" for kind, _ in parts)
        self.time_escapes = {v for kind, v in parts if kind == "time"}
        self.headers = list(dict.fromkeys(v for kind, v in parts if kind == "header"))

    def _connect(self) -> None:
        from fastsync.filesystems import FilesystemError, resolve
        try:
            if "://" in self.static:
                # the transfers' resolver: hdfs:// through libhdfs or WebHDFS, s3:// with its endpoint
                loc = resolve(self.static)
                fs, head = loc.fs, loc.path
            else:
                fs, head = pafs.LocalFileSystem(), os.path.abspath(self.static) + ("/" if self.static.endswith("/") else "")
        except FilesystemError as exc:
            raise TemplateError("path", "cannot open filesystem: %s" % exc) from None
        except (pa.ArrowInvalid, ValueError, OSError) as exc:
            raise TemplateError("path", "cannot open filesystem %r: %s" % (self.static, str(exc).splitlines()[0])) from None
        if self.static.endswith("/") and not head.endswith("/"):
            head += "/"
        self._fs, self.head = fs, head
        # a rendered directory must stay under this (the path up to the first escape)
        base = posixpath.normpath(head)
        self.base = base + "/" if head.endswith("/") and not base.endswith("/") else base

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
        """(directory, file name prefix) for one bucket; `values`: the header values,
        already made safe with encode_value. A substituted value never makes a `.` or `..`
        component, so the path stays under the configured base; a path that still can't be
        written raises Poison."""
        times = {}
        if self.uses_time:
            if secs is None:
                raise Poison("no valid timestamp header")
            try:
                t = self.when(secs)[0]
            except (OverflowError, OSError, ValueError) as exc:
                raise Poison("timestamp %d s is out of range: %s" % (secs, exc)) from None
            # digits (and a sign): nothing to encode
            times = {v: str(secs) if v == "s" else time.strftime("%" + v, t) for v in self.time_escapes}

        def one(parts):
            return "".join([v if kind == "lit" else (values.get(v) or "") if kind == "header" else times[v]
                            for kind, v in parts])
        self.fs   # noqa: B018  (connects, setting self.head)
        comps = one(self.rest).split("/")
        if "." in comps or ".." in comps:
            for i, c in enumerate(comps):
                if c in (".", "..") and "\0" in self.marks[i]:
                    comps[i] = "%2E" * len(c)
        directory = (self.head + "/".join(comps)).rstrip("/") or "/"
        name = one(self.name_parts)
        if not (posixpath.normpath(directory) + "/").startswith(self.base):
            raise Poison("path %s is outside %s" % (directory, self.base))
        for c in comps + [name + "x" * self.name_extra]:
            if len(c) * 4 > NAME_MAX and len(c.encode("utf-8")) > NAME_MAX:
                raise Poison("path component longer than %d bytes: %s..." % (NAME_MAX, c[:40]))
        return directory, name


class Poison(ValueError):
    """These events can never be written (e.g. their path is invalid): dead-lettered."""


_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f/\\%]")


def encode_value(value: str) -> str:
    """A substituted value made safe for one path component."""
    return _UNSAFE.sub(lambda m: quote(m.group(), safe=""), value)


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


MISSING_TIMESTAMP = "Expected timestamp in the Flume event headers, but it wasn't found"
_MILLIS = r"^[+-]?[0-9]{1,18}$"      # what Java's Long.valueOf reads, within int64


def event_seconds(batch: EventBatch, config) -> tuple[np.ndarray | None, int | None, np.ndarray | None]:
    """(seconds per event, or None with one shared value; mask of the events whose
    `timestamp` header is missing or not a number, or None) for the path's time escapes."""
    if config.useLocalTimeStamp:
        return None, int(time.time()), None
    col = batch.headers.get("timestamp")
    if col is None:
        return None, None, np.ones(len(batch), dtype=bool)
    if isinstance(col, str):
        ok = re.match(_MILLIS, col) is not None
        return None, int(col) // 1000 if ok else None, None if ok else np.ones(len(batch), dtype=bool)
    if not col.null_count:
        try:        # the usual case: every event has a number
            return np.floor_divide(pc.cast(col, pa.int64()).to_numpy(), 1000), None, None
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    valid = pc.fill_null(pc.match_substring_regex(col, _MILLIS), False)
    millis = pc.cast(pc.if_else(valid, col, "0"), pa.int64()).to_numpy()
    bad = ~valid.to_numpy(zero_copy_only=False)
    return np.floor_divide(millis, 1000), None, bad if bad.any() else None


def timestamp_reason(value) -> str:
    return MISSING_TIMESTAMP if value is None else "invalid timestamp header %r: not a number of milliseconds" % value


def route(batch: EventBatch, template: PathTemplate, config):
    """The batch split by resolved bucket: ([((directory, name prefix), events)], [(event
    index, reason)] of the events that can never be written)."""
    dims = []          # (codes per event or None when shared by the batch, distinct values)
    bad_time = None
    if template.uses_time:
        secs, shared, bad_time = event_seconds(batch, config)
        if secs is None:
            dims.append((None, [shared]))
        else:
            distinct, inv = np.unique(secs, return_inverse=True)
            inv = inv.reshape(-1).astype(np.int64)
            values = [int(s) for s in distinct]
            if bad_time is not None:        # one more value, None: rendering it raises Poison
                inv[bad_time] = len(values)
                values.append(None)
            dims.append((inv, values))
    for h in template.headers:
        codes, values = _codes(batch.headers.get(h))
        dims.append((codes, [None if v is None else encode_value(v) for v in values]))
    step = ROUND_UNITS[config.roundUnit] * config.roundValue if config.round else 1
    reasons: list[str] = []

    def render(combo):
        """The path's index in `paths`, or -1 - the index of the reason it can't be written."""
        secs = combo.pop(0) if template.uses_time else None
        try:
            if secs is not None and step > 1:
                off = template.when(secs)[1]
                secs = (secs + off) // step * step - off
            return paths.setdefault(template.render(secs, dict(zip(template.headers, combo))), len(paths))
        except (Poison, OverflowError, OSError, ValueError) as exc:
            reasons.append(str(exc))
            return -len(reasons)

    paths: dict[tuple[str, str], int] = {}
    keys = [codes for codes, _ in dims if codes is not None]
    if not keys:
        pid = render([values[0] for _, values in dims])
        if pid < 0:
            return [], _poison(batch, np.arange(len(batch)), reasons[-1 - pid], bad_time)
        return [(next(iter(paths)), batch)], []
    groups, gid = np.unique(np.stack(keys, axis=1), axis=0, return_inverse=True)
    path_of_group = np.empty(len(groups), dtype=np.int64)
    for g, row in enumerate(groups):
        it = iter(row)
        combo = [values[next(it)] if codes is not None else values[0] for codes, values in dims]
        path_of_group[g] = render(combo)
    pid = path_of_group[gid.reshape(-1)]
    poison = []
    if reasons:
        for r, reason in enumerate(reasons):
            poison += _poison(batch, np.flatnonzero(pid == -1 - r), reason, bad_time)
        poison.sort()
        if not paths:
            return [], poison
        batch = EventBatch.from_arrow(batch.to_arrow().filter(pa.array(pid >= 0)))
        pid = pid[pid >= 0]
    if len(paths) == 1:
        return [(next(iter(paths)), batch)], poison
    order = np.argsort(pid, kind="stable")
    bounds = np.searchsorted(pid[order], np.arange(len(paths) + 1))
    table = batch.to_arrow()
    return [(path, EventBatch.from_arrow(table.take(pa.array(order[bounds[p]:bounds[p + 1]]))))
            for path, p in paths.items()], poison


def _poison(batch, indices, reason, bad_time) -> list[tuple[int, str]]:
    """(event index, reason) of events that can't be written; a bad timestamp says which."""
    if bad_time is None or not bad_time[indices].any():
        return [(int(i), reason) for i in indices]
    stamps = batch.header_array("timestamp").take(pa.array(indices)).to_pylist()
    return [(int(i), timestamp_reason(v) if bad_time[i] else reason) for i, v in zip(indices, stamps)]


class FileWriter:
    """One open file of a bucket. Subclasses write events in their format."""

    def __init__(self, fs, path: str):
        from fastsync.hdfs import output_stream
        self.path = path
        # sync(): what was written is on the store (a WebHDFS file's flush is not pyarrow's)
        self.raw, self.sync = output_stream(fs, path)
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

    def __init__(self, name, config, **wiring):
        super().__init__(name, config, **wiring)
        self.template: PathTemplate = config.template
        # what a file name adds to its prefix: "." and a 13-digit counter, a suffix or extension (.parquet at most)
        self.template.name_extra = len((config.inUsePrefix + config.inUseSuffix + config.fileSuffix).encode()) + 14 + 8
        self.buckets: dict[tuple[str, str], Bucket] = {}
        self.next_counter = 0
        self.counters = Counters("SINK", SINK_COUNTERS + ("DeadLetterCount",))
        self.dead_letters = DeadLetterFile(config.deadLetterFile) if config.deadLetterFile else None

    def start(self) -> None:
        if self.dead_letters is not None:
            self.dead_letters.open()
        super().start()

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
        self.template.fs    # noqa: B018  a store that can't be reached fails the batch (retried), no event is poison for it
        self._roll_on_time()
        buckets, poison = route(batch, self.template, self.config)
        if poison and self.dead_letters is None:
            raise EventDeliveryException("%s sink %s: %d of %d events can never be written and no deadLetterFile, "
                                         "batch rolled back: %s" % (self.KIND, self.name, len(poison), len(batch),
                                                                    poison[0][1]))
        touched = []
        for key, events in buckets:
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
        if poison:      # durable before the take commits
            n = self.dead_letters.write(batch, [(i, reason, None) for i, reason in poison], sink=self.name)
            self.counters.add(DeadLetterCount=n)
            log.warning("%s sink %s: %d events of this batch to %s, first: %s", self.KIND, self.name, n,
                        self.config.deadLetterFile, poison[0][1])

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
        if self.dead_letters is not None:
            self.dead_letters.close()
        super().stop()


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
