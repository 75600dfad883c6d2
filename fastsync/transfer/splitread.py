"""One import split, start to end: a SplitSpec in, a part file (or Kafka messages) out.

run_split picks the split's reader: PostgreSQL's binary COPY (pgread), MySQL's and
MariaDB's text rows (mysqlread), ADBC's SQLite driver (sqliteread), each only where it reads
the columns exactly as the generic path would, else SQLAlchemy's rows (genericread); the
log says which and why. Every reader writes its record batches to a PartSink.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pyarrow as pa
import sqlalchemy as sa

from fastsync.transfer import genericread, mysqlread, pgread, planner, publish, sqliteread, typemap
from fastsync.transfer.spec import ImportError_, ImportJob, SplitSpec, one_line

log = logging.getLogger("fastsync.import")

PROGRESS = None     # rows written per split, shared with the forked split processes (on a terminal)


def open_part(job: ImportJob, path: str, schema: pa.Schema, fs_url: str | None = None, hints: list | None = None):
    """A split's writer (write_batch, close): its part file (on the filesystem of `fs_url`;
    None: local disk), or the Kafka topic. hints: Sqoop text's (typemap.sqoop_hints)."""
    if job.kafka_topic:
        from fastsync.transfer.kafkaout import KafkaWriter
        return KafkaWriter(job.kafka_brokers, job.kafka_topic, schema, job.kafka_format, job.kafka_key, job.kafka_config)
    if fs_url is None:
        return job.output().open(path, schema, hints=hints)
    try:
        out = publish.sink(publish.filesystem(fs_url), path)
    except (OSError, pa.ArrowException) as exc:     # no bucket, no permission: no retry helps
        raise ImportError_("--target-dir %s: %s" % (job.target_dir, publish.reason(exc))) from None
    return job.output().open(out, schema, hints=hints)


def remove_part(spec: SplitSpec) -> None:
    """The split's part file deleted, if written (before the split starts again)."""
    publish.remove_file(None if spec.fs_url is None else publish.filesystem(spec.fs_url), spec.path)


class PartSink:
    """One split's part file: opened with the first batch's schema (where `base` gives a
    type, it wins over a first batch's all-NULL column), later batches cast to it; rows
    counted for the progress line."""

    def __init__(self, spec: SplitSpec, base: pa.Schema | None = None):
        self.job, self.path, self.index, self.schema, self.base = spec.job, spec.path, spec.split.index, base, base
        self.spec = spec
        self.writer = None
        self.rows = 0
        self.hints: list | None = None     # typemap.sqoop_hints of the columns, for Sqoop text

    def discard(self) -> None:
        """Drop what was written: the split starts again (another reader)."""
        if self.writer is not None:
            self.writer.close()
            remove_part(self.spec)
        self.writer, self.rows, self.schema = None, 0, self.base
        if PROGRESS is not None:
            PROGRESS[self.index] = 0

    def write(self, batch: pa.RecordBatch) -> None:
        if self.job.hive_delims is not None and self.job.fmt in ("text", "csv"):
            batch = hive_delims(batch, self.job.hive_delims)
        if self.writer is None:
            self.schema = batch.schema if self.schema is None else pa.schema(
                [bf if pa.types.is_null(sf.type) else sf for sf, bf in zip(self.schema, batch.schema)])
            self.writer = open_part(self.job, self.path, self.schema, self.spec.fs_url, self.hints)
        self.writer.write_batch(batch.cast(self.schema) if batch.schema != self.schema else batch)
        self.rows += len(batch)
        if PROGRESS is not None:
            PROGRESS[self.index] = self.rows

    def close(self, empty_schema: pa.Schema) -> int:
        """Close (an empty split still gets a part file, with `empty_schema`); rows written."""
        if self.writer is None:
            self.writer = open_part(self.job, self.path, empty_schema, self.spec.fs_url, self.hints)
        self.writer.close()
        return self.rows


def hive_delims(batch: pa.RecordBatch, replacement: str) -> pa.RecordBatch:
    """Sqoop's --hive-drop-import-delims / --hive-delims-replacement: \\n, \\r and \\01 in
    string fields dropped or replaced (Hive's text tables have no way to quote them)."""
    import pyarrow.compute as pc
    cols = [pc.replace_substring_regex(c, "[\n\r\x01]", replacement)
            if pa.types.is_string(c.type) or pa.types.is_large_string(c.type) else c for c in batch.columns]
    return pa.RecordBatch.from_arrays(cols, schema=batch.schema)


def run_with_retries(spec: SplitSpec, sink: Callable[..., PartSink] | None = None) -> tuple[int, float]:
    """The split, run again (from the start) after a failure up to --retries times; (rows,
    seconds). An ImportError_ (bad input: no retry helps) ends it at once. `sink`: what the
    rows are written to (default PartSink; fastsync.read_table gives them to its caller)."""
    t0 = time.perf_counter()
    for attempt in range(spec.job.retries + 1):
        try:
            return run_split(spec, sink), time.perf_counter() - t0
        except ImportError_:
            raise
        except Exception as exc:
            if attempt == spec.job.retries:
                raise ImportError_("split %d failed after %d attempt(s): %s"
                                   % (spec.split.index, attempt + 1, one_line(exc))) from None
            if not spec.job.kafka_topic:
                remove_part(spec)
    raise AssertionError("unreachable")


def run_split(spec: SplitSpec, sink: Callable[..., PartSink] | None = None) -> int:
    """Read one split and write its part file (or `sink`); returns the rows written."""
    job, split = spec.job, spec.split
    sink = sink or PartSink
    if job.query:
        return _run_query_split(spec, sink)
    engine = sa.create_engine(job.url)
    try:
        table, cols = planner.reflect(engine, job)
        col = planner.split_column(table, job) if not split.everything else None
        q = sa.select(*cols).select_from(table)
        if job.where:
            q = q.where(sa.text("(%s)" % job.where))
        if col is not None:
            cond, params = split.where(engine.dialect.identifier_preparer.quote(col))
            q = q.where(sa.text("(%s)" % cond).bindparams(**params))
        q = planner.incremental_where(q, table, job, spec.incremental)
        known = [typemap.arrow_type(c) for c in cols]
        names = [c.name for c in cols]
        part = sink(spec)
        part.hints = typemap.sqoop_hints(cols)
        if job.sqoop_avro:
            from fastsync.transfer.sqoopavro import column_specs
            part.hints = column_specs(cols, part.hints, engine.dialect.name)
        why = "--no-fast-path"
        if engine.dialect.name == "postgresql" and job.fast_path:
            copy_plan, why = pgread.table_plan(engine, cols)
            if copy_plan is not None:
                log.info("%s split %d: binary COPY, decoded natively", job.table, split.index)
                return pgread.read_table(spec, engine, q, copy_plan, known, cols, part)
        elif engine.dialect.driver == "pymysql" and job.fast_path:
            kinds, why = mysqlread.table_kinds(cols)
            if kinds is not None:
                n = mysqlread.read(spec, engine, q, kinds, pa.schema(list(zip(names, known))), part)
                if n is not None:
                    log.info("%s split %d: read as MySQL text rows, decoded natively", job.table, split.index)
                    return n
                why = "the connection's settings (see the DEBUG log)"
        elif engine.dialect.name == "sqlite" and job.fast_path:
            if any(typemap.column_plan(c)[1] is not None for c in cols):
                why = "a column converted value by value"
            elif any(isinstance(c.type, sa.Numeric) and not isinstance(c.type, sa.Float) and c.type.scale is None
                     for c in cols):
                why = "a NUMERIC(p) without a scale"      # read with 10 places, then rescaled
            else:
                n, why = sqliteread.read_split(spec, engine, q, names, known, part)
                if n is not None:
                    log.info("%s split %d: read as Arrow by ADBC's SQLite driver", job.table, split.index)
                    return n
        elif job.fast_path:
            why = "no native reader for %s" % engine.dialect.name
        log.info("%s split %d: generic path, read through SQLAlchemy (%s)", job.table, split.index, why)
        return genericread.read_table(spec, engine, q, cols, part)
    finally:
        engine.dispose()


def _run_query_split(spec: SplitSpec, sink: Callable[..., PartSink]) -> int:
    """A --query split: column types come from the sample planning took (no table to reflect)."""
    job, split, schema = spec.job, spec.split, spec.schema
    engine = sa.create_engine(job.url)
    cond, params = split.where(job.split_by) if job.split_by else ("1 = 1", {})
    part = sink(spec, schema)
    if spec.query_oids:                   # PostgreSQL's REAL (oid 700) is Java's Float in Sqoop text
        part.hints = ["float32" if oid == 700 else None for oid in spec.query_oids]
    try:
        stmt = sa.text(planner.query_sql(job, cond)).bindparams(**params)
        n = _query_native(spec, engine, stmt, part)
        if n is not None:
            return n
        return genericread.read_query(spec, engine, stmt, schema, part)
    finally:
        engine.dispose()


def _query_native(spec: SplitSpec, engine, stmt, part: PartSink) -> int | None:
    """A --query split read by the table path's native readers, into the column types the
    sample gave; None when they can't read it exactly as the generic path would (nothing
    written then)."""
    schema = spec.schema
    if not spec.job.fast_path or schema is None:
        return None
    if engine.dialect.name == "postgresql":
        return pgread.read_query(spec, engine, stmt, schema, part)
    if engine.dialect.driver == "pymysql":
        kinds = mysqlread.query_kinds(schema)
        if kinds is None:
            return None
        n = mysqlread.read(spec, engine, stmt, kinds, schema, part)
        if n is not None:
            log.info("--query split %d: read as MySQL text rows, decoded natively", part.index)
        return n
    if engine.dialect.name == "sqlite":
        n, why = sqliteread.read_split(spec, engine, stmt, schema.names, list(schema.types), part)
        log.info("--query split %d: %s", part.index, "read as Arrow by ADBC's SQLite driver" if n is not None
                 else "generic path (%s)" % why)
        return n
    return None
