"""`fastsync export` end to end through the CLI, against SQLite and the real PostgreSQL and
MariaDB servers: tables imported with `fastsync import` and exported into an empty copy
must equal the source value by value (compared in SQL); upserts touch only keyed rows; a
failed export leaves the target as it was and names file, row and column."""
import datetime
import decimal
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastsync.transfer.formats import FileError as ExportError, PartFile, csv_batches, file_columns, read_rows
from fastsync.transfer.textfile import TextOptions
from test_import import fastsync
from test_import_types import MYSQL_URL, PG_URL, TRICKY

UTC = datetime.timezone.utc
D = decimal.Decimal


def engine_for(url):
    return sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://").replace("mysql://", "mysql+pymysql://")
                            + ("?charset=utf8mb4" if url.startswith("mysql") else ""))


def name(prefix="x"):
    return "%s_%s" % (prefix, uuid.uuid4().hex[:10])


def sql(url, *statements, params=None):
    engine = engine_for(url)
    try:
        with engine.begin() as conn:
            out = None
            for s in statements:
                res = conn.execute(sa.text(s), params or {})
                out = res.fetchall() if res.returns_rows else None
            return out
    finally:
        engine.dispose()


def insert(url, table, rows):
    engine = engine_for(url)
    try:
        with engine.begin() as conn:
            t = sa.Table(table, sa.MetaData(), autoload_with=conn)
            conn.execute(t.insert(), rows)
    finally:
        engine.dispose()


def ok(out):
    assert out.returncode == 0, out.stderr
    return out


def tables_equal(url, a, b, select="*"):
    """Both ways EXCEPT (and the counts): the two tables hold the same rows."""
    for x, y in ((a, b), (b, a)):
        diff = sql(url, "SELECT %s FROM %s EXCEPT SELECT %s FROM %s" % (select, x, select, y))
        assert diff == [], (x, y, diff[:3])
    assert sql(url, "SELECT COUNT(*) FROM %s" % a) == sql(url, "SELECT COUNT(*) FROM %s" % b)


def cleanup(url, *tables):
    for t in tables:
        sql(url, "DROP TABLE IF EXISTS %s" % t)


def leftover_stage(url, table):
    engine = engine_for(url)
    try:
        return [t for t in sa.inspect(engine).get_table_names() if t.startswith(table + "_stage_")]
    finally:
        engine.dispose()


# -- every type, Parquet, all three databases ------------------------------------------------------------

PG_COLUMNS = """(
  id int PRIMARY KEY, i2 smallint, i4 integer, i8 bigint, num numeric(38, 10), num_small numeric(5, 2),
  f4 real, f8 double precision, b boolean, c char(5), vc varchar(200), t text, by bytea,
  d date, tm time, ts timestamp, tstz timestamptz, iv interval, j json, jb jsonb, u uuid, e {enum},
  arr_i int[], arr_t text[], arr_n numeric(6, 2)[])"""
PG_ROWS = [
    dict(id=1, i2=-32768, i4=2147483647, i8=-9223372036854775808, num=D("1234567890123456789012345678.0123456789"),
         num_small=D("-999.99"), f4=1.5, f8=-2.25e300, b=True, c="ab   ", vc=TRICKY, t=TRICKY * 3,
         by=b"\x00\x01\xff\x00bin", d=datetime.date(1, 1, 1), tm=datetime.time(23, 59, 59, 999999),
         ts=datetime.datetime(2026, 11, 24, 8, 30, 1, 123456), tstz=datetime.datetime(2026, 6, 1, 12, 0, tzinfo=UTC),
         iv=datetime.timedelta(days=3, hours=4, microseconds=5), j={"a": [1, 2, {"b": None}]}, jb={"k": "v\u00e9"},
         u=uuid.UUID("12345678-1234-5678-1234-567812345678"), e="happy", arr_i=[1, None, 3], arr_t=["x", "", None, "a,b\"{}"],
         arr_n=[D("1.10"), None]),
    dict(id=2, i2=7, f8=0.1, f4=3.4028234663852886e38, tm=datetime.time(0, 0), iv=-datetime.timedelta(days=1, microseconds=1),
         vc="", t="\\N null NULL", by=b"", j=[], jb=None, arr_i=[], arr_t=[]),
    dict(id=3),
]
PG_SELECT = "id, i2, i4, i8, num, num_small, f4, f8, b, c, vc, t, by, d, tm, ts, tstz, iv, j::text, jb, u, e, arr_i, arr_t, arr_n"


def export_by(path, *args):
    """`fastsync export` that must load the staging table by `path` (copy, load data, executemany)."""
    out = ok(fastsync("export", *args, "--log-level", "INFO", *(["--batch"] if path == "executemany" else [])))
    assert "loading the staging table with %s" % path in out.stderr, out.stderr
    return out


EVERY_FORMAT = {"parquet": [], "arrow": ["--format", "arrow"], "avro": ["--as-avrodatafile"], "jsonl": ["--format", "jsonl"]}


@pytest.mark.parametrize("path,fmt", [("copy", "parquet"), ("executemany", "parquet"), ("copy", "arrow"),
                                      ("copy", "avro"), ("copy", "jsonl")])
@pytest.mark.slow
def test_postgresql_every_type_round_trips(tmp_path, path, fmt):
    src, dst, enum = name("src"), name("dst"), name("mood")
    sql(PG_URL, "CREATE TYPE %s AS ENUM ('sad', 'happy')" % enum,
        "CREATE TABLE %s %s" % (src, PG_COLUMNS.format(enum=enum)), "CREATE TABLE %s %s" % (dst, PG_COLUMNS.format(enum=enum)))
    try:
        insert(PG_URL, src, [{**{k: None for k in PG_ROWS[0]}, **r} for r in PG_ROWS])
        ok(fastsync("import", "--connect", PG_URL, "--table", src, "-m", 2, "--target-dir", tmp_path / "out", *EVERY_FORMAT[fmt]))
        out = export_by(path, "--connect", PG_URL, "--table", dst, "--export-dir", tmp_path / "out", "-m", 2)
        assert "exported 3 rows from " in out.stdout
        tables_equal(PG_URL, src, dst, PG_SELECT)
        assert not leftover_stage(PG_URL, dst)
    finally:
        cleanup(PG_URL, src, dst)
        sql(PG_URL, "DROP TYPE IF EXISTS %s" % enum)


MY_COLUMNS = """(
  id INT PRIMARY KEY, ti TINYINT, si SMALLINT, mi MEDIUMINT, i INT, bi BIGINT, ubi BIGINT UNSIGNED,
  num DECIMAL(65, 30), num_small DECIMAL(5, 2), f FLOAT, dbl DOUBLE, bo BOOLEAN, c CHAR(5), vc VARCHAR(200),
  t LONGTEXT, bl LONGBLOB, d DATE, tm TIME(6), dt DATETIME(6), ts TIMESTAMP(6) NULL, y YEAR, e ENUM('sad', 'happy'), j JSON
) CHARACTER SET utf8mb4"""
MY_ROWS = [
    dict(id=1, ti=-128, si=-32768, mi=8388607, i=-2147483648, bi=9223372036854775807, ubi=18446744073709551615,
         num=D("12345678901234567890123456789012345.123456789012345678901234567891"[:66]),
         num_small=D("999.99"), f=0.5, dbl=1e-300, bo=1, c="ab", vc=TRICKY, t=TRICKY * 2,
         bl=b"\x00\xff\x00\t\n\\N", d=datetime.date(2026, 2, 28), tm=datetime.timedelta(hours=838, minutes=59, seconds=59),
         dt=datetime.datetime(2026, 11, 24, 8, 1, 2, 345678), ts=datetime.datetime(2026, 1, 2, 3, 4, 5, 6), y=2026,
         e="sad", j='{"a": [1, null], "b": "\\u00e9"}'),
    dict(id=2, tm=-datetime.timedelta(hours=1, microseconds=7), vc="\\N", t="null", bl=b"", dbl=0.1, f=-3.5),
    dict(id=3),
]


@pytest.mark.parametrize("path,fmt", [("load data", "parquet"), ("executemany", "parquet"), ("load data", "avro"),
                                      ("load data", "jsonl")])
@pytest.mark.slow
def test_mariadb_every_type_round_trips(tmp_path, path, fmt):
    src, dst = name("src"), name("dst")
    sql(MYSQL_URL, "CREATE TABLE %s %s" % (src, MY_COLUMNS), "CREATE TABLE %s %s" % (dst, MY_COLUMNS))
    try:
        insert(MYSQL_URL, src, [{**{k: None for k in MY_ROWS[0]}, **r} for r in MY_ROWS])
        ok(fastsync("import", "--connect", MYSQL_URL, "--table", src, "-m", 2, "--target-dir", tmp_path / "out", *EVERY_FORMAT[fmt]))
        export_by(path, "--connect", MYSQL_URL, "--table", dst, "--export-dir", tmp_path / "out", "-m", 2)
        tables_equal(MYSQL_URL, src, dst)
        assert not leftover_stage(MYSQL_URL, dst)
    finally:
        cleanup(MYSQL_URL, src, dst)


SQLITE_COLUMNS = """(id INTEGER PRIMARY KEY, i BIGINT, num NUMERIC(10, 2), f REAL, b BOOLEAN, vc VARCHAR(200),
  t TEXT NOT NULL, bl BLOB, d DATE, ts DATETIME, tm TIME)"""


def test_sqlite_every_type_round_trips_through_parquet(tmp_path):
    url = "sqlite:///%s" % (tmp_path / "db.sqlite")
    sql(url, "CREATE TABLE src %s" % SQLITE_COLUMNS, "CREATE TABLE dst %s" % SQLITE_COLUMNS)
    insert(url, "src", [
        dict(id=1, i=-2 ** 63, num=D("12345678.91"), f=1e-300, b=True, vc=TRICKY, t=TRICKY, bl=b"\x00\xff",
             d=datetime.date(2026, 1, 31), ts=datetime.datetime(2026, 1, 2, 3, 4, 5, 123456), tm=datetime.time(1, 2, 3, 4)),
        dict(id=2, i=None, num=None, f=None, b=False, vc=None, t="", bl=None, d=None, ts=None, tm=None)])
    ok(fastsync("import", "--connect", url, "--table", "src", "-m", 2, "--target-dir", tmp_path / "out"))
    ok(fastsync("export", "--connect", url, "--table", "dst", "--export-dir", tmp_path / "out", "-m", 2))
    tables_equal(url, "src", "dst")
    tables_equal(url, "src", "dst", "id, typeof(i), typeof(num), typeof(f), typeof(b), typeof(bl), typeof(ts)")
    assert sql(url, "SELECT name FROM sqlite_master WHERE name LIKE 'dst_stage_%'") == []


def test_progress_on_a_terminal_and_quiet_in_a_pipe(tmp_path):
    """On a terminal `N rows, R rows/s` is redrawn on stderr (the last time with every row);
    in a pipe stderr stays empty."""
    import sys

    from e2e_support import run_on_terminal
    url = "sqlite:///%s" % (tmp_path / "db.sqlite")
    sql(url, "CREATE TABLE src (id INTEGER PRIMARY KEY, v TEXT)", "CREATE TABLE dst (id INTEGER PRIMARY KEY, v TEXT)",
        "CREATE TABLE dst2 (id INTEGER PRIMARY KEY, v TEXT)")
    insert(url, "src", [dict(id=i, v="v%d" % i) for i in range(1000)])
    ok(fastsync("import", "--connect", url, "--table", "src", "--target-dir", tmp_path / "out"))
    code, text = run_on_terminal([sys.executable, "-m", "fastsync", "export", "--connect", url, "--table", "dst",
                                  "--export-dir", str(tmp_path / "out")])
    assert code == 0, text
    assert "\r1000 rows, " in text and " rows/s   \r\n" in text, text
    piped = fastsync("export", "--connect", url, "--table", "dst2", "--export-dir", tmp_path / "out")
    assert piped.returncode == 0 and piped.stderr == "", piped.stderr


# -- every file format --------------------------------------------------------------------------------

FORMAT_COLUMNS = ("(id int PRIMARY KEY, n numeric(12, 3), vc varchar(300), by bytea, d date, tstz timestamptz, b boolean, "
                  "f double precision)")
FORMATS = {
    "parquet": [], "arrow": ["--format", "arrow"], "avro": ["--as-avrodatafile"], "csv": ["--format", "csv"],
    "csv.zst": ["--format", "csv", "--compression-codec", "zstd"], "jsonl.gz": ["--format", "jsonl", "-z"],
    "jsonl.lz4": ["--format", "jsonl", "--compression-codec", "lz4"],
    "text": ["--as-textfile", "--optionally-enclosed-by", "\"", "--escaped-by", "\\\\"],
    "text.gz": ["--as-textfile", "-z", "--fields-terminated-by", "\\t", "--escaped-by", "\\\\"],
}


def input_flags(import_flags):
    """import's text flags as export's --input-* flags (the others dropped)."""
    out, keep = [], False
    for a in import_flags:
        if a.startswith("--"):
            keep = a in ("--fields-terminated-by", "--lines-terminated-by", "--enclosed-by", "--optionally-enclosed-by",
                         "--escaped-by", "--null-string", "--null-non-string")
            if keep:
                out.append(a.replace("--", "--input-", 1))
        elif keep:
            out.append(a)
    return out


@pytest.fixture(scope="module")
def pg_format_source():
    src = name("fmt")
    sql(PG_URL, "CREATE TABLE %s %s" % (src, FORMAT_COLUMNS))
    rows = [dict(id=i, n=D("%d.%03d" % (i * 37 - 500, i % 1000)) if i % 11 else None,
                 vc=None if i % 13 == 0 else ("" if i % 17 == 0 else "v\u00e9 %d ,\"'\u2603" % i),
                 by=None if i % 7 == 0 else bytes([i % 256, 0, 255]),
                 d=datetime.date(2000, 1, 1) + datetime.timedelta(days=i), b=i % 3 == 0 if i % 5 else None,
                 tstz=datetime.datetime(2020, 1, 1, tzinfo=UTC) + datetime.timedelta(seconds=i * 3601, microseconds=i),
                 f=i / 7 if i % 9 else None) for i in range(1, 2001)]
    insert(PG_URL, src, rows)
    yield src
    cleanup(PG_URL, src)


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.slow
def test_every_format_round_trips_into_postgresql(tmp_path, pg_format_source, fmt):
    src, dst = pg_format_source, name("dst")
    sql(PG_URL, "CREATE TABLE %s %s" % (dst, FORMAT_COLUMNS))
    try:
        # CSV files can't hold bytes: the bytea column stays out of them
        columns = "id,n,vc,d,tstz,b,f" if fmt.startswith("csv") else "id,n,vc,by,d,tstz,b,f"
        ok(fastsync("import", "--connect", PG_URL, "--table", src, "-m", 3, "--target-dir", tmp_path / "out",
                    "--columns", columns, *FORMATS[fmt]))
        # Sqoop text: part-m-00000, part-m-00000.gz (as Sqoop names them)
        suffix = fmt.replace("text.", "").replace("text", "") if fmt.startswith("text") else fmt
        assert any(p.name.split(".", 1)[1:] == ([suffix] if suffix else [])
                   for p in (tmp_path / "out").iterdir() if p.name.startswith("part-"))
        ok(fastsync("export", "--connect", PG_URL, "--table", dst, "--export-dir", tmp_path / "out", "-m", 2,
                    *input_flags(FORMATS[fmt])))
        tables_equal(PG_URL, src, dst, columns)
    finally:
        cleanup(PG_URL, dst)


TEXT_OPTIONS = [
    ["--fields-terminated-by", "\\t", "--lines-terminated-by", "\\n", "--escaped-by", "\\\\", "--null-string", "\\\\N",
     "--null-non-string", "\\\\N"],
    ["--fields-terminated-by", "|", "--enclosed-by", "\"", "--escaped-by", "\\\\"],
    ["--fields-terminated-by", ";", "--lines-terminated-by", "#", "--optionally-enclosed-by", "'", "--escaped-by", "\\\\",
     "--null-string", "NIL", "--null-non-string", ""],
]


@pytest.mark.parametrize("url", ["pg", "mysql"])
@pytest.mark.parametrize("options", TEXT_OPTIONS, ids=["tab-escaped", "enclosed", "optionally-enclosed"])
@pytest.mark.slow
def test_text_options_round_trip(tmp_path, url, options):
    url = PG_URL if url == "pg" else MYSQL_URL
    src, dst = name("txt"), name("dst")
    ddl = "(id int PRIMARY KEY, vc varchar(100), n numeric(8, 2), d date)"
    sql(url, "CREATE TABLE %s %s" % (src, ddl), "CREATE TABLE %s %s" % (dst, ddl))
    try:
        weird = ["a\tb", "line\nbreak", "back\\slash", "|pipe|", "semi;colon", "hash#", "quote\"'", "", "null", "NIL",
                 "\\N", None, "\u00e9\u2603"]
        insert(url, src, [dict(id=i, vc=v, n=None if i % 4 == 0 else D("%d.5" % i), d=None if i % 3 == 0 else datetime.date(2001, 2, 3))
                          for i, v in enumerate(weird)])
        ok(fastsync("import", "--connect", url, "--table", src, "-m", 2, "--as-textfile", "--target-dir", tmp_path / "out", *options))
        ok(fastsync("export", "--connect", url, "--table", dst, "--export-dir", tmp_path / "out", *input_flags(options)))
        # Sqoop text can't tell the string "null"/"NIL"/"\\N" from the null string chosen for NULL
        null_text = options[options.index("--null-string") + 1].replace("\\\\", "\\") if "--null-string" in options else "null"
        ambiguous = [i for i, v in enumerate(weird) if v == null_text] or [-1]
        keep = " WHERE id NOT IN (%s)" % ", ".join(map(str, ambiguous))
        tables_equal(url, "(SELECT * FROM %s%s) AS a" % (src, keep), "(SELECT * FROM %s%s) AS b" % (dst, keep))
    finally:
        cleanup(url, src, dst)


# -- upserts --------------------------------------------------------------------------------------------

def _urls(tmp_path):
    return {"pg": PG_URL, "mysql": MYSQL_URL, "sqlite": "sqlite:///%s" % (tmp_path / "db.sqlite")}


@pytest.mark.parametrize("db", ["pg", "mysql", "sqlite"])
@pytest.mark.parametrize("mode", ["allowinsert", "updateonly"])
@pytest.mark.slow
def test_update_key_changes_only_the_keyed_rows(tmp_path, db, mode):
    url = _urls(tmp_path)[db]
    src, dst = name("upd"), name("dst")
    ddl = "(id int PRIMARY KEY, vc varchar(50), n numeric(8, 2))"
    sql(url, "CREATE TABLE %s %s" % (src, ddl), "CREATE TABLE %s %s" % (dst, ddl))
    try:
        insert(url, dst, [dict(id=i, vc="old %d" % i, n=D(i)) for i in range(1, 11)])
        insert(url, src, [dict(id=i, vc="new %d" % i, n=None) for i in range(5, 16)])
        ok(fastsync("import", "--connect", url, "--table", src, "-m", 2, "--target-dir", tmp_path / "out"))
        ok(fastsync("export", "--connect", url, "--table", dst, "--export-dir", tmp_path / "out", "-m", 2,
                    "--update-key", "id", "--update-mode", mode))
        got = {r[0]: (r[1], r[2]) for r in sql(url, "SELECT id, vc, n FROM %s" % dst)}
        want = {i: ("old %d" % i, D(i)) for i in range(1, 5)}
        want.update({i: ("new %d" % i, None) for i in range(5, 11 if mode == "updateonly" else 16)})
        assert {k: (v, None if n is None else D(n)) for k, (v, n) in got.items()} == want
    finally:
        cleanup(url, src, dst)


def test_allowinsert_needs_a_unique_key(tmp_path):
    url = "sqlite:///%s" % (tmp_path / "db.sqlite")
    sql(url, "CREATE TABLE t (id int, v text)", "INSERT INTO t VALUES (1, 'a')")
    ok(fastsync("import", "--connect", url, "--table", "t", "-m", 1, "--target-dir", tmp_path / "out"))
    out = fastsync("export", "--connect", url, "--table", "t", "--export-dir", tmp_path / "out",
                   "--update-key", "v", "--update-mode", "allowinsert")
    assert out.returncode == 1 and "--update-key v: allowinsert needs a primary key or unique index" in out.stderr


# -- all or nothing -------------------------------------------------------------------------------------

def _spoil_last_file(out_dir, row, column, value):
    last = sorted(p for p in out_dir.iterdir() if p.name.startswith("part-"))[-1]
    t = pq.read_table(last)
    values = t.column(column).to_pylist()
    values[row - 1] = value
    t = t.set_column(t.schema.get_field_index(column), column, pa.array(values, t.schema.field(column).type))
    pq.write_table(t, last)
    return last.name


@pytest.mark.parametrize("db", ["pg", "mysql", "sqlite"])
@pytest.mark.slow
def test_a_bad_row_in_the_last_file_leaves_the_target_unchanged(tmp_path, db):
    url = _urls(tmp_path)[db]
    src, dst = name("bad"), name("dst")
    ddl = "(id int PRIMARY KEY, vc varchar(10), n numeric(8, 2) NOT NULL)"
    sql(url, "CREATE TABLE %s %s" % (src, ddl), "CREATE TABLE %s %s" % (dst, ddl))
    try:
        insert(url, dst, [dict(id=-i, vc="keep", n=D("1.50")) for i in range(1, 4)])
        before = sorted(sql(url, "SELECT * FROM %s" % dst))
        insert(url, src, [dict(id=i, vc="v%d" % i, n=D(i)) for i in range(300)])
        ok(fastsync("import", "--connect", url, "--table", src, "-m", 3, "--target-dir", tmp_path / "out"))
        # too long for varchar(10)
        f = _spoil_last_file(tmp_path / "out", 42, "vc", "x" * 11)
        out = fastsync("export", "--connect", url, "--table", dst, "--export-dir", tmp_path / "out", "-m", 3)
        assert out.returncode == 1
        line = out.stderr.strip()
        assert "\n" not in line and "%s row 42: column %s.vc:" % (f, dst) in line and "11 characters do not fit 10" in line, line
        assert sorted(sql(url, "SELECT * FROM %s" % dst)) == before
        assert not leftover_stage(url, dst)
        if db != "sqlite":        # an int column holds 32 bits (SQLite's integers are all 64-bit)
            f = _spoil_last_file(tmp_path / "out", 42, "vc", "ok")
            _spoil_last_file(tmp_path / "out", 5, "id", 2 ** 40)
            out = fastsync("export", "--connect", url, "--table", dst, "--export-dir", tmp_path / "out")
            assert out.returncode == 1 and "%s row 5: column %s.id: 1099511627776 is out of range for the column " \
                "(-2147483648..2147483647)" % (f, dst) in out.stderr, out.stderr
            _spoil_last_file(tmp_path / "out", 5, "id", 100005)
        if db == "pg":            # PostgreSQL text holds no NUL: found before COPY, not by it
            f = _spoil_last_file(tmp_path / "out", 42, "vc", "a\x00b")
            out = fastsync("export", "--connect", url, "--table", dst, "--export-dir", tmp_path / "out")
            assert out.returncode == 1 and "%s row 42: column %s.vc: PostgreSQL text can't hold a NUL" % (f, dst) in out.stderr
        # NULL into NOT NULL
        f = _spoil_last_file(tmp_path / "out", 42, "vc", "ok")
        _spoil_last_file(tmp_path / "out", 7, "n", None)
        out = fastsync("export", "--connect", url, "--table", dst, "--export-dir", tmp_path / "out")
        assert out.returncode == 1 and "%s row 7: column %s.n:" % (f, dst) in out.stderr and "NULL into a NOT NULL column" in out.stderr
        # a duplicate key only the database sees: found when moving, nothing moved
        sql(url, "INSERT INTO %s VALUES (5, 'dup', 1)" % dst)
        before = sorted(sql(url, "SELECT * FROM %s" % dst))
        _spoil_last_file(tmp_path / "out", 7, "n", D("2.25"))
        out = fastsync("export", "--connect", url, "--table", dst, "--export-dir", tmp_path / "out")
        assert out.returncode == 1 and "moving the rows" in out.stderr, out.stderr
        assert sorted(sql(url, "SELECT * FROM %s" % dst)) == before
        assert not leftover_stage(url, dst)
    finally:
        cleanup(url, src, dst)


MALFORMED = [
    # (file name, content, what the one line says after the file name)
    ("part-m-00000.csv", b"id,v\n1,a\n2\n3,c\n", "row 2: 1 fields, expected 2 as in the header"),
    # past pyarrow's first block (1 MB): read after the first batches were loaded
    ("part-m-00000.csv", b"id,v\n" + b"".join(b"%d,%s\n" % (i, b"x" * 100) for i in range(12000)) + b"12000,y,z\n",
     "row 12001: 3 fields, expected 2 as in the header"),
    ("part-m-00000.csv", b"id,v\n1,a\n2,\xff\xfe\n", "row 2: column v: not UTF-8 text"),
    ("part-m-00000.csv", b"", "an empty file (a csv part file starts with a header)"),
    ("part-m-00000.csv", b"id,id\n1,2\n", "column id is twice in the header"),
    ("part-m-00000.txt", b"1,a\n2,b\n3,\xc3(\n", "row 3: not UTF-8 text"),
    ("part-m-00000.txt", b"1,a\n2,b,c\n", "row 2: 3 fields, expected 2"),
    ("part-m-00000.jsonl", b'{"id": 1, "v": "a"}\n{"id": 2, "v": \n', "row 2: not JSON"),
    ("part-m-00000.jsonl", b'{"id": 1, "v": "a"}\n[2]\n', "row 2: not a JSON object"),
    ("part-m-00000.parquet", b"PAR1 not parquet", "Parquet magic bytes not found"),
]


@pytest.mark.parametrize("db", ["pg", "mysql", "sqlite"])
@pytest.mark.slow
def test_a_malformed_file_fails_in_one_line_naming_file_and_row(tmp_path, db):
    """Rows short or long for the header, text not UTF-8, JSON that isn't, early in a file or
    deep in it: one line naming the file and the row, exit 1, the target as it was."""
    url = _urls(tmp_path)[db]
    dst = name("malformed")
    sql(url, "CREATE TABLE %s (id int PRIMARY KEY, v varchar(200))" % dst)
    try:
        insert(url, dst, [dict(id=-1, v="keep")])
        for i, (file_name, content, says) in enumerate(MALFORMED):
            d = tmp_path / ("in%d" % i)
            d.mkdir()
            (d / file_name).write_bytes(content)
            out = fastsync("export", "--connect", url, "--table", dst, "--export-dir", d)
            line = out.stderr.strip()
            assert out.returncode == 1 and "\n" not in line, out.stderr[-3000:]
            assert file_name + (" " if says.startswith("row") else ": ") + says in line, line
            assert sql(url, "SELECT id, v FROM %s" % dst) == [(-1, "keep")]
            assert not leftover_stage(url, dst)
    finally:
        cleanup(url, dst)


@pytest.mark.slow
def test_columns_are_checked_before_anything_is_written(tmp_path):
    url = "sqlite:///%s" % (tmp_path / "db.sqlite")
    sql(url, "CREATE TABLE src (id int PRIMARY KEY, extra text, v text)", "INSERT INTO src VALUES (1, 'e', 'v')",
        "CREATE TABLE dst (id int PRIMARY KEY, v text, must text NOT NULL)")
    ok(fastsync("import", "--connect", url, "--table", "src", "-m", 1, "--target-dir", tmp_path / "out"))
    out = fastsync("export", "--connect", url, "--table", "dst", "--export-dir", tmp_path / "out")
    assert out.returncode == 1 and "part-m-00000.parquet: column extra is not a column of table dst" in out.stderr
    out = fastsync("export", "--connect", url, "--table", "dst", "--export-dir", tmp_path / "out", "--columns", "id,v")
    assert out.returncode == 1 and "NOT NULL column must (no default) is in none of the files" in out.stderr
    assert sql(url, "SELECT name FROM sqlite_master WHERE name LIKE 'dst_stage%'") == []
    out = fastsync("export", "--connect", url, "--table", "dst", "--export-dir", tmp_path / "nowhere")
    assert out.returncode == 1 and "no such directory" in out.stderr


# -- staging-table flags --------------------------------------------------------------------------------

@pytest.mark.parametrize("db", ["pg", "mysql"])
@pytest.mark.slow
def test_staging_table_flags(tmp_path, db):
    url = _urls(tmp_path)[db]
    src, dst, stage = name("src"), name("dst"), name("stg")
    ddl = "(id int PRIMARY KEY, v varchar(20))"
    sql(url, *("CREATE TABLE %s %s" % (t, ddl) for t in (src, dst, stage)))
    try:
        insert(url, src, [dict(id=i, v="v%d" % i) for i in range(50)])
        insert(url, stage, [dict(id=999, v="stale")])
        ok(fastsync("import", "--connect", url, "--table", src, "-m", 2, "--target-dir", tmp_path / "out"))
        args = ["export", "--connect", url, "--table", dst, "--export-dir", tmp_path / "out", "--staging-table", stage]
        out = fastsync(*args)
        assert out.returncode == 1 and "--staging-table %s is not empty (use --clear-staging-table)" % stage in out.stderr
        assert sql(url, "SELECT COUNT(*) FROM %s" % dst)[0][0] == 0
        ok(fastsync(*args, "--clear-staging-table"))
        tables_equal(url, src, dst)
        assert sql(url, "SELECT COUNT(*) FROM %s" % stage)[0][0] == 0     # emptied in the move's transaction
        out = fastsync("export", "--connect", url, "--table", dst, "--export-dir", tmp_path / "out", "--clear-staging-table")
        assert out.returncode == 2 and "--clear-staging-table needs --staging-table" in out.stderr
    finally:
        cleanup(url, src, dst, stage)


@pytest.mark.slow
def test_password_flags_and_batch_path(tmp_path):
    src, dst = name("pw"), name("dst")
    ddl = "(id int PRIMARY KEY, v varchar(20))"
    sql(PG_URL, "CREATE TABLE %s %s" % (src, ddl), "CREATE TABLE %s %s" % (dst, ddl))
    try:
        insert(PG_URL, src, [dict(id=i, v="v%d" % i) for i in range(20)])
        ok(fastsync("import", "--connect", PG_URL, "--table", src, "--target-dir", tmp_path / "out"))
        (tmp_path / "pw").write_text("fastsync\n")
        bare = "jdbc:postgresql://127.0.0.1:5432/fastsync"
        ok(fastsync("export", "--connect", bare, "--username", "fastsync", "--password-file", tmp_path / "pw",
                    "--table", dst, "--export-dir", tmp_path / "out", "--batch"))
        tables_equal(PG_URL, src, dst)
        out = fastsync("export", "--connect", bare, "--username", "fastsync", "--table", dst, "--export-dir", tmp_path / "out",
                       env={"FASTSYNC_PASSWORD": "wrong"})
        assert out.returncode == 1 and "fastsync:***@" in out.stderr and "wrong" not in out.stderr
    finally:
        cleanup(PG_URL, src, dst)


def test_postgresql_batches_that_need_no_conversion_go_to_copy_as_csv_written_by_arrow(tmp_path):
    src, dst = name("csvp"), name("dst")
    ddl = ("(id int PRIMARY KEY, i2 smallint, i8 bigint, n numeric(20, 4), nu numeric, f4 real, f8 double precision, "
           "b boolean, c char(3), vc varchar(40), t text, d date, ts timestamp, tstz timestamptz)")
    sql(PG_URL, "CREATE TABLE %s %s" % (src, ddl), "CREATE TABLE %s %s" % (dst, ddl))
    try:
        insert(PG_URL, src, [
            dict(id=1, i2=-32768, i8=2 ** 63 - 1, n=D("-1234567890123456.1234"), nu=D("1e-20"), f4=3.4028234663852886e38,
                 f8=1e-300, b=True, c="a", vc=TRICKY[:40], t="\"quoted\",\n\r\\N" + TRICKY, d=datetime.date(1, 1, 1),
                 ts=datetime.datetime(1, 1, 1, 0, 0, 0, 1), tstz=datetime.datetime(2026, 3, 29, 1, 30, 0, 999999, tzinfo=UTC)),
            dict(id=2, i2=None, i8=None, n=None, nu=None, f4=None, f8=None, b=None, c=None, vc="", t="", d=None, ts=None, tstz=None),
            dict(id=3, i2=0, i8=0, n=D("0.0001"), nu=D("12345678901234567890.123456789"), f4=0.1, f8=0.1, b=False, c="",
                 vc=",", t="", d=datetime.date(9999, 12, 31), ts=datetime.datetime(9999, 12, 31, 23, 59, 59, 999999),
                 tstz=datetime.datetime(1970, 1, 1, tzinfo=UTC))])
        # nu (unconstrained numeric) is inferred per batch by import, so it stays out
        columns = "id,i2,i8,n,f4,f8,b,c,vc,t,d,ts,tstz"
        ok(fastsync("import", "--connect", PG_URL, "--table", src, "-m", 1, "--target-dir", tmp_path / "out", "--columns", columns))
        out = ok(fastsync("export", "--connect", PG_URL, "--table", dst, "--export-dir", tmp_path / "out", "--log-level", "INFO"))
        assert "3 rows checked a column at a time and written by Arrow as CSV for COPY" in out.stderr, out.stderr
        tables_equal(PG_URL, src, dst, columns)
    finally:
        cleanup(PG_URL, src, dst)


@pytest.mark.slow
def test_mariadb_batches_that_need_no_conversion_go_to_load_data_as_csv_written_by_arrow(tmp_path):
    src, dst, coarse = name("csvm"), name("dst"), name("coarse")
    ddl = ("(id INT PRIMARY KEY, ti TINYINT, ubi BIGINT UNSIGNED, n DECIMAL(20, 4), f FLOAT, dbl DOUBLE, bo BOOLEAN, "
           "c CHAR(3), vc VARCHAR(40), t TEXT, d DATE, dt DATETIME(6), dt0 DATETIME) CHARACTER SET utf8mb4")
    sql(MYSQL_URL, *["CREATE TABLE %s %s" % (t, ddl) for t in (src, dst)],
        "CREATE TABLE %s %s" % (coarse, ddl.replace("dt DATETIME(6)", "dt DATETIME(3)")))
    try:
        insert(MYSQL_URL, src, [
            dict(id=1, ti=-128, ubi=2 ** 64 - 1, n=D("-1234567890123456.1234"), f=0.5, dbl=1e-300, bo=True, c="a",
                 vc=TRICKY[:40], t="\"quoted\",\n\r\\N\tNULL\\" + TRICKY, d=datetime.date(1000, 1, 1),
                 dt=datetime.datetime(1000, 1, 1, 0, 0, 0, 1), dt0=datetime.datetime(2026, 3, 29, 1, 30)),
            dict(id=2, ti=None, ubi=None, n=None, f=None, dbl=None, bo=None, c=None, vc="NULL", t="", d=None, dt=None, dt0=None),
            dict(id=3, ti=0, ubi=0, n=D("0.0001"), f=-3.25, dbl=0.1, bo=False, c="", vc=",", t="\\N",
                 d=datetime.date(9999, 12, 31), dt=datetime.datetime(9999, 12, 31, 23, 59, 59, 999999),
                 dt0=datetime.datetime(1970, 1, 1))])
        ok(fastsync("import", "--connect", MYSQL_URL, "--table", src, "-m", 1, "--target-dir", tmp_path / "out"))
        out = ok(fastsync("export", "--connect", MYSQL_URL, "--table", dst, "--export-dir", tmp_path / "out", "--log-level", "INFO"))
        assert "3 rows checked a column at a time and written by Arrow as CSV for LOAD DATA" in out.stderr, out.stderr
        tables_equal(MYSQL_URL, src, dst)
        # DATETIME(3) can't keep the microseconds: the batch is refused by the Arrow check and
        # the per-value path names the row, instead of the server rounding the value
        out = fastsync("export", "--connect", MYSQL_URL, "--table", coarse, "--export-dir", tmp_path / "out")
        assert out.returncode == 1 and "row 1" in out.stderr and "%s.dt" % coarse in out.stderr, out.stderr
        assert sql(MYSQL_URL, "SELECT COUNT(*) FROM %s" % coarse) == [(0,)]
    finally:
        cleanup(MYSQL_URL, src, dst, coarse)


@pytest.mark.parametrize("duplicate", ["id", "code"])
def test_mariadb_bulk_move_into_an_empty_table_still_refuses_duplicate_keys(tmp_path, duplicate):
    """The move into an empty table runs with unique_checks=0 (InnoDB's bulk insert): a
    duplicate primary key or unique secondary key must still fail it, leaving the table empty."""
    dst = name("bulk")
    sql(MYSQL_URL, "CREATE TABLE %s (id INT PRIMARY KEY, code VARCHAR(10) NOT NULL, UNIQUE KEY (code)) ENGINE=InnoDB" % dst)
    try:
        ids, codes = list(range(1, 5001)), ["c%d" % i for i in range(1, 5001)]
        (ids if duplicate == "id" else codes)[4000] = (ids if duplicate == "id" else codes)[17]
        (tmp_path / "in").mkdir()
        pq.write_table(pa.table({"id": pa.array(ids, pa.int32()), "code": codes}), tmp_path / "in" / "part-m-00000.parquet")
        out = fastsync("export", "--connect", MYSQL_URL, "--table", dst, "--export-dir", tmp_path / "in", "--log-level", "INFO")
        assert out.returncode == 1 and "Duplicate entry" in out.stderr, out.stderr
        assert "bulk insert" in out.stderr, out.stderr
        assert sql(MYSQL_URL, "SELECT COUNT(*) FROM %s" % dst) == [(0,)]
        # without the duplicate the same export goes through the bulk path and keeps every row
        (ids if duplicate == "id" else codes)[4000] = 4001 if duplicate == "id" else "c4001"
        pq.write_table(pa.table({"id": pa.array(ids, pa.int32()), "code": codes}), tmp_path / "in" / "part-m-00000.parquet")
        ok(fastsync("export", "--connect", MYSQL_URL, "--table", dst, "--export-dir", tmp_path / "in"))
        assert sql(MYSQL_URL, "SELECT COUNT(*), COUNT(DISTINCT code), SUM(id) FROM %s" % dst) == [(5000, 5000, 5000 * 5001 // 2)]
        assert not leftover_stage(MYSQL_URL, dst)
    finally:
        cleanup(MYSQL_URL, dst)


def test_mariadb_load_data_warning_names_file_and_row(tmp_path):
    """What only the server sees on the Arrow path (a TIMESTAMP past 2038) fails the load
    with the server's row number, which is the file's: one LOAD DATA per file."""
    dst = name("warn")
    sql(MYSQL_URL, "CREATE TABLE %s (id INT PRIMARY KEY, ts TIMESTAMP NULL)" % dst)
    try:
        (tmp_path / "in").mkdir()
        ts = [datetime.datetime(2020, 1, 1)] * 29999 + [datetime.datetime(2040, 1, 1)]
        pq.write_table(pa.table({"id": pa.array(range(30000), pa.int32()), "ts": pa.array(ts, pa.timestamp("us"))}),
                       tmp_path / "in" / "part-m-00000.parquet")
        out = fastsync("export", "--connect", MYSQL_URL, "--table", dst, "--export-dir", tmp_path / "in")
        assert out.returncode == 1, out.stderr
        assert "part-m-00000.parquet rows 1..30000: LOAD DATA: Out of range value for column 'ts' at row 30000" in out.stderr
        assert sql(MYSQL_URL, "SELECT COUNT(*) FROM %s" % dst) == [(0,)] and not leftover_stage(MYSQL_URL, dst)
    finally:
        cleanup(MYSQL_URL, dst)


# -- awkward identifiers --------------------------------------------------------------------------------

AWKWARD = ["a`b", "`", 'c"d', "e f", "g.h", "\u00fcn\u00ef \u4e2d", "x%s", "p%%q", "y'z", "semi;colon"]


@pytest.mark.parametrize("db", ["pg", "mysql", "sqlite"])
@pytest.mark.slow
def test_awkward_column_names_round_trip(tmp_path, db):
    """Column names with backticks, double and single quotes, spaces, dots, % and unicode:
    imported and exported on every path (COPY / LOAD DATA, executemany, the upsert), the
    values where they belong."""
    url = _urls(tmp_path)[db]
    src, dst = name("awk"), name("dst")
    engine = engine_for(url)
    try:
        md = sa.MetaData()
        tables = [sa.Table(t, md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                           *[sa.Column(n, sa.String(40)) for n in AWKWARD]) for t in (src, dst)]
        md.create_all(engine)
        rows = [{"id": i, **{n: "%s=%d" % (n, i) for n in AWKWARD}} for i in range(1, 6)]
        with engine.begin() as conn:        # not insert(): SQLAlchemy's MySQL reflection loses a``b
            conn.execute(tables[0].insert(), rows)
        for fmt in ([], ["--format", "csv"]):
            out_dir = tmp_path / ("out%d" % len(fmt))
            ok(fastsync("import", "--connect", url, "--table", src, "-m", 2, "--split-by", "id", "--target-dir", out_dir, *fmt))
            for extra in ([], ["--batch"], ["--update-key", "id", "--update-mode", "allowinsert"]):
                ok(fastsync("export", "--connect", url, "--table", dst, "--export-dir", out_dir, *extra))
                got = sql(url, "SELECT * FROM %s ORDER BY id" % dst)
                assert [dict(zip(["id"] + AWKWARD, r)) for r in got] == rows, (fmt, extra)
                sql(url, "DELETE FROM %s" % dst)
    finally:
        engine.dispose()
        cleanup(url, src, dst)


# -- fuzz: the text and csv readers of export and merge -------------------------------------------------

# bytes near the delimiters, quotes, escapes and bad UTF-8 the readers care about
FUZZ_BYTES = st.lists(st.sampled_from([b",", b"\n", b"\r", b'"', b"\\", b"'", b"|", b"a", b"1", b"null", b"",
                                       b"\xff", b"\xc3", b"\xc3\xa9", b"\x00", b"\t", b" "]) | st.binary(max_size=4),
                      max_size=60).map(b"".join)
FUZZ = settings(max_examples=60, deadline=2000, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _read_all(f: PartFile, columns, text=None):
    """Every batch the export reader gives, or its ExportError: one line naming the file."""
    try:
        names = file_columns(f, columns)
        for _, values in read_rows(f, names, text or TextOptions(), dict.fromkeys(names, str)):
            assert all(isinstance(v, (str, type(None))) for col in values.values() for v in col)
        for b in csv_batches(f, names) if f.fmt == "csv" else ():
            assert b.num_columns == len(names)
    except ExportError as exc:
        line = str(exc)
        assert "\n" not in line and line.startswith(f.name + (" row " if " row " in line else ": ")), line


@FUZZ
@given(header=st.sampled_from([b"id,v\n", b"id\n", b"a,b,c\n", b'"i,d",v\n', b""]), body=FUZZ_BYTES)
def test_fuzz_csv_reader_gives_rows_or_one_line(tmp_path, header, body):
    p = tmp_path / "part-m-00000.csv"
    p.write_bytes(header + body)
    _read_all(PartFile(str(p), "csv", None), ["id", "v"])


@FUZZ
@given(body=FUZZ_BYTES, opts=st.sampled_from([
    TextOptions(),
    TextOptions(fields_terminated_by="|", enclosed_by='"', escaped_by="\\"),
    TextOptions(fields_terminated_by="\t", optionally_enclosed_by="'", escaped_by="\\", null_string="\\N"),
    TextOptions(lines_terminated_by="\r", enclosed_by='"')]))
def test_fuzz_sqoop_text_reader_gives_rows_or_one_line(tmp_path, body, opts):
    p = tmp_path / "part-m-00000.txt"
    p.write_bytes(body)
    _read_all(PartFile(str(p), "text", None), ["id", "v"], opts)


@FUZZ
@given(body=FUZZ_BYTES | st.sampled_from([b'{"id": 1}\n{"id": \n', b"[1]\n", b'{"id": "\xff"}\n', b"1e999999\n"]))
def test_fuzz_jsonl_reader_gives_rows_or_one_line(tmp_path, body):
    p = tmp_path / "part-m-00000.jsonl"
    p.write_bytes(body)
    _read_all(PartFile(str(p), "jsonl", None), ["id", "v"])
