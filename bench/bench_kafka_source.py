"""Kafka source events/s reading N messages in Flume event format (AvroFlumeEvents with 3
headers and a 100-byte body) from one topic, against a plain confluent-kafka consumer loop
on the same topic, in one run, alternating rounds, each way with a new consumer group:

    plain      consume(batch) until N messages, touching each value (the floor: what
               confluent-kafka itself costs)
    rowwise    the same loop decoding each message with fastavro into an Event, then
               EventBatch.from_events (what the source did before)
    source     KafkaSource.process(): consume, decode the batch natively into columns,
               deliver, commit the offsets (a synchronous commit per batch)

    python bench/bench_kafka_source.py [--events 500000] [--batch 1000] [--rounds 3] [--plain-format]

--plain-format: messages are the bodies themselves (useFlumeEventFormat false); rowwise is
then the source's former per-message header lists. Each way checks it read N events. In the
test run each body runs once on few messages as a check.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import uuid

BROKERS = os.environ.get("FASTSYNC_TEST_KAFKA", "127.0.0.1:9092")
BODY = b"x" * 100


def fill_topic(n: int, flume: bool) -> str:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    from fastsync.kafkaio import flume_event_bytes
    topic = "bench-src-" + uuid.uuid4().hex[:12]
    admin = AdminClient({"bootstrap.servers": BROKERS})     # kept alive until the topic exists
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    p = Producer({"bootstrap.servers": BROKERS, "linger.ms": 20, "batch.num.messages": 10000})
    value = flume_event_bytes({"host": "web-01", "app": "shop", "level": "INFO"}, BODY) if flume else BODY
    for i in range(n):
        while True:
            try:
                p.produce(topic, value, b"k%d" % (i % 10))
                break
            except BufferError:
                p.poll(0.05)
    assert p.flush(120) == 0
    return topic


def delete_topic(topic: str) -> None:
    """The bench's topics go once measured, so the shared broker keeps none of them."""
    from confluent_kafka.admin import AdminClient
    admin = AdminClient({"bootstrap.servers": BROKERS})     # kept alive until the topic is gone
    admin.delete_topics([topic])[topic].result(30)


def consumer(topic: str):
    from confluent_kafka import Consumer
    c = Consumer({"bootstrap.servers": BROKERS, "group.id": "bench-" + uuid.uuid4().hex, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.subscribe([topic])
    return c


def plain(topic: str, n: int, batch: int, flume: bool) -> float:
    c = consumer(topic)
    got = 0
    try:
        start = time.perf_counter()
        while got < n:
            for m in c.consume(batch, 1.0):
                if m.error() is None:
                    m.value()
                    got += 1
        rate = got / (time.perf_counter() - start)
    finally:
        c.close()
    assert got == n, got
    return rate


def rowwise_batch(msgs, flume: bool):
    """The source's former _batch: one Event (flume) or header list entry per message."""
    from fastsync.event import Event, EventBatch
    from fastsync.kafkaio import flume_event_reader
    reader = flume_event_reader() if flume else None
    bodies, keys = [], []
    for m in msgs:
        bodies.append(m.value() or b"")
        k = m.key()
        keys.append(None if k is None else k.decode("utf-8", "backslashreplace"))
    headers = {"partition": [str(m.partition()) for m in msgs], "offset": [str(m.offset()) for m in msgs],
               "timestamp": [str(m.timestamp()[1]) for m in msgs], "key": keys, "topic": msgs[0].topic()}
    if reader is None:
        return EventBatch.from_bodies(bodies, headers)
    events = []
    for i, raw in enumerate(bodies):
        rec = reader(raw)
        h = dict(rec["headers"])
        h.update({name: (col if isinstance(col, str) else col[i]) for name, col in headers.items()})
        events.append(Event(rec["body"], h))
    return EventBatch.from_events(events)


def rowwise(topic: str, n: int, batch: int, flume: bool) -> float:
    c = consumer(topic)
    got = 0
    try:
        start = time.perf_counter()
        while got < n:
            msgs = [m for m in c.consume(batch, 1.0) if m.error() is None]
            if msgs:
                got += len(rowwise_batch(msgs, flume))
        rate = got / (time.perf_counter() - start)
    finally:
        c.close()
    assert got == n, got
    return rate


class _Count:
    """A processor that counts what the source delivers (and checks the headers came)."""

    def __init__(self, flume: bool):
        self.events, self.flume = 0, flume

    def process_batch(self, b) -> None:
        assert not self.flume or b.header_array("host")[0].as_py() == "web-01"
        self.events += len(b)


def source(topic: str, n: int, batch: int, flume: bool) -> float:
    from fastsync.agent.sources.kafka import KafkaSource, KafkaSourceConfig
    s = KafkaSource("r1", KafkaSourceConfig(bootstrapServers=BROKERS, topics=[topic], groupId="bench-" + uuid.uuid4().hex,
                                            batchSize=batch, batchDurationMillis=1000, useFlumeEventFormat=flume),
                    processor=_Count(flume))
    s.start()
    try:
        start = time.perf_counter()
        while s.processor.events < n:
            s.process()
        rate = s.processor.events / (time.perf_counter() - start)
    finally:
        s.stop()
    assert s.processor.events == n, s.processor.events
    return rate


WAYS = {"plain": plain, "rowwise": rowwise, "source": source}


def decode_only(topic: str, n: int, batch: int, flume: bool) -> dict:
    """Events/s of the decoding alone, on messages consumed beforehand: the former per-message
    code against the source's _batch (what the consumer and the commits cost is left out)."""
    from fastsync.agent.sources.kafka import KafkaSource, KafkaSourceConfig, Polled
    c = consumer(topic)
    msgs = []
    try:
        while len(msgs) < n:
            msgs += [m for m in c.consume(batch, 1.0) if m.error() is None]
    finally:
        c.close()
    chunks = [msgs[i:i + batch] for i in range(0, n, batch)]
    s = KafkaSource("r1", KafkaSourceConfig(bootstrapServers=BROKERS, topics=[topic], batchSize=batch,
                                            useFlumeEventFormat=flume, topicHeader="topic"))
    out = {}
    for name, fn in (("rowwise", lambda m: rowwise_batch(m, flume)), ("columnar", lambda m: s._batch(Polled(m)))):
        fn(chunks[0])                                  # imports, first-use costs
        start = time.perf_counter()
        got = sum(len(fn(m)) for m in chunks)
        out[name] = got / (time.perf_counter() - start)
        assert got == n, got
    return out


def test_kafka_source_ways():
    for flume in (True, False):
        topic = fill_topic(2500, flume)
        for way in WAYS.values():
            way(topic, 2500, 1000, flume)
        decode_only(topic, 2500, 1000, flume)
        delete_topic(topic)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=500_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--plain-format", action="store_true")
    a = ap.parse_args(argv)
    flume = not a.plain_format
    topic = fill_topic(a.events, flume)
    print("%d events, batch %d, %s format, load %s" % (a.events, a.batch, "Flume event" if flume else "plain", os.getloadavg()))
    for r in range(a.rounds):
        res = {name: way(topic, a.events, a.batch, flume) for name, way in WAYS.items()}
        print("round %d: %s; source / plain %.2f, source / rowwise x%.1f" % (
            r + 1, ", ".join("%s %.0f ev/s" % kv for kv in res.items()), res["source"] / res["plain"],
            res["source"] / res["rowwise"]))
        d = decode_only(topic, a.events, a.batch, flume)
        print("   decoding alone: rowwise %.0f ev/s, columnar %.0f ev/s, x%.1f"
              % (d["rowwise"], d["columnar"], d["columnar"] / d["rowwise"]))
    delete_topic(topic)
    return 0


if __name__ == "__main__":
    sys.exit(main())
