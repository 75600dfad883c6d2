"""Test helpers for the listening sources (http, syslogtcp, netcat): many clients at once,
the backlog the kernel gives a listening socket, and an agent process's peak memory."""
from __future__ import annotations

import errno
import selectors
import socket
import subprocess
import time
from typing import Callable

from e2e_support import get_json, poll, wait_for_json


def listen_backlog(port: int) -> int:
    """The accept queue length of the socket listening on 127.0.0.1:port, as the kernel
    reports it (`ss`: a listening socket's Send-Q is its backlog)."""
    out = subprocess.run(["ss", "-Hltn", "sport = :%d" % port], capture_output=True, text=True, check=True).stdout
    rows = [line.split() for line in out.splitlines() if line.strip()]
    assert len(rows) == 1, out
    return int(rows[0][2])


def peak_rss_kib(pid: int) -> int:
    """The process's peak resident set size so far (VmHWM), KiB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM for pid %d" % pid)


def hold_connections(metrics_port: int, n: int, connect: Callable[[], object]) -> list:
    """n connections opened one after the other, each seen served (the source r1's
    OpenConnectionCount at --metrics-port) before the next, after any earlier connection
    (e.g. wait_for_port's) has ended: so they are exactly the n connections being served."""
    url = "http://127.0.0.1:%d/metrics" % metrics_port
    wait_for_json(url, timeout=15)
    served = lambda k: lambda: get_json(url)["SOURCE.r1"]["OpenConnectionCount"] == str(k)   # noqa: E731
    poll(served(0), 15, message="no connection served")
    held = []
    for i in range(n):
        held.append(connect())
        poll(served(i + 1), 15, message="%d connections served" % (i + 1))
    return held


def simultaneous(port: int, requests: list[bytes], timeout: float = 60.0) -> list[bytes | str]:
    """One client per request, all connecting at once (non-blocking connects issued back to
    back, before any is served); each sends its request, shuts its sending side and reads
    until the server closes. Returns what each received, or a str saying how it failed."""
    sel = selectors.DefaultSelector()
    results: list[bytes | str] = [b""] * len(requests)
    state = {}
    for i, req in enumerate(requests):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        err = s.connect_ex(("127.0.0.1", port))
        if err not in (0, errno.EINPROGRESS):
            results[i] = "connect: %s" % errno.errorcode.get(err, err)
            s.close()
            continue
        state[s] = [i, "connect", memoryview(req), bytearray()]
        sel.register(s, selectors.EVENT_WRITE)
    deadline = time.monotonic() + timeout
    while state and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=1.0):
            s = key.fileobj
            i, phase, out, got = state[s]
            try:
                if phase == "connect":
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        raise OSError(err, "connect: %s" % errno.errorcode.get(err, err))
                    state[s][1] = "send"
                elif phase == "send":
                    sent = s.send(out)
                    state[s][2] = out = out[sent:]
                    if not out:
                        s.shutdown(socket.SHUT_WR)
                        state[s][1] = "recv"
                        sel.modify(s, selectors.EVENT_READ)
                else:
                    chunk = s.recv(65536)
                    if chunk:
                        got += chunk
                        continue
                    results[i] = bytes(got)
                    _done(sel, state, s)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:
                results[i] = "%s: %s" % (phase, exc)
                _done(sel, state, s)
    for s, (i, phase, _, got) in list(state.items()):
        results[i] = "%s: timed out after %r" % (phase, bytes(got[:100]))
        _done(sel, state, s)
    return results


def _done(sel, state, s) -> None:
    sel.unregister(s)
    s.close()
    del state[s]
