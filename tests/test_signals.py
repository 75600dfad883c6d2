"""SignalFlag: what SIGTERM/SIGINT set while the main thread waits on it.

A threading.Event in its place hung `fastsync agent` on SIGTERM in CI (the handler's Event.set()
waited on the lock the interrupted Event.wait() held); the same storm of signals below hangs or
crashes a process that uses an Event."""
import signal
import subprocess
import sys
import textwrap

from fastsync.signals import SignalFlag

STORM = textwrap.dedent("""
    import signal, time
    from fastsync.signals import SignalFlag
    flag = SignalFlag()
    handled = 0
    def on_alarm(*_):
        global handled
        handled += 1
        flag.set()
        flag._set = False
    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, 0.0005, 0.0005)
    end = time.monotonic() + 1.5
    while time.monotonic() < end:
        flag.wait(0.0001)
    signal.setitimer(signal.ITIMER_REAL, 0)
    print(handled)
""")


def test_a_storm_of_signals_while_waiting_neither_hangs_nor_crashes():
    p = subprocess.run([sys.executable, "-c", STORM], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert int(p.stdout) > 100     # the handler ran, many times, inside the waits


def test_wait_returns_at_its_timeout_or_once_set():
    flag = SignalFlag()
    assert flag.wait(0.01) is False and not flag.is_set()
    signal.signal(signal.SIGALRM, lambda *_: flag.set())
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        assert flag.wait(30) is True    # returns soon after the signal, not after 30 s
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
