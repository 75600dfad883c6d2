"""`import --kafka-topic`: a split's rows as Kafka messages instead of a part file.

Each row is one message (JSON, or Avro binary with the schema of `--as-avrodatafile`), keyed
by `--kafka-key`; `--kafka-format arrow` sends one Arrow IPC stream (schema + one record
batch) per message, batches cut to stay under the broker's message size. close() returns
only when every message is acknowledged (acks=all, idempotent producer), so a split
succeeds only once its rows are in Kafka; a failed delivery, or a failed authentication
(`--kafka-config`'s sasl.* settings), fails the split.
"""
from __future__ import annotations

import io
import json
import logging
import time

import pyarrow as pa

from fastsync.kafkaio import ClientErrors, flush_all, produce

log = logging.getLogger("fastsync.import.kafka")

FORMATS = ("json", "avro", "arrow")
ARROW_MESSAGE_BYTES = 768 * 1024     # under the broker's default message.max.bytes (1 MiB)
FLUSH_TIMEOUT = 600.0


class KafkaDeliveryError(Exception):
    pass


def json_default(v):
    """JSON for what json.dumps doesn't know: decimals as strings (exact), dates and times
    ISO 8601, durations in microseconds, bytes base64."""
    import base64
    import datetime
    import decimal
    if isinstance(v, decimal.Decimal):
        return str(v)
    if isinstance(v, (datetime.date, datetime.time, datetime.datetime)):
        return v.isoformat()
    if isinstance(v, datetime.timedelta):
        return v // datetime.timedelta(microseconds=1)
    if isinstance(v, (bytes, bytearray)):
        return base64.b64encode(v).decode()
    return str(v)


class KafkaWriter:
    def __init__(self, brokers: str, topic: str, schema: pa.Schema, fmt: str = "json", key: str | None = None,
                 config: dict | None = None):
        from confluent_kafka import Producer
        self.topic, self.fmt, self.schema = topic, fmt, schema
        self.key_index = schema.get_field_index(key) if key else -1
        self.failures: list = []
        self.errors = ClientErrors(log, "--kafka-topic %s" % topic)
        self.sent = 0
        self.producer = Producer({
            "acks": "all", "enable.idempotence": True, "linger.ms": 20, **(config or {}), "bootstrap.servers": brokers,
            "delivery.report.only.error": True, "on_delivery": self._on_delivery, "error_cb": self.errors})
        if fmt == "avro":
            from fastsync.transfer.avrofile import AvroRecords
            self.avro = AvroRecords(schema)

    def _on_delivery(self, err, msg) -> None:
        if err is not None:
            self.failures.append(err)

    def _produce(self, value: bytes, key: bytes | None) -> None:
        produce(self.producer, self.topic, value, key)
        self.sent += 1

    def write_batch(self, batch: pa.RecordBatch) -> None:
        if self.fmt == "arrow":
            per_row = max(1, batch.nbytes // max(1, batch.num_rows))
            step = max(1, ARROW_MESSAGE_BYTES // per_row)
            for start in range(0, batch.num_rows, step):
                sink = io.BytesIO()
                with pa.ipc.new_stream(sink, batch.schema) as w:
                    w.write_batch(batch.slice(start, step))
                self._produce(sink.getvalue(), None)
            return
        keys = None
        if self.key_index >= 0:
            keys = [None if k is None else str(k).encode() for k in batch.column(self.key_index).to_pylist()]
        if self.fmt == "avro":
            values = self.avro.encode(batch)
        else:
            values = [json.dumps(r, ensure_ascii=False, default=json_default).encode() for r in batch.to_pylist()]
        for i, value in enumerate(values):
            self._produce(value, keys[i] if keys else None)
        self.producer.poll(0)

    def close(self) -> None:
        deadline = time.monotonic() + FLUSH_TIMEOUT
        left = flush_all(self.producer, errors=self.errors, until=deadline)
        if left and self.errors.failure:
            raise KafkaDeliveryError("%d of %d messages to topic %s not delivered: %s"
                                     % (left, self.sent, self.topic, self.errors.failure))
        if left:
            raise KafkaDeliveryError("%d of %d messages to topic %s not acknowledged within %gs"
                                     % (left, self.sent, self.topic, FLUSH_TIMEOUT))
        if self.failures:
            raise KafkaDeliveryError("%d of %d messages to topic %s not delivered: %s"
                                     % (len(self.failures), self.sent, self.topic, self.failures[0].str()))
