"""Threads that drive pollable sources and sinks, with Flume's backoff."""
from __future__ import annotations

import logging
import threading

from fastsync.agent.source import Status

log = logging.getLogger("fastsync.runner")
BACKOFF_INCREMENT = 1.0   # seconds, Flume's backoffSleepIncrement
MAX_BACKOFF = 5.0         # Flume's maxBackoffSleep


class Runner:
    """Calls `step()` until stopped. BACKOFF sleeps min(k * 1 s, 5 s) after k in a row,
    unless the component already waited (a sink's take waits for events); an exception
    is logged (unless already logged: exc.logged) and sleeps 5 s. Sleeps end early on stop()."""

    def __init__(self, name: str, step, waits_itself: bool = False, done=lambda: False):
        self.name = name
        self.step = step
        self.waits_itself = waits_itself
        self.done = done
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self.stopping.set()
        self.thread.join(timeout)

    def _loop(self) -> None:
        backoffs = 0
        while not self.stopping.is_set() and not self.done():
            try:
                status = self.step()
            except Exception as exc:
                if not getattr(exc, "logged", False):   # a sink logs a failed delivery once itself
                    log.exception("%s: Unable to process. Exception follows.", self.name)
                self.stopping.wait(MAX_BACKOFF)
                continue
            if status is Status.BACKOFF:
                backoffs += 1
                if not self.waits_itself and not self.done():
                    self.stopping.wait(min(backoffs * BACKOFF_INCREMENT, MAX_BACKOFF))
            else:
                backoffs = 0
