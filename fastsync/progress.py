"""The status line of a long command (agent, bench agent, import, export, merge): on a terminal only, so
pipes, logs and CI get just the summary line."""
from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass

TYPE_CHECKING = False     # (not typing's: importing typing costs a command ~3 ms)
if TYPE_CHECKING:
    from typing import Callable, Union  # noqa: F401  (Union: in Show's string)


def on_terminal(show: Show = None):
    """`show` if given (a callable is given the statuses), else whether stderr is a terminal."""
    return sys.stderr.isatty() if show is None else show


def rate_text(n: int, unit: str, seconds: float, total: int | None = None) -> str:
    """"1200 rows 40%, 600 rows/s ETA 3s": the count, with a total its share and the time
    left at the rate so far."""
    rate = n / max(seconds, 1e-9)
    pct = " %d%%" % (100 * n // total) if total else ""
    eta = " ETA %ds" % ((total - n) / rate) if total and rate and n < total else ""
    return "%d %s%s, %.0f %s/s%s" % (n, unit, pct, rate, unit, eta)


@dataclass(frozen=True)
class Update:
    """Where a transfer is: what the status line shows (str() is the line), and what a
    progress callback of the Python API gets (fastsync.transfer.api)."""
    rows: int
    seconds: float
    total: int | None = None                # rows expected (a COUNT(*), drawn on a terminal only)
    per_split: tuple[int | str, ...] = ()   # rows per split (--cluster: a state for one not running)

    @property
    def rows_per_s(self) -> float:
        return self.rows / max(self.seconds, 1e-9)

    def __str__(self) -> str:
        text = rate_text(self.rows, "rows", self.seconds, self.total)
        if not self.per_split:
            return text
        return "%s [splits %s]" % (text, " ".join("%d:%s" % (i, v) for i, v in enumerate(self.per_split)))


# what a long command's `progress` is: None (drawn on a terminal), a bool (drawn or not), or a
# callable given each status (an Update, or a str) instead of drawing it
Show = "Union[bool, None, Callable[..., None]]"     # a string: no typing at run time


class Progress:
    """Redraws `status()` on stderr every `interval` s from a thread of its own, once more
    when stopped, then ends the line. Does nothing unless `show` (default: stderr is a
    terminal); a callable `show` is called with each status instead of drawing it. A
    context manager, or start() and stop()."""

    def __init__(self, status: Callable[[], object], interval: float = 0.5, show: Show = None,
                 name: str = "progress"):
        self.status, self.interval, self.show = status, interval, on_terminal(show)
        self._done = threading.Event()     # set by stop() on a thread, never by a signal handler
        self._thread = threading.Thread(target=self._run, name=name, daemon=True) if self.show else None

    def start(self) -> "Progress":
        if self._thread is not None:
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._done.set()
            self._thread.join()

    def _run(self) -> None:
        while True:
            finished = self._done.wait(self.interval)
            if callable(self.show):
                self.show(self.status())
                if finished:
                    return
                continue
            sys.stderr.write("\r%s   " % self.status())
            if finished:
                sys.stderr.write("\n")
            sys.stderr.flush()
            if finished:
                return

    def __enter__(self) -> "Progress":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class Rate:
    """"N events delivered, R events/s", R over the last redraw (not since the start): what
    a long-running agent's status line shows."""

    def __init__(self, count: Callable[[], int], what: str = "events delivered", unit: str = "events"):
        self.count, self.what, self.unit = count, what, unit
        self.last, self.t_last = 0, time.perf_counter()

    def __call__(self) -> str:
        n, now = self.count(), time.perf_counter()
        text = "%d %s, %.0f %s/s" % (n, self.what, (n - self.last) / max(now - self.t_last, 1e-9), self.unit)
        self.last, self.t_last = n, now
        return text


class Counter:
    """Rows counted by several threads, for a status line."""

    def __init__(self):
        self.rows = 0
        self.lock = threading.Lock()

    def add(self, n: int) -> None:
        with self.lock:
            self.rows += n
