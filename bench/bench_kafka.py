"""Kafka sink events/s against a plain confluent-kafka producer loop sending the same
100-byte messages with the same settings (acks=all, idempotent, linger.ms 5), in one run,
on the broker scripts/services.sh starts.

    python bench/bench_kafka.py [--events 2000000] [--batch 100,1000] [--rounds 3]

The sink drains a memory channel through its process(): it takes, produces, and commits
each take only once every message of it is acknowledged, which the plain loop does not
do. In the test run each body runs once on few events as a check that every message
reached the topic.
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


def delete_topic(topic: str) -> None:
    """The bench's topics go once measured, so the shared broker keeps none of them."""
    from confluent_kafka.admin import AdminClient
    admin = AdminClient({"bootstrap.servers": BROKERS})     # kept alive until the topic is gone
    admin.delete_topics([topic])[topic].result(30)


def messages_on(topic: str) -> int:
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": BROKERS, "group.id": "bench-count"})
    try:
        low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)
        return high - low
    finally:
        c.close()


def plain_loop(events: int) -> tuple[float, float, float]:
    """(events/s, events per CPU second of this process, per CPU second of its main
    thread) of the textbook producer loop."""
    from confluent_kafka import Producer
    topic = new_topic()
    p = Producer({"bootstrap.servers": BROKERS, **SETTINGS})
    start, cpu, main = time.perf_counter(), time.process_time(), time.thread_time()
    for _ in range(events):
        while True:
            try:
                p.produce(topic, BODY)
                break
            except BufferError:
                p.poll(0.05)
    left = p.flush(120)
    rates = (events / (time.perf_counter() - start), events / (time.process_time() - cpu),
             events / (time.thread_time() - main))
    assert left == 0 and messages_on(topic) == events
    delete_topic(topic)
    return rates


def kafka_sink(events: int, batch: int) -> tuple[float, float, float]:
    """(events/s, events per CPU second, per main-thread CPU second) of the Kafka sink draining a memory channel that holds `events` events,
    through its process() (take, produce, commit once acknowledged) in batches of `batch`."""
    from fastsync.agent.channels.memory import MemoryChannel, MemoryChannelConfig
    from fastsync.agent.sinks.kafka import KafkaSink, KafkaSinkConfig
    from fastsync.event import EventBatch
    topic = new_topic()
    ch = MemoryChannel("c1", MemoryChannelConfig(capacity=events, transactionCapacity=max(batch, 1000),
                                                 byteCapacity=events * len(BODY) * 2))
    ch.start()
    chunk = EventBatch.from_bodies([BODY] * 1000)
    for _ in range(events // 1000):
        with ch.transaction() as tx:
            tx.put(chunk)
    sink = KafkaSink("k1", KafkaSinkConfig(bootstrapServers=BROKERS, topic=topic, batchSize=batch), channel=ch)
    sink.start()
    n = events // 1000 * 1000
    try:
        start, cpu, main = time.perf_counter(), time.process_time(), time.thread_time()
        while ch.size or ch.in_flight:
            sink.process()
        rates = n / (time.perf_counter() - start), n / (time.process_time() - cpu), n / (time.thread_time() - main)
    finally:
        sink.stop()
        ch.stop()
    got = (int(sink.counters.snapshot()["EventDrainSuccessCount"]), messages_on(topic))
    assert got == (n, n), (got, n)
    delete_topic(topic)
    return rates


def test_kafka_sink_vs_plain_loop(benchmark):
    events = 2_000_000 if benchmark.enabled else 20_000
    result = {}

    def once():
        for batch in (100, 1000):
            result["plain"] = plain_loop(events)[0]
            result["sink %d" % batch] = kafka_sink(events, batch)[0]
    benchmark.pedantic(once, rounds=3 if benchmark.enabled else 1, iterations=1)
    benchmark.extra_info.update(result)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--batch", default="100,1000", help="flumeBatchSize values to run")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    # CPU: of the whole process (librdkafka's threads included); main: of the Python thread
    # alone, where the sink's per-take work is
    print("| round | sink batch | plain loop events/s | sink events/s | ratio | plain events/CPU s | sink events/CPU s "
          "| CPU ratio | main-thread CPU ratio |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in range(args.rounds):
        for batch in (int(b) for b in args.batch.split(",")):
            # a plain loop beside every sink run, in turn first and second: the machine drifts
            if r % 2:
                ours, plain = kafka_sink(args.events, batch), plain_loop(args.events)
            else:
                plain, ours = plain_loop(args.events), kafka_sink(args.events, batch)
            print("| %d | %d | %s | %s | %.2f | %s | %s | %.2f | %.2f |" % (
                r + 1, batch, format(round(plain[0]), ","), format(round(ours[0]), ","), ours[0] / plain[0],
                format(round(plain[1]), ","), format(round(ours[1]), ","), ours[1] / plain[1], ours[2] / plain[2]))
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
