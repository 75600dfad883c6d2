"""A private Kafka broker for the tests that stop and restart one: a one-node KRaft broker
from the jars scripts/services.sh fetched, on free loopback ports, its storage under the
test's tmp_path. The shared broker (127.0.0.1:9092) that other tests use is never touched.

    broker = PrivateBroker(tmp_path / "kafka"); broker.start()   # waits until it answers
    broker.bootstrap                                             # "127.0.0.1:<port>"
    broker.stop(); broker.start()                                # same storage, same ports

FreezingProxy sits between clients and a broker advertised at the proxy's port; freeze()
makes the connections open at that moment silently dead (nothing forwarded, no reset), as a
peer that vanished without closing, while new connections work.
"""
from __future__ import annotations

import glob
import os
import select
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from e2e_support import free_port, poll

KAFKA_LIBS = Path(os.environ.get("FASTSYNC_KAFKA_HOME", Path.home() / ".cache/fastsync-kafka")) / "libs"


class PrivateBroker:
    def __init__(self, home: Path, port: int | None = None, advertised_port: int | None = None):
        """advertised_port: the port clients are told to connect to (a proxy's)."""
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        self.port, self.controller = port or free_port(), free_port()
        self.bootstrap = "127.0.0.1:%d" % (advertised_port or self.port)
        self.proc: subprocess.Popen | None = None
        self.cp = os.pathsep.join(glob.glob(str(KAFKA_LIBS / "*.jar")))
        assert self.cp, "Kafka's jars are missing from %s: run scripts/services.sh up" % KAFKA_LIBS
        self.config = self.home / "server.properties"
        self.config.write_text("\n".join([
            "process.roles=broker,controller", "node.id=1",
            "controller.quorum.voters=1@127.0.0.1:%d" % self.controller,
            "listeners=PLAINTEXT://127.0.0.1:%d,CONTROLLER://127.0.0.1:%d" % (self.port, self.controller),
            "advertised.listeners=PLAINTEXT://%s" % self.bootstrap,
            "controller.listener.names=CONTROLLER", "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs=%s" % (self.home / "data"), "num.partitions=1",
            "offsets.topic.replication.factor=1", "offsets.topic.num.partitions=4",
            "transaction.state.log.replication.factor=1", "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1", "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0", ""]))
        (self.home / "log4j2.properties").write_text("\n".join([
            "appender.out.type=Console", "appender.out.name=out", "appender.out.layout.type=PatternLayout",
            "appender.out.layout.pattern=[%d] %p %m (%c)%n", "rootLogger.level=WARN", "rootLogger.appenderRef.out.ref=out", ""]))
        self._java("kafka.tools.StorageTool", "format", "-c", str(self.config), "-t",
                   self._java("kafka.tools.StorageTool", "random-uuid").strip())

    def _java(self, cls: str, *args: str) -> str:
        r = subprocess.run(["java", "-cp", self.cp, cls, *args], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout

    def start(self, timeout: float = 120) -> None:
        log = open(self.home / "broker.log", "ab")
        self.proc = subprocess.Popen(
            ["java", "-Xms128m", "-Xmx512m", "-Dlog4j2.configurationFile=%s" % (self.home / "log4j2.properties"),
             "-cp", self.cp, "kafka.Kafka", str(self.config)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        poll(self.answers, timeout, interval=0.5,
             message="private Kafka broker on %s (log %s)" % (self.bootstrap, self.home / "broker.log"))

    def answers(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, (self.home / "broker.log").read_text()[-3000:]
        from confluent_kafka.admin import AdminClient
        try:
            socket.create_connection(("127.0.0.1", self.port), 1).close()     # before librdkafka: no refused-connection noise
            return bool(AdminClient({"bootstrap.servers": self.bootstrap}).list_topics(timeout=2).brokers)
        except Exception:
            return False

    def stop(self) -> None:
        """SIGTERM (a clean shutdown, as scripts/services.sh down does), then wait."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None


class FreezingProxy:
    """A TCP forwarder from a free loopback port (`port`) to `target_port`."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.frozen: set = set()       # ids of the connections frozen
        self.ended: set = set()        # ids of the connections closed
        self.parked: set = set()       # ids of the frozen connections whose forwarding stopped
        self.after: dict = {}          # bytes forwarded per connection after the first freeze
        self.conns: list = []          # (id, client socket, upstream socket)
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), 5)
            except OSError:
                client.close()
                continue
            cid = len(self.conns)
            self.conns.append((cid, client, upstream))
            threading.Thread(target=self._pump, args=(cid, client, upstream), daemon=True).start()

    def _pump(self, cid: int, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        try:
            while not self.closed:
                if cid in self.frozen:      # read nothing, send nothing, close nothing
                    self.parked.add(cid)
                    time.sleep(0.2)
                    continue
                for s in select.select([a, b], [], [], 0.2)[0]:
                    data = s.recv(65536)
                    if not data:
                        return
                    peers[s].sendall(data)
                    if self.frozen:
                        self.after[cid] = self.after.get(cid, 0) + len(data)
        except OSError:
            pass
        finally:
            self.ended.add(cid)
            if cid not in self.frozen:
                a.close()
                b.close()

    def freeze(self) -> int:
        """Freeze every connection open now; returns how many."""
        ids = {cid for cid, _, _ in self.conns} - self.ended
        self.frozen |= ids
        # a forwarding in progress may still pass one chunk: wait until each has stopped
        poll(lambda: ids <= self.parked | self.ended, 10, interval=0.05, message="connections frozen")
        return len(ids - self.ended)

    def close(self) -> None:
        self.closed = True
        self.server.close()
        for _, a, b in self.conns:
            a.close()
            b.close()
