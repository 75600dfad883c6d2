"""Flume's Kafka source: messages of Kafka topics into the channel, a consumer group member.

A batch is `batchSize` messages or what arrived in `batchDurationMillis`, put into the
channel in one transaction; the consumer's offsets are committed to Kafka only after that
commit, so a crash (even SIGKILL) re-reads at most the uncommitted batch. A batch the
channel refused is re-read: the consumer seeks back to its first offsets. Headers: the
topic (`topicHeader`), partition, offset, key and timestamp (ms).

A consumer whose group membership never becomes steady again while the brokers answer
(seen after a broker restart: librdkafka's "session timed out ... rejoining group", then
silence) is closed and created anew; see GroupWatch. The offsets are committed on a thread
of the consumer's own and waited for at most that watch's bound: a commit to a coordinator
that never answers must not keep the source from consume(), where the watch looks.
"""
from __future__ import annotations

import json
import logging
import queue
import threading
import time
from dataclasses import dataclass

from fastsync.agent.component import SOURCES, Place, check_regex, setting
from fastsync.agent.errors import ChannelException, ConfigError
from fastsync.agent.metrics import SOURCE_COUNTERS, Counters
from fastsync.agent.source import PollableSource, SourceConfig, Status
from fastsync.event import EventBatch
from fastsync.kafkaio import ClientErrors, Offsets, client_config, flume_events_batch, good_messages, without_secrets

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

    def __init__(self, name, config, processor=None):
        super().__init__(name, config, processor)
        self.counters = Counters("SOURCE", SOURCE_COUNTERS + ("ConsumerRecreatedCount",))
        self.consumer = None
        self.watch: GroupWatch | None = None
        self.committer: Committer | None = None

    def start(self) -> None:
        self._new_consumer()
        super().start()

    def _new_consumer(self) -> None:
        from confluent_kafka import Consumer
        c = self.config
        conf = client_config(getattr(c, "extra", {}), "kafka.consumer.",
                             {"auto.offset.reset": "earliest", "statistics.interval.ms": STATS_INTERVAL_MS})
        try:
            bound = group_bound(conf)
        except ValueError as exc:
            raise ConfigError("source %s: %s" % (self.name, exc)) from None
        conf.update({"bootstrap.servers": c.bootstrapServers, "group.id": c.groupId, "enable.auto.commit": False,
                     "error_cb": ClientErrors(log, "source " + self.name)})   # e.g. authentication failed: logged
        self.watch = None
        if bound is not None:
            self.watch = conf["stats_cb"] = GroupWatch(bound, c.batchDurationMillis / 1000.0 + AWAY)
        try:
            self.consumer = Consumer(conf)
        except Exception as exc:
            raise ConfigError("source %s: Kafka consumer settings rejected: %s" % (self.name, without_secrets(str(exc), conf))) from None
        # librdkafka subscribes to a regex when the topic name starts with ^
        self.consumer.subscribe(["^" + c.topicsRegex.lstrip("^")] if c.topicsRegex else list(c.topics))
        if self.watch is not None:
            self.committer = Committer(self.consumer)

    def _recreate_if_stuck(self) -> None:
        """A consumer whose group membership did not become steady within the bound while
        the brokers answered: closed and replaced by a new one with the same settings. It
        holds no batch: every offset it read past the last channel commit is uncommitted,
        so the new member reads those messages again."""
        watch = self.watch
        if watch is None or not watch.stuck():
            return
        log.warning("source %s: the Kafka consumer's group membership was not steady for %.0f s while the brokers "
                    "answered (last state %s); closing it and creating a new consumer", self.name, watch.bound, watch.last)
        self._close_consumer("the stuck Kafka consumer")
        self._new_consumer()
        self.counters.add(ConsumerRecreatedCount=1)

    def _batch(self, polled: "Polled") -> EventBatch:
        """The events of a poll: bodies in one buffer, the Kafka fields as header columns
        and, with useFlumeEventFormat, the AvroFlumeEvents' headers (ours win, as in Flume)."""
        import pyarrow as pa
        c = self.config
        n = len(polled.values)
        partitions = polled.partitions
        headers = {
            "partition": str(partitions[0]) if partitions.min() == partitions.max() else pa.array(partitions).cast(pa.string()),
            "offset": pa.array(polled.offsets).cast(pa.string()),
            "timestamp": pa.array(polled.timestamps).cast(pa.string()),
        }
        keys = pa.array(polled.keys, pa.binary())
        if keys.null_count < n:
            headers["key"] = _key_text(keys)
        if c.setTopicHeader:
            topics = set(polled.topics)
            headers[c.topicHeader] = topics.pop() if len(topics) == 1 else pa.array(polled.topics, pa.string())
        if not c.useFlumeEventFormat:
            return EventBatch.from_arrow(pa.array(polled.values, pa.large_binary())).with_headers(**headers)
        batch, bad = flume_events_batch(polled.values)
        if bad:
            i = bad[0]
            log.warning("source %s: %d message(s) not in Flume event format (useFlumeEventFormat) kept whole as the "
                        "body, the first at topic %s partition %d offset %d", self.name, len(bad), polled.topics[i],
                        partitions[i], polled.offsets[i])
        for name, col in headers.items():
            theirs = batch.headers.get(name)
            if not isinstance(col, str) and col.null_count and theirs is not None:   # the key: where we have none, theirs
                import pyarrow.compute as pc
                headers[name] = pc.coalesce(col, batch.header_array(name))
        return batch.with_headers(**headers)

    def process(self) -> Status:
        c = self.config
        if self.watch is not None:
            self.watch.consuming()
        got = self.consumer.consume(num_messages=c.batchSize, timeout=c.batchDurationMillis / 1000.0)
        msgs = good_messages(got, RuntimeError, log, "source %s" % self.name)
        if not msgs:
            self._recreate_if_stuck()       # the statistics consume() just handed over are counted
            return Status.BACKOFF
        polled = Polled(msgs)
        offsets = Offsets()
        offsets.add_columns(polled.topics, polled.partitions, polled.offsets)
        try:
            self.deliver(self._batch(polled))
        except ChannelException as exc:
            # not stored: read the same messages again
            log.warning("%s source could not write to channel: %s", self.name, exc)
            offsets.seek_back(self.consumer)
            return Status.BACKOFF
        try:
            if self.committer is None:
                offsets.commit(self.consumer)
            elif not self.committer.commit(offsets, self.watch.bound if self.watch is not None else None):
                log.warning("source %s: the offset commit had no answer within %.0f s (the batch may be delivered "
                            "again)", self.name, self.watch.bound if self.watch is not None else 0)
                if self.watch is not None:
                    self.watch.give_up()
                self._recreate_if_stuck()
        except Exception as exc:   # e.g. partitions moved to another member: they re-read the batch
            log.warning("source %s: offsets not committed (the batch may be delivered again): %s", self.name, exc)
        return Status.READY

    def _close_consumer(self, what: str) -> None:
        if self.committer is not None:
            self.committer.close()
            self.committer = None
        if self.consumer is not None:
            if not close_within(self.consumer, CLOSE_WAIT):
                # its LeaveGroup may hang on a dead connection: left behind, the coordinator
                # drops its membership after session.timeout.ms
                log.warning("source %s: %s did not close within %d s; left behind", self.name, what, CLOSE_WAIT)
            self.consumer = None

    def stop(self) -> None:
        self._close_consumer("the Kafka consumer")      # a stuck consumer must not hold the agent
        super().stop()


STATS_INTERVAL_MS = 1000     # how often librdkafka reports the group state to GroupWatch
CLOSE_WAIT = 10              # seconds a stuck consumer's close() may take
AWAY = 5.0                   # seconds between two consume() calls beyond batchDurationMillis: the source was held up


class Committer:
    """Synchronous offset commits run on a thread of their own, each waited for at most a
    bound; a commit left waiting runs on (daemon thread) until its consumer is closed."""

    def __init__(self, consumer):
        self.consumer = consumer
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._run, name="kafka-offset-commit", daemon=True).start()

    def _run(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            offsets, done, failed = job
            try:
                offsets.commit(self.consumer)
            except Exception as exc:
                failed.append(exc)
            done.set()

    def commit(self, offsets: Offsets, seconds: float | None) -> bool:
        """Commit; False when no answer came within `seconds`. A failed commit raises."""
        done, failed = threading.Event(), []
        self.jobs.put((offsets, done, failed))
        if not done.wait(seconds):
            return False
        if failed:
            raise failed[0]
        return True

    def close(self) -> None:
        self.jobs.put(None)


def close_within(consumer, seconds: float) -> bool:
    """consumer.close() (leave the group; nothing is committed: enable.auto.commit is off),
    given up on after `seconds` (it runs on in a daemon thread). True if it finished."""
    def close():
        try:
            consumer.close()
        except Exception as exc:
            log.warning("closing a Kafka consumer: %s", exc)
    t = threading.Thread(target=close, name="kafka-consumer-close", daemon=True)
    t.start()
    t.join(seconds)
    return not t.is_alive()


def group_bound(conf: dict) -> float | None:
    """Seconds a member may legitimately spend out of the steady group state with the
    brokers up: the coordinator drops a vanished old membership after session.timeout.ms,
    and a JoinGroup waits up to max.poll.interval.ms (the rebalance timeout) for the other
    members; plus a few statistics intervals for the reports to arrive. None when
    statistics.interval.ms is 0 (no reports: no watch)."""
    def ms(key: str, default: int) -> int:
        try:
            return int(conf.get(key, default))
        except ValueError:
            raise ValueError("kafka.consumer.%s must be a number of milliseconds, not %r" % (key, conf[key])) from None
    interval = ms("statistics.interval.ms", STATS_INTERVAL_MS)
    if interval <= 0:
        return None
    return (ms("session.timeout.ms", 45000) + ms("max.poll.interval.ms", 300000) + 3 * interval) / 1000.0


class GroupWatch:
    """librdkafka's stats_cb: tells a consumer whose group membership never completes.

    librdkafka reports the group handler's `state` and `join_state` in its statistics
    (`cgrp`); a member that takes part in the group is `up` / `steady`, also one with no
    partitions (an extra member of a group with more members than partitions). Not being
    steady for longer than `bound` seconds while some broker connection is up and a
    subscribed topic exists is what the rejoin that never completes looks like. The clock
    does not run while no broker is up (an outage) nor while no subscribed topic exists
    (librdkafka then stays in join state `init`, joining nothing): a new consumer could do no
    better. No report at all for `bound` (librdkafka's own thread stuck) counts as stuck
    too. Time the source spent away from consume() (held up by its channel or a commit)
    does not count: the reports queued meanwhile are stale. Called from consume(), in the
    source's thread."""

    def __init__(self, bound: float, usual_gap: float):
        self.bound, self.usual_gap = bound, usual_gap
        self.good = self.consumed = time.monotonic()   # when the member was last steady (or no broker was up)
        self.last = "no statistics yet"

    def consuming(self) -> None:
        """Before each consume()."""
        now = time.monotonic()
        if now - self.consumed > self.usual_gap:
            self.good += now - self.consumed
        self.consumed = now

    def __call__(self, stats: str) -> None:
        d = json.loads(stats)
        g = d.get("cgrp") or {}
        self.last = "%s/%s" % (g.get("state"), g.get("join_state"))
        brokers_up = any(b.get("state") == "UP" for b in (d.get("brokers") or {}).values())
        topics = bool(d.get("topics"))      # the subscribed topics librdkafka knows exist
        if (g.get("state") == "up" and g.get("join_state") == "steady") or not brokers_up or not topics:
            self.good = time.monotonic()

    def stuck(self) -> bool:
        return time.monotonic() - self.good > self.bound

    def give_up(self) -> None:
        """The member is stuck whatever the reports said (an offset commit had no answer)."""
        self.good = time.monotonic() - self.bound - 1


class Polled:
    """The fields of consumed messages as columns. confluent-kafka hands out one Message
    object per message and each field only through a method call: one C-level map per
    field, no Python loop."""

    def __init__(self, msgs: list):
        import numpy as np
        from confluent_kafka import Message
        n = len(msgs)
        self.values = list(map(Message.value, msgs))
        self.keys = list(map(Message.key, msgs))
        self.topics = list(map(Message.topic, msgs))
        self.partitions = np.fromiter(map(Message.partition, msgs), np.int64, n)
        self.offsets = np.fromiter(map(Message.offset, msgs), np.int64, n)
        # (type, ms since the epoch) pairs
        self.timestamps = np.array(list(map(Message.timestamp, msgs)), dtype=np.int64).reshape(n, 2)[:, 1]


def _key_text(keys):
    """Message keys as text (bytes that are not UTF-8 backslash-escaped, as Flume's)."""
    import pyarrow as pa
    try:
        return keys.cast(pa.string())
    except pa.ArrowInvalid:
        return pa.array([None if k is None else k.decode("utf-8", "backslashreplace") for k in keys.to_pylist()], pa.string())
