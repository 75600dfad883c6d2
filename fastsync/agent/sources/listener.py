"""The listening TCP socket of the `http`, `syslogtcp` and `netcat` sources, and its limits.

Connections are accepted on a thread of their own and each is served on its own thread.
`backlog` is the kernel's queue of connections not yet accepted (capped by
net.core.somaxconn), so bursts of clients are queued rather than reset or timed out.
`maxConnections` bounds the connections served at once (and so the threads): past it a new
connection gets the source's refusal message, if it has one, and is closed at once.
`idleTimeout` closes a connection that sent nothing for that long, so stalled or vanished
clients give their slot back.
"""
from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable

from fastsync.agent.component import setting
from fastsync.agent.source import SourceConfig

log = logging.getLogger("fastsync.source.listener")
POLL = 0.2          # seconds: how often blocked threads look at the stop flag
REFUSAL_LOG_EVERY = 10.0


@dataclass(kw_only=True)
class ListenerConfig(SourceConfig):
    backlog: int = setting("backlog", 1024, "connections the kernel queues before they are accepted", min=1)
    maxConnections: int = setting("maxConnections", 1000, "connections served at once; more are refused", min=1)
    idleTimeout: int = setting("idleTimeout", 300000, "ms after which a connection that sent nothing is closed; 0: never", min=0)

    @property
    def idle_seconds(self) -> float | None:
        return self.idleTimeout / 1000 if self.idleTimeout else None


class Listener:
    """listen on (host, port) and, once started, call serve(conn, peer) on a new thread for each
    connection, at most config.maxConnections at a time; `refusal` is sent to the ones past that."""

    def __init__(self, what: str, host: str, port: int, config: ListenerConfig,
                 serve: Callable[[socket.socket, tuple], None], counters=None, refusal: bytes = b""):
        self.what = what                     # e.g. "netcat source r1", for messages
        self.host, self.config, self.serve = host, config, serve
        self.counters, self.refusal = counters, refusal
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self.open = 0
        self._refused = 0
        self._refusal_logged = 0.0
        self.threads: set[threading.Thread] = set()
        try:
            self.sock = socket.create_server((host, port), backlog=config.backlog)
        except OSError as exc:
            raise OSError("%s: cannot listen on %s:%d: %s" % (what, host, port, exc.strerror)) from None
        self.sock.settimeout(POLL)
        self.port = self.sock.getsockname()[1]
        self._accepter = threading.Thread(target=self._accept, name="%s accept" % what, daemon=True)

    def start(self) -> "Listener":
        """Accept connections from now on: called once the owner holds this listener, as a
        connection's thread may use it at once (syslog's and netcat's call listener.recv)."""
        self._accepter.start()
        log.info("%s listening on %s:%d", self.what, self.host, self.port)
        return self

    def _accept(self) -> None:
        n = 0
        while not self.stopping.is_set():
            try:
                conn, peer = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                full = self.open >= self.config.maxConnections
                if not full:
                    self.open += 1
            if full:
                self._refuse(conn, peer)
                continue
            n += 1
            t = threading.Thread(target=self._run, args=(conn, peer), name="%s conn %d" % (self.what, n), daemon=True)
            with self._lock:
                self.threads.add(t)
            t.start()

    def _run(self, conn: socket.socket, peer) -> None:
        if self.counters is not None:
            self.counters.add(OpenConnectionCount=1)
        try:
            with conn:
                self.serve(conn, peer)
        except OSError as exc:  # the client went away, timed out
            log.info("%s: connection from %s:%s ended: %s", self.what, peer[0], peer[1], exc)
        except Exception:       # one connection's failure must not go unnoticed, nor end the source
            log.exception("%s: connection from %s failed", self.what, peer)
        finally:
            with self._lock:
                self.open -= 1
                self.threads.discard(threading.current_thread())
            if self.counters is not None:
                self.counters.add(OpenConnectionCount=-1)

    def _refuse(self, conn: socket.socket, peer) -> None:
        """Tell the client (without ever blocking the accept loop) and close."""
        try:
            if self.refusal:
                conn.send(self.refusal, socket.MSG_DONTWAIT)
            conn.shutdown(socket.SHUT_WR)
            conn.recv(1 << 16, socket.MSG_DONTWAIT)     # what it already sent: closing on it would reset
        except OSError:
            pass
        conn.close()
        self._refused += 1
        now = time.monotonic()
        if now - self._refusal_logged >= REFUSAL_LOG_EVERY:
            log.warning("%s: refused %d connection(s) (latest from %s:%s): %d open, maxConnections is %d",
                        self.what, self._refused, peer[0], peer[1], self.open, self.config.maxConnections)
            self._refused, self._refusal_logged = 0, now

    def recv(self, conn: socket.socket, size: int = 1 << 16) -> bytes | None:
        """The next bytes from conn (b"" at its end), or None when the source is stopping or
        the client sent nothing for idleTimeout (the connection is then to be closed)."""
        if conn.gettimeout() != POLL:
            conn.settimeout(POLL)
        idle = self.config.idle_seconds
        since = time.monotonic()
        while not self.stopping.is_set():
            try:
                return conn.recv(size)
            except socket.timeout:
                if idle is not None and time.monotonic() - since >= idle:
                    log.info("%s: closing the connection from %s, idle for %d ms (idleTimeout)",
                             self.what, _peer(conn), self.config.idleTimeout)
                    return None
            except OSError as exc:
                log.info("%s: connection from %s ended: %s", self.what, _peer(conn), exc)
                return b""
        return None

    def stop(self, wait: float = 0.0) -> None:
        """Stop accepting and close the socket; wait up to `wait` seconds for the connections."""
        self.stopping.set()
        self._accepter.join(timeout=POLL * 5)
        self.sock.close()
        deadline = time.monotonic() + wait
        for t in list(self.threads):
            t.join(timeout=max(0.0, deadline - time.monotonic()))


def _peer(conn: socket.socket) -> str:
    try:
        return "%s:%s" % conn.getpeername()[:2]
    except OSError:
        return "a closed peer"
