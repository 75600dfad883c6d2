"""Transfers as functions: `fastsync import|export|merge|list-tables|eval` called from Python,
and `read_table`, an import's rows streamed to the caller as Arrow record batches.

One code path: the keyword arguments become the command line's own argv (Sqoop's flag names
in snake_case: `fields_terminated_by=","` is `--fields-terminated-by ,`), parsed by the
command's parser (fastsync/cli.py: every flag, default and check is the CLI's), and run by the
same functions `fastsync import` runs; an error is a TransferError carrying the one line the
CLI prints after `fastsync: error:`. Nothing is printed and no process title is changed.

    result = fastsync.import_table("sqlite:///shop.db", table="items", target_dir="out", num_mappers=2)
    for batch in fastsync.read_table("postgresql://u@h/db", table="items", password_file="~/.pw"):
        ...
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import queue
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, NoReturn

from fastsync import cli
from fastsync.progress import Update

if TYPE_CHECKING:
    import pandas
    import pyarrow as pa

    from fastsync.transfer.spec import ImportJob, Plan, SplitSpec

__all__ = ["TransferError", "UsageError", "TransferResult", "SplitResult", "EvalResult", "TableReader",
           "TransferProgress", "import_table", "export_files", "merge", "list_tables", "eval", "read_table"]

log = logging.getLogger("fastsync.api")

TransferProgress = Update       # what a progress callback is given: rows, seconds, rows_per_s, per_split
ProgressCallback = Callable[[Update], None]


class TransferError(Exception):
    """A transfer failed, or could not start: the message is the one line `fastsync` prints
    after `fastsync: error:`; `code` is its exit code (2: a usage or configuration error)."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


class UsageError(TransferError):
    """A flag the command does not have, or a value it refuses (argparse's message, as the
    CLI's `fastsync import: error: ...`), or options that don't go together."""

    def __init__(self, message: str, code: int = cli.EXIT_CONFIG):
        super().__init__(message, code)


@dataclasses.dataclass(frozen=True)
class SplitResult:
    """One split of an import: its index, the rows it read (None where not known: a
    `cluster=` run reports states, not rows, for finished splits), its part file and size."""
    index: int
    rows: int | None
    file: str | None = None
    bytes: int | None = None


@dataclasses.dataclass(frozen=True)
class TransferResult:
    """What a transfer did: rows, seconds, the data files it wrote (import, merge) or read
    (export) and their total size, the splits of an import, where the output went, the next
    `last_value` of an incremental import, and every figure the command computed (`figures`:
    e.g. merge's `replaced` and `added`, export's `writers`)."""
    rows: int
    seconds: float
    files: tuple[str, ...] = ()
    bytes: int = 0
    splits: tuple[SplitResult, ...] = ()
    target: str = ""
    last_value: str | None = None
    figures: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


class EvalResult(list):
    """eval's rows (a list of tuples); `columns` their names (empty for a statement that
    returns no rows, whose `rowcount` is the rows it affected; -1 otherwise)."""

    def __init__(self, rows: list[tuple[Any, ...]], columns: list[str], rowcount: int = -1):
        super().__init__(rows)
        self.columns, self.rowcount = columns, rowcount


# -- the command line, from keyword arguments ----------------------------------------------

class _Parser(cli._Parser):
    """The CLI's parser, raising instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise UsageError((message or "").strip() or "exit %d" % status, status)


def _flag_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return os.fspath(value) if isinstance(value, os.PathLike) else str(value)


def _argv(command: str, options: dict[str, Any]) -> tuple[argparse.ArgumentParser, list[str]]:
    """`command`'s parser, and its argv for keyword `options`: a name is a flag's
    (`fields_terminated_by` for --fields-terminated-by, `m` for -m) or a destination's
    (`fast_path=False` for --no-fast-path); True gives a flag that takes no value, False and
    None leave a flag out, a list or tuple is joined with commas."""
    parser = cli.build_parser([command], _Parser)
    # the subcommand's parser, to know which flags take a value (argparse has no public way)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    by_flag: dict[str, argparse.Action] = {}
    by_dest: dict[str, argparse.Action] = {}
    for action in sub._actions:
        for flag in action.option_strings:
            by_flag[flag.lstrip("-").replace("-", "_")] = action
        if action.dest not in by_dest or by_dest[action.dest].nargs == 0 and action.nargs != 0:
            by_dest[action.dest] = action       # fmt="csv": --format, not --as-parquetfile
    argv = [command]
    for name, value in options.items():
        action = by_flag.get(name) or by_dest.get(name)
        if action is None:          # argparse says it, as for the command line
            flag = "--" + name.replace("_", "-")
            argv += [flag] if value is True else [flag, _flag_value(value)]
            continue
        flag = next((f for f in action.option_strings if f.startswith("--")), action.option_strings[0])
        if action.nargs == 0:       # store_true, store_false, store_const
            on = bool(value) if name in by_flag else value == action.const
            if on:
                argv.append(flag)
            continue
        if value is None or value is False:
            continue
        # --flag=value: a value starting with '-' (a separator, a negative number) is a value
        argv.append("%s=%s" % (flag, _flag_value(value)) if flag.startswith("--") else flag)
        if not flag.startswith("--"):
            argv.append(_flag_value(value))
    return parser, argv


def _parse(command: str, options: dict[str, Any]) -> argparse.Namespace:
    from fastsync.transfer import sqoopflags
    parser, argv = _argv(command, options)
    args = parser.parse_args(argv)
    try:
        sqoopflags.apply(args, [command, *argv], {})     # as the command does (cli.parse_args)
    except sqoopflags.SqoopFlagError as exc:
        raise UsageError(str(exc), cli.EXIT_CONFIG) from None
    args.api = True                 # the run functions return their figures, print no summary
    if "log_level" in vars(args) and "log_level" not in options:
        args.log_level = None       # and leave logging as the program set it up (no basicConfig)
    return args


def _call(fn: Callable[[argparse.Namespace], Any], args: argparse.Namespace) -> Any:
    try:
        return fn(args)
    except cli.CliError as exc:
        cls = UsageError if exc.code == cli.EXIT_CONFIG else TransferError
        raise cls(str(exc), exc.code) from None


class _Watch:
    """The `progress` given to the run functions: keeps the last update (its rows per
    split are the import's split figures) and passes each on to the caller's callback."""

    def __init__(self, callback: ProgressCallback | None):
        self.callback = callback
        self.per_split: tuple[int | str, ...] = ()

    def __call__(self, status: object) -> None:
        if not isinstance(status, Update):
            return
        if status.per_split:
            self.per_split = status.per_split
        if self.callback is not None:
            try:
                self.callback(status)
            except Exception:       # the transfer goes on; the callback is not called again
                log.exception("progress callback failed; not called again")
                self.callback = None


def _data_files(directory: str, flag: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The data files of an output directory (as export lists them) and their sizes."""
    from fastsync.transfer.formats import FileError, find_files
    try:
        files = find_files(directory, flag)
    except FileError:
        return (), ()
    sizes = []
    for f in files:
        fs = f.fs
        sizes.append(os.path.getsize(f.path) if fs is None else fs.get_file_info(f.path).size)  # type: ignore[attr-defined]
    return tuple(f.path for f in files), tuple(sizes)


# -- the transfers -------------------------------------------------------------------------

def import_table(connect: str, *, table: str | None = None, query: str | None = None, target_dir: str | os.PathLike[str],
                 num_mappers: int = 1, split_by: str | None = None, format: str = "parquet",
                 progress: ProgressCallback | None = None, **options: Any) -> TransferResult:
    """`fastsync import`: a table (or a `query` with $CONDITIONS) into part files under
    `target_dir`, published atomically. `options` are the other flags of `fastsync import`
    in snake_case (`columns`, `where`, `incremental="append"`, `check_column`, `last_value`,
    `password_file`, `fields_terminated_by`, `cluster="local:2"`, `delete_target_dir=True`,
    `kafka_topic`...). `progress` is called about twice a second with a TransferProgress."""
    values: dict[str, Any] = {"connect": connect, "table": table, "query": query, "target_dir": target_dir,
                              "num_mappers": num_mappers, "split_by": split_by}
    if not {"as_textfile", "as_parquetfile", "as_avrodatafile"} & {k for k, v in options.items() if v}:
        values["format"] = format
    args = _parse("import", {**values, **options})
    watch = _Watch(progress)
    args.progress = watch
    r = _call(cli.run_import_args, args)
    files: tuple[str, ...] = ()
    sizes: tuple[int, ...] = ()
    if not r.get("kafka_topic"):
        files, sizes = _data_files(str(args.target_dir), "--target-dir")
    per: tuple[int | str | None, ...] = watch.per_split or (None,) * r["splits"]     # Kafka: no split figures
    # a new target: split i wrote part i (an appended one's parts are numbered after the old)
    matched = len(files) == len(per)
    splits = tuple(SplitResult(i, n if isinstance(n, int) else None, files[i] if matched else None,
                               sizes[i] if matched else None) for i, n in enumerate(per))
    last = r.get("last_value")
    return TransferResult(rows=r["rows"], seconds=r["seconds"], files=files, bytes=sum(sizes), splits=splits,
                          target=str(r["target_dir"]), last_value=None if last is None else str(last), figures=r)


def export_files(connect: str, *, table: str, export_dir: str | os.PathLike[str], num_mappers: int | None = None,
                 progress: ProgressCallback | None = None, **options: Any) -> TransferResult:
    """`fastsync export`: the part files of `export_dir` into `table`, all or nothing.
    `options`: `columns`, `update_key`, `update_mode="allowinsert"`, `staging_table`,
    `input_fields_terminated_by`, `batch=True`, `cluster`... (num_mappers: the CLI's default
    when None)."""
    args = _parse("export", {"connect": connect, "table": table, "export_dir": export_dir,
                             "num_mappers": num_mappers, **options})
    watch = _Watch(progress)
    args.progress = watch
    r = _call(cli.cmd_export, args)
    files, sizes = _data_files(str(args.export_dir), "--export-dir")
    return TransferResult(rows=r["rows"], seconds=r["seconds"], files=files, bytes=sum(sizes), target=table, figures=r)


def merge(*, new_data: str | os.PathLike[str], onto: str | os.PathLike[str], target_dir: str | os.PathLike[str],
          merge_key: str, progress: ProgressCallback | None = None, **options: Any) -> TransferResult:
    """`fastsync merge`: `new_data` onto `onto` (two import outputs) into `target_dir`, a row of
    `new_data` replacing the row of `onto` with the same `merge_key`. `options`: `columns`,
    `delete_target_dir`, the `input_*` and output text flags."""
    args = _parse("merge", {"new_data": new_data, "onto": onto, "target_dir": target_dir, "merge_key": merge_key, **options})
    watch = _Watch(progress)
    args.progress = watch
    r = _call(cli.cmd_merge, args)
    files, sizes = _data_files(str(args.target_dir), "--target-dir")
    return TransferResult(rows=r["rows"], seconds=r["seconds"], files=files, bytes=sum(sizes),
                          target=str(r["target_dir"]), figures=r)


def list_tables(connect: str, **options: Any) -> list[str]:
    """`fastsync list-tables`: the table names. `options`: `username`, `password_file`..."""
    return list(_call(cli.table_names, _parse("list-tables", {"connect": connect, **options})))


def eval(connect: str, sql: str, **options: Any) -> EvalResult:
    """`fastsync eval`: one SQL statement, in a transaction of its own; its rows as tuples
    (`columns`: their names), or none and the `rowcount` of a statement without rows."""
    cols, rows = _call(cli.eval_query, _parse("eval", {"connect": connect, "query": sql, **options}))
    if cols is None:
        return EvalResult([], [], rows)
    return EvalResult([tuple(r) for r in rows], cols)


# -- read_table: an import's readers, their batches to the caller -------------------------

# flags about the files an import writes: read_table writes none
_NOT_READ = {"target_dir", "warehouse_dir", "delete_target_dir", "append", "format", "as_parquetfile", "as_textfile",
             "as_avrodatafile", "compress", "z", "compression_codec", "merge_key", "kafka_topic", "kafka_brokers",
             "kafka_key", "kafka_config", "kafka_format", "cluster", "retries"}


def read_table(connect: str, *, table: str | None = None, query: str | None = None, columns: str | list[str] | None = None,
               where: str | None = None, split_by: str | None = None, num_mappers: int = 1, batch_size: int = 10000,
               **options: Any) -> TableReader:
    """An import's rows, not written anywhere: a TableReader whose iteration gives Arrow record
    batches of at most `batch_size` rows, read by the readers `fastsync import` uses (binary
    COPY on PostgreSQL, native text rows on MySQL/MariaDB, ADBC on SQLite, else SQLAlchemy).
    The table is reflected (or the `query` sampled) and split now: a bad flag, a missing table
    or column raises TransferError here. `options`: import's reading flags (`boundary_query`,
    `split_strategy`, `incremental`, `check_column`, `last_value`, `fast_path`, `username`,
    `password_file`...)."""
    refused = sorted(set(options) & _NOT_READ)
    if refused:
        raise UsageError("read_table: %s: a flag of the files an import writes; read_table writes none"
                         % ", ".join("--" + n.replace("_", "-") for n in refused))
    args = _parse("import", {"connect": connect, "table": table, "query": query, "columns": columns, "where": where,
                             "split_by": split_by, "num_mappers": num_mappers, "fetch_size": batch_size,
                             "target_dir": "(read_table)", **options})
    args.job_only = True           # run_import_args checks and builds the job, and returns it
    job = _call(cli.run_import_args, args)
    job = dataclasses.replace(job, retries=0)     # rows given to the caller can't be taken back
    from fastsync.transfer import importer
    from fastsync.transfer.spec import ImportError_
    try:
        found = importer._plan_or_fail(job)
    except ImportError_ as exc:
        raise TransferError(str(exc)) from None
    return TableReader(job, found)


class _Cancelled(BaseException):
    """The caller stopped reading: a split's thread unwinds (its reader closes its connection)."""


class _Channel:
    """The batches of every split's thread, to the caller: a bounded queue (2 batches per
    split), and the flag that stops the threads."""

    def __init__(self, splits: int):
        self.items: queue.Queue[tuple[str, int, Any]] = queue.Queue(maxsize=2 * max(splits, 1))
        self.stop = threading.Event()

    def put(self, item: tuple[str, int, Any]) -> None:
        while not self.stop.is_set():
            try:
                self.items.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        raise _Cancelled()


def _stream_sink(channel: _Channel) -> Callable[..., Any]:
    """splitread's sink for read_table: PartSink's interface (write, discard, close), the
    batches to the caller instead of a part file."""
    from fastsync.transfer.splitread import PartSink

    class StreamSink(PartSink):
        def __init__(self, spec: SplitSpec, base: pa.Schema | None = None):
            super().__init__(spec, base)
            self.skip, self.started = 0, False

        def write(self, batch: pa.RecordBatch) -> None:
            import pyarrow as pa
            if not self.started:        # the first batch: the schema is fixed (as PartSink's)
                self.schema = batch.schema if self.schema is None else pa.schema(
                    [bf if pa.types.is_null(sf.type) else sf for sf, bf in zip(self.schema, batch.schema)])
                self.started = True
            if batch.schema != self.schema:
                batch = batch.cast(self.schema)
            if self.skip:
                if len(batch) <= self.skip:
                    self.skip -= len(batch)
                    return
                batch, self.skip = batch.slice(self.skip), 0
            self.rows += len(batch)
            channel.put(("batch", self.index, batch))

        def discard(self) -> None:
            # SQLite's ADBC reader met a value the generic path reads otherwise and the split is
            # read again that way: the rows already given are skipped (the same statement on the
            # same file gives its rows in the same order; what was given passed the check that
            # it equals the generic path's)
            self.skip, self.rows = self.rows, 0

        def close(self, empty_schema: pa.Schema) -> int:
            if self.schema is None:
                self.schema = empty_schema
            return self.rows

    return StreamSink


class TableReader:
    """read_table's rows: iterate for Arrow record batches (each iteration reads the table
    again); `schema`, `to_arrow()`, `to_pandas()`. Splits (num_mappers) are read by threads
    at once, their batches given as they come (one split: in the table's order); memory
    holds at most about 2 batches per split besides what the caller keeps."""

    def __init__(self, job: ImportJob, plan: Plan):
        self.job, self.plan = job, plan
        self._schema: pa.Schema | None = None
        self._pending: Iterator[pa.RecordBatch] | None = None     # a read started by .schema

    @property
    def schema(self) -> pa.Schema:
        """The batches' schema (a table's types, or a query's; known once a batch is read:
        this reads the first, kept for the next iteration)."""
        if self._schema is None:
            it = self._read()
            first = next(it, None)
            self._pending = _chain(first, it)
        assert self._schema is not None
        return self._schema

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        it, self._pending = self._pending, None
        return it if it is not None else self._read()

    def _read(self) -> Iterator[pa.RecordBatch]:
        from fastsync.transfer import importer, splitread
        from fastsync.transfer.spec import ImportError_
        splits = self.plan.splits
        channel = _Channel(len(splits))
        sink = _stream_sink(channel)

        def run(spec: SplitSpec) -> None:
            try:
                splitread.run_with_retries(spec, sink)
                channel.put(("done", spec.split.index, None))
            except _Cancelled:
                return
            except ImportError_ as exc:
                _put_error(channel, spec.split.index, TransferError(str(exc)))
            except BaseException as exc:
                _put_error(channel, spec.split.index, exc)

        threads = [threading.Thread(target=run, args=(importer.split_spec(self.job, self.plan, s, "", "none"),),
                                    name="read_table-split-%d" % s.index, daemon=True) for s in splits]
        return self._batches(channel, threads)

    def _batches(self, channel: _Channel, threads: list[threading.Thread]) -> Iterator[pa.RecordBatch]:
        for t in threads:
            t.start()
        left = len(threads)
        try:
            while left:
                kind, _, value = channel.items.get()
                if kind == "done":
                    left -= 1
                elif kind == "error":
                    raise value
                else:
                    if self._schema is None:
                        self._schema = value.schema
                    elif value.schema != self._schema:     # another split's types (a column typed from its values)
                        value = value.cast(self._schema)
                    yield value
            if self._schema is None:
                self._schema = self._empty_schema()
        finally:
            channel.stop.set()      # a caller that stopped early, or a split that failed: the others end

    def _empty_schema(self) -> pa.Schema:
        """The schema of no rows: the reflected columns' types, or the query sample's
        (untyped: string, as an empty part file's)."""
        import pyarrow as pa
        import sqlalchemy as sa

        from fastsync.transfer import planner, typemap
        if self.job.query:
            schema = self.plan.schema or pa.schema([])
            return pa.schema([pa.field(f.name, pa.string() if pa.types.is_null(f.type) else f.type) for f in schema])
        engine = sa.create_engine(self.job.url)
        try:
            _, cols = planner.reflect(engine, self.job)
        finally:
            engine.dispose()
        return pa.schema([pa.field(c.name, typemap.arrow_type(c) or pa.string()) for c in cols])

    def to_arrow(self) -> pa.Table:
        """Every row as one pyarrow.Table, its batches as chunks. Each batch is copied once as
        it comes into memory of the C allocator (pyarrow.system_memory_pool): the table then
        holds only its own columns (a reader's batch can keep more alive: ADBC's whole
        result, the text a date was cast from) in memory that goes back to the system when
        freed (to_pandas frees the table a column at a time)."""
        import pyarrow as pa
        pool = pa.system_memory_pool()
        batches = [pa.RecordBatch.from_arrays([pa.concat_arrays([c], memory_pool=pool) for c in b.columns], schema=b.schema)
                   for b in self]
        return pa.Table.from_batches(batches, schema=self._schema)

    def to_pandas(self, **kwargs: Any) -> pandas.DataFrame:
        """Every row as a pandas DataFrame, converted a column at a time, each column's Arrow
        memory freed once converted: the peak is about the DataFrame's size plus one
        column's (bench/README.md: against pandas.read_sql). `kwargs` go to each column's
        pyarrow to_pandas (e.g. types_mapper)."""
        import pandas as pd
        import pyarrow as pa
        table = self.to_arrow()
        names = table.column_names
        series = {}
        for i in range(len(names)):
            series[i] = table.column(0).to_pandas(memory_pool=pa.system_memory_pool(), **kwargs)
            table = table.remove_column(0)
            _trim()
        frame = pd.DataFrame(series, copy=False)
        frame.columns = pd.Index(names)
        return frame


def _trim() -> None:
    """Freed memory back to the system: glibc keeps what free() returns in its heap, holes
    between the table's other columns included, unless asked (malloc_trim gives back every
    free page); elsewhere nothing."""
    global _malloc_trim
    if _malloc_trim is None:
        import ctypes
        try:
            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim: Any = None


def _put_error(channel: _Channel, index: int, exc: BaseException) -> None:
    try:
        channel.put(("error", index, exc))
    except _Cancelled:
        pass


def _chain(first: pa.RecordBatch | None, rest: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    if first is not None:
        yield first
    yield from rest
