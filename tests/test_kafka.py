"""Kafka sink and source against the real broker scripts/services.sh starts (KRaft, one
node on 127.0.0.1:9092), through the agent CLI; Kafka's own console consumer and producer
(the same jars as the broker) check that what we write and read is plain Kafka."""
from __future__ import annotations

import glob
import os
import subprocess
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from e2e_support import count_lines, created_topics, drop_tables, multiset_problems, poll, read_dir_lines, write_config

BROKERS = os.environ.get("FASTSYNC_TEST_KAFKA", "127.0.0.1:9092")
KAFKA_LIBS = Path(os.environ.get("FASTSYNC_KAFKA_HOME", Path.home() / ".cache/fastsync-kafka")) / "libs"


def new_topic(partitions: int = 1, brokers: str = BROKERS, **config) -> str:
    name = "t-" + uuid.uuid4().hex[:12]
    admin = AdminClient({"bootstrap.servers": brokers})   # kept alive until the topic exists
    if brokers == BROKERS:
        created_topics.append(name)     # deleted after the test (tests/conftest.py)
    admin.create_topics([NewTopic(name, partitions, 1, config=config)])[name].result(30)
    return name


def read_topic(topic: str, n: int, timeout: float = 60.0) -> list:
    """The first n messages of the topic (all partitions), as confluent-kafka Message objects."""
    c = Consumer({"bootstrap.servers": BROKERS, "group.id": "check-" + uuid.uuid4().hex, "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    out = []
    try:
        poll(lambda: out.extend(m for m in c.consume(1000, 0.5) if m.error() is None) or len(out) >= n,
             timeout, message="%d messages on %s" % (n, topic))
    finally:
        c.close()
    return out


def read_topic_to_end(topic: str, timeout: float = 60.0, brokers: str = BROKERS) -> list:
    """Every message of the topic (all partitions), up to the end each partition had when
    called: duplicates included, unlike the first n of read_topic (with duplicates, the
    first n messages may miss the last events)."""
    from confluent_kafka import OFFSET_BEGINNING
    c = Consumer({"bootstrap.servers": brokers, "group.id": "check-" + uuid.uuid4().hex})
    try:
        parts = c.list_topics(topic, timeout=30).topics[topic].partitions
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in parts}
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        out, at = [], {p: 0 for p in parts}

        def more():
            for m in c.consume(1000, 0.5):
                if m.error() is None:
                    out.append(m)
                    at[m.partition()] = m.offset() + 1
            return all(at[p] >= ends[p] for p in parts)
        poll(more, timeout, message="%s read to its end %s" % (topic, ends))
    finally:
        c.close()
    return out


def kafka_tool(cls: str, *args: str, stdin: bytes | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run one of Kafka's own command-line tools from the broker's jars."""
    cp = os.pathsep.join(glob.glob(str(KAFKA_LIBS / "*.jar")))
    assert cp, "Kafka's jars are missing from %s: run scripts/services.sh up" % KAFKA_LIBS
    return subprocess.run(["java", "-cp", cp, cls, *args], input=stdin, capture_output=True, timeout=timeout)


def seq_to_kafka(topic: str, n: int, **sink) -> dict:
    cfg = {
        "a1.sources": "r1", "a1.channels": "c1", "a1.sinks": "k1",
        "a1.sources.r1.type": "seq", "a1.sources.r1.totalEvents": n, "a1.sources.r1.batchSize": 500,
        "a1.sources.r1.channels": "c1",
        "a1.channels.c1.type": "memory", "a1.channels.c1.capacity": 10000, "a1.channels.c1.transactionCapacity": 1000,
        "a1.sinks.k1.type": "org.apache.flume.sink.kafka.KafkaSink", "a1.sinks.k1.channel": "c1",
        "a1.sinks.k1.kafka.bootstrap.servers": BROKERS, "a1.sinks.k1.kafka.topic": topic,
        "a1.sinks.k1.flumeBatchSize": 1000,
    }
    cfg.update({"a1.sinks.k1." + k: v for k, v in sink.items()})
    return cfg


def kafka_to_file(tmp_path: Path, topic: str, out: Path, group: str, **source) -> dict:
    cfg = {
        "a2.sources": "r1", "a2.channels": "c1", "a2.sinks": "k1",
        "a2.sources.r1.type": "org.apache.flume.source.kafka.KafkaSource", "a2.sources.r1.channels": "c1",
        "a2.sources.r1.kafka.bootstrap.servers": BROKERS, "a2.sources.r1.kafka.topics": topic,
        "a2.sources.r1.kafka.consumer.group.id": group, "a2.sources.r1.batchSize": 1000,
        "a2.sources.r1.batchDurationMillis": 200,
        "a2.channels.c1.type": "file", "a2.channels.c1.checkpointDir": tmp_path / "ck",
        "a2.channels.c1.dataDirs": tmp_path / "data", "a2.channels.c1.minimumRequiredSpace": 0,
        "a2.channels.c1.transactionCapacity": 1000,
        "a2.sinks.k1.type": "file_roll", "a2.sinks.k1.channel": "c1", "a2.sinks.k1.sink.directory": out,
        "a2.sinks.k1.sink.rollInterval": 0, "a2.sinks.k1.sink.batchSize": 1000,
    }
    cfg.update({"a2.sources.r1." + k: v for k, v in source.items()})
    return cfg


def test_seq_memory_kafka_then_kafka_file_channel_file_roll_exactly_once(tmp_path, run_agent, agent):
    n = 50_000
    topic = new_topic(partitions=3)
    p = run_agent("a1", write_config(tmp_path, seq_to_kafka(topic, n), "a1.properties"), "--exit-when-done", timeout=120)
    assert p.returncode == 0, p.stderr

    out = tmp_path / "out"
    p2 = agent("a2", write_config(tmp_path, kafka_to_file(tmp_path, topic, out, "g-" + topic), "a2.properties"))
    poll(lambda: count_lines(out) >= n or not p2.alive(), 120, message="%d lines in %s" % (n, out))
    assert p2.stop(timeout=60) == 0, p2.stderr
    assert multiset_problems(read_dir_lines(out), [b"%d" % i for i in range(n)]) == ""


def test_kafka_sink_output_is_read_by_kafkas_console_consumer(tmp_path, run_agent):
    topic = new_topic()
    p = run_agent("a1", write_config(tmp_path, seq_to_kafka(topic, 1000)), "--exit-when-done", timeout=120)
    assert p.returncode == 0, p.stderr
    r = kafka_tool("org.apache.kafka.tools.consumer.ConsoleConsumer", "--bootstrap-server", BROKERS, "--topic", topic,
                   "--from-beginning", "--max-messages", "1000", "--timeout-ms", "60000")
    assert r.returncode == 0, r.stderr[-2000:]
    assert sorted(r.stdout.split(), key=int) == [b"%d" % i for i in range(1000)]


def test_kafka_source_reads_kafkas_console_producer_with_headers(tmp_path, agent):
    topic = new_topic()
    lines = [b"line %d \xc3\xa9" % i for i in range(300)]
    r = kafka_tool("org.apache.kafka.tools.ConsoleProducer", "--bootstrap-server", BROKERS, "--topic", topic,
                   "--property", "parse.key=true", "--property", "key.separator=|",
                   stdin=b"".join(b"k%d|%s\n" % (i % 3, l) for i, l in enumerate(lines)))
    assert r.returncode == 0, r.stderr[-2000:]
    out = tmp_path / "out"
    cfg = kafka_to_file(tmp_path, topic, out, "g-" + topic)
    cfg.update({"a2.sinks.k1.type": "file_roll"})
    p = agent("a2", write_config(tmp_path, cfg))
    poll(lambda: count_lines(out) >= len(lines) or not p.alive(), 90, message="lines in %s" % out)
    assert p.stop(timeout=60) == 0, p.stderr
    assert read_dir_lines(out) == lines     # one partition: Kafka's order


def test_relay_with_headers_in_flume_event_format(tmp_path, agent):
    """kafka source -> memory -> kafka sink with useFlumeEventFormat: the source's key,
    partition and offset headers travel inside AvroFlumeEvents, the key header is the
    message key, and kafka.producer.* settings reach the producer."""
    topic = new_topic()
    n = 200
    # a netcat-free way to make events with headers: the Kafka source itself, fed plain
    # messages with keys, gives events with key/partition/offset headers
    feed = new_topic()
    prod = Producer({"bootstrap.servers": BROKERS})
    for i in range(n):
        prod.produce(feed, b"body-%d" % i, key=b"key-%d" % i)
    assert prod.flush(30) == 0
    relay = {
        "a3.sources": "r1", "a3.channels": "c1", "a3.sinks": "k1",
        "a3.sources.r1.type": "kafka", "a3.sources.r1.channels": "c1",
        "a3.sources.r1.kafka.bootstrap.servers": BROKERS, "a3.sources.r1.kafka.topics": feed,
        "a3.sources.r1.kafka.consumer.group.id": "relay-" + feed, "a3.sources.r1.batchDurationMillis": 100,
        "a3.sources.r1.batchSize": 100,
        # the source's topic header would send the events back to `feed`: renamed, so the
        # sink's default topic applies
        "a3.sources.r1.topicHeader": "from",
        "a3.channels.c1.type": "memory",
        "a3.sinks.k1.type": "kafka", "a3.sinks.k1.channel": "c1", "a3.sinks.k1.kafka.bootstrap.servers": BROKERS,
        "a3.sinks.k1.kafka.topic": topic, "a3.sinks.k1.useFlumeEventFormat": "true",
        "a3.sinks.k1.kafka.producer.compression.type": "zstd",
    }
    p = agent("a3", write_config(tmp_path, relay, "relay.properties"))
    msgs = read_topic(topic, n)
    assert p.stop(timeout=60) == 0, p.stderr
    assert sorted(m.key() for m in msgs) == sorted(b"key-%d" % i for i in range(n))

    import io

    import fastavro
    from fastsync.kafkaio import FLUME_EVENT_SCHEMA
    schema = fastavro.parse_schema(FLUME_EVENT_SCHEMA)
    events = [fastavro.schemaless_reader(io.BytesIO(m.value()), schema) for m in msgs]
    assert sorted(e["body"] for e in events) == sorted(b"body-%d" % i for i in range(n))
    for e in events:
        assert e["headers"]["from"] == feed and e["headers"]["key"] == e["body"].decode().replace("body", "key")
        assert e["headers"]["partition"] == "0" and int(e["headers"]["offset"]) >= 0



def test_topic_and_key_headers_route_each_event(tmp_path):
    """Through the sink's Python API: a `topic` header picks the event's topic, a `key`
    header its key; events without them go to kafka.topic, unkeyed."""
    from fastsync.agent.sinks.kafka import KafkaSink, KafkaSinkConfig
    from fastsync.event import Event, EventBatch
    default, other = new_topic(), new_topic()
    sink = KafkaSink("k1", KafkaSinkConfig(bootstrapServers=BROKERS, topic=default))
    sink.start()
    try:
        sink.deliver(EventBatch.from_events([
            Event(b"a", {"topic": other, "key": "ka"}), Event(b"b", {}), Event(b"c", {"key": "kc"}),
            Event(b"d", {"topic": other})]))
    finally:
        sink.stop()
    assert sorted((m.value(), m.key()) for m in read_topic(other, 2)) == [(b"a", b"ka"), (b"d", None)]
    assert sorted((m.value(), m.key()) for m in read_topic(default, 2)) == [(b"b", None), (b"c", b"kc")]


def http_to_kafka(tmp_path, agent, topic: str, *extra, **sink):
    """http source -> memory channel -> kafka sink; (agent, http port)."""
    from e2e_support import free_port, wait_for_port
    port = free_port()
    cfg = {"a1.sources": "r1", "a1.channels": "c1", "a1.sinks": "k1",
           "a1.sources.r1.type": "http", "a1.sources.r1.port": port, "a1.sources.r1.channels": "c1",
           "a1.channels.c1.type": "memory",
           "a1.sinks.k1.type": "kafka", "a1.sinks.k1.channel": "c1", "a1.sinks.k1.kafka.bootstrap.servers": BROKERS,
           "a1.sinks.k1.kafka.topic": topic}
    cfg.update({"a1.sinks.k1." + k: v for k, v in sink.items()})
    p = agent("a1", write_config(tmp_path, cfg), *extra)
    wait_for_port(port, timeout=15, alive=p.alive)
    return p, port


def post_events(port: int, events: list) -> None:
    import json
    from test_http_source import post
    assert post(port, json.dumps(events).encode()) == (200, "")


def test_messages_that_can_never_be_produced_go_to_the_dead_letter_file(tmp_path, agent):
    """A NUL in the topic header (refused by the client), an invalid topic name and a
    message over the topic's max.message.bytes (refused by the broker) are dead-lettered;
    the rest of the batch reaches Kafka."""
    import json
    topic = new_topic(**{"max.message.bytes": "2000"})
    dead = tmp_path / "dead.jsonl"
    p, port = http_to_kafka(tmp_path, agent, topic, deadLetterFile=dead)
    post_events(port, [{"body": "good 1"}, {"headers": {"topic": "nul\u0000topic"}, "body": "nul"},
                       {"headers": {"topic": "no topic!"}, "body": "invalid"}, {"body": "x" * 5000},
                       {"headers": {"key": "k"}, "body": "good 2"}])
    try:
        poll(lambda: dead.exists() and len(dead.read_text().splitlines()) == 3, 30, message="3 dead letters")
    except AssertionError:
        raise AssertionError(p.stderr[-5000:])
    assert sorted((m.value(), m.key()) for m in read_topic(topic, 2)) == [(b"good 1", None), (b"good 2", b"k")]
    assert p.stop(timeout=60) == 0, p.stderr
    letters = [json.loads(line) for line in dead.read_text().splitlines()]
    assert [(d["body"][:7], d.get("headers")) for d in letters] == [
        ("nul", {"topic": "nul\u0000topic"}), ("invalid", {"topic": "no topic!"}), ("x" * 7, None)]
    assert "'nul\\x00topic' is not a valid Kafka topic name" in letters[0]["reason"]
    assert "'no topic!' is not a valid Kafka topic name" in letters[1]["reason"] and "too large" in letters[2]["reason"]


def test_messages_refused_by_the_client_mid_batch_are_dead_lettered_in_place(tmp_path, agent):
    """Messages over the producer's message.max.bytes are refused by produce() itself, in
    the middle of a batch: exactly those events are dead-lettered, every other one is sent
    once, in order (the sink finds which message of the batch raised from what is left
    to send)."""
    import json
    topic = new_topic()
    dead = tmp_path / "dead.jsonl"
    p, port = http_to_kafka(tmp_path, agent, topic, deadLetterFile=dead, **{"kafka.producer.message.max.bytes": 2000})
    events = [{"body": "small %d" % i} if i % 4 else {"body": "%d" % i + "x" * 3000} for i in range(1, 11)]
    post_events(port, events)
    try:
        poll(lambda: dead.exists() and len(dead.read_text().splitlines()) == 2, 30, message="2 dead letters")
    except AssertionError:
        raise AssertionError(p.stderr[-5000:])
    assert [m.value() for m in read_topic(topic, 8)] == [e["body"].encode() for e in events if len(e["body"]) < 100]
    assert p.stop(timeout=60) == 0, p.stderr
    letters = [json.loads(line) for line in dead.read_text().splitlines()]
    assert [d["body"][:2] for d in letters] == ["4x", "8x"] and all("too large" in d["reason"] for d in letters)


def test_a_full_producer_queue_sends_every_event_once_in_order(tmp_path, run_agent):
    """A producer queue of 7 messages (kafka.producer.queue.buffering.max.messages) under
    takes of 100: produce() raises BufferError within every take, the sink waits for room
    and goes on with the next message of the take."""
    topic = new_topic()
    cfg = seq_to_kafka(topic, 3000, flumeBatchSize=100, **{"kafka.producer.queue.buffering.max.messages": 7})
    p = run_agent("a1", write_config(tmp_path, cfg), "--exit-when-done", timeout=120)
    assert p.returncode == 0, p.stderr
    assert [int(m.value()) for m in read_topic_to_end(topic)] == list(range(3000))


def test_without_dead_letter_file_an_unproducible_message_is_retried_and_logged_once(tmp_path, agent):
    from e2e_support import free_port, get_json, wait_for_json
    topic, mport = new_topic(), free_port()
    p, port = http_to_kafka(tmp_path, agent, topic, "--metrics-port", str(mport), "--drain-timeout", "1")
    post_events(port, [{"body": "good"}, {"headers": {"topic": "nul\u0000topic"}, "body": "nul"}])
    url = "http://127.0.0.1:%d/metrics" % mport
    wait_for_json(url, timeout=10, alive=p.alive)
    poll(lambda: int(get_json(url)["SINK.k1"]["EventWriteFail"]) >= 2, 30, interval=0.2, message="two failed tries")
    assert p.stop(timeout=60) == 0
    assert p.stderr.count("is not a valid Kafka topic name") == 1, p.stderr
    assert "1 of 2 events can never be produced and no deadLetterFile" in p.stderr and "Traceback" not in p.stderr
    consumer = Consumer({"bootstrap.servers": BROKERS, "group.id": "check-" + uuid.uuid4().hex, "auto.offset.reset": "earliest"})
    low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    consumer.close()
    assert high == 0, "as Flume: nothing of the batch is sent, it is retried (and no duplicate on each retry)"


def test_bad_kafka_config_is_one_located_error(tmp_path, run_agent):
    cfg = seq_to_kafka("x", 10)
    del cfg["a1.sinks.k1.kafka.bootstrap.servers"]
    p = run_agent("a1", write_config(tmp_path, cfg), timeout=30)
    assert p.returncode != 0
    assert "agent.properties" in p.stderr and "kafka.bootstrap.servers" in p.stderr
    cfg = kafka_to_file(tmp_path, "x", tmp_path / "o", "g")
    cfg["a2.sources.r1.kafka.topics.regex"] = "t-.*"
    p = run_agent("a2", write_config(tmp_path, cfg), timeout=30)
    assert p.returncode != 0 and "exactly one of kafka.topics and kafka.topics.regex" in p.stderr
    p = run_agent("a1", write_config(tmp_path, seq_to_kafka("no/topic", 10)), timeout=30)
    assert p.returncode != 0 and "kafka.topic: 'no/topic' is not a valid Kafka topic name" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr


@pytest.mark.parametrize("acks", ["1", "all"])
def test_kafka_sink_acks_setting(tmp_path, run_agent, acks):
    topic = new_topic()
    p = run_agent("a1", write_config(tmp_path, seq_to_kafka(topic, 2000, **{"kafka.producer.acks": acks})),
                  "--exit-when-done", timeout=120)
    assert p.returncode == 0, p.stderr
    assert sorted(int(m.value()) for m in read_topic(topic, 2000)) == list(range(2000))


def test_kafka_sink_killed_with_takes_in_flight_loses_nothing(tmp_path, agent, run_agent):
    """file channel -> kafka sink with many takes in flight (each an open transaction until
    its messages are acknowledged): the agent is killed (SIGKILL) mid-run and started
    again; every event is in the topic, duplicated at most the events in flight."""
    import signal
    n = 100_000
    topic = new_topic()
    channel = {"a1.channels": "c1", "a1.channels.c1.type": "file", "a1.channels.c1.checkpointDir": tmp_path / "ck",
               "a1.channels.c1.dataDirs": tmp_path / "data", "a1.channels.c1.minimumRequiredSpace": 0,
               "a1.channels.c1.transactionCapacity": 1000, "a1.channels.c1.capacity": n}
    # the channel filled first, by an agent whose only sink drains another channel
    fill = {"a1.sources": "r1", "a1.sinks": "k1", "a1.sources.r1.type": "seq", "a1.sources.r1.totalEvents": n,
            "a1.sources.r1.batchSize": 1000, "a1.sources.r1.channels": "c1", **channel, "a1.channels": "c1 c2",
            "a1.channels.c2.type": "memory", "a1.sinks.k1.type": "null", "a1.sinks.k1.channel": "c2"}
    p = run_agent("a1", write_config(tmp_path, fill, "fill.properties"), "--exit-when-done", timeout=120)
    assert p.returncode == 0, p.stderr
    drain = write_config(tmp_path, {"a1.sinks": "k1", **channel, "a1.sinks.k1.type": "kafka", "a1.sinks.k1.channel": "c1",
                                    "a1.sinks.k1.kafka.bootstrap.servers": BROKERS, "a1.sinks.k1.kafka.topic": topic,
                                    "a1.sinks.k1.flumeBatchSize": 100, "a1.sinks.k1.maxEventsInFlight": 2000})
    p = agent("a1", drain)
    c = Consumer({"bootstrap.servers": BROKERS, "group.id": "check-" + uuid.uuid4().hex})
    try:
        poll(lambda: c.get_watermark_offsets(TopicPartition(topic, 0), timeout=5)[1] > 5000 or not p.alive(), 60,
             message="first messages")
        p.send_signal(signal.SIGKILL)
        p.wait(10)
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=5)[1] < n, "killed too late"
    finally:
        c.close()
    p = run_agent("a1", drain, "--exit-when-done", timeout=120)
    assert p.returncode == 0, p.stderr
    values = [m.value() for m in read_topic_to_end(topic)]
    assert multiset_problems(set(values), [b"%d" % i for i in range(n)]) == ""      # nothing lost
    assert len(values) - n <= 2000 + 100, "%d duplicates" % (len(values) - n)


# -- import into Kafka ------------------------------------------------------------------------

PG_URL = os.environ.get("FASTSYNC_TEST_PG_URL", "postgresql://fastsync:fastsync@127.0.0.1:5432/fastsync")
KAFKA_ITEMS = "kafka_items_%d" % os.getpid()    # per process: concurrent runs never share it


def _kafka_rows(n):
    import datetime
    import decimal
    return [{"id": i, "name": None if i % 50 == 0 else "n\u00e9 %d \"q\"\n" % i,
             "price": decimal.Decimal("%d.%02d" % (i, i % 100)),
             "ts": datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc) + datetime.timedelta(seconds=i),
             "raw": bytes([i % 256, 0, 255])} for i in range(n)]


@pytest.fixture(scope="module")
def kafka_items():
    import sqlalchemy as sa
    engine = sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://"))
    md = sa.MetaData()
    t = sa.Table(KAFKA_ITEMS, md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                 sa.Column("name", sa.Text), sa.Column("price", sa.Numeric(10, 2)),
                 sa.Column("ts", sa.DateTime(timezone=True)), sa.Column("raw", sa.LargeBinary))
    rows = _kafka_rows(3000)
    with engine.begin() as conn:
        md.drop_all(conn)
        md.create_all(conn)
        conn.execute(t.insert(), rows)
    engine.dispose()
    yield rows
    drop_tables(PG_URL, KAFKA_ITEMS)


def fastsync_cli(*args):
    import sys
    return subprocess.run([sys.executable, "-m", "fastsync", *map(str, args)], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("fmt", ["json", "avro", "arrow"])
def test_import_postgres_table_into_kafka(kafka_items, fmt):
    import base64
    import json

    import pyarrow as pa
    topic = new_topic(partitions=2)
    extra = ["--kafka-key", "id"] if fmt != "arrow" else []
    r = fastsync_cli("import", "--connect", PG_URL, "--table", KAFKA_ITEMS, "-m", 2, "--kafka-topic", topic,
                     "--kafka-brokers", BROKERS, "--kafka-format", fmt, *extra)
    assert r.returncode == 0, r.stderr
    assert "imported 3000 rows" in r.stdout and topic in r.stdout
    want = sorted(kafka_items, key=lambda x: x["id"])
    if fmt == "arrow":
        # every message is an Arrow IPC stream; together they hold every row once
        c = Consumer({"bootstrap.servers": BROKERS, "group.id": "check-" + uuid.uuid4().hex, "auto.offset.reset": "earliest"})
        c.subscribe([topic])
        batches = []
        try:
            poll(lambda: batches.extend(b for m in c.consume(100, 0.5) if m.error() is None for b in pa.ipc.open_stream(m.value()))
                 or sum(b.num_rows for b in batches) >= len(want), 60, message="rows on " + topic)
        finally:
            c.close()
        assert sorted(pa.Table.from_batches(batches).to_pylist(), key=lambda x: x["id"]) == want
        return
    msgs = read_topic(topic, len(want))
    assert len(msgs) == len(want)
    assert sorted(int(m.key()) for m in msgs) == [w["id"] for w in want]
    if fmt == "json":
        got = sorted((json.loads(m.value()) for m in msgs), key=lambda x: x["id"])
        expect = [{"id": w["id"], "name": w["name"], "price": str(w["price"]), "ts": w["ts"].isoformat(),
                   "raw": base64.b64encode(w["raw"]).decode()} for w in want]
        assert got == expect
    else:
        import io

        import fastavro
        from fastsync.transfer.avrofile import avro_schema
        schema = fastavro.parse_schema(avro_schema(pa.schema([
            ("id", pa.int64()), ("name", pa.string()), ("price", pa.decimal128(10, 2)),
            ("ts", pa.timestamp("us", tz="UTC")), ("raw", pa.binary())])))
        got = sorted((fastavro.schemaless_reader(io.BytesIO(m.value()), schema) for m in msgs), key=lambda x: x["id"])
        assert got == want


def test_import_into_kafka_bad_flags(kafka_items):
    r = fastsync_cli("import", "--connect", PG_URL, "--table", KAFKA_ITEMS, "--kafka-topic", "x",
                     "--kafka-brokers", BROKERS, "--kafka-key", "nope")
    assert r.returncode == 1 and "--kafka-key nope: no such column" in r.stderr
    r = fastsync_cli("import", "--connect", PG_URL, "--table", KAFKA_ITEMS, "--kafka-topic", "x", "--target-dir", "/tmp/x")
    assert r.returncode == 2 and "--kafka-topic replaces --target-dir" in r.stderr


# -- Kafka channel ----------------------------------------------------------------------------

def kafka_channel(name: str, topic: str, group: str, **extra):
    from fastsync.agent.channels.kafka import KafkaChannel, KafkaChannelConfig
    ch = KafkaChannel(name, KafkaChannelConfig(bootstrapServers=BROKERS, topic=topic, groupId=group, **extra))
    ch.start()
    return ch


def take_all(ch, n: int, timeout: float = 60.0) -> list:
    from fastsync.event import EventBatch  # noqa: F401
    got = []

    def step():
        with ch.transaction() as tx:
            b = tx.take(1000, 0.5)
            if b is not None:
                got.extend(b.events())
        return len(got) >= n
    poll(step, timeout, message="%d events from channel %s" % (n, ch.name))
    return got


def test_kafka_channel_api_headers_rollback_and_a_second_taker():
    from fastsync.event import Event, EventBatch
    topic = new_topic(partitions=2)
    group = "ch-" + topic
    events = [Event(b"body %d \x00" % i, {"key": "k%d" % (i % 5), "h": "v%d" % i}) for i in range(500)]
    ch = kafka_channel("c1", topic, group)
    try:
        with ch.transaction() as tx:
            tx.put(EventBatch.from_events(events[:300]))
        tx = ch.transaction()          # a put rolled back never reaches the topic
        tx.begin()
        tx.put(EventBatch.from_events([Event(b"rolled back", {})]))
        tx.rollback()
        tx.close()
        with ch.transaction() as tx:
            tx.put(EventBatch.from_events(events[300:]))
        # a take rolled back is taken again
        poll(lambda: ch.size == 500, 30, message="size 500")
        tx = ch.transaction()
        tx.begin()
        first = tx.take(100, 5)
        assert first is not None and ch.in_flight == len(first)
        tx.rollback()
        tx.close()
        assert ch.in_flight == 0
    finally:
        ch.stop()
    # another channel object of the same group (another agent) takes everything, once
    ch2 = kafka_channel("c2", topic, group)
    try:
        got = take_all(ch2, 500)
        poll(lambda: ch2.size == 0, 30, message="size 0 after the takes")
    finally:
        ch2.stop()
    assert sorted(got, key=lambda e: e.body) == sorted(events, key=lambda e: e.body)
    # the key header became the message key (Kafka partitions by it)
    keys = {m.key() for m in read_topic(topic, 500)}
    assert keys == {b"k%d" % i for i in range(5)}


def test_kafka_channel_between_two_agents(tmp_path, run_agent, agent):
    """Agent 1: seq -> kafka channel (no sink); agent 2: kafka channel -> file_roll (no source)."""
    n = 30_000
    topic = new_topic(partitions=2)
    channel = {"type": "kafka", "kafka.bootstrap.servers": BROKERS, "kafka.topic": topic,
               "kafka.consumer.group.id": "g-" + topic, "parseAsFlumeEvent": "false"}
    a1 = {"a1.sources": "r1", "a1.channels": "c1", "a1.sources.r1.type": "seq", "a1.sources.r1.totalEvents": n,
          "a1.sources.r1.batchSize": 1000, "a1.sources.r1.channels": "c1"}
    a1.update({"a1.channels.c1." + k: v for k, v in channel.items()})
    p = run_agent("a1", write_config(tmp_path, a1, "a1.properties"), "--exit-when-done", timeout=120)
    assert p.returncode == 0, p.stderr
    out = tmp_path / "out"
    a2 = {"a2.channels": "c1", "a2.sinks": "k1", "a2.sinks.k1.type": "file_roll", "a2.sinks.k1.channel": "c1",
          "a2.sinks.k1.sink.directory": out, "a2.sinks.k1.sink.rollInterval": 0, "a2.sinks.k1.sink.batchSize": 1000}
    a2.update({"a2.channels.c1." + k: v for k, v in channel.items()})
    p2 = agent("a2", write_config(tmp_path, a2, "a2.properties"))
    poll(lambda: count_lines(out) >= n or not p2.alive(), 120, message="%d lines" % n)
    assert p2.stop(timeout=60) == 0, p2.stderr
    assert multiset_problems(read_dir_lines(out), [b"%d" % i for i in range(n)]) == ""
