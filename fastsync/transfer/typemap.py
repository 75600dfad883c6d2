"""The Arrow type each reflected column is written as, and the converter (if any) its
values go through first: one mapping for every reader of an import."""
from __future__ import annotations

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.dialects import postgresql as pg


class MySQLTime(sa.types.TypeDecorator):
    """MySQL's TIME is a duration (-838:59:59 .. 838:59:59): the driver's timedelta is kept,
    not turned into a time of day by SQLAlchemy (which fails past 24 h)."""
    impl = sa.types.NullType
    cache_ok = True


def _json_text(v):
    import json
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _timetz_text(v):
    return v.isoformat()


def _set_text(t):
    order = {m: i for i, m in enumerate(t.values)}
    return lambda v: v if isinstance(v, str) else ",".join(sorted(v, key=lambda m: order.get(m, len(order))))


def column_plan(col: sa.Column):
    """(Arrow type or None to infer, converter for each non-NULL value or None)."""
    t = col.type
    if isinstance(t, sa.ARRAY):
        inner, conv = column_plan(sa.Column("item", t.item_type))
        if inner is None or conv is not None:
            return None, None
        return pa.list_(inner), None
    if isinstance(t, sa.JSON):
        return pa.string(), _json_text          # the document as JSON text, exactly as stored
    if isinstance(t, sa.Uuid):
        return pa.string(), str
    if isinstance(t, (sa.Interval, pg.INTERVAL)):      # PostgreSQL's INTERVAL is no sa.Interval
        return pa.duration("us"), None
    if isinstance(t, sa.Boolean):
        return pa.bool_(), None
    if isinstance(t, mysql.BIT):
        return pa.uint64(), None               # BIT(1..64): the driver's int, up to 2**64 - 1
    if isinstance(t, mysql.SET):
        return pa.string(), _set_text(t)       # the members as MySQL writes them: in definition order, comma-separated
    if isinstance(t, sa.Integer) and getattr(t, "unsigned", False):
        return pa.uint64(), None               # MySQL's BIGINT UNSIGNED goes past int64
    if isinstance(t, sa.SmallInteger):
        return pa.int16(), None
    if isinstance(t, sa.Integer):              # Integer, BigInteger and the dialects' widths
        return pa.int64(), None
    if isinstance(t, sa.Numeric) and not isinstance(t, sa.Float):
        if t.precision is not None:
            p_, s_ = t.precision, t.scale or 0
            return (pa.decimal128(p_, s_) if p_ <= 38 else pa.decimal256(p_, s_)), None
        return None, None
    if isinstance(t, sa.Float):
        return pa.float64(), None
    if isinstance(t, sa.DateTime):
        return pa.timestamp("us", tz="UTC" if t.timezone else None), None
    if isinstance(t, sa.Date):
        return pa.date32(), None
    if isinstance(t, MySQLTime):
        return pa.duration("us"), None
    if isinstance(t, mysql.YEAR):
        return pa.int64(), None                # the driver's int; typed even when a batch is all NULL
    if isinstance(t, sa.Time) and t.timezone:
        return pa.string(), _timetz_text       # no Arrow type keeps a time's UTC offset: ISO text, 12:00:00+05:30
    if isinstance(t, sa.Time):
        return pa.time64("us"), None
    if isinstance(t, (sa.LargeBinary, sa.types._Binary)):
        return pa.binary(), None
    if isinstance(t, sa.String):               # also Enum, Text, CHAR
        return pa.string(), None
    return None, None


def arrow_type(col: sa.Column) -> pa.DataType | None:
    return column_plan(col)[0]


def declared_decimal(t: pa.DataType, d, dialect: str) -> pa.DataType:
    """A decimal column's type from the declared precision and scale the driver describes
    (PostgreSQL's exactly; MySQL's from its display length, which counts the point and a
    sign), not from the sample's values, which later rows may outgrow."""
    length, scale = d[4], d[5]
    if not isinstance(length, int) or not isinstance(scale, int) or scale < 0:
        return t
    p = length if dialect == "postgresql" else length - (1 if scale else 0)
    if not 0 < p <= 76 or scale > p:
        return t
    return pa.decimal128(p, scale) if p <= 38 else pa.decimal256(p, scale)


def prepare(table: sa.Table) -> None:
    """Column types as the import reads them: MySQL's TIME as a duration (MySQLTime)."""
    for c in table.c:
        if isinstance(c.type, sa.Time) and type(c.type).__module__.startswith("sqlalchemy.dialects.mysql"):
            c.type = MySQLTime()


def sqoop_hints(cols) -> list[str | None]:
    """Per column, what Sqoop text needs to know beyond the Arrow type (textfile.sqoop_text):
    "float32" for a single-precision float (PostgreSQL REAL, MySQL FLOAT: Java's Float),
    "bool" for MySQL TINYINT(1) and BIT(1) (Connector/J reads them as Boolean), "numeric" for a NUMERIC without precision
    (BigDecimal.toPlainString of the value as stored; read with a fixed scale, so written
    without the zeros that scale added)."""
    out: list[str | None] = []
    for c in cols:
        t = c.type
        if isinstance(t, (pg.REAL, sa.REAL)) or (isinstance(t, mysql.FLOAT) and (t.precision or 0) <= 24):
            out.append("float32")
        elif (isinstance(t, mysql.TINYINT) and getattr(t, "display_width", None) == 1) or (
                isinstance(t, mysql.BIT) and (t.length or 1) == 1):
            out.append("bool")
        elif isinstance(t, sa.Numeric) and not isinstance(t, sa.Float) and t.precision is None:
            out.append("numeric")           # PostgreSQL's NUMERIC without a scale: read with a fixed one
        else:
            out.append(None)
    return out
