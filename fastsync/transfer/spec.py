"""What an import is and what each of its splits does: the job (the command line), the plan
(what planning found out once, for every split) and SplitSpec (one split's work).

SplitSpec is all a process needs to read one split and write its part file, and it pickles:
the split processes get it today; a worker of a cluster can get it the same way.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa
import sqlalchemy as sa

from fastsync.transfer.formats import Output
from fastsync.transfer.splits import Split
from fastsync.transfer.textfile import TextOptions


class ImportError_(Exception):
    """An import failed; the message says where (flag, table.column, split)."""


@dataclass
class ImportJob:
    url: sa.engine.URL
    table: str
    target_dir: str
    columns: list[str] | None = None
    where: str | None = None
    split_by: str | None = None
    mappers: int = 4
    fetch_size: int = 10000
    fmt: str = "parquet"
    compression: str | None = None     # --compression-codec; None: snappy for Parquet, none for the rest
    compress: bool = False               # -z: compress text, csv and jsonl (gzip unless a codec is given)
    delete_target_dir: bool = False
    retries: int = 1
    fields_terminated_by: str = ","
    append: bool = False                 # add part files to an existing target
    query: str | None = None             # free-form SELECT containing $CONDITIONS (instead of table)
    boundary_query: str | None = None    # SELECT min, max of the split column (query mode)
    split_strategy: str = "minmax"       # or "quantile"
    incremental: str | None = None       # "append" | "lastmodified": only rows with check_column > last_value
    check_column: str | None = None
    merge_key: str | None = None         # lastmodified: new rows replace the target's rows of the same key
    last_value: str | None = None
    text: TextOptions | None = None      # Sqoop text delimiters, for fmt "text"
    kafka_topic: str | None = None       # rows go to this Kafka topic instead of files
    kafka_brokers: str = "localhost:9092"
    kafka_key: str | None = None         # column whose value keys each message
    kafka_format: str = "json"           # json | avro | arrow
    kafka_config: dict = field(default_factory=dict)    # librdkafka settings (--kafka-config)
    fast_path: bool = True               # native readers where the database has one (else SQLAlchemy's rows)
    cluster: str | None = None           # --cluster: the splits as tasks on tcp://HOST:PORT or local:N (cluster.py)
    password_file: str | None = None     # what the workers of a tcp:// --cluster read the password from
    sqoop_avro: bool = False             # --sqoop-avro-schema: Avro files with Sqoop 1.4.7's schema and values
    # Sqoop's flags (sqoopflags.py)
    split_limit: int | None = None       # --split-limit: at most this many key values (seconds) per split
    autoreset_to_one_mapper: bool = False    # no single-column key and no --split-by: -m 1
    hive_delims: str | None = None       # --hive-drop-import-delims (""), --hive-delims-replacement: \n \r \01
    allow_text_splitter: bool = False    # -D org.apache.sqoop.splitter.allow_text_splitter=true

    def output(self) -> Output:
        """How the part files are written."""
        return Output(self.fmt, self.compression, self.compress, self.text, self.fields_terminated_by,
                      (self.table if not self.query else "QueryResult") if self.sqoop_avro else None)


@dataclass
class Plan:
    """What planning found out, the same for every split."""
    splits: list[Split]
    columns: list[str] | None = None          # --table: the names of the columns read
    incremental: tuple | None = None          # --incremental: (last value, new upper bound)
    schema: pa.Schema | None = None           # --query: the column types, from its first rows
    query_oids: list[int] | None = None       # --query on PostgreSQL: the columns' type oids

    def names(self) -> list[str]:
        """The columns the import writes."""
        return self.columns if self.columns is not None else [f.name for f in self.schema or []]

    def spec(self, job: ImportJob, split: Split, path: str, fs_url: str | None = None) -> "SplitSpec":
        return SplitSpec(job, split, path, self.incremental, self.schema, self.query_oids, fs_url)


@dataclass
class SplitSpec:
    """One split's work: the job, the split, its part file (`path`, on the filesystem of the
    URL `fs_url`, re-resolved by the process that writes it: publish.filesystem; None: local
    disk), and what planning found out that reading it needs."""
    job: ImportJob
    split: Split
    path: str
    incremental: tuple | None = None
    schema: pa.Schema | None = None
    query_oids: list[int] | None = None
    fs_url: str | None = None

    @property
    def label(self) -> str:
        """What the split reads, for messages: the table, or --query."""
        return "--query" if self.job.query else self.job.table

    def cannot(self, name: str, detail) -> ImportError_:
        """The error for a value that column `name`'s type can't hold."""
        if self.job.query:
            return ImportError_("--query column %s: cannot convert a value: %s" % (name, detail))
        return ImportError_("%s.%s: cannot convert a value: %s" % (self.job.table, name, detail))


def one_line(exc: BaseException) -> str:
    """An exception's message, its first line (its class name when it has none)."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
