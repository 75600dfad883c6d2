"""Every flag of Sqoop 1.4.7's import, import-all-tables, export and merge tools, and its fate
in fastsync: honoured (works as in Sqoop, or mapped onto fastsync's own flag), ignored
(accepted, with a one-line note on stderr saying why) or refused (exit 2, one line naming
the flag, why, and what to use instead) -- never argparse's "unrecognized arguments".

The list is Sqoop 1.4.7's (its BaseSqoopTool/ImportTool/ExportTool/MergeTool option groups).
Hadoop's generic options (-D k=v, -fs, -jt, -conf, -libjars, -files, -archives,
-tokenCacheFile) come right after the tool name, as Sqoop takes them; the meaningful ones are
mapped (GENERIC_DEFINES). `--options-file FILE` is expanded as Sqoop's OptionsFileUtil does.

cli.py calls, in order: preprocess(argv) before parsing, add_flags(parser, tool) while
building a tool's parser, apply(args, argv, hadoop) after parsing. `python -m
fastsync.transfer.sqoopflags` prints the table as the Markdown page
docs/compatibility/sqoop-flags.md.
"""
from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass

log = logging.getLogger("fastsync")

IMPORT, ALL, EXPORT, MERGE = "import", "import-all-tables", "export", "merge"
TOOLS = (IMPORT, ALL, EXPORT, MERGE)
_IA, _IAE, _ALLT = (IMPORT, ALL), (IMPORT, ALL, EXPORT), TOOLS
HONOURED, IGNORED, REFUSED = "honoured", "ignored", "refused"


class SqoopFlagError(Exception):
    """A Sqoop flag fastsync refuses, or one given a value it can't take: one line."""


@dataclass(frozen=True)
class Flag:
    name: str                  # as typed: --hbase-table, -m
    value: bool                # takes a value
    tools: tuple               # the Sqoop tools that have it
    fate: str                  # HONOURED, IGNORED or REFUSED
    note: str                  # honoured: what it does here; else why, and what to use instead
    group: str                 # Sqoop's option group (the docs page's sections)


_HIVE = ("not supported: fastsync does not drive Hive; import to --target-dir (text or Parquet) and "
         "create the table on it: CREATE EXTERNAL TABLE ... LOCATION '<target-dir>'")
_HBASE = ("not supported: fastsync does not write HBase; import to --target-dir and load the files with "
          "HBase's ImportTsv / bulk load")
_ACCUMULO = ("not supported: fastsync does not write Accumulo; import to --target-dir and load the files "
             "with Accumulo's own import")
_HCAT = ("not supported: fastsync does not use HCatalog; import to --target-dir (export: --export-dir) "
         "and point the Hive/HCatalog table's LOCATION at it")
_CODEGEN = "ignored: fastsync generates no Java record class (the files are read and written directly)"
_NOHADOOP = "ignored: fastsync needs no Hadoop installation"


def _f(name, value, tools, fate, note, group):
    return Flag(name, value, tools, fate, note, group)


FLAGS: tuple[Flag, ...] = (
    # -- Common arguments (every tool but merge)
    _f("--connect", True, _IAE, HONOURED, "JDBC URL (translated) or SQLAlchemy URL", "common"),
    _f("--connection-manager", True, _IAE, IGNORED,
       "ignored: fastsync picks the database's reader and loader from --connect", "common"),
    _f("--connection-param-file", True, _IAE, REFUSED,
       "not supported: JDBC connection properties have no Python driver equivalent; put driver settings "
       "in the --connect URL's query (e.g. ?sslmode=require)", "common"),
    _f("--driver", True, _IAE, HONOURED,
       "checked against --connect: a known JDBC driver class of the same database is accepted (the Python "
       "driver is --connect's); other classes are refused", "common"),
    _f("--username", True, _IAE, HONOURED, "the user name", "common"),
    _f("--password", True, _IAE, HONOURED, "the password (prefer --password-file or -P)", "common"),
    _f("--password-file", True, _IAE, HONOURED, "file holding the password", "common"),
    _f("-P", False, _IAE, HONOURED, "prompt for the password", "common"),
    _f("--password-alias", True, _IAE, REFUSED,
       "not supported: Hadoop credential-provider aliases need Hadoop; use --password-file, -P or "
       "FASTSYNC_PASSWORD", "common"),
    _f("--hadoop-mapred-home", True, _IAE, IGNORED, _NOHADOOP, "common"),
    _f("--hadoop-home", True, _IAE, IGNORED, _NOHADOOP, "common"),
    _f("--skip-dist-cache", False, _IAE, IGNORED, "ignored: there is no distributed cache to skip", "common"),
    _f("--verbose", False, _ALLT, HONOURED, "debug logging (as --log-level DEBUG)", "common"),
    _f("--help", False, _ALLT, HONOURED, "usage", "common"),
    _f("--temporary-rootdir", True, _IAE, IGNORED,
       "ignored: fastsync stages part files beside the target (so that publishing is one rename on the same "
       "filesystem) and removes them on failure", "common"),
    _f("--metadata-transaction-isolation-level", True, _IAE, IGNORED,
       "ignored: fastsync reads metadata through SQLAlchemy's reflection, in the server's default isolation",
       "common"),
    _f("--throw-on-error", False, _IAE, IGNORED,
       "ignored: every error already ends the run with a one-line message and a non-zero exit", "common"),
    _f("--relaxed-isolation", False, _IAE, HONOURED,
       "import from MariaDB/MySQL: the splits read in READ UNCOMMITTED, as Sqoop's; PostgreSQL has no such level "
       "(it reads committed rows, as Sqoop there); export: no effect, as in Sqoop", "common"),
    _f("--oracle-escaping-disabled", True, _IAE, IGNORED, "ignored: Oracle-only (OraOop) setting", "common"),
    # -- Import control
    _f("--append", False, (IMPORT,), HONOURED, "add part files to an existing --target-dir", "import"),
    _f("--as-avrodatafile", False, _IA, HONOURED, "Avro data files", "import"),
    _f("--as-parquetfile", False, _IA, HONOURED, "Parquet files", "import"),
    _f("--as-sequencefile", False, _IA, REFUSED,
       "not supported: SequenceFiles hold Sqoop's generated Java Writable classes; use --as-avrodatafile "
       "or --as-parquetfile", "import"),
    _f("--as-textfile", False, _IA, HONOURED, "delimited text", "import"),
    _f("--boundary-query", True, (IMPORT,), HONOURED,
       "the SELECT giving the split column's min and max; only rows inside them are imported", "import"),
    _f("--columns", True, (IMPORT, EXPORT), HONOURED, "the columns", "import"),
    _f("--delete-target-dir", False, (IMPORT,), HONOURED, "replace --target-dir (once the import succeeded)",
       "import"),
    _f("--direct", False, _IAE, HONOURED,
       "the native bulk path (PostgreSQL binary COPY, MySQL/MariaDB native rows and LOAD DATA), which fastsync "
       "uses by default anyway", "import"),
    _f("--direct-split-size", True, _IA, IGNORED,
       "ignored: each split writes one part file (use more -m, or --split-limit, for smaller files)", "import"),
    _f("--fetch-size", True, _IA, HONOURED, "rows per read", "import"),
    _f("--inline-lob-limit", True, _IA, IGNORED,
       "ignored: every LOB is written inline in its row (Sqoop's separate _lobs files are never made)",
       "import"),
    _f("-m", True, _ALLT[:3], HONOURED, "parallel splits (--num-mappers)", "import"),
    _f("--num-mappers", True, _ALLT[:3], HONOURED, "parallel splits", "import"),
    _f("--mapreduce-job-name", True, _IAE, HONOURED,
       "the run's name: in the process title (ps) of the run and its split processes", "import"),
    _f("--merge-key", True, (IMPORT, MERGE), HONOURED, "the key rows are merged on", "import"),
    _f("-e", True, (IMPORT,), HONOURED, "free-form query (--query)", "import"),
    _f("--query", True, (IMPORT,), HONOURED, "free-form query with $CONDITIONS", "import"),
    _f("--split-by", True, (IMPORT,), HONOURED, "the split column", "import"),
    _f("--split-limit", True, (IMPORT,), HONOURED,
       "at most this many key values (seconds for date/time keys) per split: more splits than -m when the "
       "range is wide; -m processes still run them", "import"),
    _f("--table", True, (IMPORT, EXPORT), HONOURED, "the table", "import"),
    _f("--target-dir", True, (IMPORT, MERGE), HONOURED, "output directory (path or URL)", "import"),
    _f("--warehouse-dir", True, _IA, HONOURED, "parent of the per-table output directories", "import"),
    _f("--where", True, (IMPORT,), HONOURED, "row condition", "import"),
    _f("-z", False, _IA, HONOURED, "compress (--compress)", "import"),
    _f("--compress", False, _IA, HONOURED, "compress the output (gzip unless --compression-codec says)", "import"),
    _f("--compression-codec", True, _IA, HONOURED,
       "Hadoop codec class names and Sqoop's short names: GzipCodec/gzip, SnappyCodec/snappy, Lz4Codec/lz4, "
       "ZStandardCodec/zstd; DefaultCodec/DeflateCodec/deflate (Avro only: deflate); BZip2Codec and LZO are "
       "refused (use gzip or zstd)", "import"),
    _f("--autoreset-to-one-mapper", False, _IA, HONOURED,
       "a table without a single-column primary key (and no --split-by) is imported with -m 1", "import"),
    _f("--exclude-tables", True, (ALL,), HONOURED, "tables to skip", "import"),
    # -- Validation
    _f("--validate", False, (IMPORT, EXPORT), HONOURED,
       "compare the row counts of source and target as Sqoop's RowCountValidator; a difference fails the run "
       "(exit 1) with Sqoop's message", "validation"),
    _f("--validator", True, (IMPORT, EXPORT), HONOURED,
       "org.apache.sqoop.validation.RowCountValidator only (the default); another class is refused",
       "validation"),
    _f("--validation-threshold", True, (IMPORT, EXPORT), HONOURED,
       "org.apache.sqoop.validation.AbsoluteValidationThreshold only (the default); another class is refused",
       "validation"),
    _f("--validation-failurehandler", True, (IMPORT, EXPORT), HONOURED,
       "org.apache.sqoop.validation.AbortOnFailureHandler (the default: exit 1) or LogOnFailureHandler "
       "(a warning, exit 0); another class is refused", "validation"),
    *(_f(n, v, (ALL,), REFUSED, "not supported for import-all-tables (as Sqoop: single tables only); import "
         "the tables one by one with `fastsync import --validate`", "validation")
      for n, v in (("--validate", False), ("--validator", True), ("--validation-threshold", True),
                   ("--validation-failurehandler", True))),
    # -- Incremental import
    _f("--incremental", True, (IMPORT,), HONOURED, "append or lastmodified", "incremental"),
    _f("--check-column", True, (IMPORT,), HONOURED, "the column compared with --last-value", "incremental"),
    _f("--last-value", True, (IMPORT,), HONOURED, "the largest value already imported", "incremental"),
    # -- Export control
    _f("--export-dir", True, (EXPORT,), HONOURED,
       "the files to export (fastsync's part files, and Sqoop's extension-less part-m-NNNNN text files)",
       "export"),
    _f("--update-key", True, (EXPORT,), HONOURED, "update on these key columns", "export"),
    _f("--update-mode", True, (EXPORT,), HONOURED, "updateonly or allowinsert (also on PostgreSQL)", "export"),
    _f("--staging-table", True, (EXPORT,), HONOURED, "load here first", "export"),
    _f("--clear-staging-table", False, (EXPORT,), HONOURED, "empty --staging-table first", "export"),
    _f("--batch", False, (EXPORT,), HONOURED, "load through the driver's executemany", "export"),
    _f("--call", True, (EXPORT,), REFUSED,
       "not supported: a stored procedure called once per row; export into a table (--table) and run the "
       "procedure over it with `fastsync eval`", "export"),
    # -- Output line formatting (import: how text is written; export: how it is read, unless --input-* says)
    *(_f("--" + n, True, _IAE, HONOURED,
         "import: text output; export: the input's %s unless --input-%s is given (as Sqoop)" % (w, n), "format")
      for n, w in (("fields-terminated-by", "field separator"), ("lines-terminated-by", "line end"),
                   ("enclosed-by", "enclosing character"), ("optionally-enclosed-by", "enclosing character"),
                   ("escaped-by", "escape character"))),
    _f("--mysql-delimiters", False, _IAE, HONOURED,
       "MySQL's default delimiters: fields , lines \\n escaped-by \\ optionally-enclosed-by '", "format"),
    # -- Input parsing
    *(_f("--input-" + n, True, _IAE, HONOURED,
         "export: how the files are read; import: accepted, no effect (in Sqoop it sets the generated "
         "class's parser only)", "input")
      for n in ("fields-terminated-by", "lines-terminated-by", "enclosed-by", "optionally-enclosed-by",
                "escaped-by")),
    # -- Hive
    *(_f("--" + n, v, _IA, REFUSED, _HIVE, "hive")
      for n, v in (("hive-import", False), ("hive-overwrite", False), ("create-hive-table", False),
                   ("hive-table", True), ("hive-database", True), ("external-table-dir", True))),
    # (also HCatalog's, so export has them too)
    *(_f("--" + n, True, _IAE, REFUSED, _HIVE + "; export: " + _HCAT.split("; ", 1)[1], "hive")
      for n in ("hive-home", "hive-partition-key", "hive-partition-value", "map-column-hive")),
    _f("--hive-drop-import-delims", False, _IA, HONOURED,
       "drop \\n, \\r and \\01 from string fields of text (and csv) output", "hive"),
    _f("--hive-delims-replacement", True, _IA, HONOURED,
       "replace \\n, \\r and \\01 in string fields of text (and csv) output by this string", "hive"),
    # -- HBase
    *(_f("--" + n, v, _IA, REFUSED, _HBASE, "hbase")
      for n, v in (("hbase-table", True), ("column-family", True), ("hbase-row-key", True),
                   ("hbase-bulkload", False), ("hbase-create-table", False))),
    # -- HCatalog (export has the first group too)
    *(_f("--" + n, True, _IAE, REFUSED, _HCAT, "hcatalog")
      for n in ("hcatalog-table", "hcatalog-database", "hcatalog-home", "hcatalog-partition-keys",
                "hcatalog-partition-values")),
    *(_f("--" + n, v, _IA, REFUSED, _HCAT, "hcatalog")
      for n, v in (("create-hcatalog-table", False), ("drop-and-create-hcatalog-table", False),
                   ("hcatalog-storage-stanza", True))),
    # -- Accumulo
    *(_f("--" + n, v, _IA, REFUSED, _ACCUMULO, "accumulo")
      for n, v in (("accumulo-table", True), ("accumulo-column-family", True), ("accumulo-row-key", True),
                   ("accumulo-visibility", True), ("accumulo-create-table", False), ("accumulo-batch-size", True),
                   ("accumulo-max-latency", True), ("accumulo-zookeepers", True), ("accumulo-instance", True),
                   ("accumulo-user", True), ("accumulo-password", True))),
    # -- Code generation
    _f("--outdir", True, _IAE, IGNORED, _CODEGEN, "codegen"),
    _f("--bindir", True, _IAE, IGNORED, _CODEGEN, "codegen"),
    _f("--package-name", True, _IAE, IGNORED, _CODEGEN, "codegen"),
    _f("--class-name", True, (IMPORT, EXPORT, MERGE), IGNORED, _CODEGEN, "codegen"),
    _f("--jar-file", True, _ALLT, IGNORED,
       _CODEGEN + "; merge of text files: give the field names with --columns", "codegen"),
    _f("--escape-mapping-column-names", True, _IAE, IGNORED,
       "ignored: column names are quoted by SQLAlchemy, never mapped to Java names", "codegen"),
    _f("--map-column-java", True, _IAE, REFUSED,
       "not supported: fastsync keeps each column's database type; cast in a free-form --query instead "
       "(SELECT CAST(c AS TEXT) AS c ... WHERE $CONDITIONS)", "codegen"),
    _f("--null-string", True, _IAE, HONOURED,
       "import: NULL of string columns in text; export: read as NULL unless --input-null-string is given",
       "codegen"),
    _f("--null-non-string", True, _IAE, HONOURED,
       "import: NULL of other columns in text; export: read as NULL unless --input-null-non-string is given",
       "codegen"),
    _f("--input-null-string", True, _IAE, HONOURED,
       "export: the text read as NULL in string columns; import: accepted, no effect", "codegen"),
    _f("--input-null-non-string", True, _IAE, HONOURED,
       "export: the text read as NULL in other columns (an empty field is NULL too, as Sqoop); import: "
       "accepted, no effect", "codegen"),
    # -- Merge
    _f("--new-data", True, (MERGE,), HONOURED, "the newer data set", "merge"),
    _f("--onto", True, (MERGE,), HONOURED, "the older data set", "merge"),
    # -- Sqoop's own launcher
    _f("--options-file", True, _ALLT, HONOURED,
       "arguments read from a file, one per line (# comments, \\ continues a line), as Sqoop", "launcher"),
)

# Hadoop's generic options (GenericOptionsParser): name -> what fastsync does with them
GENERIC = {
    "-D": "a Hadoop property: the meaningful ones are mapped (below), the others accepted and ignored",
    "-conf": "a Hadoop XML configuration file: its properties are read as -D ones",
    "-fs": "the default filesystem (as fs.defaultFS): a --target-dir, --warehouse-dir or --export-dir "
           "without a scheme is on it",
    "-jt": "ignored: splits run in fastsync's processes (or on a Dask cluster: --cluster)",
    "-libjars": "ignored: JDBC drivers are not used (fastsync's are Python packages)",
    "-files": "ignored: no distributed cache",
    "-archives": "ignored: no distributed cache",
    "-tokenCacheFile": "ignored: no Hadoop delegation tokens",
}
GENERIC_DEFINES = {
    "mapreduce.job.name": "as --mapreduce-job-name",
    "mapred.job.name": "as --mapreduce-job-name",
    "fs.defaultFS": "as -fs",
    "fs.default.name": "as -fs",
    "org.apache.sqoop.splitter.allow_text_splitter": "true: a text --split-by is split on the key's quantiles "
                                                     "(--split-strategy quantile); without it, refused as Sqoop",
    "sqoop.export.records.per.statement": "ignored: export loads through COPY / LOAD DATA into a staging "
                                          "table, moved into the target in one transaction",
    "sqoop.export.statements.per.transaction": "ignored: the export commits once, all or nothing",
    "mapreduce.map.memory.mb": "ignored: no YARN containers",
    "mapreduce.map.java.opts": "ignored: no JVM",
}
_GENERIC_HAVE_VALUE = set(GENERIC)
_JDBC_DRIVERS = {     # JDBC driver class -> SQLAlchemy backends it can talk to
    "org.postgresql.Driver": ("postgresql",),
    "com.mysql.jdbc.Driver": ("mysql", "mariadb"), "com.mysql.cj.jdbc.Driver": ("mysql", "mariadb"),
    "org.mariadb.jdbc.Driver": ("mysql", "mariadb"),
    "org.sqlite.JDBC": ("sqlite",),
    "oracle.jdbc.OracleDriver": ("oracle",), "oracle.jdbc.driver.OracleDriver": ("oracle",),
    "com.microsoft.sqlserver.jdbc.SQLServerDriver": ("mssql",),
}
_CODECS = {           # Sqoop's --compression-codec (class or CodecMap name) -> fastsync's
    "gzip": "gzip", "org.apache.hadoop.io.compress.GzipCodec": "gzip",
    "snappy": "snappy", "org.apache.hadoop.io.compress.SnappyCodec": "snappy",
    "lz4": "lz4", "org.apache.hadoop.io.compress.Lz4Codec": "lz4",
    "zstandard": "zstd", "zstd": "zstd", "org.apache.hadoop.io.compress.ZStandardCodec": "zstd",
    "none": "none",
    "deflate": "deflate", "default": "deflate", "org.apache.hadoop.io.compress.DefaultCodec": "deflate",
    "org.apache.hadoop.io.compress.DeflateCodec": "deflate",
    "bzip2": None, "org.apache.hadoop.io.compress.BZip2Codec": None,
    "lzo": None, "lzop": None, "com.hadoop.compression.lzo.LzoCodec": None,
    "com.hadoop.compression.lzo.LzopCodec": None,
}
_VALIDATION = {
    "--validator": ("org.apache.sqoop.validation.RowCountValidator",),
    "--validation-threshold": ("org.apache.sqoop.validation.AbsoluteValidationThreshold",),
    "--validation-failurehandler": ("org.apache.sqoop.validation.AbortOnFailureHandler",
                                    "org.apache.sqoop.validation.LogOnFailureHandler"),
}


def flags_of(tool: str) -> list[Flag]:
    return [f for f in FLAGS if tool in f.tools]


def _dest(name: str) -> str:
    return "sqoop_" + name.lstrip("-").replace("-", "_")


def note(message: str) -> None:
    print("fastsync: note: %s" % message, file=sys.stderr)


# -- before parsing ------------------------------------------------------------------------

def _options_file(path: str) -> list[str]:
    """Sqoop's --options-file: one argument per line, blank lines and # comments skipped, a
    trailing backslash continues the line, quotes around a whole argument removed."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise SqoopFlagError("--options-file %s: %s" % (path, exc.strerror)) from None
    out, buf = [], ""
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        buf += line
        if buf.endswith("\\"):
            if buf[0] in "'\"":
                raise SqoopFlagError("--options-file %s: a quoted argument cannot continue on the next line: %s"
                                     % (path, buf))
            buf = buf[:-1]
            continue
        for q in "\"'":
            if len(buf) > 1 and buf[0] == q and buf[-1] == q:
                buf = buf[1:-1]
                break
        out.append(buf)
        buf = ""
    if buf:
        raise SqoopFlagError("--options-file %s: the last argument ends in a backslash: %s" % (path, buf))
    return out


def _expand_options_files(argv: list[str]) -> list[str]:
    out, i = [], 0
    while i < len(argv):
        if argv[i] == "--options-file":
            if i + 1 == len(argv):
                raise SqoopFlagError("--options-file: give the file")
            out += _options_file(argv[i + 1])
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def _generic_name(arg: str) -> str | None:
    if arg.startswith("-D") and not arg.startswith("--"):
        return "-D"
    return arg if arg in _GENERIC_HAVE_VALUE else None


def preprocess(argv: list[str]) -> tuple[list[str], dict]:
    """argv with --options-file expanded and Hadoop's generic options (right after the tool
    name) taken out; the Hadoop properties they set ({"fs.defaultFS": ..., ...}). Sqoop codec
    class names are turned into fastsync's codec names; refused codecs and generic options
    after the tool's flags raise SqoopFlagError."""
    if "--options-file" in argv:
        argv = _expand_options_files(argv)
    tool_at = next((i for i, a in enumerate(argv) if not a.startswith("-")), None)
    if tool_at is None or argv[tool_at] not in TOOLS:
        return argv, {}
    tool = argv[tool_at]
    head, rest = argv[:tool_at + 1], argv[tool_at + 1:]
    props: dict[str, str] = {}
    conf_files: list[str] = []
    i = 0
    while i < len(rest) and _generic_name(rest[i]):
        name = _generic_name(rest[i])
        if name == "-D" and rest[i] != "-D":
            value, i = rest[i][2:], i + 1
        else:
            if i + 1 == len(rest):
                raise SqoopFlagError("%s: give its value" % name)
            value, i = rest[i + 1], i + 2
        if name == "-D":
            key, sep, val = value.partition("=")
            if not sep or not key:
                raise SqoopFlagError("-D %s: expected -D key=value" % value)
            props[key.strip()] = val
        elif name == "-fs":
            props["fs.defaultFS"] = value
        elif name == "-conf":
            conf_files.append(value)
        else:
            note("%s %s: %s" % (name, value, GENERIC[name]))
    for path in conf_files:            # -D wins over a -conf file, as in Hadoop
        props = {**_hadoop_xml(path), **props}
    rest = rest[i:]
    for j, a in enumerate(rest):
        if _generic_name(a) and not (j and _takes_value(tool, rest[j - 1])):
            raise SqoopFlagError("%s: Hadoop's generic options go right after the tool name, as in Sqoop: "
                                 "fastsync %s %s ... --connect ..." % (_generic_name(a), tool, _generic_name(a)))
    return head + _codecs(rest, tool), props


def _takes_value(tool: str, arg: str) -> bool:
    return arg.startswith("-") and "=" not in arg and any(f.name == arg and f.value for f in flags_of(tool))


def _hadoop_xml(path: str) -> dict[str, str]:
    import xml.etree.ElementTree as ET
    try:
        root = ET.parse(path).getroot()
    except OSError as exc:
        raise SqoopFlagError("-conf %s: %s" % (path, exc.strerror)) from None
    except ET.ParseError as exc:
        raise SqoopFlagError("-conf %s: not a Hadoop XML configuration: %s" % (path, exc)) from None
    return {(p.findtext("name") or "").strip(): (p.findtext("value") or "").strip() for p in root.iter("property")
            if p.findtext("name")}


def _codecs(args: list[str], tool: str) -> list[str]:
    """--compression-codec's Hadoop class names and Sqoop names as fastsync's codec names."""
    out = list(args)
    avro = "--as-avrodatafile" in args or "--format=avro" in args or any(
        a == "--format" and b == "avro" for a, b in zip(args, args[1:]))
    for i, a in enumerate(out):
        if a.startswith("--compression-codec=") or (a == "--compression-codec" and i + 1 < len(out)):
            j = i if "=" in a else i + 1
            value = out[j].split("=", 1)[1] if j == i else out[j]
            key = value if value in _CODECS else value.lower()
            if key not in _CODECS:
                continue               # fastsync's own names, or argparse's error
            mapped = _CODECS[key]
            if mapped is None:
                raise SqoopFlagError("--compression-codec %s: not supported (bzip2 and LZO are not written by "
                                     "fastsync): use gzip (GzipCodec) or zstd" % value)
            if mapped == "deflate":
                if not avro:
                    raise SqoopFlagError("--compression-codec %s: Hadoop's zlib streams (.deflate) are not "
                                         "written by fastsync: use gzip (GzipCodec), or deflate with "
                                         "--as-avrodatafile" % value)
                mapped = "gzip"        # fastsync's name of Avro's deflate codec
            out[j] = "--compression-codec=" + mapped if j == i else mapped
    return out


# -- the parser ----------------------------------------------------------------------------

def add_flags(parser: argparse.ArgumentParser, tool: str) -> None:
    """Sqoop's flags of `tool` that fastsync's parser does not define itself, in a group of
    their own (dest sqoop_<name>), so that apply() can honour, note or refuse them."""
    have = parser._option_string_actions          # noqa: SLF001 -- argparse keeps no public index
    group = parser.add_argument_group("Sqoop 1.4.7 flags (docs/compatibility/sqoop-flags.md)")
    for f in flags_of(tool):
        if f.name in have or f.name == "--options-file":
            continue
        shown = f.note if f.fate == HONOURED else "%s: %s" % (f.fate, f.note.split(": ", 1)[-1])
        if f.value:
            group.add_argument(f.name, dest=_dest(f.name), metavar="VALUE", help=shown.replace("%", "%%"))
        else:
            group.add_argument(f.name, dest=_dest(f.name), action="store_true", default=None,
                               help=shown.replace("%", "%%"))


def _given(argv: list[str], *names: str) -> bool:
    return any(a in names or a.split("=", 1)[0] in names for a in argv)


def apply(args, argv: list[str], hadoop: dict) -> None:
    """After parsing: refuse, note or honour the Sqoop flags and Hadoop properties given."""
    tool = getattr(args, "command", None)
    if tool not in TOOLS:
        return
    args.hadoop = hadoop
    given = [f for f in flags_of(tool) if getattr(args, _dest(f.name), None) is not None]
    for f in given:
        if f.fate == REFUSED:
            raise SqoopFlagError("%s: %s" % (f.name, f.note))
    for f in given:
        if f.fate == IGNORED:
            note("%s: %s" % (f.name, f.note))
    v = lambda name: getattr(args, _dest(name), None)      # noqa: E731
    if v("--verbose"):
        args.log_level = "DEBUG"
    if v("--direct") and getattr(args, "fast_path", True) is False:
        raise SqoopFlagError("--direct asks for the native bulk path, --no-fast-path for the generic one: give one")
    if v("--driver"):
        _check_driver(v("--driver"), args.connect)
    name = v("--mapreduce-job-name") or hadoop.get("mapreduce.job.name") or hadoop.get("mapred.job.name")
    if name:
        _job_name(tool, name)
    _validation(args, tool)
    fs = hadoop.get("fs.defaultFS") or hadoop.get("fs.default.name")
    if fs:
        for attr in ("target_dir", "warehouse_dir", "export_dir", "new_data", "onto"):
            if getattr(args, attr, None):
                setattr(args, attr, on_default_fs(getattr(args, attr), fs))
    for key, value in hadoop.items():
        if key in GENERIC_DEFINES and GENERIC_DEFINES[key].startswith("ignored"):
            note("-D %s: %s" % (key, GENERIC_DEFINES[key]))
    if hadoop.get("org.apache.sqoop.splitter.allow_text_splitter", "").lower() == "true" \
            and hasattr(args, "split_strategy") and not _given(argv, "--split-strategy"):
        args.allow_text_splitter = True
    if tool == MERGE:
        return
    if v("--mysql-delimiters"):
        for attr, value in (("fields_terminated_by", ","), ("lines_terminated_by", "\\n"), ("escaped_by", "\\\\"),
                            ("optionally_enclosed_by", "'"), ("enclosed_by", "")):
            if tool == EXPORT:
                setattr(args, _dest("--" + attr.replace("_", "-")), value)
            else:
                setattr(args, attr, value)
    if tool == EXPORT:          # the output format flags are the input's unless --input-* says (Sqoop)
        for n in ("fields-terminated-by", "lines-terminated-by", "enclosed-by", "optionally-enclosed-by",
                  "escaped-by", "null-string", "null-non-string"):
            value = v("--" + n)
            if value is not None and not _given(argv, "--input-" + n):
                setattr(args, "input_" + n.replace("-", "_"), value)
    else:
        for f in given:         # honoured on export; on import they only set Sqoop's generated parser
            if f.name.startswith("--input-"):
                note("%s: no effect on %s (Sqoop uses it in the generated class's parser only)" % (f.name, tool))
        if v("--hive-drop-import-delims") and v("--hive-delims-replacement") is not None:
            raise SqoopFlagError("--hive-drop-import-delims and --hive-delims-replacement: give one (as Sqoop)")
        args.hive_delims = "" if v("--hive-drop-import-delims") else v("--hive-delims-replacement")
        limit = v("--split-limit")
        if limit is not None:
            try:
                args.split_limit = int(limit)
            except ValueError:
                args.split_limit = 0
            if args.split_limit < 1:
                raise SqoopFlagError("--split-limit %s: must be a whole number greater than 0" % limit)
        if v("--autoreset-to-one-mapper"):
            args.autoreset_to_one_mapper = True


def relaxed(url):
    """--relaxed-isolation: the URL whose connections read uncommitted rows (MariaDB/MySQL)."""
    if url.get_backend_name() in ("mysql", "mariadb"):
        return url.update_query_dict({"init_command": "SET SESSION TRANSACTION ISOLATION LEVEL READ UNCOMMITTED"})
    return url


def _check_driver(cls: str, connect: str) -> None:
    from fastsync.transfer.connect import ConnectError, translate_url
    backends = _JDBC_DRIVERS.get(cls)
    if backends is None:
        raise SqoopFlagError("--driver %s: no Python driver stands for this JDBC class; give the database's "
                             "SQLAlchemy URL (dialect+driver://...) in --connect" % cls)
    try:
        backend = translate_url(connect).get_backend_name()
    except ConnectError as exc:
        raise SqoopFlagError(str(exc)) from None
    if backend not in backends:
        raise SqoopFlagError("--driver %s is a %s driver, but --connect is a %s URL" % (cls, backends[0], backend))


def _job_name(tool: str, name: str) -> None:
    """The process title (inherited by the split processes) names the run, as YARN shows a
    job's name."""
    log.info("%s: job name %s", tool, name)
    try:
        import setproctitle
    except ImportError:
        return
    setproctitle.setproctitle("%s [%s]" % (setproctitle.getproctitle(), name))


def _validation(args, tool: str) -> None:
    """--validate's checks before anything runs (Sqoop's rules and messages)."""
    for flag, known in _VALIDATION.items():
        value = getattr(args, _dest(flag), None)
        if value is not None and value not in known and value.rsplit(".", 1)[-1] not in [k.rsplit(".", 1)[-1] for k in known]:
            raise SqoopFlagError("%s %s: not supported: fastsync has %s only" % (flag, value, " and ".join(known)))
    args.validate_counts = bool(getattr(args, "sqoop_validate", None))
    handler = getattr(args, "sqoop_validation_failurehandler", None) or ""
    args.validation_log_only = handler.endswith("LogOnFailureHandler")
    if not args.validate_counts or tool != IMPORT:
        return
    if args.query:
        raise SqoopFlagError("--validate: Validation is not supported for free from query but single table only.")
    if args.where:
        raise SqoopFlagError("--validate: Validation is not supported for where clause but single table only.")
    if args.incremental:
        raise SqoopFlagError("--validate: Validation is not supported for incremental imports but single table only.")


def on_default_fs(path: str, fs: str) -> str:
    """A path without a scheme on Hadoop's default filesystem `fs` (-fs, fs.defaultFS): an
    absolute one under its root, a relative one under /user/<name>, as Hadoop resolves them."""
    import getpass

    from fastsync.filesystems import scheme_of
    if scheme_of(path) or fs in ("local", "file:///", "file:/") or fs.startswith("file:"):
        return path
    if not path.startswith("/"):
        path = "/user/%s/%s" % (getpass.getuser(), path)
    return fs.rstrip("/") + path


def validate(kind: str, source: int, target: int, log_only: bool) -> str:
    """Sqoop's RowCountValidator with AbsoluteValidationThreshold: the message for equal
    counts; a difference raises SqoopFlagError with Sqoop's message (or, with
    LogOnFailureHandler, returns it as a warning)."""
    if source == target:
        return "Data successfully validated (row count at source: %d, at target: %d)" % (source, target)
    msg = ("Validation failed by RowCountValidator. Reason: The expected counter value was %d but the actual "
           "value was %d, Row Count at Source: %d, Row Count at Target: %d" % (source, target, source, target))
    if log_only:
        return "warning: " + msg
    raise SqoopFlagError("Error validating row counts (%s): %s" % (kind, msg))


# -- the docs page -------------------------------------------------------------------------

_GROUPS = {"common": "Common arguments", "import": "Import control", "validation": "Validation",
           "incremental": "Incremental import", "export": "Export control", "format": "Output line formatting",
           "input": "Input parsing", "hive": "Hive", "hbase": "HBase", "hcatalog": "HCatalog",
           "accumulo": "Accumulo", "codegen": "Code generation", "merge": "Merge", "launcher": "Sqoop's launcher"}


def markdown() -> str:
    out = ["# Sqoop 1.4.7 flags", "",
           "<!-- generated by `python -m fastsync.transfer.sqoopflags > docs/compatibility/sqoop-flags.md`: "
           "do not edit -->", "",
           "Every flag of Sqoop 1.4.7's `import`, `import-all-tables`, `export` and `merge` tools and its fate in "
           "fastsync: **honoured** (works as in Sqoop), **ignored** (accepted; one note line on stderr says why) "
           "or **refused** (exit 2; one line names the flag, why, and what to use instead). A Sqoop command "
           "line never meets argparse's *unrecognized arguments*.", ""]
    for key, title in _GROUPS.items():
        rows = [f for f in FLAGS if f.group == key]
        if not rows:
            continue
        out += ["## %s" % title, "", "| flag | tools | fate | what fastsync does |", "| --- | --- | --- | --- |"]
        for f in rows:
            out.append("| `%s%s` | %s | %s | %s |" % (f.name, " VALUE" if f.value else "", ", ".join(f.tools), f.fate,
                                                       f.note.replace("|", "\\|")))
        out.append("")
    out += ["## Hadoop generic options", "",
            "As in Sqoop, they come right after the tool name: `fastsync import -D k=v -fs hdfs://nn:8020 "
            "--connect ...`; after the tool's flags they are refused with that hint.", "",
            "| option | what fastsync does |", "| --- | --- |"]
    out += ["| `%s` | %s |" % (k + (" key=value" if k == "-D" else " VALUE"), v) for k, v in GENERIC.items()]
    out += ["", "Properties (`-D` or `-conf`) with a meaning here:", "", "| property | what fastsync does |",
            "| --- | --- |"]
    out += ["| `%s` | %s |" % (k, v) for k, v in GENERIC_DEFINES.items()]
    out += ["", "Any other property is accepted and has no effect.", ""]
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(markdown())
