"""`fastsync merge`: Sqoop's merge tool. Two directories `fastsync import` wrote, --onto
(the older data) and --new-data, become one in --target-dir: every --onto row whose
--merge-key value appears in --new-data is replaced by the new row; rows of only one side
are kept; a key repeated within --new-data: the last one wins (file name order, then row
order).

Three passes, a record batch at a time (never a Python object per row for Parquet, Arrow
and csv; Sqoop text, Avro and JSON lines go through the readers of formats.py, which parse
values in Python; JSON lines are merged as the JSON text of each value, numbers as they
were written, so the output is the input's lines, value for value):
1. --new-data is read, checked (columns, NULL keys) and cast to --onto's schema into a
   spill file (Arrow IPC) beside the output; its key column is kept in memory, and the
   last row of each key found from a stable sort of the keys.
2. each --onto file is written again without the rows whose key is in --new-data;
3. the winning --new-data rows are written from the spill file.
The directories are local paths or URLs (file://, hdfs://, s3://, ...: read by formats.py's
readers straight from their filesystem); the output is published by publish.py: a temporary
sibling of --target-dir renamed into place with `_SUCCESS`, or on an object store the parts
and then a `_SUCCESS` manifest, only when all is written; a failure leaves neither.
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fastsync.filesystems import Location
from fastsync.progress import Counter, Progress, Update
from fastsync.transfer import publish
from fastsync.transfer.formats import (FileError, Output, PartFile, csv_batches, file_columns, file_schema, find_files,
                                       jsonl_text_batches, read_rows)
from fastsync.transfer.textfile import TextOptions

_PROBE_ROWS = (65536, 524288)   # rows of --onto whose keys are looked up at once: at least, at most


class MergeError(Exception):
    """A merge failed; the message names the flag, file and column."""


@dataclass
class MergeJob:
    new_data: str | Location             # a local path, a URL, or (import's merge) a Location
    onto: str | Location
    target_dir: str | Location
    merge_key: str
    columns: list[str] | None = None      # Sqoop text files (no header): the field names, in order
    text: TextOptions = field(default_factory=TextOptions)          # reading csv and Sqoop text
    out_text: TextOptions | None = None   # writing Sqoop text (default: as read)
    delete_target_dir: bool = False
    single_file: bool = False             # all rows into one part file (import's lastmodified merge)


@dataclass
class _Side:
    flag: str
    files: list[PartFile]
    schemas: list[pa.Schema]        # of each file (csv, text: every column as text)

    @property
    def schema(self) -> pa.Schema:
        return self.schemas[0]


def _rel(f: PartFile) -> str:
    return os.path.join(os.path.basename(os.path.dirname(f.path)), f.name)


def _schema(f: PartFile, job: MergeJob) -> pa.Schema:
    if f.fmt == "jsonl":                 # the names of its first objects' members; an empty file: none
        return pa.schema([pa.field(c, pa.string()) for c in file_columns(f, job.columns or [])])
    if f.fmt == "text":
        if not job.columns:
            raise MergeError("%s: Sqoop text files have no header: give their field names with --columns" % _rel(f))
        return pa.schema([pa.field(c, pa.string()) for c in job.columns])
    schema = file_schema(f, job.text.fields_terminated_by)
    if f.fmt == "csv":                    # merged as text, so every value is written as it was read
        return pa.schema([pa.field(c, pa.string()) for c in schema.names])
    return schema


def _side(path, flag: str, job: MergeJob) -> _Side:
    try:
        files = find_files(path, flag)
    except FileError as exc:
        raise MergeError(str(exc)) from None
    formats = {(f.fmt, f.codec) for f in files}
    if len(formats) > 1:
        raise MergeError("%s %s: files of several formats (%s); merge needs one"
                         % (flag, publish.shown(path), ", ".join(sorted("%s%s" % (f, "+" + c if c else "") for f, c in formats))))
    schemas = []
    for f in files:
        try:
            schemas.append(_schema(f, job))
        except MergeError:
            raise
        except FileError as exc:             # the reader's: it names file and row
            raise MergeError(_renamed(f, exc)) from None
        except Exception as exc:               # a file that can't be read
            raise MergeError("%s: %s" % (_rel(f), _one_line(exc))) from None
    if files[0].fmt == "jsonl":          # an empty file (an empty split) takes the others' columns
        full = next((s for s in schemas if s.names), None)
        if full is None:
            raise MergeError("%s %s: the JSON lines files hold no rows to take the column names from: give them "
                             "with --columns" % (flag, publish.shown(path)))
        schemas = [s if s.names else full for s in schemas]
    if job.merge_key not in schemas[0].names:
        raise MergeError("--merge-key %s: no such column in %s (%s)" % (job.merge_key, _rel(files[0]), flag))
    for f, s in zip(files[1:], schemas[1:]):
        _check_columns(f, s, schemas[0], _rel(files[0]))
    return _Side(flag, files, schemas)


def _check_columns(f: PartFile, schema: pa.Schema, want: pa.Schema, like: str) -> None:
    """`schema` (of file f) must have `want`'s columns, of types castable to want's."""
    for name in schema.names:
        if name not in want.names:
            raise MergeError("%s: column %s is not in %s" % (_rel(f), name, like))
    for w in want:
        if w.name not in schema.names:
            raise MergeError("%s: no column %s (%s has it)" % (_rel(f), w.name, like))
        t = schema.field(w.name).type
        if t != w.type:
            try:
                pa.array([], t).cast(w.type)
            except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
                raise MergeError("%s: column %s is %s, which can't be cast to %s's %s"
                                 % (_rel(f), w.name, t, like, w.type)) from None


def _batches(f: PartFile, schema: pa.Schema, job: MergeJob):
    """A file's record batches with the columns of `schema`, cast to it; a row with a NULL
    key is an error, as in Sqoop."""
    names = schema.names
    first = 1
    if f.fmt == "csv":
        batches = csv_batches(f, names, job.text.fields_terminated_by)
    elif f.fmt == "jsonl":
        batches = jsonl_text_batches(f, names)
    else:
        kinds = dict.fromkeys(names, str)          # Sqoop text: every field is text, NULL is --null-string
        batches = (v if isinstance(v, pa.RecordBatch) else pa.RecordBatch.from_arrays(
            [pa.array(v[c], None if pa.types.is_null(schema.field(c).type) else schema.field(c).type) for c in names],
            names=names) for _, v in read_rows(f, names, job.text, kinds))
    for b in batches:
        b = b.select(names)
        if b.schema != schema:
            b = _cast(f, b, schema)
        key = b.column(job.merge_key)
        if key.null_count:
            row = first + pc.index(pc.is_null(key), True).as_py()
            raise MergeError("%s row %d: the --merge-key %s is NULL (rows can't be merged on a NULL key)"
                             % (_rel(f), row, job.merge_key))
        first += len(b)
        yield b


def _cast(f: PartFile, b: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    try:
        return b.cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        for col, want in zip(b.columns, schema):
            try:
                col.cast(want.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
                raise MergeError("%s: column %s: can't cast %s to %s: %s"
                                 % (_rel(f), want.name, col.type, want.type, _one_line(exc))) from None
        raise


def _renamed(f: PartFile, exc: Exception) -> str:
    """A reader's error, which starts with the file's name, with its side's directory too."""
    text = str(exc)
    return _rel(f) + text[len(f.name):] if text.startswith(f.name) else "%s: %s" % (_rel(f), text)


def _one_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class _Output:
    """The part files of the merge, numbered part-m-00000, ... where the run stages them;
    an empty input writes no file (but an empty merge writes one, with the schema)."""

    def __init__(self, stage: publish.Staging, output: Output, schema: pa.Schema, written: Counter):
        self.stage, self.output, self.schema, self.written = stage, output, schema, written   # rows, for the status line
        self.ext = output.extension()
        self.parts = 0
        self.rows = 0
        self.writer = None

    def write(self, b: pa.RecordBatch) -> None:
        if not len(b):
            return
        if self.writer is None:
            self.writer = self.output.open(self._sink(self.parts), self.schema, json_text=True)
            self.parts += 1
        self.writer.write_batch(b)
        self.rows += len(b)
        self.written.add(len(b))

    def next_part(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def close(self) -> None:
        self.next_part()
        if not self.parts:
            self.write_empty()

    def write_empty(self) -> None:
        self.output.open(self._sink(0), self.schema, json_text=True).close()
        self.parts = 1

    def _sink(self, n: int):
        return publish.sink(self.stage.fs, self.stage.part(n, self.ext))


def run_merge(job: MergeJob, progress: bool | None = None) -> dict:
    """Merge --new-data onto --onto into --target-dir. Returns figures: rows (written),
    replaced, added, kept, seconds, rows_per_s, target_dir."""
    t0 = time.perf_counter()
    try:
        loc = publish.locate(job.target_dir, "--target-dir")
        present = publish.exists(loc)
    except publish.PublishError as exc:
        raise MergeError(str(exc)) from None
    target = loc.path if loc.local else loc.url
    if present and not job.delete_target_dir:
        raise MergeError("--target-dir %s already exists (use --delete-target-dir to replace it)" % publish.shown(job.target_dir))
    if job.text.null_string != job.text.null_non_string:
        raise MergeError("text files are merged as text, so NULL has one spelling: give --input-null-non-string "
                         "the value of --input-null-string")
    onto = _side(job.onto, "--onto", job)
    new = _side(job.new_data, "--new-data", job)
    if new.files[0].fmt != onto.files[0].fmt or new.files[0].codec != onto.files[0].codec:
        raise MergeError("--new-data holds %s files, --onto %s files: merge needs one format"
                         % (_fmt(new.files[0]), _fmt(onto.files[0])))
    for f, s in zip(new.files, new.schemas):
        _check_columns(f, s, onto.schema, _rel(onto.files[0]))
    try:
        stage = publish.start(loc)
    except publish.PublishError as exc:
        raise MergeError(str(exc)) from None
    written = Counter()
    prog = Progress(lambda: Update(written.rows, time.perf_counter() - t0), show=progress,
                    name="merge-progress").start()
    try:
        figures = _merge(job, onto, new, stage, written)
        publish.finish(stage, "replace" if present else "new")     # --delete-target-dir: swapped only now
    except publish.PublishError as exc:
        publish.discard(stage)
        raise MergeError(str(exc)) from None
    except BaseException:
        publish.discard(stage)
        raise
    finally:
        prog.stop()
    seconds = time.perf_counter() - t0
    return {**figures, "seconds": seconds, "rows_per_s": figures["rows"] / seconds if seconds else 0.0,
            "target_dir": target}


def _fmt(f: PartFile) -> str:
    return f.fmt + (" (%s)" % f.codec if f.codec else "")


def _reading(f: PartFile, batches):
    """`batches`, with any error but a MergeError as one line naming the file."""
    try:
        yield from batches
    except MergeError:
        raise
    except FileError as exc:                 # the reader's: it names file and row
        raise MergeError(_renamed(f, exc)) from None
    except Exception as exc:
        raise MergeError("%s: %s" % (_rel(f), _one_line(exc))) from None


def _gathered(batches, rows: int):
    """Record batches in lists of at least `rows` rows (the last list may have fewer)."""
    buf, n = [], 0
    for b in batches:
        buf.append(b)
        n += len(b)
        if n >= rows:
            yield buf
            buf, n = [], 0
    if buf:
        yield buf


def _merge(job: MergeJob, onto: _Side, new: _Side, stage: publish.Staging, written: Counter) -> dict:
    # 1. --new-data, cast to onto's schema, into a spill file (on local disk: memory-mapped
    # below; beside the output where that is local); its keys kept
    if publish.is_local(stage.fs) and not stage.tagged:
        spill = os.path.join(stage.dir, ".new-data.arrow")
    else:
        fd, spill = tempfile.mkstemp(prefix="fastsync-merge-", suffix=".arrow")
        os.close(fd)
    try:
        return _merge_spilled(job, onto, new, stage, written, spill)
    finally:
        if os.path.exists(spill):
            os.unlink(spill)


def _merge_spilled(job: MergeJob, onto: _Side, new: _Side, stage: publish.Staging, written: Counter, spill: str) -> dict:
    schema, key = onto.schema, job.merge_key
    keys = []
    with pa.OSFile(spill, "wb") as sink, pa.ipc.new_file(sink, schema) as w:
        for f in new.files:
            for b in _reading(f, _batches(f, schema, job)):
                w.write_batch(b)
                keys.append(b.column(key))
    keys = pa.chunked_array(keys, schema.field(key).type)
    n = len(keys)
    # the last row of each key: in a stable sort of the keys, the last of each run of equals
    # (less memory than a hash group-by: a few arrays of n)
    keys = keys.combine_chunks()
    order = pc.sort_indices(keys)
    ordered = keys.take(order)
    del keys
    last = np.ones(n, dtype=bool)
    if n > 1:
        last[:-1] = pc.not_equal(ordered.slice(0, n - 1), ordered.slice(1)).to_numpy(zero_copy_only=False)
    unique = ordered.filter(pa.array(last))
    wins = np.zeros(n, dtype=bool)
    wins[order.to_numpy()[last]] = True
    del order, ordered, last
    hit = np.zeros(len(unique), dtype=bool)
    # 2. --onto without the replaced rows, one part file per onto file. index_in builds a
    # hash table of its value set on every call: the keys are looked up in chunks of batches
    # about as large as that set (within _PROBE_ROWS), so building it costs no more than probing
    out = _Output(stage, Output.like(onto.files[0], job.out_text or job.text), schema, written)
    kept = dropped = 0
    probe = min(max(len(unique), _PROBE_ROWS[0]), _PROBE_ROWS[1])
    for f in onto.files:
        for chunk in _gathered(_reading(f, _batches(f, schema, job)), probe):
            idx = pc.index_in(pa.concat_arrays([b.column(key) for b in chunk]), value_set=unique)
            found = pc.is_valid(idx).to_numpy(zero_copy_only=False)
            if len(unique):
                hit[pc.drop_null(idx).to_numpy()] = True
            pos = 0
            for b in chunk:
                keep = b.filter(pa.array(~found[pos:pos + len(b)]))
                pos += len(b)
                kept += len(keep)
                out.write(keep)
            dropped += int(found.sum())
        if not job.single_file:
            out.next_part()
    # 3. the winning --new-data rows
    with pa.memory_map(spill) as m:
        r = pa.ipc.open_file(m)
        pos = 0
        for i in range(r.num_record_batches):
            b = r.get_batch(i)
            out.write(b.filter(pa.array(wins[pos:pos + len(b)])))
            pos += len(b)
    out.close()
    replaced = int(hit.sum())
    return {"rows": out.rows, "kept": kept, "replaced": replaced, "added": len(unique) - replaced,
            "onto_rows_dropped": dropped, "new_rows": n, "parts": out.parts}
