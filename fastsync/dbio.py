"""Databases, as import, export and the `jdbc` sink all use them: engines, the one table
reflection, the database's error messages, and a table's keys.

Shared by both halves (the transfer half and the agent's jdbc sink), so it imports neither.
"""
from __future__ import annotations

import logging
import re

import sqlalchemy as sa

CONNECT_TIMEOUT = 10   # seconds, for the drivers that take connect_timeout
# MySQL/MariaDB errors caused by the row's data (the driver maps some of them to
# OperationalError, so the class alone can't tell a bad row from a broken server)
MYSQL_ROW_ERRORS = frozenset({
    1048, 1062, 1263, 1264, 1265, 1292, 1364, 1366, 1367, 1406, 1411, 1451, 1452, 1586, 1690, 1859,
    3819, 4025})


class _QuietAbortedPipeline(logging.Filter):
    """psycopg warns when an executemany ends with its pipeline aborted; here that is a
    refused row, which the sink reports itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().endswith("pipeline aborted")


def make_engine(url: sa.URL) -> sa.Engine:
    """An engine with bounded connect time, parameters kept out of error messages, and
    sessions set up so writes are exact (MySQL: strict mode, UTC; SQLite: real savepoints)."""
    backend = url.get_backend_name()
    args = {}
    if backend in ("postgresql", "mysql", "mariadb") and "connect_timeout" not in url.query:
        args["connect_timeout"] = CONNECT_TIMEOUT
    engine = sa.create_engine(url, pool_pre_ping=True, hide_parameters=True, connect_args=args)
    if backend == "postgresql" and not any(isinstance(f, _QuietAbortedPipeline) for f in logging.getLogger("psycopg").filters):
        logging.getLogger("psycopg").addFilter(_QuietAbortedPipeline())
    if backend in ("mysql", "mariadb"):
        @sa.event.listens_for(engine, "connect")
        def _session(dbapi_conn, _record):
            with dbapi_conn.cursor() as cur:
                cur.execute("SET SESSION time_zone = '+00:00', "
                            "sql_mode = TRIM(BOTH ',' FROM CONCAT(@@SESSION.sql_mode, ',STRICT_ALL_TABLES'))")
    elif backend == "sqlite":
        # pysqlite's legacy transaction handling breaks SAVEPOINT: emit BEGIN ourselves
        @sa.event.listens_for(engine, "connect")
        def _no_implicit_begin(dbapi_conn, _record):
            dbapi_conn.isolation_level = None

        @sa.event.listens_for(engine, "begin")
        def _begin(conn):
            conn.exec_driver_sql("BEGIN")
    return engine


def is_row_error(exc: sa.exc.DBAPIError, dialect: str) -> bool:
    """Did the database refuse this data (so another row may pass), rather than fail?"""
    if exc.connection_invalidated:
        return False
    orig = exc.orig
    args: tuple = getattr(orig, "args", ())
    if dialect in ("mysql", "mariadb") and args and args[0] in MYSQL_ROW_ERRORS:
        return True                               # (many of them have the generic SQLSTATE HY000)
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if isinstance(state, str) and len(state) == 5:
        return state[:2] in ("22", "23")          # data exception, integrity constraint violation
    return dialect not in ("mysql", "mariadb") and isinstance(exc, (sa.exc.IntegrityError, sa.exc.DataError))


# how PostgreSQL, MySQL/MariaDB and SQLite name a column in their messages
_COLUMN_NAMED = re.compile(r'column "([^"]+)"|column (?:`[^`]*`\.)*`([^`]+)`|(?:column|field) \'([^\']+)\''
                           r'|constraint failed: (?:\w+\.)?(\w+)$', re.I)


def db_reason(exc: BaseException) -> tuple[str, str | None]:
    """The database's message on one line, and the column it names if any (`exc`: a
    SQLAlchemy DBAPIError or the driver's own exception)."""
    orig = getattr(exc, "orig", exc)
    args: tuple = getattr(orig, "args", ())
    if len(args) >= 2 and isinstance(args[0], int):
        text = "%s (error %d)" % (args[1], args[0])
    else:
        text = str(orig).split("\nCONTEXT:")[0]
    text = " ".join(text.split())
    column = getattr(getattr(orig, "diag", None), "column_name", None)
    if column is None:
        m = _COLUMN_NAMED.search(text)
        column = next((g for g in m.groups() if g), None) if m else None
    return text, column


def reason(exc: BaseException) -> str:
    """db_reason's message alone (the exception's class name when it has none)."""
    return db_reason(exc)[0] or type(exc).__name__


# -- tables ------------------------------------------------------------------------------

def split_name(name: str) -> tuple[str | None, str]:
    """[schema.]table -> (schema or None, table)."""
    schema, _, table = name.strip().rpartition(".")
    return schema or None, table


def qualified(table: sa.Table) -> str:
    """schema.name, or name."""
    return "%s.%s" % (table.schema, table.name) if table.schema else table.name


def quote_name(engine, name: str) -> str:
    """A [schema.]name quoted for the engine's dialect."""
    prep = engine.dialect.identifier_preparer
    return ".".join(prep.quote(p) for p in name.split("."))


def reflect(engine, name: str, exact_floats: bool = True) -> sa.Table:
    """The table `name` ([schema.]table), reflected, with its column names as the database
    has them: SQLAlchemy's MySQL/MariaDB reflection reads SHOW CREATE TABLE and leaves a
    backtick in a name doubled (`a``b` reflects as a``b, a column that does not exist).
    `exact_floats`: MySQL's DOUBLE reflects as a Decimal-returning type whose processor
    rounds to 10 places (1e-300 became 0); the driver's float is the exact value, so the
    float columns are read (and converted) as floats. NoSuchTableError if there is none."""
    schema, table = split_name(name)
    t = sa.Table(table, sa.MetaData(), schema=schema, autoload_with=engine,
                 listeners=[("column_reflect", _unescape_backticks)])
    if exact_floats:
        for c in t.c:
            if isinstance(c.type, sa.Float) and getattr(c.type, "asdecimal", False):
                c.type.asdecimal = False
    return t


def _unescape_backticks(inspector, table, column_info) -> None:
    if inspector.dialect.name in ("mysql", "mariadb"):
        column_info["name"] = column_info["name"].replace("``", "`")


def unique_keys(table: sa.Table) -> list[set]:
    """The column sets of a table's primary key, unique indexes and unique constraints."""
    keys = [{col.name for col in table.primary_key.columns}]
    keys += [{col.name for col in ix.columns} for ix in table.indexes if ix.unique]
    keys += [{col.name for col in uc.columns} for uc in table.constraints if isinstance(uc, sa.UniqueConstraint)]
    return keys
