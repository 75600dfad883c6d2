"""Sqoop 1.4.7's Avro and Parquet files, against the real Sqoop (tests/sqoop_support.py), on
the PostgreSQL and MariaDB tables of every common type of the text differential test:

- `fastsync import --as-avrodatafile --sqoop-avro-schema` writes the schema JSON Sqoop's
  `--as-avrodatafile` writes, and the same records value for value;
- `fastsync export` reads Sqoop's Avro data files and its Kite Parquet dataset (`.metadata/`,
  UUID-named `.parquet`) into a table holding the source's values (to the millisecond, all
  Sqoop keeps of times and timestamps);
- Sqoop's export reads fastsync's --sqoop-avro-schema files into a table;
- `fastsync merge` onto Sqoop's Avro files writes Sqoop's schema and values again.

Per database one test, its three Sqoop runs at once (a run mostly waits on its JVM's start
and codegen), in a client zone other than the servers' (dates and timestamps are the wall
clock in the JVM's zone)."""
import concurrent.futures
import datetime
import math
import os
import subprocess
import sys

import fastavro
import psycopg
import pymysql
import pytest

from e2e_support import drop_tables
from sqoop_support import jdbc, run_sqoop
from test_sqoop_differential import MY_DDL, MY_ROWS, MYSQL_URL, PG_DDL, PG_ROWS, PG_URL, ZONE

TABLE = "sqoopavro_%d" % os.getpid()
DBS = {"postgresql": (PG_URL, PG_DDL, PG_ROWS), "mariadb": (MYSQL_URL, MY_DDL, MY_ROWS)}
# Sqoop 1.4.7's export refuses BLOB columns ("BlobRef not supported"): its export leaves it out
SQOOP_EXPORT_SKIPS = {"postgresql": [], "mariadb": ["bl"]}
# and Connector/J 5.1 sends a DATETIME(6)'s timestamp without its fraction
SQOOP_EXPORT_SECONDS = {"postgresql": [], "mariadb": ["dt6"]}


def _mysql():
    return pymysql.connect(host="127.0.0.1", port=3306, user="fastsync", password="fastsync", database="fastsync",
                           autocommit=True)


def _execute(db, *statements, rows=None, table=None):
    if db == "postgresql":
        with psycopg.connect(PG_URL) as conn:
            for s in statements:
                conn.execute(s)
            if rows:
                with conn.cursor() as cur:
                    cur.executemany("INSERT INTO %s VALUES (%s)" % (table, ", ".join(["%s"] * len(rows[0]))), rows)
        return
    my = _mysql()
    try:
        with my.cursor() as cur:
            for s in statements:
                cur.execute(s)
            if rows:
                cur.executemany("INSERT INTO %s VALUES (%s)" % (table, ", ".join(["%s"] * len(rows[0]))), rows)
    finally:
        my.close()


def _rows(db, table):
    if db == "postgresql":
        with psycopg.connect(PG_URL) as conn:
            return conn.execute("SELECT * FROM %s ORDER BY id" % table).fetchall()
    my = _mysql()
    try:
        with my.cursor() as cur:
            cur.execute("SELECT * FROM %s ORDER BY id" % table)
            return list(cur.fetchall())
    finally:
        my.close()


def _columns(db, table):
    if db == "postgresql":
        with psycopg.connect(PG_URL) as conn:
            return [d.name for d in conn.execute("SELECT * FROM %s WHERE 1 = 0" % table).description]
    my = _mysql()
    try:
        with my.cursor() as cur:
            cur.execute("SELECT * FROM %s WHERE 1 = 0" % table)
            return [d[0] for d in cur.description]
    finally:
        my.close()


def _to_ms(v):
    """What Sqoop keeps of a value: times and timestamps to the millisecond."""
    if isinstance(v, (datetime.datetime, datetime.time)):
        return v.replace(microsecond=v.microsecond // 1000 * 1000)
    return v


def _same(a, b):
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def _avro(directory):
    """(the schema JSON of the files' headers, their records by id)."""
    schemas, records = set(), []
    for name in sorted(os.listdir(directory)):
        if name.endswith(".avro") and not name.startswith("."):
            with open(os.path.join(directory, name), "rb") as fh:
                r = fastavro.reader(fh)
                schemas.add(r.metadata["avro.schema"])
                records += list(r)
    return schemas, sorted(records, key=lambda r: r["id"])


def _fastsync(tool, *args):
    r = subprocess.run([sys.executable, "-m", "fastsync", tool, *args], capture_output=True, text=True,
                       env={**os.environ, "TZ": ZONE}, timeout=300)
    assert r.returncode == 0, r.stderr
    return r


@pytest.mark.slow
@pytest.mark.parametrize("db", list(DBS))
def test_sqoop_avro_and_parquet_both_ways(tmp_path, db):
    url, ddl, rows = DBS[db]
    connect, user, password = jdbc(url)
    login = ["--connect", connect, "--username", user, "--password", password]
    src, back, sqoop_back = TABLE, TABLE + "_back", TABLE + "_sq"
    _execute(db, *("DROP TABLE IF EXISTS %s" % t for t in (src, back, sqoop_back)), ddl.format(t=src),
             ddl.format(t=sqoop_back), rows=rows, table=src)
    try:
        ours = tmp_path / "fastsync_avro"
        _fastsync("import", *login, "--table", src, "-m", "2", "--split-by", "id", "--as-avrodatafile",
                  "--sqoop-avro-schema", "--target-dir", str(ours))

        names = _columns(db, src)
        skipped = [names.index(c) for c in SQOOP_EXPORT_SKIPS[db]]
        skip = ("--columns", ",".join(n for n in names if n not in SQOOP_EXPORT_SKIPS[db])) if skipped else ()
        # Kite names a dataset after its directory: letters, digits and _ only
        runs = {
            "avro": ("import", *login, "--table", src, "-m", "1", "--as-avrodatafile", "--target-dir",
                     str(tmp_path / "sqoop_avro")),
            "parquet": ("import", *login, "--table", src, "-m", "1", "--as-parquetfile", "--target-dir",
                        str(tmp_path / "sqoop_parquet")),
            "export": ("export", *login, "--table", sqoop_back, "-m", "1", "--export-dir", str(ours)) + skip,
        }
        with concurrent.futures.ThreadPoolExecutor(len(runs)) as pool:
            list(pool.map(lambda k: run_sqoop(*runs[k], workdir=tmp_path / ("work_" + k), tz=ZONE), runs))

        # 1. fastsync's --sqoop-avro-schema files: Sqoop's schema JSON, the same records
        theirs_schema, theirs = _avro(tmp_path / "sqoop_avro")
        ours_schema, mine = _avro(ours)
        assert ours_schema == theirs_schema
        assert len(mine) == len(theirs) == len(rows)
        diffs = ["id %s %s: sqoop %r fastsync %r" % (a["id"], k, a[k], b[k])
                 for a, b in zip(theirs, mine) for k in a if not _same(a[k], b[k])]
        assert not diffs, "\n".join(diffs)

        # 2. fastsync export of Sqoop's Avro files and of its Kite Parquet dataset
        assert (tmp_path / "sqoop_parquet" / ".metadata" / "schema.avsc").exists()
        expected = [tuple(_to_ms(v) for v in r) for r in _rows(db, src)]
        for what in ("sqoop_avro", "sqoop_parquet"):
            _execute(db, "DROP TABLE IF EXISTS %s" % back, ddl.format(t=back))
            _fastsync("export", *login, "--table", back, "--export-dir", str(tmp_path / what))
            got = _rows(db, back)
            diffs = ["%s id %s column %d: source %r exported %r" % (what, e[0], i, a, b)
                     for e, g in zip(expected, got) for i, (a, b) in enumerate(zip(e, g)) if not _same(a, b)]
            assert len(got) == len(expected) and not diffs, "\n".join(diffs)

        # 3. Sqoop's export of fastsync's files
        got = _rows(db, sqoop_back)
        seconds = [names.index(c) for c in SQOOP_EXPORT_SECONDS[db]]
        expected = [tuple(v.replace(microsecond=0) if i in seconds and v is not None else v for i, v in enumerate(r))
                    for r in expected]
        diffs = ["id %s column %d: source %r sqoop-exported %r" % (e[0], i, a, b)
                 for e, g in zip(expected, got) for i, (a, b) in enumerate(zip(e, g))
                 if not _same(a, b) and not (i in skipped and b is None)]
        assert len(got) == len(expected) and not diffs, "\n".join(diffs)

        # 4. merge onto Sqoop's Avro files: Sqoop's schema and values, the new row's in place
        _execute(db, "UPDATE %s SET vc = 'changed' WHERE id = 2" % src)
        _fastsync("import", *login, "--table", src, "--where", "id = 2", "-m", "1", "--as-avrodatafile",
                  "--sqoop-avro-schema", "--target-dir", str(tmp_path / "new"))
        _fastsync("merge", "--onto", str(tmp_path / "sqoop_avro"), "--new-data", str(tmp_path / "new"),
                  "--merge-key", "id", "--target-dir", str(tmp_path / "merged"))
        merged_schema, merged = _avro(tmp_path / "merged")
        assert merged_schema == theirs_schema
        want = [dict(r, vc="changed") if r["id"] == 2 else r for r in theirs]
        diffs = ["id %s %s: want %r merged %r" % (a["id"], k, a[k], b[k])
                 for a, b in zip(want, merged) for k in a if not _same(a[k], b[k])]
        assert len(merged) == len(want) and not diffs, "\n".join(diffs)
    finally:
        drop_tables(url, src, back, sqoop_back)


def test_sqoop_avro_schema_needs_avro(tmp_path):
    """--sqoop-avro-schema without --as-avrodatafile: one line, nothing written."""
    r = subprocess.run([sys.executable, "-m", "fastsync", "import", "--connect", PG_URL, "--table", "x",
                        "--sqoop-avro-schema", "--target-dir", str(tmp_path / "out")], capture_output=True, text=True)
    assert r.returncode != 0
    assert "--sqoop-avro-schema: only with --as-avrodatafile" in r.stderr
    assert not (tmp_path / "out").exists()
