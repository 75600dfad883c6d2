"""Values for a table's columns, from JSON (as `kafkaout.json_default` writes them) or from
Arrow (as pyarrow's to_pylist gives them), checked against the reflected column type.

`column_converter(column, dialect)` returns a function value -> value that raises
ValueError with a reason naming the column when the value can't be stored exactly:

column (python_type): accepted
- int: int, bool (0/1), an integral float or decimal, a string of digits; within the column's
  range (TINYINT .. BIGINT, UNSIGNED)
- Decimal: int, Decimal, float, decimal text; rejected if it has more decimal places than the
  scale or more digits than the precision allows (never rounded)
- float: any number or number text
- bool: true/false, 0/1, "true"/"false"
- str: text (length checked; no NUL on PostgreSQL), numbers as their text, JSON objects/arrays
  as JSON text
- MySQL TIME: a duration: timedelta, microseconds (int), a time of day, or [-]H:MM:SS[.ffffff]
- date, datetime, time: the objects, or ISO 8601 text; fractions of a second the column can't
  keep are rejected; a datetime with an offset goes to a column without time zone as UTC, a
  naive one to a column with a time zone is taken as UTC
- timedelta: microseconds (int), as the import writes durations
- bytes: bytes, or base64 text
- UUID: UUID or its text
- dict (JSON): any JSON value
- anything else: passed to the driver as is

None into a NOT NULL column is rejected.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import decimal
import json
import re
import uuid
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

_UTC = dt.timezone.utc
_EXACT = decimal.Context(prec=decimal.MAX_PREC, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)
_INT_TEXT = re.compile(r"\s*[+-]?\d+\s*\Z")


def show(value, limit: int = 40) -> str:
    """A value as it looks in JSON, shortened, for a reason."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except ValueError:
        text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _int(v, t):
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, (Decimal, float)) and v == v and v not in (float("inf"), float("-inf")) and int(v) == v:
        return int(v)
    if isinstance(v, str) and _INT_TEXT.match(v):
        return int(v)
    raise ValueError("expected an integer, got %s" % show(v))


def _decimal(v, t):
    if isinstance(v, (int, Decimal)) and not isinstance(v, bool):
        d = Decimal(v)
    elif isinstance(v, float):
        d = Decimal(repr(v))
    elif isinstance(v, str):
        try:
            d = Decimal(v.strip())
        except decimal.InvalidOperation:
            raise ValueError("expected a decimal number, got %s" % show(v)) from None
    else:
        raise ValueError("expected a decimal number, got %s" % show(v))
    if not d.is_finite():
        return d                     # NaN/Infinity: the database says whether it keeps them
    scale, precision = getattr(t, "scale", None), getattr(t, "precision", None)
    if scale is not None:
        shifted = d.scaleb(scale, _EXACT)
        if shifted != shifted.to_integral_value():
            raise ValueError("%s has more than %d decimal places (it would be rounded)" % (d, scale))
    if precision is not None and d != 0 and d.adjusted() + 1 > precision - (scale or 0):
        raise ValueError("%s does not fit NUMERIC(%d, %d)" % (d, precision, scale or 0))
    return d


def _float(v, t):
    if isinstance(v, bool) or not isinstance(v, (int, float, Decimal, str)):
        raise ValueError("expected a number, got %s" % show(v))
    try:
        return float(v)
    except ValueError:
        raise ValueError("expected a number, got %s" % show(v)) from None


def _bool(v, t):
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in ("true", "false"):
        return v.strip().lower() == "true"
    raise ValueError("expected true or false, got %s" % show(v))


def _str(v, t):
    if isinstance(v, str):
        s = v
    elif isinstance(v, (int, float, Decimal)) and not isinstance(v, bool):
        s = str(v)
    elif isinstance(v, (dict, list)):
        s = json.dumps(v, ensure_ascii=False, default=str)
    else:
        raise ValueError("expected text, got %s" % show(v))
    length = getattr(t, "length", None)
    # ENUM and SET: the server checks the members (a SET's "length" is its longest member's)
    if length is not None and not isinstance(t, (sa.Enum, mysql.SET)) and len(s) > length:
        raise ValueError("%d characters do not fit %d" % (len(s), length))
    return s


def _fraction_check(v, digits: int | None):
    if digits is not None and digits < 6 and v.microsecond % 10 ** (6 - digits):
        raise ValueError("%s has more fractional second digits than the column keeps (%d)" % (v.isoformat(), digits))
    return v


def _parse(kind, v, what: str):
    if isinstance(v, str):
        text = v.strip()
        if text[-1:] in ("Z", "z") and kind is not dt.date:
            text = text[:-1] + "+00:00"          # Python 3.10's fromisoformat has no Z
        try:
            return kind.fromisoformat(text)
        except ValueError:
            pass
    raise ValueError("expected an ISO 8601 %s, got %s" % (what, show(v)))


def _date(v, t):
    if isinstance(v, dt.date) and not isinstance(v, dt.datetime):
        return v
    return _parse(dt.date, v, "date")


def _datetime(v, t, digits=None):
    if not isinstance(v, dt.datetime):
        v = dt.datetime.combine(v, dt.time()) if isinstance(v, dt.date) else _parse(dt.datetime, v, "timestamp")
    if getattr(t, "timezone", False):
        if v.tzinfo is None:
            v = v.replace(tzinfo=_UTC)
    elif v.tzinfo is not None:
        v = v.astimezone(_UTC).replace(tzinfo=None)
    return _fraction_check(v, digits)


def _time(v, t, digits=None):
    return _fraction_check(v if isinstance(v, dt.time) else _parse(dt.time, v, "time"), digits)


def _interval(v, t):
    if isinstance(v, dt.timedelta):
        return v
    if isinstance(v, int) and not isinstance(v, bool):
        return dt.timedelta(microseconds=v)
    raise ValueError("expected a duration in microseconds, got %s" % show(v))


_MYSQL_TIME = re.compile(r"\s*(-?)(\d+):(\d\d):(\d\d)(?:\.(\d{1,6}))?\s*\Z")


def _mysql_time(v, t, digits=None):
    """MySQL's TIME is a duration (-838:59:59 .. 838:59:59): a timedelta, microseconds,
    a time of day, or [-]H:MM:SS[.ffffff] text."""
    if isinstance(v, dt.time):
        v = dt.timedelta(hours=v.hour, minutes=v.minute, seconds=v.second, microseconds=v.microsecond)
    elif isinstance(v, str):
        m = _MYSQL_TIME.match(v)
        if not m:
            raise ValueError("expected a MySQL TIME ([-]H:MM:SS[.ffffff]), got %s" % show(v))
        sign, h, mi, sec, frac = m.groups()
        v = dt.timedelta(hours=int(h), minutes=int(mi), seconds=int(sec), microseconds=int((frac or "0").ljust(6, "0")))
        v = -v if sign else v
    else:
        v = _interval(v, t)
    if digits is not None and digits < 6 and v.microseconds % 10 ** (6 - digits):
        raise ValueError("%s has more fractional second digits than the column keeps (%d)" % (v, digits))
    return v


def _bytes(v, t):
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v)
    if isinstance(v, str):
        try:
            return base64.b64decode(v, validate=True)
        except binascii.Error:
            pass
    raise ValueError("expected base64 text, got %s" % show(v))


def _uuid(v, t):
    if isinstance(v, uuid.UUID):
        return v
    try:
        return uuid.UUID(v) if isinstance(v, str) else uuid.UUID(bytes=bytes(v))
    except (ValueError, TypeError):
        raise ValueError("expected a UUID, got %s" % show(v)) from None


def _plain_json(v):
    """json.loads(parse_float=Decimal) values back to what a JSON column's serializer takes."""
    if isinstance(v, Decimal):
        return int(v) if v == v.to_integral_value() else float(v)
    if isinstance(v, dict):
        return {k: _plain_json(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain_json(x) for x in v]
    return v


def _json(v, t):
    return _plain_json(v)


def _as_is(v, t):
    return v


_BY_PYTHON_TYPE = {
    int: _int, Decimal: _decimal, float: _float, bool: _bool, str: _str, dt.date: _date,
    dt.datetime: _datetime, dt.time: _time, dt.timedelta: _interval, bytes: _bytes, uuid.UUID: _uuid, dict: _json,
}


_INT_BITS = {"TINYINT": 8, "SMALLINT": 16, "MEDIUMINT": 24, "BIGINT": 64}


def integer_range(t, dialect: str) -> tuple[int, int] | None:
    """The values an integer column holds (SQLite's integers are all 64-bit), or None."""
    if not isinstance(t, sa.Integer):
        return None
    if dialect == "sqlite":
        return -2 ** 63, 2 ** 63 - 1
    bits = _INT_BITS.get(type(t).__name__.upper()) or (
        16 if isinstance(t, sa.SmallInteger) else 64 if isinstance(t, sa.BigInteger) else 32)
    if getattr(t, "unsigned", False):
        return 0, 2 ** bits - 1
    return -2 ** (bits - 1), 2 ** (bits - 1) - 1


def _ranged(fn, lo: int, hi: int):
    def check(v, t):
        v = fn(v, t)
        if not lo <= v <= hi:
            raise ValueError("%d is out of range for the column (%d..%d)" % (v, lo, hi))
        return v
    return check


def _no_nul(fn):
    def check(v, t):
        v = fn(v, t)
        if "\x00" in v:
            raise ValueError("PostgreSQL text can't hold a NUL character (at %d)" % v.index("\x00"))
        return v
    return check


def fraction_digits(t, dialect: str) -> int | None:
    """Digits of a second a time/timestamp column keeps, where the dialect says."""
    if dialect in ("mysql", "mariadb"):
        return getattr(t, "fsp", None) or 0
    if dialect == "postgresql":
        return getattr(t, "precision", None)
    return None


def column_converter(column: sa.Column, dialect: str, label: str):
    """value -> value for `column` (label: `table.column`, for reasons); raises ValueError."""
    t = column.type
    try:
        kind = t.python_type
    except NotImplementedError:
        kind = None
    fn = _BY_PYTHON_TYPE.get(kind, _as_is)
    if kind is dt.time and dialect in ("mysql", "mariadb"):
        fn = _mysql_time
    limits = integer_range(t, dialect) if kind is int else None
    if limits:
        fn = _ranged(fn, *limits)
    if kind is str and dialect == "postgresql":
        fn = _no_nul(fn)
    if kind in (dt.datetime, dt.time):
        digits = fraction_digits(t, dialect)
        base = fn
        fn = lambda v, t: base(v, t, digits)   # noqa: E731
    nullable = column.nullable

    def convert(v):
        if v is None:
            if not nullable:
                raise ValueError("column %s: NULL into a NOT NULL column" % label)
            return None
        try:
            return fn(v, t)
        except (ValueError, TypeError, ArithmeticError) as exc:
            raise ValueError("column %s: %s" % (label, exc)) from None
    return convert
