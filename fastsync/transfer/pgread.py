"""PostgreSQL's reader of an import split: COPY (SELECT ...) TO STDOUT (FORMAT binary),
pulled by libpq in 1 MiB chunks and decoded natively (ext/fastsync/_pgcopy.pyx) into the
Arrow types of typemap. A table or --query with a column the decoder can't read exactly as
the generic path would goes through genericread instead."""
from __future__ import annotations

import logging
import os

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from fastsync.transfer import typemap
from fastsync.transfer.spec import ImportError_, SplitSpec

log = logging.getLogger("fastsync.import")


# PostgreSQL result type oid -> (SQL cast or None, CopyDecoder kind, the Arrow type the
# generic path infers from psycopg's values of it; None: any decimal)
_QUERY_COPY = {21: (None, 1, pa.int64()), 23: (None, 2, pa.int64()), 20: (None, 3, pa.int64()),
               700: ("text", 7, pa.float64()),      # real as psycopg reads it: its shortest text
               701: (None, 5, pa.float64()), 1700: ("text", 7, None), 16: (None, 6, pa.bool_()),
               25: (None, 7, pa.string()), 1043: (None, 7, pa.string()), 1042: (None, 7, pa.string()),
               19: (None, 7, pa.string()), 17: (None, 7, pa.binary()), 1082: (None, 8, pa.date32()),
               1114: (None, 9, pa.timestamp("us")), 1184: (None, 9, "tz"), 1083: (None, 10, pa.time64("us")),
               1186: (None, 11, pa.duration("us"))}


def _query_copy_plan(spec: SplitSpec, schema: pa.Schema | None):
    """(select list, decoder kinds, decode types) for a --query whose every column the
    binary COPY decoder reads into the type the generic path infers, else None."""
    oids = spec.query_oids or []
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


def table_plan(engine, cols):
    """([(select expression, decoder kind)], None) when every column has a binary COPY fast
    path, else (None, why not): such tables go through the generic path."""
    from fastsync._native import COPY_ARRAY
    plan = []
    for c in cols:
        t = c.type
        array = isinstance(t, sa.ARRAY)
        # no Arrow type (numeric without precision; arrays of uuid or json): the generic
        # path types such columns from their values, there is no fixed type to decode into
        found = _copy_kind(t.item_type if array else t) if typemap.arrow_type(c) is not None else None
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


def libpq_path() -> str:
    """The libpq psycopg loaded into this process (its binary wheel bundles one)."""
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1]
            if os.path.basename(path).startswith("libpq") and ".so" in path:
                return path
    raise ImportError_("libpq is not loaded")


def read_table(spec: SplitSpec, engine, q, plan, known, cols, part) -> int:
    """Stream the split with COPY ... TO STDOUT (FORMAT binary), decoded natively."""
    sel = q.with_only_columns(*[expr.label(c.name) for (expr, _), c in zip(plan, cols)])
    # the SQL goes to PQexec as is: compiled for a paramstyle that does not double `%`
    sql = str(sel.compile(dialect=pg.dialect(paramstyle="named"), compile_kwargs={"literal_binds": True}))
    types = [k if k is not None else pa.string() for k in known]
    decode_types = [_decode_type(kind, t) for (_, kind), t in zip(plan, types)]
    return _copy_stream(spec, engine, sql, [kind for _, kind in plan], decode_types,
                        pa.schema([pa.field(c.name, t) for c, t in zip(cols, types)]), part)


def _copy_stream(spec: SplitSpec, engine, sql, kinds, decode_types, schema: pa.Schema, part) -> int:
    """COPY (sql) TO STDOUT (FORMAT binary) decoded natively into `schema`'s types (cast
    from `decode_types`), written to `part`."""
    names, types = schema.names, schema.types
    from fastsync._native import OUT_OF_RANGE, CopyDecoder, CopyOutOfRange, CopyReader
    dec = CopyDecoder(kinds)

    def flush():
        arrays = dec.take(decode_types)
        out = []
        for a, t, name in zip(arrays, types, names):
            try:
                out.append(a if a.type == t else a.cast(t))
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise spec.cannot(name, exc) from None
        part.write(pa.RecordBatch.from_arrays(out, names=names))

    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        # libpq itself pulls the CopyData messages (one per row) in 1 MiB chunks, GIL
        # released, instead of one Python call chain per row through the driver
        reader = CopyReader(raw.pgconn.pgconn_ptr, libpq_path(), "COPY (%s) TO STDOUT (FORMAT binary)" % sql)
        while True:
            chunk = reader.read(1 << 20)
            if not chunk:
                break
            try:
                dec.feed(chunk)
            except CopyOutOfRange as exc:
                raise spec.cannot(names[exc.column], OUT_OF_RANGE[exc.what]) from None
            if dec.buffered_rows >= spec.job.fetch_size:
                flush()
        if dec.buffered_rows:
            flush()
        if not dec.finished:
            raise ImportError_("%s: the COPY stream ended early" % spec.label)
        conn.invalidate()         # libpq was driven beneath psycopg: don't hand it back to a pool
    return part.close(schema)


def read_query(spec: SplitSpec, engine, stmt, schema: pa.Schema, part) -> int | None:
    """A --query split by binary COPY, into the column types the sample gave; None when
    the decoder can't read every column exactly as the generic path would."""
    plan = _query_copy_plan(spec, schema)
    if plan is None:
        return None
    select, kinds, decode = plan
    try:
        sql = str(stmt.compile(dialect=pg.dialect(paramstyle="named"), compile_kwargs={"literal_binds": True}))
    except (sa.exc.CompileError, NotImplementedError):      # a bound value with no literal form
        return None
    sql = "SELECT %s FROM (%s) AS fastsync_q" % (select, sql)
    log.info("--query split %d: binary COPY, decoded natively", part.index)
    return _copy_stream(spec, engine, sql, kinds, decode, schema, part)
