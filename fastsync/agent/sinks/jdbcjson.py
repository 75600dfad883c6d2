"""The jdbc sink's columnar reading of JSON bodies: a whole batch parsed by pyarrow.json
with a schema from the table's columns, converted and checked a column at a time by
pyarrow.compute, giving exactly what the per-row converters (fastsync.transfer.sqlvalues)
would give for every row it accepts.

A row it is not sure of (a value a check refuses, a null whose key may or may not be
in the body, a form of text the vectorised parse does not cover) is left to the per-row
path, which accepts it or gives the reason it is refused. A batch pyarrow can't read as a
whole (a malformed body, a number where text is expected, a body over several lines)
goes to the per-row path entirely. Tables with a column of another type (time,
interval, UUID, JSON, ...) are read per row.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from fastsync.transfer.sqlvalues import fraction_digits, integer_range

_NUMBER = r"^[+-]?\d+(\.\d+)?$"
# the ISO 8601 forms datetime.fromisoformat reads that are parsed here; others go per row
_TIMESTAMP = (r"^(?P<date>\d{4}-\d\d-\d\d)[T ](?P<time>(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,6})?)"
              r"(?:(?P<z>[Zz])|(?P<sign>[+-])(?P<oh>[01]\d|2[0-3]):(?P<om>[0-5]\d))?$")
_DATE = r"^\d{4}-\d\d-\d\d$"
_SWITCH = re.compile(r"Column\(/(.+?)\) changed from (?:number to boolean|boolean to number)")
_SIMPLE_NAME = re.compile(r"[A-Za-z0-9_]+\Z")
_MIN_US = int((dt.datetime(1, 1, 1) - dt.datetime(1970, 1, 1)) / dt.timedelta(microseconds=1))
_MAX_US = int((dt.datetime(9999, 12, 31, 23, 59, 59, 999999) - dt.datetime(1970, 1, 1)) / dt.timedelta(microseconds=1))


def _number(a: pa.Array) -> pa.Array:
    """Digits (an optional group that did not match: "", as 0) as int64."""
    return pc.if_else(pc.equal(a, ""), "0", a).cast(pa.int64())


class Parsed:
    """A batch read column by column: `values` (a RecordBatch of converted values, one row
    per event, null where absent or refused), `present` (events x columns, the key is in
    the body), `fast` (events written from `values`) and `slow` (event indices left to the
    per-row path)."""

    def __init__(self, values: pa.RecordBatch, present: np.ndarray, fast: np.ndarray):
        self.values, self.present, self.fast = values, present, fast
        self.slow = np.flatnonzero(~fast)

    def groups(self):
        """(column names, event indices) for the fast rows, one per set of keys present."""
        idx = np.flatnonzero(self.fast)
        if not len(idx):
            return
        keys, inverse = np.unique(self.present[idx], axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        names = self.values.schema.names
        for k, key in enumerate(keys):
            yield [n for n, p in zip(names, key) if p], idx[inverse == k]


class _Column:
    """How one column is read: the type pyarrow parses it as, and convert(array) ->
    (converted array, rows refused by a check)."""

    def __init__(self, column: sa.Column, dialect: str):
        self.name = column.name
        self.nullable = column.nullable
        t = column.type
        self.kind = None
        try:
            kind = t.python_type
        except NotImplementedError:
            return
        self.parse_type = pa.string()
        if isinstance(t, sa.Float) and getattr(t, "scale", None) is None:
            kind = float          # MySQL's DOUBLE reflects as a Float that returns decimals
        if kind is int:
            self.limits = integer_range(t, dialect)
            self.parse_type, self.kind = pa.int64(), "int"
        elif kind is float:
            self.parse_type, self.kind = pa.float64(), "float"
        elif kind is bool:
            self.parse_type, self.kind = pa.bool_(), "bool"
        elif kind is str:
            length = getattr(t, "length", None)
            self.length = None if isinstance(t, (sa.Enum, mysql.SET)) else length
            self.no_nul = dialect == "postgresql"
            self.kind = "str"
        elif kind is Decimal:
            p, s = getattr(t, "precision", None), getattr(t, "scale", None) or 0
            if p is None:
                self.decimal = None                 # any precision: the text is passed on
            elif p <= 76:
                self.decimal = pa.decimal128(p, s) if p <= 38 else pa.decimal256(p, s)
                self.fits = r"^[+-]?0*\d{0,%d}(\.\d{0,%d}0*)?$" % (p - s, s)
            else:
                return
            self.kind = "decimal"
        elif kind is dt.datetime:
            self.digits = fraction_digits(t, dialect)
            self.tz = bool(getattr(t, "timezone", False))
            self.kind = "datetime"
        elif kind is dt.date:
            self.kind = "date"
        elif kind is bytes:
            self.kind = "bytes"

    def convert(self, a: pa.Array) -> tuple[pa.Array, pa.Array | None]:
        return getattr(self, "_" + self.kind)(a)

    def _int(self, a):
        if pa.types.is_boolean(a.type):
            a = a.cast(pa.int64())           # as the per-row converter: true is 1
        if self.limits is None:
            return a, None
        lo, hi = self.limits
        return a, pc.invert(pc.and_(pc.greater_equal(a, lo), pc.less_equal(a, hi)))

    def _float(self, a):
        return a, None

    def _bool(self, a):
        return a, None

    def _str(self, a):
        bad = None
        if self.length is not None:
            bad = pc.greater(pc.utf8_length(a), self.length)
        if self.no_nul:
            nul = pc.match_substring(a, "\x00")
            bad = nul if bad is None else pc.or_(bad, nul)
        return a, bad

    def _decimal(self, a):
        ok = pc.match_substring_regex(a, _NUMBER)
        if self.decimal is None:
            return a, pc.invert(ok)
        ok = pc.and_(ok, pc.match_substring_regex(a, self.fits))
        good = pc.if_else(ok, a, pa.scalar(None, a.type))
        return good.cast(self.decimal), pc.invert(ok)

    def _datetime(self, a):
        ok = pc.and_(pc.match_substring_regex(a, _TIMESTAMP), pc.invert(pc.starts_with(a, "0000")))
        parts = pc.extract_regex(pc.if_else(ok, a, pa.scalar(None, a.type)), _TIMESTAMP)
        local = pc.binary_join_element_wise(pc.struct_field(parts, "date"), pc.struct_field(parts, "time"), "T").cast(pa.timestamp("us"))
        us = local.cast(pa.int64())
        sign = pc.if_else(pc.equal(pc.struct_field(parts, "sign"), "-"), -1, 1)
        minutes = pc.add(pc.multiply(_number(pc.struct_field(parts, "oh")), 60), _number(pc.struct_field(parts, "om")))
        offset = pc.fill_null(pc.multiply(pc.multiply(sign, minutes), 60_000_000), 0)
        us = pc.subtract(us, offset)
        # as UTC it must still be a Python datetime, and keep no digit the column drops
        ok = pc.and_(ok, pc.and_(pc.greater_equal(us, _MIN_US), pc.less_equal(us, _MAX_US)))
        if self.digits is not None and self.digits < 6:
            ok = pc.and_(ok, pc.equal(pc.subtract(us, pc.multiply(pc.divide(us, 10 ** (6 - self.digits)),
                                                                  10 ** (6 - self.digits))), 0))
        us = pc.if_else(ok, us, pa.scalar(None, pa.int64()))
        return us.cast(pa.timestamp("us", tz="UTC" if self.tz else None)), pc.invert(ok)

    def _date(self, a):
        ok = pc.and_(pc.match_substring_regex(a, _DATE), pc.invert(pc.starts_with(a, "0000")))
        return pc.if_else(ok, a, pa.scalar(None, a.type)).cast(pa.date32()), pc.invert(ok)

    def _bytes(self, a):
        # no Arrow kernel decodes base64: the one column read value by value
        out, bad = [], []
        for v in a.to_pylist():
            try:
                out.append(None if v is None else base64.b64decode(v, validate=True))
                bad.append(False)
            except binascii.Error:
                out.append(None)
                bad.append(True)
        return pa.array(out, pa.binary()), pa.array(bad)


class JsonColumns:
    """Reads batches of JSON bodies into the columns `names` of `table` (None when a column
    has a type this does not read: the sink reads per row then)."""

    def __init__(self, table: sa.Table, names: list[str], dialect: str, whitelist: bool, required: list[str]):
        self.columns = [_Column(table.columns[n], dialect) for n in names]
        self.ok = all(c.kind is not None for c in self.columns)
        self.schema = pa.schema([pa.field(c.name, c.parse_type) for c in self.columns]) if self.ok else None
        self.options = pajson.ParseOptions(explicit_schema=self.schema,
                                           unexpected_field_behavior="ignore" if whitelist else "error")
        self.required = set(required)          # upsert keys: a row without one is refused per row
        # a key followed by a colon: in a body with no backslash and no nested object it is a
        # key of the object itself
        self.key_patterns = {c.name: '"%s"[ \t]*:' % c.name
                             for c in self.columns if _SIMPLE_NAME.match(c.name)}

    def _read(self, buf: pa.Buffer) -> pa.Table | None:
        for _ in range(2):
            try:
                return pajson.read_json(pa.BufferReader(buf), parse_options=self.options,
                                        read_options=pajson.ReadOptions(block_size=max(1 << 20, buf.size + 1)))
            except (pa.ArrowException, ValueError) as exc:
                # an integer column sent as true/false (MySQL's BOOLEAN is TINYINT(1)), or
                # back: read it the other way from now on
                m = _SWITCH.search(str(exc))
                k = self.schema.get_field_index(m.group(1)) if m else -1
                if k < 0 or self.columns[k].kind != "int":
                    return None
                c = self.columns[k]
                c.parse_type = pa.bool_() if pa.types.is_integer(c.parse_type) else pa.int64()
                self.schema = self.schema.set(k, pa.field(c.name, c.parse_type))
                self.options.explicit_schema = self.schema
        return None

    def parse(self, batch) -> Parsed | None:
        n = len(batch)
        if not n or not self.ok:
            return None
        start, end = int(batch.offsets[0]), int(batch.offsets[-1])
        raw = np.frombuffer(batch.data, np.uint8, end - start, start)
        if (raw == 10).any() or (raw == 13).any():
            return None                     # a body over several lines: one line per body below
        bodies = batch.bodies()
        try:
            text = bodies.cast(pa.large_string())          # checks UTF-8, as json.loads would
        except pa.ArrowInvalid:
            return None
        # each body one object, so that n rows read are the n bodies
        if not (pc.all(pc.starts_with(text, "{")).as_py() and pc.all(pc.ends_with(text, "}")).as_py()):
            return None
        lines = pc.binary_join_element_wise(text, pa.scalar("", pa.large_string()), pa.scalar("\n", pa.large_string()))
        ends = np.frombuffer(lines.buffers()[1], np.int64, n + 1, lines.offset * 8)
        buf = lines.buffers()[2].slice(int(ends[0]), int(ends[-1] - ends[0]))
        table = self._read(buf)
        if table is None:
            return None
        if table.num_rows != n:
            return None
        slow = np.zeros(n, bool)
        present = np.zeros((n, len(self.columns)), bool)
        simple = None
        values = []
        try:
            for k, c in enumerate(self.columns):
                a = table.column(k).combine_chunks()
                nulls = a.is_null().to_numpy(zero_copy_only=False)
                converted, bad = c.convert(a)
                if bad is not None:
                    slow |= bad.fill_null(False).to_numpy(zero_copy_only=False)
                values.append(converted)
                present[:, k] = ~nulls
                if not nulls.any():
                    continue
                # a null: the key may be absent (the column is left out) or there with null (NULL)
                if simple is None:
                    simple = pc.and_(pc.invert(pc.match_substring(text, "\\")),
                                     pc.equal(pc.count_substring(text, "{"), 1)).to_numpy(zero_copy_only=False)
                pattern = self.key_patterns.get(c.name)
                if pattern is None:
                    slow |= nulls
                    continue
                keyed = pc.match_substring_regex(text, pattern).to_numpy(zero_copy_only=False)
                slow |= nulls & ~simple
                null_present = nulls & keyed
                present[:, k] |= null_present
                if not c.nullable:
                    slow |= null_present        # refused per row: NULL into a NOT NULL column
                if c.name in self.required:
                    slow |= nulls               # an upsert needs its key value
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OverflowError):
            return None                          # e.g. a day 30 of February: per row
        slow |= ~present.any(axis=1)             # no fields to write
        return Parsed(pa.RecordBatch.from_arrays(values, names=[c.name for c in self.columns]), present, ~slow)
