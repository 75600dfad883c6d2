"""Avro data files (`--as-avrodatafile`): the Arrow schema mapped to Avro types with logical
types (decimal, date, time-micros, timestamp-micros), every field nullable, one block per
record batch.

A record batch is encoded column by column with numpy (ColumnEncoder): each column becomes
pieces, per-row byte segments in the Arrow binary layout (the union branch, a varint, the
value bytes ...), and the native interleave puts row i together from every piece's i-th
segment (an Avro record is its fields one after the other). Types without a columnar
encoding go through fastavro, row by row.
"""
from __future__ import annotations

import decimal
import io
import json
import os
import re
import struct
import zlib

import fastavro
import numpy as np
import pyarrow as pa

from fastsync.rpc.avro_wire import write_bytes, write_long


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


def _zigzag_piece(v: np.ndarray, valid: np.ndarray | None = None):
    """Avro longs (zigzag varints) of int64 values: (data, offsets); a row that is not
    `valid` gets no bytes."""
    n = len(v)
    z = ((v << 1) ^ (v >> 63)).view(np.uint64)
    nb = np.ones(n, np.int64)
    for k in range(1, 10):
        more = z >= np.uint64(1 << (7 * k))
        if not more.any():
            break
        nb += more
    if valid is not None:
        nb[~valid] = 0
    width = int(nb.max()) if n else 1
    mat = np.empty((n, width), np.uint8)
    for k in range(width):
        mat[:, k] = ((z >> np.uint64(7 * k)) & np.uint64(0x7F)).astype(np.uint8) | np.where(k < nb - 1, 0x80, 0).astype(np.uint8)
    return _masked_piece(mat, nb)


def _masked_piece(mat: np.ndarray, lengths: np.ndarray):
    """The first lengths[i] bytes of each row of a 2-d uint8 matrix, as a piece."""
    offsets = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    data = mat[np.arange(mat.shape[1]) < lengths[:, None]] if mat.shape[1] else np.zeros(0, np.uint8)
    return data, offsets


def _fixed_piece(values: np.ndarray, width: int, valid: np.ndarray | None):
    """Fixed-width little-endian values (double: 8 bytes, boolean: 1) as a piece."""
    mat = np.ascontiguousarray(values).view(np.uint8).reshape(len(values), width)
    lengths = np.full(len(values), width, np.int64)
    if valid is not None:
        lengths[~valid] = 0
    return _masked_piece(mat, lengths)


def _binary_piece(arr: pa.Array):
    """The data of a binary/string array without nulls as a piece."""
    bufs = arr.buffers()
    width = np.int64 if pa.types.is_large_binary(arr.type) or pa.types.is_large_string(arr.type) else np.int32
    n = len(arr)
    offsets = np.frombuffer(bufs[1], width)[arr.offset:arr.offset + n + 1].astype(np.int64) if n else np.zeros(1, np.int64)
    return (bufs[2] if bufs[2] is not None else b""), offsets


def _decimal_bytes(mat_le: np.ndarray, valid: np.ndarray | None):
    """Two's complement little-endian integers (n x width) as Avro decimal bytes: a length,
    then the shortest big-endian two's complement."""
    be = mat_le[:, ::-1]
    sign = be[:, 0] >> 7
    sign_byte = (sign * 0xFF).astype(np.uint8)
    redundant = (be[:, :-1] == sign_byte[:, None]) & ((be[:, 1:] >> 7) == sign[:, None])
    lead = np.cumprod(redundant, axis=1).sum(axis=1)
    lengths = be.shape[1] - lead
    if valid is not None:
        lengths[~valid] = 0
    # right-align: the kept bytes are the last `lengths` of each row
    idx = np.arange(be.shape[1])
    keep = idx[None, :] >= lead[:, None]
    if valid is not None:
        keep &= valid[:, None]
    data = np.ascontiguousarray(be)[keep]
    offsets = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return [_zigzag_piece(lengths.astype(np.int64), valid), (data, offsets)]


_BRANCH = (np.zeros(1, np.uint8), np.full(1, 2, np.uint8))


class ColumnEncoder:
    """Arrow arrays as the Avro binary of ["null", T] (T = _avro_type), as pieces for
    interleave; None from `for_type` when a type has no columnar encoding here."""

    @classmethod
    def for_type(cls, t: pa.DataType):
        if pa.types.is_dictionary(t):
            return cls(t) if pa.types.is_string(t.value_type) or pa.types.is_large_string(t.value_type) else None
        if pa.types.is_list(t) or pa.types.is_large_list(t):
            return cls(t) if cls.for_type(t.value_type) is not None else None
        simple = (pa.types.is_boolean, pa.types.is_integer, pa.types.is_floating, pa.types.is_decimal, pa.types.is_date,
                  pa.types.is_time, pa.types.is_timestamp, pa.types.is_duration, pa.types.is_binary,
                  pa.types.is_large_binary, pa.types.is_string, pa.types.is_large_string, pa.types.is_null)
        return cls(t) if any(f(t) for f in simple) else None

    def __init__(self, t: pa.DataType):
        self.type = t
        self.item = ColumnEncoder.for_type(t.value_type) if pa.types.is_list(t) or pa.types.is_large_list(t) else None

    def pieces(self, arr: pa.Array) -> list:
        n = len(arr)
        valid = None
        if arr.null_count:
            valid = np.asarray(arr.is_valid())
        branch = np.full(n, 2, np.uint8) if valid is None else np.where(valid, 2, 0).astype(np.uint8)
        out = [(branch, np.arange(n + 1, dtype=np.int64))]
        if not pa.types.is_null(self.type) and n:
            out += self._values(arr, valid)
        return out

    def _values(self, arr: pa.Array, valid):
        t = self.type
        if pa.types.is_dictionary(t):
            arr, t = arr.dictionary_decode(), t.value_type
        if pa.types.is_boolean(t):
            return [_fixed_piece(arr.fill_null(False).to_numpy(zero_copy_only=False).astype(np.uint8), 1, valid)]
        if t == pa.uint64():
            le = np.zeros((len(arr), 9), np.uint8)
            le[:, :8] = np.ascontiguousarray(arr.fill_null(0).to_numpy()).view(np.uint8).reshape(-1, 8)
            return _decimal_bytes(le, valid)
        if pa.types.is_integer(t) or pa.types.is_date(t) or pa.types.is_time(t) or pa.types.is_timestamp(t) \
                or pa.types.is_duration(t):
            # as days or microseconds, then their integers
            if pa.types.is_date(t):
                arr = arr.cast(pa.date32()).view(pa.int32())
            elif pa.types.is_time(t):
                arr = arr.cast(pa.time64("us")).view(pa.int64())
            elif pa.types.is_timestamp(t):
                arr = arr.cast(pa.timestamp("us", t.tz), safe=False).view(pa.int64())
            elif pa.types.is_duration(t):
                arr = arr.cast(pa.duration("us"), safe=False).view(pa.int64())
            v = arr.cast(pa.int64()).fill_null(0).to_numpy()
            return [_zigzag_piece(v, valid)]
        if pa.types.is_floating(t):
            return [_fixed_piece(arr.cast(pa.float64()).fill_null(0).to_numpy(), 8, valid)]
        if pa.types.is_decimal(t):
            width = t.byte_width
            data = np.frombuffer(arr.buffers()[1], np.uint8)[arr.offset * width:(arr.offset + len(arr)) * width]
            return _decimal_bytes(data.reshape(len(arr), width), valid)
        if pa.types.is_list(t) or pa.types.is_large_list(t):
            return self._lists(arr, valid)
        # bytes and strings: a length, then the bytes
        if valid is not None:
            arr = arr.fill_null(b"" if pa.types.is_binary(t) or pa.types.is_large_binary(t) else "")
        data, offsets = _binary_piece(arr)
        return [_zigzag_piece(np.diff(offsets), valid), (data, offsets)]

    def _lists(self, arr, valid):
        from fastsync._native import avro_interleave
        lengths = arr.value_lengths().fill_null(0).to_numpy().astype(np.int64)
        items = arr.flatten()
        data, item_offsets = avro_interleave(self.item.pieces(items), len(items))
        starts = np.zeros(len(arr) + 1, np.int64)
        np.cumsum(lengths, out=starts[1:])
        ends = np.ones(len(arr), np.int64) if valid is None else valid.astype(np.int64)
        # one block of `count` items (none when empty), then the 0 that ends the array
        return [_zigzag_piece(lengths, lengths > 0),
                (data, np.frombuffer(item_offsets, np.int64)[starts]),
                _masked_piece(np.zeros((len(arr), 1), np.uint8), ends)]


class AvroRecords:
    """Arrow record batches as Avro binary records of avro_schema(schema): columnar where
    every column has a ColumnEncoder, else the dicts fastavro writes."""

    def __init__(self, schema: pa.Schema):
        encoders = [ColumnEncoder.for_type(f.type) for f in schema]
        self.encoders = encoders if all(e is not None for e in encoders) else None
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

    def rows(self, batch: pa.RecordBatch):
        """The batch's rows as Avro binary: (data Buffer, n + 1 int64 offsets Buffer), or
        None when it has a column without a columnar encoding."""
        if self.encoders is None:
            return None
        from fastsync._native import avro_interleave
        pieces = []
        for enc, col in zip(self.encoders, batch.columns):
            pieces += enc.pieces(col)
        return avro_interleave(pieces, batch.num_rows)

    def encode(self, batch: pa.RecordBatch) -> list[bytes]:
        """Each row as Avro binary without a container (one Kafka message each)."""
        rows = self.rows(batch)
        if rows is not None:
            return pa.Array.from_buffers(pa.large_binary(), batch.num_rows, [None, rows[1], rows[0]]).to_pylist()
        out = []
        for d in self.records(batch):
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, self.parsed, d)
            out.append(buf.getvalue())
        return out


def _deflate(block: bytes) -> bytes:
    c = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)    # raw deflate, as Avro's
    return c.compress(block) + c.flush()


def _snappy(block: bytes) -> bytes:
    import cramjam
    return bytes(cramjam.snappy.compress_raw(block)) + struct.pack(">I", zlib.crc32(block) & 0xFFFFFFFF)


_CODECS = {"null": lambda block: block, "deflate": _deflate, "snappy": _snappy}


class AvroWriter:
    """An Avro object container file: the header (magic, schema and codec, sync marker),
    then one block per record batch (row count, byte size, the rows compressed, the sync
    marker). Columnar when AvroRecords can; fastavro's writer otherwise."""

    def __init__(self, path, schema: pa.Schema, codec: str = "null"):
        # a local path, or a binary output stream (another filesystem's file), closed with the writer
        self.f = open(path, "wb") if isinstance(path, (str, os.PathLike)) else path
        self.rows = AvroRecords(schema)
        self.w = None
        if self.rows.encoders is None or codec not in _CODECS:
            self.w = fastavro.write.Writer(self.f, self.rows.parsed, codec=codec)
            return
        self.compress = _CODECS[codec]
        self.sync = os.urandom(16)
        meta = {"avro.schema": json.dumps(avro_schema(schema)).encode(), "avro.codec": codec.encode()}
        self.f.write(b"Obj\x01" + write_long(len(meta)) + b"".join(write_bytes(k.encode()) + write_bytes(v) for k, v in meta.items())
                     + b"\x00" + self.sync)

    def write_batch(self, batch: pa.RecordBatch) -> None:
        if self.w is not None:
            for d in self.rows.records(batch):
                self.w.write(d)
            self.w.flush()       # one Avro block per record batch
            return
        if not batch.num_rows:
            return
        data, _ = self.rows.rows(batch)
        block = self.compress(memoryview(data))
        self.f.write(write_long(batch.num_rows) + write_long(len(block)))
        self.f.write(block)
        self.f.write(self.sync)

    def close(self) -> None:
        if self.w is not None:
            self.w.flush()
        self.f.close()


import datetime as _dt  # noqa: E402
_MICROSECOND = _dt.timedelta(microseconds=1)


class _Field:
    """How decode_block reads one record field and turns it into an Arrow array; None
    from `of` when the field's Avro type has no columnar decoding here."""

    def __init__(self, name: str, kind: int, null_branch: int, avro: str, arrow: pa.DataType):
        self.name, self.kind, self.null_branch, self.avro, self.arrow = name, kind, null_branch, avro, arrow

    @classmethod
    def of(cls, field: dict):
        from fastsync._native import AVRO_KINDS
        t, null_branch = field["type"], -1
        if isinstance(t, list):
            if len(t) == 2 and "null" in t and t[0] != t[1]:
                null_branch = t.index("null")
                t = t[1 - null_branch]
            elif len(t) == 1:
                t = t[0]
            else:
                return None
        arrow = _arrow_type(t)
        if isinstance(t, dict):
            logical = t.get("logicalType")
            if logical is not None and logical not in _AVRO_LOGICAL and logical != "decimal":
                return None
            if logical == "decimal" and t.get("type") != "bytes":
                return None
            t = t.get("type")
        if not isinstance(t, str) or t not in AVRO_KINDS or pa.types.is_null(arrow) and t != "null":
            return None
        return cls(field["name"], AVRO_KINDS[t], null_branch, t, arrow)

    def array(self, n: int, valid, values) -> pa.Array:
        v = np.frombuffer(valid, np.uint8)
        nulls = n - int(np.count_nonzero(v))
        bitmap = pa.py_buffer(np.packbits(v, bitorder="little")) if nulls else None
        t = self.arrow
        if values is None:
            return pa.nulls(n, t)
        if pa.types.is_decimal(t):
            return pa.Array.from_buffers(t, n, [bitmap, _decimal_le(values, n, t.byte_width)], null_count=nulls)
        if self.avro in ("bytes", "string"):
            data, offsets = values
            arr = pa.Array.from_buffers(pa.large_binary() if self.avro == "bytes" else pa.large_string(), n,
                                        [bitmap, offsets, data], null_count=nulls)
            if self.avro == "string":
                arr.validate(full=True)         # Avro strings are UTF-8
            return arr.cast(t)
        if self.avro == "boolean":
            return pa.array(np.frombuffer(values, np.bool_), pa.bool_(), mask=v == 0 if nulls else None)
        phys = {"int": pa.int64(), "long": pa.int64(), "float": pa.float32(), "double": pa.float64()}[self.avro]
        arr = pa.Array.from_buffers(phys, n, [bitmap, values], null_count=nulls)
        if self.avro == "int":
            arr = arr.cast(pa.int32())
        return arr.view(t) if arr.type != t else arr      # dates, times, timestamps: their integers


def _decimal_le(values, n: int, width: int) -> pa.Buffer:
    """Avro decimal bytes (big-endian two's complement, any length up to `width`) as Arrow's
    little-endian fixed-width decimals."""
    data, offsets = values
    offs = np.frombuffer(offsets, np.int64)
    lens = np.diff(offs)
    if n and lens.max() > width:
        raise ValueError("a decimal of %d bytes, more than %d" % (lens.max(), width))
    src = np.frombuffer(data, np.uint8)
    if not len(src):
        return pa.py_buffer(np.zeros(n * width, np.uint8))
    col = np.arange(width)[None, :]
    pad = (width - lens)[:, None]
    idx = np.clip(offs[:-1, None] + col - pad, 0, len(src) - 1)
    negative = (src[np.clip(offs[:-1], 0, len(src) - 1)] >> 7).astype(bool) & (lens > 0)
    be = np.where(col >= pad, src[idx], np.where(negative, 0xFF, 0)[:, None].astype(np.uint8))
    return pa.py_buffer(np.ascontiguousarray(be[:, ::-1]))


def _read_long(fh) -> int:
    shift = acc = 0
    while True:
        b = fh.read(1)
        if not b:
            raise EOFError
        acc |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return (acc >> 1) ^ -(acc & 1)
        shift += 7


def _inflate(block: bytes) -> bytes:
    return zlib.decompress(block, -15)


def _unsnappy(block: bytes) -> bytes:
    import cramjam
    data = bytes(cramjam.snappy.decompress_raw(block[:-4]))
    if struct.pack(">I", zlib.crc32(data) & 0xFFFFFFFF) != block[-4:]:
        raise ValueError("a snappy block whose CRC does not match")
    return data


_DECOMPRESS = {"null": lambda block: block, "deflate": _inflate, "snappy": _unsnappy}


def read_header(fh) -> tuple[dict, str, bytes]:
    """(writer schema, codec, sync marker) of an Avro object container file."""
    if fh.read(4) != b"Obj\x01":
        raise ValueError("not an Avro data file")
    meta = {}
    while True:
        count = _read_long(fh)
        if count == 0:
            break
        if count < 0:
            count = -count
            _read_long(fh)
        for _ in range(count):
            key = fh.read(_read_long(fh)).decode()
            meta[key] = fh.read(_read_long(fh))
    return json.loads(meta["avro.schema"]), meta.get("avro.codec", b"null").decode(), fh.read(16)


def columnar_batches(path: str, columns: list[str], batch_rows: int, opener=None):
    """Record batches of `columns` (every one a field of the file) of an Avro data file,
    decoded a block at a time natively; None when the file's schema or codec has no
    columnar decoding here (read it with fastavro). `opener()`: the file opened for reading
    as a buffered binary file (another filesystem's), else `path` is opened."""
    opener = opener or (lambda: open(path, "rb", buffering=1 << 20))
    with opener() as fh:
        schema, codec, _ = read_header(fh)
    if not isinstance(schema, dict) or schema.get("type") != "record" or codec not in _DECOMPRESS:
        return None
    fields = [_Field.of(f) for f in schema["fields"]]
    if any(f is None for f in fields) or not set(columns) <= {f.name for f in fields}:
        return None
    return _columnar(opener, fields, columns, batch_rows, _DECOMPRESS[codec])


def _columnar(opener, fields, columns, batch_rows, decompress):
    from fastsync._native import avro_decode_block
    kinds = [f.kind for f in fields]
    nulls = [f.null_branch for f in fields]
    wanted = [i for c in columns for i, f in enumerate(fields) if f.name == c]
    held, rows = [], 0
    with opener() as fh:
        _, _, sync = read_header(fh)
        while True:
            try:
                count = _read_long(fh)
            except EOFError:
                break
            size = _read_long(fh)
            block = fh.read(size)
            if len(block) != size or fh.read(16) != sync:
                raise ValueError("a block cut short or without its sync marker (a damaged file)")
            cols = avro_decode_block(decompress(block), count, kinds, nulls)
            held.append(pa.RecordBatch.from_arrays([fields[i].array(count, *cols[i]) for i in wanted], names=columns))
            rows += count
            if rows >= batch_rows:
                yield _joined(held)
                held, rows = [], 0
    if held:
        yield _joined(held)


def _joined(batches: list) -> pa.RecordBatch:
    if len(batches) == 1:
        return batches[0]
    return pa.concat_batches(batches)
