"""Splitting a table into ranges of --split-by for parallel readers.

Two plans:
  * minmax (Sqoop's): MIN and MAX of the key, cut into equal ranges; integer, decimal,
    float, date and timestamp keys;
  * quantile: boundaries at the key's quantiles (`NTILE` over the sorted key, one query),
    so skewed keys still give splits of equal row counts; any orderable key, text too.
Rows whose key is NULL go to the first split.
"""
from __future__ import annotations

import datetime
import decimal
from dataclasses import dataclass
from typing import Any

_EPOCH = datetime.datetime(1970, 1, 1)


@dataclass(frozen=True)
class Split:
    index: int
    lo: Any             # inclusive lower bound (None: no lower bound)
    hi: Any             # exclusive upper bound, or inclusive when last
    last: bool          # hi is inclusive, and NULL keys belong to this split
    # False: only rows inside the bounds (--boundary-query, as Sqoop); a split without bounds
    # then reads the NULL keys only (the bounds were NULL)
    nulls: bool = True

    @property
    def everything(self) -> bool:
        """The split reads every row (no condition)."""
        return self.lo is None and self.hi is None and self.nulls

    def where(self, column: str) -> tuple[str, dict]:
        """A SQL condition for this split and its bind parameters."""
        if self.lo is None and self.hi is None:
            return ("1 = 1" if self.nulls else "%s IS NULL" % column), {}
        cond = "%s >= :lo AND %s %s :hi" % (column, column, "<=" if self.last else "<")
        if self.index == 0 and self.nulls:
            cond = "(%s) OR %s IS NULL" % (cond, column)
        return cond, {"lo": self.lo, "hi": self.hi}


def splits_from_bounds(bounds: list) -> list[Split]:
    """Splits [b0, b1), [b1, b2), ..., [b(k-1), bk] from ascending bounds (duplicates dropped)."""
    b: list = []
    for v in bounds:
        if not b or v > b[-1]:
            b.append(v)
    if len(b) == 1:
        return [Split(0, b[0], b[0], True)]
    return [Split(i, b[i], b[i + 1], i == len(b) - 2) for i in range(len(b) - 1)]


def plan_splits(lo, hi, mappers: int) -> list[Split]:
    """Equal ranges covering [lo, hi] in `mappers` parts (fewer if the range is smaller)."""
    if lo is None or hi is None:
        return [Split(0, None, None, True)]
    if isinstance(lo, bool):
        raise TypeError("cannot split on a boolean column")
    if isinstance(lo, int):
        n = max(1, min(mappers, hi - lo + 1))
        size = (hi - lo + 1) / n
        return splits_from_bounds([lo + int(round(i * size)) for i in range(n)] + [hi])
    if isinstance(lo, (float, decimal.Decimal)):
        step = (hi - lo) / mappers
        return splits_from_bounds([lo + step * i for i in range(mappers)] + [hi])
    if isinstance(lo, datetime.datetime):
        tz = lo.tzinfo
        base = datetime.datetime(1970, 1, 1, tzinfo=tz)
        a, b = (lo - base) // datetime.timedelta(microseconds=1), (hi - base) // datetime.timedelta(microseconds=1)
        return [Split(s.index, base + datetime.timedelta(microseconds=s.lo), base + datetime.timedelta(microseconds=s.hi), s.last)
                for s in plan_splits(a, b, mappers)]
    if isinstance(lo, datetime.date):
        return [Split(s.index, datetime.date.fromordinal(s.lo), datetime.date.fromordinal(s.hi), s.last)
                for s in plan_splits(lo.toordinal(), hi.toordinal(), mappers)]
    raise TypeError("min/max splits need an integer, decimal, float, date or timestamp key, not %s "
                    "(use --split-strategy quantile)" % type(lo).__name__)
