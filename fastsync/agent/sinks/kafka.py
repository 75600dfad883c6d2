"""Flume's Kafka sink: each event one Kafka message, through confluent-kafka (librdkafka).

A take is committed only once every message of it is acknowledged; meanwhile the sink
takes and produces the next batches (until `maxEventsInFlight` events await acknowledgement), so
waiting for acknowledgements overlaps with producing. Each batch's messages carry one
`_Acks` object as their delivery callback: librdkafka's client holds it until a message's
delivery report is served and only failures call it (`delivery.report.only.error`), so a
batch is acknowledged exactly when that object is gone, with no Python call per message.
A process() call makes up to TAKES_PER_CALL takes (one in a load-balancing sink group, whose
turns are one take each, as Flume's) while there is room in flight, and
produces each take's messages with map() over the values (produce() called from C). From a
memory channel, a take of headerless events is a transaction the ring holds natively,
handing the bodies as bytes (MemoryChannel.take_open): no batch, no Python transaction.
Takes are committed in the order they were taken; a batch with a failed message is rolled
back (after every batch in flight has its reports) and retried: at-least-once, duplicating
at most the batches in flight. While the broker is away the wait goes on (librdkafka
retries until `message.timeout.ms`), which is the pipeline's back-pressure; a failed
authentication (a wrong sasl.password) ends the wait, the messages still queued are purged
and the takes rolled back, with the broker's reason. Idempotent producer and `acks=all`
unless the config says otherwise. `kafka.producer.*` keys go to librdkafka as they are
(security.protocol, sasl.*, ssl.*); a password is never logged.

A message that can never be produced (larger than the producer's or the broker's
message.max.bytes, a topic header that is no valid topic name or holds a NUL) goes to
`deadLetterFile` once the rest of the batch is acknowledged; without the file it fails the
batch, retried as Flume does.
"""
from __future__ import annotations

import logging
import re
import threading
import weakref
from collections import deque
from dataclasses import dataclass
from itertools import repeat
from operator import length_hint

from fastsync.agent.component import SINKS, Place, setting
from fastsync.agent.deadletter import DeadLetterFile, dead_letter_setting
from fastsync.agent.errors import ConfigError, EventDeliveryException
from fastsync.agent.metrics import SINK_COUNTERS, Counters
from fastsync.agent.sink import TAKE_WAIT, Sink, SinkConfig
from fastsync.agent.source import Status
from fastsync.event import EventBatch
from fastsync.kafkaio import ClientErrors, client_config, encode_events, produce, without_secrets

try:
    from confluent_kafka import KafkaError, KafkaException
    # errors that trying again can't fix: the message is too large for the client or the
    # broker, or its topic (from the topic header) is no valid topic name
    PERMANENT = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.TOPIC_EXCEPTION,
                           KafkaError.RECORD_LIST_TOO_LARGE, KafkaError.INVALID_RECORD})
except ImportError:        # reported by the config's validate()
    KafkaException, PERMANENT = (), frozenset()

log = logging.getLogger("fastsync.sink.kafka")
WAIT_STEP = 0.001   # seconds per flush() while waiting for a batch's acknowledgements
TAKES_PER_CALL = 8  # at most per process() call (one in a load-balancing sink group)
_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")      # Kafka's legal topic names


def valid_topic(name: str) -> bool:
    return _TOPIC.fullmatch(name) is not None and name not in (".", "..")


def never_produced(exc: Exception) -> str | None:
    """Why produce() refused a message for good, or None if trying again may work."""
    if isinstance(exc, KafkaException):
        err = exc.args[0] if exc.args else None
        return err.str() if getattr(err, "code", lambda: None)() in PERMANENT else None
    # a NUL in the topic header, a key or topic that can't be encoded
    return "cannot produce: %s" % exc

@dataclass
class KafkaSinkConfig(SinkConfig):
    PASSTHROUGH = ("kafka.producer.",)
    bootstrapServers: str = setting("kafka.bootstrap.servers", doc="host:port list of the brokers")
    topic: str = setting("kafka.topic", "default-flume-topic", "topic messages go to")
    batchSize: int = setting("flumeBatchSize", 100, "events per take transaction", min=1)
    acks: str = setting("kafka.producer.acks", "all", "acknowledgements a message needs: 0, 1 or all",
                        choices=("0", "1", "-1", "all"))
    useFlumeEventFormat: bool = setting("useFlumeEventFormat", False, "messages are Avro AvroFlumeEvents with the headers")
    allowTopicOverride: bool = setting("allowTopicOverride", True, "a `topicHeader` header picks the topic")
    topicHeader: str = setting("topicHeader", "topic", "header naming the topic of an event")
    keyHeader: str = setting("keyHeader", "key", "header whose value is the message key")
    maxEventsInFlight: int = setting("maxEventsInFlight", 16000, "events produced and not yet acknowledged before "
                                     "the sink waits (takes stay open until acknowledged; at least 2 takes)", min=1)
    deadLetterFile: str = dead_letter_setting()

    def validate(self, place: Place) -> None:
        if not self.bootstrapServers.strip():
            raise place.error("kafka.bootstrap.servers", "Bootstrap Servers must be specified")
        if not valid_topic(self.topic):
            raise place.error("kafka.topic", "%r is not a valid Kafka topic name (letters, digits, . _ -; at most 249)"
                              % self.topic)
        try:
            import confluent_kafka  # noqa: F401  (only to report a missing package here)
        except ImportError:
            raise place.error("type", "the Kafka sink needs confluent-kafka (pip install confluent-kafka)") from None


def _sent(m: int, vals, todo) -> int:
    """The index of the message map() took last from `vals` (of `m`), among `todo` if not None."""
    j = m - length_hint(vals) - 1
    return j if todo is None else todo[j]


class _Acks:
    """The delivery callback of one batch's messages. The client keeps a reference to it per
    message until that message's delivery report is served (confluent-kafka's msgstate), so
    once the sink drops its own, the object is freed exactly when the whole batch is
    reported: a weakref tells the sink, with no Python call per acknowledged message."""

    __slots__ = ("failures", "__weakref__")

    def __init__(self, failures: list):
        self.failures = failures

    def __call__(self, err, msg) -> None:
        if err is not None:     # successes call it too if kafka.producer.delivery.report.only.error is false
            self.failures.append((err, msg))


class _InFlight:
    """A take whose messages are produced; its transaction stays open until every message
    of it has its delivery report."""

    __slots__ = ("tx", "n", "nbytes", "batch", "topics", "values", "keys", "acks", "failures", "dead")

    def __init__(self, tx, batch, topics, values, keys, nbytes: int = 0):
        self.tx, self.batch = tx, batch
        self.n, self.nbytes = (len(batch), batch.nbytes) if batch is not None else (len(values), nbytes)
        self.topics, self.values, self.keys = topics, values, keys
        self.failures: list = []
        self.dead: list = []     # (event index, reason) of messages that can never be produced
        self.acks = None         # weakref to the batch's _Acks, None once it is gone

    @property
    def acked(self) -> bool:
        return self.acks is None or self.acks() is None


@SINKS.register("kafka", "org.apache.flume.sink.kafka.KafkaSink")
class KafkaSink(Sink):
    Config = KafkaSinkConfig

    def __init__(self, name, config, **wiring):
        super().__init__(name, config, **wiring)
        self.producer = None
        self.pending: deque[_InFlight] = deque()   # in take order
        self.in_flight = 0                         # events in them
        self.errors = ClientErrors(log, "sink " + name)
        self.stopping = threading.Event()
        self.counters = Counters("SINK", SINK_COUNTERS + ("DeadLetterCount",))
        self.dead_letters = DeadLetterFile(config.deadLetterFile) if config.deadLetterFile else None

    def start(self) -> None:
        from confluent_kafka import Producer
        c = self.config
        # the idempotent producer needs acks=all; with fewer acks it is off unless asked for
        conf = client_config(getattr(c, "extra", {}), "kafka.producer.", {
            "enable.idempotence": c.acks in ("all", "-1"), "linger.ms": 5, "delivery.report.only.error": True})
        conf.update({"bootstrap.servers": c.bootstrapServers, "acks": c.acks, "error_cb": self.errors})
        try:
            self.producer = Producer(conf)
        except Exception as exc:   # KafkaException for a bad kafka.producer.* setting
            raise ConfigError("sink %s: Kafka producer settings rejected: %s" % (self.name, without_secrets(str(exc), conf))) from None
        self.stopping.clear()
        if self.dead_letters is not None:
            self.dead_letters.open()
        super().start()

    # -- the pipeline: take and produce while earlier takes wait for their acknowledgements --

    def process(self) -> Status:
        pending = self.pending
        self._complete()
        limit = self.config.maxEventsInFlight
        if len(pending) >= 2 and self.in_flight >= limit:
            self._wait(pending[0], send_now=False)
            self._complete()
            return Status.READY
        # several takes per call while there are events and room in flight: what each call
        # costs (and serving the delivery reports) is paid once for them
        took, most = 0, self.transactions_per_process or TAKES_PER_CALL
        while took < most and (len(pending) < 2 or self.in_flight < limit):
            # with batches in flight, don't wait for events: their acknowledgements may be in
            if not self._take(0 if pending else TAKE_WAIT):
                break
            took += 1
        if took:
            self.producer.poll(0)       # serve the delivery reports that arrived
            return Status.READY
        if pending:
            self._wait(pending[0])
            self._complete()
            return Status.READY
        self.counters.add(BatchEmptyCount=1)
        self.idle()
        return Status.BACKOFF

    def _take(self, timeout: float) -> bool:
        """Take a batch and produce it, its transaction left open in `pending`; False when
        the channel had no event."""
        take_open = getattr(self.channel, "take_open", None)
        if take_open is not None and not self.config.useFlumeEventFormat:
            # a memory channel hands headerless events' bodies as bytes from a take
            # transaction it holds natively (no batch, no Python transaction object)
            t = take_open(self.batch_size, timeout)
            if t is None:
                return False
            if t is not False:
                return self._started(_InFlight(t, None, None, t.bodies(), None, t.nbytes))
        taken = self.open_take(timeout)
        if taken is None:
            return False
        return self._started(_InFlight(*taken, None, None, None))

    def _started(self, rec: _InFlight) -> bool:
        """Produce a take's messages; its transaction stays open in `pending`."""
        self.counters.add(EventDrainAttemptCount=rec.n)
        try:
            self._produce(rec)
        except BaseException as exc:
            rec.tx.rollback()
            rec.tx.close()
            if isinstance(exc, Exception):
                self._failed(exc, rec.n)
            raise
        self.pending.append(rec)
        self.in_flight += rec.n
        return True

    def deliver(self, batch) -> None:
        """Produce one batch and wait for it (no channel transaction: the caller's)."""
        rec = _InFlight(None, batch, None, None, None)
        self._produce(rec)
        self._wait(rec)
        self._finish(rec)

    def _complete(self) -> None:
        """Commit the takes at the head whose messages are all reported, in take order; at the
        first that failed, resolve every batch in flight and raise."""
        pending = self.pending
        while pending and pending[0].acked:
            rec = pending[0]
            try:
                self._finish(rec)
            except Exception:
                self._resolve_all()     # raises
            pending.popleft()
            self.in_flight -= rec.n
            self._commit(rec)

    def _resolve_all(self) -> None:
        """A batch failed: wait for the reports of every batch in flight, commit those
        delivered, roll back the others (the last taken first, so the channel's head keeps
        their order) and raise the first failure."""
        pending = list(self.pending)
        self.pending.clear()
        self.in_flight = 0
        if self.producer is not None:
            for rec in pending:
                if not self._wait(rec):
                    break
        failed, first = [], None
        for rec in pending:
            try:
                self._finish(rec)
            except Exception as exc:
                failed.append(rec)
                first = first or exc
                continue
            self._commit(rec)
        for rec in reversed(failed):
            rec.tx.rollback()
            rec.tx.close()
            self._failed(first, rec.n)
        self.errors.failure = None
        if first is not None:
            raise first

    def _commit(self, rec: _InFlight) -> None:
        self.commit_take(rec.tx, rec.n, rec.nbytes)

    def _failed(self, exc: Exception, n: int) -> None:
        self.counters.add(EventWriteFail=1)
        self._report(exc, n)

    def _wait(self, rec: _InFlight, send_now: bool = True) -> bool:
        """Wait until every message of `rec` has its delivery report; False if the sink is
        stopping first. After an authentication failure what is queued is purged, so every
        batch in flight ends with failures (and is sent again after its rollback)."""
        producer = self.producer
        while not rec.acked:
            if self.errors.failure:
                producer.purge()
                producer.poll(WAIT_STEP)
            elif self.stopping.is_set():
                return False
            elif send_now:
                # flush(), not poll(): it sends what is queued without waiting for linger.ms
                producer.flush(WAIT_STEP)
            else:       # more batches queued behind: let librdkafka fill its requests
                producer.poll(WAIT_STEP)
        return True

    def _produce(self, rec: _InFlight) -> None:
        c = self.config
        batch = rec.batch
        if batch is None:       # a native take: headerless events, the bodies are the values
            values, keys, chosen = rec.values, None, None
        else:
            values, keys = encode_events(batch, c.useFlumeEventFormat, c.keyHeader)
            chosen = batch.header_array(c.topicHeader).to_pylist() if c.allowTopicOverride and c.topicHeader in batch.headers else None
        n = len(values)
        topics = [t or c.topic for t in chosen] if chosen is not None else [c.topic] * n
        one_topic = c.topic if chosen is None and keys is None else None     # the common case, the fastest loop
        keys = keys if keys is not None else [None] * n
        rec.topics, rec.values, rec.keys = topics, values, keys
        if not self.pending:
            self.errors.failure = None
        dead = rec.dead
        todo = None         # indexes to send, None: all
        bad = [t for t in set(chosen) if t and not valid_topic(t)] if chosen is not None else []
        if bad:             # a topic header no topic can ever have
            todo = []
            for i, t in enumerate(topics):
                if t in bad:
                    dead.append((i, "topic header %r is not a valid Kafka topic name (letters, digits, . _ -; "
                                    "at most 249)" % t))
                else:
                    todo.append(i)
            self._no_dead_letters(dead, n)      # fails before anything is sent (no duplicates on each retry)
        acks = _Acks(rec.failures)
        rec.acks = weakref.ref(acks)
        producer, stopping = self.producer, self.stopping
        pick = (lambda seq: seq) if todo is None else (lambda seq: [seq[i] for i in todo])
        vals = iter(pick(values))   # resumed after a message refused or a full queue
        m = length_hint(vals)
        # partition -1: librdkafka's partitioner picks
        args = ((repeat(one_topic), vals, repeat(None)) if one_topic is not None else
                (iter(pick(topics)), vals, iter(pick(keys))))
        args += (repeat(-1), repeat(acks))
        while True:
            try:
                try:
                    # the hot loop: map() calls produce() for each message with no bytecode
                    # in between (a Python for loop costs ~10 % more per message)
                    deque(map(producer.produce, *args), 0)
                    break
                except BufferError:                 # librdkafka's queue is full: wait for room
                    # the message that raised is the last one map() took from `vals`
                    i = _sent(m, vals, todo)
                    produce(producer, topics[i], values[i], keys[i], stopping, on_delivery=acks)
            except (KafkaException, ValueError, TypeError) as exc:   # refused before sending
                reason = never_produced(exc)
                if reason is None:
                    raise
                dead.append((_sent(m, vals, todo), reason))
                self._no_dead_letters(dead, n)
        # from here only the client holds `acks`: it goes once every message is reported

    def _finish(self, rec: _InFlight) -> None:
        """After every report of a batch: raise if it must be rolled back, else write its
        dead letters."""
        n = rec.n
        if not rec.acked:
            raise RuntimeError("sink %s stopped before the messages of a batch of %d were acknowledged" % (self.name, n))
        failures = [(err, msg) for err, msg in rec.failures if err.code() not in PERMANENT]
        if failures:
            reason = self.errors.failure or failures[0][0].str()
            raise RuntimeError("sink %s: %d of %d messages not delivered, the batch stays in the channel: %s"
                               % (self.name, len(failures), n, reason))
        dead = rec.dead
        if rec.failures:
            dead += self._refused(rec)
            rec.failures.clear()
        if dead:
            self._no_dead_letters(dead, n)
            batch = rec.batch if rec.batch is not None else EventBatch.from_bodies(rec.values)
            written = self.dead_letters.write(batch, [(i, r, None) for i, r in sorted(dead)], sink=self.name)
            self.counters.add(DeadLetterCount=written)
            log.warning("sink %s: %d events of this batch to %s, first: %s", self.name, written, self.config.deadLetterFile, dead[0][1])
            rec.dead = []

    def _no_dead_letters(self, dead: list, n: int) -> None:
        """Without a deadLetterFile, an event that can never be produced fails the batch."""
        if self.dead_letters is None:
            raise EventDeliveryException("sink %s: %d of %d events can never be produced and no deadLetterFile, batch "
                                         "rolled back: %s" % (self.name, len(dead), n, dead[0][1]))

    def _refused(self, rec: _InFlight) -> list:
        """(event index, reason) of the messages the broker refused for good (rare path:
        a delivery report names the message, not the event, so they are matched by content)."""
        events: dict = {}
        for i, (t, v, k) in enumerate(zip(rec.topics, rec.values, rec.keys)):
            events.setdefault((t, v, k.encode() if isinstance(k, str) else k), []).append(i)
        refused = []
        for err, msg in rec.failures:
            same = events.get((msg.topic(), msg.value(), msg.key()))
            if same:
                refused.append((same.pop(0), err))
        out = []
        for i, err in refused:
            if err.code() == KafkaError.MSG_SIZE_TOO_LARGE:
                # the broker refuses a whole record batch over its limit: try the message alone
                err = self._alone(rec.topics[i], rec.values[i], rec.keys[i])
                if err is None:
                    continue
            out.append((i, "topic %s: %s" % (rec.topics[i], err.str())))
        return out

    def _alone(self, topic, value, key):
        """Produce one message in a batch of its own: None once acknowledged, the error if
        refused for good; raises if it may work later."""
        rec = _InFlight(None, None, [topic], [value], [key])
        acks = _Acks(rec.failures)
        rec.acks = weakref.ref(acks)
        produce(self.producer, topic, value, key, self.stopping, on_delivery=acks)
        del acks
        if not self._wait(rec):
            raise RuntimeError("sink %s stopped with messages unacknowledged" % self.name)
        if not rec.failures:
            return None
        err = rec.failures[0][0]
        if err.code() not in PERMANENT:
            raise RuntimeError("sink %s: message not delivered: %s" % (self.name, err.str()))
        return err

    def interrupt(self) -> None:
        self.stopping.set()

    def stop(self) -> None:
        self.stopping.set()
        if self.producer is not None:
            self.producer.flush(5)      # the reports of the batches in flight, if they come
            try:
                self._complete()
                if self.pending:
                    self._resolve_all()
            except Exception as exc:    # rolled back, reported
                log.debug("sink %s: %s", self.name, exc)
            self.producer = None
        if self.dead_letters is not None:
            self.dead_letters.close()
        super().stop()
