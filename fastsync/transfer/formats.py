"""The files of import, export and merge: ONE table of formats, every reader and writer.

A target or export directory holds part files named part-m-NNNNN.<suffix>[.<codec suffix>]:
parquet, csv (a header line), text (Sqoop's delimited text, no header: textfile.TextOptions;
written as Sqoop names them, part-m-NNNNN[.<codec suffix>], .txt also read),
arrow (Arrow IPC file), jsonl (one JSON object per line) and avro (an Avro object container:
avrofile). Text, csv and jsonl files may be compressed as a whole (STREAM_CODECS); Parquet
and Avro compress inside the file.

Readers: find_files (a directory's part files), file_schema / file_columns, read_rows (what
export loads), csv_batches and jsonl_text_batches (merge: values as text). Writers:
`Output(fmt, ...)`, whose open() gives a part file's writer (write_batch, close).
Errors: FileError (RowError for a row), one line naming the file (and row, column).
"""
from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from decimal import Decimal

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from fastsync.filesystems import scheme_of
from fastsync.transfer import publish
from fastsync.transfer.textfile import TextOptions

log = logging.getLogger("fastsync.formats")

# format -> file suffix (before any compression suffix)
FORMATS = {"parquet": "parquet", "csv": "csv", "text": "txt", "arrow": "arrow", "jsonl": "jsonl", "avro": "avro"}
SUFFIX_FORMATS = {suffix: fmt for fmt, suffix in FORMATS.items()}
# text, csv and jsonl files compressed as a whole (-z / --compression-codec): codec -> suffix
STREAM_CODECS = {"gzip": "gz", "zstd": "zst", "lz4": "lz4"}
STREAMED = ("text", "csv", "jsonl")
_CODEC_OF_SUFFIX = {v: k for k, v in STREAM_CODECS.items()}
BATCH_ROWS = 10000                       # rows per batch the readers give
PARQUET_CODECS = {"SNAPPY": "snappy", "ZSTD": "zstd", "GZIP": "gzip", "LZ4": "lz4", "BROTLI": "brotli",
                   "UNCOMPRESSED": "none"}


class FileError(Exception):
    """A part file can't be read (or a format can't be written as asked); the message is one
    line naming the file (and row, column)."""


class RowError(FileError):
    """A row of a part file can't be read."""


# -- reading -----------------------------------------------------------------------------

@dataclass
class PartFile:
    path: str
    fmt: str
    codec: str | None
    fs: object = None          # the pyarrow filesystem of `path`; None: local disk

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    def open(self):
        """The file as a binary file object (read; a context manager)."""
        return publish.source(self.fs, self.path)

    def random_access(self):
        """The file for Parquet's and Arrow's readers: its path, or a seekable file."""
        return publish.random_access(self.fs, self.path)


def find_files(directory, flag: str = "--export-dir") -> list[PartFile]:
    """The data files of a directory `fastsync import` wrote (`_SUCCESS`, hidden and other
    files skipped), in name order, or in the order its `_SUCCESS` manifest lists them
    (publish.listing); `directory` is a local path, a URL or a Location; `flag` names it
    in errors."""
    try:
        loc = publish.locate(directory, flag)
        if not publish.is_dir(loc, flag):
            raise FileError("%s %s: no such directory" % (flag, publish.shown(directory)))
        with publish.failing(flag, loc):
            names = publish.listing(loc)
    except publish.PublishError as exc:
        raise FileError(str(exc)) from None
    local = isinstance(directory, str) and not scheme_of(directory)
    out = []
    for name in names:
        if name.startswith((".", "_")):
            continue
        parts = name.split(".")
        codec = _CODEC_OF_SUFFIX.get(parts[-1]) if len(parts) > 2 else None
        suffix = parts[-2] if codec else parts[-1]
        fmt = SUFFIX_FORMATS.get(suffix)
        if name.startswith("part-") and (len(parts) == 1 or (len(parts) == 2 and parts[1] in _CODEC_OF_SUFFIX)):
            # Sqoop's text part files: part-m-00000, part-m-00000.gz
            fmt, codec = "text", _CODEC_OF_SUFFIX.get(parts[-1]) if len(parts) == 2 else None
        if fmt is None or (codec and fmt not in STREAMED):
            log.warning("%s: skipping %s (not a part file: .%s)", flag, name, " .".join(SUFFIX_FORMATS))
            continue
        if local:             # as given: messages show the path the user wrote
            out.append(PartFile(os.path.join(directory, name), fmt, codec))
        else:
            out.append(PartFile(loc.join(name), fmt, codec, None if loc.local else loc.fs))
    if not out:
        raise FileError("%s %s: no part files (.%s)" % (flag, publish.shown(directory), ", .".join(SUFFIX_FORMATS)))
    return out


def _open_bytes(f: PartFile):
    if f.fs is None:
        raw = pa.OSFile(f.path, "rb")
    else:
        raw = f.fs.open_input_stream(f.path, compression=None, buffer_size=1 << 20)
    return pa.CompressedInputStream(raw, f.codec) if f.codec else raw


def file_schema(f: PartFile, delimiter: str = ",") -> pa.Schema | None:
    """The Arrow schema a file holds (csv: as inferred from its first block; Sqoop text and
    JSON lines: None, they have no schema). A file that can't be read: FileError."""
    try:
        if f.fmt == "parquet":
            return pq.read_schema(f.random_access())
        if f.fmt == "arrow":
            with _arrow_source(f) as m:
                return pa.ipc.open_file(m).schema
        if f.fmt == "avro":
            import fastavro

            from fastsync.transfer.avrofile import arrow_schema
            with f.open() as fh:
                return arrow_schema(fastavro.reader(fh).writer_schema)
        if f.fmt == "csv":
            with _open_bytes(f) as s:
                return _open_csv(f, s, delimiter).schema
    except FileError:
        raise
    except Exception as exc:
        raise FileError("%s: %s" % (f.name, _one_line(exc))) from None
    return None


def _arrow_source(f: PartFile):
    """An Arrow IPC file for reading: memory-mapped on local disk."""
    return pa.memory_map(f.path) if f.fs is None else f.fs.open_input_file(f.path)


def _one_line(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


_CSV_ROW = re.compile(r"Row #(\d+): Expected (\d+) columns, got (\d+)")


def _csv_error(f: PartFile, exc: Exception) -> FileError:
    """pyarrow's csv error as one line naming file and row (a serial reader's parse errors
    carry the row's number; pyarrow counts the header as row 1, ours count data rows)."""
    m = _CSV_ROW.search(str(exc))
    if m is None:
        return FileError("%s: %s" % (f.name, _one_line(exc)))
    return RowError("%s row %d: %s fields, expected %s as in the header; check the delimiter"
                     % (f.name, int(m.group(1)) - 1, m.group(3), m.group(2)))


def _open_csv(f: PartFile, stream, delimiter: str = ",", convert: pacsv.ConvertOptions | None = None):
    """pyarrow's streaming csv reader, serial (so its errors give a malformed row's number);
    its errors as FileError naming file and row (its batches' errors: _csv_error)."""
    try:
        reader = pacsv.open_csv(stream, read_options=pacsv.ReadOptions(use_threads=False),
                                parse_options=pacsv.ParseOptions(delimiter=delimiter), convert_options=convert)
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        if "Empty CSV file" in str(exc):
            raise FileError("%s: an empty file (a csv part file starts with a header)" % f.name) from None
        raise _csv_error(f, exc) from None
    dup = next((c for i, c in enumerate(reader.schema.names) if c in reader.schema.names[:i]), None)
    if dup is not None:
        raise FileError("%s: column %s is twice in the header" % (f.name, dup))
    return reader


def file_columns(f: PartFile, default: list[str]) -> list[str]:
    """The columns a file holds (text files: `default`, they have no header)."""
    schema = file_schema(f)
    if schema is not None:
        return schema.names
    if f.fmt == "jsonl":
        names: dict = {}
        for rec in jsonl_records(f, limit=1000):
            names.update(dict.fromkeys(rec))
        return list(names) or default
    return default


def jsonl_records(f: PartFile, limit: int | None = None, parse_float=Decimal, parse_int=None):
    """The objects of a JSON lines file (numbers with a fraction or exponent as Decimal
    unless `parse_float`, integers as int unless `parse_int`, as json.loads takes them)."""
    with _open_bytes(f) as s:
        data = s.read()
    # lines end at \n only: json.dumps(ensure_ascii=False) leaves U+2028, U+0085, ... in a
    # string unescaped, where str.splitlines() would split it (a \r before \n is whitespace)
    for i, line in enumerate(data.split(b"\n")):
        if limit is not None and i >= limit:
            return
        if line.strip():
            try:
                rec = json.loads(line.decode("utf-8"), parse_float=parse_float, parse_int=parse_int)
            except UnicodeDecodeError as exc:
                raise RowError("%s row %d: not UTF-8 text (%s)" % (f.name, i + 1, exc.reason)) from None
            except (ValueError, RecursionError) as exc:
                raise RowError("%s row %d: not JSON: %s" % (f.name, i + 1, _one_line(exc))) from None
            if not isinstance(rec, dict):
                raise RowError("%s row %d: not a JSON object" % (f.name, i + 1))
            yield rec


class Kinds(dict):
    """Column -> python type of the target column (loader.column_kind), and `zoned`: the
    columns holding timestamps with a time zone (Sqoop's Avro and Parquet timestamps are
    instants: read into those as such)."""
    zoned: frozenset = frozenset()


def read_rows(f: PartFile, columns: list[str], text: TextOptions, kinds: dict):
    """Batches of a file as (first row number, values): a pyarrow RecordBatch of `columns`
    for Parquet and Arrow files, else {column: [python values]} (csv and Sqoop text: the
    text of each field, None for NULL; parsed later by the text converters)."""
    if f.fmt in ("parquet", "arrow"):
        if f.fmt == "parquet":
            pf = pq.ParquetFile(f.random_access())
            batches = pf.iter_batches(batch_size=BATCH_ROWS, columns=columns)
            sqoop = sqoop_schema(pf.schema_arrow.metadata)
            if sqoop is not None and isinstance(kinds, Kinds):   # Sqoop's Kite file: dates are milliseconds
                from fastsync.transfer.sqoopavro import from_sqoop
                batches = (from_sqoop(b, sqoop, text.time_zone, getattr(kinds, "zoned", ())) for b in batches)
        else:
            reader = pa.ipc.open_file(_arrow_source(f))
            batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
        row = 1
        for b in batches:
            yield row, b.select(columns)          # a RecordBatch: COPY may take it whole
            row += len(b)
    elif f.fmt == "avro":
        from fastsync.transfer.avrofile import columnar_batches, read_header
        from fastsync.transfer.sqoopavro import from_sqoop, is_sqoop_schema
        with f.open() as fh:
            schema = read_header(fh)[0]
        batches = columnar_batches(f.path, columns, BATCH_ROWS, opener=lambda: f.open())
        if batches is None:                       # a schema without a columnar decoding: by row
            import fastavro
            with f.open() as fh:
                yield from chunks(fastavro.reader(fh), columns)
            return
        if is_sqoop_schema(schema) and isinstance(kinds, Kinds):  # Sqoop's: dates, times, timestamps are ms
            # (export: into the table's types; merge keeps Sqoop's values as they are)
            batches = (from_sqoop(b, schema, text.time_zone, getattr(kinds, "zoned", ())) for b in batches)
        row = 1
        for b in batches:
            yield row, b                          # a RecordBatch, as Parquet's
            row += len(b)
    elif f.fmt == "jsonl":
        yield from chunks(jsonl_records(f), columns)
    elif f.fmt == "csv":
        row = 1
        for b in csv_batches(f, columns):
            yield row, {c: b.column(c).to_pylist() for c in columns}
            row += len(b)
    else:
        with _open_bytes(f) as s:
            raw = s.read()
        try:
            data = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw.count(text.lines_terminated_by.encode("utf-8"), 0, exc.start) + 1 if text.lines_terminated_by else 1
            raise RowError("%s row %d: not UTF-8 text (%s at byte %d)" % (f.name, line, exc.reason, exc.start)) from None
        yield from chunks(_text_records(f, data, text, columns, kinds), columns)


def sqoop_schema(meta: dict | None) -> dict | None:
    """The Sqoop Avro schema a Parquet file of a Kite dataset (Sqoop's --as-parquetfile) holds, or None."""
    from fastsync.transfer.sqoopavro import parquet_schema
    return parquet_schema(meta)


def csv_batches(f: PartFile, columns: list[str], delimiter: str = ","):
    """A csv file's `columns` as record batches of text: NULL is an empty field not in
    quotes, "" the empty string. Malformed rows and text not UTF-8: RowError naming file,
    row (counted from the first after the header) and column."""
    with _open_bytes(f) as s:
        # read as bytes, so text that is not UTF-8 can be found by row and column
        reader = _open_csv(f, s, delimiter, pacsv.ConvertOptions(
            column_types={c: pa.binary() for c in columns}, strings_can_be_null=True,
            quoted_strings_can_be_null=False, include_columns=columns))
        row = 1
        while True:
            try:
                b = reader.read_next_batch()
            except StopIteration:
                return
            except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
                raise _csv_error(f, exc) from None
            yield pa.RecordBatch.from_arrays([_utf8(f, row, c, b.column(c)) for c in columns], names=columns)
            row += len(b)


def _utf8(f: PartFile, first_row: int, name: str, col: pa.Array) -> pa.Array:
    try:
        return col.cast(pa.string())
    except pa.ArrowInvalid:
        for i, v in enumerate(col.to_pylist()):
            try:
                v is None or v.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise RowError("%s row %d: column %s: not UTF-8 text (%s)" % (f.name, first_row + i, name, exc.reason)) from None
        raise


def _text_records(f: PartFile, data: str, text: TextOptions, columns: list[str], kinds: dict):
    for i, fields in enumerate(_parse_text(data, text, columns, kinds)):
        if len(fields) != len(columns):
            raise RowError("%s row %d: %d fields, expected %d (%s); check the --input-* delimiters"
                            % (f.name, i + 1, len(fields), len(columns), ",".join(columns)))
        yield dict(zip(columns, fields))


def chunks(records, columns: list[str]):
    row, buf = 1, []
    for rec in records:
        buf.append(rec)
        if len(buf) == BATCH_ROWS:
            yield row, {c: [r.get(c) for r in buf] for c in columns}
            row += len(buf)
            buf = []
    if buf:
        yield row, {c: [r.get(c) for r in buf] for c in columns}


def _parse_text(data: str, o: TextOptions, columns: list[str], kinds: dict):
    """Sqoop delimited text -> one list of field values (None for NULL) per line. A field
    is NULL when its raw text, or its text once unquoted and unescaped (Sqoop's rule: its
    `"null"` and `\\N`), is the null string; in a column of a known kind other than text
    and bytes, an empty field is NULL too (as Sqoop's generated parser)."""
    fs, ls, esc = o.fields_terminated_by, o.lines_terminated_by, o.escaped_by
    quote = o.enclosed_by or o.optionally_enclosed_by
    token = re.compile("|".join(re.escape(c) for c in (fs, ls, quote, esc) if c))
    nulls = [o.null_string if kinds.get(c) is str else o.null_non_string for c in columns]
    empty_null = [kinds.get(c) not in (None, str, bytes) for c in columns]
    fields, cur, in_quote, pos, start, n = [], [], False, 0, 0, len(data)

    def finish(end):
        i = len(fields)
        value = "".join(cur)
        if i < len(nulls) and (value == nulls[i] or data[start:end] == nulls[i] or (value == "" and empty_null[i])):
            return None
        return value
    while pos < n:
        m = token.search(data, pos)
        if m is None:
            cur.append(data[pos:])
            pos = n
            break
        cur.append(data[pos:m.start()])
        ch, pos = m.group(), m.end()
        if esc and ch == esc:
            if pos < n:
                cur.append(data[pos])
                pos += 1
        elif quote and ch == quote:
            in_quote = not in_quote
        elif in_quote:
            cur.append(ch)
        elif ch == fs:
            fields.append(finish(m.start()))
            cur, start = [], pos
        else:                                   # line terminator
            fields.append(finish(m.start()))
            yield fields
            fields, cur, start = [], [], pos
    if start < n:
        fields.append(finish(n))
        yield fields


# -- JSON lines as text (merge) ----------------------------------------------------------

class _JsonNumber(str):
    """A JSON number's text, as the file holds it (so no number changes: not a decimal into
    a float, not 1e-07 into 1E-7)."""


_JSON_ENCODE = json.JSONEncoder(ensure_ascii=False).encode     # as import's json.dumps writes


def _json_text(v) -> str:
    """The JSON text of a value json.loads read with _JsonNumber for numbers; written as
    import's json.dumps writes it (separators ", " and ": ", not ASCII-escaped)."""
    t = type(v)
    if t is _JsonNumber:
        return str(v)
    if t is list:
        return "[" + ", ".join(map(_json_text, v)) + "]"
    if t is dict:
        return "{" + ", ".join(_JSON_ENCODE(k) + ": " + _json_text(x) for k, x in v.items()) + "}"
    return _JSON_ENCODE(v)                         # strings, true, false, NaN, Infinity


def jsonl_text_batches(f: PartFile, names: list[str]):
    """A JSON lines file as record batches of `names`, each value its JSON text (a member
    that is missing or null: NULL); a member not in `names` is an error."""
    known = set(names)

    def batch(recs):
        return pa.RecordBatch.from_arrays(
            [pa.array([None if (v := r.get(c)) is None else _json_text(v) for r in recs], pa.string()) for c in names],
            names=names)

    buf = []
    for row, rec in enumerate(jsonl_records(f, parse_float=_JsonNumber, parse_int=_JsonNumber), 1):
        if not known.issuperset(rec):
            raise RowError("%s row %d: column %s is not in the other files"
                           % (f.name, row, next(k for k in rec if k not in known)))
        buf.append(rec)
        if len(buf) == BATCH_ROWS:
            yield batch(buf)
            buf = []
    if buf:
        yield batch(buf)


# -- writing -----------------------------------------------------------------------------

def part_name(index: int, ext: str, tag: str = "") -> str:
    """part-m-NNNNN[-tag][.ext] (no ext: Sqoop text's part-m-00000)."""
    return "part-m-%05d%s%s" % (index, "-" + tag if tag else "", "." + ext if ext else "")


@dataclass
class Output:
    """How part files are written: format, compression (--compression-codec; None: snappy
    for Parquet, none for the rest), -z (compress text, csv and jsonl, gzip unless a codec
    is given), Sqoop text's delimiters, csv's delimiter."""
    fmt: str = "parquet"
    compression: str | None = None
    compress: bool = False
    text: TextOptions | None = None
    delimiter: str = ","
    sqoop_avro: str | None = None     # Avro with Sqoop's schema and values (sqoopavro), for this table
    sqoop_specs: list | None = None   # and its columns' (sqlType, Avro type, None), when no hints say

    @classmethod
    def like(cls, f: PartFile, text: TextOptions) -> "Output":
        """Files of f's format and compression (`text`: Sqoop text's delimiters, and csv's)."""
        compression = f.codec
        if f.fmt == "parquet":
            meta = pq.ParquetFile(f.random_access()).metadata
            if meta.num_row_groups and meta.num_columns:
                compression = PARQUET_CODECS.get(meta.row_group(0).column(0).compression, "snappy")
        elif f.fmt == "avro":
            import fastavro

            from fastsync.transfer.sqoopavro import is_sqoop_schema, specs_of_schema
            with f.open() as fh:
                r = fastavro.reader(fh)
                compression, schema = r.codec, r.writer_schema
            if is_sqoop_schema(schema):           # a Sqoop file: merged into files of its schema
                return cls(f.fmt, compression, text=text, sqoop_avro=schema.get("tableName") or schema["name"],
                           sqoop_specs=specs_of_schema(schema))
        return cls(f.fmt, compression, text=text, delimiter=text.fields_terminated_by if f.fmt == "csv" else ",")

    def codec(self) -> str | None:
        """The codec text, csv and jsonl files are compressed with, or None."""
        if self.fmt not in STREAMED or self.compression == "none":
            return None
        if not (self.compress or self.compression):
            return None
        codec = self.compression or "gzip"
        if codec not in STREAM_CODECS:
            raise FileError("--compression-codec %s: not available for %s files (use %s)"
                            % (codec, self.fmt, ", ".join(STREAM_CODECS)))
        return codec

    def extension(self) -> str:
        """The part files' suffix, e.g. parquet, csv.gz; Sqoop text's none (part-m-00000, as
        Sqoop names them) or its codec's (part-m-00000.gz)."""
        codec = self.codec()
        if self.fmt == "text":
            return STREAM_CODECS[codec] if codec else ""
        return FORMATS[self.fmt] + ("." + STREAM_CODECS[codec] if codec else "")


    def open(self, path, schema: pa.Schema, json_text: bool = False, hints: list | None = None):
        """A part file's writer (write_batch, close), into the file at the local `path`, or
        into an output stream (publish.sink: another filesystem's file), closed with the
        writer; `json_text`: see _JsonLinesWriter; `hints`: Sqoop text's (typemap.sqoop_hints)."""
        stream = not isinstance(path, (str, os.PathLike))
        if self.fmt == "avro":
            from fastsync.transfer.avrofile import AvroWriter
            codec = {None: "null", "none": "null", "gzip": "deflate"}.get(self.compression, self.compression)
            codec = codec if codec in ("null", "deflate", "snappy") else "null"
            if self.sqoop_avro:
                from fastsync.transfer.sqoopavro import SqoopAvroWriter
                return SqoopAvroWriter(path, schema, codec, self.sqoop_avro, hints or self.sqoop_specs,
                                       self.text.time_zone if self.text else None)
            return AvroWriter(path, schema, codec if codec in ("null", "deflate", "snappy") else "null")
        if self.fmt == "arrow":
            w = pa.ipc.new_file(path, schema)
            return _Closing(w, path) if stream else w
        if self.fmt == "parquet":
            codec = self.compression or "snappy"
            w = pq.ParquetWriter(path, schema, compression=None if codec == "none" else codec)
            return _Closing(w, path) if stream else w
        codec = self.codec()
        raw = path if stream else pa.OSFile(path, "wb")
        out = pa.CompressedOutputStream(raw, codec) if codec else raw
        if self.fmt == "text":
            from fastsync.transfer.textfile import TextWriter
            return TextWriter(out, schema, self.text or TextOptions(), hints)
        if self.fmt == "jsonl":
            return _JsonLinesWriter(out, json_text)
        return _Closing(pacsv.CSVWriter(out, schema, write_options=pacsv.WriteOptions(delimiter=self.delimiter)), out)


class _JsonLinesWriter:
    """One JSON object per row (values as kafkaout.json_default writes them), into a
    binary stream. `json_text`: the batch's columns hold each value's JSON text already
    (NULL: null), as merge reads JSON lines; the line is the same as json.dumps writes."""

    def __init__(self, f, json_text: bool = False):
        self.f, self.json_text = f, json_text

    def write_batch(self, batch) -> None:
        from fastsync.transfer.kafkaout import json_default
        if self.json_text:          # json.dumps' separators: ", " between members, ": " after a name
            names = [json.dumps(n, ensure_ascii=False) + ": " for n in batch.schema.names]
            lines = ["{" + ", ".join(n + ("null" if v is None else v) for n, v in zip(names, row)) + "}"
                     for row in zip(*(c.to_pylist() for c in batch.columns))]
        else:
            lines = [json.dumps(row, ensure_ascii=False, default=json_default) for row in batch.to_pylist()]
        if lines:
            self.f.write(("\n".join(lines) + "\n").encode("utf-8"))

    def close(self) -> None:
        self.f.close()


class _Closing:
    """A writer whose output stream is closed with it."""

    def __init__(self, writer, stream):
        self.writer, self.stream = writer, stream

    def write_batch(self, batch) -> None:
        self.writer.write_batch(batch)

    def close(self) -> None:
        self.writer.close()
        self.stream.close()
