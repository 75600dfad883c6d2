"""How export's rows get into a staging table, over one connection each (Loader):
PostgreSQL COPY, MariaDB/MySQL LOAD DATA LOCAL INFILE, or executemany. Arrow batches whose
columns need no per-value conversion (_arrow_check, a column at a time) are written as CSV
by Arrow; the rest come as row tuples the sqlvalues converters made."""
from __future__ import annotations

import datetime as dt
import json
import logging
import socket
import tempfile
from dataclasses import dataclass
from decimal import Decimal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.dialects import postgresql as pg

from fastsync import dbio
from fastsync.transfer.sqlvalues import fraction_digits, integer_range

log = logging.getLogger("fastsync.export")

LOAD_DATA_ROWS = 500000                  # at most this many rows per LOAD DATA statement


def column_kind(col: sa.Column):
    if isinstance(col.type, sa.ARRAY):
        return list
    if isinstance(col.type, pg.INTERVAL):
        return dt.timedelta
    try:
        return col.type.python_type
    except NotImplementedError:
        return None


def _as_is(sql: str) -> str:
    """A statement the driver sends without parameters, so without %-formatting (COPY,
    LOAD DATA): with PyMySQL and psycopg the identifier preparer doubles each % in a name
    for that formatting (x%y is quoted `x%%y`); here it must stay single. Only quoted
    names hold a % in these statements."""
    return sql.replace("%%", "%")


@dataclass
class _CsvFile:
    """A temporary CSV file being written for one LOAD DATA."""
    tmp: tempfile._TemporaryFileWrapper
    writer: pacsv.CSVWriter
    schema: pa.Schema
    rows: int = 0


class Loader:
    """Loads converted rows into the staging table over one connection."""

    def __init__(self, engine, stage: sa.Table, columns: list[str], job):
        self.engine, self.stage, self.columns, self.job = engine, stage, columns, job
        self.dialect = engine.dialect.name
        self.conn = engine.raw_connection()
        self.how = self._choose()
        self._arrow_checks: dict = {}
        self._pending: _CsvFile | None = None     # LOAD DATA: the batches collected so far
        log.info("%s: loading the staging table with %s", job.table, self.how)
        self.aim(stage)
        dialect = engine.dialect
        self.procs = [None if isinstance(stage.c[c].type, sa.JSON) else stage.c[c].type.dialect_impl(dialect).bind_processor(dialect)
                      for c in columns]
        self.json_cols = [i for i, c in enumerate(columns) if isinstance(stage.c[c].type, sa.JSON)]

    def aim(self, stage: sa.Table) -> None:
        """Load into `stage` from now on (a table with the same columns)."""
        self.stage = stage
        cols = ", ".join(self.engine.dialect.identifier_preparer.quote(c) for c in self.columns)
        self.target = "%s (%s)" % (dbio.quote_name(self.engine, dbio.qualified(stage)), cols)
        marks = ", ".join(["?" if self.engine.dialect.paramstyle == "qmark" else "%s"] * len(self.columns))
        self.insert = "INSERT INTO %s VALUES (%s)" % (self.target, marks)

    def _choose(self) -> str:
        if self.job.batch or not self.job.fast_path:
            return "executemany"
        if self.dialect == "postgresql":
            return "copy"
        bits = [c for c in self.columns if isinstance(self.stage.c[c].type, mysql.BIT)]
        if bits:
            # LOAD DATA reads a BIT field's text as a byte string ("1" is 0x31, out of range)
            log.info("column %s is BIT, which LOAD DATA can't take as a number: multi-row inserts", bits[0])
        elif self.dialect in ("mysql", "mariadb") and getattr(self.conn.driver_connection, "_local_infile", False):
            cur = self.conn.cursor()
            try:
                cur.execute("SELECT @@GLOBAL.local_infile")
                if cur.fetchone()[0] in (1, "1", "ON"):
                    return "load data"
            finally:
                cur.close()
            log.info("the server does not allow LOAD DATA LOCAL INFILE (local_infile is OFF): multi-row inserts")
        return "executemany"

    def load_arrow(self, batch: pa.RecordBatch) -> bool:
        """A batch whose columns need no per-value conversion (checked a column at a time:
        Arrow types that map exactly, NULLs, lengths, integer ranges) is written as CSV by
        Arrow: PostgreSQL COPY, MariaDB/MySQL LOAD DATA. False: the batch must take the
        per-value path."""
        if self.how not in ("copy", "load data"):
            return False
        checks = self._arrow_checks.get(batch.schema)
        if checks is None:
            checks = self._arrow_checks[batch.schema] = [_arrow_check(self.stage.c[c], batch.schema.field(c).type, self.dialect)
                                                         for c in self.columns]
        for c, check, a in zip(self.columns, checks, batch.columns):
            if check is None or (a.null_count and not self.stage.c[c].nullable) or not check(a):
                return False
        if self.how == "copy":
            buf = pa.BufferOutputStream()
            pacsv.write_csv(batch, buf, pacsv.WriteOptions(include_header=False))
            with self.conn.driver_connection.cursor() as cur, cur.copy(_as_is("COPY %s FROM STDIN (FORMAT csv)" % self.target)) as copy:
                copy.write(buf.getvalue())
            return True
        # LOAD DATA reads true/false as 0; an unenclosed NULL is NULL, "NULL" the string
        batch = pa.RecordBatch.from_arrays([pc.cast(a, pa.int8()) if pa.types.is_boolean(a.type) else a
                                            for a in batch.columns], names=batch.schema.names)
        if self._pending is not None and not self._pending.schema.equals(batch.schema):
            self.flush()
        if self._pending is None:
            tmp = tempfile.NamedTemporaryFile("wb", prefix="fastsync-export-", suffix=".csv")
            writer = pacsv.CSVWriter(tmp.name, batch.schema, write_options=pacsv.WriteOptions(
                include_header=False, quoting_style="all_valid", null_string="NULL"))
            self._pending = _CsvFile(tmp, writer, batch.schema)
        self._pending.writer.write_batch(batch)
        self._pending.rows += len(batch)
        return True

    @property
    def pending(self) -> int:
        """Rows load_arrow collected that flush() has yet to load."""
        return self._pending.rows if self._pending is not None else 0

    def flush(self) -> None:
        """LOAD DATA of the batches load_arrow collected: one statement per file (or per
        LOAD_DATA_ROWS rows), not per batch."""
        if self._pending is None:
            return
        done, self._pending = self._pending, None
        try:
            done.writer.close()
            q = self.engine.dialect.identifier_preparer.quote
            self._load_file(done.tmp.name, "FIELDS TERMINATED BY ',' ENCLOSED BY '\"' ESCAPED BY ''",
                            ", ".join(q(c) for c in self.columns))
        finally:
            done.tmp.close()

    def load(self, rows: list[tuple]) -> None:
        if self.how == "copy":
            with self.conn.driver_connection.cursor() as cur, cur.copy(_as_is("COPY %s FROM STDIN" % self.target)) as copy:
                for r in rows:
                    copy.write_row(r)
            return
        if self.how == "load data":
            return self._load_data(rows)
        if any(self.procs) or self.json_cols:
            rows = [self._bind(r) for r in rows]
        cur = self.conn.cursor()
        try:
            if self.dialect == "sqlite" and not self.conn.driver_connection.in_transaction:
                # the engine's connections autocommit (isolation_level None): one transaction
                # until commit(), not one (and one fsync) per row
                cur.execute("BEGIN")
            cur.executemany(self.insert, rows)
        finally:
            cur.close()

    def _load_data(self, rows: list[tuple]) -> None:
        """MySQL/MariaDB: the rows as a tab-separated file (LOAD DATA's default escapes, bytes
        as hex through UNHEX), loaded with LOAD DATA LOCAL INFILE."""
        binary = [isinstance(self.stage.c[c].type, (sa.LargeBinary, sa.types._Binary)) for c in self.columns]
        q = self.engine.dialect.identifier_preparer.quote
        targets = ", ".join("@v%d" % i if b else q(c) for i, (c, b) in enumerate(zip(self.columns, binary)))
        sets = ", ".join("%s = UNHEX(@v%d)" % (q(c), i) for i, (c, b) in enumerate(zip(self.columns, binary)) if b)
        with tempfile.NamedTemporaryFile("wb", prefix="fastsync-export-", suffix=".tsv") as tmp:
            tmp.write("".join("\t".join(_mysql_field(v) for v in r) + "\n" for r in rows).encode("utf-8"))
            tmp.flush()
            self._load_file(tmp.name, "", targets, sets)

    def _load_file(self, path: str, format_clause: str, targets: str, sets: str = "") -> None:
        """LOAD DATA LOCAL INFILE of one file into the staging table. With LOCAL the server
        turns data errors into warnings: any warning fails the load."""
        sql = _as_is("LOAD DATA LOCAL INFILE '%s' INTO TABLE %s CHARACTER SET utf8mb4 %s (%s)%s"
                     % (path, dbio.quote_name(self.engine, dbio.qualified(self.stage)), format_clause, targets,
                        " SET " + sets if sets else ""))
        cur = self.conn.cursor()
        try:
            try:
                with self.conn.driver_connection.allow(path):
                    cur.execute(sql)
            except AttributeError:
                # PyMySQL, when the server drops the connection while the file is sent,
                # goes on writing to the socket it has set to None
                if getattr(self.conn.driver_connection, "_sock", True) is None:
                    raise ConnectionError("connection lost while sending the file of LOAD DATA LOCAL INFILE") from None
                raise
            cur.execute("SHOW WARNINGS LIMIT 1")
            warning = cur.fetchone()
            if warning:
                raise ValueError("LOAD DATA: %s (%s %s)" % (warning[2], warning[0], warning[1]))
        finally:
            cur.close()

    def _bind(self, r: tuple) -> tuple:
        r = [p(v) if p is not None and v is not None else v for p, v in zip(self.procs, r)]
        for i in self.json_cols:
            if r[i] is not None and not isinstance(r[i], str):
                r[i] = json.dumps(r[i], ensure_ascii=False)
            elif r[i] is not None and self.dialect == "postgresql":
                from psycopg.types.json import Json
                r[i] = Json(r[i], dumps=lambda x: x)
        return tuple(r)

    def commit(self) -> None:
        self.conn.commit()

    def abort(self) -> None:
        """From another thread: end a LOAD DATA LOCAL this loader may be stuck in. A server
        that killed the connection mid-file can leave its socket open without reading, and
        PyMySQL would wait in send() for the server's timeout (~100 s)."""
        sock = getattr(self.conn.driver_connection, "_sock", None)
        if isinstance(sock, socket.socket):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        if self._pending is not None:
            self._pending.tmp.close()
        self.conn.close()


_MYSQL_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\0": "\\0", "\r": "\\r"})


def _mysql_field(v) -> str:
    """A value in LOAD DATA's default text format (\\N is NULL)."""
    if v is None:
        return "\\N"
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, Decimal):
        return format(v, "f")
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).hex()
    if isinstance(v, dt.datetime):
        return v.isoformat(sep=" ")
    if isinstance(v, dt.timedelta):
        sign, v = ("-", -v) if v < dt.timedelta(0) else ("", v)
        secs = v.days * 86400 + v.seconds
        return "%s%d:%02d:%02d.%06d" % (sign, secs // 3600, secs // 60 % 60, secs % 60, v.microseconds)
    if isinstance(v, (dict, list)):
        v = json.dumps(v, ensure_ascii=False)
    return str(v).translate(_MYSQL_ESCAPES)


def _always(a) -> bool:
    return True


def _has_nul(a: pa.Array) -> bool:
    """Might a string array hold a NUL character? (Its whole data buffer is looked at.)"""
    data = a.buffers()[2]
    return data is not None and data.to_pybytes().find(b"\x00") >= 0


def _arrow_check(col: sa.Column, ftype: pa.DataType, dialect: str):
    """For an Arrow column of `ftype` into `col`: a check array -> bool that its values are
    what the per-value converter would send unchanged, or None (never)."""
    t, kind = col.type, column_kind(col)
    if kind is int and pa.types.is_integer(ftype) and integer_range(t, dialect):
        lo, hi = integer_range(t, dialect)

        def in_range(a):
            mm = pc.min_max(a)
            return mm["min"].as_py() is None or (mm["min"].as_py() >= lo and mm["max"].as_py() <= hi)
        return in_range
    if kind is Decimal and pa.types.is_decimal(ftype):
        p, sc = getattr(t, "precision", None), getattr(t, "scale", None) or 0
        return _always if p is None or (ftype.scale <= sc and ftype.precision - ftype.scale <= p - sc) else None
    if kind is float and pa.types.is_floating(ftype):
        # MariaDB/MySQL have no infinity or NaN
        return _always if dialect == "postgresql" else (lambda a: pc.all(pc.is_finite(a)).as_py() is not False)
    if (kind is bool and pa.types.is_boolean(ftype)) or (kind is dt.date and pa.types.is_date32(ftype)):
        return _always
    if kind is str and (pa.types.is_string(ftype) or pa.types.is_large_string(ftype)):
        length = getattr(t, "length", None)
        if length is None or isinstance(t, sa.Enum):
            length = None
        return lambda a: (not _has_nul(a)
                          and (length is None or (pc.max(pc.utf8_length(a)).as_py() or 0) <= length))
    if kind is dt.datetime and pa.types.is_timestamp(ftype) and ftype.unit == "us" \
            and ftype.tz in ((None,) if not t.timezone else ("UTC", "+00:00")):
        digits = fraction_digits(t, dialect)
        if digits is None or digits >= 6:
            return _always
        unit = 10 ** (6 - digits)           # the column keeps fewer digits: only whole units pass

        def whole(a):
            us = a.cast(pa.int64())
            return pc.all(pc.equal(pc.subtract(us, pc.multiply(pc.divide(us, unit), unit)), 0)).as_py() is not False
        return whole
    return None
