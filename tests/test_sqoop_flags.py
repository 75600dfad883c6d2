"""Sqoop 1.4.7's flags (fastsync/transfer/sqoopflags.py): every flag of import,
import-all-tables, export and merge is honoured, ignored with a note, or refused by name (exit
2) -- never argparse's "unrecognized arguments"; --boundary-query, --validate and the mapped
flags against the real PostgreSQL; Sqoop's text files (extension-less part files, its
renderings of NULL, booleans, doubles, bytes and timestamps) exported into the real PostgreSQL
and MariaDB."""
from __future__ import annotations

import datetime
from decimal import Decimal as D
import gzip
import os
import subprocess
import sys

import pytest
import sqlalchemy as sa

from e2e_support import drop_tables
from fastsync import cli
from fastsync.transfer import sqoopflags
from fastsync.transfer.sqoopflags import FLAGS, GENERIC, HONOURED, IGNORED, REFUSED

PG_URL = os.environ.get("FASTSYNC_TEST_PG_URL", "postgresql://fastsync:fastsync@127.0.0.1:5432/fastsync")
MYSQL_URL = os.environ.get("FASTSYNC_TEST_MYSQL_URL", "mysql://fastsync:fastsync@127.0.0.1:3306/fastsync")
SRC, DST = "sqf_src_%d" % os.getpid(), "sqf_dst_%d" % os.getpid()


@pytest.fixture(scope="module", autouse=True)
def _drop_server_tables():
    yield
    drop_tables(PG_URL, SRC, DST)
    drop_tables(MYSQL_URL, DST)


def fastsync(*args, env=None):
    return subprocess.run([sys.executable, "-m", "fastsync", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})


def engine(url):
    return sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://").replace("mysql://", "mysql+pymysql://"))


def sql(url, *statements):
    e = engine(url)
    try:
        with e.begin() as conn:
            out = None
            for s in statements:
                r = conn.exec_driver_sql(s)
                out = [tuple(x) for x in r] if r.returns_rows else None
            return out
    finally:
        e.dispose()


# -- every flag: honoured, ignored with a note, or refused by name ---------------------------------

BASE = {"import": ["--connect", "sqlite:///x.db", "--table", "t", "--target-dir", "d"],
        "import-all-tables": ["--connect", "sqlite:///x.db", "--warehouse-dir", "w"],
        "export": ["--connect", "sqlite:///x.db", "--table", "t", "--export-dir", "d"],
        "merge": ["--new-data", "a", "--onto", "b", "--target-dir", "c", "--merge-key", "id"]}
VALUES = {"--driver": "org.sqlite.JDBC", "-m": "2", "--num-mappers": "2", "--fetch-size": "10", "--split-limit": "5",
          "--compression-codec": "org.apache.hadoop.io.compress.GzipCodec", "--incremental": "append",
          "--update-mode": "allowinsert", "--validator": "org.apache.sqoop.validation.RowCountValidator",
          "--validation-threshold": "org.apache.sqoop.validation.AbsoluteValidationThreshold",
          "--validation-failurehandler": "org.apache.sqoop.validation.LogOnFailureHandler",
          "--fields-terminated-by": "\\t", "--lines-terminated-by": "\\n", "--input-fields-terminated-by": "\\t",
          "--input-lines-terminated-by": "\\n", "--connect": "sqlite:///y.db"}
CASES = [(tool, f) for f in FLAGS for tool in f.tools if f.name not in ("--help", "--options-file")]


@pytest.mark.parametrize("tool,flag", CASES, ids=["%s %s" % (t, f.name) for t, f in CASES])
def test_every_sqoop_flag_is_honoured_noted_or_refused_by_name(tool, flag, capsys):
    argv = [tool, *BASE[tool], flag.name, *([VALUES.get(flag.name, "x")] if flag.value else [])]
    if flag.fate == REFUSED:
        with pytest.raises(cli.CliError) as err:
            cli.parse_args(argv)
        assert err.value.code == 2
        message = str(err.value)
        assert message.startswith(flag.name + ": ") and "\n" not in message
        assert "not supported" in message
        return
    args = cli.parse_args(argv)            # no SystemExit: argparse knew the flag
    err = capsys.readouterr().err
    if flag.fate == IGNORED:
        assert err == "fastsync: note: %s: %s\n" % (flag.name, flag.note)
    elif flag.name.startswith("--input-") and tool.startswith("import"):
        assert err == "fastsync: note: %s: no effect on %s (Sqoop uses it in the generated class's parser only)\n" % (
            flag.name, tool)
    else:
        assert flag.fate == HONOURED and "note" not in err, err
    assert args.command == tool


# `sqoop help TOOL` of Sqoop 1.4.7: the options its tools configure (BaseSqoopTool, ImportTool, ExportTool,
# ImportAllTablesTool, MergeTool at release-1.4.7)
SQOOP_1_4_7 = {
    "import": (
        "--accumulo-batch-size --accumulo-column-family --accumulo-create-table --accumulo-instance "
        "--accumulo-max-latency --accumulo-password --accumulo-row-key --accumulo-table --accumulo-user "
        "--accumulo-visibility --accumulo-zookeepers --append --as-avrodatafile --as-parquetfile "
        "--as-sequencefile --as-textfile --autoreset-to-one-mapper --bindir --boundary-query --check-column "
        "--class-name --column-family --columns --compress --compression-codec --connect --connection-manager "
        "--connection-param-file --create-hcatalog-table --create-hive-table --delete-target-dir --direct "
        "--direct-split-size --driver --drop-and-create-hcatalog-table --enclosed-by "
        "--escape-mapping-column-names --escaped-by --external-table-dir --fetch-size --fields-terminated-by "
        "--hadoop-home --hadoop-mapred-home --hbase-bulkload --hbase-create-table --hbase-row-key "
        "--hbase-table --hcatalog-database --hcatalog-home --hcatalog-partition-keys "
        "--hcatalog-partition-values --hcatalog-storage-stanza --hcatalog-table --help --hive-database "
        "--hive-delims-replacement --hive-drop-import-delims --hive-home --hive-import --hive-overwrite "
        "--hive-partition-key --hive-partition-value --hive-table --incremental --inline-lob-limit "
        "--input-enclosed-by --input-escaped-by --input-fields-terminated-by --input-lines-terminated-by "
        "--input-null-non-string --input-null-string --input-optionally-enclosed-by --jar-file --last-value "
        "--lines-terminated-by --map-column-hive --map-column-java --mapreduce-job-name --merge-key "
        "--metadata-transaction-isolation-level --mysql-delimiters --null-non-string --null-string "
        "--num-mappers --optionally-enclosed-by --oracle-escaping-disabled --outdir --package-name --password "
        "--password-alias --password-file --query --relaxed-isolation --skip-dist-cache --split-by "
        "--split-limit --table --target-dir --temporary-rootdir --throw-on-error --username --validate "
        "--validation-failurehandler --validation-threshold --validator --verbose --warehouse-dir --where -P "
        "-e -m -z"),
    "import-all-tables": (
        "--accumulo-batch-size --accumulo-column-family --accumulo-create-table --accumulo-instance "
        "--accumulo-max-latency --accumulo-password --accumulo-row-key --accumulo-table --accumulo-user "
        "--accumulo-visibility --accumulo-zookeepers --as-avrodatafile --as-parquetfile --as-sequencefile "
        "--as-textfile --autoreset-to-one-mapper --bindir --column-family --compress --compression-codec "
        "--connect --connection-manager --connection-param-file --create-hcatalog-table --create-hive-table "
        "--direct --direct-split-size --driver --drop-and-create-hcatalog-table --enclosed-by "
        "--escape-mapping-column-names --escaped-by --exclude-tables --external-table-dir --fetch-size "
        "--fields-terminated-by --hadoop-home --hadoop-mapred-home --hbase-bulkload --hbase-create-table "
        "--hbase-row-key --hbase-table --hcatalog-database --hcatalog-home --hcatalog-partition-keys "
        "--hcatalog-partition-values --hcatalog-storage-stanza --hcatalog-table --help --hive-database "
        "--hive-delims-replacement --hive-drop-import-delims --hive-home --hive-import --hive-overwrite "
        "--hive-partition-key --hive-partition-value --hive-table --inline-lob-limit --input-enclosed-by "
        "--input-escaped-by --input-fields-terminated-by --input-lines-terminated-by --input-null-non-string "
        "--input-null-string --input-optionally-enclosed-by --jar-file --lines-terminated-by "
        "--map-column-hive --map-column-java --mapreduce-job-name --metadata-transaction-isolation-level "
        "--mysql-delimiters --null-non-string --null-string --num-mappers --optionally-enclosed-by "
        "--oracle-escaping-disabled --outdir --package-name --password --password-alias --password-file "
        "--relaxed-isolation --skip-dist-cache --temporary-rootdir --throw-on-error --username --verbose "
        "--warehouse-dir -P -m -z"),
    "export": (
        "--batch --bindir --call --class-name --clear-staging-table --columns --connect --connection-manager "
        "--connection-param-file --direct --driver --enclosed-by --escape-mapping-column-names --escaped-by "
        "--export-dir --fields-terminated-by --hadoop-home --hadoop-mapred-home --hcatalog-database "
        "--hcatalog-home --hcatalog-partition-keys --hcatalog-partition-values --hcatalog-table --help "
        "--hive-home --hive-partition-key --hive-partition-value --input-enclosed-by --input-escaped-by "
        "--input-fields-terminated-by --input-lines-terminated-by --input-null-non-string --input-null-string "
        "--input-optionally-enclosed-by --jar-file --lines-terminated-by --map-column-hive --map-column-java "
        "--mapreduce-job-name --metadata-transaction-isolation-level --mysql-delimiters --null-non-string "
        "--null-string --num-mappers --optionally-enclosed-by --oracle-escaping-disabled --outdir "
        "--package-name --password --password-alias --password-file --relaxed-isolation --skip-dist-cache "
        "--staging-table --table --temporary-rootdir --throw-on-error --update-key --update-mode --username "
        "--validate --validation-failurehandler --validation-threshold --validator --verbose -P -m"),
    "merge": (
        "--class-name --help --jar-file --merge-key --new-data --onto --target-dir --verbose"),
}


@pytest.mark.parametrize("tool", sorted(SQOOP_1_4_7))
def test_the_table_holds_every_flag_of_sqoop_1_4_7(tool):
    ours = {f.name for f in sqoopflags.flags_of(tool)}
    sqoop = set(SQOOP_1_4_7[tool].split())
    assert sqoop - ours == set()
    # beyond Sqoop's own list: its launcher's --options-file; import-all-tables refuses --validate by name
    assert ours - sqoop <= {"--options-file", "--validate", "--validator", "--validation-threshold",
                            "--validation-failurehandler"}


def test_hadoop_generic_options_go_after_the_tool_name(tmp_path, capsys):
    conf = tmp_path / "core-site.xml"
    conf.write_text("<configuration><property><name>fs.defaultFS</name><value>hdfs://nn:8020</value></property>"
                    "<property><name>mapreduce.job.name</name><value>from-conf</value></property></configuration>")
    args = cli.parse_args(["import", "-D", "mapreduce.job.name=nightly", "-Dsqoop.export.records.per.statement=100",
                           "-conf", str(conf), "-jt", "local", "-libjars", "a.jar", "-files", "f", "-archives", "z",
                           "-D", "org.apache.sqoop.splitter.allow_text_splitter=true", *BASE["import"]])
    assert args.hadoop["mapreduce.job.name"] == "nightly"          # -D wins over -conf, as in Hadoop
    assert args.target_dir == "hdfs://nn:8020/user/%s/d" % __import__("getpass").getuser()
    assert args.allow_text_splitter is True
    err = capsys.readouterr().err
    for line in ("-jt local: ignored", "-libjars a.jar: ignored", "-D sqoop.export.records.per.statement: ignored"):
        assert "fastsync: note: " + line in err
    args = cli.parse_args(["export", "-fs", "file:///", *BASE["export"]])
    assert args.export_dir == "d"
    with pytest.raises(cli.CliError) as err:
        cli.parse_args(["import", *BASE["import"], "-D", "k=v"])
    assert err.value.code == 2 and str(err.value).startswith("-D: Hadoop's generic options go right after the tool name")
    with pytest.raises(cli.CliError, match=r"^-D k: expected -D key=value$"):
        cli.parse_args(["import", "-D", "k", *BASE["import"]])
    assert set(GENERIC) == {"-D", "-conf", "-fs", "-jt", "-libjars", "-files", "-archives", "-tokenCacheFile"}


def test_options_file_codecs_driver_and_validation_rules(tmp_path):
    opts = tmp_path / "import.opts"
    opts.write_text("# Sqoop options file\nimport\n--connect\n'sqlite:///x.db'\n--table\nt\n--where\n"
                    "\"a = 'b'\"\n--target-dir\nd\\\nir\n")
    args = cli.parse_args(["--options-file", str(opts), "--verbose"])
    assert (args.connect, args.where, args.target_dir, args.log_level) == ("sqlite:///x.db", "a = 'b'", "dir", "DEBUG")
    for codec, want in (("org.apache.hadoop.io.compress.SnappyCodec", "snappy"), ("lz4", "lz4"), ("GZIP", "gzip")):
        assert cli.parse_args(["import", *BASE["import"], "--compression-codec", codec]).compression_codec == want
    assert cli.parse_args(["import", *BASE["import"], "--as-avrodatafile",
                           "--compression-codec=deflate"]).compression_codec == "gzip"
    for codec, message in (("org.apache.hadoop.io.compress.BZip2Codec", r"use gzip \(GzipCodec\) or zstd"),
                           ("org.apache.hadoop.io.compress.DefaultCodec", "or deflate with --as-avrodatafile")):
        with pytest.raises(cli.CliError, match=message):
            cli.parse_args(["import", *BASE["import"], "--compression-codec", codec])
    with pytest.raises(cli.CliError, match="^--driver org.postgresql.Driver is a postgresql driver, but --connect is a sqlite URL$"):
        cli.parse_args(["import", *BASE["import"], "--driver", "org.postgresql.Driver"])
    with pytest.raises(cli.CliError, match="^--driver com.ibm.db2.jcc.DB2Driver: no Python driver"):
        cli.parse_args(["import", *BASE["import"], "--driver", "com.ibm.db2.jcc.DB2Driver"])
    with pytest.raises(cli.CliError, match="^--validator com.acme.V: not supported"):
        cli.parse_args(["import", *BASE["import"], "--validator", "com.acme.V"])
    with pytest.raises(cli.CliError, match="Validation is not supported for where clause but single table only"):
        cli.parse_args(["import", *BASE["import"], "--validate", "--where", "a > 1"])
    with pytest.raises(cli.CliError, match="^--hive-drop-import-delims and --hive-delims-replacement: give one"):
        cli.parse_args(["import", *BASE["import"], "--hive-drop-import-delims", "--hive-delims-replacement", " "])
    with pytest.raises(cli.CliError, match="^--split-limit 0: must be a whole number greater than 0$"):
        cli.parse_args(["import", *BASE["import"], "--split-limit", "0"])
    # export: the output format flags are the input's unless --input-* says (as Sqoop)
    args = cli.parse_args(["export", *BASE["export"], "--fields-terminated-by", "|", "--null-string", "\\\\N",
                           "--input-null-non-string", "NA", "--null-non-string", "x"])
    assert (args.input_fields_terminated_by, args.input_null_string, args.input_null_non_string) == ("|", "\\\\N", "NA")
    args = cli.parse_args(["export", *BASE["export"], "--mysql-delimiters"])
    assert (args.input_fields_terminated_by, args.input_escaped_by, args.input_optionally_enclosed_by) == (",", "\\\\", "'")


def test_docs_page_is_generated_from_the_table():
    page = os.path.join(os.path.dirname(__file__), "..", "docs", "compatibility", "sqoop-flags.md")
    with open(page, encoding="utf-8") as f:
        assert f.read() == sqoopflags.markdown(), "regenerate: python -m fastsync.transfer.sqoopflags > " + page


# -- against PostgreSQL: --boundary-query, --validate, the mapped flags -----------------------------

@pytest.fixture(scope="module")
def pg_table():
    sql(PG_URL, "DROP TABLE IF EXISTS %s" % SRC,
        "CREATE TABLE %s (id int PRIMARY KEY, s text, ts timestamp)" % SRC,
        "INSERT INTO %s SELECT i, CASE WHEN mod(i, 10) = 0 THEN 'a' || chr(10) || 'b' || chr(13) || chr(1) || 'c' "
        "ELSE 'v' || i END, timestamp '2020-01-01' + i * interval '1 second' FROM generate_series(1, 1000) i" % SRC)
    return SRC


def _lines(target):
    out = []
    for name in sorted(os.listdir(target)):
        if name.startswith("part-"):
            data = (target / name).read_bytes()
            out += (gzip.decompress(data) if name.endswith(".gz") else data).decode().splitlines()
    return out


@pytest.mark.slow
def test_boundary_query_and_validate_as_sqoop(pg_table, tmp_path):
    base = ["import", "--connect", "jdbc:postgresql://127.0.0.1:5432/fastsync", "--username", "fastsync",
            "--password", "fastsync", "--table", pg_table, "--as-textfile", "--columns", "id"]
    # Sqoop imports only the rows inside the boundaries; its validator then counts 1000 vs 501
    out = fastsync(*base, "-m", 3, "--target-dir", tmp_path / "b", "--boundary-query", "SELECT 250, 750", "--validate")
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == (
        "fastsync: error: Error validating row counts (import): Validation failed by RowCountValidator. Reason: The "
        "expected counter value was 1000 but the actual value was 501, Row Count at Source: 1000, Row Count at Target: 501")
    assert sorted(map(int, _lines(tmp_path / "b"))) == list(range(250, 751))     # the output stays, as Sqoop's
    # a passing validation, and the mapped flags in the same run
    out = fastsync("import", "-D", "mapreduce.job.name=nightly", *base[1:-2], "--target-dir", tmp_path / "v", "--validate",
                   "--direct", "--split-limit", 300, "-m", 2, "--hive-drop-import-delims", "--outdir", tmp_path / "gen",
                   "--compression-codec", "org.apache.hadoop.io.compress.GzipCodec", "--driver", "org.postgresql.Driver")
    assert out.returncode == 0, out.stderr
    assert "import validation: Data successfully validated (row count at source: 1000, at target: 1000)" in out.stderr
    assert "fastsync: note: --outdir: ignored" in out.stderr and "(4 splits)" in out.stdout
    parts = sorted(n for n in os.listdir(tmp_path / "v") if n.startswith("part-"))
    assert len(parts) == 4 and all(n.endswith(".gz") for n in parts)
    lines = _lines(tmp_path / "v")
    assert len(lines) == 1000 and any(x.startswith("10,abc,") for x in lines) and not any("\x01" in x or "\r" in x for x in lines)
    # export: the rows read vs the table's count after (a table that had rows fails, as in Sqoop)
    sql(PG_URL, "DROP TABLE IF EXISTS %s" % DST, "CREATE TABLE %s (id int, s text, ts timestamp)" % DST)
    exp = ["export", "--connect", PG_URL, "--table", DST, "--export-dir", tmp_path / "b", "--columns", "id", "--validate"]
    out = fastsync(*exp)
    assert out.returncode == 0 and "Data successfully validated (row count at source: 501, at target: 501)" in out.stderr
    out = fastsync(*exp, "--validation-failurehandler", "org.apache.sqoop.validation.LogOnFailureHandler")
    assert out.returncode == 0, out.stderr
    assert out.stderr.strip().endswith("export validation: warning: Validation failed by RowCountValidator. Reason: The "
                                       "expected counter value was 501 but the actual value was 1002, Row Count at "
                                       "Source: 501, Row Count at Target: 1002")


# -- Sqoop's text files read by export and merge -----------------------------------------------------

SQOOP_PLAIN = ("1,abc,0.14285715,1.0E-7,NaN,de ad be ef,2010-06-01 19:00:13.5,2010-06-01 19:00:13.5,true,2010-06-01\n"
               "2,null,3.4E38,Infinity,-Infinity,00,2010-06-01 19:00:00.0,2010-06-01 19:00:00.0,false,null\n"
               "3,,null,null,null,null,null,null,null,null\n")
NEW_YORK = datetime.timezone(datetime.timedelta(hours=-4))       # in June
PG_DDL = ("(id int PRIMARY KEY, s text, r real, d double precision, d2 double precision, b bytea, ts timestamp, "
          "tz timestamptz, bo smallint, dt date)")
MY_DDL = ("(id int PRIMARY KEY, s text, r float, d double, d2 double, b blob, ts datetime(1), tz datetime(1), "
          "bo tinyint(1), dt date)")


def _want(db):
    t1, t2 = datetime.datetime(2010, 6, 1, 19, 0, 13, 500000), datetime.datetime(2010, 6, 1, 19, 0)
    tz1, tz2 = (t1.replace(tzinfo=NEW_YORK), t2.replace(tzinfo=NEW_YORK)) if db == "pg" else (t1, t2)
    nan, inf, minf = (float("nan"), float("inf"), float("-inf")) if db == "pg" else (2.5, 1e300, -1.0)
    return [(1, "abc", 0.14285715, 1e-07, nan, b"\xde\xad\xbe\xef", t1, tz1, 1, datetime.date(2010, 6, 1)),
            (2, None, 3.4e38, inf, minf, b"\x00", t2, tz2, 0, None),
            (3, "", None, None, None, None, None, None, None, None)]


def _same(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        for a, b in zip(g, w):
            if isinstance(b, float) and b != b:
                assert a != a, (g, w)
            elif isinstance(b, float):
                assert a == pytest.approx(b, rel=1e-5), (g, w)
            else:        # an aware datetime: the same instant
                assert (bytes(a) if isinstance(a, memoryview) else a) == b, (g, w)


@pytest.mark.parametrize("db", ["pg", "mysql"])
@pytest.mark.slow
def test_export_reads_sqoop_text_files(db, tmp_path):
    """Sqoop's part-m-00000 as Sqoop 1.4.7 renders values (Java doubles, NaN/Infinity, spaced hex,
    `.0` timestamps, timestamptz in the client's zone, true/false), plain, enclosed ("null")
    and escaped (\\\\N), the delimiters given with Sqoop's output flags."""
    url = PG_URL if db == "pg" else MYSQL_URL
    plain = SQOOP_PLAIN
    if db == "mysql":      # MariaDB has no NaN or Infinity
        plain = plain.replace("NaN", "2.5").replace("-Infinity", "-1.0").replace("Infinity", "1.0E300")
    cases = {"plain": (plain, []),
             "enclosed": ('"' + plain.replace(",", '","').replace("\n", '"\n"')[:-1], ["--enclosed-by", '"']),
             "escaped": (plain.replace("null", "\\\\N").replace(",", "\t"),
                         ["--fields-terminated-by", "\\t", "--escaped-by", "\\\\", "--null-string", "\\\\N",
                          "--input-null-non-string", "\\\\N"])}
    for case, (text, flags) in cases.items():
        d = tmp_path / case
        d.mkdir()
        (d / "part-m-00000").write_text(text)
        (d / "_SUCCESS").write_text("")
        sql(url, "DROP TABLE IF EXISTS %s" % DST, "CREATE TABLE %s %s" % (DST, PG_DDL if db == "pg" else MY_DDL))
        out = fastsync("export", "--connect", url, "--table", DST, "--export-dir", d, *flags,
                       env={"TZ": "America/New_York"})
        assert out.returncode == 0, (case, out.stderr)
        _same(sql(url, "SELECT * FROM %s ORDER BY id" % DST), _want(db))


def test_merge_reads_sqoop_part_files(tmp_path):
    for name, text in (("old", "1,a\n2,b\n"), ("new", "2,B\n3,null\n")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "part-m-00000").write_text(text)
    out = fastsync("merge", "--new-data", tmp_path / "new", "--onto", tmp_path / "old", "--target-dir", tmp_path / "m",
                   "--merge-key", "id", "--columns", "id,s", "--jar-file", "x.jar", "--class-name", "Rec")
    assert out.returncode == 0, out.stderr
    assert "fastsync: note: --jar-file: ignored" in out.stderr
    assert sorted(_lines(tmp_path / "m")) == ["1,a", "2,B", "3,null"]


# -- against the real Sqoop 1.4.7 (tests/sqoop_support.py) ---------------------------------------------

PG_TYPES = ("(id int PRIMARY KEY, s varchar(50), i bigint, r real, d double precision, n numeric(12, 3), b boolean, "
            "by bytea, dt date, ts timestamp, tz timestamptz)")
PG_ROWS = ("SELECT i, CASE WHEN mod(i, 7) = 0 THEN NULL WHEN mod(i, 5) = 0 THEN '' ELSE 'name ' || i END, i * 1000003, "
           "i / 7.0, CASE i WHEN 300 THEN 'NaN'::float8 WHEN 301 THEN 'Infinity' WHEN 302 THEN '-Infinity' WHEN 303 "
           "THEN 1e-7 ELSE i / 3.0 END, i * 1.5, mod(i, 2) = 0, CASE WHEN mod(i, 9) = 0 THEN NULL ELSE "
           "decode(lpad(to_hex(i), 4, '0'), 'hex') END, date '2020-01-01' + i, timestamp '2020-01-01' + i * "
           "interval '61.5 second', timestamptz '2020-06-01 12:00:00+00' + i * interval '1 hour' "
           "FROM generate_series(1, 1000) i")
MY_TYPES = ("(id int PRIMARY KEY, s varchar(50), i bigint, f float, d double, n decimal(12, 3), b tinyint(1), "
            "dt date, ts datetime, ts1 datetime(1))")
MY_ROWS = [(i, None if i % 7 == 0 else "" if i % 5 == 0 else "name %d" % i, i * 1000003, i / 7, 1e-7 * i if i % 3 else i / 3,
            D(i) * D("1.5"), i % 2, datetime.date(2020, 1, 1) + datetime.timedelta(days=i),
            datetime.datetime(2020, 1, 1) + datetime.timedelta(seconds=61 * i),
            datetime.datetime(2020, 1, 1) + datetime.timedelta(seconds=61.5 * i)) for i in range(1, 201)]


def _part_lines(d):
    return sorted(line for n in os.listdir(d) if n.startswith("part-") for line in (d / n).read_text().splitlines())


@pytest.mark.slow
def test_sqoop_s_own_files_export_and_its_boundary_query_and_validate(tmp_path):
    """One Sqoop run per database: PostgreSQL with --boundary-query and --validate (fastsync
    must import the same rows in the same lines and fail the same validation), then Sqoop's
    part files exported by fastsync into a copy of each table: the same values."""
    from sqoop_support import jdbc, run_sqoop
    tz = {"TZ": "America/New_York"}
    src, dst = SRC + "_t", DST + "_t"
    try:
        sql(PG_URL, "DROP TABLE IF EXISTS %s, %s" % (src, dst), "CREATE TABLE %s %s" % (src, PG_TYPES),
            "CREATE TABLE %s %s" % (dst, PG_TYPES), "INSERT INTO %s %s" % (src, PG_ROWS))
        connect, user, password = jdbc(PG_URL)
        flags = ["--connect", connect, "--username", user, "--password", password, "--table", src, "-m", "2",
                 "--boundary-query", "SELECT 250, 750", "--validate"]
        r = run_sqoop("import", *flags, "--target-dir", str(tmp_path / "sqoop"), workdir=tmp_path / "w", tz=tz["TZ"],
                      check=False)
        assert r.returncode == 1               # Sqoop: Error validating row counts (1000 vs 501)
        out = fastsync("import", *flags, "--target-dir", tmp_path / "ours", env=tz)
        assert out.returncode == 1 and "Error validating row counts" in out.stderr
        assert "The expected counter value was 1000 but the actual value was 501" in out.stderr
        assert _part_lines(tmp_path / "ours") == _part_lines(tmp_path / "sqoop")
        assert len(_part_lines(tmp_path / "sqoop")) == 501
        out = fastsync("export", "--connect", PG_URL, "--table", dst, "--export-dir", tmp_path / "sqoop", env=tz)
        assert out.returncode == 0, out.stderr
        # NaN equals NaN in PostgreSQL's EXCEPT; the rows inside the boundaries, value for value
        assert sql(PG_URL, "SELECT count(*) FROM (SELECT * FROM %s WHERE id BETWEEN 250 AND 750 EXCEPT "
                           "SELECT * FROM %s) AS x" % (src, dst)) == [(0,)]
        assert sql(PG_URL, "SELECT count(*) FROM %s" % dst) == [(501,)]

        sql(MYSQL_URL, "DROP TABLE IF EXISTS %s, %s" % (src, dst), "CREATE TABLE %s %s" % (src, MY_TYPES),
            "CREATE TABLE %s %s" % (dst, MY_TYPES))
        e = engine(MYSQL_URL)
        with e.begin() as conn:
            conn.exec_driver_sql("INSERT INTO %s VALUES (%s)" % (src, ", ".join(["%s"] * 10)), MY_ROWS)
        e.dispose()
        connect, user, password = jdbc(MYSQL_URL)
        run_sqoop("import", "--connect", connect, "--username", user, "--password", password, "--table", src,
                  "-m", "1", "--target-dir", str(tmp_path / "my"), workdir=tmp_path / "w2", tz=tz["TZ"])
        assert any(",true," in x for x in _part_lines(tmp_path / "my"))        # tinyint(1) as Connector/J reads it
        out = fastsync("export", "--connect", MYSQL_URL, "--table", dst, "--export-dir", tmp_path / "my", env=tz)
        assert out.returncode == 0, out.stderr
        assert sql(MYSQL_URL, "SELECT * FROM %s ORDER BY id" % dst) == sql(MYSQL_URL, "SELECT * FROM %s ORDER BY id" % src)
    finally:
        drop_tables(PG_URL, src, dst)
        drop_tables(MYSQL_URL, src, dst)


def test_autoreset_text_splitter_and_mysql_delimiters_on_sqlite(tmp_path):
    import sqlite3
    db = tmp_path / "t.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE nokey (code TEXT, v TEXT)")
    con.executemany("INSERT INTO nokey VALUES (?, ?)", [("k%03d" % i, "it's, %d" % i) for i in range(60)])
    con.commit()
    base = ["import", "--connect", "jdbc:sqlite:%s" % db, "--table", "nokey", "-m", 3]
    out = fastsync(*base, "--target-dir", tmp_path / "a", "--autoreset-to-one-mapper", "--mysql-delimiters")
    assert out.returncode == 0 and "(1 splits)" in out.stdout, out.stderr
    assert _part_lines(tmp_path / "a")[:2] == ["k000,'it\\'s, 0'", "k001,'it\\'s, 1'"]
    out = fastsync(*base, "--target-dir", tmp_path / "b", "--split-by", "code")
    assert out.returncode == 1 and "use --split-strategy quantile" in out.stderr
    out = fastsync(base[0], "-D", "org.apache.sqoop.splitter.allow_text_splitter=true", *base[1:], "--target-dir",
                   tmp_path / "b", "--split-by", "code")
    assert out.returncode == 0 and "(3 splits)" in out.stdout, out.stderr
    assert len(_part_lines(tmp_path / "b")) == 60


@pytest.mark.slow
def test_relaxed_isolation_reads_uncommitted_on_mariadb(tmp_path):
    out = fastsync("import", "--connect", MYSQL_URL, "--query", "SELECT @@tx_isolation AS iso FROM dual WHERE $CONDITIONS",
                   "-m", 1, "--target-dir", tmp_path / "o", "--relaxed-isolation")
    assert out.returncode == 0, out.stderr
    assert _part_lines(tmp_path / "o") == ["READ-UNCOMMITTED"]
