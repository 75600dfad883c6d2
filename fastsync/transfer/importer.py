"""`fastsync import`: a table (or its --columns / --where) into Parquet or CSV part files.

The plan: min/max of --split-by, one range per mapper (plan_splits). Each split runs in
its own process, streams rows in --fetch-size chunks as Arrow record batches into its part
file under a temporary directory beside the target, and is retried alone on failure
(--retries). Only when every split succeeded is the directory renamed into place and
`_SUCCESS` written: a failed import leaves no output and an existing target untouched.
"""
from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import logging
import multiprocessing
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.dialects import postgresql as pg

from fastsync import dbio
from fastsync.progress import Progress, on_terminal, rate_text
from fastsync.transfer.formats import FileError, Output
from fastsync.transfer.splits import Split, plan_splits, splits_from_bounds
from fastsync.transfer.textfile import TextOptions

log = logging.getLogger("fastsync.import")

_PROGRESS = None     # rows written per split, shared with the forked split processes (on a terminal)


class ImportError_(Exception):
    """An import failed; the message says where (flag, table.column, split)."""


@dataclass
class ImportJob:
    url: sa.engine.URL
    table: str
    target_dir: str
    columns: list[str] | None = None
    where: str | None = None
    split_by: str | None = None
    mappers: int = 4
    fetch_size: int = 10000
    fmt: str = "parquet"
    compression: str | None = None     # --compression-codec; None: snappy for Parquet, none for the rest
    compress: bool = False               # -z: compress text, csv and jsonl (gzip unless a codec is given)
    delete_target_dir: bool = False
    retries: int = 1
    fields_terminated_by: str = ","
    append: bool = False                 # add part files to an existing target
    query: str | None = None             # free-form SELECT containing $CONDITIONS (instead of table)
    boundary_query: str | None = None    # SELECT min, max of the split column (query mode)
    split_strategy: str = "minmax"       # or "quantile"
    incremental: str | None = None       # "append" | "lastmodified": only rows with check_column > last_value
    check_column: str | None = None
    merge_key: str | None = None         # lastmodified: new rows replace the target's rows of the same key
    last_value: str | None = None
    text: TextOptions | None = None      # Sqoop text delimiters, for fmt "text"
    kafka_topic: str | None = None       # rows go to this Kafka topic instead of files
    kafka_brokers: str = "localhost:9092"
    kafka_key: str | None = None         # column whose value keys each message
    kafka_format: str = "json"           # json | avro | arrow
    kafka_config: dict = field(default_factory=dict)    # librdkafka settings (--kafka-config)
    fast_path: bool = True               # native readers where the database has one (else SQLAlchemy's rows)
    extra: dict = field(default_factory=dict)

    def output(self) -> Output:
        """How the part files are written."""
        return Output(self.fmt, self.compression, self.compress, self.text, self.fields_terminated_by)


class _MySQLTime(sa.types.TypeDecorator):
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


def _column_plan(col: sa.Column):
    """(Arrow type or None to infer, converter for each non-NULL value or None)."""
    t = col.type
    if isinstance(t, sa.ARRAY):
        inner, conv = _column_plan(sa.Column("item", t.item_type))
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
    if isinstance(t, _MySQLTime):
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


def _arrow_type(col: sa.Column) -> pa.DataType | None:
    return _column_plan(col)[0]


def _reflect(engine, job: ImportJob) -> tuple[sa.Table, list[sa.Column]]:
    try:
        table = dbio.reflect(engine, job.table)
    except sa.exc.NoSuchTableError:
        raise ImportError_("--table %s: no such table" % job.table) from None
    for c in table.c:
        if isinstance(c.type, sa.Time) and type(c.type).__module__.startswith("sqlalchemy.dialects.mysql"):
            c.type = _MySQLTime()
    if job.columns:
        missing = [c for c in job.columns if c not in table.c]
        if missing:
            raise ImportError_("--columns: %s has no column %s" % (job.table, ", ".join(missing)))
        cols = [table.c[c] for c in job.columns]
    else:
        cols = list(table.c)
    return table, cols


def _split_column(table: sa.Table, job: ImportJob) -> str | None:
    if job.split_by:
        if job.split_by not in table.c:
            raise ImportError_("--split-by: %s has no column %s" % (job.table, job.split_by))
        return job.split_by
    pk = list(table.primary_key.columns)
    if len(pk) == 1:
        return pk[0].name
    if job.mappers > 1:
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


def _incremental_where(q, table: sa.Table, job: ImportJob):
    inc = job.extra.get("incremental")
    if inc is None:
        return q
    last, upper = inc
    col = table.c[job.check_column]
    if upper is None:
        return q.where(sa.false())
    q = q.where(col <= upper)
    return q.where(col > last) if last is not None else q


def _query_sql(job: ImportJob, cond: str) -> str:
    return job.query.replace("$CONDITIONS", "(%s)" % cond)


def _sample_schema(job: ImportJob, conn) -> pa.Schema:
    """Column types of a --query, inferred from its first rows, so that every split (an
    empty one too) writes the same schema."""
    res = conn.execute(sa.text("SELECT * FROM (%s) AS fastsync_sample LIMIT 1000" % _query_sql(job, "1 = 1")))
    names = list(res.keys())
    # the columns' type oids (PostgreSQL), for the binary COPY of each split
    description = [tuple(d) for d in res.cursor.description or ()]
    job.extra["query_oids"] = [d[1] for d in description]
    sample = res.fetchall()
    cols = list(zip(*sample)) if sample else [()] * len(names)
    fields = []
    for n, c, d in zip(names, cols, description or [None] * len(names)):
        t = pa.array(list(c)).type if c else pa.string()
        if pa.types.is_decimal(t) and d is not None:
            t = _declared_decimal(t, d, conn.dialect.name)
        fields.append(pa.field(n, t))
    return pa.schema(fields)


def _declared_decimal(t: pa.DataType, d, dialect: str) -> pa.DataType:
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


def _plan_query(job: ImportJob, conn) -> list[Split]:
    job.extra["schema"] = _sample_schema(job, conn)
    if job.mappers == 1 or not job.split_by:
        return [Split(0, None, None, True)]
    q = job.boundary_query or "SELECT MIN(%s), MAX(%s) FROM (%s) AS fastsync_bounds" % (
        job.split_by, job.split_by, _query_sql(job, "1 = 1"))
    lo, hi = conn.execute(sa.text(q)).one()
    try:
        return plan_splits(lo, hi, job.mappers)
    except TypeError as exc:
        raise ImportError_("--split-by %s: %s" % (job.split_by, exc)) from None


def _quantile_splits(conn, table: sa.Table, key: sa.Column, job: ImportJob) -> list[Split]:
    """Boundaries at the key's quantiles: the smallest key of each NTILE bucket, and the max."""
    inner = sa.select(key.label("k"), sa.func.ntile(job.mappers).over(order_by=key).label("b")).select_from(table)
    inner = inner.where(key.is_not(None))
    if job.where:
        inner = inner.where(sa.text("(%s)" % job.where))
    inner = _incremental_where(inner, table, job).subquery()
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


def plan(job: ImportJob) -> list[Split]:
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
            table, cols = _reflect(engine, job)
            job.extra["column_names"] = [c.name for c in cols]
            job.extra["incremental"] = _incremental_bounds(conn, table, job)
            col = _split_column(table, job)
            if col is None or job.mappers == 1:
                return [Split(0, None, None, True)]
            key = table.c[col]
            if job.split_strategy == "quantile":
                return _quantile_splits(conn, table, key, job)
            q = sa.select(sa.func.min(key), sa.func.max(key)).select_from(table)
            if job.where:
                q = q.where(sa.text("(%s)" % job.where))
            q = _incremental_where(q, table, job)
            lo, hi = conn.execute(q).one()
            try:
                return plan_splits(lo, hi, job.mappers)
            except TypeError as exc:
                raise ImportError_("--split-by %s.%s: %s" % (job.table, col, exc)) from None
    finally:
        engine.dispose()


class _PartSink:
    """One split's part file: opened with the first batch's schema (where `base` gives a
    type, it wins over a first batch's all-NULL column), later batches cast to it; rows
    counted for the progress line."""

    def __init__(self, job: ImportJob, path: str, index: int, base: pa.Schema | None = None):
        self.job, self.path, self.index, self.schema, self.base = job, path, index, base, base
        self.writer = None
        self.rows = 0

    def discard(self) -> None:
        """Drop what was written: the split starts again (another reader)."""
        if self.writer is not None:
            self.writer.close()
            os.unlink(self.path)
        self.writer, self.rows, self.schema = None, 0, self.base
        if _PROGRESS is not None:
            _PROGRESS[self.index] = 0

    def write(self, batch: pa.RecordBatch) -> None:
        if self.writer is None:
            self.schema = batch.schema if self.schema is None else pa.schema(
                [bf if pa.types.is_null(sf.type) else sf for sf, bf in zip(self.schema, batch.schema)])
            self.writer = _open_part(self.job, self.path, self.schema)
        self.writer.write_batch(batch.cast(self.schema) if batch.schema != self.schema else batch)
        self.rows += len(batch)
        if _PROGRESS is not None:
            _PROGRESS[self.index] = self.rows

    def close(self, empty_schema: pa.Schema) -> int:
        """Close (an empty split still gets a part file, with `empty_schema`); rows written."""
        if self.writer is None:
            self.writer = _open_part(self.job, self.path, empty_schema)
        self.writer.close()
        return self.rows


# PostgreSQL result type oid -> (SQL cast or None, CopyDecoder kind, the Arrow type the
# generic path infers from psycopg's values of it; None: any decimal)
_QUERY_COPY = {21: (None, 1, pa.int64()), 23: (None, 2, pa.int64()), 20: (None, 3, pa.int64()),
               700: ("text", 7, pa.float64()),      # real as psycopg reads it: its shortest text
               701: (None, 5, pa.float64()), 1700: ("text", 7, None), 16: (None, 6, pa.bool_()),
               25: (None, 7, pa.string()), 1043: (None, 7, pa.string()), 1042: (None, 7, pa.string()),
               19: (None, 7, pa.string()), 17: (None, 7, pa.binary()), 1082: (None, 8, pa.date32()),
               1114: (None, 9, pa.timestamp("us")), 1184: (None, 9, "tz"), 1083: (None, 10, pa.time64("us")),
               1186: (None, 11, pa.duration("us"))}


def _query_copy_plan(job: ImportJob, schema: pa.Schema | None):
    """(select list, decoder kinds, decode types) for a --query whose every column the
    binary COPY decoder reads into the type the generic path infers, else None."""
    oids = job.extra.get("query_oids") or []
    if schema is None or len(oids) != len(schema) or len(set(schema.names)) != len(schema):
        return None
    exprs, kinds, decode = [], [], []
    for f, oid in zip(schema, oids):
        cast, kind, want = _QUERY_COPY.get(oid, (None, None, False))
        if kind is None or pa.types.is_null(f.type):
            return None
        if not (f.type == want or want is None and pa.types.is_decimal(f.type)
                or want == "tz" and pa.types.is_timestamp(f.type) and f.type.unit == "us" and f.type.tz):
            return None
        name = '"%s"' % f.name.replace('"', '""')
        exprs.append("fastsync_q.%s%s" % (name, "::" + cast if cast else ""))
        kinds.append(kind)
        # what the decoder builds, cast to the sample's type afterwards
        decode.append({1: pa.int16(), 2: pa.int32(), 9: pa.timestamp("us")}.get(kind) or (
            pa.string() if kind == 7 and not pa.types.is_binary(f.type) else f.type))
    return ", ".join(exprs), kinds, decode


def _query_cannot(name: str, detail) -> ImportError_:
    return ImportError_("--query column %s: cannot convert a value: %s" % (name, detail))


def _query_native_split(job: ImportJob, engine, stmt, schema: pa.Schema | None, part: _PartSink) -> int | None:
    """A --query split read by the table path's native readers (PostgreSQL binary COPY,
    MySQL text rows), into the column types the sample gave; None when they can't read
    it exactly as the generic path would (nothing written then)."""
    if not job.fast_path or schema is None:
        return None
    names = schema.names
    if engine.dialect.name == "postgresql":
        plan = _query_copy_plan(job, schema)
        if plan is None:
            return None
        select, kinds, decode = plan
        try:
            sql = str(stmt.compile(dialect=pg.dialect(paramstyle="named"), compile_kwargs={"literal_binds": True}))
        except (sa.exc.CompileError, NotImplementedError):      # a bound value with no literal form
            return None
        sql = "SELECT %s FROM (%s) AS fastsync_q" % (select, sql)
        log.info("--query split %d: binary COPY, decoded natively", part.index)
        return _pg_copy_stream(engine, sql, kinds, decode, list(schema.types), names, part, job, _query_cannot, schema)
    if engine.dialect.driver == "pymysql":
        from fastsync import _mysqlrows as k
        kinds = []
        for t in schema.types:
            kind = (k.UINT if pa.types.is_unsigned_integer(t) else k.INT if pa.types.is_integer(t)
                    else k.DATE if pa.types.is_date32(t) else k.DATETIME if t == pa.timestamp("us")
                    else k.TIME if t == pa.duration("us")
                    else k.TEXT if (pa.types.is_decimal(t) or pa.types.is_floating(t) or pa.types.is_string(t)
                                    or pa.types.is_binary(t)) else None)
            if kind is None:
                return None
            kinds.append(kind)
        n = _mysql_rows_split(engine, stmt, kinds, list(schema.types), names, part, job, _query_cannot, schema)
        if n is not None:
            log.info("--query split %d: read as MySQL text rows, decoded natively", part.index)
        return n
    if engine.dialect.name == "sqlite":
        n, why = _sqlite_arrow_split(job, engine, stmt, names, list(schema.types), part, schema)
        log.info("--query split %d: %s", part.index, "read as Arrow by ADBC's SQLite driver" if n is not None
                 else "generic path (%s)" % why)
        return n
    return None


def _sqlite_path(engine) -> str | None:
    """The database file of a sqlite:/// URL (None: in memory, or options ADBC would not see)."""
    url = engine.url
    if engine.dialect.driver != "pysqlite" or url.query or not url.database or url.database == ":memory:" \
            or url.database.startswith("file:"):
        return None
    return url.database


def _sqlite_arrow_split(job: ImportJob, engine, stmt, names, types, part: _PartSink, empty_schema):
    """(rows, None) when ADBC's SQLite driver read the split as Arrow batches exactly as the
    generic path would (sqliteread), else (None, why) with nothing written."""
    from fastsync.transfer import sqliteread
    path = _sqlite_path(engine)
    why = sqliteread.unfit_type(names, types) if path else "an in-memory database or URL options"
    if job.kafka_topic:      # a split read again (below) would send its first messages twice
        why = "--kafka-topic"
    if why:
        return None, why
    compiled = stmt.compile(dialect=engine.dialect)
    if compiled.literal_execute_params or compiled.post_compile_params:
        return None, "parameters expanded at execution"
    procs = getattr(compiled, "_bind_processors", None) or {}
    values = compiled.construct_params()
    params = [procs[n](values[n]) if n in procs else values[n] for n in compiled.positiontup or ()]
    try:
        for batch in sqliteread.read(path, compiled.string, params, names, types, job.fetch_size):
            part.write(batch)
    except sqliteread.Unfit as exc:
        part.discard()
        return None, "a value the generic path reads: %s" % _one_line(exc)
    return part.close(empty_schema), None


def _run_query_split(job: ImportJob, split: Split, part_path: str) -> int:
    """A --query split: column types come from the values (no table to reflect)."""
    engine = sa.create_engine(job.url)
    cond, params = split.where(job.split_by) if job.split_by else ("1 = 1", {})
    schema = job.extra.get("schema")
    part = _PartSink(job, part_path, split.index, schema)
    try:
        n = _query_native_split(job, engine, sa.text(_query_sql(job, cond)).bindparams(**params), schema, part)
        if n is not None:
            return n
        with engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=job.fetch_size).execute(
                sa.text(_query_sql(job, cond)).bindparams(**params))
            names = list(result.keys())
            for chunk in result.partitions(job.fetch_size):
                columns = list(zip(*chunk))
                arrays = []
                for i, name in enumerate(names):
                    want = schema.field(i).type if schema is not None and not pa.types.is_null(schema.field(i).type) else None
                    try:
                        arrays.append(pa.array(columns[i], type=want))
                    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
                        raise ImportError_("--query column %s: cannot convert a value: %s" % (name, exc)) from None
                part.write(pa.RecordBatch.from_arrays(arrays, names=names))
        return part.close(schema or pa.schema([pa.field(n, pa.string()) for n in names]))
    finally:
        engine.dispose()


def _copy_kind(t):
    """(SQL type to cast to or None, CopyDecoder kind) for a column type the binary COPY
    decoder reads (see ext/fastsync/_pgcopy.pyx), else None."""
    if isinstance(t, sa.Boolean):
        return None, 6
    if isinstance(t, sa.SmallInteger):
        return None, 1
    if isinstance(t, sa.Integer):
        return sa.BigInteger(), 3
    if isinstance(t, sa.Float):
        # real widened to double: past real's precision, not the double of real's shortest
        # text that the generic path reads (arrays of real travel as that text instead)
        return pg.DOUBLE_PRECISION(), 5
    if isinstance(t, sa.Numeric):
        return sa.Text(), 7                             # exact: decimal text, cast to decimal by Arrow
    if isinstance(t, sa.DateTime):
        return None, 9
    if isinstance(t, sa.Date):
        return None, 8
    if isinstance(t, sa.Time):
        return (None, 10) if not t.timezone else None
    if isinstance(t, (sa.Interval, pg.INTERVAL)):
        return None, 11
    if isinstance(t, (sa.LargeBinary, sa.types._Binary)):
        return None, 7
    if isinstance(t, (sa.JSON, sa.Uuid)):
        return sa.Text(), 7                             # json as stored; the generic path re-serialises it
    if isinstance(t, sa.String):
        return None, 7                                  # text, varchar, char (padding kept), enum
    return None


def _sql_type(t, engine) -> str:
    try:
        return str(t.compile(dialect=engine.dialect))
    except sa.exc.CompileError:
        return "of a type SQLAlchemy does not know"


def _pg_copy_plan(engine, cols):
    """([(select expression, decoder kind)], None) when every column has a binary COPY fast
    path, else (None, why not): such tables go through the generic path."""
    from fastsync._native import COPY_ARRAY
    plan = []
    for c in cols:
        t = c.type
        array = isinstance(t, sa.ARRAY)
        # no Arrow type (numeric without precision; arrays of uuid or json): the generic
        # path types such columns from their values, there is no fixed type to decode into
        found = _copy_kind(t.item_type if array else t) if _arrow_type(c) is not None else None
        if found is None:
            return None, "%s is %s" % (c.name, _sql_type(t, engine))
        cast, kind = found
        if array:
            if isinstance(t.item_type, sa.REAL):     # psycopg reads real's shortest text, not a widened double
                cast, kind = sa.Text(), 7
            cast, kind = (pg.ARRAY(cast) if cast is not None else None), COPY_ARRAY | kind
        plan.append((sa.cast(c, cast) if cast is not None else c, kind))
    return plan, None


def _decode_type(kind, t):
    """The Arrow type CopyDecoder builds for a column of `kind` that ends up as t."""
    from fastsync._native import COPY_ARRAY
    if kind & COPY_ARRAY:
        return pa.list_(_decode_type(kind & ~COPY_ARRAY, t.value_type))
    return pa.string() if kind == 7 and not pa.types.is_binary(t) else t


def _cannot_convert(job, name, detail) -> ImportError_:
    return ImportError_("%s.%s: cannot convert a value: %s" % (job.table, name, detail))


def _libpq_path() -> str:
    """The libpq psycopg loaded into this process (its binary wheel bundles one)."""
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1]
            if os.path.basename(path).startswith("libpq") and ".so" in path:
                return path
    raise ImportError_("libpq is not loaded")


def _pg_copy_split(engine, q, plan, known, cols, part, job) -> int:
    """Stream the split with COPY ... TO STDOUT (FORMAT binary), decoded natively."""
    sel = q.with_only_columns(*[expr.label(c.name) for (expr, _), c in zip(plan, cols)])
    # the SQL goes to PQexec as is: compiled for a paramstyle that does not double `%`
    sql = str(sel.compile(dialect=pg.dialect(paramstyle="named"), compile_kwargs={"literal_binds": True}))
    types = [k if k is not None else pa.string() for k in known]
    decode_types = [_decode_type(kind, t) for (_, kind), t in zip(plan, types)]
    return _pg_copy_stream(engine, sql, [kind for _, kind in plan], decode_types, types, [c.name for c in cols], part, job,
                           lambda name, detail: _cannot_convert(job, name, detail),
                           pa.schema([pa.field(c.name, k or pa.string()) for c, k in zip(cols, known)]))


def _pg_copy_stream(engine, sql, kinds, decode_types, types, names, part, job, cannot, empty_schema) -> int:
    """COPY (sql) TO STDOUT (FORMAT binary) decoded natively into `types` (cast from
    `decode_types`), written to `part`; cannot(column, detail) -> the error for a value
    the type can't hold."""
    from fastsync._native import OUT_OF_RANGE, CopyDecoder, CopyOutOfRange, CopyReader
    dec = CopyDecoder(kinds)

    def flush():
        arrays = dec.take(decode_types)
        out = []
        for a, t, name in zip(arrays, types, names):
            try:
                out.append(a if a.type == t else a.cast(t))
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise cannot(name, exc) from None
        part.write(pa.RecordBatch.from_arrays(out, names=names))

    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        # libpq itself pulls the CopyData messages (one per row) in 1 MiB chunks, GIL
        # released, instead of one Python call chain per row through the driver
        reader = CopyReader(raw.pgconn.pgconn_ptr, _libpq_path(), "COPY (%s) TO STDOUT (FORMAT binary)" % sql)
        while True:
            chunk = reader.read(1 << 20)
            if not chunk:
                break
            try:
                dec.feed(chunk)
            except CopyOutOfRange as exc:
                raise cannot(names[exc.column], OUT_OF_RANGE[exc.what]) from None
            if dec.buffered_rows >= job.fetch_size:
                flush()
        if dec.buffered_rows:
            flush()
        if not dec.finished:
            raise ImportError_("%s: the COPY stream ended early" % (job.table or "--query"))
        conn.invalidate()         # libpq was driven beneath psycopg: don't hand it back to a pool
    return part.close(empty_schema)


def _mysql_rows_plan(cols):
    """(decoder kinds, None) when every column's text-protocol value maps to its Arrow type
    natively (see ext/fastsync/_mysqlrows.pyx), else (None, why): such tables go through
    the generic path."""
    from fastsync import _mysqlrows as k
    kinds = []
    for c in cols:
        t, (arrow, conv) = c.type, _column_plan(c)
        if arrow is None or conv is not None or isinstance(t, (sa.Boolean, mysql.SET)):
            return None, "column %s (%s)" % (c.name, t)
        if isinstance(t, (sa.Integer, mysql.YEAR)):
            kinds.append(k.UINT if pa.types.is_unsigned_integer(arrow) else k.INT)
        elif isinstance(t, sa.DateTime):
            kinds.append(k.DATETIME)
        elif isinstance(t, sa.Date):
            kinds.append(k.DATE)
        elif isinstance(t, _MySQLTime):
            kinds.append(k.TIME)
        elif isinstance(t, sa.Float) or isinstance(t, sa.Numeric) and t.asdecimal:
            kinds.append(k.TEXT)                       # decimal or float text, cast exactly by Arrow
        elif isinstance(t, (sa.LargeBinary, sa.types._Binary, sa.String)):
            kinds.append(k.TEXT)                       # char (as the server trims it), varchar, text, enum, blob
        else:
            return None, "column %s (%s)" % (c.name, t)
    return kinds, None


# what each decoder kind accepts of PyMySQL's column definitions (type codes)
_MYSQL_FIELD_TYPES = {"int": {1, 2, 3, 8, 9, 13}, "date": {10}, "datetime": {7, 12}, "time": {11},
                      "decimal": {0, 246}, "float": {4, 5}, "text": {15, 247, 249, 250, 251, 252, 253, 254}}


def _mysql_unfit(raw, fields, kinds, types) -> str | None:
    """Why the result PyMySQL has just started can't be read natively into `types`
    exactly as PyMySQL + pa.array would read it (None when it can)."""
    import pymysql.converters
    from fastsync import _mysqlrows as k
    if len(fields) != len(kinds):
        return "%d columns sent for %d planned" % (len(fields), len(kinds))
    for f, kind, t in zip(fields, kinds, types):
        group = ("int" if kind in (k.INT, k.UINT) else "date" if kind == k.DATE else "datetime" if kind == k.DATETIME
                 else "time" if kind == k.TIME else "decimal" if pa.types.is_decimal(t)
                 else "float" if pa.types.is_floating(t) else "text")
        binary, unsigned = f.charsetnr == 63, bool(f.flags & 32)
        # a signed kind holds every unsigned value but BIGINT's; the unsigned kind no negative one
        sign_unfit = kind == k.UINT and not unsigned or kind == k.INT and unsigned and f.type_code == 8
        if (f.type_code not in _MYSQL_FIELD_TYPES[group] or sign_unfit
                or group == "text" and binary != pa.types.is_binary(t)):
            return "column %s is sent as type %d, charset %d" % (f.name, f.type_code, f.charsetnr)
        if raw.decoders.get(f.type_code) is not pymysql.converters.decoders.get(f.type_code):
            return "column %s has a custom converter" % f.name
    return None


def _mysql_conn_unfit(raw) -> str | None:
    """Why rows can't be read from beneath this PyMySQL connection (None when they can).
    The rows are read from the connection's own buffered reader, above TLS when there is
    TLS; PyMySQL never negotiates compression or DEPRECATE_EOF, checked all the same."""
    from pymysql.constants import CLIENT
    if not all(hasattr(raw, a) for a in ("_rfile", "_next_seq_id", "_result", "decoders", "_read_timeout")):
        return "this PyMySQL version keeps its reader elsewhere"
    if raw.client_flag & (CLIENT.COMPRESS | CLIENT.DEPRECATE_EOF):
        return "compressed protocol or DEPRECATE_EOF"
    if not raw.use_unicode or raw.encoding.replace("-", "").lower() != "utf8":
        return "connection charset %s" % raw.charset
    return None


def _mysql_batches(raw, kinds, types, names, fetch_size):
    """The rows of the result PyMySQL's `raw` connection has just started (query sent,
    column definitions read, rows unread), read from its socket reader in chunks of up to
    1 MiB and decoded natively: record batches of `fetch_size` rows (the last one
    smaller). Afterwards PyMySQL is left as if it had read the EOF packet itself. Raises
    RowError (its .column) for a value the column's type can't hold, ServerError when the
    server ends the result with an error; the connection is then out of step: drop it."""
    import pymysql
    from fastsync._native import RowDecoder
    result = raw._result
    dec = RowDecoder(kinds, raw._next_seq_id)
    if raw._sock.gettimeout() != raw._read_timeout:
        raw._sock.settimeout(raw._read_timeout)
        raw._current_timeout = raw._read_timeout
    try:
        while not dec.finished:
            chunk = raw._rfile.read1(1 << 20)
            if not chunk:
                raise ConnectionError("the server closed the connection in the middle of the result")
            pos = 0
            while pos < len(chunk) and not dec.finished:
                pos = dec.feed(chunk, pos, fetch_size)
                if dec.buffered_rows >= fetch_size:
                    yield pa.RecordBatch.from_arrays(dec.take(types), names=names)
            if pos != len(chunk):
                raise ConnectionError("%d bytes came after the end of the result" % (len(chunk) - pos))
        if dec.buffered_rows:
            yield pa.RecordBatch.from_arrays(dec.take(types), names=names)
    finally:
        result.unbuffered_active = False       # PyMySQL must not read the rest itself
    result._check_packet_is_eof(pymysql.protocol.MysqlPacket(b"\xfe" + dec.eof, raw.encoding))
    result.connection, result.rows = None, None
    raw._next_seq_id = dec.next_seq


def _mysql_rows_split(engine, q, kinds, known, names, part, job, cannot, empty_schema):
    """Stream the split's rows as the server sends them (text protocol), decoded natively
    (_mysql_batches). None when this connection or result can't be read that way
    (nothing is written then: the caller takes the generic path)."""
    import pymysql
    from fastsync._native import RowError
    compiled = q.compile(dialect=engine.dialect)
    if compiled.literal_execute_params or compiled.post_compile_params:
        return None
    procs = getattr(compiled, "_bind_processors", None) or {}
    params = {n: procs[n](v) if n in procs else v for n, v in compiled.construct_params().items()}
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        why = _mysql_conn_unfit(raw)
        if why:
            log.debug("%s: MySQL rows read by the driver: %s", job.table or "--query", why)
            return None
        cur = raw.cursor(pymysql.cursors.SSCursor)
        cur.execute(compiled.string, params)       # the query and its column definitions; rows still unread
        why = _mysql_unfit(raw, raw._result.fields, kinds, known)
        if why:
            log.debug("%s: MySQL rows read by the driver: %s", job.table or "--query", why)
            raw._result.unbuffered_active = False
            conn.invalidate()                      # the rows are still coming: drop the connection
            return None
        try:
            for batch in _mysql_batches(raw, kinds, known, names, job.fetch_size):
                part.write(batch)
        except BaseException as exc:
            conn.invalidate()                      # the socket may hold the unread rest of the result
            if isinstance(exc, RowError):
                raise cannot(names[exc.column], exc) from None
            raise
        cur.close()
    return part.close(empty_schema)


def _run_split(job: ImportJob, split: Split, part_path: str) -> int:
    """Read one split and write its part file; returns the rows written."""
    if job.query:
        return _run_query_split(job, split, part_path)
    engine = sa.create_engine(job.url)
    try:
        table, cols = _reflect(engine, job)
        col = _split_column(table, job) if not (split.lo is None and split.hi is None) else None
        q = sa.select(*cols).select_from(table)
        if job.where:
            q = q.where(sa.text("(%s)" % job.where))
        if col is not None:
            cond, params = split.where(engine.dialect.identifier_preparer.quote(col))
            q = q.where(sa.text("(%s)" % cond).bindparams(**params))
        q = _incremental_where(q, table, job)
        known = [_arrow_type(c) for c in cols]
        convert = [_column_plan(c)[1] for c in cols]
        part = _PartSink(job, part_path, split.index)
        postgresql = engine.dialect.name == "postgresql"
        why = "--no-fast-path"
        if postgresql and job.fast_path:
            copy_plan, why = _pg_copy_plan(engine, cols)
            if copy_plan is not None:
                log.info("%s split %d: binary COPY, decoded natively", job.table, split.index)
                return _pg_copy_split(engine, q, copy_plan, known, cols, part, job)
        elif engine.dialect.driver == "pymysql" and job.fast_path:
            kinds, why = _mysql_rows_plan(cols)
            if kinds is not None:
                n = _mysql_rows_split(engine, q, kinds, known, [c.name for c in cols], part, job,
                                      lambda name, detail: _cannot_convert(job, name, detail),
                                      pa.schema([pa.field(c.name, k) for c, k in zip(cols, known)]))
                if n is not None:
                    log.info("%s split %d: read as MySQL text rows, decoded natively", job.table, split.index)
                    return n
                why = "the connection's settings (see the DEBUG log)"
        elif engine.dialect.name == "sqlite" and job.fast_path:
            if any(conv is not None for conv in convert):
                why = "a column converted value by value"
            elif any(isinstance(c.type, sa.Numeric) and not isinstance(c.type, sa.Float) and c.type.scale is None
                     for c in cols):
                why = "a NUMERIC(p) without a scale"      # read with 10 places, then rescaled
            else:
                n, why = _sqlite_arrow_split(job, engine, q, [c.name for c in cols], known, part,
                                             pa.schema([pa.field(c.name, k or pa.string()) for c, k in zip(cols, known)]))
                if n is not None:
                    log.info("%s split %d: read as Arrow by ADBC's SQLite driver", job.table, split.index)
                    return n
        elif job.fast_path:
            why = "no native reader for %s" % engine.dialect.name
        log.info("%s split %d: generic path, read through SQLAlchemy (%s)", job.table, split.index, why)
        from fastsync._native import OUT_OF_RANGE
        from fastsync.transfer.pgvalues import out_of_range, use_loaders
        with engine.connect() as conn:
            if postgresql:
                use_loaders(conn.connection.driver_connection)
            result = conn.execution_options(stream_results=True, yield_per=job.fetch_size).execute(q)
            for chunk in result.partitions(job.fetch_size):
                columns = list(zip(*chunk))
                arrays = []
                for i, c in enumerate(cols):
                    values = columns[i]
                    if convert[i] is not None:
                        values = [None if v is None else convert[i](v) for v in values]
                    try:
                        arrays.append(pa.array(values, type=known[i]) if known[i] else pa.array(values))
                    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
                        what = out_of_range(values)
                        raise _cannot_convert(job, c.name, OUT_OF_RANGE[what] if what else exc) from None
                part.write(pa.RecordBatch.from_arrays(arrays, names=[c.name for c in cols]))
        return part.close(pa.schema([pa.field(c.name, k or pa.string()) for c, k in zip(cols, known)]))
    finally:
        engine.dispose()


def _open_part(job: ImportJob, path: str, schema: pa.Schema):
    """A split's writer (write_batch, close): its part file, or the Kafka topic."""
    if job.kafka_topic:
        from fastsync.transfer.kafkaout import KafkaWriter
        return KafkaWriter(job.kafka_brokers, job.kafka_topic, schema, job.kafka_format, job.kafka_key, job.kafka_config)
    return job.output().open(path, schema)


def _split_with_retries(job: ImportJob, split: Split, part_path: str) -> tuple[int, float]:
    t0 = time.perf_counter()
    for attempt in range(job.retries + 1):
        try:
            return _run_split(job, split, part_path), time.perf_counter() - t0
        except ImportError_:
            raise
        except Exception as exc:
            if attempt == job.retries:
                raise ImportError_("split %d failed after %d attempt(s): %s" % (split.index, attempt + 1, _one_line(exc))) from None
            if os.path.exists(part_path):
                os.unlink(part_path)
    raise AssertionError("unreachable")


def _one_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _estimate_rows(job: ImportJob) -> int | None:
    """Rows the import will read, for the ETA (a COUNT(*); None if it fails)."""
    engine = sa.create_engine(job.url)
    try:
        with engine.connect() as conn:
            if job.query:
                q = sa.text("SELECT COUNT(*) FROM (%s) AS fastsync_count" % _query_sql(job, "1 = 1"))
            else:
                table, _ = _reflect(engine, job)
                q = sa.select(sa.func.count()).select_from(table)
                if job.where:
                    q = q.where(sa.text("(%s)" % job.where))
                q = _incremental_where(q, table, job)
            return conn.execute(q).scalar()
    except Exception:
        return None
    finally:
        engine.dispose()


def _status(total: int | None, t0: float) -> str:
    """The status line: rows, share of `total` and ETA, rows/s, rows per split."""
    per = list(_PROGRESS)
    return "%s [splits %s]" % (rate_text(sum(per), "rows", time.perf_counter() - t0, total),
                               " ".join("%d:%d" % (i, v) for i, v in enumerate(per)))


def run_import(job: ImportJob, progress: bool | None = None) -> dict:
    """Plan, run the splits in parallel processes, publish. Returns figures (and, for an
    incremental import, the new last value)."""
    if job.kafka_topic:
        return _run_to_kafka(job)
    target = os.path.abspath(job.target_dir)
    merging = bool(job.merge_key) and os.path.isdir(target) and not job.delete_target_dir
    if job.merge_key and job.incremental != "lastmodified":
        raise ImportError_("--merge-key works with --incremental lastmodified")
    adding = job.append or job.incremental == "append"
    exists = os.path.exists(target) and not job.delete_target_dir
    if exists and job.incremental == "lastmodified" and not (merging or job.append):
        raise ImportError_("--incremental lastmodified into the existing --target-dir %s needs --merge-key or --append" % job.target_dir)
    if exists and not (adding or merging):
        raise ImportError_("--target-dir %s already exists (use --delete-target-dir to replace it, or --append)" % job.target_dir)
    try:
        ext = job.output().extension()
    except FileError as exc:
        raise ImportError_(str(exc)) from None
    t0 = time.perf_counter()
    splits = _plan_or_fail(job)
    if merging and job.merge_key not in job.extra["column_names"]:
        raise ImportError_("--merge-key %s: no such column in the imported data" % job.merge_key)
    parent = os.path.dirname(target) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, ".%s.tmp-%s" % (os.path.basename(target), uuid.uuid4().hex[:8]))
    os.makedirs(tmp)
    try:
        rows = _run_splits(job, splits, tmp, ext, progress, t0)
        if merging:
            _merge_into(tmp, target, job, progress)
        elif adding and os.path.isdir(target) and not job.delete_target_dir:
            _append_parts(tmp, target, ext)
        else:
            if os.path.exists(target):
                shutil.rmtree(target)
            os.rename(tmp, target)
        with open(os.path.join(target, "_SUCCESS"), "w"):
            pass
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _figures(job, rows, t0, splits, target_dir=target)


def _plan_or_fail(job: ImportJob) -> list[Split]:
    try:
        return plan(job)
    except sa.exc.SQLAlchemyError as exc:
        raise ImportError_("%s: %s" % (job.url.render_as_string(hide_password=True), _one_line(exc))) from None


def _run_splits(job: ImportJob, splits: list[Split], tmp: str, ext: str, progress: bool | None, t0: float) -> int:
    """Every split in a process of its own, writing tmp/part-m-N.ext; the rows read."""
    global _PROGRESS
    rows = 0
    try:
        ctx = multiprocessing.get_context("fork")
        show = on_terminal(progress)
        _PROGRESS = ctx.Array("q", len(splits), lock=False) if show else None
        total = _estimate_rows(job) if show else None
        with cf.ProcessPoolExecutor(max_workers=len(splits), mp_context=ctx) as pool:
            futures = [pool.submit(_split_with_retries, job, s, os.path.join(tmp, "part-m-%05d.%s" % (s.index, ext)))
                       for s in splits]
            with Progress(lambda: _status(total, t0), show=show, name="import-progress"):
                cf.wait(futures)
            for f in futures:
                n, _ = f.result()
                rows += n
    finally:
        _PROGRESS = None
    return rows


def _figures(job: ImportJob, rows: int, t0: float, splits: list, **where) -> dict:
    seconds = time.perf_counter() - t0
    out = {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds if seconds else 0.0,
           "splits": len(splits), **where}
    inc = job.extra.get("incremental")
    if inc is not None:
        out["last_value"] = inc[1] if inc[1] is not None else inc[0]
    return out


def _run_to_kafka(job: ImportJob, progress: bool | None = None) -> dict:
    """--kafka-topic: the splits produce messages; the import succeeds once every split's
    messages are acknowledged (a split retried after a failure may send some twice)."""
    import tempfile
    if job.merge_key:
        raise ImportError_("--merge-key does not apply to --kafka-topic (a topic is appended to)")
    if job.kafka_key and job.kafka_format == "arrow":
        raise ImportError_("--kafka-key: messages of --kafka-format arrow hold many rows and have no key")
    t0 = time.perf_counter()
    splits = _plan_or_fail(job)
    names = job.extra.get("column_names") or [f.name for f in job.extra.get("schema") or []]
    if job.kafka_key and job.kafka_key not in names:
        raise ImportError_("--kafka-key %s: no such column in the import" % job.kafka_key)
    tmp = tempfile.mkdtemp(prefix="fastsync-kafka-")   # the part paths are unused
    try:
        rows = _run_splits(job, splits, tmp, "none", progress, t0)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _figures(job, rows, t0, splits, target_dir="kafka topic %s" % job.kafka_topic, kafka_topic=job.kafka_topic)


def _merge_into(tmp: str, target: str, job: ImportJob, progress: bool | None) -> None:
    """The new rows (the part files in tmp) merged onto the target's by `fastsync merge`'s
    streaming merge: a target row whose --merge-key came again is replaced, a key repeated
    in the new rows keeps its last row; the result is one part file, swapped in with
    renames (the old target stays until the new one is complete)."""
    from fastsync.transfer.merger import MergeError, MergeJob, run_merge
    if not any(n.startswith("part-m-") for n in os.listdir(target)):      # nothing to merge onto
        shutil.rmtree(target)
        os.rename(tmp, target)
        return
    text = dataclasses.replace(job.text or TextOptions(), fields_terminated_by=job.fields_terminated_by)
    merge = MergeJob(new_data=tmp, onto=target, target_dir=target, merge_key=job.merge_key,
                     columns=job.extra["column_names"], text=text, delete_target_dir=True, single_file=True)
    try:
        run_merge(merge, progress)
    except MergeError as exc:
        raise ImportError_("--merge-key %s: merging into --target-dir %s: %s" % (job.merge_key, job.target_dir, exc)) from None
    shutil.rmtree(tmp)


def _append_parts(tmp: str, target: str, ext: str) -> None:
    """Publish target + the new parts (numbered after the old ones) all at once: the old
    files are hard-linked into the new directory beside the new parts, then the two
    directories swap by renames, so a reader sees the old set or the new, never a mix."""
    taken = [int(n[7:12]) for n in os.listdir(target) if n.startswith("part-m-") and n[7:12].isdigit()]
    nxt = max(taken) + 1 if taken else 0
    new_parts = sorted(os.listdir(tmp))
    for name in new_parts:
        os.rename(os.path.join(tmp, name), os.path.join(tmp, ".new-" + name))
    for name in os.listdir(target):
        if name != "_SUCCESS":
            os.link(os.path.join(target, name), os.path.join(tmp, name))
    for name in new_parts:
        os.rename(os.path.join(tmp, ".new-" + name), os.path.join(tmp, "part-m-%05d.%s" % (nxt, ext)))
        nxt += 1
    aside = target + ".old-" + uuid.uuid4().hex[:8]
    os.rename(target, aside)
    os.rename(tmp, target)
    shutil.rmtree(aside)
