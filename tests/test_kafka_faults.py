"""Kafka under faults, with real processes: the broker stopped mid-run and started again;
a consumer's connections silently dead; an agent of a consumer group killed with SIGKILL
while the others go on. The broker that is stopped is a private one (tests/kafka_broker.py),
never the shared broker other tests use."""
from __future__ import annotations

import signal
import time

import pytest
from confluent_kafka import Producer

from e2e_support import count_lines, free_port, get_json, lines_so_far, multiset_problems, poll, read_dir_lines, write_config
from kafka_broker import FreezingProxy, PrivateBroker
from test_kafka import BROKERS, kafka_to_file, new_topic, read_topic_to_end, seq_to_kafka

RECREATED = "creating a new consumer"      # the kafka source's warning when it replaces a stuck consumer


@pytest.fixture(scope="module")
def private_broker(tmp_path_factory):
    broker = PrivateBroker(tmp_path_factory.mktemp("kafka"))
    broker.start()
    yield broker
    broker.stop()


@pytest.mark.parametrize("message_timeout_ms", [None, 2000])
@pytest.mark.slow
def test_broker_stopped_and_restarted_mid_run_loses_nothing(tmp_path, agent, private_broker, message_timeout_ms):
    """seq -> memory -> kafka sink and, at the same time, kafka source -> file channel ->
    file_roll; the broker goes away for several seconds in the middle: both sides wait and
    resume by themselves, and every event reaches the files. With a 2 s
    message.timeout.ms the sink's deliveries fail during the outage: its takes are rolled
    back and retried until the broker is back."""
    n = 100_000
    brokers = private_broker.bootstrap
    topic = new_topic(brokers=brokers)
    cfg = seq_to_kafka(topic, n)
    cfg["a1.sinks.k1.kafka.bootstrap.servers"] = brokers
    cfg["a1.sources.r1.batchSize"] = 1000
    # small takes, few in flight: slow enough that the run is surely not over when the
    # broker stops
    cfg["a1.sinks.k1.flumeBatchSize"] = 100
    cfg["a1.sinks.k1.maxEventsInFlight"] = 200
    if message_timeout_ms:
        cfg["a1.sinks.k1.kafka.producer.message.timeout.ms"] = message_timeout_ms
    out = tmp_path / "out"
    consumer_cfg = kafka_to_file(tmp_path, topic, out, "g-" + topic)
    consumer_cfg["a2.sources.r1.kafka.bootstrap.servers"] = brokers
    # the restarted broker loads the group with this member in it: a rejoin completes once
    # the coordinator gives up on the old membership, after the session timeout (45 s by
    # default, which on a loaded CI machine took the consumer past the wait below). A
    # rejoin that never completes (seen twice in CI) is ended by the source itself after
    # session.timeout.ms + max.poll.interval.ms + 3 s: 27 s here.
    consumer_cfg["a2.sources.r1.kafka.consumer.session.timeout.ms"] = 6000
    consumer_cfg["a2.sources.r1.kafka.consumer.heartbeat.interval.ms"] = 1000
    consumer_cfg["a2.sources.r1.kafka.consumer.max.poll.interval.ms"] = 18000
    consumer = agent("a2", write_config(tmp_path, consumer_cfg, "a2.properties"))
    p = agent("a1", write_config(tmp_path, cfg), "--exit-when-done")
    try:
        # some messages through, then the broker goes away for several seconds
        poll(lambda: _high_watermark(brokers, topic) > 20_000 or not p.alive(), 60, message="first messages")
        p.send_signal(signal.SIGSTOP)       # the agent is mid-run while the broker stops
        assert p.alive(), p.stderr
        assert _high_watermark(brokers, topic) < n
        try:
            private_broker.stop()
        finally:
            p.send_signal(signal.SIGCONT)
        time.sleep(6)
        assert p.alive(), p.stderr           # blocked (back-pressure), not failed
    finally:
        private_broker.start()
    assert p.wait(180) == 0, p.stderr
    if message_timeout_ms:
        assert "messages not delivered" in p.stderr     # the rollback path was taken
    # the whole topic: a rolled-back batch that was in fact written is there twice, so the
    # first n messages need not hold every event
    values = [m.value() for m in read_topic_to_end(topic, timeout=120, brokers=brokers)]
    assert multiset_problems(set(values), [b"%d" % i for i in range(n)]) == ""   # nothing lost
    try:
        poll(lambda: len(set(lines_so_far(out))) >= n or not consumer.alive(), 180, message="all events in the files")
    finally:
        # diagnostics: how far the consumer got, and whether it had to replace a stuck consumer
        print("consumer: %d distinct lines; replaced its Kafka consumer %d time(s)"
              % (len(set(lines_so_far(out))), consumer.stderr.count(RECREATED)))
        print("consumer stderr (end, without refused connections):",
              "\n".join(line for line in consumer.stderr.splitlines() if "Connection refused" not in line)[-3000:])
    assert consumer.stop(timeout=60) == 0, consumer.stderr
    assert multiset_problems(set(read_dir_lines(out)), [b"%d" % i for i in range(n)]) == ""


def _high_watermark(brokers: str, topic: str) -> int:
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": brokers, "group.id": "watermark"})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, 0), timeout=5)[1]
    except Exception:
        return 0
    finally:
        c.close()


def _committed(brokers: str, group: str, topic: str) -> int:
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": brokers, "group.id": group})     # not subscribed: not a member
    try:
        return c.committed([TopicPartition(topic, 0)], timeout=10)[0].offset
    finally:
        c.close()


@pytest.mark.slow
def test_consumer_with_dead_connections_is_replaced_and_resumes(tmp_path, agent):
    """The consumer's connections to the broker go silently dead (a proxy stops forwarding
    them, without closing: a peer gone without a reset), while the broker itself and new
    connections are fine. librdkafka's session times out and it tries to rejoin its group
    over the dead connections, and with socket.max.fails = 0 (a timed-out request does not
    drop its connection) it notices only after socket.timeout.ms (5 minutes): a rejoin that
    does not complete by itself, as seen in CI after a broker restart. The source sees the
    membership not steady while a broker is up, replaces the consumer once, and the new one
    reads the messages that arrive afterwards. (With socket.max.fails = 1, the default,
    librdkafka sometimes recovers by itself here, sometimes not.)"""
    proxy = FreezingProxy(free_port())
    broker = PrivateBroker(tmp_path / "kafka", port=proxy.target_port, advertised_port=proxy.port)
    broker.start()
    prod = None
    try:
        brokers = broker.bootstrap
        topic = new_topic(brokers=brokers)
        prod = Producer({"bootstrap.servers": brokers})
        for i in range(1000):
            prod.produce(topic, b"a%d" % i)
        assert prod.flush(60) == 0
        out, mport = tmp_path / "out", free_port()
        cfg = kafka_to_file(tmp_path, topic, out, "g-" + topic)
        cfg["a2.sources.r1.kafka.bootstrap.servers"] = brokers
        cfg["a2.sources.r1.kafka.consumer.session.timeout.ms"] = 6000
        cfg["a2.sources.r1.kafka.consumer.heartbeat.interval.ms"] = 1000
        cfg["a2.sources.r1.kafka.consumer.max.poll.interval.ms"] = 6000     # bound: 6 + 6 + 3 = 15 s
        cfg["a2.sources.r1.kafka.consumer.socket.timeout.ms"] = 300000
        cfg["a2.sources.r1.kafka.consumer.socket.max.fails"] = 0
        consumer = agent("a2", write_config(tmp_path, cfg, "a2.properties"), "--metrics-port", mport)
        poll(lambda: count_lines(out) >= 1000 or not consumer.alive(), 60, message="the first 1000 messages")
        assert consumer.alive(), consumer.stderr
        # freeze with no offset commit in flight: a synchronous commit would hold the
        # source's thread for socket.timeout.ms, another matter than this test's
        poll(lambda: _committed(brokers, "g-" + topic, topic) == 1000, 30, message="offsets committed")
        frozen = proxy.freeze()
        print("connections frozen:", frozen, "of", len(proxy.conns), time.strftime("%H:%M:%S"))
        # a new producer's connections work
        prod = Producer({"bootstrap.servers": brokers})
        for i in range(1000):
            prod.produce(topic, b"b%d" % i)
        assert prod.flush(60) == 0
        try:
            poll(lambda: count_lines(out) >= 2000 or not consumer.alive(), 120, message="the 1000 messages sent after the freeze")
        finally:
            print("consumer stderr (end):", consumer.stderr[-3000:])
            print("proxy: frozen", sorted(proxy.frozen), "ended", sorted(proxy.ended), "bytes after the freeze", proxy.after)
        assert consumer.stderr.count(RECREATED) == 1, consumer.stderr
        assert get_json("http://127.0.0.1:%d/metrics" % mport)["SOURCE.r1"]["ConsumerRecreatedCount"] == "1"
        assert consumer.stop(timeout=60) == 0, consumer.stderr
        assert multiset_problems(set(read_dir_lines(out)), [b"a%d" % i for i in range(1000)] + [b"b%d" % i for i in range(1000)]) == ""
    finally:
        prod = None         # gone before the broker: no reconnect noise
        broker.stop()
        proxy.close()


@pytest.mark.slow
def test_idle_extra_group_member_is_not_replaced(tmp_path, agent):
    """Two agents in one group on a one-partition topic: one has the partition, the other
    none. With a watch bound of 15 s the idle member runs well past it (steady, just
    without partitions) and neither consumer is replaced; messages keep flowing. A third
    agent, subscribed to a topic that does not exist, joins no group and is not replaced
    either."""
    topic = new_topic()
    group = "g-" + topic
    prod = Producer({"bootstrap.servers": BROKERS})
    ports, procs, outs = [], [], []
    for i, t in ((1, topic), (2, topic), (3, "missing-" + topic)):
        d = tmp_path / ("agent%d" % i)
        d.mkdir()
        cfg = kafka_to_file(d, t, d / "out", group if t == topic else "g-missing-" + topic)
        cfg["a2.sources.r1.kafka.consumer.session.timeout.ms"] = 6000
        cfg["a2.sources.r1.kafka.consumer.heartbeat.interval.ms"] = 1000
        cfg["a2.sources.r1.kafka.consumer.max.poll.interval.ms"] = 6000     # bound: 6 + 6 + 3 = 15 s
        ports.append(free_port())
        outs.append(d / "out")
        procs.append(agent("a2", write_config(d, cfg), "--metrics-port", ports[-1]))
    for p in procs:
        p.wait_for_stderr("agent a2 started", 60)
    lines = lambda: set(lines_so_far(outs[0])) | set(lines_so_far(outs[1]))  # noqa: E731
    # ~24 s: messages every few seconds; once both joined, one member holds the partition
    # and the other none (which of them may change at the second one's join)
    for wave in range(4):
        values = [b"w%d-%d" % (wave, i) for i in range(200)]
        for v in values:
            prod.produce(topic, v)
        assert prod.flush(30) == 0
        poll(lambda: set(values) <= lines() or not all(p.alive() for p in procs), 60, message="wave %d" % wave)
        time.sleep(6)
    for p, port in zip(procs, ports):
        assert RECREATED not in p.stderr, p.stderr
        assert get_json("http://127.0.0.1:%d/metrics" % port)["SOURCE.r1"]["ConsumerRecreatedCount"] == "0"
        assert p.stop(timeout=60) == 0, p.stderr


@pytest.mark.slow
def test_consumer_group_member_killed_others_take_over(tmp_path, agent):
    n = 100_000
    topic = new_topic(partitions=4)
    prod = Producer({"bootstrap.servers": BROKERS, "linger.ms": 5})
    for i in range(n):
        prod.produce(topic, b"%d" % i)
        if i % 10000 == 0:
            prod.poll(0)
    assert prod.flush(60) == 0
    group = "g-" + topic
    dirs = [tmp_path / ("agent%d" % i) for i in (1, 2)]
    cfgs = []
    for d in dirs:
        d.mkdir()
        cfg = kafka_to_file(d, topic, d / "out", group, batchSize=500)
        cfg["a2.sources.r1.kafka.consumer.session.timeout.ms"] = 6000
        cfg["a2.sources.r1.kafka.consumer.heartbeat.interval.ms"] = 1000
        # slow the consumers down (small batches, a short wait) so the kill lands mid-stream
        cfg["a2.sources.r1.batchSize"] = 100
        cfgs.append(write_config(d, cfg))
    a1 = agent("a2", cfgs[0])
    a2 = agent("a2", cfgs[1])
    poll(lambda: count_lines(dirs[0] / "out") > 2000 or not a1.alive(), 60, message="agent 1 started")
    a1.send_signal(signal.SIGKILL)
    a1.wait(10)
    # a second wave into every partition: agent 2 alone must read all of it, so it took
    # over agent 1's partitions (after the session timeout)
    wave2 = [b"w2-%d" % i for i in range(4000)]
    for i, v in enumerate(wave2):
        prod.produce(topic, v, partition=i % 4)
    assert prod.flush(60) == 0
    poll(lambda: set(wave2) <= set(lines_so_far(dirs[1] / "out")) or not a2.alive(), 120,
         message="agent 2 to read the second wave from all 4 partitions")
    # what agent 1's file channel held when it was killed (its offsets committed) reaches its
    # sink only when agent 1 runs again: restarted, it drains that
    a1b = agent("a2", cfgs[0])
    distinct = lambda: len(set(lines_so_far(dirs[0] / "out")) | set(lines_so_far(dirs[1] / "out")))  # noqa: E731
    poll(lambda: distinct() >= n + len(wave2) or not a2.alive() or not a1b.alive(), 120,
         message="all messages across both agents")
    a1b.wait_for_stderr("agent a2 started", 60)      # a SIGTERM before its handlers are set kills it
    assert a1b.stop(timeout=60) == 0, a1b.stderr
    assert a2.stop(timeout=60) == 0, a2.stderr
    lines = read_dir_lines(dirs[0] / "out") + read_dir_lines(dirs[1] / "out")
    assert multiset_problems(set(lines), [b"%d" % i for i in range(n)] + wave2) == ""     # nothing lost
    # redelivered at most what agent 1 had read but not committed: one batch
    dups = len(lines) - n - len(wave2)
    assert dups <= 100, "%d duplicates" % dups
