"""`fastsync export`: the part files `fastsync import` writes, back into a table.

All or nothing: the files are loaded into a staging table (a copy of the target's columns,
created for the export, or `--staging-table`), each writer (`-m`) in its own connection,
then moved into the target in ONE transaction (insert, `--update-key` upsert or update)
and the automatic staging table is dropped. A failed export leaves the target as it was
and says which file, row and column failed and why.

Values go through `sqlvalues.column_converter` (exact: decimals never rounded, text length
checked, NULL into NOT NULL refused) before anything is written; text formats (csv, Sqoop
text) are read as text and parsed per column type. The files are read by formats.py, the
table reflected by dbio.reflect.
"""
from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import logging
import queue
import re
import threading
import time
import uuid
from dataclasses import dataclass, field

import pyarrow as pa
import sqlalchemy as sa

from fastsync import dbio
from fastsync.progress import Counter, Progress, Update
from fastsync.transfer.formats import FileError, Kinds, PartFile, find_files, file_columns, read_rows
from fastsync.transfer.loader import LOAD_DATA_ROWS, Loader, column_kind
from fastsync.transfer.localinfile import guard as guard_local_infile
from fastsync.transfer.sqlvalues import column_converter, show
from fastsync.transfer.textfile import TextOptions
from fastsync.transfer.typemap import sqoop_hints

log = logging.getLogger("fastsync.export")

_CHUNK_ROWS = 250000                     # rows per staging table when the move overlaps the loading


class ExportError(Exception):
    """An export failed; the message says where (flag, file, row, column)."""


@dataclass
class ExportJob:
    url: sa.engine.URL
    table: str
    export_dir: str
    columns: list[str] | None = None
    mappers: int = 1
    text: TextOptions = field(default_factory=TextOptions)
    staging_table: str | None = None
    clear_staging_table: bool = False
    update_key: list[str] | None = None
    update_mode: str = "updateonly"
    batch: bool = False                  # the generic executemany path, also where a bulk path exists
    fast_path: bool = True
    cluster: str | None = None           # --cluster: tcp://HOST:PORT or local:N (cluster.py)
    password_file: str | None = None     # what the workers of a tcp:// --cluster read the password from


# -- files -------------------------------------------------------------------------------

def _from_text(v: str, kind, column: sa.Column | None = None):
    """A value read as text (csv, Sqoop text) for a column of python type `kind`: bytes
    from hex (Sqoop's spaced `de ad be ef` too), durations from microseconds; Sqoop's
    renderings: `true`/`false` into a tinyint/bit/smallint (MariaDB's tinyint(1) as
    Connector/J reads it), a timestamp with time zone written without an offset read in the
    client's zone (TZ; Sqoop writes local time); other kinds are parsed by sqlvalues."""
    if kind is int and v in ("true", "false") and column is not None and _small_int(column):
        return int(v == "true")
    if kind is dt.datetime and column is not None and getattr(column.type, "timezone", False):
        return _local_time(v)
    if kind is bytes:
        try:
            return bytes.fromhex(v)
        except ValueError:
            raise ValueError("expected bytes as hex, got %s" % show(v)) from None
    if kind is dt.timedelta and re.fullmatch(r"-?\d+", v.strip()):
        return int(v)
    return v


def _small_int(column: sa.Column) -> bool:
    return type(column.type).__name__.upper() in ("TINYINT", "BIT", "SMALLINT", "BOOLEAN")


def _local_time(v: str):
    """Timestamp text without an offset as the client's local time (as Sqoop renders and
    reads a timestamptz); text with one (fastsync's `Z`) as it says."""
    try:
        t = dt.datetime.fromisoformat(v.strip())
    except ValueError:
        return v                       # sqlvalues says what is wrong with it
    return t if t.tzinfo is not None else t.astimezone()


# -- the table ---------------------------------------------------------------------------

def reflect(engine, name: str, flag: str) -> sa.Table:
    try:
        return dbio.reflect(engine, name)
    except sa.exc.NoSuchTableError:
        raise ExportError("%s %s: no such table" % (flag, name)) from None


def _converters(table: sa.Table, columns: list[str], dialect: str) -> tuple[dict, dict]:
    """(converters of typed values, converters of text values: csv and Sqoop text)."""
    typed = {c: column_converter(table.c[c], dialect, "%s.%s" % (table.name, c)) for c in columns}
    hints = dict(zip(columns, sqoop_hints([table.c[c] for c in columns])))
    return typed, {c: _text_converter(typed[c], column_kind(table.c[c]), "%s.%s" % (table.name, c), hints[c] == "bool",
                                      table.c[c]) for c in columns}


def _text_converter(conv, kind, label: str, boolean: bool = False, column: sa.Column | None = None):
    """`boolean`: a MySQL TINYINT(1) / BIT(1), which Sqoop's text (and fastsync's) holds as true/false."""
    def convert(v):
        if v is None:
            return conv(None)
        if boolean and v in ("true", "false"):
            v = "1" if v == "true" else "0"
        try:
            v = _from_text(v, kind, column)
        except ValueError as exc:
            raise ValueError("column %s: %s" % (label, exc)) from None
        return conv(v)
    return convert


def target_kinds(table: sa.Table, columns: list[str]) -> Kinds:
    """What the readers need to know of the target's columns: their python types, and which
    hold timestamps with a time zone (Sqoop's Avro/Parquet timestamps go into those as the
    instant, into the others as the wall clock)."""
    kinds = Kinds({c: column_kind(table.c[c]) for c in columns})
    kinds.zoned = frozenset(c for c in columns if getattr(table.c[c].type, "timezone", False))
    return kinds


def check_columns(table: sa.Table, files: list[PartFile], job: ExportJob) -> list[str]:
    """The columns to write (the same in every file), checked against the table before
    anything is written."""
    default = job.columns or list(table.c.keys())
    if job.columns:
        missing = [c for c in job.columns if c not in table.c]
        if missing:
            raise ExportError("--columns: table %s has no column %s" % (job.table, ", ".join(missing)))
    columns = None
    for f in files:
        names = file_columns(f, default)
        if job.columns and f.fmt not in ("text",):
            absent = [c for c in job.columns if c not in names]
            if absent:
                raise ExportError("%s: no column %s in the file (--columns)" % (f.name, ", ".join(absent)))
            names = job.columns
        extra = [c for c in names if c not in table.c]
        if extra:
            raise ExportError("%s: column %s is not a column of table %s" % (f.name, ", ".join(extra), job.table))
        if columns is None:
            columns = names
        elif set(names) != set(columns):
            raise ExportError("%s: columns %s differ from %s's %s"
                              % (f.name, ",".join(names), files[0].name, ",".join(columns)))
    needed = [c.name for c in table.c if not c.nullable and c.server_default is None and c.name not in columns
              and not (c.autoincrement is True or (c.primary_key and c.autoincrement == "auto"
                                                    and isinstance(c.type, sa.Integer) and len(table.primary_key.columns) == 1))]
    if needed:
        raise ExportError("table %s: NOT NULL column %s (no default) is in none of the files"
                          % (job.table, ", ".join(needed)))
    return columns


# -- writing -----------------------------------------------------------------------------

class _RowError(ExportError):
    pass


def convert_batch(f: PartFile, first_row: int, values: dict, converters: dict, columns: list[str]) -> list[tuple]:
    """A batch's columns converted to row tuples; _RowError names file, row and column."""
    out = []
    for c in columns:
        conv, col = converters[c], values[c]
        try:
            out.append([conv(v) for v in col])
        except ValueError:
            for i, v in enumerate(col):
                try:
                    conv(v)
                except ValueError as exc:
                    raise _RowError("%s row %d: %s" % (f.name, first_row + i, exc)) from None
            raise
    return list(zip(*out))


class _Stopped(ExportError):
    """A writer stopped because another part of the export failed."""


def _write_files(engine, stage: sa.Table | None, files: list[PartFile], columns: list[str], converters: dict,
                 kinds: dict, job: ExportJob, counter: Counter, stop: threading.Event | None = None,
                 chunks=None) -> None:
    """Loads `files` into `stage` over one connection, committed at the end. With `chunks`
    (new_stage, hand_over, a list the loader is added to): into a new staging table every _CHUNK_ROWS rows instead, each
    committed and handed over (to be moved) when full, and the last at the end."""
    if chunks is not None:
        new_stage, hand_over, live = chunks
        stage = new_stage()
    loader = Loader(engine, stage, columns, job)
    if chunks is not None:
        live.append(loader)
    in_stage = 0
    try:
        for f in files:
            try:
                convs = converters[f.fmt in ("csv", "text")]
                whole, last = 0, 0

                def flush():
                    # the rows load_arrow collected are the last loader.pending ones read
                    held = loader.pending
                    if held:
                        try:
                            loader.flush()
                        except Exception as exc:
                            raise ExportError("%s rows %d..%d: %s" % (f.name, last - held + 1, last, dbio.reason(exc))) from None
                for first, values in read_rows(f, columns, job.text, kinds):
                    if stop is not None and stop.is_set():
                        raise _Stopped("stopped")
                    if chunks is not None and in_stage >= _CHUNK_ROWS:
                        flush()
                        loader.commit()
                        hand_over(loader.stage)
                        loader.aim(new_stage())
                        in_stage = 0
                    n = len(values) if isinstance(values, pa.RecordBatch) else len(values[columns[0]])
                    try:
                        if isinstance(values, pa.RecordBatch):
                            if loader.load_arrow(values):
                                counter.add(n)
                                whole, last, in_stage = whole + n, first + n - 1, in_stage + n
                                if loader.pending >= LOAD_DATA_ROWS:
                                    flush()
                                continue
                            values = {c: values.column(c).to_pylist() for c in columns}
                        flush()
                        rows = convert_batch(f, first, values, convs, columns)
                        loader.load(rows)
                    except (ExportError, FileError):
                        raise
                    except Exception as exc:
                        raise ExportError("%s rows %d..%d: %s" % (f.name, first, first + n - 1, dbio.reason(exc))) from None
                    counter.add(n)
                    last, in_stage = first + n - 1, in_stage + n
                flush()
                if whole:
                    log.info("%s: %d rows checked a column at a time and written by Arrow as CSV for %s", f.name, whole, loader.how.upper())
            except (ExportError, FileError):
                raise
            except Exception as exc:          # a file that can't be read
                raise ExportError("%s: %s" % (f.name, dbio.reason(exc))) from None
        loader.commit()
        if chunks is not None and in_stage:
            hand_over(loader.stage)
    except BaseException:
        # not back into the pool: its rollback on a connection the server killed would log a
        # traceback (the error is reported once, by the caller)
        loader.conn.invalidate()
        raise
    finally:
        loader.close()


# -- staging and the move ----------------------------------------------------------------

def _create_stage(engine, target: sa.Table, job: ExportJob, name: str | None = None) -> sa.Table:
    """The automatic staging table. It is only a buffer (the move into the target is the
    one transaction that counts, and it is dropped whatever happens), so it skips what makes
    writes durable: UNLOGGED on PostgreSQL (no WAL), MyISAM on MariaDB/MySQL (no redo or
    undo log), and no keys."""
    name = name or "%s_stage_%s" % (target.name[:40], uuid.uuid4().hex[:8])
    if engine.dialect.name == "postgresql":
        ddl = "CREATE UNLOGGED TABLE %s (LIKE %s INCLUDING DEFAULTS)" % (
            dbio.quote_name(engine, _qualified(target.schema, name)), dbio.quote_name(engine, _qualified(target.schema, target.name)))
        with engine.begin() as conn:
            conn.exec_driver_sql(ddl)
    else:
        engines = [{"mysql_engine": "MyISAM"}, {}] if engine.dialect.name in ("mysql", "mariadb") else [{}]
        for i, options in enumerate(engines):
            md = sa.MetaData()
            sa.Table(name, md, *[sa.Column(c.name, c.type, nullable=c.nullable) for c in target.c],
                     schema=target.schema, **options)
            try:
                md.create_all(engine)
                break
            except sa.exc.OperationalError as exc:     # MyISAM missing or disabled: the default engine
                if i == len(engines) - 1:
                    raise
                log.info("staging table without MyISAM: %s", dbio.reason(exc))
    return reflect(engine, _qualified(target.schema, name), "--staging-table")


def _staging_table(make):
    try:
        return make()
    except sa.exc.SQLAlchemyError as exc:
        raise ExportError("making the staging table: %s" % dbio.reason(exc)) from None


def _qualified(schema, name):
    return "%s.%s" % (schema, name) if schema else name


def _prepare_stage(engine, target: sa.Table, job: ExportJob) -> tuple[sa.Table, bool]:
    """(staging table, created here)."""
    if not job.staging_table:
        return _create_stage(engine, target, job), True
    stage = reflect(engine, job.staging_table, "--staging-table")
    missing = [c for c in target.c.keys() if c not in stage.c]
    if missing:
        raise ExportError("--staging-table %s has no column %s of %s" % (job.staging_table, ", ".join(missing), job.table))
    with engine.begin() as conn:
        if job.clear_staging_table:
            conn.execute(stage.delete())
        elif conn.execute(sa.select(sa.func.count()).select_from(stage)).scalar():
            raise ExportError("--staging-table %s is not empty (use --clear-staging-table)" % job.staging_table)
    return stage, False


def move_sql(engine, target: sa.Table, stage: sa.Table, columns: list[str], job: ExportJob) -> str:
    """The one statement that moves the staging rows into the target."""
    q = engine.dialect.identifier_preparer.quote
    t, s = dbio.quote_name(engine, dbio.qualified(target)), dbio.quote_name(engine, dbio.qualified(stage))
    cols = ", ".join(q(c) for c in columns)
    dialect = engine.dialect.name
    if not job.update_key:
        return "INSERT INTO %s (%s) SELECT %s FROM %s" % (t, cols, cols, s)
    keys = job.update_key
    rest = [c for c in columns if c not in keys]
    if job.update_mode == "allowinsert":
        if dialect in ("mysql", "mariadb"):
            sets = ", ".join("%s = VALUES(%s)" % (q(c), q(c)) for c in rest or keys[:1])
            return "INSERT INTO %s (%s) SELECT %s FROM %s ON DUPLICATE KEY UPDATE %s" % (t, cols, cols, s, sets)
        sets = ", ".join("%s = excluded.%s" % (q(c), q(c)) for c in rest)
        action = "DO UPDATE SET %s" % sets if rest else "DO NOTHING"
        return "INSERT INTO %s (%s) SELECT %s FROM %s WHERE true ON CONFLICT (%s) %s" % (
            t, cols, cols, s, ", ".join(q(k) for k in keys), action)
    if not rest:
        return "SELECT 1"
    on = " AND ".join("%s.%s = fastsync_s.%s" % (t, q(k), q(k)) for k in keys)
    if dialect in ("mysql", "mariadb"):
        sets = ", ".join("%s.%s = fastsync_s.%s" % (t, q(c), q(c)) for c in rest)
        return "UPDATE %s JOIN %s AS fastsync_s ON %s SET %s" % (t, s, on, sets)
    sets = ", ".join("%s = fastsync_s.%s" % (q(c), q(c)) for c in rest)
    return "UPDATE %s SET %s FROM %s AS fastsync_s WHERE %s" % (t, sets, s, on)


def _bulk_move(conn, engine, target: sa.Table, job: ExportJob) -> bool:
    """MariaDB/MySQL, a plain insert into an empty table without foreign keys: with
    unique_checks and foreign_key_checks off, InnoDB inserts into an empty table with
    table-level undo logging and builds its indexes by sorting (duplicate keys still fail
    the statement), as mariadb-import does. The target is read FOR UPDATE first, so no
    other session can add rows before the move commits."""
    if engine.dialect.name not in ("mysql", "mariadb") or job.update_key or target.foreign_keys:
        return False
    t = dbio.quote_name(engine, dbio.qualified(target))
    if conn.exec_driver_sql("SELECT 1 FROM %s LIMIT 1 FOR UPDATE" % t).first() is not None:
        return False
    # left so on this connection: the engine is disposed after the export
    conn.exec_driver_sql("SET SESSION unique_checks = 0, foreign_key_checks = 0")
    return True


def _check_update_key(target: sa.Table, columns: list[str], job: ExportJob) -> None:
    if not job.update_key:
        return
    if job.update_mode not in ("updateonly", "allowinsert"):
        raise ExportError("--update-mode %s: expected updateonly or allowinsert" % job.update_mode)
    for k in job.update_key:
        if k not in target.c:
            raise ExportError("--update-key: table %s has no column %s" % (job.table, k))
        if k not in columns:
            raise ExportError("--update-key: column %s is in none of the files" % k)
    if job.update_mode == "allowinsert":
        if set(job.update_key) not in dbio.unique_keys(target):
            raise ExportError("--update-key %s: allowinsert needs a primary key or unique index on exactly those "
                              "columns of %s" % (",".join(job.update_key), job.table))


# -- the export --------------------------------------------------------------------------

def run_export(job: ExportJob, progress: bool | None = None) -> dict:
    """Load the files, move the rows; figures (rows, moved, files, seconds, rows_per_s, writers)."""
    try:
        if job.cluster:
            from fastsync.transfer import cluster
            with cluster.starting(job.cluster, job.url):       # local:N's workers start while this reads the files
                return _export(job, progress)
        return _export(job, progress)
    except FileError as exc:             # a file that can't be read: it names file and row
        raise ExportError(str(exc)) from None


def export_url(job: ExportJob):
    """The URL the export connects with: the driver settings its loading needs added."""
    url = job.url
    if url.get_backend_name() in ("mysql", "mariadb") and job.fast_path and not job.batch and "local_infile" not in url.query:
        url = url.update_query_dict({"local_infile": "1"})       # PyMySQL refuses LOAD DATA LOCAL without it
    if url.get_backend_name() in ("mysql", "mariadb") and "write_timeout" not in url.query:
        # a server that killed the connection while LOAD DATA LOCAL sends the file may leave
        # the socket open unread for ~100 s; 30 s is the server's own net_read_timeout
        url = url.update_query_dict({"write_timeout": "30"})
    return url


def _export(job: ExportJob, progress: bool | None) -> dict:
    t0 = time.perf_counter()
    files = find_files(job.export_dir)
    url = export_url(job)
    engine = dbio.make_engine(url)
    if url.get_backend_name() in ("mysql", "mariadb"):
        guard_local_infile(engine)            # the server gets only the files our LOAD DATA names
    stage = created = None
    stages: list[sa.Table] = []          # the automatic staging tables of _load_and_move
    try:
        try:
            target = reflect(engine, job.table, "--table")
            columns = check_columns(target, files, job)
            _check_update_key(target, columns, job)
            dialect = engine.dialect.name
            converters = _converters(target, columns, dialect)
            kinds = target_kinds(target, columns)
        except sa.exc.SQLAlchemyError as exc:
            raise ExportError("%s: %s" % (job.url.render_as_string(hide_password=True), dbio.reason(exc))) from None
        counter = Counter()
        writers = 1 if dialect == "sqlite" else min(job.mappers, len(files))
        shown = Progress(lambda: Update(counter.rows, time.perf_counter() - t0), show=progress,
                         name="export-progress").start()
        try:
            if job.cluster:         # the files as tasks on a Dask cluster (cluster.py)
                from fastsync.transfer import cluster
                moved = cluster.run_export_files(engine, target, files, columns, job, counter, progress)
            elif not job.staging_table and not job.update_key and dialect != "sqlite":
                moved = _load_and_move(engine, target, files, columns, converters, kinds, job, counter, writers, stages)
            else:
                stage, created = _staging_table(lambda: _prepare_stage(engine, target, job))
                moved = _load_then_move(engine, target, stage, created, files, columns, converters, kinds, job, counter,
                                        writers, t0)
        finally:
            shown.stop()
    finally:
        for made in stages + ([stage] if created and stage is not None else []):
            _drop_stage(engine, made)
        engine.dispose()
    seconds = time.perf_counter() - t0
    return {"rows": counter.rows, "moved": moved, "files": len(files), "seconds": seconds,
            "rows_per_s": counter.rows / seconds if seconds else 0.0, "writers": writers}


def _move(conn, engine, target: sa.Table, stage: sa.Table, columns: list[str], job: ExportJob, first: bool) -> int:
    """One staging table's rows into the target, in the caller's transaction; the first
    move decides, just before it inserts, whether InnoDB's bulk insert can take them all."""
    try:
        if first and _bulk_move(conn, engine, target, job):
            log.info("%s: the target is empty: moving with InnoDB's bulk insert", job.table)
        t0 = time.perf_counter()
        n = conn.exec_driver_sql(move_sql(engine, target, stage, columns, job)).rowcount
    except sa.exc.SQLAlchemyError as exc:
        raise ExportError("moving the rows from %s into %s: %s" % (dbio.qualified(stage), job.table, dbio.reason(exc))) from None
    log.debug("%s: %d rows moved from %s in %.3f s", job.table, n, dbio.qualified(stage), time.perf_counter() - t0)
    return n


def _load_then_move(engine, target: sa.Table, stage: sa.Table, created: bool, files: list[PartFile], columns: list[str],
                    converters: dict, kinds: dict, job: ExportJob, counter: Counter, writers: int, t0: float) -> int:
    """All files into one staging table (the writers share them out round-robin), then one
    statement moves the rows: for --staging-table, --update-key and SQLite."""
    with cf.ThreadPoolExecutor(max_workers=writers, thread_name_prefix="export") as pool:
        futures = [pool.submit(_write_files, engine, stage, files[i::writers], columns, converters, kinds, job, counter)
                   for i in range(writers)]
        for fut in futures:
            fut.result()
    t1 = time.perf_counter()
    log.info("%s: %d rows loaded into the staging table %s in %.3f s", job.table, counter.rows, dbio.qualified(stage), t1 - t0)
    try:
        with engine.begin() as conn:
            moved = _move(conn, engine, target, stage, columns, job, first=True)
            if not created:
                conn.execute(stage.delete())
    except sa.exc.SQLAlchemyError as exc:
        # the commit, or emptying a given staging table
        raise ExportError("moving the rows from %s into %s: %s" % (dbio.qualified(stage), job.table, dbio.reason(exc))) from None
    log.info("%s: %d rows moved in one transaction in %.3f s", job.table, moved, time.perf_counter() - t1)
    return moved


def _load_and_move(engine, target: sa.Table, files: list[PartFile], columns: list[str], converters: dict, kinds: dict,
                   job: ExportJob, counter: Counter, writers: int, stages: list) -> int:
    """A plain insert through automatic staging tables: the writers load the files (shared
    out round-robin) into staging tables of _CHUNK_ROWS rows, each committed and handed over
    when full, and each handed-over one is moved into the target while the writers go on:
    all the moves are ONE transaction, committed after the last, so the target still
    changes all at once or not at all, but the move overlaps the loading instead of
    following it. A failure on either side stops the other (writers between batches); the
    transaction is rolled back."""
    stop, ready, loaders = threading.Event(), queue.Queue(), []

    def new_stage() -> sa.Table:
        stage = _staging_table(lambda: _create_stage(engine, target, job))
        stages.append(stage)
        return stage

    moved, t0 = 0, time.perf_counter()
    with cf.ThreadPoolExecutor(max_workers=writers, thread_name_prefix="export") as pool:
        futures = [pool.submit(_write_files, engine, None, files[i::writers], columns, converters, kinds, job, counter,
                               stop, (new_stage, ready.put, loaders)) for i in range(writers)]
        conn = trans = None
        try:
            conn = engine.connect()
            trans = conn.begin()
            first = True
            while True:
                try:
                    stage = ready.get(timeout=0.1)
                except queue.Empty:
                    failed = [f for f in futures if f.done() and f.exception() is not None]
                    if failed:
                        failed[0].result()
                    if all(f.done() for f in futures) and ready.empty():    # a writer hands over before it ends
                        break
                    continue
                moved += _move(conn, engine, target, stage, columns, job, first)
                first = False
            try:
                trans.commit()
            except sa.exc.SQLAlchemyError as exc:
                raise ExportError("committing the move into %s: %s" % (job.table, dbio.reason(exc))) from None
        except BaseException:
            stop.set()
            for fut in futures:
                fut.cancel()
            for loader in loaders:
                loader.abort()
            if trans is not None and trans.is_active:
                try:
                    trans.rollback()
                except sa.exc.SQLAlchemyError:     # the connection is gone: so is the transaction
                    conn.invalidate()
            raise
        finally:
            if conn is not None:
                conn.close()
    log.info("%s: %d rows loaded and moved in one transaction in %.3f s (%d staging tables of up to %d rows)",
             job.table, moved, time.perf_counter() - t0, len(stages), _CHUNK_ROWS)
    return moved


def _drop_stage(engine, stage: sa.Table) -> None:
    """Drops the automatic staging table; when the connection dies under the DROP (killed,
    server restarted), once more over a new one (checkfirst: the first may have done it)."""
    for retry in (False, True):
        try:
            stage.drop(engine, checkfirst=retry)
            return
        except sa.exc.SQLAlchemyError as exc:
            if not retry and getattr(exc, "connection_invalidated", False):
                continue
            log.warning("could not drop the staging table %s: %s", dbio.qualified(stage), dbio.reason(exc))
            return
