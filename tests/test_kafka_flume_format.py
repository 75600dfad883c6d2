"""Messages in Flume event format (AvroFlumeEvents) through the Kafka source
(useFlumeEventFormat) and the Kafka channel (parseAsFlumeEvent), decoded a batch at a time
into columns, on the real broker through the agent CLI."""
from __future__ import annotations

import io

import fastavro
from confluent_kafka import Producer

from e2e_support import write_config
from fastsync.kafkaio import FLUME_EVENT_SCHEMA, flume_event_bytes
from test_kafka import BROKERS, new_topic, read_topic

SCHEMA = fastavro.parse_schema(FLUME_EVENT_SCHEMA)
NOT_AN_EVENT = b"not avro at all"


def test_flume_format_source_and_channel_keep_headers_and_a_message_that_is_no_event(tmp_path, agent):
    """kafka source (useFlumeEventFormat) -> kafka channel (parseAsFlumeEvent) -> kafka sink
    (useFlumeEventFormat): each event keeps its own headers, the source's Kafka headers win
    over them (a key header only where the message has a key), and a message that is not an
    AvroFlumeEvent, in the middle of a batch, arrives whole as a body instead of losing its
    batch."""
    n = 300
    feed, chan, out = new_topic(), new_topic(), new_topic()
    prod = Producer({"bootstrap.servers": BROKERS})
    for i in range(n):
        headers = {"h": "v%d" % i, "uni": "\u00e9\u2603", "offset": "theirs"}
        if i % 3 == 0:
            headers["key"] = "their-key-%d" % i
        prod.produce(feed, flume_event_bytes(headers, b"body-%d" % i), None if i % 3 == 0 else b"k%d" % i)
        if i == 150:
            prod.produce(feed, NOT_AN_EVENT, b"bad")
    assert prod.flush(30) == 0
    cfg = {
        "a1.sources": "r1", "a1.channels": "c1", "a1.sinks": "k1",
        "a1.sources.r1.type": "kafka", "a1.sources.r1.channels": "c1", "a1.sources.r1.kafka.bootstrap.servers": BROKERS,
        "a1.sources.r1.kafka.topics": feed, "a1.sources.r1.kafka.consumer.group.id": "g-" + feed,
        "a1.sources.r1.useFlumeEventFormat": "true", "a1.sources.r1.batchSize": 100,
        "a1.sources.r1.batchDurationMillis": 100,
        "a1.sources.r1.topicHeader": "from",        # not `topic`: the sink would route by it
        "a1.channels.c1.type": "kafka", "a1.channels.c1.kafka.bootstrap.servers": BROKERS, "a1.channels.c1.kafka.topic": chan,
        "a1.channels.c1.kafka.consumer.group.id": "g-" + chan,
        "a1.sinks.k1.type": "kafka", "a1.sinks.k1.channel": "c1", "a1.sinks.k1.kafka.bootstrap.servers": BROKERS,
        "a1.sinks.k1.kafka.topic": out, "a1.sinks.k1.useFlumeEventFormat": "true",
    }
    p = agent("a1", write_config(tmp_path, cfg))
    msgs = read_topic(out, n + 1, timeout=90)
    assert p.stop(timeout=60) == 0, p.stderr
    assert "not in Flume event format (useFlumeEventFormat) kept whole as the body" in p.stderr, p.stderr
    events = {}
    for m in msgs:
        e = fastavro.schemaless_reader(io.BytesIO(m.value()), SCHEMA)
        events[e["body"]] = (e["headers"], m.key())
    assert len(events) == n + 1
    bad_headers, bad_key = events.pop(NOT_AN_EVENT)
    assert bad_key == b"bad" and set(bad_headers) == {"from", "partition", "offset", "timestamp", "key"}
    assert int(bad_headers["offset"]) == 151
    for i in range(n):
        h, key = events[b"body-%d" % i]
        assert h["h"] == "v%d" % i and h["uni"] == "\u00e9\u2603" and h["from"] == feed and h["partition"] == "0"
        assert h["offset"] == str(i if i <= 150 else i + 1)          # ours win
        assert int(h["timestamp"]) > 0
        want_key = "their-key-%d" % i if i % 3 == 0 else "k%d" % i    # theirs only where the message has no key
        assert h["key"] == want_key and key == want_key.encode()
    # what the channel holds is AvroFlumeEvents too, with the same headers
    held = read_topic(chan, n + 1)
    first = fastavro.schemaless_reader(io.BytesIO(held[0].value()), SCHEMA)
    assert first["body"] == b"body-0" and first["headers"]["h"] == "v0" and first["headers"]["from"] == feed
