"""Sqoop 1.4.7's Avro schema and values (`--as-avrodatafile --sqoop-avro-schema`), and
reading what Sqoop wrote (its Avro data files and Kite Parquet datasets) back.

Sqoop's schema (AvroSchemaGenerator): a record named after the table, doc "Sqoop import of
TABLE", every field ["null", T] with default null and the attributes columnName and sqlType
(the java.sql.Types code the JDBC driver reported, as a string), the record's tableName last.
T and the value (AvroUtil.toAvro of the generated class's Java value):

    TINYINT, SMALLINT, INTEGER         int
    BIGINT (also BIGINT UNSIGNED)      long
    REAL / MySQL FLOAT                 float;  DOUBLE: double
    NUMERIC, DECIMAL                   string  (BigDecimal.toPlainString)
    BOOLEAN, BIT, MySQL TINYINT(1)     boolean
    DATE, TIME, TIMESTAMP              long    (java.util.Date.getTime(): milliseconds since
                                                the epoch of the wall clock in the JVM's zone;
                                                a TIME on 1970-01-01; timestamptz its instant)
    MySQL YEAR                         int (sqlType 91)
    binary types                       bytes;  the rest: string

Sqoop's `--as-parquetfile` writes the same schema (Kite: `.metadata/schema.avsc`, and the
`parquet.avro.schema` key of each file's metadata) with the same values.
"""
from __future__ import annotations

import json
import os
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql as pg

from fastsync.rpc.avro_wire import write_bytes, write_long
from fastsync.transfer.textfile import local_zone, sqoop_text

# java.sql.Types
BIT, TINYINT, SMALLINT, INTEGER, BIGINT, REAL, DOUBLE, NUMERIC, DECIMAL = -7, -6, 5, 4, -5, 7, 8, 2, 3
CHAR, VARCHAR, LONGVARCHAR, BINARY, VARBINARY, LONGVARBINARY = 1, 12, -1, -2, -3, -4
DATE, TIME, TIMESTAMP, BOOLEAN, OTHER = 91, 92, 93, 16, 1111


def _sql_type(col: sa.Column, hint: str | None, dialect: str) -> int:
    """The java.sql.Types code PostgreSQL's JDBC driver / Connector/J 5.1 report for a column."""
    t = col.type
    is_mysql = dialect in ("mysql", "mariadb")
    if type(t).__name__ == "MySQLTime":     # typemap's MySQL TIME (read as a duration)
        return TIME
    if hint == "bool" or isinstance(t, sa.Boolean):
        return BIT                      # PostgreSQL's boolean too: its driver says BIT
    if isinstance(t, mysql.YEAR):
        return DATE
    if isinstance(t, mysql.TINYINT):
        return TINYINT
    if isinstance(t, (mysql.MEDIUMINT,)):
        return INTEGER
    if isinstance(t, sa.SmallInteger):
        return SMALLINT
    if isinstance(t, sa.BigInteger):
        return BIGINT
    if isinstance(t, sa.Integer):
        return INTEGER
    if isinstance(t, sa.Float) or isinstance(t, (pg.REAL, pg.DOUBLE_PRECISION)):
        return REAL if hint == "float32" else DOUBLE
    if isinstance(t, sa.Numeric):
        return DECIMAL if is_mysql else NUMERIC
    if isinstance(t, sa.DateTime):
        return TIMESTAMP
    if isinstance(t, sa.Date):
        return DATE
    if isinstance(t, sa.Time):
        return TIME
    if isinstance(t, (mysql.TINYBLOB, mysql.VARBINARY)):
        return VARBINARY
    if isinstance(t, (sa.LargeBinary, mysql.BLOB)) and is_mysql:
        return LONGVARBINARY
    if isinstance(t, mysql.BINARY):
        return BINARY
    if isinstance(t, (sa.LargeBinary, sa.types._Binary)):
        return BINARY                   # PostgreSQL's bytea
    if isinstance(t, (sa.Enum, sa.CHAR)) or isinstance(t, sa.NCHAR):
        return CHAR
    if is_mysql and isinstance(t, (mysql.TEXT, mysql.MEDIUMTEXT, mysql.LONGTEXT, sa.JSON)):
        return LONGVARCHAR
    if isinstance(t, sa.String):
        return VARCHAR
    return OTHER


_AVRO_OF = {TINYINT: "int", SMALLINT: "int", INTEGER: "int", BIGINT: "long", REAL: "float", DOUBLE: "double",
            BIT: "boolean", BOOLEAN: "boolean", DATE: "long", TIME: "long", TIMESTAMP: "long",
            BINARY: "bytes", VARBINARY: "bytes", LONGVARBINARY: "bytes"}


def column_specs(cols, hints, dialect: str) -> list[tuple[int, str, str | None]]:
    """Per column (SQLAlchemy columns, with typemap.sqoop_hints): (sqlType, Avro type, hint)."""
    out = []
    for c, h in zip(cols, hints):
        code = _sql_type(c, h, dialect)
        avro = "int" if isinstance(c.type, mysql.YEAR) else _AVRO_OF.get(code, "string")
        out.append((code, avro, h))
    return out


def _specs_of(schema: pa.Schema, hints) -> list[tuple[int, str, str | None]]:
    """Specs from Arrow types alone (a --query import: no table to reflect)."""
    out = []
    for f, h in zip(schema, hints or [None] * len(schema)):
        t = f.type
        if h == "bool" or pa.types.is_boolean(t):
            out.append((BIT, "boolean", "bool"))
        elif pa.types.is_integer(t):
            out.append((INTEGER, "int", h) if t.bit_width <= 32 else (BIGINT, "long", h))
        elif pa.types.is_floating(t):
            out.append((REAL, "float", h) if h == "float32" or t.bit_width == 32 else (DOUBLE, "double", h))
        elif pa.types.is_decimal(t):
            out.append((NUMERIC, "string", h))
        elif pa.types.is_date(t):
            out.append((DATE, "long", h))
        elif pa.types.is_time(t) or pa.types.is_duration(t):
            out.append((TIME, "long", h))
        elif pa.types.is_timestamp(t):
            out.append((TIMESTAMP, "long", h))
        elif pa.types.is_binary(t) or pa.types.is_large_binary(t):
            out.append((BINARY, "bytes", h))
        else:
            out.append((VARCHAR, "string", h))
    return out


def specs_of_schema(schema: dict) -> list[tuple[int, str, None]]:
    """The (sqlType, Avro type, None) of each field of a Sqoop schema (merge writes it again)."""
    out = []
    for f in schema["fields"]:
        t = f["type"]
        t = next((b for b in t if b != "null"), "string") if isinstance(t, list) else t
        out.append((int(f["sqlType"]), t if isinstance(t, str) else "string", None))
    return out


def identifier(name: str) -> str:
    """Sqoop's AvroUtil.toAvroIdentifier: characters other than letters, digits and _ as _,
    AVRO_ before a name that does not start with a letter or _."""
    out = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return out if re.match(r"[A-Za-z_]", out) else "AVRO_" + out


def schema_json(table: str, names: list[str], specs) -> str:
    """The schema as Sqoop 1.4.7 writes it into the file's header (Avro 1.8's Schema.toString)."""
    name = identifier(table)
    fields = [{"name": identifier(n), "type": ["null", avro], "default": None, "columnName": n, "sqlType": str(code)}
              for n, (code, avro, _) in zip(names, specs)]
    return json.dumps({"type": "record", "name": name, "doc": "Sqoop import of " + name, "fields": fields,
                       "tableName": name}, separators=(",", ":"), ensure_ascii=False)


def _millis_local(col: pa.Array, zone: str) -> pa.Array:
    """A naive timestamp (the wall clock) read in `zone`: milliseconds since the epoch, floored
    as java.sql.Timestamp.getTime() (ambiguous times: the earlier, as Java)."""
    col = col.cast(pa.timestamp("us"))
    aware = pc.assume_timezone(col, zone, ambiguous="earliest", nonexistent="latest")
    return _floor_ms(aware)


def _floor_ms(col: pa.Array) -> pa.Array:
    return _floordiv(col.cast(pa.timestamp("us", col.type.tz), safe=False).view(pa.int64()), 1000)


def _floordiv(a: pa.Array, d: int) -> pa.Array:
    v = a.to_numpy(zero_copy_only=False) if a.null_count == 0 else a.fill_null(0).to_numpy()
    return pa.array(np.floor_divide(v.astype(np.int64), d), pa.int64(), mask=a.is_null().to_numpy(zero_copy_only=False)
                    if a.null_count else None)


def sqoop_column(col: pa.Array, spec, zone: str) -> pa.Array:
    """A column as the Arrow type of its Sqoop Avro value (int32, int64, float32, float64,
    bool, string, binary)."""
    code, avro, hint = spec
    t = col.type
    if pa.types.is_null(t):
        return pa.nulls(len(col), {"int": pa.int32(), "long": pa.int64(), "float": pa.float32(), "double": pa.float64(),
                                   "boolean": pa.bool_(), "bytes": pa.binary()}.get(avro, pa.string()))
    if avro == "boolean":
        return col if pa.types.is_boolean(t) else pc.not_equal(col.cast(pa.int64()), 0)
    if avro == "string":
        return sqoop_text(col, hint, zone).cast(pa.string())
    if avro == "bytes":
        return col.cast(pa.binary())
    if avro in ("float", "double"):
        return col.cast(pa.float32() if avro == "float" else pa.float64())
    if avro in ("int", "long") and code not in (DATE, TIME, TIMESTAMP) or pa.types.is_integer(t):
        return col.cast(pa.int32() if avro == "int" else pa.int64())
    # dates, times and timestamps: java.util.Date.getTime() in the JVM's zone
    if pa.types.is_timestamp(t):
        return _floor_ms(col) if t.tz else _millis_local(col, zone)
    if pa.types.is_date(t):
        return _millis_local(col.cast(pa.date32()).cast(pa.timestamp("s")), zone)
    if pa.types.is_time(t) or pa.types.is_duration(t):
        us = col.cast(pa.time64("us")).view(pa.int64()) if pa.types.is_time(t) else \
            col.cast(pa.duration("us")).view(pa.int64())
        if pa.types.is_duration(t):             # MySQL TIME: java.sql.Time keeps the time of day, seconds
            us = pa.array(np.mod(us.fill_null(0).to_numpy(), 86_400_000_000) // 1_000_000 * 1_000_000,
                          pa.int64(), mask=us.is_null().to_numpy(zero_copy_only=False) if us.null_count else None)
        return _millis_local(us.view(pa.timestamp("us")) if us.type == pa.int64() else us, zone)
    return col.cast(pa.int64())


class SqoopAvroWriter:
    """An Avro data file with Sqoop's schema and values (one block per record batch)."""

    def __init__(self, path, schema: pa.Schema, codec: str, table: str, specs, zone: str | None):
        from fastsync.transfer.avrofile import _CODECS
        self.f = open(path, "wb") if isinstance(path, (str, os.PathLike)) else path
        self.specs = specs if specs and len(specs) == len(schema) and isinstance(specs[0], tuple) \
            else _specs_of(schema, specs)
        self.zone = zone or local_zone()
        self.compress = _CODECS[codec]
        self.sync = os.urandom(16)
        meta = {"avro.schema": schema_json(table, schema.names, self.specs).encode()}
        if codec != "null":
            meta["avro.codec"] = codec.encode()
        self.f.write(b"Obj\x01" + write_long(len(meta)) + b"".join(write_bytes(k.encode()) + write_bytes(v)
                                                                   for k, v in meta.items()) + b"\x00" + self.sync)

    def write_batch(self, batch: pa.RecordBatch) -> None:
        from fastsync._native import avro_interleave
        from fastsync.transfer.avrofile import ColumnEncoder, _fixed_piece
        if not batch.num_rows:
            return
        pieces = []
        for col, spec in zip(batch.columns, self.specs):
            arr = sqoop_column(col, spec, self.zone)
            if spec[1] == "float":          # 4 bytes (ColumnEncoder writes doubles)
                valid = np.asarray(arr.is_valid()) if arr.null_count else None
                branch = np.full(len(arr), 2, np.uint8) if valid is None else np.where(valid, 2, 0).astype(np.uint8)
                pieces += [(branch, np.arange(len(arr) + 1, dtype=np.int64)),
                           _fixed_piece(arr.fill_null(0).to_numpy(zero_copy_only=False).astype(np.float32), 4, valid)]
            else:
                pieces += ColumnEncoder(arr.type).pieces(arr)
        data, _ = avro_interleave(pieces, batch.num_rows)
        block = self.compress(memoryview(data))
        self.f.write(write_long(batch.num_rows) + write_long(len(block)) + block + self.sync)

    def close(self) -> None:
        self.f.close()


# -- reading what Sqoop wrote -------------------------------------------------------------

def is_sqoop_schema(schema) -> bool:
    """A record schema Sqoop wrote: every field has its sqlType."""
    return isinstance(schema, dict) and schema.get("type") == "record" and bool(schema.get("fields")) and all(
        "sqlType" in f for f in schema["fields"])


def parquet_schema(meta: dict | None) -> dict | None:
    """The Sqoop schema of a Kite Parquet file (its `parquet.avro.schema` metadata), or None."""
    raw = (meta or {}).get(b"parquet.avro.schema")
    if raw is None:
        return None
    try:
        schema = json.loads(raw)
    except ValueError:
        return None
    return schema if is_sqoop_schema(schema) else None


def from_sqoop(batch: pa.RecordBatch, schema: dict, zone: str | None, zoned=()) -> pa.RecordBatch:
    """A batch of Sqoop's values (by column name) as fastsync's types: milliseconds of
    DATE / TIME / TIMESTAMP as the wall clock in `zone` (Sqoop's JVM zone: the local zone
    unless --time-zone), date32 / time64 / naive timestamps; strings and the rest as they are
    (a NUMERIC's string is parsed by the target column's converter). `zoned`: columns read
    as the instant (a UTC timestamp), for a target column with a time zone."""
    zone = zone or local_zone()
    codes = {}
    for f in schema["fields"]:
        try:
            codes[f["name"]] = int(f["sqlType"])
        except (TypeError, ValueError):
            pass
    cols = []
    for name, col in zip(batch.schema.names, batch.columns):
        code = codes.get(name)
        if code == TIMESTAMP and name in zoned and pa.types.is_int64(col.type):
            col = col.view(pa.timestamp("ms", "UTC")).cast(pa.timestamp("us", "UTC"))
        elif code in (DATE, TIME, TIMESTAMP) and pa.types.is_integer(col.type) and col.type.bit_width == 64:
            wall = pc.local_timestamp(col.cast(pa.int64()).view(pa.timestamp("ms", "UTC")).cast(pa.timestamp("ms", zone)))
            if code == DATE:
                col = wall.cast(pa.date32())
            elif code == TIME:
                us = wall.cast(pa.timestamp("us")).view(pa.int64())
                col = pa.array(np.mod(us.fill_null(0).to_numpy(), 86_400_000_000), pa.int64(),
                               mask=us.is_null().to_numpy(zero_copy_only=False) if us.null_count else None
                               ).view(pa.time64("us"))
            else:
                col = wall.cast(pa.timestamp("us"))
        cols.append(col)
    return pa.RecordBatch.from_arrays(cols, names=batch.schema.names)
