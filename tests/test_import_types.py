"""Every common column type of PostgreSQL and MariaDB through `fastsync import`, compared
value by value with the source rows, read back with pyarrow and with DuckDB; PostgreSQL
tables through both the binary COPY path and the generic path, which must agree."""
import datetime
import decimal
import json
import os
import re
import subprocess
import sys
import uuid

import duckdb
import fastavro
import psycopg
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from e2e_support import drop_tables, parquet_unless_told

PG_URL = os.environ.get("FASTSYNC_TEST_PG_URL", "postgresql://fastsync:fastsync@127.0.0.1:5432/fastsync")
MYSQL_URL = os.environ.get("FASTSYNC_TEST_MYSQL_URL", "mysql://fastsync:fastsync@127.0.0.1:3306/fastsync")
# the tables and types on the shared servers: named per process, so concurrent runs (xdist
# workers, another checkout's suite) never share one
NAMES = {k: "%s_%d" % (k.lower(), os.getpid()) for k in ("TYPES", "MOOD", "PARITY", "PARITY_MOOD", "UNFIT")}
TYPES, MOOD, PARITY, PARITY_MOOD, UNFIT = NAMES.values()


def named(sql: str) -> str:
    """sql with {TYPES}, {MOOD}, ... replaced by this process's names."""
    for k, v in NAMES.items():
        sql = sql.replace("{%s}" % k, v)
    return sql


@pytest.fixture(scope="module", autouse=True)
def _drop_server_tables():
    """The tables and types these tests make on the shared servers go when the module is done."""
    yield
    drop_tables(PG_URL, TYPES, PARITY, UNFIT, types=(MOOD, PARITY_MOOD))
    drop_tables(MYSQL_URL, TYPES)
TRICKY = "snow \u2603, NUL-free control \x01\x1f, quote \" ' \\ , newline \n tab \t, emoji \U0001F600"
UTC = datetime.timezone.utc
AVRO = {}


def fastsync_import(url, table, target, *args, path=None):
    """`fastsync import` with two splits; `path` ("binary COPY", "generic path", "read as
    MySQL text rows"): the one
    each split must have taken, as its log line says. Returns the finished process."""
    out = subprocess.run([sys.executable, "-m", "fastsync", *parquet_unless_told([
        "import", "--connect", url, "--table", table, "-m", "2", "--log-level", "INFO", "--target-dir", str(target), *args])],
        capture_output=True, text=True, timeout=300)
    taken = re.findall(r"fastsync\.import: %s split \d+: (binary COPY|generic path|read as MySQL text rows)" % table, out.stderr)
    if out.returncode == 0 and path is not None:
        assert taken and set(taken) == {path}, out.stderr
    return out


def run_import(url, table, target, *args, path=None):
    out = fastsync_import(url, table, target, *args, path=path)
    assert out.returncode == 0, out.stderr
    # the same rows as an Avro data file, read back with fastavro
    avro = fastsync_import(url, table, str(target) + "-avro", "--as-avrodatafile", *args, path=path)
    assert avro.returncode == 0, avro.stderr
    records = []
    for p in sorted(os.listdir(str(target) + "-avro")):
        if p.endswith(".avro"):
            with open(os.path.join(str(target) + "-avro", p), "rb") as f:
                records += list(fastavro.reader(f))
    AVRO[table] = sorted(records, key=lambda r: r["id"])
    by_arrow = sorted(pq.read_table(target).to_pylist(), key=lambda r: r["id"])
    by_duck = duckdb.sql("SELECT * FROM read_parquet('%s/*.parquet') ORDER BY id" % target).fetchall()
    return by_arrow, by_duck


PG_DDL = named("""
CREATE TABLE {TYPES} (
  id int PRIMARY KEY, i2 smallint, i4 integer, i8 bigint, num numeric(38, 10), num_small numeric(5, 2),
  f4 real, f8 double precision, b boolean, c char(5), vc varchar(200), t text, by bytea,
  d date, tm time, ts timestamp, tstz timestamptz, iv interval, j json, jb jsonb, u uuid, e {MOOD},
  arr_i int[], arr_t text[], generic timetz)
""")
PG_ROWS = [
    dict(id=1, i2=-32768, i4=2147483647, i8=-9223372036854775808, num=decimal.Decimal("1234567890123456789012345678.0123456789"),
         num_small=decimal.Decimal("-999.99"), f4=1.5, f8=-2.25e300, b=True, c="ab   ", vc=TRICKY, t=TRICKY * 3,
         by=b"\x00\x01\xff\x00bin", d=datetime.date(1, 1, 1), tm=datetime.time(23, 59, 59, 999999),
         ts=datetime.datetime(2026, 11, 24, 8, 30, 1, 123456), tstz=datetime.datetime(2026, 6, 1, 12, 0, tzinfo=UTC),
         iv=datetime.timedelta(days=3, hours=4, microseconds=5), j={"a": [1, 2, {"b": None}]}, jb={"k": "v\u00e9"},
         u=uuid.UUID("12345678-1234-5678-1234-567812345678"), e="happy", arr_i=[1, None, 3], arr_t=["x", "", None]),
    dict(id=2, **{k: None for k in ("i2 i4 i8 num num_small f4 f8 b c vc t by d tm ts tstz iv j jb u e arr_i arr_t").split()}),
]


@pytest.mark.parametrize("path", ["binary COPY", "generic path"])
def test_postgresql_types_round_trip(tmp_path, path):
    engine = sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS %s" % TYPES))
        conn.execute(sa.text("DROP TYPE IF EXISTS %s" % MOOD))
        conn.execute(sa.text("CREATE TYPE %s AS ENUM ('sad', 'happy')" % MOOD))
        conn.execute(sa.text(PG_DDL))
        md = sa.MetaData()
        t = sa.Table(TYPES, md, autoload_with=conn)
        conn.execute(t.insert(), PG_ROWS)
    engine.dispose()
    # every column but `generic` (time with time zone, which has no binary COPY decoder) or all
    columns = ",".join(PG_ROWS[0]) + (",generic" if path == "generic path" else "")
    got, duck = run_import(PG_URL, TYPES, tmp_path / "pg", "--columns", columns, path=path)
    for g in got:
        assert g.pop("generic", None) is None
    want = []
    for r in PG_ROWS:
        w = dict(r)
        for k in ("j", "jb"):
            if w[k] is not None:
                w[k] = json.dumps(w[k], ensure_ascii=False, separators=(",", ":"), sort_keys=True)
        if w["u"] is not None:
            w["u"] = str(w["u"])
        want.append(w)
    # jsonb is stored normalised by PostgreSQL, json as written: compare them as documents
    for g, w in zip(got, want):
        for k in ("j", "jb"):
            assert (json.loads(g[k]) if g[k] else None) == (json.loads(w[k]) if w[k] else None)
            g[k] = w[k]
    assert got == want
    types = {f.name: str(f.type) for f in pq.read_schema(next((tmp_path / "pg").glob("part-*")))}
    assert types["num"] == "decimal128(38, 10)" and types["tstz"] == "timestamp[us, tz=UTC]"
    assert types["arr_i"] in ("list<element: int64>", "list<item: int64>") and types["by"] == "binary" and types["iv"] == "duration[us]"
    # Avro holds the same values (durations as microseconds, arrays as lists)
    a = AVRO[TYPES]
    for g, r in zip(got, a):
        for k, v in g.items():
            want_v = v // datetime.timedelta(microseconds=1) if isinstance(v, datetime.timedelta) else v
            if k == "tstz" and v is not None:
                want_v = v.astimezone(UTC)
            if k in ("j", "jb"):                          # as documents, as above
                want_v, r[k] = (json.loads(x) if x is not None else None for x in (want_v, r[k]))
            assert r[k] == want_v, (k, r[k], want_v)
    # DuckDB reads the same values
    assert [row[0] for row in duck] == [1, 2]
    cols = [c for c in duckdb.sql("SELECT * FROM read_parquet('%s/*.parquet') LIMIT 0" % (tmp_path / "pg")).columns]
    first = dict(zip(cols, duck[0]))
    assert first["num"] == PG_ROWS[0]["num"] and first["vc"] == TRICKY and first["by"] == PG_ROWS[0]["by"]
    assert first["i8"] == PG_ROWS[0]["i8"] and first["arr_t"] == ["x", "", None]
    # json's null document (what SQLAlchemy inserted for None) is the text 'null' on the COPY
    # path and NULL on the generic path (psycopg parses it to None): compared as documents above
    assert all(v is None for k, v in zip(cols, duck[1]) if k not in ("id", "j", "jb"))


MY_DDL = named("""
CREATE TABLE {TYPES} (
  id INT PRIMARY KEY, ti TINYINT, si SMALLINT, mi MEDIUMINT, i INT, bi BIGINT, ubi BIGINT UNSIGNED,
  num DECIMAL(65, 30), num_small DECIMAL(5, 2), f FLOAT, dbl DOUBLE, bo BOOLEAN, c CHAR(5), vc VARCHAR(200),
  t LONGTEXT, bl LONGBLOB, d DATE, tm TIME(6), dt DATETIME(6), e ENUM('sad', 'happy'), j JSON
) CHARACTER SET utf8mb4
""")


def test_mariadb_types_round_trip(tmp_path):
    engine = sa.create_engine(MYSQL_URL.replace("mysql://", "mysql+pymysql://") + "?charset=utf8mb4")
    rows = [
        dict(id=1, ti=-128, si=-32768, mi=8388607, i=-2147483648, bi=9223372036854775807, ubi=18446744073709551615,
             num=decimal.Decimal("12345678901234567890123456789012345.123456789012345678901234567891"[:66]),
             num_small=decimal.Decimal("999.99"), f=0.5, dbl=1e-300, bo=1, c="ab", vc=TRICKY, t=TRICKY * 2,
             bl=b"\x00\xff\x00", d=datetime.date(2026, 2, 28), tm=datetime.timedelta(hours=23, minutes=5, microseconds=7),
             dt=datetime.datetime(2026, 11, 24, 8, 1, 2, 345678), e="sad", j='{"a": [1, null]}'),
        dict(id=2, **{k: None for k in "ti si mi i bi ubi num num_small f dbl bo c vc t bl d tm dt e j".split()}),
    ]
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS %s" % TYPES))
        conn.execute(sa.text(MY_DDL))
        md = sa.MetaData()
        t = sa.Table(TYPES, md, autoload_with=conn)
        conn.execute(t.insert(), rows)
        # the reference: the rows as the driver returns them, with no SQLAlchemy processing
        back = [dict(r._mapping) for r in conn.exec_driver_sql("SELECT * FROM %s ORDER BY id" % TYPES)]
    engine.dispose()
    got, duck = run_import(MYSQL_URL, TYPES, tmp_path / "my", path="read as MySQL text rows")
    assert back[0]["dbl"] == 1e-300 and back[0]["ubi"] == 18446744073709551615
    # the source as the database returns it (MariaDB keeps JSON as text, TIME as a duration)
    assert len(got) == len(back) == 2
    for g, b in zip(got, back):
        for k, v in b.items():
            if k == "num" and v is not None:
                assert decimal.Decimal(g[k]) == v
            else:
                assert g[k] == v, (k, g[k], v)
    assert [row[0] for row in duck] == [1, 2]
    for g, r in zip(got, AVRO[TYPES]):          # and the Avro file holds the same
        for k, v in g.items():
            want_v = v // datetime.timedelta(microseconds=1) if isinstance(v, datetime.timedelta) else v
            assert r[k] == want_v, (k, r[k], want_v)


# time, interval and arrays: the binary COPY path must give, value by value, what the
# generic path gives (psycopg's values converted by pyarrow); `generic` (time with time
# zone, which has no binary COPY decoder) sends the table down the generic path when imported
PARITY_DDL = named("""
CREATE TABLE {PARITY} (
  id int PRIMARY KEY, tm time, tm3 time(3), iv interval, iv_ds interval day to second,
  a_i2 smallint[], a_i4 int[], a_i8 bigint[], a_num numeric(12, 3)[], a_f4 real[], a_f8 double precision[],
  a_b boolean[], a_t text[], a_vc varchar(5)[], a_c char(3)[], a_e {PARITY_MOOD}[], a_by bytea[], a_d date[],
  a_ts timestamp[], a_tstz timestamptz[], a_tm time[], a_iv interval[], generic timetz)
""")
PARITY_FILL = named("""
INSERT INTO {PARITY} SELECT g,
  TIME '00:00' + (g::int8 * 7777777777 % 86400000000) * INTERVAL '1 microsecond', TIME '12:34:56.789' + g * INTERVAL '1 ms',
  make_interval(months => (g * 7919 % 6000001 - 3000000), days => (g * 104729 % 20000001 - 10000000))
    + (g::int8 * 99991 % 200000001 - 100000000) * INTERVAL '1.000001 second',
  (g - 1500) * INTERVAL '1 day 00:00:01.5',
  CASE WHEN g % 7 = 0 THEN NULL WHEN g % 7 = 1 THEN '{}' ELSE ARRAY[g % 32000, NULL, -(g % 32000)] END,
  CASE WHEN g % 5 = 0 THEN NULL WHEN g % 5 = 1 THEN '{}' ELSE ARRAY[g * 1000, NULL] END,
  CASE WHEN g % 4 = 0 THEN '{}' ELSE ARRAY[g::int8 * 3000000000, NULL, -g] END,
  ARRAY[g * 1.001, NULL, -g / 8.0],
  ARRAY[g / 3.0, NULL, 1e-45, 3.4028235e38, 'NaN', '-Infinity', '-0'],
  ARRAY[g / 7.0, NULL, 'NaN', 'Infinity', 1e-300],
  ARRAY[g % 2 = 0, NULL],
  ARRAY['t' || g, NULL, '', 'q"\\,{} \u00e9'],
  ARRAY[left('v' || g, 5), NULL],
  ARRAY['c', NULL, 'abc'],
  CASE WHEN g % 3 = 0 THEN NULL ELSE ARRAY['sad', NULL, 'happy']::{PARITY_MOOD}[] END,
  ARRAY[decode(lpad(to_hex(g), 8, '0'), 'hex'), NULL, ''],
  ARRAY[DATE '2000-01-01' + g * 37, NULL, DATE '0001-01-01', DATE '9999-12-31'],
  ARRAY[TIMESTAMP '1969-12-31 23:00:00' + g * INTERVAL '1 minute 1 microsecond', NULL],
  ARRAY[TIMESTAMPTZ '2000-01-01 00:00:00+00' - g * INTERVAL '1 second', NULL],
  ARRAY[TIME '12:00' + g * INTERVAL '1.5 second', NULL, '23:59:59.999999'],
  CASE WHEN g % 6 = 0 THEN NULL ELSE ARRAY[g * INTERVAL '1 mon 1 day -1 microsecond', NULL, -g * INTERVAL '1 year'] END,
  NULL
FROM generate_series(1, 3000) g;
INSERT INTO {PARITY} (id, iv, a_iv, a_i4, a_t) VALUES
  (3001, '2562047788:00:54.775807', '{"-106751991 days", "5965232 years -2147483647 days"}', '[0:2]={7,8,9}', '{}'),
  (3002, '-106751991 days', '{"13 mons", "-1 year -1 mon", "1 day -25:00:00", "-00:00:00.000001"}', '[-5:-5]={1}', NULL),
  (3003, '5965232 years -2147483647 days', '{}', NULL, '{NULL}'),
  (3004, NULL, NULL, NULL, NULL);
""")


def same_values(a, b):
    """Equal lists of values, NaN equal to NaN."""
    def norm(v):
        if isinstance(v, float) and v != v:
            return "NaN"
        return [norm(x) for x in v] if isinstance(v, list) else v
    return [norm(v) for v in a] == [norm(v) for v in b]


@pytest.mark.slow
def test_time_interval_and_array_columns_take_binary_copy_with_the_generic_paths_output(tmp_path):
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS %s" % PARITY)
        conn.execute("DROP TYPE IF EXISTS %s" % PARITY_MOOD)
        conn.execute("CREATE TYPE %s AS ENUM ('sad', 'happy')" % PARITY_MOOD)
        conn.execute(PARITY_DDL)
        conn.execute(PARITY_FILL)
        names = [d.name for d in conn.execute("SELECT * FROM %s LIMIT 0" % PARITY).description if d.name != "generic"]
        source = conn.execute("SELECT %s FROM %s ORDER BY id" % (", ".join(names), PARITY)).fetchall()
    args = ("--fetch-size", "500", "--columns")
    copy = fastsync_import(PG_URL, PARITY, tmp_path / "copy", *args, ",".join(names), path="binary COPY")
    generic = fastsync_import(PG_URL, PARITY, tmp_path / "generic", *args, ",".join(names + ["generic"]), path="generic path")
    assert copy.returncode == 0 and generic.returncode == 0, copy.stderr + generic.stderr
    got = pq.read_table(tmp_path / "copy").sort_by("id")
    want = pq.read_table(tmp_path / "generic").sort_by("id").drop_columns(["generic"])
    assert got.schema == want.schema
    assert got.num_rows == want.num_rows == len(source) == 3004
    for i, name in enumerate(names):
        assert same_values(got[name].to_pylist(), want[name].to_pylist()), name
        if name != "a_e":            # psycopg alone reads an enum array as text; SQLAlchemy parses it
            assert same_values(got[name].to_pylist(), [r[i] for r in source]), name      # and what psycopg returns
    types = {f.name: str(f.type) for f in got.schema}
    assert types["tm"] == "time64[us]" and types["iv"] == "duration[us]" and types["a_num"].endswith("decimal128(12, 3)>")
    assert types["a_f4"].endswith("double>") and types["a_tstz"].endswith("timestamp[us, tz=UTC]>")
    rows = {r["id"]: r for r in got.to_pylist()}
    assert rows[3002]["a_iv"] == [datetime.timedelta(days=395), datetime.timedelta(days=-395), datetime.timedelta(hours=-1),
                                  datetime.timedelta(microseconds=-1)]     # a year 365 days, a month 30
    assert rows[3001]["iv"] == datetime.timedelta(microseconds=2**63 - 1) and rows[3001]["a_i4"] == [7, 8, 9]
    assert rows[3003]["iv"] == datetime.timedelta(days=5965232 * 365 - 2147483647)
    assert rows[7]["a_i2"] is None and rows[5]["a_i4"] is None and rows[1]["a_i2"] == [] and rows[3003]["a_t"] == [None]
    assert rows[1]["a_c"] == ["c  ", None, "abc"] and rows[1]["a_num"] == [decimal.Decimal("1.001"), None, decimal.Decimal("-0.125")]


@pytest.mark.parametrize("sql_type, value, what", [
    ("interval", "11767033 years", "interval"),      # psycopg's C loader alone returns -251 days
    ("interval", "-106751991 days -00:00:00.000001", "interval"),
    ("interval[]", '{"1 day", "999999999 days"}', "interval"),
    ("time", "24:00:00", "time"),
    ("time[]", "{12:00, 24:00:00}", "time"),
    ("int[]", "{{1,2},{3,4}}", "array"),
])
def test_values_arrow_cannot_hold_fail_both_paths_alike(tmp_path, sql_type, value, what):
    from fastsync._native import OUT_OF_RANGE
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS %s" % UNFIT)
        conn.execute("CREATE TABLE %s (id int PRIMARY KEY, v %s, generic timetz)" % (UNFIT, sql_type))
        conn.execute("INSERT INTO " + UNFIT + " (id, v) SELECT g, CASE WHEN g = 57 THEN %s::" + sql_type
                     + " END FROM generate_series(1, 100) g", (value,))
    errors = []
    for path, columns in (("binary COPY", "id,v"), ("generic path", "id,v,generic")):
        out = fastsync_import(PG_URL, UNFIT, tmp_path / path.split()[0], "--columns", columns)
        assert out.returncode == 1 and "%s split 0: %s" % (UNFIT, path) in out.stderr, out.stderr
        errors.append(out.stderr.strip().splitlines()[-1])
    assert errors[0] == errors[1] == "fastsync: error: %s.v: cannot convert a value: %s" % (UNFIT, OUT_OF_RANGE[what])
