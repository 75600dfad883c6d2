"""Planning an import: the table reflected (or the --query sampled), the --incremental
range, and the splits (plan_splits: min/max of --split-by, or its quantiles). Done once,
by the client; the Plan it returns goes with every split."""
from __future__ import annotations

import dataclasses
import datetime
import math

import pyarrow as pa
import sqlalchemy as sa

from fastsync import dbio
from fastsync.transfer import typemap
from fastsync.transfer.spec import ImportError_, ImportJob, Plan
from fastsync.transfer.splits import Split, plan_splits, splits_from_bounds


def reflect(engine, job: ImportJob) -> tuple[sa.Table, list[sa.Column]]:
    try:
        table = dbio.reflect(engine, job.table)
    except sa.exc.NoSuchTableError:
        raise ImportError_("--table %s: no such table" % job.table) from None
    typemap.prepare(table)
    if job.columns:
        missing = [c for c in job.columns if c not in table.c]
        if missing:
            raise ImportError_("--columns: %s has no column %s" % (job.table, ", ".join(missing)))
        cols = [table.c[c] for c in job.columns]
    else:
        cols = list(table.c)
    return table, cols


def split_column(table: sa.Table, job: ImportJob) -> str | None:
    if job.split_by:
        if job.split_by not in table.c:
            raise ImportError_("--split-by: %s has no column %s" % (job.table, job.split_by))
        return job.split_by
    pk = list(table.primary_key.columns)
    if len(pk) == 1:
        return pk[0].name
    if job.mappers > 1 and not job.autoreset_to_one_mapper:
        raise ImportError_("--table %s has no single-column primary key: give --split-by or use -m 1" % job.table)
    return None


def _coerce(text: str, like):
    """--last-value (text) as the type of the check column's values."""
    import datetime
    import decimal
    try:
        if isinstance(like, bool) or like is None:
            return text
        if isinstance(like, int):
            return int(text)
        if isinstance(like, float):
            return float(text)
        if isinstance(like, decimal.Decimal):
            return decimal.Decimal(text)
        if isinstance(like, datetime.datetime):
            return datetime.datetime.fromisoformat(text)
        if isinstance(like, datetime.date):
            return datetime.date.fromisoformat(text)
    except ValueError:
        raise ImportError_("--last-value %r is not a value of the check column (like %r)" % (text, like)) from None
    return text


def _incremental_bounds(conn, table: sa.Table, job: ImportJob):
    """(last value, new upper bound) for --incremental append, None when not incremental."""
    if not job.incremental:
        return None
    if job.incremental not in ("append", "lastmodified"):
        raise ImportError_("--incremental %s: expected append or lastmodified" % job.incremental)
    if not job.check_column:
        raise ImportError_("--incremental append needs --check-column")
    if job.check_column not in table.c:
        raise ImportError_("--check-column: %s has no column %s" % (job.table, job.check_column))
    q = sa.select(sa.func.max(table.c[job.check_column])).select_from(table)
    if job.where:
        q = q.where(sa.text("(%s)" % job.where))
    upper = conn.execute(q).scalar()
    last = _coerce(job.last_value, upper) if job.last_value is not None else None
    return last, upper


def incremental_where(q, table: sa.Table, job: ImportJob, inc: tuple | None):
    """q with the rows of --incremental's range only (inc: (last value, upper bound))."""
    if inc is None:
        return q
    last, upper = inc
    col = table.c[job.check_column]
    if upper is None:
        return q.where(sa.false())
    q = q.where(col <= upper)
    return q.where(col > last) if last is not None else q


def query_sql(job: ImportJob, cond: str) -> str:
    return job.query.replace("$CONDITIONS", "(%s)" % cond)


def _sample_schema(job: ImportJob, conn) -> tuple[pa.Schema, list[int]]:
    """Column types of a --query, inferred from its first rows, so that every split (an
    empty one too) writes the same schema; and the columns' type oids (PostgreSQL), for the
    binary COPY of each split."""
    res = conn.execute(sa.text("SELECT * FROM (%s) AS fastsync_sample LIMIT 1000" % query_sql(job, "1 = 1")))
    names = list(res.keys())
    description = [tuple(d) for d in res.cursor.description or ()]
    sample = res.fetchall()
    cols = list(zip(*sample)) if sample else [()] * len(names)
    fields = []
    for n, c, d in zip(names, cols, description or [None] * len(names)):
        t = pa.array(list(c)).type if c else pa.string()
        if pa.types.is_decimal(t) and d is not None:
            t = typemap.declared_decimal(t, d, conn.dialect.name)
        fields.append(pa.field(n, t))
    return pa.schema(fields), [d[1] for d in description]


def _plan_query(job: ImportJob, conn) -> Plan:
    schema, oids = _sample_schema(job, conn)
    found = Plan([Split(0, None, None, True)], schema=schema, query_oids=oids)
    if not job.split_by or (job.mappers == 1 and not job.boundary_query and not job.split_limit):
        return found
    q = job.boundary_query or "SELECT MIN(%s), MAX(%s) FROM (%s) AS fastsync_bounds" % (
        job.split_by, job.split_by, query_sql(job, "1 = 1"))
    lo, hi = _bounds(conn, q, job)
    try:
        found.splits = _bounded(plan_splits(lo, hi, _split_count(lo, hi, job)), job)
    except TypeError as exc:
        raise ImportError_("--split-by %s: %s" % (job.split_by, exc)) from None
    return found


def _bounds(conn, q, job: ImportJob):
    if not job.boundary_query:
        return conn.execute(q if not isinstance(q, str) else sa.text(q)).one()
    row = conn.execute(sa.text(job.boundary_query)).first()
    if row is None or len(row) != 2:
        raise ImportError_("--boundary-query must return one row of two columns (the split column's min and max)")
    return row[0], row[1]


def _bounded(splits: list[Split], job: ImportJob) -> list[Split]:
    """With --boundary-query only the rows inside its bounds are read (as Sqoop): no split
    takes the NULL keys, unless both bounds are NULL (then they are all it reads)."""
    if not job.boundary_query:
        return splits
    return [dataclasses.replace(s, nulls=False) for s in splits]


def _split_count(lo, hi, job: ImportJob) -> int:
    """-m, or more splits where --split-limit caps the key values (seconds for date and time
    keys, as Sqoop) a split covers; Sqoop applies it to integer and date/time keys only."""
    n = job.mappers
    if not job.split_limit or lo is None or hi is None or isinstance(lo, bool):
        return n
    if isinstance(lo, int):
        width = hi - lo + 1
    elif isinstance(lo, datetime.datetime):
        width = (hi - lo).total_seconds()
    elif isinstance(lo, datetime.date):
        width = (hi - lo).days * 86400
    else:
        return n
    return max(n, math.ceil(width / job.split_limit))


def _quantile_splits(conn, table: sa.Table, key: sa.Column, job: ImportJob, inc: tuple | None) -> list[Split]:
    """Boundaries at the key's quantiles: the smallest key of each NTILE bucket, and the max."""
    inner = sa.select(key.label("k"), sa.func.ntile(job.mappers).over(order_by=key).label("b")).select_from(table)
    inner = inner.where(key.is_not(None))
    if job.where:
        inner = inner.where(sa.text("(%s)" % job.where))
    inner = incremental_where(inner, table, job, inc).subquery()
    q = sa.select(sa.func.min(inner.c.k), sa.func.max(inner.c.k)).group_by(inner.c.b).order_by(inner.c.b)
    rows = conn.execute(q).all()
    if not rows:
        return [Split(0, None, None, True)]
    return splits_from_bounds([r[0] for r in rows] + [rows[-1][1]])


def check_query(job: ImportJob) -> None:
    """Sqoop's rules for a free-form --query."""
    if "$CONDITIONS" not in job.query:
        raise ImportError_("--query must contain $CONDITIONS (where each split's condition goes)")
    if job.mappers > 1 and not job.split_by:
        raise ImportError_("--query with -m %d needs --split-by (or use -m 1)" % job.mappers)
    if job.incremental:
        raise ImportError_("--incremental works with --table only, so far")


def plan(job: ImportJob) -> Plan:
    """Reflect the table (or sample the --query), find the incremental range and the splits."""
    engine = sa.create_engine(job.url)
    if job.query:
        check_query(job)
        try:
            with engine.connect() as conn:
                return _plan_query(job, conn)
        finally:
            engine.dispose()
    try:
        with engine.connect() as conn:
            table, cols = reflect(engine, job)
            inc = _incremental_bounds(conn, table, job)
            found = Plan([Split(0, None, None, True)], columns=[c.name for c in cols], incremental=inc)
            col = split_column(table, job)
            if col is None and job.boundary_query:
                raise ImportError_("--boundary-query: %s has no single-column primary key: give --split-by, the "
                                   "column its bounds are of" % job.table)
            if col is None or (job.mappers == 1 and not job.boundary_query and not job.split_limit):
                return found
            key = table.c[col]
            if job.split_strategy == "quantile" and not job.boundary_query:
                found.splits = _quantile_splits(conn, table, key, job, inc)
                return found
            q = sa.select(sa.func.min(key), sa.func.max(key)).select_from(table)
            if job.where:
                q = q.where(sa.text("(%s)" % job.where))
            q = incremental_where(q, table, job, inc)
            lo, hi = _bounds(conn, q, job)
            try:
                found.splits = _bounded(plan_splits(lo, hi, _split_count(lo, hi, job)), job)
                return found
            except TypeError as exc:
                if job.allow_text_splitter and isinstance(lo, str) and not job.boundary_query:
                    found.splits = _quantile_splits(conn, table, key, job, inc)     # Sqoop's TextSplitter's stand-in
                    return found
                raise ImportError_("--split-by %s.%s: %s" % (job.table, col, exc)) from None
    finally:
        engine.dispose()


def estimate_rows(job: ImportJob, found: Plan) -> int | None:
    """Rows the import will read, for the ETA (a COUNT(*); None if it fails)."""
    engine = sa.create_engine(job.url)
    try:
        with engine.connect() as conn:
            if job.query:
                q = sa.text("SELECT COUNT(*) FROM (%s) AS fastsync_count" % query_sql(job, "1 = 1"))
            else:
                table, _ = reflect(engine, job)
                q = sa.select(sa.func.count()).select_from(table)
                if job.where:
                    q = q.where(sa.text("(%s)" % job.where))
                q = incremental_where(q, table, job, found.incremental)
            return conn.execute(q).scalar()
    except Exception:
        return None
    finally:
        engine.dispose()
