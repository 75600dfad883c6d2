"""Flume's `TAILDIR` source: follows the files of file groups (a directory and a regex on
file names), turning each appended line into an event.

Files are followed by inode: a file renamed away (rotation) is read to its end under its
new name, a file that shrinks below its position (copytruncate) is read again from 0,
new matching files are picked up. Each file is read in 4 MiB blocks whose lines stay in
the block as the events' bodies (a LineBatch: a memory channel holds them there and a
file_roll sink writes them out of it; lines ending in '\r\n' or too long are split out
natively instead); a last line without its newline waits until it is complete (and is
only read again once the file has grown). A line longer than maxLineLength bytes is cut into several
events (linecut.py), so a line without end is read in pieces, never whole; the position of
a cut is recorded like any other, so a restart goes on from the middle of the line. One file's lines
go in one batch (one channel transaction, `batchSize` lines), so the file header and a
group's static headers are shared by the batch.

Positions go to `positionFile` in Flume's JSON format (`[{"inode": N, "pos": N, "file":
"path"}, ...]`, written atomically: temp file + rename), only for committed lines. When
the source's channels are durable (file, kafka) they are written after every commit, so a
restart, even after SIGKILL, re-reads at most the batch whose commit was not yet recorded.
With a memory channel, which loses its events in a crash anyway, they are written every
writePosInterval ms (as Flume does; a rename costs a good part of a millisecond on ext4),
when the source is idle, and at stop. A batch the channel refused is sent again.
"""
from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastsync._native import line_starts, read_block
from fastsync.agent.component import SOURCES, Place, check_regex, setting, suggest
from fastsync.agent.errors import ChannelException
from fastsync.agent.source import PollableSource, SourceConfig, Status
from fastsync.agent.sources.linecut import cut_lines
from fastsync.event import EventBatch, LineBatch
from fastsync.lazy import lazy_module
from fastsync.redact import create_private

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
else:   # the usual path keeps lines in bytes and memoryviews (LineBatch): no numpy, no pyarrow
    np = lazy_module(globals(), "np", "numpy")
    pa = lazy_module(globals(), "pa", "pyarrow")

log = logging.getLogger("fastsync.source.taildir")
READ_SIZE = 4 << 20      # fewer, longer steps: per block ~50 µs of Python and a GIL hand-off to the sink
RESCAN_INTERVAL = 0.5     # s: while busy, look for new or rotated files this often


@dataclass
class TaildirSourceConfig(SourceConfig):
    PASSTHROUGH = ("filegroups.", "headers.")
    filegroups: list = setting("filegroups", doc="names of the file groups (space separated)")
    positionFile: str = setting("positionFile", "~/.flume/taildir_position.json", "JSON file of inodes and positions")
    batchSize: int = setting("batchSize", 100, "most lines per channel transaction", min=1)
    maxBatchCount: int = setting("maxBatchCount", 2**63 - 1, "batches read from one file before moving to the next", min=1)
    skipToEnd: bool = setting("skipToEnd", False, "files not in the position file start at their end")
    fileHeader: bool = setting("fileHeader", False, "put the file's path in a header")
    fileHeaderKey: str = setting("fileHeaderKey", "file", "header carrying the path")
    byteOffsetHeader: bool = setting("byteOffsetHeader", False, "put each line's byte offset in header `byteoffset`")
    maxLineLength: int = setting("maxLineLength", 8 << 20, "longer lines are cut into events of at most this many bytes", min=1)
    idleTimeout: int = setting("idleTimeout", 120000, "ms without new data before a file is closed", min=0)
    writePosInterval: int = setting("writePosInterval", 3000,
                                    "ms between position file writes with non-durable channels (durable ones: every commit)", min=0)
    backoffSleepIncrement: int = setting("backoffSleepIncrement", 1000, "ms added to the wait after each empty poll", min=1)
    maxBackOffSleep: int = setting("maxBackOffSleep", 5000, "longest wait between polls, ms", min=1)
    cachePatternMatching: bool = setting("cachePatternMatching", True, "accepted for compatibility")

    def validate(self, place: Place) -> None:
        extra = getattr(self, "extra", {})
        self.groups: dict[str, tuple[str, re.Pattern]] = {}
        self.group_headers: dict[str, dict[str, str]] = {g: {} for g in self.filegroups}
        if not self.filegroups:
            raise place.error("filegroups", "Missing parameter: filegroups")
        for g in self.filegroups:
            key = "filegroups." + g
            if key not in extra:
                raise place.error("filegroups", "file group %s has no path: set %s.%s" % (g, place.prefix, key))
            path = os.path.expanduser(extra[key].strip())
            directory, pattern = os.path.split(path)
            check_regex(place, key, pattern)
            if not os.path.isdir(directory):
                raise place.error(key, "Directory does not exist: %s" % directory)
            self.groups[g] = (directory, re.compile(pattern))
        for key, value in extra.items():
            if key.startswith("filegroups.") and key[len("filegroups."):] not in self.groups:
                near = suggest(key[len("filegroups."):], self.filegroups)
                place.ignored(key, near and "filegroups." + near, "not a group of filegroups")
            if key.startswith("headers."):
                g, _, name = key[len("headers."):].partition(".")
                if g not in self.groups or not name:
                    raise place.error(key, "expected headers.<file group>.<header>, with a group of filegroups (%s)"
                                      % " ".join(self.filegroups))
                self.group_headers[g][name] = value


class TailFile:
    """One followed file. `pos` is where its next undelivered line starts (what the position
    file records); `pending` holds lines read but not yet committed, `origin + bounds`
    their byte ranges in the file (n + 1 offsets), `read_pos` where the next read starts."""

    def __init__(self, inode: int, path: str, group: str, pos: int):
        self.inode, self.path, self.group = inode, path, group
        self.pos = self.read_pos = pos
        self.fd: int | None = None
        self.pending: EventBatch | None = None
        self.bounds = None        # n + 1 int64 positions (memoryview or ndarray), from origin
        self.origin = 0
        self.waiting = 0          # read_pos to this offset: a last line without newline (yet)
        self.last_data = time.monotonic()
        self.mtime = 0.0
        self.size = 0             # as of the last scan
        self.present = True       # seen under a matching name in the last scan
        self.final = False        # no more data will come: a last line without newline is a line

    def open(self) -> bool:
        """Open by path; False if the path is now another file (or gone)."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return False
        if os.fstat(fd).st_ino != self.inode:
            os.close(fd)
            return False
        self.fd = fd
        return True

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def read_lines(self, limit: int) -> int:
        """Read the next block and keep its complete lines as `pending` (with `final`, also a
        last line without its newline), lines longer than `limit` bytes cut into pieces; the
        number of lines (pieces)."""
        size = os.fstat(self.fd).st_size
        if size < self.read_pos:
            log.info("%s shrank to %d bytes below position %d (truncated): reading it from the start",
                     self.path, size, self.read_pos)
            self.pos = self.read_pos = self.waiting = 0
        if not self.final and self.read_pos < self.waiting <= size:
            # [read_pos, waiting) is an unfinished line: look only at what came after it
            if size == self.waiting:
                return 0
            more = os.pread(self.fd, min(size - self.waiting, limit + 2), self.waiting)
            if b"\n" not in more and self.waiting + len(more) - self.read_pos <= limit:
                self.waiting += len(more)
                return 0
        chunk = None
        if not self.final:
            if size == self.read_pos:       # nothing new (os.pread would still allocate a block)
                self.waiting = size
                return 0
            # the usual case: the lines stay in the block read (an immutable Block, its memory
            # reused once the channel let go of it) as the bodies
            chunk = read_block(self.fd, self.read_pos, min(READ_SIZE, size - self.read_pos))
            found = line_starts(chunk, limit)
            if found is not None and found[1]:
                starts, n = found
                self.pending = LineBatch(chunk, starts)
                self.origin, self.bounds = self.read_pos, starts
                self.read_pos += starts[n]
                self.last_data = time.monotonic()
                return n
        block = READ_SIZE
        while True:
            if chunk is None:       # a final file's block, or a line longer than the block read
                chunk = os.pread(self.fd, block, self.read_pos)
            data, offs, n, used, starts = cut_lines(chunk, limit, self.final, strip_cr=True, positions=True)
            if n:
                break
            if len(chunk) < block:          # nothing new, or a last line still without its newline
                self.waiting = self.read_pos + len(chunk)
                return 0
            block = min(block * 2, limit + 2)   # a line longer than the block: read more at once
            chunk = None
        self.origin, self.bounds = 0, self.read_pos + np.append(starts, used)
        self.pending = EventBatch(data, offs)
        self.read_pos += used
        self.last_data = time.monotonic()
        return n

    def committed(self, k: int) -> None:
        """The first k pending lines are in the channels."""
        self.pos = self.origin + int(self.bounds[k])
        if k == len(self.pending):
            self.pending = self.bounds = None
        else:
            self.pending = self.pending.slice(k, len(self.pending))
            self.bounds = self.bounds[k:]

    def record(self) -> dict:
        return {"inode": self.inode, "pos": self.pos, "file": self.path}


@SOURCES.register("TAILDIR", "org.apache.flume.source.taildir.TaildirSource")
class TaildirSource(PollableSource):
    Config = TaildirSourceConfig
    waits_itself = True     # process() does Flume's backoff itself, ending early on stop()

    def __init__(self, name, config, processor=None):
        super().__init__(name, config, processor)
        self.position_file = os.path.abspath(os.path.expanduser(config.positionFile))
        self.files: dict[int, TailFile] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._backoffs = 0
        self._last_scan = 0.0
        self._saved = None
        self._saved_at = 0.0
        self._every_commit = False   # set at start from the channels' durability

    # -- life cycle --
    def start(self) -> None:
        self._every_commit = (self.config.writePosInterval == 0
                              or any(ch.durable for ch in self.processor.required))
        saved = self._load_positions()
        self._scan(saved, start=True)
        self._save_positions()
        log.info("taildir source %s: following %d files, positions in %s", self.name, len(self.files), self.position_file)
        super().start()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            self._save_positions()
            for tf in self.files.values():
                tf.close()
        super().stop()

    # -- positions --
    def _load_positions(self) -> dict[int, tuple[int, str]]:
        try:
            with open(self.position_file, "rb") as f:
                records = json.load(f)
            return {int(r["inode"]): (int(r["pos"]), str(r["file"])) for r in records}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError, KeyError) as exc:
            log.error("taildir source %s: cannot read position file %s (%s); starting without it",
                      self.name, self.position_file, exc)
            return {}

    def _save_due(self) -> bool:
        return self._every_commit or time.monotonic() - self._saved_at >= self.config.writePosInterval / 1000.0

    def _save_positions(self) -> None:
        self._saved_at = time.monotonic()
        records = [tf.record() for tf in sorted(self.files.values(), key=lambda t: t.path)]
        if records == self._saved:
            return
        directory = os.path.dirname(self.position_file)
        os.makedirs(directory, exist_ok=True)
        tmp = self.position_file + ".tmp"
        with os.fdopen(create_private(tmp), "w", encoding="utf-8") as f:     # 0600: read positions
            json.dump(records, f, separators=(",", ":"))     # as Flume writes it
        os.replace(tmp, self.position_file)
        self._saved = records

    # -- discovery --
    def _scan(self, saved: dict | None = None, start: bool = False) -> None:
        """Match every group's directory; follow new files, rename moved ones."""
        c = self.config
        for tf in self.files.values():
            tf.present = False
        elsewhere = {}      # followed files now under a name that does not match
        for g, (directory, regex) in c.groups.items():
            try:
                entries = list(os.scandir(directory))
            except OSError as exc:
                log.warning("taildir source %s: cannot list %s: %s", self.name, directory, exc)
                continue
            for e in entries:
                if not regex.fullmatch(e.name):
                    if e.inode() in self.files:     # d_ino: no stat for files we do not follow
                        elsewhere[e.inode()] = e
                    continue
                try:
                    if not e.is_file():
                        continue
                    st = e.stat()
                except OSError:
                    continue
                tf = self.files.get(st.st_ino)
                if tf is not None:
                    if tf.present and tf.path != e.path:
                        continue        # another name (hard link) of a file already seen
                    if tf.path != e.path:
                        log.info("%s was renamed to %s (inode %d)", tf.path, e.path, tf.inode)
                        tf.path = e.path
                else:
                    if saved and st.st_ino in saved:
                        pos = saved[st.st_ino][0]
                        pos = pos if pos <= st.st_size else 0
                    else:
                        pos = st.st_size if (start and c.skipToEnd) else 0
                    tf = self.files[st.st_ino] = TailFile(st.st_ino, e.path, g, pos)
                    log.info("following %s (inode %d) from byte %d", e.path, st.st_ino, pos)
                tf.present = True
                tf.mtime, tf.size = st.st_mtime, st.st_size
        for inode, e in elsewhere.items():
            tf = self.files[inode]
            if not tf.present and tf.path != e.path:
                # renamed away (rotated): read to its end under the new name, then forgotten
                log.info("%s was renamed to %s (inode %d), no longer in the file groups", tf.path, e.path, inode)
                tf.path = e.path
                try:
                    st = e.stat()
                    tf.mtime, tf.size = st.st_mtime, st.st_size
                except OSError:
                    pass
        self._last_scan = time.monotonic()

    # -- polling --
    def process(self) -> Status:
        with self._lock:
            if self._stop.is_set():
                return Status.BACKOFF
            busy = self._backoffs == 0
            if not busy or time.monotonic() - self._last_scan >= RESCAN_INTERVAL:
                self._scan()
            progressed = False
            refused = False
            for tf in sorted(self.files.values(), key=lambda t: (t.mtime, t.inode)):
                got, refused = self._tail(tf)
                progressed |= got
                if refused or self._stop.is_set():
                    break
            self._retire()
            if not progressed or self._save_due():
                self._save_positions()
        if progressed and not refused:
            self._backoffs = 0
            return Status.READY
        self._backoffs += 1
        c = self.config
        self._stop.wait(min(self._backoffs * c.backoffSleepIncrement, c.maxBackOffSleep) / 1000.0)
        return Status.BACKOFF

    def _tail(self, tf: TailFile) -> tuple[bool, bool]:
        """Deliver up to maxBatchCount batches of tf: (delivered any, channel refused)."""
        c = self.config
        if tf.fd is None:
            # closed (idle): open again once the last scan saw it grow or shrink
            if tf.size == tf.read_pos or not tf.open():
                return False, False
            tf.last_data = time.monotonic()
        step = min(c.batchSize, self.processor.max_batch)
        got = False
        batches = 0
        while batches < c.maxBatchCount:
            if tf.pending is None and not tf.read_lines(c.maxLineLength):
                break
            # all the lines read, as consecutive transactions of `step` lines; with a
            # durable channel one at a time, the positions saved after each commit
            k = min(len(tf.pending), step if self._every_commit else step * (c.maxBatchCount - batches))
            batch = tf.pending.slice(0, k)
            headers = dict(c.group_headers[tf.group])
            if c.fileHeader:
                headers[c.fileHeaderKey] = tf.path
            if c.byteOffsetHeader:
                headers["byteoffset"] = pa.array(np.asarray(tf.bounds[:k]) + tf.origin).cast(pa.string())
            if headers:
                batch = batch.with_headers(**headers)
            try:
                done = self.deliver_each(batch, step)
            except ChannelException as exc:
                done = getattr(exc, "committed", 0)
                if done:
                    tf.committed(done)
                    got = True
                log.warning("taildir source %s: channel refused %d lines of %s, will retry: %s",
                            self.name, min(step, k - done), tf.path, exc)
                return got, True
            tf.committed(done)
            batches += -(-done // step)
            if self._save_due():
                self._save_positions()
            got = True
            if self._stop.is_set():
                break
        return got, False

    def _retire(self) -> None:
        """Close idle files; forget files that left the groups (renamed or deleted) once
        idle for idleTimeout, sending a last line that never got its newline."""
        now = time.monotonic()
        idle = self.config.idleTimeout / 1000.0
        for inode, tf in list(self.files.items()):
            if tf.pending is not None or now - tf.last_data <= idle:
                continue
            if tf.present:
                if tf.fd is not None:
                    log.info("closing idle file %s", tf.path)
                    tf.close()
                continue
            if tf.fd is not None:
                tf.final = True
                _, refused = self._tail(tf)
                if refused or tf.pending is not None:
                    continue
            log.info("%s (inode %d) is no longer in the file groups; read to its end", tf.path, inode)
            tf.close()
            del self.files[inode]
