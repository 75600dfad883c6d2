"""Kafka sink events/s against a plain confluent-kafka producer loop sending the same
100-byte messages with the same settings (acks=all, idempotent, linger.ms 5), in one run,
on the broker scripts/services.sh starts.

    python bench/bench_kafka.py [--events 2000000] [--batch 1000,10000] [--rounds 3]

The sink's figure includes what the plain loop does not do: a flush after every batch, so
that the take is committed only once every message of it is acknowledged. In the test run
each body runs once on few events as a check that every message reached the topic.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import uuid

BROKERS = os.environ.get("FASTSYNC_TEST_KAFKA", "127.0.0.1:9092")
SETTINGS = {"acks": "all", "enable.idempotence": True, "linger.ms": 5}
BODY = b"x" * 100


def new_topic() -> str:
    from confluent_kafka.admin import AdminClient, NewTopic
    name = "bench-" + uuid.uuid4().hex[:12]
    admin = AdminClient({"bootstrap.servers": BROKERS})
    admin.create_topics([NewTopic(name, 1, 1)])[name].result(30)
    return name


def messages_on(topic: str) -> int:
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": BROKERS, "group.id": "bench-count"})
    try:
        low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)
        return high - low
    finally:
        c.close()


def plain_loop(events: int) -> float:
    """events/s of the textbook producer loop."""
    from confluent_kafka import Producer
    topic = new_topic()
    p = Producer({"bootstrap.servers": BROKERS, **SETTINGS})
    start = time.perf_counter()
    for _ in range(events):
        while True:
            try:
                p.produce(topic, BODY)
                break
            except BufferError:
                p.poll(0.05)
    left = p.flush(120)
    rate = events / (time.perf_counter() - start)
    assert left == 0 and messages_on(topic) == events
    return rate


def kafka_sink(events: int, batch: int) -> float:
    """events/s of KafkaSink.deliver over batches of `batch` events."""
    from fastsync.agent.sinks.kafka import KafkaSink, KafkaSinkConfig
    from fastsync.event import EventBatch
    topic = new_topic()
    sink = KafkaSink("k1", KafkaSinkConfig(bootstrapServers=BROKERS, topic=topic, batchSize=batch))
    sink.start()
    b = EventBatch.from_bodies([BODY] * batch)
    try:
        start = time.perf_counter()
        for _ in range(events // batch):
            sink.deliver(b)
        rate = events // batch * batch / (time.perf_counter() - start)
    finally:
        sink.stop()
    assert messages_on(topic) == events // batch * batch
    return rate


def test_kafka_sink_vs_plain_loop(benchmark):
    events = 2_000_000 if benchmark.enabled else 20_000
    result = {}

    def once():
        result["plain"] = plain_loop(events)
        result["sink"] = kafka_sink(events, 1000)
    benchmark.pedantic(once, rounds=3 if benchmark.enabled else 1, iterations=1)
    benchmark.extra_info.update(result, ratio=result["sink"] / result["plain"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--batch", default="1000,10000", help="flumeBatchSize values to run")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    print("| round | plain loop events/s | sink batch | sink events/s | ratio |\n| --- | --- | --- | --- | --- |")
    for r in range(args.rounds):
        plain = plain_loop(args.events)     # measured in every round: the machine drifts
        for batch in (int(b) for b in args.batch.split(",")):
            ours = kafka_sink(args.events, batch)
            print("| %d | %s | %d | %s | %.2f |" % (r + 1, format(round(plain), ","), batch, format(round(ours), ","), ours / plain))
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
