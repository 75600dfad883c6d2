"""Kafka with SASL end to end: the sink, source and channel pass kafka.producer.* /
kafka.consumer.* (and import --kafka-config) through to librdkafka, against the broker's
SASL_PLAINTEXT listener (mechanism PLAIN, user fastsync / fastsync) that scripts/services.sh
starts next to the plaintext one. A wrong password fails with the broker's reason, loses
nothing, and the password is in no log, error or --validate output."""
from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import uuid

import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic

from e2e_support import count_lines, created_topics, multiset_problems, poll, read_dir_lines, write_config

BROKERS = os.environ.get("FASTSYNC_TEST_KAFKA", "127.0.0.1:9092")
SASL_BROKERS = os.environ.get("FASTSYNC_TEST_KAFKA_SASL", "127.0.0.1:9094")
USER, PASSWORD = "fastsync", "fastsync"


@pytest.fixture(autouse=True)
def sasl_listener():
    host, port = SASL_BROKERS.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise AssertionError("no SASL_PLAINTEXT listener at %s (%s): run `bash scripts/services.sh up`, which restarts "
                             "a broker started with an older configuration" % (SASL_BROKERS, exc.strerror)) from None


def sasl(prefix: str, password: str) -> dict:
    return {prefix + "security.protocol": "SASL_PLAINTEXT", prefix + "sasl.mechanism": "PLAIN",
            prefix + "sasl.username": USER, prefix + "sasl.password": password}


def new_topic() -> str:
    name = "sasl-" + uuid.uuid4().hex[:12]
    admin = AdminClient({"bootstrap.servers": BROKERS})   # kept alive until the topic exists
    created_topics.append(name)     # deleted after the test (tests/conftest.py)
    admin.create_topics([NewTopic(name, 1, 1)])[name].result(30)
    return name


def topic_bodies(topic: str, n: int) -> list[bytes]:
    """Every message of the topic, read to its end once at least n arrived (over the
    plaintext listener)."""
    c = Consumer({"bootstrap.servers": BROKERS, "group.id": "check-" + uuid.uuid4().hex, "auto.offset.reset": "earliest",
                  "enable.partition.eof": True})
    c.subscribe([topic])
    out, eof = [], []
    try:
        def more():
            for m in c.consume(1000, 0.5):
                (out.append(m.value()) if m.error() is None else eof.append(1))
            return len(out) >= n and eof
        poll(more, 60, message="%d messages on %s" % (n, topic))
    finally:
        c.close()
    return out


@pytest.mark.slow
def test_sink_with_sasl_delivers_and_a_wrong_password_loses_nothing(tmp_path, agent, run_agent):
    """seq -> file channel -> kafka sink over SASL: with a wrong password the sink reports the
    broker's reason and keeps the events in the channel (nothing reaches the topic); the
    same channel, drained by a sink with the right password, delivers every event once."""
    topic, n, wrong = new_topic(), 3000, "wrong-" + uuid.uuid4().hex
    channel = {"a1.channels.c1.type": "file", "a1.channels.c1.checkpointDir": tmp_path / "ck",
               "a1.channels.c1.dataDirs": tmp_path / "data", "a1.channels.c1.minimumRequiredSpace": 0}
    sink = {"a1.sinks.k1.type": "kafka", "a1.sinks.k1.channel": "c1", "a1.sinks.k1.kafka.bootstrap.servers": SASL_BROKERS,
            "a1.sinks.k1.kafka.topic": topic, "a1.sinks.k1.flumeBatchSize": 1000}
    bad = write_config(tmp_path, {
        "a1.sources": "r1", "a1.channels": "c1", "a1.sinks": "k1",
        "a1.sources.r1.type": "seq", "a1.sources.r1.totalEvents": n, "a1.sources.r1.batchSize": 500,
        "a1.sources.r1.channels": "c1", **channel, **sink, **sasl("a1.sinks.k1.kafka.producer.", wrong)}, "bad.properties")
    out = run_agent("a1", bad, "--validate")
    assert out.returncode == 0 and wrong not in out.stdout + out.stderr, out.stdout + out.stderr
    p = agent("a1", bad, "--no-reload-conf", "--drain-timeout", "0.5")
    p.wait_for_stderr(r"sink k1: \d+ of 1000 messages not delivered, the batch stays in the channel: .*"
                      r"Authentication failed: Invalid username or password", timeout=60)
    assert p.stop(signal.SIGTERM) == 0, p.stderr[-3000:]
    assert wrong not in p.stderr + p.stdout
    good = write_config(tmp_path, {"a1.sinks": "k1", "a1.channels": "c1", **channel, **sink,
                                   **sasl("a1.sinks.k1.kafka.producer.", PASSWORD)}, "good.properties")
    done = run_agent("a1", good, "--exit-when-done", timeout=120)
    assert done.returncode == 0 and "%d events delivered" % n in done.stdout, done.stderr[-3000:]
    got = topic_bodies(topic, n)
    assert not multiset_problems(got, [b"%d" % i for i in range(n)]), multiset_problems(got, [b"%d" % i for i in range(n)])


def test_source_and_channel_with_sasl(tmp_path, agent):
    """kafka source (SASL consumer) -> kafka channel (SASL producer and consumer) -> file_roll."""
    feed, channel_topic, n = new_topic(), new_topic(), 500
    from confluent_kafka import Producer
    prod = Producer({"bootstrap.servers": SASL_BROKERS, **sasl("", PASSWORD)})
    for i in range(n):
        prod.produce(feed, b"m%d" % i)
    assert prod.flush(30) == 0
    out = tmp_path / "out"
    out.mkdir()
    conf = write_config(tmp_path, {
        "a1.sources": "r1", "a1.channels": "c1", "a1.sinks": "k1",
        "a1.sources.r1.type": "kafka", "a1.sources.r1.channels": "c1", "a1.sources.r1.kafka.bootstrap.servers": SASL_BROKERS,
        "a1.sources.r1.kafka.topics": feed, "a1.sources.r1.kafka.consumer.group.id": "g-" + feed,
        "a1.sources.r1.batchDurationMillis": 100, **sasl("a1.sources.r1.kafka.consumer.", PASSWORD),
        "a1.channels.c1.type": "kafka", "a1.channels.c1.kafka.bootstrap.servers": SASL_BROKERS,
        "a1.channels.c1.kafka.topic": channel_topic, "a1.channels.c1.kafka.consumer.group.id": "g-" + channel_topic,
        **sasl("a1.channels.c1.kafka.producer.", PASSWORD), **sasl("a1.channels.c1.kafka.consumer.", PASSWORD),
        "a1.sinks.k1.type": "file_roll", "a1.sinks.k1.channel": "c1", "a1.sinks.k1.sink.directory": out,
        "a1.sinks.k1.sink.rollInterval": 0,
    })
    p = agent("a1", conf, "--no-reload-conf")
    poll(lambda: count_lines(out) >= n or not p.alive(), 90, message="%d lines in %s" % (n, out))
    assert p.stop(signal.SIGTERM) == 0, p.stderr[-3000:]
    got = read_dir_lines(out)
    assert not multiset_problems(got, [b"m%d" % i for i in range(n)]), multiset_problems(got, [b"m%d" % i for i in range(n)])


def test_import_to_kafka_with_sasl_settings_from_a_file(tmp_path):
    db = tmp_path / "src.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    con.executemany("INSERT INTO t VALUES (?, ?)", [(i, "v%d" % i) for i in range(200)])
    con.commit()
    con.close()
    topic, wrong = new_topic(), "wrong-" + uuid.uuid4().hex

    def run(password):
        conf = tmp_path / ("%s.properties" % password)
        conf.write_text("".join("%s=%s\n" % kv for kv in sasl("", password).items()))
        return subprocess.run([sys.executable, "-m", "fastsync", "import", "--connect", "jdbc:sqlite:%s" % db, "--table", "t",
                               "-m", "2", "--kafka-topic", topic, "--kafka-brokers", SASL_BROKERS, "--kafka-config", conf],
                              capture_output=True, text=True, timeout=120)
    out = run(wrong)
    line = out.stderr.strip().splitlines()[-1]     # after librdkafka's and the splits' log lines
    assert out.returncode == 1 and line.startswith("fastsync: error: split ") and "Authentication failed" in line, out.stderr
    assert wrong not in out.stdout + out.stderr
    out = run(PASSWORD)
    assert out.returncode == 0 and "imported 200 rows" in out.stdout, out.stderr
    got = topic_bodies(topic, 200)
    assert len(got) == 200 and sorted(eval_id(b) for b in got) == list(range(200))


def eval_id(body: bytes) -> int:
    import json
    return json.loads(body)["id"]


def test_rejected_settings_never_show_the_password(tmp_path, run_agent):
    secret = "s3cret-" + uuid.uuid4().hex
    conf = write_config(tmp_path, {
        "a1.sources": "r1", "a1.channels": "c1", "a1.sinks": "k1",
        "a1.sources.r1.type": "seq", "a1.sources.r1.channels": "c1", "a1.channels.c1.type": "memory",
        "a1.sinks.k1.type": "kafka", "a1.sinks.k1.channel": "c1", "a1.sinks.k1.kafka.bootstrap.servers": SASL_BROKERS,
        **sasl("a1.sinks.k1.kafka.producer.", secret), "a1.sinks.k1.kafka.producer.sasl.mechanism": "NOPE"})
    out = run_agent("a1", conf)
    line = out.stderr.strip().splitlines()[-1]
    assert out.returncode == 2 and "Kafka producer settings rejected" in line and "NOPE" in line, out.stderr
    assert secret not in out.stderr + out.stdout
    props = tmp_path / "k.properties"
    props.write_text("sasl.password=%s\nsasl.mechanism=NOPE\nsecurity.protocol=SASL_PLAINTEXT\n" % secret)
    out = subprocess.run([sys.executable, "-m", "fastsync", "import", "--connect", "sqlite:///%s" % (tmp_path / "x.db"),
                          "--table", "t", "--kafka-topic", "x", "--kafka-config", props], capture_output=True, text=True, timeout=60)
    line = out.stderr.strip()
    assert out.returncode == 2 and line.startswith("fastsync: error: --kafka-config %s: " % props) and "NOPE" in line, out.stderr
    assert "\n" not in line and secret not in out.stderr


@pytest.mark.slow
def test_channel_with_a_wrong_password_refuses_puts_with_the_reason(tmp_path, agent):
    """A put commit into a kafka channel that cannot authenticate fails (the source keeps
    its batch and retries) with the broker's reason, instead of waiting message.timeout.ms."""
    topic, wrong = new_topic(), "wrong-" + uuid.uuid4().hex
    conf = write_config(tmp_path, {
        "a1.sources": "r1", "a1.channels": "c1", "a1.sinks": "k1",
        "a1.sources.r1.type": "seq", "a1.sources.r1.totalEvents": 100, "a1.sources.r1.batchSize": 100,
        "a1.sources.r1.channels": "c1",
        "a1.channels.c1.type": "kafka", "a1.channels.c1.kafka.bootstrap.servers": SASL_BROKERS,
        "a1.channels.c1.kafka.topic": topic, **sasl("a1.channels.c1.kafka.producer.", wrong),
        **sasl("a1.channels.c1.kafka.consumer.", wrong),
        "a1.sinks.k1.type": "null", "a1.sinks.k1.channel": "c1",
    })
    p = agent("a1", conf, "--no-reload-conf", "--drain-timeout", "0.5")
    p.wait_for_stderr(r"channel c1: events not stored in Kafka: .*Authentication failed: Invalid username or password",
                      timeout=60)
    assert p.stop(signal.SIGTERM) == 0, p.stderr[-3000:]
    assert wrong not in p.stderr + p.stdout
    assert topic_bodies(topic, 0) == []      # read to the end: nothing arrived


