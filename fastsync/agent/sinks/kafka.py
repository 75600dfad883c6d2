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
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from fastsync.agent.component import SINKS, Place, setting
from fastsync.agent.errors import ConfigError
from fastsync.agent.sink import Sink, SinkConfig
from fastsync.kafkaio import ClientErrors, client_config, encode_events, flush_all, produce, without_secrets

log = logging.getLogger("fastsync.sink.kafka")

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

    def validate(self, place: Place) -> None:
        if not self.bootstrapServers.strip():
            raise place.error("kafka.bootstrap.servers", "Bootstrap Servers must be specified")
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

    def _on_delivery(self, err, msg) -> None:
        if err is not None:
            self.failures.append(err)

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
        super().start()

    def deliver(self, batch) -> None:
        c = self.config
        values, keys = encode_events(batch, c.useFlumeEventFormat, c.keyHeader)
        topics = batch.header_array(c.topicHeader).to_pylist() if c.allowTopicOverride and c.topicHeader in batch.headers else None
        self.failures.clear()
        self.errors.failure = None
        producer, stopping = self.producer, self.stopping
        if topics is None and keys is None:
            for value in values:
                produce(producer, c.topic, value, None, stopping)
        else:
            for i, value in enumerate(values):
                produce(producer, (topics and topics[i]) or c.topic, value, keys[i] if keys else None, stopping)
        # every message acknowledged (or failed) before the take may commit
        left = flush_all(producer, stopping, self.errors)
        if left and self.errors.failure:
            raise RuntimeError("sink %s: %d of %d messages not delivered, the batch stays in the channel: %s"
                               % (self.name, left, len(values), self.errors.failure))
        if left:
            raise RuntimeError("sink %s stopped with %d messages unacknowledged" % (self.name, left))
        if self.failures:
            err = self.failures[0]
            raise RuntimeError("sink %s: %d of %d messages not delivered: %s" % (self.name, len(self.failures), len(values), err.str()))

    def interrupt(self) -> None:
        self.stopping.set()

    def stop(self) -> None:
        self.stopping.set()
        if self.producer is not None:
            self.producer.flush(5)
            self.producer = None
        super().stop()
