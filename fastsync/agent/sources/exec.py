"""Flume's `exec` source: runs a command and turns each line of its stdout into an event.

stdout is read in large blocks and split into lines natively; a batch goes to the channels
when it has batchSize events or its oldest line is batchTimeout ms old. A line longer than
maxLineLength bytes is cut into several events (linecut.py), so an endless line costs at
most about maxLineLength + 1 MiB of memory, and each byte is scanned once (stderr, with
logStdErr, is logged in pieces of at most maxLineLength bytes too). Unlike Flume, a
batch the channel refuses is retried (the command's pipe applies back-pressure) instead of
being dropped. Without `shell` the command is split on whitespace only, as Flume splits it
(`printf 'a\nb\n'` runs printf with the argument `'a\nb\n'`, quotes included): quoting,
pipes and variables need `shell = /bin/sh -c`.
"""
from __future__ import annotations

import logging
import os
import select
import signal
import subprocess
import threading
import time
from dataclasses import dataclass

from fastsync.agent.component import SOURCES, Place, setting
from fastsync.agent.errors import ChannelException
from fastsync.agent.source import Source, SourceConfig
from fastsync.agent.sources.linecut import cut_lines
from fastsync.event import EventBatch

log = logging.getLogger("fastsync.source.exec")
READ_SIZE = 1 << 20


@dataclass
class ExecSourceConfig(SourceConfig):
    command: str = setting("command", doc="the command to run")
    shell: str = setting("shell", "", "shell to run the command with, e.g. '/bin/sh -c'; none: split on whitespace")
    restart: bool = setting("restart", False, "run the command again when it exits")
    restartThrottle: int = setting("restartThrottle", 10000, "ms to wait before a restart", min=0)
    logStdErr: bool = setting("logStdErr", False, "log the command's stderr lines")
    batchSize: int = setting("batchSize", 20, "most lines per channel transaction", min=1)
    batchTimeout: int = setting("batchTimeout", 3000, "ms after which a partial batch is sent", min=1)
    maxLineLength: int = setting("maxLineLength", 8 << 20, "longer lines are cut into events of at most this many bytes", min=1)
    charset: str = setting("charset", "UTF-8", "accepted for compatibility; bodies are the raw bytes")

    def validate(self, place: Place) -> None:
        if not self.command.strip():
            raise place.error("command", "The parameter command must be specified")


@SOURCES.register("exec", "org.apache.flume.source.ExecSource")
class ExecSource(Source):
    Config = ExecSourceConfig

    def __init__(self, name, config, processor=None):
        super().__init__(name, config, processor)
        self._stop = threading.Event()
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None

    def argv(self) -> list[str]:
        c = self.config
        # as Flume: without a shell the command is split on whitespace only (no quoting)
        return c.shell.split() + [c.command] if c.shell.strip() else c.command.split()

    def start(self) -> None:
        super().start()
        self._thread = threading.Thread(target=self._run, name="exec-%s" % self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=30)
        super().stop()

    def _run(self) -> None:
        c = self.config
        while not self._stop.is_set():
            try:
                proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE if c.logStdErr else subprocess.DEVNULL,
                                        start_new_session=True)
            except OSError as exc:
                log.error("exec source %s: cannot run [%s]: %s", self.name, c.command, exc)
                code = None
            else:
                self._proc = proc
                if c.logStdErr:
                    threading.Thread(target=self._log_stderr, args=(proc,), daemon=True).start()
                self._pump(proc.stdout.fileno())
                proc.stdout.close()
                code = proc.wait()
                log.info("Command [%s] exited with %s", c.command, code)
            if not c.restart or self._stop.is_set():
                break
            log.info("Restarting in %dms, exit code %s", c.restartThrottle, code)
            self._stop.wait(c.restartThrottle / 1000)
        self.finished = True

    def _log_stderr(self, proc) -> None:
        # at most maxLineLength bytes at a time: a longer line is logged in pieces
        pieces = iter(lambda: proc.stderr.readline(self.config.maxLineLength), b"")
        for i, line in enumerate(pieces):
            log.info("StderrLogger[%d] = '%s'", i + 1, line.decode("utf-8", "replace").rstrip("\r\n"))

    def _pump(self, fd: int) -> None:
        c = self.config
        buf = bytearray()
        pending: list[EventBatch] = []
        count = 0
        oldest = 0.0
        eof = False
        while not eof:
            wait = None if not count else max(0.0, oldest + c.batchTimeout / 1000 - time.monotonic())
            ready, _, _ = select.select([fd], [], [], wait)
            if ready:
                chunk = os.read(fd, READ_SIZE)
                if chunk:
                    buf += chunk
                else:
                    eof = True
                # buf holds no newline before chunk: a line still short of the limit just waits
                if eof or len(buf) > c.maxLineLength or b"\n" in chunk:
                    data, offsets, n, used, _ = cut_lines(buf, c.maxLineLength, final=eof)
                    del buf[:used]
                else:
                    n = 0
                if n:
                    if not count:
                        oldest = time.monotonic()
                    pending.append(EventBatch(data, offsets))
                    count += n
                if count >= c.batchSize:
                    whole = EventBatch.concat(pending)
                    full = count - count % c.batchSize
                    self._send(whole.slice(0, full), c.batchSize)
                    pending = [whole.slice(full, count)] if full < count else []
                    count -= full
                    oldest = time.monotonic()
            held = sum(int(b.offsets[-1] - b.offsets[0]) for b in pending)
            # long lines: send what is there rather than hold batchSize of them
            if count and (eof or not ready or held >= c.maxLineLength):
                self._send(EventBatch.concat(pending))
                pending, count = [], 0

    def _send(self, batch: EventBatch, per_tx: int | None = None) -> None:
        """Deliver batch as transactions of per_tx lines (default: one), retrying what the
        channel refused until it takes it or the source stops."""
        delay = 0.1
        while True:
            try:
                self.deliver_each(batch, per_tx or len(batch))
                return
            except ChannelException as exc:
                batch = batch.slice(getattr(exc, "committed", 0), len(batch))
                if self._stop.is_set() and delay > 1:
                    log.error("exec source %s: stopping with %d lines not delivered: %s", self.name, len(batch), exc)
                    return
                log.warning("exec source %s: channel refused %d lines, retrying: %s", self.name, len(batch), exc)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
