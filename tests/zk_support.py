"""Real Apache ZooKeeper servers for the tests: the shared standalone one scripts/services.sh
runs (127.0.0.1:2181), and ensembles a test starts for itself (one node it may restart, or
three nodes whose leader it kills), from the same jars (scripts/zookeeper/pom.xml).

    ens = Ensemble(tmp_path / "zk", size=3); ens.start()
    ens.hosts                 '127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3'
    ens.leader()              index of the node whose srvr says Mode: leader (or standalone)
    ens.kill(i); ens.restart(i); ens.stop()
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from e2e_support import free_port

ZK_HOME = Path(os.environ.get("FASTSYNC_ZK_HOME", Path.home() / ".cache" / "fastsync-zookeeper"))
ZK_HOSTS = os.environ.get("FASTSYNC_TEST_ZK", "127.0.0.1:2181")


def four_letter(port: int, word: str, host: str = "127.0.0.1", timeout: float = 2.0) -> str:
    """The server's answer to a four-letter word (ruok, srvr, stat, mntr), '' if none."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(word.encode())
            chunks = []
            while True:
                b = s.recv(65536)
                if not b:
                    break
                chunks.append(b)
            return b"".join(chunks).decode(errors="replace")
    except OSError:
        return ""


def mode(port: int) -> str | None:
    """'leader', 'follower' or 'standalone' while the server serves requests, else None."""
    for line in four_letter(port, "srvr").splitlines():
        if line.startswith("Mode: "):
            return line[6:].strip()
    return None


class Ensemble:
    """`size` ZooKeeper servers on free loopback ports under `root` (standalone if size is 1),
    each a `java` process of ours: kill/restart them to test failover."""

    def __init__(self, root: Path, size: int = 3, tick_ms: int = 500):
        self.root = Path(root)
        self.size = size
        self.tick_ms = tick_ms
        self.client_ports = [free_port() for _ in range(size)]
        self.peer_ports = [(free_port(), free_port()) for _ in range(size)] if size > 1 else []
        self.procs: list[subprocess.Popen | None] = [None] * size

    @property
    def hosts(self) -> str:
        return ",".join("127.0.0.1:%d" % p for p in self.client_ports)

    def _config(self, i: int) -> Path:
        d = self.root / ("node%d" % i)
        (d / "data").mkdir(parents=True, exist_ok=True)
        lines = ["tickTime=%d" % self.tick_ms, "initLimit=20", "syncLimit=10",
                 "dataDir=%s" % (d / "data"), "clientPort=%d" % self.client_ports[i],
                 "clientPortAddress=127.0.0.1", "admin.enableServer=false",
                 "4lw.commands.whitelist=ruok,srvr,stat,mntr"]
        if self.size > 1:
            (d / "data" / "myid").write_text("%d\n" % (i + 1))
            for j, (quorum, election) in enumerate(self.peer_ports):
                lines.append("server.%d=127.0.0.1:%d:%d" % (j + 1, quorum, election))
        cfg = d / "zoo.cfg"
        cfg.write_text("\n".join(lines) + "\n")
        return cfg

    def _spawn(self, i: int) -> None:
        jars = ZK_HOME / "libs"
        if not (jars / ".pom.sha256").exists():
            raise AssertionError("no ZooKeeper jars in %s: run scripts/services.sh up" % jars)
        log = open(self.root / ("node%d.log" % i), "ab")
        self.procs[i] = subprocess.Popen(
            ["java", "-Xmx128m", "-cp", str(jars / "*"), "org.apache.zookeeper.server.quorum.QuorumPeerMain",
             str(self._config(i))], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()

    def start(self, timeout: float = 60.0) -> "Ensemble":
        self.root.mkdir(parents=True, exist_ok=True)
        for i in range(self.size):
            self._spawn(i)
        self.wait_serving(timeout)
        return self

    def wait_serving(self, timeout: float = 60.0, nodes=None) -> None:
        """Until every given node (default: every running one) serves requests."""
        nodes = [i for i in range(self.size) if self.procs[i] is not None] if nodes is None else nodes
        deadline = time.monotonic() + timeout
        while True:
            waiting = [i for i in nodes if mode(self.client_ports[i]) is None]
            if not waiting:
                return
            for i in waiting:
                p = self.procs[i]
                if p is not None and p.poll() is not None:
                    raise AssertionError("ZooKeeper node %d exited (%s): %s" % (i, p.returncode, self.log_tail(i)))
            if time.monotonic() > deadline:
                raise AssertionError("ZooKeeper nodes %s not serving within %.0f s: %s"
                                     % (waiting, timeout, self.log_tail(waiting[0])))
            time.sleep(0.2)

    def log_tail(self, i: int, lines: int = 5) -> str:
        p = self.root / ("node%d.log" % i)
        return " | ".join(p.read_text(errors="replace").splitlines()[-lines:]) if p.exists() else ""

    def leader(self, timeout: float = 60.0) -> int:
        """Index of the node that leads (or of the standalone node), once one does: an election
        after a leader's death takes a few ticks, longer on a loaded machine."""
        deadline = time.monotonic() + timeout
        while True:
            for i, port in enumerate(self.client_ports):
                if self.procs[i] is not None and mode(port) in ("leader", "standalone"):
                    return i
            if time.monotonic() > deadline:
                raise AssertionError("no ZooKeeper node leads within %.0f s" % timeout)
            time.sleep(0.2)

    def kill(self, i: int, sig: int = signal.SIGKILL) -> None:
        p = self.procs[i]
        if p is not None and p.poll() is None:
            p.send_signal(sig)
            p.wait(30)
        self.procs[i] = None

    def restart(self, i: int, timeout: float = 60.0) -> None:
        self.kill(i)
        self._spawn(i)
        self.wait_serving(timeout, nodes=[i])

    def stop(self) -> None:
        for i in range(self.size):
            self.kill(i)
