"""Flume's Kafka sink: each event one Kafka message, through confluent-kafka (librdkafka).

The take is committed only once every message of the batch is acknowledged: the batch is
produced, then flushed; a delivery failure (reported by librdkafka only for failures,
`delivery.report.only.error`) or messages still unacknowledged when the sink stops raise,
so the take is rolled back and the batch retried. While the broker is away the flush
waits (librdkafka retries until `message.timeout.ms`), which is the pipeline's
back-pressure; a failed authentication (a wrong sasl.password) ends the wait, the messages
still queued are purged and the take rolled back, with the broker's reason. Idempotent
producer and `acks=all` unless the config says otherwise. `kafka.producer.*` keys go to
librdkafka as they are (security.protocol, sasl.*, ssl.*); a password is never logged.

A message that can never be produced (larger than the producer's or the broker's
message.max.bytes, a topic header that is no valid topic name or holds a NUL) goes to
`deadLetterFile` once the rest of the batch is acknowledged; without the file it fails the
batch, retried as Flume does.
"""
from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass

from fastsync.agent.component import SINKS, Place, setting
from fastsync.agent.deadletter import DeadLetterFile, dead_letter_setting
from fastsync.agent.errors import ConfigError, EventDeliveryException
from fastsync.agent.metrics import SINK_COUNTERS, Counters
from fastsync.agent.sink import Sink, SinkConfig
from fastsync.kafkaio import ClientErrors, client_config, encode_events, flush_all, produce, without_secrets

try:
    from confluent_kafka import KafkaError, KafkaException
    # errors that trying again can't fix: the message is too large for the client or the
    # broker, or its topic (from the topic header) is no valid topic name
    PERMANENT = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.TOPIC_EXCEPTION,
                           KafkaError.RECORD_LIST_TOO_LARGE, KafkaError.INVALID_RECORD})
except ImportError:        # reported by the config's validate()
    KafkaException, PERMANENT = (), frozenset()

log = logging.getLogger("fastsync.sink.kafka")
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


@SINKS.register("kafka", "org.apache.flume.sink.kafka.KafkaSink")
class KafkaSink(Sink):
    Config = KafkaSinkConfig

    def __init__(self, name, config):
        super().__init__(name, config)
        self.producer = None
        self.failures: list = []
        self.errors = ClientErrors(log, "sink " + name)
        self.stopping = threading.Event()
        self.counters = Counters("SINK", SINK_COUNTERS + ("DeadLetterCount",))
        self.dead_letters = DeadLetterFile(config.deadLetterFile) if config.deadLetterFile else None

    def _on_delivery(self, err, msg) -> None:
        if err is not None:
            self.failures.append((err, msg))

    def start(self) -> None:
        from confluent_kafka import Producer
        c = self.config
        # the idempotent producer needs acks=all; with fewer acks it is off unless asked for
        conf = client_config(getattr(c, "extra", {}), "kafka.producer.", {
            "enable.idempotence": c.acks in ("all", "-1"), "linger.ms": 5, "delivery.report.only.error": True})
        conf.update({"bootstrap.servers": c.bootstrapServers, "acks": c.acks, "on_delivery": self._on_delivery,
                     "error_cb": self.errors})
        try:
            self.producer = Producer(conf)
        except Exception as exc:   # KafkaException for a bad kafka.producer.* setting
            raise ConfigError("sink %s: Kafka producer settings rejected: %s" % (self.name, without_secrets(str(exc), conf))) from None
        self.stopping.clear()
        if self.dead_letters is not None:
            self.dead_letters.open()
        super().start()

    def deliver(self, batch) -> None:
        c = self.config
        values, keys = encode_events(batch, c.useFlumeEventFormat, c.keyHeader)
        n = len(values)
        chosen = batch.header_array(c.topicHeader).to_pylist() if c.allowTopicOverride and c.topicHeader in batch.headers else None
        topics = [t or c.topic for t in chosen] if chosen is not None else [c.topic] * n
        keys = keys if keys is not None else [None] * n
        self.failures.clear()
        self.errors.failure = None
        producer, stopping = self.producer, self.stopping
        dead = []           # (event index, reason) of messages that can never be produced
        todo = range(n)
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
        start = 0
        while start < len(todo):
            try:
                for pos in range(start, len(todo)):
                    i = todo[pos]
                    produce(producer, topics[i], values[i], keys[i], stopping)
                break
            except (KafkaException, ValueError, TypeError) as exc:   # refused before sending
                reason = never_produced(exc)
                if reason is None:
                    raise
                dead.append((i, reason))
                self._no_dead_letters(dead, n)
                start = pos + 1
        # every message acknowledged (or failed) before the take may commit
        left = flush_all(producer, stopping, self.errors)
        if left and self.errors.failure:
            raise RuntimeError("sink %s: %d of %d messages not delivered, the batch stays in the channel: %s"
                               % (self.name, left, len(values), self.errors.failure))
        if left:
            raise RuntimeError("sink %s stopped with %d messages unacknowledged" % (self.name, left))
        failures = [(err, msg) for err, msg in self.failures if err.code() not in PERMANENT]
        if failures:
            err = failures[0][0]
            raise RuntimeError("sink %s: %d of %d messages not delivered: %s" % (self.name, len(failures), n, err.str()))
        if self.failures:
            dead += self._refused(topics, values, keys)
        if dead:
            self._no_dead_letters(dead, n)
            written = self.dead_letters.write(batch, [(i, r, None) for i, r in sorted(dead)], sink=self.name)
            self.counters.add(DeadLetterCount=written)
            log.warning("sink %s: %d events of this batch to %s, first: %s", self.name, written, c.deadLetterFile, dead[0][1])

    def _no_dead_letters(self, dead: list, n: int) -> None:
        """Without a deadLetterFile, an event that can never be produced fails the batch."""
        if self.dead_letters is None:
            raise EventDeliveryException("sink %s: %d of %d events can never be produced and no deadLetterFile, batch "
                                         "rolled back: %s" % (self.name, len(dead), n, dead[0][1]))

    def _refused(self, topics, values, keys) -> list:
        """(event index, reason) of the messages the broker refused for good (rare path:
        a delivery report names the message, not the event, so they are matched by content)."""
        events: dict = {}
        for i, (t, v, k) in enumerate(zip(topics, values, keys)):
            events.setdefault((t, v, k.encode() if isinstance(k, str) else k), []).append(i)
        refused = []
        for err, msg in self.failures:
            same = events.get((msg.topic(), msg.value(), msg.key()))
            if same:
                refused.append((same.pop(0), err))
        out = []
        for i, err in refused:
            if err.code() == KafkaError.MSG_SIZE_TOO_LARGE:
                # the broker refuses a whole record batch over its limit: try the message alone
                err = self._alone(topics[i], values[i], keys[i])
                if err is None:
                    continue
            out.append((i, "topic %s: %s" % (topics[i], err.str())))
        return out

    def _alone(self, topic, value, key):
        """Produce one message in a batch of its own: None once acknowledged, the error if
        refused for good; raises if it may work later."""
        self.failures.clear()
        produce(self.producer, topic, value, key, self.stopping)
        if flush_all(self.producer, self.stopping):
            raise RuntimeError("sink %s stopped with messages unacknowledged" % self.name)
        if not self.failures:
            return None
        err = self.failures[0][0]
        if err.code() not in PERMANENT:
            raise RuntimeError("sink %s: message not delivered: %s" % (self.name, err.str()))
        return err

    def interrupt(self) -> None:
        self.stopping.set()

    def stop(self) -> None:
        self.stopping.set()
        if self.producer is not None:
            self.producer.flush(5)
            self.producer = None
        if self.dead_letters is not None:
            self.dead_letters.close()
        super().stop()
