"""Sqoop's delimited text output (`--as-textfile`): no header, fields and lines terminated
by the given characters, optional enclosing and escaping, NULL written as a chosen string.
Built a whole column at a time with pyarrow.compute, never a row at a time."""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc


@dataclass
class TextOptions:
    fields_terminated_by: str = ","
    lines_terminated_by: str = "\n"
    enclosed_by: str = ""
    optionally_enclosed_by: str = ""
    escaped_by: str = ""
    null_string: str = "null"
    null_non_string: str = "null"
    time_zone: str | None = None      # timestamptz values are written in it (None: the local zone)


def unescape(text: str) -> str:
    """Sqoop's flag values: \\t, \\n, \\r, \\0, \\\\, \\' and \\" and plain characters."""
    return re.sub(r"\\(.)", lambda m: {"t": "\t", "n": "\n", "r": "\r", "0": "\0", "b": "\b"}.get(m.group(1), m.group(1)), text)


def local_zone() -> str:
    """The zone Sqoop's JVM renders timestamptz in: TZ, else the machine's (/etc/localtime), else UTC."""
    tz = os.environ.get("TZ", "").lstrip(":")
    if tz:
        return tz
    try:
        target = os.path.realpath("/etc/localtime")
        if "/zoneinfo/" in target:
            return target.split("/zoneinfo/", 1)[1]
        with open("/etc/timezone", encoding="utf-8") as f:
            return f.read().strip() or "UTC"
    except OSError:
        return "UTC"


# -- values as Sqoop 1.4.7 writes them (its generated class's toString: "" + value) -----------
# Column hints (typemap.sqoop_hints): what the Arrow type alone does not say about the SQL type
# Sqoop's JDBC driver saw: "float32" (REAL, MySQL FLOAT: java.lang.Float), "bool" (MySQL
# TINYINT(1) and BIT(1): Connector/J's Boolean), "numeric" (NUMERIC without precision).

def _hex_table():
    import numpy as np
    return np.frombuffer(b"".join(b"%02x " % i for i in range(256)), dtype=np.uint8).reshape(256, 3)


_HEX_TABLE = _hex_table()


# Java's FloatingDecimal: the decimal digits dropped from an integer-valued float by 2**p2
_INSIGNIFICANT = (0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 8, 8, 8, 9, 9, 9, 9,
                  10, 10, 10, 11, 11, 11, 12, 12, 12, 12, 13, 13, 13, 14, 14, 14, 15, 15, 15, 15, 16, 16, 16, 17, 17,
                  17, 18, 18, 18, 19)


def _java_digits(v: float, single: bool) -> tuple[str, int]:
    """(digits, decimal exponent) of |v| != 0 as Java's FloatingDecimal.dtoa finds them,
    v = 0.DIGITS x 10**exponent: an integer below 2**63 by its exact digits, rounded only past
    the precision of its binary exponent (Java prints 2.03091857E12 for the float
    2.0309186E12); any other value by the shortest digits that read back as v."""
    import numpy as np
    a = abs(v)
    if a == int(a):
        mantissa, exp2 = math.frexp(a)           # a = mantissa * 2**exp2, 0.5 <= mantissa < 1
        bin_exp = exp2 - 1
        significant = 24 if single else 53
        if bin_exp <= 62:
            n = int(a)
            p2 = bin_exp - significant - 1
            drop = _INSIGNIFICANT[p2] if bin_exp > significant and 1 < p2 < len(_INSIGNIFICANT) else 0
            if drop:
                n, rest = divmod(n, 10 ** drop)
                n += rest >= 10 ** drop // 2
            text = str(n)
            return text.rstrip("0") or "0", len(text) + drop
    sci = np.format_float_scientific(np.float32(a) if single else np.float64(a), unique=True)
    mant, exp = sci.split("e")
    return mant.replace(".", "").rstrip("0") or "0", int(exp) + 1


def _java_float(v: float, single: bool) -> str:
    """Java's Double.toString / Float.toString of v (as Java 8 to 17 print it; Java 19's
    shortest-digits algorithm differs for some integers past 10**7)."""
    if v != v:
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "Infinity" if v > 0 else "-Infinity"
    if v == 0:
        return "-0.0" if math.copysign(1, v) < 0 else "0.0"
    sign = "-" if v < 0 else ""
    if abs(v) == (1.401298464324817e-45 if single else 5e-324):
        return sign + ("1.4E-45" if single else "4.9E-324")        # Java's MIN_VALUE, printed with 2 digits
    digits, point = _java_digits(v, single)
    if 0 < point < 8:
        if point >= len(digits):
            return sign + digits + "0" * (point - len(digits)) + ".0"
        return sign + digits[:point] + "." + digits[point:]
    if -3 < point <= 0:
        return sign + "0." + "0" * -point + digits
    return sign + digits[0] + "." + (digits[1:] or "0") + "E" + str(point - 1)


def _floats(col: pa.Array, single: bool) -> pa.Array:
    """Java's toString of every value, whole column: Arrow's shortest text is Java's for
    1e-3 <= |v| < 1e7 and 0 once it has a ".0"; the rest (exponents, NaN, infinities) one by one."""
    if single and not pa.types.is_float32(col.type):
        col = col.cast(pa.float32())                 # REAL read as a double: exact, back to its float
    text = pc.cast(col, pa.string())
    text = pc.if_else(pc.match_substring(text, "."), text, pc.binary_join_element_wise(text, ".0", ""))
    a = pc.abs(col)
    plain = pc.or_(pc.and_(pc.greater_equal(a, 1e-3), pc.less(a, 1e7)), pc.equal(col, 0))
    other = pc.invert(pc.fill_null(plain, True))
    if not pc.any(other).as_py():
        return text
    fixed = pa.array([_java_float(v, single) for v in pc.filter(col, other).to_pylist()], pa.string())
    return pc.replace_with_mask(text, other, fixed)


def _timestamps(col: pa.Array, zone: str | None) -> pa.Array:
    """java.sql.Timestamp.toString: yyyy-mm-dd hh:mm:ss.f, the fraction without trailing
    zeros but at least one digit; a zone-aware value in `zone` (Sqoop: the JVM's zone)."""
    if col.type.tz is not None:
        col = pc.local_timestamp(col.cast(pa.timestamp(col.type.unit, zone or local_zone())))
    if col.type.unit == "s":
        return pc.binary_join_element_wise(pc.cast(col, pa.string()), ".0", "")
    text = pc.replace_substring_regex(pc.cast(col, pa.string()), r"0+$", "")
    return pc.replace_substring_regex(text, r"\.$", ".0")


def _spaced_hex(col: pa.Array) -> pa.Array:
    """Hadoop's BytesWritable.toString: lower-case hex, a space between bytes (3 characters
    a byte from a table, then the last space of each value trimmed)."""
    import numpy as np
    col = col.cast(pa.large_binary())
    offsets = np.frombuffer(col.buffers()[1], dtype=np.int64)[col.offset:col.offset + len(col) + 1]
    data = col.buffers()[2]
    data = np.frombuffer(data, dtype=np.uint8)[offsets[0]:offsets[-1]] if data is not None else np.zeros(0, np.uint8)
    hexed = _HEX_TABLE[data].reshape(-1)
    validity = pc.is_valid(col).buffers()[1] if col.null_count else None
    text = pa.Array.from_buffers(pa.large_string(), len(col), [validity, pa.py_buffer((offsets - offsets[0]) * 3),
                                                                pa.py_buffer(hexed)])
    return pc.utf8_rtrim(text, " ").cast(pa.string())


def _durations(col: pa.Array) -> pa.Array:
    """MySQL's TIME (read as a duration) as java.sql.Time.toString: HH:mm:ss."""
    def hms(us):
        sec = us // 1_000_000
        return "%02d:%02d:%02d" % ((sec // 3600) % 24, sec // 60 % 60, sec % 60)
    return pa.array([None if v is None else hms(v) for v in col.cast(pa.duration("us")).cast(pa.int64()).to_pylist()],
                    pa.string())


def _decimals(col: pa.Array) -> pa.Array:
    """BigDecimal.toPlainString: Arrow's text, but never its exponent form (0E-20, 1E-10)."""
    text = pc.cast(col, pa.string())
    sci = pc.fill_null(pc.match_substring(text, "E"), False)
    if not pc.any(sci).as_py():
        return text
    return pc.replace_with_mask(text, sci, pa.array([format(v, "f") for v in pc.filter(col, sci).to_pylist()], pa.string()))


def _as_text(col: pa.Array) -> pa.Array:
    t = col.type
    if pa.types.is_list(t) or pa.types.is_struct(t):
        return pa.array([None if v is None else str(v) for v in col.to_pylist()], pa.string())
    return pc.cast(col, pa.string())


def sqoop_text(col: pa.Array, hint: str | None = None, zone: str | None = None) -> pa.Array:
    """A column's values as Sqoop 1.4.7's text import writes them (NULL stays NULL)."""
    t = col.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return col
    if hint == "bool" and (pa.types.is_integer(t) or pa.types.is_boolean(t)):
        return pc.if_else(pc.not_equal(col.cast(pa.int64()), 0), "true", "false")
    if pa.types.is_decimal(t):
        text = _decimals(col)
        if hint == "numeric":
            text = pc.replace_substring_regex(text, r"(\.\d*?)0+$", r"\1")
            text = pc.replace_substring_regex(text, r"\.$", "")
        return text
    if pa.types.is_floating(t):
        return _floats(col, hint == "float32" or pa.types.is_float32(t) or pa.types.is_float16(t))
    if pa.types.is_timestamp(t):
        return _timestamps(col, zone)
    if pa.types.is_time(t):                       # java.sql.Time.toString: no fraction
        return pc.utf8_slice_codeunits(pc.cast(col, pa.string()), 0, 8)
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return _spaced_hex(col)
    if pa.types.is_duration(t):
        return _durations(col)
    return _as_text(col)


class TextWriter:
    """Sqoop text: each value as Sqoop writes it (sqoop_text; `hints`: per column, see there),
    NULL as --null-string / --null-non-string, then escaped and enclosed as Sqoop's
    FieldFormatter.escapeAndEnclose does, the NULL string too."""

    def __init__(self, f, schema: pa.Schema, opts: TextOptions, hints: list | None = None):
        self.f = f                 # a binary stream (a file, or a compressing stream)
        self.opts = opts
        self.schema = schema
        self.hints = hints or [None] * len(schema)
        self.zone = opts.time_zone or local_zone()

    def _field(self, col: pa.Array, is_string: bool, hint: str | None) -> pa.Array:
        o = self.opts
        raw = pc.fill_null(sqoop_text(col, hint, self.zone), o.null_string if is_string else o.null_non_string)
        esc, enclose = o.escaped_by, o.enclosed_by or o.optionally_enclosed_by
        text = pc.replace_substring(raw, esc, esc + esc) if esc else raw
        if not enclose:
            # no enclosing: the delimiters inside a value are escaped (when there is an escape)
            for ch in (o.fields_terminated_by, o.lines_terminated_by) if esc else ():
                text = pc.replace_substring(text, ch, esc + ch)
            return text
        if esc:                    # enclosed: only the encloser is escaped, never the delimiters
            text = pc.replace_substring(text, enclose, esc + enclose)
        enclosed = pc.binary_join_element_wise(enclose, text, enclose, "")
        if o.enclosed_by:
            return enclosed
        # --optionally-enclosed-by: only values holding a field or line delimiter are enclosed
        needs = pc.or_(pc.match_substring(raw, o.fields_terminated_by), pc.match_substring(raw, o.lines_terminated_by))
        return pc.if_else(needs, enclosed, text)

    def write_batch(self, batch: pa.RecordBatch) -> None:
        if not len(batch):
            return
        cols = [self._field(c, pa.types.is_string(f.type) or pa.types.is_large_string(f.type), h)
                for c, f, h in zip(batch.columns, batch.schema, self.hints)]
        rows = pc.binary_join_element_wise(*cols, self.opts.fields_terminated_by)
        lines = pc.binary_join_element_wise(rows, "", self.opts.lines_terminated_by)
        lines = lines.cast(pa.large_string()) if len(lines) else lines
        offsets = lines.buffers()[1]
        import numpy as np
        o = np.frombuffer(offsets, dtype=np.int64)[lines.offset:lines.offset + len(lines) + 1]
        self.f.write(memoryview(lines.buffers()[2])[o[0]:o[-1]])

    def close(self) -> None:
        self.f.close()
