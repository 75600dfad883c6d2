"""Flume's Kafka channel: a topic is the channel, so events survive the agent and can be put
by one agent and taken by another (a consumer group).

A put transaction produces its events at commit and returns once every message is
acknowledged (idempotent producer, acks=all); a failure raises ChannelException, so the
source retries. A take transaction consumes messages and commits their offsets to Kafka at
commit; a rollback seeks back, so the same messages are taken again. Takes are serialized
(one consumer per channel). With `parseAsFlumeEvent` (the default, as in Flume) messages
are Avro `AvroFlumeEvent`s carrying the headers; otherwise the value is the body. An event's
`key` header is its message key.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from fastsync.agent.channels.base import Channel, Transaction
from fastsync.agent.component import CHANNELS, ComponentConfig, Place, setting
from fastsync.agent.errors import ChannelException
from fastsync.agent.metrics import CHANNEL_COUNTERS, Counters
from fastsync.event import EventBatch
from fastsync.kafkaio import (ClientErrors, Offsets, client_config, encode_events, flume_events_batch, flush_all, good_messages,
                              produce, without_secrets)

log = logging.getLogger("fastsync.channel.kafka")
SIZE_CACHE = 0.5        # seconds the lag-based size is reused


@dataclass
class KafkaChannelConfig(ComponentConfig):
    PASSTHROUGH = ("kafka.producer.", "kafka.consumer.")
    bootstrapServers: str = setting("kafka.bootstrap.servers", doc="host:port list of the brokers")
    topic: str = setting("kafka.topic", "flume-channel", "the topic that is the channel")
    groupId: str = setting("kafka.consumer.group.id", "flume", "consumer group of the takers")
    parseAsFlumeEvent: bool = setting("parseAsFlumeEvent", True, "messages are Avro AvroFlumeEvents with headers")
    pollTimeout: int = setting("pollTimeout", 500, "ms a take waits for messages", min=0)
    keyHeader: str = setting("keyHeader", "key", "header whose value is the message key")

    def validate(self, place: Place) -> None:
        if not self.bootstrapServers.strip():
            raise place.error("kafka.bootstrap.servers", "Bootstrap Servers must be specified")


@CHANNELS.register("kafka", "org.apache.flume.channel.kafka.KafkaChannel")
class KafkaChannel(Channel):
    Config = KafkaChannelConfig
    durable = True

    def __init__(self, name: str, config: KafkaChannelConfig):
        super().__init__(name)
        self.config = config
        self.producer = None
        self.consumer = None
        self.meta = None
        self.take_lock = threading.Lock()      # one take transaction at a time owns the consumer
        self.taken = 0
        self.stopping = threading.Event()
        self.errors = ClientErrors(log, "channel " + name)      # the producer's; the consumers' are only logged
        self._size = (0.0, 0)
        self.counters = Counters("CHANNEL", CHANNEL_COUNTERS, lambda: {"ChannelSize": self.size})

    def transaction(self) -> "KafkaTransaction":
        return KafkaTransaction(self)

    def start(self) -> None:
        from confluent_kafka import Consumer, Producer
        c, extra = self.config, getattr(self.config, "extra", {})
        pconf = client_config(extra, "kafka.producer.", {
            "enable.idempotence": True, "acks": "all", "linger.ms": 5, "delivery.report.only.error": True})
        cconf = client_config(extra, "kafka.consumer.", {"auto.offset.reset": "earliest"})
        cconf.update({"group.id": c.groupId, "enable.auto.commit": False})
        consumer_errors = ClientErrors(log, "channel %s (taking)" % self.name)
        try:
            self.producer = Producer({**pconf, "bootstrap.servers": c.bootstrapServers, "error_cb": self.errors})
            self.consumer = Consumer({**cconf, "bootstrap.servers": c.bootstrapServers, "error_cb": consumer_errors})
            # a second handle, never subscribed, for the size: metadata calls on the taking
            # consumer wait behind its consume()
            self.meta = Consumer({**cconf, "bootstrap.servers": c.bootstrapServers, "error_cb": consumer_errors})
        except Exception as exc:
            raise ChannelException("channel %s: Kafka settings rejected: %s"
                                   % (self.name, without_secrets(str(exc), {**pconf, **cconf}))) from None
        self.consumer.subscribe([c.topic])
        self.stopping.clear()
        self.counters.started()

    def stop(self) -> None:
        self.stopping.set()
        with self.take_lock:
            if self.consumer is not None:
                self.consumer.close()
                self.meta.close()
                self.consumer = self.meta = None
        if self.producer is not None:
            self.producer.flush(5)
            self.producer = None
        self.counters.stopped()

    def interrupt(self) -> None:
        self.stopping.set()

    @property
    def size(self) -> int:
        """Messages of the topic past the group's committed offsets, less those taken and
        not committed (from the broker, refreshed at most every SIZE_CACHE s)."""
        at, size = self._size
        if time.monotonic() - at < SIZE_CACHE or self.meta is None:
            return size
        from confluent_kafka import TopicPartition
        consumer = self.meta
        try:
            meta = consumer.list_topics(self.config.topic, timeout=5)
            parts = [TopicPartition(self.config.topic, p) for p in meta.topics[self.config.topic].partitions]
            lag = 0
            for tp in consumer.committed(parts, timeout=5):
                low, high = consumer.get_watermark_offsets(tp, timeout=5)
                lag += high - max(low, tp.offset if tp.offset >= 0 else low)
        except Exception:
            return size
        size = max(0, lag - self.taken)
        self._size = (time.monotonic(), size)
        return size

    @property
    def in_flight(self) -> int:
        return self.taken

    def _decode(self, msgs) -> EventBatch:
        """The events of taken messages, as columns (no Python object per message)."""
        import pyarrow as pa
        from confluent_kafka import Message
        values = list(map(Message.value, msgs))
        if not self.config.parseAsFlumeEvent:
            return EventBatch.from_arrow(pa.array(values, pa.large_binary()))
        batch, bad = flume_events_batch(values)
        if bad:
            m = msgs[bad[0]]
            log.warning("channel %s: %d message(s) not in Flume event format (parseAsFlumeEvent) taken whole as the "
                        "body, the first at topic %s partition %d offset %d", self.name, len(bad), m.topic(),
                        m.partition(), m.offset())
        return batch


class KafkaTransaction(Transaction):
    FLUME_NAME = "KafkaTransaction"
    __slots__ = ("ch", "puts", "offsets", "take_n", "failures", "holds_consumer")

    def __init__(self, channel: KafkaChannel):
        super().__init__()
        self.ch = channel
        self.puts: list[EventBatch] = []
        self.offsets = Offsets()
        self.take_n = 0
        self.failures: list = []
        self.holds_consumer = False

    def put(self, batch: EventBatch) -> None:
        self._check_open("put")
        if len(batch):
            self.puts.append(batch)

    def take(self, max_events: int | None = None, timeout: float | None = None) -> EventBatch | None:
        self._check_open("take")
        ch = self.ch
        if not self.holds_consumer:
            if not ch.take_lock.acquire(timeout=ch.config.pollTimeout / 1000.0 if timeout is None else timeout):
                return None
            self.holds_consumer = True
        if ch.consumer is None:
            raise ChannelException("channel %s is not started" % ch.name)
        wait = ch.config.pollTimeout / 1000.0 if timeout is None else timeout
        got = ch.consumer.consume(num_messages=max_events or 1000, timeout=wait)
        msgs = good_messages(got, ChannelException, log, "channel %s" % ch.name)
        ch.counters.add(EventTakeAttemptCount=max(1, len(msgs)))
        if not msgs:
            return None
        self.offsets.add(msgs)
        self.take_n += len(msgs)
        ch.taken += len(msgs)
        return ch._decode(msgs)

    def _on_delivery(self, err, msg) -> None:
        if err is not None:
            self.failures.append(err)

    def commit(self) -> None:
        self._check_open("commit")
        ch = self.ch
        try:
            if self.puts:
                self._produce_all()
            if self.take_n:
                try:
                    self.offsets.commit(ch.consumer)
                except Exception as exc:
                    raise ChannelException("channel %s: take offsets not committed: %s" % (ch.name, exc)) from None
                ch.counters.add(EventTakeSuccessCount=self.take_n)
        except BaseException:
            self.rollback()
            raise
        self._done()

    def _produce_all(self) -> None:
        ch = self.ch
        n = sum(len(b) for b in self.puts)
        ch.counters.add(EventPutAttemptCount=n)
        ch.errors.failure = None
        for batch in self.puts:
            values, keys = encode_events(batch, ch.config.parseAsFlumeEvent, ch.config.keyHeader)
            for i, value in enumerate(values):
                produce(ch.producer, ch.config.topic, value, keys[i] if keys else None, on_delivery=self._on_delivery)
        if flush_all(ch.producer, ch.stopping, ch.errors):
            if ch.errors.failure:
                raise ChannelException("channel %s: events not stored in Kafka: %s" % (ch.name, ch.errors.failure))
            raise ChannelException("channel %s stopped with messages unacknowledged" % ch.name)
        if self.failures:
            raise ChannelException("channel %s: %d of %d events not stored in Kafka: %s"
                                   % (ch.name, len(self.failures), n, self.failures[0].str()))
        ch.counters.add(EventPutSuccessCount=n)
        self.puts = []

    def rollback(self) -> None:
        if self.state != Transaction.OPEN:
            return
        ch = self.ch
        if ch.consumer is not None:
            self.offsets.seek_back(ch.consumer)
        self._done()

    def _done(self) -> None:
        ch = self.ch
        ch.taken -= self.take_n
        self.take_n = 0
        self.offsets, self.puts = Offsets(), []
        if self.holds_consumer:
            self.holds_consumer = False
            ch.take_lock.release()
        self.state = Transaction.COMPLETED
