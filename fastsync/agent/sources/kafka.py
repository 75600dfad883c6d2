"""Flume's Kafka source: messages of Kafka topics into the channel, a consumer group member.

A batch is `batchSize` messages or what arrived in `batchDurationMillis`, put into the
channel in one transaction; the consumer's offsets are committed to Kafka only after that
commit, so a crash (even SIGKILL) re-reads at most the uncommitted batch. A batch the
channel refused is re-read: the consumer seeks back to its first offsets. Headers: the
topic (`topicHeader`), partition, offset, key and timestamp (ms).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from fastsync.agent.component import SOURCES, Place, check_regex, setting
from fastsync.agent.errors import ChannelException, ConfigError
from fastsync.agent.source import PollableSource, SourceConfig, Status
from fastsync.event import EventBatch
from fastsync.kafkaio import ClientErrors, Offsets, client_config, flume_event_reader, good_messages, without_secrets

log = logging.getLogger("fastsync.source.kafka")


@dataclass
class KafkaSourceConfig(SourceConfig):
    PASSTHROUGH = ("kafka.consumer.",)
    bootstrapServers: str = setting("kafka.bootstrap.servers", doc="host:port list of the brokers")
    topics: list = setting("kafka.topics", [], "topics to read, comma separated")
    topicsRegex: str = setting("kafka.topics.regex", "", "read every topic matching this regex")
    groupId: str = setting("kafka.consumer.group.id", "flume", "consumer group")
    batchSize: int = setting("batchSize", 1000, "most messages per channel transaction", min=1)
    batchDurationMillis: int = setting("batchDurationMillis", 1000, "longest wait for a batch to fill, ms", min=1)
    useFlumeEventFormat: bool = setting("useFlumeEventFormat", False, "messages are Avro AvroFlumeEvents")
    setTopicHeader: bool = setting("setTopicHeader", True, "put the topic in a header")
    topicHeader: str = setting("topicHeader", "topic", "header that carries the topic")

    def validate(self, place: Place) -> None:
        if not self.bootstrapServers.strip():
            raise place.error("kafka.bootstrap.servers", "Bootstrap Servers must be specified")
        if bool(self.topics) == bool(self.topicsRegex):
            raise place.error("kafka.topics", "exactly one of kafka.topics and kafka.topics.regex must be set")
        if self.topicsRegex:
            check_regex(place, "kafka.topics.regex", self.topicsRegex)


@SOURCES.register("kafka", "org.apache.flume.source.kafka.KafkaSource")
class KafkaSource(PollableSource):
    Config = KafkaSourceConfig
    waits_itself = True       # consume() already waited batchDurationMillis

    def __init__(self, name, config):
        super().__init__(name, config)
        self.consumer = None
        self.reader = None

    def start(self) -> None:
        from confluent_kafka import Consumer
        c = self.config
        conf = client_config(getattr(c, "extra", {}), "kafka.consumer.", {"auto.offset.reset": "earliest"})
        conf.update({"bootstrap.servers": c.bootstrapServers, "group.id": c.groupId, "enable.auto.commit": False,
                     "error_cb": ClientErrors(log, "source " + self.name)})   # e.g. authentication failed: logged
        try:
            self.consumer = Consumer(conf)
        except Exception as exc:
            raise ConfigError("source %s: Kafka consumer settings rejected: %s" % (self.name, without_secrets(str(exc), conf))) from None
        # librdkafka subscribes to a regex when the topic name starts with ^
        self.consumer.subscribe(["^" + c.topicsRegex.lstrip("^")] if c.topicsRegex else list(c.topics))
        if c.useFlumeEventFormat:
            self.reader = flume_event_reader()
        super().start()

    def _batch(self, msgs) -> EventBatch:
        c = self.config
        bodies, keys = [], []
        for m in msgs:
            bodies.append(m.value() or b"")
            k = m.key()
            keys.append(None if k is None else k.decode("utf-8", "backslashreplace"))
        headers = {
            "partition": [str(m.partition()) for m in msgs],
            "offset": [str(m.offset()) for m in msgs],
            "timestamp": [str(m.timestamp()[1]) for m in msgs],
        }
        if any(k is not None for k in keys):
            headers["key"] = keys
        if c.setTopicHeader:
            topics = {m.topic() for m in msgs}
            headers[c.topicHeader] = topics.pop() if len(topics) == 1 else [m.topic() for m in msgs]
        if self.reader is None:
            return EventBatch.from_bodies(bodies, headers)
        # AvroFlumeEvent: the event's own headers join ours (ours win, as in Flume)
        from fastsync.event import Event
        events = []
        for i, raw in enumerate(bodies):
            rec = self.reader(raw)
            h = dict(rec["headers"])
            h.update({name: (col if isinstance(col, str) else col[i]) for name, col in headers.items()
                      if (col if isinstance(col, str) else col[i]) is not None})
            events.append(Event(rec["body"], h))
        return EventBatch.from_events(events)

    def process(self) -> Status:
        c = self.config
        got = self.consumer.consume(num_messages=c.batchSize, timeout=c.batchDurationMillis / 1000.0)
        msgs = good_messages(got, RuntimeError, log, "source %s" % self.name)
        if not msgs:
            return Status.BACKOFF
        offsets = Offsets()
        offsets.add(msgs)
        try:
            self.deliver(self._batch(msgs))
        except ChannelException as exc:
            # not stored: read the same messages again
            log.warning("%s source could not write to channel: %s", self.name, exc)
            offsets.seek_back(self.consumer)
            return Status.BACKOFF
        try:
            offsets.commit(self.consumer)
        except Exception as exc:   # e.g. partitions moved to another member: they re-read the batch
            log.warning("source %s: offsets not committed (the batch may be delivered again): %s", self.name, exc)
        return Status.READY

    def stop(self) -> None:
        if self.consumer is not None:
            self.consumer.close()
            self.consumer = None
        super().stop()
