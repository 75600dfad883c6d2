"""Flume's spooling directory source: complete files dropped into `spoolDir` are read line by
line, then renamed with `fileSuffix` (or deleted), one file at a time.

Where the current file has been read to is kept in `trackerDir` (a JSON file written
atomically after every channel commit), so a restart, even after SIGKILL, resumes where the
last committed batch ended: nothing is lost, at most one batch is read twice. As in Flume,
files must not change once they are in the directory: a file whose size or modification
time changed after it was picked up is reported as an error and the source stops reading.
Lines are split natively; a batch ends at the `batchSize`-th newline of the block read.
Lines are read as Flume's LineDeserializer reads them: only `\n` ends a line (a `\r` before
it stays in the body), and a line longer than `deserializer.maxLineLength` characters is
cut into several events of that many characters, none of it dropped (`abcdefghijkl` with 5:
`abcde`, `fghij`, `kl`; a line of exactly 5 is followed by an empty event, as in Flume).
"""
from __future__ import annotations

import json
import logging
import os
import random
import re
from dataclasses import dataclass

import numpy as np

from fastsync._native import split_lines
from fastsync.agent.component import SOURCES, Place, check_regex, setting
from fastsync.agent.errors import ChannelException
from fastsync.agent.source import PollableSource, SourceConfig, Status
from fastsync.event import EventBatch
from fastsync.redact import create_private

log = logging.getLogger("fastsync.source.spooldir")
READ_SIZE = 1 << 20


def _char_ends(seg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For UTF-8 bytes: the byte offset just past each character, and how many UTF-16 code
    units (Java chars, which Flume counts) the text has up to and including it."""
    lead = (seg & 0xC0) != 0x80
    starts = np.flatnonzero(lead)
    ends = np.append(starts[1:], len(seg))
    units = np.cumsum(1 + (seg[starts] >= 0xF0))        # a 4-byte character is 2 Java chars
    return ends, units


def flume_lines(block: bytes, at_end: bool, max_len: int, limit: int):
    """Events of `block` as Flume's LineDeserializer makes them, at most `limit`: each `\n`
    ends a line (nothing else is stripped), a line is cut every max_len characters, and a line
    whose length is a multiple of max_len is followed by an empty event (Flume stops reading
    at max_len characters, and the `\n` it reads next ends an empty line). A piece without
    its `\n` is only taken when it is max_len characters long, or at the end of the file.
    Returns (data, offsets, n, used) like split_lines."""
    buf = np.frombuffer(block, dtype=np.uint8)
    pieces, used, start = [], 0, 0          # pieces: (start, end, consumed up to)
    for nl in list(np.flatnonzero(buf == 10)) + [None]:
        end = len(block) if nl is None else int(nl)
        if nl is None and start == end:
            break
        seg = buf[start:end]
        if seg.size and seg.max() >= 0x80:
            ends, units = _char_ends(seg)
            cuts = ends[np.searchsorted(units, np.arange(max_len, units[-1] + 1, max_len))]
        else:
            cuts = np.arange(max_len, len(seg) + 1, max_len)
        if nl is None and not at_end:       # the line goes on in the next block
            cuts = cuts[cuts <= len(seg) - 4]   # never end a piece inside a cut character
        at = start
        for cut in cuts:
            pieces.append((at, start + int(cut), start + int(cut)))
            at = start + int(cut)
        if nl is not None:
            pieces.append((at, end, end + 1))
        elif at_end and at < end:
            pieces.append((at, end, end))
        if len(pieces) >= limit or nl is None:
            break
        start = end + 1
    pieces = pieces[:limit]
    if pieces:
        used = pieces[-1][2]
    view = memoryview(block)
    data = b"".join(view[a:b] for a, b, _ in pieces)
    offsets = np.zeros(len(pieces) + 1, dtype=np.int64)
    np.cumsum([b - a for a, b, _ in pieces], out=offsets[1:])
    return data, offsets, len(pieces), used


@dataclass
class SpoolDirSourceConfig(SourceConfig):
    spoolDir: str = setting("spoolDir", doc="directory whose files are read")
    fileSuffix: str = setting("fileSuffix", ".COMPLETED", "appended to a file read to its end")
    deletePolicy: str = setting("deletePolicy", "never", "immediate: delete files read to their end", choices=("never", "immediate"))
    fileHeader: bool = setting("fileHeader", False, "put the file's absolute path in a header")
    fileHeaderKey: str = setting("fileHeaderKey", "file", "header for fileHeader")
    basenameHeader: bool = setting("basenameHeader", False, "put the file's name in a header")
    basenameHeaderKey: str = setting("basenameHeaderKey", "basename", "header for basenameHeader")
    includePattern: str = setting("includePattern", "^.*$", "regex a file name must match")
    ignorePattern: str = setting("ignorePattern", "^$", "regex of file names to leave alone")
    trackerDir: str = setting("trackerDir", ".flumespool", "where the read position is kept (relative: inside spoolDir)")
    consumeOrder: str = setting("consumeOrder", "oldest", "which file next, by modification time", choices=("oldest", "youngest", "random"))
    batchSize: int = setting("batchSize", 100, "lines per channel transaction", min=1)
    deserializer: str = setting("deserializer", "LINE", "LINE: one event per line", choices=("line",))
    maxLineLength: int = setting("deserializer.maxLineLength", 2048, "longer lines are cut into events of this many characters", min=1)
    inputCharset: str = setting("inputCharset", "UTF-8", "accepted; files are read as UTF-8, bodies are the raw bytes")

    def validate(self, place: Place) -> None:
        check_regex(place, "includePattern", self.includePattern)
        check_regex(place, "ignorePattern", self.ignorePattern)
        if not os.path.isdir(self.spoolDir):
            raise place.error("spoolDir", "not a directory: %s" % self.spoolDir)


@SOURCES.register("spooldir", "org.apache.flume.source.SpoolDirectorySource")
class SpoolDirSource(PollableSource):
    Config = SpoolDirSourceConfig

    def __init__(self, name, config, processor=None):
        super().__init__(name, config, processor)
        self.tracker_dir = os.path.join(config.spoolDir, config.trackerDir)
        self.meta_path = os.path.join(self.tracker_dir, ".fastsync-%s.json" % name)
        self.include = re.compile(config.includePattern)
        self.ignore = re.compile(config.ignorePattern)
        self.current = None      # {"file", "pos", "size", "mtime"}
        self.failed = False

    def start(self) -> None:
        os.makedirs(self.tracker_dir, exist_ok=True)
        try:
            with open(self.meta_path) as f:
                self.current = json.load(f)
            if not os.path.exists(self.current["file"]):
                self.current = None
        except (OSError, ValueError, KeyError):
            self.current = None
        super().start()

    def _candidates(self) -> list[str]:
        c = self.config
        names = []
        for name in os.listdir(c.spoolDir):
            path = os.path.join(c.spoolDir, name)
            if (name.startswith(".") or name.endswith(c.fileSuffix) or not os.path.isfile(path)
                    or not self.include.search(name) or self.ignore.search(name)):
                continue
            names.append(path)
        if c.consumeOrder == "random":
            random.shuffle(names)
        else:
            names.sort(key=lambda p: (os.stat(p).st_mtime_ns, p), reverse=c.consumeOrder == "youngest")
        return names

    def _save(self) -> None:
        tmp = self.meta_path + ".tmp"
        with os.fdopen(create_private(tmp), "w") as f:      # 0600: a read position
            json.dump(self.current, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.meta_path)

    def _pick(self) -> bool:
        files = self._candidates()
        if not files:
            return False
        st = os.stat(files[0])
        self.current = {"file": files[0], "pos": 0, "size": st.st_size, "mtime": st.st_mtime_ns}
        self._save()
        return True

    def _complete(self) -> None:
        path = self.current["file"]
        if self.config.deletePolicy == "immediate":
            os.unlink(path)
        else:
            done = path + self.config.fileSuffix
            if os.path.exists(done):
                raise RuntimeError("spooldir source %s: %s already exists: a file name was used twice" % (self.name, done))
            os.rename(path, done)
        log.info("spooldir source %s: %s read to its end", self.name, path)
        self.current = None
        os.unlink(self.meta_path)

    def process(self) -> Status:
        if self.failed or (self.current is None and not self._pick()):
            return Status.BACKOFF
        cur, c = self.current, self.config
        st = os.stat(cur["file"])
        if st.st_size != cur["size"] or st.st_mtime_ns != cur["mtime"]:
            self.failed = True
            log.error("spooldir source %s: File has been modified since being read: %s (the source stops)", self.name, cur["file"])
            return Status.BACKOFF
        with open(cur["file"], "rb") as f:
            f.seek(cur["pos"])
            block = f.read(max(READ_SIZE, 4 * c.maxLineLength + 4))    # room for a whole cut piece
        if not block:
            self._complete()
            return Status.READY
        newlines = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10)
        at_end = cur["pos"] + len(block) >= cur["size"]
        if len(newlines) >= c.batchSize:
            newlines = newlines[:c.batchSize]
            block, at_end = block[:newlines[-1] + 1], False
        longest = int(np.diff(newlines, prepend=-1).max()) - 1 if len(newlines) else -1
        tail = len(block) - (int(newlines[-1]) + 1 if len(newlines) else 0)
        if longest < c.maxLineLength and (tail < c.maxLineLength or not at_end) and (len(newlines) or at_end):
            # no line to cut (bytes >= characters): split natively
            data, offsets, n, used, _ = split_lines(block, False, at_end)
            offsets = np.frombuffer(offsets, dtype=np.int64)
        else:
            data, offsets, n, used = flume_lines(block, at_end, c.maxLineLength, c.batchSize)
        if not n:       # (only at the end: a block always holds a line or a piece to cut)
            self._complete()
            return Status.READY
        headers = {}
        if c.fileHeader:
            headers[c.fileHeaderKey] = os.path.abspath(cur["file"])
        if c.basenameHeader:
            headers[c.basenameHeaderKey] = os.path.basename(cur["file"])
        try:
            self.deliver(EventBatch(data, offsets, headers))
        except ChannelException as exc:
            log.warning("spooldir source %s could not write to channel: %s", self.name, exc)
            return Status.BACKOFF
        cur["pos"] += used
        self._save()
        return Status.READY
