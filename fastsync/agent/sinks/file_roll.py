"""Flume's `file_roll` sink: events into files in a local directory, rolled on time.

Files are named as Flume's default path manager names them:
`<prefix><start time in ms>-<index>[.<extension>]`, index counting from 1. The TEXT
serializer writes each body followed by a newline; a batch is joined natively and written
with one system call, then the take is committed. From a memory channel the transactions
are taken, written and committed in native code, and lines TAILDIR read are written from
its read buffers as they are. rollInterval 0 never rolls.
"""
from __future__ import annotations

import logging
import os
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
            raise OSError("file_roll sink %s: cannot create sink.directory %s: %s"
                          % (self.name, self.config.directory, exc.strerror)) from None
        super().start()

    def _open(self) -> None:
        c = self.config
        self.index += 1
        name = "%s%d-%d" % (c.prefix, self.series, self.index)
        if c.extension:
            name += "." + c.extension
        self.path = os.path.join(c.directory, name)
        try:
            self.file = open(self.path, "ab", buffering=0)
        except OSError:
            self.counters.add(ConnectionFailedCount=1)
            raise
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
