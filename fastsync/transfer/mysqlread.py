"""MySQL's and MariaDB's reader of an import split (PyMySQL): the rows of the text
protocol read from beneath the driver, from its socket reader in chunks of up to 1 MiB, and
decoded natively (ext/fastsync/_mysqlrows.pyx) into the Arrow types of typemap. A table,
--query, connection or result it can't read exactly as the generic path would goes through
genericread instead."""
from __future__ import annotations

import logging

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from fastsync.transfer import typemap
from fastsync.transfer.spec import SplitSpec

log = logging.getLogger("fastsync.import")


def table_kinds(cols):
    """(decoder kinds, None) when every column's text-protocol value maps to its Arrow type
    natively (see ext/fastsync/_mysqlrows.pyx), else (None, why): such tables go through
    the generic path."""
    from fastsync import _mysqlrows as k
    kinds = []
    for c in cols:
        t, (arrow, conv) = c.type, typemap.column_plan(c)
        if arrow is None or conv is not None or isinstance(t, (sa.Boolean, mysql.SET)):
            return None, "column %s (%s)" % (c.name, t)
        if isinstance(t, (sa.Integer, mysql.YEAR)):
            kinds.append(k.UINT if pa.types.is_unsigned_integer(arrow) else k.INT)
        elif isinstance(t, sa.DateTime):
            kinds.append(k.DATETIME)
        elif isinstance(t, sa.Date):
            kinds.append(k.DATE)
        elif isinstance(t, typemap.MySQLTime):
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


def mysql_batches(raw, kinds, types, names, fetch_size):
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


def read(spec: SplitSpec, engine, q, kinds, schema: pa.Schema, part) -> int | None:
    """Stream the split's rows as the server sends them (text protocol), decoded natively
    (mysql_batches). None when this connection or result can't be read that way
    (nothing is written then: the caller takes the generic path)."""
    import pymysql
    from fastsync._native import RowError
    names, known = schema.names, schema.types
    compiled = q.compile(dialect=engine.dialect)
    if compiled.literal_execute_params or compiled.post_compile_params:
        return None
    procs = getattr(compiled, "_bind_processors", None) or {}
    params = {n: procs[n](v) if n in procs else v for n, v in compiled.construct_params().items()}
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        why = _mysql_conn_unfit(raw)
        if why:
            log.debug("%s: MySQL rows read by the driver: %s", spec.label, why)
            return None
        cur = raw.cursor(pymysql.cursors.SSCursor)
        cur.execute(compiled.string, params)       # the query and its column definitions; rows still unread
        why = _mysql_unfit(raw, raw._result.fields, kinds, known)
        if why:
            log.debug("%s: MySQL rows read by the driver: %s", spec.label, why)
            raw._result.unbuffered_active = False
            conn.invalidate()                      # the rows are still coming: drop the connection
            return None
        try:
            for batch in mysql_batches(raw, kinds, known, names, spec.job.fetch_size):
                part.write(batch)
        except BaseException as exc:
            conn.invalidate()                      # the socket may hold the unread rest of the result
            if isinstance(exc, RowError):
                raise spec.cannot(names[exc.column], exc) from None
            raise
        cur.close()
    return part.close(schema)


def query_kinds(schema: pa.Schema) -> list | None:
    """The decoder kinds of a --query's columns (of the types the sample gave), or None
    when one has no kind."""
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
    return kinds
