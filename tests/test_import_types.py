"""Every common column type of PostgreSQL and MariaDB through `fastsync import`, compared
value by value with the source rows, read back with pyarrow and with DuckDB."""
import datetime
import decimal
import json
import os
import subprocess
import sys
import uuid

import duckdb
import fastavro
import pyarrow.parquet as pq
import sqlalchemy as sa

PG_URL = os.environ.get("FASTSYNC_TEST_PG_URL", "postgresql://fastsync:fastsync@127.0.0.1:5432/fastsync")
MYSQL_URL = os.environ.get("FASTSYNC_TEST_MYSQL_URL", "mysql://fastsync:fastsync@127.0.0.1:3306/fastsync")
TRICKY = "snow \u2603, NUL-free control \x01\x1f, quote \" ' \\ , newline \n tab \t, emoji \U0001F600"
UTC = datetime.timezone.utc
AVRO = {}


def run_import(url, table, target):
    out = subprocess.run([sys.executable, "-m", "fastsync", "import", "--connect", url, "--table", table, "-m", "2",
                          "--target-dir", str(target)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    # the same rows as an Avro data file, read back with fastavro
    avro = subprocess.run([sys.executable, "-m", "fastsync", "import", "--connect", url, "--table", table, "-m", "2",
                           "--as-avrodatafile", "--target-dir", str(target) + "-avro"], capture_output=True, text=True, timeout=300)
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


PG_DDL = """
CREATE TABLE types (
  id int PRIMARY KEY, i2 smallint, i4 integer, i8 bigint, num numeric(38, 10), num_small numeric(5, 2),
  f4 real, f8 double precision, b boolean, c char(5), vc varchar(200), t text, by bytea,
  d date, tm time, ts timestamp, tstz timestamptz, iv interval, j json, jb jsonb, u uuid, e mood,
  arr_i int[], arr_t text[])
"""
PG_ROWS = [
    dict(id=1, i2=-32768, i4=2147483647, i8=-9223372036854775808, num=decimal.Decimal("1234567890123456789012345678.0123456789"),
         num_small=decimal.Decimal("-999.99"), f4=1.5, f8=-2.25e300, b=True, c="ab   ", vc=TRICKY, t=TRICKY * 3,
         by=b"\x00\x01\xff\x00bin", d=datetime.date(1, 1, 1), tm=datetime.time(23, 59, 59, 999999),
         ts=datetime.datetime(2026, 11, 24, 8, 30, 1, 123456), tstz=datetime.datetime(2026, 6, 1, 12, 0, tzinfo=UTC),
         iv=datetime.timedelta(days=3, hours=4, microseconds=5), j={"a": [1, 2, {"b": None}]}, jb={"k": "v\u00e9"},
         u=uuid.UUID("12345678-1234-5678-1234-567812345678"), e="happy", arr_i=[1, None, 3], arr_t=["x", "", None]),
    dict(id=2, **{k: None for k in ("i2 i4 i8 num num_small f4 f8 b c vc t by d tm ts tstz iv j jb u e arr_i arr_t").split()}),
]


def test_postgresql_types_round_trip(tmp_path):
    engine = sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS types"))
        conn.execute(sa.text("DROP TYPE IF EXISTS mood"))
        conn.execute(sa.text("CREATE TYPE mood AS ENUM ('sad', 'happy')"))
        conn.execute(sa.text(PG_DDL))
        md = sa.MetaData()
        t = sa.Table("types", md, autoload_with=conn)
        conn.execute(t.insert(), PG_ROWS)
    engine.dispose()
    got, duck = run_import(PG_URL, "types", tmp_path / "pg")
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
    a = AVRO["types"]
    for g, r in zip(got, a):
        for k, v in g.items():
            want_v = v // datetime.timedelta(microseconds=1) if isinstance(v, datetime.timedelta) else v
            if k == "tstz" and v is not None:
                want_v = v.astimezone(UTC)
            assert r[k] == want_v, (k, r[k], want_v)
    # DuckDB reads the same values
    assert [row[0] for row in duck] == [1, 2]
    cols = [c for c in duckdb.sql("SELECT * FROM read_parquet('%s/*.parquet') LIMIT 0" % (tmp_path / "pg")).columns]
    first = dict(zip(cols, duck[0]))
    assert first["num"] == PG_ROWS[0]["num"] and first["vc"] == TRICKY and first["by"] == PG_ROWS[0]["by"]
    assert first["i8"] == PG_ROWS[0]["i8"] and first["arr_t"] == ["x", "", None]
    assert all(v is None for k, v in zip(cols, duck[1]) if k != "id")


MY_DDL = """
CREATE TABLE types (
  id INT PRIMARY KEY, ti TINYINT, si SMALLINT, mi MEDIUMINT, i INT, bi BIGINT, ubi BIGINT UNSIGNED,
  num DECIMAL(65, 30), num_small DECIMAL(5, 2), f FLOAT, dbl DOUBLE, bo BOOLEAN, c CHAR(5), vc VARCHAR(200),
  t LONGTEXT, bl LONGBLOB, d DATE, tm TIME(6), dt DATETIME(6), e ENUM('sad', 'happy'), j JSON
) CHARACTER SET utf8mb4
"""


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
        conn.execute(sa.text("DROP TABLE IF EXISTS types"))
        conn.execute(sa.text(MY_DDL))
        md = sa.MetaData()
        t = sa.Table("types", md, autoload_with=conn)
        conn.execute(t.insert(), rows)
        # the reference: the rows as the driver returns them, with no SQLAlchemy processing
        back = [dict(r._mapping) for r in conn.exec_driver_sql("SELECT * FROM types ORDER BY id")]
    engine.dispose()
    got, duck = run_import(MYSQL_URL, "types", tmp_path / "my")
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
    for g, r in zip(got, AVRO["types"]):          # and the Avro file holds the same
        for k, v in g.items():
            want_v = v // datetime.timedelta(microseconds=1) if isinstance(v, datetime.timedelta) else v
            assert r[k] == want_v, (k, r[k], want_v)
