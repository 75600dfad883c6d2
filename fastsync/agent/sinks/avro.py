"""Flume's `avro` sink: each take is one appendBatch call to an avro source (Flume's or
ours), committed only once that source answered Status OK (it answers after its own
channel commit). FAILED, a timeout, a refused or closed connection roll the take back; the
connection is dropped and made again on the next try (the runner backs off between tries),
so a collector that is down at the start or goes away costs retries, never events.

A process() call makes up to `batchesInFlight` takes (ours; one in a load_balance group,
whose turns are one take each) and sends each as soon as it is taken, before the answers of
the earlier ones: the collector works on one call while the next travels (Flume's sink has
one). Then it waits for the answers in order and commits each take after its OK; at the
first failure it rolls back that take and every later one (nothing is left open between
calls), so a failure duplicates at most those batches. The events of a take are encoded by
column (fastsync._avro.encode_flume_events) and sent as frame buffers without being joined.
Client settings and the wire are fastsync.client's.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from fastsync.agent.component import SINKS, Place, setting
from fastsync.agent.sink import TAKE_WAIT, Sink, SinkConfig
from fastsync.agent.source import Status
from fastsync.client import ClientConfigError, connection_factory

log = logging.getLogger("fastsync.sink.avro")


@dataclass
class AvroSinkConfig(SinkConfig):
    hostname: str = setting("hostname", doc="host of the avro source to send to")
    port: int = setting("port", doc="its port", min=1, max=65535)
    batchSize: int = setting("batch-size", 100, "events per take, and per appendBatch call", min=1)
    connectTimeout: int = setting("connect-timeout", 20000, "ms to connect (and TLS handshake)", min=1)
    requestTimeout: int = setting("request-timeout", 20000, "ms a call waits for its answer before the take is rolled back",
                                  min=1)
    resetConnectionInterval: int = setting("reset-connection-interval", 0,
                                           "s after which the connection is made anew (0: never); to spread load "
                                           "over collectors behind a load balancer", min=0)
    compressionType: str = setting("compression-type", "none", "none or deflate (must match the source)",
                                   choices=("none", "deflate"))
    compressionLevel: int = setting("compression-level", 6, "deflate level, 0..9", min=0, max=9)
    ssl: bool = setting("ssl", False, "TLS to the source")
    trustAllCerts: bool = setting("trust-all-certs", False, "ssl: accept any server certificate")
    truststore: str = setting("truststore", "", "ssl: Java truststore (JKS or PKCS12) of the certificates to trust; "
                              "unset: the system's CAs")
    truststorePassword: str = setting("truststore-password", "", "its password")
    truststoreType: str = setting("truststore-type", "jks", "JKS, JCEKS or PKCS12, any case (the file's real kind is detected)",
                                  choices=("jks", "jceks", "pkcs12"))
    excludeProtocols: str = setting("exclude-protocols", "SSLv3", "ssl: protocols not to use, space separated")
    includeProtocols: str = setting("include-protocols", "", "ssl: only these protocols (space separated; empty: all)")
    batchesInFlight: int = setting("batchesInFlight", 4, "ours: takes sent before the first of them is answered "
                                   "(1: Flume's one call at a time); each is committed after its own OK", min=1)
    maxIoWorkers: int = setting("maxIoWorkers", 0, "accepted for Flume's configs; no effect (one connection, "
                                "one call at a time, as Flume 1.11)", min=0)

    def client_properties(self) -> dict[str, str]:
        """The sink's settings as client properties (as Flume's AbstractRpcSink passes them)."""
        props = {"connect-timeout": str(self.connectTimeout), "request-timeout": str(self.requestTimeout),
                 "compression-type": self.compressionType, "compression-level": str(self.compressionLevel),
                 "ssl": str(self.ssl).lower(), "trust-all-certs": str(self.trustAllCerts).lower(),
                 "truststore-type": self.truststoreType, "exclude-protocols": self.excludeProtocols,
                 "include-protocols": self.includeProtocols}
        if self.truststore:
            props["truststore"] = self.truststore
        if self.truststorePassword:
            props["truststore-password"] = self.truststorePassword
        return props

    def validate(self, place: Place) -> None:
        if not self.hostname.strip():
            raise place.missing("hostname", "No hostname specified")
        try:
            self.connect = connection_factory(self.client_properties())
        except ClientConfigError as exc:
            key, _, message = str(exc).partition(": ")
            if key == "exclude-protocols" and key not in place.props:   # or include-protocols said it
                key = "include-protocols"
            raise place.error(key if key in place.props else "ssl", message) from None


@SINKS.register("avro", "org.apache.flume.sink.AvroSink")
class AvroSink(Sink):
    Config = AvroSinkConfig

    def __init__(self, name, config, **wiring):
        super().__init__(name, config, **wiring)
        connect = getattr(config, "connect", None) or connection_factory(config.client_properties())
        self.conn = connect(config.hostname.strip(), config.port)
        self.connected_at = 0.0

    def start(self) -> None:
        # Flume's sink connects at start and, if it can't, on the first take: so here
        try:
            self._connect()
        except Exception as exc:
            log.warning("sink %s: %s; trying again with each batch", self.name, exc)
        super().start()

    def _connect(self) -> None:
        if not self.conn.connected:
            try:
                self.conn.connect()
            except Exception:
                self.counters.add(ConnectionFailedCount=1)
                raise
            self.connected_at = time.monotonic()
            self.counters.add(ConnectionCreatedCount=1)

    def process(self) -> Status:
        self._maybe_reset()
        most = self.transactions_per_process or self.config.batchesInFlight
        sent: list = []      # [transaction, events, bytes, serial] in take order, not yet committed
        try:
            while len(sent) < most:
                # with calls out, don't wait for events: their answers may be in
                taken = self.open_take(0 if sent else TAKE_WAIT)
                if taken is None:
                    break
                tx, batch = taken
                sent.append([tx, len(batch), batch.nbytes, None])
                self.counters.add(EventDrainAttemptCount=len(batch))
                self._connect()
                sent[-1][3] = self.conn.send_batch(batch)
                if not self.conn.handshaken:
                    break       # the server reads a call after the first as a handshake until it answered the first
            if not sent:
                self.counters.add(BatchEmptyCount=1)
                self.idle()
                return Status.BACKOFF
            while sent:
                tx, n, nbytes, serial = sent[0]
                self.conn.wait(serial, n)
                tx.commit()
                tx.close()
                sent.pop(0)
                self.count_success(n, nbytes)
            return Status.READY
        except Exception as exc:
            self.counters.add(EventWriteFail=1)
            self._report(exc, sum(rec[1] for rec in sent))
            raise
        finally:
            for tx, *_ in reversed(sent):       # the last taken first: the channel's head keeps their order
                tx.rollback()
                tx.close()

    def _maybe_reset(self) -> None:
        interval = self.config.resetConnectionInterval
        if interval and self.conn.connected and time.monotonic() - self.connected_at >= interval:
            self._close()

    def deliver(self, batch) -> None:
        self._maybe_reset()
        self._connect()
        try:
            self.conn.append_batch(batch)
        except Exception:
            self.counters.add(ConnectionClosedCount=1)     # append_batch dropped the connection
            raise

    def _close(self) -> None:
        if self.conn.connected:
            self.conn.close()
            self.counters.add(ConnectionClosedCount=1)

    def interrupt(self) -> None:
        # a call waiting for its answer ends now (its take is rolled back)
        self.conn.close()

    def stop(self) -> None:
        self._close()
        super().stop()
