"""Our `parquet` sink: the hdfs sink's bucket paths and rolling (keys under `parquet.`),
writing Parquet files with a `body` column and one string column per header.

A file's schema is fixed when it opens: `body` and the headers of the first events written;
events carrying a header the file lacks roll it. Rows are buffered up to `rowGroupSize`
and written as one row group; rollSize compares the bytes written to the file. A Parquet
file has its footer only once closed, so it is readable only after the rename from its
in-use name (and an in-use file left by a crash is not readable).
"""
from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from fastsync.agent.component import SINKS, setting
from fastsync.agent.sinks.rolling import FileWriter, RollingSink, rolling_config

_ParquetBase = rolling_config("parquet", "_ParquetBase", file_prefix="FlumeData")


@dataclass
class ParquetSinkConfig(_ParquetBase):
    bodyType: str = setting("parquet.bodyType", "binary", "type of the body column", choices=("binary", "utf8"))
    compression: str = setting("parquet.compression", "snappy", "Parquet codec",
                               choices=("none", "snappy", "gzip", "zstd", "lz4", "brotli"))
    rowGroupSize: int = setting("parquet.rowGroupSize", 65536, "rows per row group", min=1)


class ParquetFileWriter(FileWriter):
    def __init__(self, fs, path, config):
        super().__init__(fs, path)
        self.config = config
        self.writer = None
        self.schema = None
        self.pending: list[pa.RecordBatch] = []
        self.pending_rows = 0

    def accepts(self, events):
        return self.schema is None or all(h in self.schema.names[1:] for h in _present(events))

    def _table(self, events) -> pa.RecordBatch:
        body = events.bodies()
        if self.config.bodyType == "utf8":
            body = _utf8(body)
        cols, names = [body], ["body"]
        for name in (self.schema.names[1:] if self.schema is not None else _present(events)):
            cols.append(events.header_array(name).cast(pa.string()))
            names.append(name)
        return pa.RecordBatch.from_arrays(cols, names=names)

    def write(self, events):
        rb = self._table(events)
        if self.schema is None:
            self.schema = rb.schema
            codec = self.config.compression
            self.writer = pq.ParquetWriter(self.raw, self.schema, compression=None if codec == "none" else codec)
        self.pending.append(rb)
        self.pending_rows += len(events)
        if self.pending_rows >= self.config.rowGroupSize:
            self._write_groups()

    def _write_groups(self):
        if self.pending_rows:
            table = pa.Table.from_batches(self.pending, self.schema)
            self.writer.write_table(table, row_group_size=self.config.rowGroupSize)
            self.pending, self.pending_rows = [], 0
            self.bytes = self.raw.tell()

    def close(self):
        if self.writer is not None:
            self._write_groups()
            self.writer.close()
        if not self.raw.closed:
            self.raw.close()


def _utf8(bodies: pa.Array) -> pa.Array:
    """Bodies as a utf8 column; bytes that are not UTF-8 are replaced (U+FFFD) rather than
    failing the batch over and over."""
    try:
        return bodies.cast(pa.large_string())
    except pa.ArrowInvalid:
        return pa.array([b.decode("utf-8", "replace") for b in bodies.to_pylist()], pa.large_string())


def _present(events) -> list[str]:
    """The headers at least one of these events has (a column of nulls is no header)."""
    return [h for h, col in events.headers.items() if isinstance(col, str) or col.null_count < len(col)]


@SINKS.register("parquet")
class ParquetSink(RollingSink):
    Config = ParquetSinkConfig
    KIND = "parquet"
    DEFAULT_EXTENSION = ".parquet"

    def new_writer(self, fs, path):
        return ParquetFileWriter(fs, path, self.config)
