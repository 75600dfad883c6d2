"""SQLite rows as Arrow record batches, read by the ADBC SQLite driver (C: no Python object
per value), in the Arrow types the generic path (sqlite3 rows + pa.array) gives.

SQLite is dynamically typed: any column may hold a value of any storage class. The driver
types each column from its first batch and fails on a later value of another class, except
that it turns anything into text in a text or blob column, and an integer into a double in a
double column, where the generic path would fail or read differently (an integer in a text
column becomes its text; an integer past 2**53 loses digits). So for such columns each row
carries one more column, computed by SQLite, saying whether the row's values are of a class
the target type reads exactly. A batch that fails that check, comes in another type, or that
the driver or a cast rejects, raises Unfit: the caller then reruns the split through the
generic path, which gives its result or its error exactly as with --no-fast-path.
"""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from fastsync.transfer.spec import one_line

TIMESTAMP = pa.timestamp("us")

# target type -> what SQLite checks of each value x (None: the driver itself refuses a value
# of another class); the generic path reads an integer as a double only up to 2**53
_TEXT, _BLOB = "typeof({0}) IN ('null', 'text')", "typeof({0}) IN ('null', 'blob')"
_CHECK = {pa.int64(): None, pa.int16(): None, pa.bool_(): None,
          pa.float64(): "(typeof({0}) <> 'integer' OR {0} BETWEEN -9007199254740992 AND 9007199254740992)",
          pa.string(): _TEXT, pa.binary(): _BLOB, pa.date32(): _TEXT, TIMESTAMP: _TEXT}
# NUMERIC(p, s): the generic path formats the driver's float (an integer too) with "%.{s}f";
# Arrow's double -> decimal cast rounds the exact binary value alike (half to even)
_CHECK_DECIMAL = "(typeof({0}) IN ('null', 'real') OR typeof({0}) = 'integer' AND {0} BETWEEN -9007199254740992 AND 9007199254740992)"

# text the generic path's fromisoformat and Arrow's cast read alike (else: Unfit)
_ISO = {pa.date32(): r"^\d{4}-\d\d-\d\d$",
        TIMESTAMP: r"^\d{4}-\d\d-\d\d([ T]\d\d:\d\d:[0-5]\d(\.\d{6})?)?$"}


def _check(t):
    """What SQLite checks of each value of a column of target type t (None: nothing)."""
    return _CHECK_DECIMAL if pa.types.is_decimal128(t) else _CHECK[t]


class Unfit(Exception):
    """A batch this reader can't give exactly as the generic path would."""


def unfit_type(names, types) -> str | None:
    """Why columns of these target types can't be read here (None when they can)."""
    if len(set(names)) != len(names):
        return "duplicate column names"
    for n, t in zip(names, types):
        if t not in _CHECK and not pa.types.is_decimal128(t):
            return "column %s is %s" % (n, t if t is not None else "untyped")
    return None


def _quote(name: str) -> str:
    return '"%s"' % name.replace('"', '""')


def read(path: str, sql: str, params: list, names: list[str], types: list[pa.DataType], batch_rows: int):
    """Record batches of `sql` (columns `names`, `?` parameters `params`) in `types`."""
    import adbc_driver_sqlite.dbapi as adbc
    fits = " AND ".join(_check(t).format("fastsync_q." + _quote(n))
                        for n, t in zip(names, types) if _check(t))
    sql = "SELECT fastsync_q.*, %s AS fastsync_fits FROM (%s) AS fastsync_q" % (fits or "1", sql)
    with adbc.connect(path) as conn, conn.cursor() as cur:
        cur.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(batch_rows)})
        try:
            cur.execute(sql, params or None)
            reader = cur.fetch_record_batch()
        except Exception as exc:       # the driver's errors (a type it won't bind, a locked file)
            raise Unfit(exc) from None
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except Exception as exc:   # a storage class the driver won't convert
                raise Unfit(exc) from None
            if batch.num_rows:
                yield _convert(batch, names, types)


def _convert(batch: pa.RecordBatch, names, types) -> pa.RecordBatch:
    fits = batch.column(batch.num_columns - 1)
    if fits.null_count or pc.min(fits).as_py() != 1:
        raise Unfit("a value of another storage class")
    out = []
    for i, t in enumerate(types):
        a = batch.column(i)
        try:
            if a.type != t:
                if pa.types.is_null(a.type):
                    a = pa.nulls(len(a), t)
                elif t in _ISO and pa.types.is_string(a.type):
                    if (pc.all(pc.match_substring_regex(a, _ISO[t])).as_py() is False
                            or pc.any(pc.starts_with(a, "0000")).as_py()):     # year 0: Python has none
                        raise Unfit("date text %s" % names[i])
                    a = a.cast(t)
                elif pa.types.is_integer(a.type) and t in (pa.int16(), pa.bool_(), pa.float64()):
                    a = a.cast(t)         # safe: past int16 or 2**53 raises
                elif pa.types.is_decimal128(t) and (pa.types.is_floating(a.type) or pa.types.is_integer(a.type)):
                    a = a.cast(t)         # safe: past the precision raises
                else:
                    raise Unfit("column %s read as %s" % (names[i], a.type))
            elif pa.types.is_string(t):
                a.validate(full=True)     # UTF-8, as sqlite3 decodes it
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise Unfit(exc) from None
        out.append(a)
    return pa.RecordBatch.from_arrays(out, names=names)


# -- an import split ----------------------------------------------------------------------

def _database_file(engine) -> str | None:
    """The database file of a sqlite:/// URL (None: in memory, or options ADBC would not see)."""
    url = engine.url
    if engine.dialect.driver != "pysqlite" or url.query or not url.database or url.database == ":memory:" \
            or url.database.startswith("file:"):
        return None
    return url.database


def read_split(spec, engine, stmt, names, types, part):
    """(rows, None) when ADBC's SQLite driver read the split as Arrow batches exactly as the
    generic path would, else (None, why) with nothing written. `types`: the Arrow types
    (None: typed from the values, which this reader can't do)."""
    path = _database_file(engine)
    why = unfit_type(names, types) if path else "an in-memory database or URL options"
    if spec.job.kafka_topic:      # a split read again (below) would send its first messages twice
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
        for batch in read(path, compiled.string, params, names, types, spec.job.fetch_size):
            part.write(batch)
    except Unfit as exc:
        part.discard()
        return None, "a value the generic path reads: %s" % one_line(exc)
    return part.close(pa.schema([pa.field(n, t or pa.string()) for n, t in zip(names, types)])), None
