"""Flume's `file_roll` sink: events into files in a local directory, rolled on time.

Files are named as Flume's default path manager names them:
`<prefix><start time in ms>-<index>[.<extension>]`, index counting from 1. The TEXT
serializer writes each body followed by a newline; a batch is joined natively and written
with one system call, then the take is committed. From a memory channel the transactions
are taken, written and committed in native code, and lines TAILDIR read are written from
its read buffers as they are. rollInterval 0 never rolls.

An agent killed (SIGKILL) in the middle of that system call leaves its file with a torn last
line: the kernel stops a write at a fatal signal. Those events were not committed, so they
are delivered again; at start the sink cuts such a torn tail off the last file of each earlier
series in its directory (TEXT with appendNewline only: there a line ends every event).
"""
from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass

from fastsync._native import join_lines
from fastsync.agent.component import SINKS, Place, setting
from fastsync.agent.deadletter import dead_letter_setting
from fastsync.agent.sink import TAKE_WAIT, Sink, SinkConfig
from fastsync.agent.source import Status

log = logging.getLogger("fastsync.sink.file_roll")


@dataclass
class RollingFileSinkConfig(SinkConfig):
    directory: str = setting("sink.directory", doc="directory the files are written in")
    rollInterval: int = setting("sink.rollInterval", 30, "seconds before starting a new file; 0: never")
    batchSize: int = setting("sink.batchSize", 100, "events per take transaction", min=1)
    serializer: str = setting("sink.serializer", "TEXT", "TEXT: one body per line", choices=("text",))
    appendNewline: bool = setting("sink.serializer.appendNewline", True, "end each body with a newline")
    pathManager: str = setting("sink.pathManager", "DEFAULT", "file naming scheme", choices=("default",))
    prefix: str = setting("sink.pathManager.prefix", "", "file name prefix")
    extension: str = setting("sink.pathManager.extension", "", "file name extension")
    # accepted as the other sinks accept it: this sink writes bodies only, so no event is
    # ever refused for what it holds (a failed write is an I/O error, retried)
    deadLetterFile: str = dead_letter_setting()

    def validate(self, place: Place) -> None:
        if not self.directory:
            raise place.error("sink.directory", "Directory may not be null")


def torn_tail_start(path: str, chunk: int = 65536) -> int | None:
    """Where the torn last line of a file starts (the size after its last newline), or None
    when the file is empty or ends with a newline."""
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        if end == 0:
            return None
        f.seek(end - 1)
        if f.read(1) == b"\n":
            return None
        pos = end
        while pos > 0:
            start = max(0, pos - chunk)
            f.seek(start)
            cut = f.read(pos - start).rfind(b"\n")
            if cut >= 0:
                return start + cut + 1
            pos = start
        return 0


@SINKS.register("file_roll", "org.apache.flume.sink.RollingFileSink")
class RollingFileSink(Sink):
    Config = RollingFileSinkConfig

    def __init__(self, name, config, **wiring):
        super().__init__(name, config, **wiring)
        self.series = int(time.time() * 1000)
        self.index = 0
        self.file = None
        self.path = None
        self.opened_at = 0.0

    def start(self) -> None:
        try:
            os.makedirs(self.config.directory, exist_ok=True)
        except OSError as exc:
            # as Flume: the sink starts and fails each delivery (a failover group moves on), not the agent
            log.error("file_roll sink %s: cannot create sink.directory %s: %s (every delivery fails until it can)",
                      self.name, self.config.directory, exc.strerror)
        else:
            if self.config.appendNewline:
                self._cut_torn_tails()
        super().start()

    def _cut_torn_tails(self) -> None:
        c = self.config
        ext = r"\." + re.escape(c.extension) if c.extension else ""
        name = re.compile(r"%s(\d+)-(\d+)%s\Z" % (re.escape(c.prefix), ext))
        last: dict[int, tuple[int, str]] = {}     # series -> (index, file name)
        for entry in os.scandir(c.directory):
            m = name.match(entry.name)
            if m and entry.is_file():
                series, index = int(m.group(1)), int(m.group(2))
                if index > last.get(series, (0, ""))[0]:
                    last[series] = (index, entry.name)
        for _, fname in last.values():
            path = os.path.join(c.directory, fname)
            size, keep = os.path.getsize(path), torn_tail_start(path)
            if keep is not None:
                os.truncate(path, keep)
                log.warning("file_roll sink %s: %s ended with a torn line (an agent killed while writing): "
                            "cut its last %d bytes, events delivered again", self.name, path, size - keep)

    def _open(self) -> None:
        c = self.config
        name = "%s%d-%d" % (c.prefix, self.series, self.index + 1)
        if c.extension:
            name += "." + c.extension
        self.path = os.path.join(c.directory, name)
        try:
            os.makedirs(c.directory, exist_ok=True)
            self.file = open(self.path, "ab", buffering=0)
        except OSError:
            self.counters.add(ConnectionFailedCount=1)
            raise
        self.index += 1        # only once open: a failed try does not skip a file name
        self.opened_at = time.monotonic()
        self.counters.add(ConnectionCreatedCount=1)

    def _close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
            self.counters.add(ConnectionClosedCount=1)

    def _maybe_roll(self) -> None:
        interval = self.config.rollInterval
        if self.file is not None and interval > 0 and time.monotonic() - self.opened_at >= interval:
            self._close()
            self._open()   # as Flume: a new file every interval, even while idle
        if self.file is None:
            self._open()

    def idle(self) -> None:
        self._maybe_roll()

    def process(self) -> Status:
        write = getattr(self.channel, "write_each", None) if self.config.appendNewline else None
        if write is None:
            return super().process()
        self._maybe_roll()
        try:
            got = write(self.file.fileno(), self.batch_size, TAKE_WAIT, self.transactions_per_process)
        except OSError as exc:
            self._drained(*exc.committed)
            self.counters.add(EventDrainAttemptCount=exc.failed, EventWriteFail=1)
            failure = OSError(exc.errno, exc.strerror, self.path)
            self._report(failure, exc.failed)
            raise failure from None
        return self._ran_natively(got)

    def deliver(self, batch) -> None:
        self._maybe_roll()
        if self.config.appendNewline:
            out = join_lines(batch.data, batch.offsets)
        else:
            out = batch.data[int(batch.offsets[0]):int(batch.offsets[-1])]
        view = memoryview(out)
        while view:
            written = self.file.write(view)
            view = view[written:]

    def stop(self) -> None:
        self._close()
        super().stop()
