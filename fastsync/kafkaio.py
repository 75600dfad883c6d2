"""What the Kafka sink, source and channel and `import --kafka-topic` share: Flume's
AvroFlumeEvent wire format, librdkafka settings from a component's keys, producing with
back-pressure and waiting for every acknowledgement, and reading consume() results with
the offsets they span."""
from __future__ import annotations

import io
import logging
import threading
import time

FLUSH_STEP = 0.5   # seconds per flush wait, so a stop request is noticed

# Flume's AvroFlumeEvent, the wire format of useFlumeEventFormat / parseAsFlumeEvent
FLUME_EVENT_SCHEMA = {
    "type": "record", "name": "AvroFlumeEvent", "namespace": "org.apache.flume.source.avro",
    "fields": [{"name": "headers", "type": {"type": "map", "values": "string"}}, {"name": "body", "type": "bytes"}],
}
_PARSED = None


def _schema():
    global _PARSED
    if _PARSED is None:
        import fastavro
        _PARSED = fastavro.parse_schema(FLUME_EVENT_SCHEMA)
    return _PARSED


def flume_event_bytes(headers: dict, body: bytes) -> bytes:
    import fastavro
    out = io.BytesIO()
    fastavro.schemaless_writer(out, _schema(), {"headers": headers, "body": body})
    return out.getvalue()


def flume_event_reader():
    """bytes of an AvroFlumeEvent -> {"headers": {...}, "body": bytes}."""
    import fastavro
    schema = _schema()
    return lambda value: fastavro.schemaless_reader(io.BytesIO(value), schema)


def flume_events_batch(values: list):
    """AvroFlumeEvents (message values) as one EventBatch, decoded natively into a bodies
    buffer and a column per header name (no Python object per event); and the indexes of
    the values that are not AvroFlumeEvents: their whole value is the body, without headers."""
    from fastsync._native import decode_flume_events
    data, offsets, names, columns, bad = decode_flume_events(values)
    return flume_columns_batch(data, offsets, names, columns), bad


def flume_columns_batch(data, offsets, names: list, columns: list):
    """The EventBatch of what decode_flume_events / decode_flume_array return: the bodies'
    buffers and one string column per header name (bytes that are not UTF-8 replaced)."""
    import numpy as np
    import pyarrow as pa

    from fastsync.event import EventBatch, as_utf8
    offsets = np.frombuffer(offsets, dtype=np.int64)
    n = len(offsets) - 1
    headers = {}
    for name, (vdata, voffsets, valid, nulls) in zip(names, columns):
        col = pa.Array.from_buffers(pa.string(), n, [valid if nulls else None, voffsets, vdata], null_count=nulls)
        try:
            col.validate(full=True)          # Avro strings are UTF-8; Arrow's must be too
        except pa.ArrowInvalid:
            col = as_utf8(pa.Array.from_buffers(pa.binary(), n, [valid if nulls else None, voffsets, vdata], null_count=nulls))
        headers[name.decode("utf-8", "replace")] = col
    return EventBatch(data, offsets, headers)


def encode_events(batch, flume_format: bool, key_header: str) -> tuple[list, list | None]:
    """A batch's message values (the bodies, or AvroFlumeEvents with the headers) and keys
    (the `key_header` values, or None when no event has one)."""
    from fastsync._native import bodies_list
    keys = batch.header_array(key_header).to_pylist() if key_header in batch.headers else None
    if not flume_format:
        return bodies_list(batch.data, batch.offsets), keys     # half the cost of to_pylist()
    return flume_event_values(batch), keys


def flume_event_values(batch) -> list:
    """The batch's events as AvroFlumeEvent bytes, encoded natively by column."""
    from fastsync._native import bodies_list, encode_flume_events
    data, offsets = encode_flume_events(batch.data, batch.offsets, flume_header_columns(batch))
    return bodies_list(data, offsets)


def flume_header_columns(batch) -> list:
    """A batch's header columns as encode_flume_events takes them: (name, a constant or a
    string column), the all-null ones left out."""
    import pyarrow as pa
    headers = []
    for name, col in batch.headers.items():
        if isinstance(col, str):
            headers.append((name.encode(), col.encode()))
        elif col.null_count < len(col):
            headers.append((name.encode(), col if col.type == pa.string() else col.cast(pa.string())))
    return headers


def client_config(extra: dict, prefix: str, defaults: dict) -> dict:
    """librdkafka settings: our defaults, then every `<prefix>*` key of the component
    (security.protocol, sasl.mechanism, sasl.username, sasl.password, ssl.* ... pass
    through as they are)."""
    conf = dict(defaults)
    for key, value in (extra or {}).items():
        if key.startswith(prefix):
            conf[key[len(prefix):]] = value.strip()
    return conf


def without_secrets(text: str, conf: dict) -> str:
    """`text` (e.g. librdkafka's rejection of a setting) with the value of every password or
    secret setting of `conf` as ***."""
    for key, value in conf.items():
        if ("password" in key or "secret" in key) and isinstance(value, str) and value:
            text = text.replace(value, "***")
    return text


class ClientErrors:
    """librdkafka's error_cb for one client: errors not tied to a message (brokers down,
    authentication failed) are logged, each kind at most once a minute (librdkafka reports
    them at every reconnect); an authentication failure or a fatal error is kept in
    `failure`, so a delivery waiting on the brokers can give up with it instead of waiting
    for message.timeout.ms. librdkafka's texts never include a setting's value."""

    REPEAT = 60.0

    def __init__(self, log: logging.Logger, name: str):
        self.log, self.name = log, name
        self.logged: dict = {}          # error code -> when it was last logged
        self.failure: str | None = None

    def __call__(self, err) -> None:
        from confluent_kafka import KafkaError
        serious = err.fatal() or err.code() in (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED)
        if serious:
            self.failure = err.str()
        now = time.monotonic()
        if now - self.logged.get(err.code(), -self.REPEAT) >= self.REPEAT:
            self.logged[err.code()] = now
            self.log.log(logging.ERROR if serious else logging.WARNING, "%s: Kafka: %s", self.name, err.str())


def produce(producer, topic: str, value, key=None, stopping: threading.Event | None = None, **kw) -> None:
    """producer.produce, waiting while librdkafka's queue is full (BufferError is raised
    again once `stopping` is set)."""
    while True:
        try:
            producer.produce(topic, value, key, **kw)
            return
        except BufferError:
            producer.poll(0.05)
            if stopping is not None and stopping.is_set():
                raise


def flush_all(producer, stopping: threading.Event | None = None, errors: ClientErrors | None = None,
              until: float | None = None) -> int:
    """Wait until every message produced so far is acknowledged (or failed); returns the
    messages still outstanding when `stopping` was set, time.monotonic() passed `until`, or
    `errors` reported an authentication failure (0: all done). After such a failure they
    are purged from librdkafka's queue: the caller sends them again, so they must not also
    go out later."""
    while True:
        left = producer.flush(FLUSH_STEP)
        if left == 0:
            return 0
        if errors is not None and errors.failure:
            producer.purge()
            producer.poll(0)
            return left
        if (stopping is not None and stopping.is_set()) or (until is not None and time.monotonic() >= until):
            return left


def good_messages(got, fail, log: logging.Logger, name: str) -> list:
    """The messages of a consume() that carry no error: a fatal error raises fail(text),
    others (but partition EOF) are logged."""
    from confluent_kafka import KafkaError, Message
    if not any(map(Message.error, got)):      # the usual case, without a Python loop
        return got
    msgs = []
    for m in got:
        err = m.error()
        if err is None:
            msgs.append(m)
        elif err.fatal():
            raise fail("%s: Kafka consumer failed: %s" % (name, err.str()))
        elif err.code() != KafkaError._PARTITION_EOF:
            log.warning("%s: %s", name, err.str())
    return msgs


class Offsets:
    """The first and last offset taken per (topic, partition)."""

    def __init__(self):
        self.first: dict = {}
        self.last: dict = {}

    def add(self, msgs) -> None:
        from confluent_kafka import Message
        self.add_columns(list(map(Message.topic, msgs)), list(map(Message.partition, msgs)), list(map(Message.offset, msgs)))

    def add_columns(self, topics: list, partitions, offsets) -> None:
        """The same from the messages' topics, partitions and offsets (in consumed order)."""
        tps = list(zip(topics, partitions))
        for tp, first in dict(zip(reversed(tps), reversed(offsets))).items():   # the last of reversed wins
            self.first.setdefault(tp, int(first))
        self.last.update((tp, int(o)) for tp, o in dict(zip(tps, offsets)).items())

    def commit(self, consumer) -> None:
        """Commit past the last offsets, synchronously."""
        from confluent_kafka import TopicPartition
        consumer.commit(offsets=[TopicPartition(t, p, o + 1) for (t, p), o in self.last.items()], asynchronous=False)

    def seek_back(self, consumer) -> None:
        """Read again from the first offsets (a partition that moved to another member is
        re-read there, from the committed offset)."""
        from confluent_kafka import TopicPartition
        for (t, p), off in self.first.items():
            try:
                consumer.seek(TopicPartition(t, p, off))
            except Exception:
                pass
