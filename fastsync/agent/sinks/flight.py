"""Our `flight` sink: the sending end of the hop between fastsync agents, an Apache Arrow
Flight client (pyarrow.flight) putting its takes as Arrow record batches into a DoPut
stream to a `flight` source (wire rules in fastsync/agent/flightio.py).

A take is committed only once the source acknowledged its batch, which it does after
committing it to its own channels. Meanwhile the sink takes and sends the next batches,
up to `batches-in-flight` unacknowledged (their take transactions stay open): waiting for
acknowledgements overlaps with sending. When the channel already holds more than one
take's events (the sink is behind), up to 16 takes (at most a quarter of the window) go as
one record batch: one message and one acknowledgement for them, so fewer thread wake-ups per
event on both agents. From a memory channel they are one grouped take (its bodies gathered
once, committed or rolled back together); from another channel each take is its own
transaction, of at most batch-size events. Acknowledgements come in sending order and commit
the takes in that order. A `FAILED` acknowledgement, no acknowledgement for
`request-timeout` ms (a stopped source), or a broken stream rolls back every take in
flight (the last taken first, so the channel keeps their order), drops the connection,
and the batches are sent again on a new one: at-least-once, duplicating at most the
batches in flight whose acknowledgement was lost.

Writes and reads of the stream run on two threads of their own, so the sink's thread only
waits on a queue with a deadline, and a source that stopped answering cannot hold it. With
the window of batches in flight full, the sink's thread waits for half of it to be
acknowledged, woken once for those rather than for each (fewer thread switches per batch). A
connection is checked with a call that carries no data (reachability, TLS, token) within
`connect-timeout`; after a failure the next try waits 0.5 s, doubling up to `maxBackoff`.
A change of the header columns (the record batch's schema) ends the stream once its
acknowledgements are in, and starts a new one.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.flight as fl

from fastsync.agent.component import SINKS, Place, setting
from fastsync.agent.errors import EventDeliveryException
from fastsync.agent.flightio import ACTION_PING, DESCRIPTOR, OK, TokenSettings, keep_heap, parse_ack, read_pem, seq_bytes
from fastsync.agent.sink import TAKE_WAIT, Sink, SinkConfig
from fastsync.agent.source import Status

log = logging.getLogger("fastsync.sink.flight")
TAKES_PER_CALL = 16     # at most per process() call (one in a load-balancing sink group)
TAKES_PER_MESSAGE = 16  # takes already in the channel sent together as one record batch
MESSAGES_IN_FLIGHT = 4  # a message holds at most batches-in-flight / this many takes
FIRST_BACKOFF = 0.5     # seconds before reconnecting after a first failure
WAIT_STEP = 0.2         # seconds: how often a wait looks at the stop flag
STOP_WAIT = 5.0         # seconds stop() waits for the acknowledgements of the batches in flight


@dataclass(repr=False)
class FlightSinkConfig(TokenSettings, SinkConfig):
    hostname: str = setting("hostname", doc="host of the flight source")
    port: int = setting("port", doc="port of the flight source", min=1, max=65535)
    batchSize: int = setting("batch-size", 1000, "events per take transaction (one record batch)", min=1)
    requestTimeout: int = setting("request-timeout", 20000, "ms without an acknowledgement (while batches are in "
                                  "flight) after which they are rolled back and the connection dropped", min=1)
    connectTimeout: int = setting("connect-timeout", 20000, "ms to wait for the source to answer a new connection", min=1)
    inFlight: int = setting("batches-in-flight", 64, "batches sent and not yet acknowledged (their takes stay "
                            "open); 1: wait for each before sending the next", min=1)
    maxBackoff: int = setting("maxBackoff", 30000, "longest wait between two connection attempts, ms", min=0)
    ssl: bool = setting("ssl", False, "connect with TLS")
    trustedCertificates: str = setting("ssl.trustedCertificates", "", "ssl: PEM CA certificates that verify the "
                                       "source (default: the system's)")
    trustAllCerts: bool = setting("trust-all-certs", False, "ssl: do not verify the source's certificate (insecure)")

    def validate(self, place: Place) -> None:
        self.check_token(place)
        if not self.hostname.strip():
            raise place.error("hostname", "hostname must not be empty")
        if self.trustedCertificates:
            read_pem(place, "ssl.trustedCertificates", self.trustedCertificates)


class _AckQueue:
    """The acknowledgements the reader thread got, then None at the stream's end or the
    exception that ended it. A waiter asks for several and is woken once they are in (or at
    the end), not for each: one wake-up of the sink's thread for several batches."""

    def __init__(self):
        self.items: deque = deque()
        self.cond = threading.Condition(threading.Lock())
        self.want = 1
        self.ended = False

    def put(self, item, end: bool = False) -> None:
        with self.cond:
            self.items.append(item)
            self.ended = self.ended or end
            if self.ended or len(self.items) >= self.want:
                self.cond.notify()

    def take(self, want: int = 0, timeout: float = 0.0) -> list:
        """All that are in; with `want`, first wait up to `timeout` s until that many are."""
        with self.cond:
            if want and len(self.items) < want and not self.ended:
                self.want = want
                self.cond.wait(timeout)
                self.want = 1
            items = list(self.items)
            self.items.clear()
            return items


class _Stream:
    """One DoPut call. Record batches are written by a thread of its own and the
    acknowledgements read by another into `acks` (then None at the stream's end, or the
    exception that ended it): the sink's thread never blocks on the network."""

    def __init__(self, client: fl.FlightClient, schema: pa.Schema, options: fl.FlightCallOptions, name: str):
        self.schema = schema
        self.acks = _AckQueue()
        self.out: queue.SimpleQueue = queue.SimpleQueue()    # (batch, seq) to write; None: done
        self.abandoned = False
        threading.Thread(target=self._write, args=(client, options), name="%s writer" % name, daemon=True).start()

    def send(self, record: pa.RecordBatch, seq: int) -> None:
        self.out.put((record, pa.py_buffer(seq_bytes(seq))))

    def finish(self) -> None:
        """No more batches: end the stream once those queued are written."""
        self.out.put(None)

    def abandon(self) -> None:
        """Given up (its batches are rolled back): write nothing more, end when the network lets."""
        self.abandoned = True
        self.out.put(None)

    def _write(self, client, options) -> None:
        try:
            writer, reader = client.do_put(fl.FlightDescriptor.for_command(DESCRIPTOR), self.schema, options)
            threading.Thread(target=self._read, args=(reader,), name="reader", daemon=True).start()
            while True:
                item = self.out.get()
                if item is None or self.abandoned:
                    break
                writer.write_with_metadata(*item)
            if not self.abandoned:
                writer.done_writing()
            writer.close()
        except Exception as exc:
            self.acks.put(exc, end=True)

    def _read(self, reader) -> None:
        try:
            while True:
                buf = reader.read()
                self.acks.put(buf, end=buf is None)
                if buf is None:
                    return
        except Exception as exc:
            self.acks.put(exc, end=True)


class _Sent:
    """One record batch sent: the takes it holds (their events per take in `counts`), whose
    transactions `txs` (one for them all from a memory channel, else one per take) stay open
    until it is acknowledged, committed then in take order; `events` of them in all."""
    __slots__ = ("txs", "counts", "events", "nbytes", "seq", "shares")

    def __init__(self, txs: list, counts: list[int], events: int, nbytes: int, seq: int):
        self.txs, self.counts, self.events, self.nbytes, self.seq = txs, counts, events, nbytes, seq
        self.shares = counts if len(txs) == len(counts) else [events]    # events per transaction


@SINKS.register("flight")
class FlightSink(Sink):
    Config = FlightSinkConfig

    def __init__(self, name, config, **wiring):
        super().__init__(name, config, **wiring)
        c = config
        self.where = "%s:%d" % (c.hostname, c.port)
        self.client: fl.FlightClient | None = None
        self.stream: _Stream | None = None
        self.pending: deque[_Sent] = deque()     # in take (and sending) order
        self.takes = 0              # take transactions open in `pending`
        self.seq = 0
        self.progress = 0.0         # when the last acknowledgement came (or the first batch in flight left)
        self.backoff = 0.0
        self.next_try = 0.0
        self.stopping = threading.Event()
        self.options: fl.FlightCallOptions | None = None
        self.unsent = None          # the takes being sent, while an earlier stream drains

    def start(self) -> None:
        keep_heap()
        token = self.config.secret()
        headers = [(b"authorization", b"Bearer " + token)] if token else []
        self.options = fl.FlightCallOptions(headers=headers)
        self.ping_options = fl.FlightCallOptions(headers=headers, timeout=self.config.connectTimeout / 1000)
        self.stopping.clear()
        super().start()

    # -- the pipeline: send takes while earlier ones wait for their acknowledgements --

    def process(self) -> Status:
        pending = self.pending
        if pending:
            self._collect(block=False)
        if self.client is None and not pending:
            self._connect()
        took, most = 0, self.transactions_per_process or TAKES_PER_CALL
        while took < most and self.takes < self.config.inFlight and not self.stopping.is_set():
            # with batches in flight, don't wait for events: their acknowledgements may be in
            n = self._take_and_send(0 if pending else TAKE_WAIT, min(most - took, self.config.inFlight - self.takes))
            if not n:
                break
            took += n
        if took:
            return Status.READY
        if pending:
            self._collect(block=True)
            return Status.READY
        self.counters.add(BatchEmptyCount=1)
        self.idle()
        return Status.BACKOFF

    def _take_and_send(self, timeout: float, most: int) -> int:
        """Take a batch (waiting up to timeout for one), and with it up to `most` takes in
        all (at most TAKES_PER_MESSAGE, and a quarter of the window so that several messages
        are in flight), those the channel already holds, and send them as one record batch:
        one message, one acknowledgement and fewer thread wake-ups on both agents for
        several takes when the sink is behind; a trickle still goes at once. Returns the
        number of takes sent."""
        most = min(most, TAKES_PER_MESSAGE, max(1, self.config.inFlight // MESSAGES_IN_FLIGHT))
        got = self.open_takes(timeout, most)
        if got is None:
            return 0
        txs, batch, counts = got
        self.unsent = txs       # rolled back first if what is in flight fails now
        try:
            record = batch.to_arrow()
            if self.stream is None or self.stream.schema != record.schema:
                self._drain()           # the new header columns need a new stream
                if self.stream is not None:
                    self.stream.finish()
                self.stream = _Stream(self.client, record.schema, self.options, "flight sink %s" % self.name)
        except EventDeliveryException:
            raise                   # _fail's, or stopping: rolled back
        except BaseException as exc:
            self._fail(exc)
        finally:
            self.unsent = None
        self.seq += 1
        if not self.pending:
            self.progress = time.monotonic()
        n = len(batch)
        self.pending.append(_Sent(txs, counts, n, batch.nbytes, self.seq))
        self.takes += len(counts)
        self.counters.add(EventDrainAttemptCount=n)
        self.stream.send(record, self.seq)
        return len(counts)

    def _drain(self) -> None:
        while self.pending:
            self._collect(block=True)
            if self.stopping.is_set():
                self._roll_back(in_flight=False)    # stop() resolves those in flight
                raise EventDeliveryException("sink %s is stopping" % self.name)

    def _collect(self, block: bool) -> None:
        """Commit the takes whose acknowledgements are in, in order; with block, wait (up to
        request-timeout since the last progress) for at least one, or, with the window of
        batches in flight full, for half of it."""
        pending, acks, c = self.pending, self.stream.acks, self.config
        want = 0
        if block:
            want, left = 0, self.takes
            if left >= c.inFlight:      # the acknowledgements that bring it down to half of the window
                for sent in pending:
                    if left <= c.inFlight // 2:
                        break
                    left -= len(sent.txs)
                    want += 1
            want = max(1, want)
        while pending:
            if want:
                left = self.progress + c.requestTimeout / 1000 - time.monotonic()
                if left <= 0:
                    self._fail("no acknowledgement within request-timeout (%d ms)" % c.requestTimeout)
                if self.stopping.is_set():
                    return
                items = acks.take(want, min(left, WAIT_STEP))
            else:
                items = acks.take()
            for item in items:
                self._acknowledged(item)
            want = max(0, want - len(items))
            if not want:
                return

    def _acknowledged(self, item) -> None:
        """Commit the take at the head for its acknowledgement `item`, or fail."""
        if item is None:
            self._fail("the source ended the stream")
        if isinstance(item, Exception):
            self._fail(item)
        if not self.pending:
            self._fail("an acknowledgement with no batch in flight")
        seq, status = parse_ack(item)
        head = self.pending[0]
        if seq != head.seq:
            self._fail("acknowledgement of batch %d while batch %d was expected" % (seq, head.seq))
        if status != OK:
            self._fail("the source refused the batch: %s" % status.decode("utf-8", "replace"))
        self.progress = time.monotonic()
        self._commit(head)

    def _commit(self, sent: _Sent) -> None:
        """Commit the takes of the acknowledged head of `pending`, in take order."""
        while sent.txs:
            tx = sent.txs[0]
            try:
                tx.commit()
            except BaseException:
                tx.rollback()       # the rest stay in pending, rolled back by _fail
                raise
            finally:
                tx.close()
            sent.txs.pop(0)
        self.takes -= len(sent.counts)
        self.pending.popleft()
        if self.reported:
            self.reported.clear()
        full = sum(n == self.batch_size for n in sent.counts)
        self.counters.add(EventDrainSuccessCount=sent.events, EventDrainSuccessBytes=sent.nbytes,
                          BatchCompleteCount=full, BatchUnderflowCount=len(sent.counts) - full)

    def _fail(self, why):
        """Roll back every take in flight (and the one not yet sent), drop the connection, raise."""
        reason = why if isinstance(why, str) else _describe(why)
        rolled = self._roll_back()
        self._disconnect()
        self._schedule_retry()
        exc = EventDeliveryException("flight sink %s: %s: %s; %d events rolled back, to be sent again"
                                     % (self.name, self.where, reason, rolled))
        self.counters.add(EventWriteFail=1)
        self._report(exc, rolled)
        raise exc

    def _roll_back(self, in_flight: bool = True) -> int:
        """Roll back the take not yet sent and (in_flight) those sent: the last taken first,
        so the channel keeps their order. Returns the events of those in flight."""
        events = 0
        if self.unsent is not None:
            for tx in reversed(self.unsent):
                tx.rollback()
                tx.close()
            self.unsent = None
        if not in_flight:
            return 0
        for sent in reversed(self.pending):
            for tx in reversed(sent.txs):
                tx.rollback()
                tx.close()
            events += sum(sent.shares[len(sent.shares) - len(sent.txs):])
        self.pending.clear()
        self.takes = 0
        return events

    # -- the connection --

    def _connect(self) -> None:
        c = self.config
        wait = self.next_try - time.monotonic()
        if wait > 0:
            exc = EventDeliveryException("flight sink %s: %s: not connected, next try in %.1fs" % (self.name, self.where, wait))
            exc.logged = True       # the failure that set the backoff was
            raise exc
        host = "[%s]" % c.hostname if ":" in c.hostname else c.hostname
        location = "%s://%s:%d" % ("grpc+tls" if c.ssl else "grpc", host, c.port)
        kw: dict = {}
        if c.ssl:
            if c.trustAllCerts:
                kw["disable_server_verification"] = True
            elif c.trustedCertificates:
                with open(c.trustedCertificates, "rb") as f:
                    kw["tls_root_certs"] = f.read()
        client = fl.FlightClient(location, **kw)
        try:
            for _ in client.do_action(fl.Action(ACTION_PING, b""), self.ping_options):
                pass
        except Exception as exc:
            client.close()
            self.counters.add(ConnectionFailedCount=1)
            self._schedule_retry()
            err = EventDeliveryException("flight sink %s: %s: %s" % (self.name, self.where, _describe(exc, connecting=True)))
            self._report_connect(err)
            raise err from None
        self.client = client
        self.backoff = 0.0
        self.counters.add(ConnectionCreatedCount=1)
        log.info("flight sink %s: connected to %s%s", self.name, self.where, " (TLS)" if c.ssl else "")

    def _report_connect(self, err: EventDeliveryException) -> None:
        text = str(err)
        if text not in self.reported:
            self.reported.add(text)
            log.error("%s (logged once until a batch gets through; retrying)", text)
        err.logged = True

    def _schedule_retry(self) -> None:
        cap = self.config.maxBackoff / 1000
        self.backoff = min(cap, self.backoff * 2 if self.backoff else FIRST_BACKOFF)
        self.next_try = time.monotonic() + self.backoff

    def _disconnect(self) -> None:
        if self.stream is not None:
            self.stream.abandon()
            self.stream = None
        if self.client is not None:
            self.client.close()
            self.client = None
            self.counters.add(ConnectionClosedCount=1)

    def interrupt(self) -> None:
        self.stopping.set()

    def stop(self) -> None:
        self.stopping.set()
        if self.pending and self.stream is not None:
            # the acknowledgements of the batches in flight, if they come soon
            deadline = time.monotonic() + min(STOP_WAIT, self.config.requestTimeout / 1000)
            try:
                while self.pending and time.monotonic() < deadline:
                    for item in self.stream.acks.take(len(self.pending), max(0.0, deadline - time.monotonic())):
                        seq, status = parse_ack(item)
                        if seq != self.pending[0].seq or status != OK:
                            raise ValueError("not the acknowledgement of the head")
                        self._commit(self.pending[0])
            except Exception as exc:        # the rest is rolled back below
                log.debug("sink %s: %s", self.name, exc)
        rolled = self._roll_back()
        if rolled:
            log.info("flight sink %s: %d events unacknowledged at stop, rolled back", self.name, rolled)
        if self.stream is not None and not self.pending:
            self.stream.finish()
            self.stream = None
        self._disconnect()
        super().stop()


def _describe(exc: BaseException, connecting: bool = False) -> str:
    """One line for a failed call, naming gRPC's reason; never a header (the token)."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if isinstance(exc, fl.FlightUnauthenticatedError):
        return "unauthenticated: the source refused the token (auth.token / auth.tokenFile)"
    if isinstance(exc, fl.FlightTimedOutError) and connecting:
        return "no answer within connect-timeout"
    if isinstance(exc, fl.FlightUnavailableError):
        return ("cannot connect: " if connecting else "connection lost: ") + text
    return text
