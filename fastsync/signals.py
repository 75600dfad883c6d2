"""Stopping a command on SIGTERM/SIGINT."""
from __future__ import annotations

import signal
import time
TYPE_CHECKING = False     # (not typing's: importing typing costs a command ~3 ms)
if TYPE_CHECKING:
    from typing import Callable


class SignalFlag:
    """A flag a signal handler sets and the main thread waits on.

    Not a threading.Event: a handler runs on the main thread, between two of its bytecodes, and
    when it lands inside the main thread's own Event.wait() that thread holds the Event's lock,
    so Event.set() in the handler waits for it forever (an agent that ignored SIGTERM)."""

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float) -> bool:
        """Sleep up to `timeout` seconds, less once the flag is set; whether it is."""
        deadline = time.monotonic() + timeout
        while not self._set:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(left, 0.05))
        return self._set


def stop_on_signals(on_signal: Callable[[int], None] | None = None) -> SignalFlag:
    """A SignalFlag that SIGTERM and SIGINT set (after calling on_signal(signum), if given)."""
    flag = SignalFlag()

    def handler(signum, _frame):
        if on_signal is not None:
            on_signal(signum)
        flag.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)
    return flag
