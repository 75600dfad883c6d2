"""The `jdbc` sink: events into a table of any SQLAlchemy database, the role of Kafka
Connect's JDBC sink (and its key names).

Each body is one row (`format = json`: a JSON object whose keys are column names) or many
(`format = arrow`: an Arrow IPC stream, as `import --kafka-format arrow` writes to Kafka).
Values are converted to the reflected column types (fastsync.transfer.sqlvalues) and
written in one database transaction per batch, committed before the take is committed.
JSON bodies are read a batch at a time where they can be (jdbcjson: pyarrow.json and
checks a column at a time, exactly the per-row converters' result) and inserted as
PostgreSQL COPY or MySQL multi-row INSERT text built by Arrow; the rest (rows those checks
leave, upserts, Arrow bodies, other drivers) goes row by row through executemany.
`insert.mode = upsert` uses the dialect's own statement: INSERT ... ON CONFLICT (pk.fields)
DO UPDATE (PostgreSQL, SQLite) or ON DUPLICATE KEY UPDATE (MySQL, MariaDB).

Rejected rows (malformed bodies, values that don't convert exactly, rows the database
refuses with a data or constraint error) go to `deadLetterFile`, one JSON line each, written
and fsynced before the transaction commits; the rest of the batch is written. The database's
refusals are found by bisecting the batch inside savepoints. Without a dead-letter file a
rejected row fails the batch (rolled back and retried). Any other database error (server
down, permission denied, table dropped) is never dead-lettered: deliver() raises, the take is
rolled back and the batch retried.

Exactness: MySQL/MariaDB sessions run in strict mode with time_zone UTC (so nothing is
truncated silently and TIMESTAMP columns get the instant written); SQLite keeps NUMERIC
values as REAL, about 15 exact digits.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import sqlalchemy as sa

from fastsync.agent.component import SINKS, Place, setting
from fastsync.agent.deadletter import DeadLetterFile, dead_letter_setting
from fastsync.agent.errors import ConfigError, EventDeliveryException
from fastsync.agent.metrics import SINK_COUNTERS, Counters
from fastsync.agent.sink import Sink, SinkConfig
from fastsync.agent.sinks.jdbcjson import JsonColumns
from fastsync.transfer.connect import ConnectError, build_url, read_password_file
from fastsync.dbio import db_reason, is_row_error, make_engine, reflect, unique_keys
from fastsync.transfer.sqlvalues import column_converter

log = logging.getLogger("fastsync.sink.jdbc")

UPSERT_BACKENDS = ("postgresql", "sqlite", "mysql", "mariadb")


@dataclass
class JdbcSinkConfig(SinkConfig):
    url: str = setting("connection.url", doc="SQLAlchemy URL, or jdbc:postgresql|mysql|mariadb://… or jdbc:sqlite:path")
    table: str = setting("table.name", doc="the table rows go to, [schema.]name; it must exist")
    user: str = setting("connection.user", "", "user name (overrides the URL's)")
    password: str = setting("connection.password", "", "password (overrides the URL's); never logged")
    passwordFile: str = setting("connection.password.file", "", "file holding the password")
    mode: str = setting("insert.mode", "insert", "insert, or upsert on pk.fields", choices=("insert", "upsert"))
    pkFields: list = setting("pk.fields", [], "key columns of an upsert (a primary key or unique index)")
    whitelist: list = setting("fields.whitelist", [], "only these fields are written; others are ignored")
    batchSize: int = setting("batchSize", 100, "events per take transaction", min=1)
    format: str = setting("format", "json", "json: a body is a JSON object; arrow: an Arrow IPC stream",
                          choices=("json", "arrow"))
    deadLetterFile: str = dead_letter_setting()

    def validate(self, place: Place) -> None:
        self.place = place
        if not self.table.strip():
            raise place.error("table.name", "required key is empty")
        if self.mode == "upsert" and not self.pkFields:
            raise place.error("pk.fields" if "pk.fields" in place.props else "insert.mode",
                              "insert.mode = upsert needs pk.fields (the key columns)")
        if self.mode == "upsert" and self.whitelist and not set(self.pkFields) <= set(self.whitelist):
            raise place.error("fields.whitelist", "must include the pk.fields of an upsert (%s)" % ", ".join(self.pkFields))
        password = self.password or None
        if password is None and self.passwordFile:
            try:
                password = read_password_file(self.passwordFile)
            except OSError as exc:
                raise place.error("connection.password.file", "cannot read %s: %s" % (self.passwordFile, exc.strerror)) from None
        try:
            self.engine_url = build_url(self.url, self.user or None, password, flag=None)
        except ConnectError as exc:
            raise place.error("connection.url", str(exc)) from None
        try:
            self.engine_url.get_dialect()           # imports the driver
        except (sa.exc.NoSuchModuleError, ImportError) as exc:
            raise place.error("connection.url", "no SQLAlchemy dialect or driver for %s: %s"
                              % (self.engine_url.drivername, exc)) from None
        backend = self.engine_url.get_backend_name()
        if self.mode == "upsert" and backend not in UPSERT_BACKENDS:
            raise place.error("insert.mode", "upsert is supported on PostgreSQL, SQLite, MySQL and MariaDB, not %s" % backend)
        # the table and columns are checked now, before anything starts; a database that
        # can't be reached yet is not a configuration error: the sink checks on its first batch
        self.reflected = None
        engine = make_engine(self.engine_url)
        try:
            self.reflected = sink_table(engine, self, place.error)
        except sa.exc.DBAPIError as exc:
            log.warning("%s: %s is not reachable now (%s); table %s is checked when the first batch comes",
                        place.prefix, engine.url.render_as_string(hide_password=True), db_reason(exc)[0], self.table)
        finally:
            engine.dispose()


class _Row:
    """Values for one statement row, and the rows of events they came from:
    (event index, row index in an Arrow body or None, the record as read (Arrow only))."""
    __slots__ = ("values", "sources")

    def __init__(self, values: dict, sources: list):
        self.values, self.sources = values, sources


class _Block:
    """Rows for one COPY or INSERT text: converted values of these columns, and the events
    they came from (sliced in halves when the database refuses one of them)."""
    __slots__ = ("names", "values", "events")

    def __init__(self, names: list, values: pa.RecordBatch, events):
        self.names, self.values, self.events = names, values, events

    def __len__(self) -> int:
        return len(self.events)

    def __getitem__(self, s: slice) -> "_Block":
        return _Block(self.names, self.values.slice(s.start or 0, len(range(*s.indices(len(self))))), self.events[s])

    @property
    def sources(self) -> list:
        return [(int(i), None, None) for i in self.events]


def _text(s: str) -> pa.Scalar:
    return pa.scalar(s, pa.string())


def _interleave(items: list, sep) -> list:
    out = []
    for x in items:
        out += [x, sep]
    return out[:-1]


def _mysql_literals(a: pa.Array, backslashes: bool) -> pa.Array:
    """Each value of `a` as a MySQL literal (NULL for null), as PyMySQL escapes it."""
    t = a.type
    if pa.types.is_boolean(t):
        out = pc.if_else(a, _text("1"), _text("0"))
    elif pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        out = a.cast(pa.string())
    elif pa.types.is_binary(t):
        out = pa.array([None if b is None else "X'%s'" % b.hex() for b in a.to_pylist()], pa.string())
    else:                           # text, and timestamps and dates as text
        text = a.cast(pa.string())
        if backslashes:
            text = pc.replace_substring(text, "\\", "\\\\")
            text = pc.replace_substring(text, "\x00", "\\0")
        text = pc.replace_substring(text, "'", "''")
        out = pc.binary_join_element_wise(_text("'"), text, _text("'"), _text(""))
    return out.fill_null("NULL")


class _Reject(ValueError):
    def __init__(self, reason: str, column: str | None):
        super().__init__(reason)
        self.column = column


def sink_table(engine: sa.Engine, c: JdbcSinkConfig, error) -> sa.Table:
    """The sink's table, reflected; error(key, message) -> ConfigError if it lacks a column
    the config names, or a key an upsert can use. DBAPIError if the database can't be reached."""
    try:
        # the types as reflected: the sink's converters take MySQL's DOUBLE as Decimal
        table = reflect(engine, c.table, exact_floats=False)
    except sa.exc.NoSuchTableError:
        raise error("table.name", "no table %s in %s (the sink does not create tables)"
                    % (c.table, engine.url.render_as_string(hide_password=True))) from None
    columns = table.columns
    for key, names in (("pk.fields", c.pkFields), ("fields.whitelist", c.whitelist)):
        for n in names:
            if n not in columns:
                raise error(key, "no column %s.%s (columns: %s)" % (c.table, n, ", ".join(columns.keys())))
    if c.mode == "upsert":
        keys = unique_keys(table)
        if set(c.pkFields) not in keys:
            raise error("pk.fields", "upsert on (%s) needs a primary key or unique index on exactly those columns of %s; "
                        "it has: %s" % (", ".join(c.pkFields), c.table,
                                        "; ".join("(%s)" % ", ".join(sorted(k)) for k in keys if k) or "none"))
    return table


@SINKS.register("jdbc")
class JdbcSink(Sink):
    Config = JdbcSinkConfig

    def __init__(self, name, config, **wiring):
        super().__init__(name, config, **wiring)
        self.counters = Counters("SINK", SINK_COUNTERS + ("DeadLetterCount",))
        self.engine: sa.Engine | None = None
        self.table: sa.Table | None = None
        self.dialect = ""
        self.converters: dict = {}
        self.json_columns: JsonColumns | None = None
        self.copy = False
        self.text_decimals: set = set()
        self.statements: dict = {}
        self.dead_letters = None

    # -- start: reflect the table ---------------------------------------------------------

    def _error(self, key: str, message: str) -> ConfigError:
        place = getattr(self.config, "place", None)
        return place.error(key, message) if place else ConfigError("sink %s: %s: %s" % (self.name, key, message))

    def start(self) -> None:
        c = self.config
        if not hasattr(c, "engine_url"):        # built in code rather than from a file
            c.validate(Place("<config>", "sink " + self.name, {}))
        self.engine = make_engine(c.engine_url)
        self.dialect = self.engine.dialect.name
        if c.deadLetterFile:
            self.dead_letters = DeadLetterFile(c.deadLetterFile)
            self.dead_letters.open()
        if c.reflected is not None:
            self._use(c.reflected)
        super().start()

    def _where(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def _use(self, table: sa.Table) -> None:
        c = self.config
        self.converters = {n: column_converter(table.columns[n], self.dialect, "%s.%s" % (c.table, n))
                           for n in (c.whitelist or table.columns.keys())}
        self.statements = {}
        self.table = table
        names = list(self.converters)
        self.json_columns, self.text_decimals = None, set()
        if c.format == "json":
            cols = JsonColumns(table, names, self.dialect, bool(c.whitelist), c.pkFields if c.mode == "upsert" else [])
            self.json_columns = cols if cols.ok else None
            if cols.ok:
                self.text_decimals = {col.name for col in cols.columns if col.kind == "decimal" and col.decimal is None}
            else:
                log.info("sink %s: JSON bodies read a row at a time (column %s is of a type read that way)", self.name,
                         next(col.name for col in cols.columns if col.kind is None))
        # inserts of the columns read whole: PostgreSQL COPY, MySQL/MariaDB VALUES text built by
        # Arrow (PyMySQL connections), not parameters row by row
        self.copy = self.json_columns is not None and c.mode == "insert" and (
            self.dialect == "postgresql" or self.dialect in ("mysql", "mariadb") and self.engine.dialect.driver == "pymysql")
        log.info("sink %s: writing to table %s on %s (%s%s%s)", self.name, c.table, self._where(), c.mode,
                 " on " + ", ".join(c.pkFields) if c.mode == "upsert" else "",
                 "; JSON bodies read a column at a time" + (
                     (", written with COPY" if self.dialect == "postgresql" else ", written as INSERT text built by Arrow")
                     if self.copy else "")
                 if self.json_columns is not None else "")

    # -- events -> rows -------------------------------------------------------------------

    def _convert(self, record: dict) -> dict:
        out = {}
        converters = self.converters
        for key, value in record.items():
            conv = converters.get(key)
            if conv is None:
                if self.config.whitelist:
                    continue
                raise _Reject("no column %s.%s" % (self.config.table, key), key)
            try:
                out[key] = conv(value)
            except ValueError as exc:
                raise _Reject(str(exc), key) from None
        if not out:
            raise _Reject("no fields to write", None)
        if self.config.mode == "upsert":
            for k in self.config.pkFields:
                if out.get(k) is None:
                    raise _Reject("column %s.%s: an upsert needs its key value" % (self.config.table, k), k)
        return out

    def _records(self, batch, events=None):
        """(event index, row index or None, record | _Reject) for every row of the batch
        (json: of the events at these indices only, if given)."""
        if self.config.format == "json":
            bodies = batch.bodies()
            for i in range(len(batch)) if events is None else events:
                body = bodies[int(i)].as_py()
                try:
                    record = json.loads(body, parse_float=Decimal)
                except ValueError as exc:
                    yield i, None, _Reject("malformed JSON: %s" % exc, None)
                    continue
                yield i, None, record if isinstance(record, dict) else _Reject(
                    "not a JSON object but %s" % type(record).__name__, None)
            return
        offsets = batch.offsets
        for i in range(len(batch)):
            start, end = int(offsets[i]), int(offsets[i + 1])
            try:
                table = pa.ipc.open_stream(batch.data.slice(start, end - start)).read_all()
            except (pa.ArrowException, OSError) as exc:
                yield i, None, _Reject("not an Arrow IPC stream: %s" % exc, None)
                continue
            for j, record in enumerate(table.to_pylist()):
                yield i, j, record

    def _rows(self, batch, events=None) -> tuple[list[_Row], list]:
        rows, dead = [], []
        arrow = self.config.format == "arrow"
        for i, j, record in self._records(batch, events):
            source = (i, j, record if arrow else None)
            if isinstance(record, _Reject):
                dead.append(([source], str(record), record.column))
                continue
            try:
                rows.append(_Row(self._convert(record), [source]))
            except _Reject as exc:
                dead.append(([source], str(exc), exc.column))
        return rows, dead

    def _prepare(self, batch) -> tuple[list[_Row], list, list]:
        """The batch as rows for executemany, dead letters, and blocks (column names,
        RecordBatch of values, event indices) for COPY: JSON bodies are read a column at a
        time where they can be (jdbcjson), the rest a row at a time."""
        parsed = self.json_columns.parse(batch) if self.json_columns is not None else None
        if parsed is None:
            rows, dead = self._rows(batch)
            return (self._merge_by_key(rows) if self.config.mode == "upsert" else rows), dead, []
        rows, dead = self._rows(batch, parsed.slow) if len(parsed.slow) else ([], [])
        blocks = []
        for names, events in parsed.groups():
            values = parsed.values.select(names).take(events)
            if self.copy:
                blocks.append(_Block(names, values, events))
                continue
            rows += [_Row(v, [(int(i), None, None)]) for v, i in zip(self._dicts(values), events)]
        if self.config.mode == "upsert":
            rows.sort(key=lambda r: r.sources[0][0])        # later events win, as they came
            rows = self._merge_by_key(rows)
        return rows, dead, blocks

    def _dicts(self, values: pa.RecordBatch) -> list[dict]:
        dicts = values.to_pylist()
        texts = [n for n in values.schema.names if n in self.text_decimals]
        for d in dicts if texts else ():
            for n in texts:                   # NUMERIC of any precision, read as its text
                if d[n] is not None:
                    d[n] = Decimal(d[n])
        return dicts

    def _merge_by_key(self, rows: list[_Row]) -> list[_Row]:
        """Rows of a batch with the same key become one, later values winning: what the
        upserts one after the other would leave, in one statement a database accepts."""
        pk = self.config.pkFields
        merged: dict = {}
        for row in rows:
            key = tuple(row.values[k] for k in pk)
            first = merged.get(key)
            if first is None:
                merged[key] = row
            else:
                first.values.update(row.values)
                first.sources.extend(row.sources)
        return list(merged.values())

    # -- rows -> database -----------------------------------------------------------------

    def _statement(self, columns: frozenset):
        stmt = self.statements.get(columns)
        if stmt is not None:
            return stmt
        pk = self.config.pkFields
        if self.config.mode == "insert":
            stmt = self.table.insert()
        elif self.dialect in ("postgresql", "sqlite"):
            if self.dialect == "postgresql":
                from sqlalchemy.dialects.postgresql import insert
            else:
                from sqlalchemy.dialects.sqlite import insert
            stmt = insert(self.table)
            update = {c: stmt.excluded[c] for c in sorted(columns) if c not in pk}
            stmt = (stmt.on_conflict_do_update(index_elements=pk, set_=update) if update
                    else stmt.on_conflict_do_nothing(index_elements=pk))
        else:
            from sqlalchemy.dialects.mysql import insert
            stmt = insert(self.table)
            update = {c: stmt.inserted[c] for c in sorted(columns) if c not in pk} or {pk[0]: stmt.inserted[pk[0]]}
            stmt = stmt.on_duplicate_key_update(update)
        self.statements[columns] = stmt
        return stmt

    def _write(self, conn, emit, rows) -> list:
        """emit(conn, rows) in a savepoint; if the database refuses some of the rows (a list
        of _Row or a _Block), bisect to find them. Returns the refused rows as dead letters;
        raises on any other error."""
        savepoint = conn.begin_nested()
        try:
            emit(conn, rows)
        except sa.exc.DBAPIError as exc:
            if not is_row_error(exc, self.dialect):
                raise
            savepoint.rollback()
            if len(rows) == 1:
                reason, column = db_reason(exc)
                sources = rows.sources if isinstance(rows, _Block) else rows[0].sources
                return [(sources, "table %s: %s" % (self.config.table, reason), column)]
            half = len(rows) // 2
            return self._write(conn, emit, rows[:half]) + self._write(conn, emit, rows[half:])
        savepoint.commit()
        return []

    def _copy(self, conn, block: _Block) -> None:
        """PostgreSQL: the block as CSV, written by Arrow, through COPY."""
        cols = []
        for a in block.values.columns:
            if pa.types.is_binary(a.type):          # bytea's hex form
                a = pa.array([None if b is None else "\\x" + b.hex() for b in a.to_pylist()], pa.string())
            cols.append(a)
        buf = pa.BufferOutputStream()
        pacsv.write_csv(pa.RecordBatch.from_arrays(cols, names=block.names), buf, pacsv.WriteOptions(include_header=False))
        q = self.engine.dialect.identifier_preparer
        # sent without parameters: a % the preparer doubled in a name must be single again
        sql = ("COPY %s (%s) FROM STDIN (FORMAT csv)" % (q.format_table(self.table), ", ".join(q.quote(n) for n in block.names))
               ).replace("%%", "%")
        raw = conn.connection.driver_connection
        try:
            with raw.cursor() as cur, cur.copy(sql) as copy:
                copy.write(buf.getvalue())
        except conn.dialect.loaded_dbapi.Error as exc:
            raise sa.exc.DBAPIError.instance(sql, None, exc, conn.dialect.loaded_dbapi.Error) from None

    def _mysql_insert(self, conn, block: _Block) -> None:
        """MySQL/MariaDB: the block as multi-row INSERT statements whose VALUES text Arrow
        builds a column at a time (what PyMySQL's executemany builds value by value)."""
        from pymysql.constants.SERVER_STATUS import SERVER_STATUS_NO_BACKSLASH_ESCAPES
        raw = conn.connection.driver_connection
        backslashes = not raw.server_status & SERVER_STATUS_NO_BACKSLASH_ESCAPES
        cols = [_mysql_literals(a, backslashes) for a in block.values.columns]
        rows = pc.binary_join_element_wise(_text("("), *_interleave(cols, _text(", ")), _text("),"), _text(""))
        q = self.engine.dialect.identifier_preparer
        head = ("INSERT INTO %s (%s) VALUES " % (q.format_table(self.table), ", ".join(q.quote(n) for n in block.names))
                ).replace("%%", "%").encode()
        ends = np.frombuffer(rows.buffers()[1], np.int32, len(rows) + 1, rows.offset * 4)
        data = rows.buffers()[2]
        start = 0
        try:
            with raw.cursor() as cur:
                while start < len(rows):
                    # statements of about 1 MB, as PyMySQL's executemany makes them
                    stop = max(start + 1, int(np.searchsorted(ends, ends[start] + (1 << 20), "right")) - 1)
                    cur.execute(head + data.slice(int(ends[start]), int(ends[stop] - ends[start]) - 1).to_pybytes())
                    start = stop
        except conn.dialect.loaded_dbapi.Error as exc:
            raise sa.exc.DBAPIError.instance("INSERT INTO %s" % self.config.table, None, exc,
                                             conn.dialect.loaded_dbapi.Error) from None

    def deliver(self, batch) -> None:
        c = self.config
        written = 0
        try:
            if self.table is None:
                self._use(sink_table(self.engine, c, self._error))
            rows, dead, blocks = self._prepare(batch)
            total = sum(len(r.sources) for r in rows) + len(dead) + sum(len(b) for b in blocks)
            groups: dict = {}
            for row in rows:
                groups.setdefault(frozenset(row.values), []).append(row)
            with self.engine.begin() as conn:           # one transaction per batch
                for block in blocks:
                    dead += self._write(conn, self._copy if self.dialect == "postgresql" else self._mysql_insert, block)
                for columns, group in groups.items():
                    stmt = self._statement(columns)
                    dead += self._write(conn, lambda conn, rows: conn.execute(stmt, [r.values for r in rows]), group)
                if dead:
                    if self.dead_letters is None:
                        raise EventDeliveryException("sink %s: %d of %d rows rejected and no deadLetterFile, batch rolled "
                                                     "back: %s" % (self.name, sum(len(d[0]) for d in dead), total,
                                                                   "; ".join(d[1] for d in dead[:3])))
                    written = self._dead_letter(batch, dead)     # durable before the commit
        except sa.exc.DBAPIError as exc:
            self.counters.add(ConnectionFailedCount=1)
            self.table = None        # reflected again before the retry: the table may have been altered or dropped
            raise EventDeliveryException("sink %s: table %s: %s: %s; batch rolled back" % (
                self.name, c.table, type(exc.orig).__name__, db_reason(exc)[0])) from None
        if dead:
            self.counters.add(DeadLetterCount=written)
            log.warning("sink %s: %d rows of this batch to %s, first: %s", self.name, written, c.deadLetterFile, dead[0][1])

    def _dead_letter(self, batch, dead: list) -> int:
        items = []
        for sources, reason, column in dead:
            extra = {"column": column} if column else {}
            for i, j, record in sources:
                items.append((i, reason, extra if j is None else dict(extra, row_index=j, row=record)))
        return self.dead_letters.write(batch, items, sink=self.name, table=self.config.table)

    def stop(self) -> None:
        if self.engine is not None:
            self.engine.dispose()
            self.engine = None
        if self.dead_letters is not None:
            self.dead_letters.close()
            self.dead_letters = None
        super().stop()
