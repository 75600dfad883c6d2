"""Splitting a table into ranges of --split-by for parallel readers (Sqoop's min/max plan)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Split:
    index: int
    lo: object          # inclusive lower bound (None: no lower bound)
    hi: object          # exclusive upper bound, or inclusive when last
    last: bool          # hi is inclusive, and NULL keys belong to this split

    def where(self, column: str) -> tuple[str, dict]:
        """A SQL condition for this split and its bind parameters."""
        if self.lo is None and self.hi is None:
            return "1 = 1", {}
        cond = "%s >= :lo AND %s %s :hi" % (column, column, "<=" if self.last else "<")
        if self.index == 0:
            cond = "(%s) OR %s IS NULL" % (cond, column)
        return cond, {"lo": self.lo, "hi": self.hi}


def plan_splits(lo, hi, mappers: int) -> list[Split]:
    """Integer ranges covering [lo, hi] in `mappers` near-equal parts (fewer if the range
    is smaller); rows whose key is NULL go to the first split."""
    if lo is None or hi is None:
        return [Split(0, None, None, True)]
    if not isinstance(lo, int) or not isinstance(hi, int):
        raise TypeError("split column must be an integer column for now, got %s" % type(lo).__name__)
    n = max(1, min(mappers, hi - lo + 1))
    size = (hi - lo + 1) / n
    bounds = [lo + int(round(i * size)) for i in range(n)] + [hi]
    return [Split(i, bounds[i], bounds[i + 1], i == n - 1) for i in range(n)]
