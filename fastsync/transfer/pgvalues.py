"""PostgreSQL values the generic import path reads as the binary COPY path decodes them.

The generic path gets Python values from psycopg (text format) and converts them with
pyarrow. Two of psycopg's loaders do not give the COPY decoder's answer at the edges:
its C interval loader adds the days of years, months and days in 32 bits, so an interval
of millions of years wraps around silently, and its time loader fails the whole fetch on
24:00:00. The loaders here give psycopg's value wherever it is right and, where the Arrow
type cannot hold the value, an OutOfRange marker that the conversion turns into the same
error the COPY path raises (fastsync._pgcopy.OUT_OF_RANGE).
"""
from __future__ import annotations

import datetime

import psycopg
from psycopg.adapt import Loader
from psycopg.types.datetime import IntervalLoader as _PsycopgIntervalLoader

from fastsync._native import INTERVAL_RANGE

_DAY_US = 86_400_000_000


class OutOfRange:
    """Stands for a value whose Arrow type cannot hold it; `what` is a key of OUT_OF_RANGE."""
    __slots__ = ("what",)

    def __init__(self, what: str):
        self.what = what


class IntervalLoader(Loader):
    """psycopg's text interval loader (a year is 365 days, a month 30) in exact integers."""

    def __init__(self, oid, context=None):
        super().__init__(oid, context)
        style = self.connection.pgconn.parameter_status(b"IntervalStyle") if self.connection else b"postgres"
        # other styles: psycopg's own loader, which refuses them
        self._other = _PsycopgIntervalLoader(oid, context) if style != b"postgres" else None

    def load(self, data):
        if self._other is not None:
            return self._other.load(data)
        years, months, days, sign, hours, minutes, seconds = _PsycopgIntervalLoader._re_interval.match(data).groups()
        us = (365 * int(years or 0) + 30 * int(months or 0) + int(days or 0)) * _DAY_US
        if hours:
            whole, _, frac = bytes(seconds).partition(b".")
            t = ((int(hours) * 60 + int(minutes)) * 60 + int(whole)) * 1_000_000 + int(frac.ljust(6, b"0")[:6])
            us += -t if sign == b"-" else t
        if not INTERVAL_RANGE[0] <= us <= INTERVAL_RANGE[1]:
            return OutOfRange("interval")
        return datetime.timedelta(microseconds=us)


class TimeLoader(Loader):
    """psycopg's text time loader, but 24:00:00 (the one time past a Python time) is
    OutOfRange instead of an error that names no column."""

    def __init__(self, oid, context=None):
        super().__init__(oid, context)
        self._time = psycopg.adapters.get_loader(oid, self.format)(oid, context)     # psycopg's own

    def load(self, data):
        return OutOfRange("time") if bytes(data[:2]) == b"24" else self._time.load(data)


def use_loaders(dbapi_conn) -> None:
    """Read interval and time (and their arrays) on this psycopg connection with the
    loaders above."""
    dbapi_conn.adapters.register_loader("interval", IntervalLoader)
    dbapi_conn.adapters.register_loader("time", TimeLoader)


def out_of_range(values) -> str | None:
    """What (a key of OUT_OF_RANGE) makes a column's values unconvertible, if it is one of
    ours: an OutOfRange marker, in an array too, or an array of arrays."""
    for v in values:
        for x in (v if isinstance(v, list) else (v,)):
            if isinstance(x, OutOfRange):
                return x.what
            if isinstance(x, list):
                return "array"
    return None

