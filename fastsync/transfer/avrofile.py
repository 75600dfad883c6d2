"""Avro data files (`--as-avrodatafile`), written with fastavro: the Arrow schema mapped to
Avro types with logical types (decimal, date, time-micros, timestamp-micros), every field
nullable, one block per record batch."""
from __future__ import annotations

import decimal
import io
import re

import fastavro
import pyarrow as pa


def _avro_type(t: pa.DataType, name: str):
    if pa.types.is_boolean(t):
        return "boolean"
    if t == pa.uint64():
        # Avro has no unsigned 64-bit type: an exact decimal of 20 digits
        return {"type": "bytes", "logicalType": "decimal", "precision": 20, "scale": 0}
    if pa.types.is_integer(t):
        return "int" if t.bit_width <= 32 and pa.types.is_signed_integer(t) else "long"
    if pa.types.is_floating(t):
        return "double"
    if pa.types.is_decimal(t):
        return {"type": "bytes", "logicalType": "decimal", "precision": t.precision, "scale": t.scale}
    if pa.types.is_date(t):
        return {"type": "int", "logicalType": "date"}
    if pa.types.is_time(t):
        return {"type": "long", "logicalType": "time-micros"}
    if pa.types.is_timestamp(t):
        return {"type": "long", "logicalType": "timestamp-micros" if t.tz else "local-timestamp-micros"}
    if pa.types.is_duration(t):
        return "long"            # microseconds
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return "bytes"
    if pa.types.is_list(t):
        return {"type": "array", "items": ["null", _avro_type(t.value_type, name + "_item")]}
    return "string"


def avro_schema(schema: pa.Schema, name: str = "row") -> dict:
    clean = re.sub(r"\W", "_", name) or "row"
    return {"type": "record", "name": clean, "fields": [
        {"name": re.sub(r"\W", "_", f.name), "type": ["null", _avro_type(f.type, f.name)], "default": None} for f in schema]}


_AVRO_LOGICAL = {"date": pa.date32(), "time-micros": pa.time64("us"), "time-millis": pa.time32("ms"),
                 "timestamp-micros": pa.timestamp("us", tz="UTC"), "timestamp-millis": pa.timestamp("ms", tz="UTC"),
                 "local-timestamp-micros": pa.timestamp("us"), "local-timestamp-millis": pa.timestamp("ms")}
_AVRO_PRIMITIVE = {"boolean": pa.bool_(), "int": pa.int32(), "long": pa.int64(), "float": pa.float32(),
                   "double": pa.float64(), "bytes": pa.binary(), "string": pa.string()}


def _arrow_type(t) -> pa.DataType:
    """The Arrow type of an Avro type (the inverse of _avro_type; pa.null() where there is
    none: enums, maps, records, fixed)."""
    if isinstance(t, list):                      # a union: its one non-null branch
        branches = [b for b in t if b != "null"]
        return _arrow_type(branches[0]) if len(branches) == 1 else pa.null()
    if isinstance(t, dict):
        logical = t.get("logicalType")
        if logical == "decimal":
            p, s = t["precision"], t.get("scale", 0)
            return pa.decimal128(p, s) if p <= 38 else pa.decimal256(p, s)
        if logical in _AVRO_LOGICAL:
            return _AVRO_LOGICAL[logical]
        if t.get("type") == "array":
            return pa.list_(_arrow_type(t["items"]))
        return _arrow_type(t.get("type")) if isinstance(t.get("type"), str) else pa.null()
    return _AVRO_PRIMITIVE.get(t, pa.null())


def arrow_schema(schema: dict) -> pa.Schema:
    """The Arrow schema of an Avro record schema (as avro_schema writes them)."""
    return pa.schema([pa.field(f["name"], _arrow_type(f["type"])) for f in schema["fields"]])


class AvroRecords:
    """Arrow record batches as the dicts fastavro writes with avro_schema(schema)."""

    def __init__(self, schema: pa.Schema):
        self.names = [re.sub(r"\W", "_", f.name) for f in schema]
        self.durations = [n for n, f in zip(self.names, schema) if pa.types.is_duration(f.type)]
        self.unsigned = [n for n, f in zip(self.names, schema) if f.type == pa.uint64()]
        self.parsed = fastavro.parse_schema(avro_schema(schema))

    def records(self, batch: pa.RecordBatch):
        keys = batch.schema.names
        for r in batch.to_pylist():
            d = {n: r[k] for n, k in zip(self.names, keys)}
            for n in self.durations:
                if d[n] is not None:
                    d[n] = d[n] // _MICROSECOND
            for n in self.unsigned:
                if d[n] is not None:
                    d[n] = decimal.Decimal(d[n])
            yield d

    def encode(self, batch: pa.RecordBatch) -> list[bytes]:
        """Each row as Avro binary without a container (one Kafka message each)."""
        out = []
        for d in self.records(batch):
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, self.parsed, d)
            out.append(buf.getvalue())
        return out


class AvroWriter:
    def __init__(self, path: str, schema: pa.Schema, codec: str = "null"):
        self.f = open(path, "wb")
        self.rows = AvroRecords(schema)
        self.w = fastavro.write.Writer(self.f, self.rows.parsed, codec=codec)

    def write_batch(self, batch: pa.RecordBatch) -> None:
        for d in self.rows.records(batch):
            self.w.write(d)
        self.w.flush()       # one Avro block per record batch

    def close(self) -> None:
        self.w.flush()
        self.f.close()


import datetime as _dt  # noqa: E402
_MICROSECOND = _dt.timedelta(microseconds=1)
