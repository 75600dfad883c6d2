"""`fastsync import` from SQLite: the fast path (Arrow batches from ADBC's SQLite driver)
gives exactly what the generic path (--no-fast-path: sqlite3 rows through SQLAlchemy)
gives, over every type affinity, NULLs, values of another storage class and empty results."""
import sqlite3

import pyarrow.parquet as pq
import pytest

from tests.test_import import fastsync

FAST = "read as Arrow by ADBC's SQLite driver"
N = 1200      # more than the --query sample (1000 rows) and several --fetch-size batches

# every column type SQLAlchemy reflects from SQLite into a typed Arrow column, and some it doesn't
COLUMNS = ("id INTEGER PRIMARY KEY, i INTEGER, bi BIGINT, si SMALLINT, r REAL, fl FLOAT, db DOUBLE, "
           "t TEXT, vc VARCHAR(20), ch CHAR(3), cl CLOB, bl BLOB, bo BOOLEAN, d DATE, dt DATETIME, dc DECIMAL(12, 2)")
SLOW_COLUMNS = "num NUMERIC, dec DECIMAL(10), tm TIME, untyped"


def row(k):
    if k % 11 == 0:     # a row of NULLs
        return (k,) + (None,) * 15
    return (k, k * 3 - 500, k * 10 ** 12, k % 300 - 150, k / 7, -k / 3, k * 1e300 if k % 5 == 0 else 0.1 * k,
            "t\u00e9%d" % k, "v%d" % k, "c%d" % (k % 10), "clob %d" % k, bytes([k % 256, 0, 255]), k % 2,
            "2024-%02d-%02d" % (k % 12 + 1, k % 28 + 1),
            "2024-01-02 03:04:%02d.%06d" % (k % 60, k) if k % 3 else "2024-01-02T03:04:05" if k % 2 else "2024-01-02",
            k / 8 - 50 if k % 4 else "%d.%02d" % (k, k % 100))      # ties (x.125: half to even), integers, text


def make_db(path, slow=False):
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE t (%s%s)" % (COLUMNS, ", " + SLOW_COLUMNS if slow else ""))
    extra = (lambda k: (k / 4, k, "10:11:%02d" % (k % 60), "x%d" % k)) if slow else (lambda k: ())
    con.executemany("INSERT INTO t VALUES (%s)" % ", ".join("?" * (16 + (4 if slow else 0))),
                    [row(k) + extra(k) for k in range(1, N + 1)])
    con.commit()
    return con


def both(tmp_path, *args):
    """(fast table, generic table, fast run's stderr); both runs must succeed."""
    got = {}
    for fast in (True, False):
        out_dir = tmp_path / ("fast" if fast else "generic")
        out = fastsync("import", *args, "--target-dir", out_dir, "--log-level", "INFO", "--fetch-size", 500,
                       *(() if fast else ("--no-fast-path",)))
        assert out.returncode == 0, out.stderr
        got[fast] = (pq.read_table(out_dir).sort_by("id"), out.stderr)
    (a, said), (b, _) = got[True], got[False]
    assert a.schema == b.schema
    assert a.to_pylist() == b.to_pylist()
    return a, b, said


@pytest.mark.parametrize("mode", ["table", "query"])
@pytest.mark.slow
def test_fast_path_matches_generic_over_every_affinity(tmp_path, mode):
    db = tmp_path / "src.db"
    make_db(db)
    url = "sqlite:///%s" % db
    src = ("--table", "t") if mode == "table" else ("--query", "SELECT * FROM t WHERE $CONDITIONS", "--split-by", "id")
    a, _, said = both(tmp_path, "--connect", url, *src, "-m", 3)
    assert said.count(FAST) == 3, said
    assert a.num_rows == N
    types = {f.name: str(f.type) for f in a.schema}
    if mode == "table":     # the declared types
        assert types == {"id": "int64", "i": "int64", "bi": "int64", "si": "int16", "r": "double", "fl": "double",
                         "db": "double", "t": "string", "vc": "string", "ch": "string", "cl": "string",
                         "bl": "binary", "bo": "bool", "d": "date32[day]", "dt": "timestamp[us]",
                         "dc": "decimal128(12, 2)"}
    else:                   # the sampled values' types
        assert types["si"] == "int64" and types["bo"] == "int64" and types["d"] == "string" and types["bl"] == "binary"
        return
    assert [str(v) for v in a.column("dc").to_pylist()[:4]] == ["-49.88", "-49.75", "-49.62", "4.04"]
    dt = [v.isoformat() for v in a.column("dt").to_pylist()[1:6]]
    assert dt == ["2024-01-02T03:04:02.000002", "2024-01-02T03:04:05", "2024-01-02T03:04:04.000004",
                  "2024-01-02T03:04:05.000005", "2024-01-02T00:00:00"]


@pytest.mark.slow
def test_where_columns_and_empty_results(tmp_path):
    db = tmp_path / "src.db"
    make_db(db)
    url = "sqlite:///%s" % db
    a, _, said = both(tmp_path / "w", "--connect", url, "--table", "t", "--columns", "id,si,dt,bl",
                      "--where", "id % 11 = 0 OR si > 100", "-m", 2)
    assert FAST in said and a.column_names == ["id", "si", "dt", "bl"] and 0 < a.num_rows < N
    a, _, said = both(tmp_path / "e", "--connect", url, "--table", "t", "--where", "id < 0", "-m", 1)
    assert FAST in said and a.num_rows == 0 and str(a.schema.field("d").type) == "date32[day]"
    a, _, said = both(tmp_path / "q", "--connect", url, "--query", "SELECT id, t, r FROM t WHERE $CONDITIONS AND id > %d" % N,
                      "-m", 1)
    assert a.num_rows == 0 and str(a.schema.field("r").type) == "string"     # nothing sampled: text, as before


@pytest.mark.slow
def test_columns_the_fast_path_cannot_type_take_the_generic_path(tmp_path):
    db = tmp_path / "src.db"
    make_db(db, slow=True)
    a, _, said = both(tmp_path, "--connect", "sqlite:///%s" % db, "--table", "t", "-m", 2)
    assert FAST not in said and "generic path" in said, said
    assert a.num_rows == N


@pytest.mark.parametrize("mode", ["table", "query"])
@pytest.mark.slow
def test_values_of_another_storage_class_read_as_the_generic_path_reads_them(tmp_path, mode):
    """An integer column holding text, a text result holding integers past the sample, a blob
    column holding text: the split reruns through the generic path, which converts what it
    can (text into a blob column) and fails on the rest with the same one-line error."""
    db = tmp_path / "src.db"
    con = make_db(db)
    # in the second --fetch-size batch of a split, after a batch was written
    con.execute("UPDATE t SET bl = 'text in a blob' WHERE id = 700")
    con.commit()
    url = "sqlite:///%s" % db
    src = ("--table", "t") if mode == "table" else ("--query", "SELECT * FROM t WHERE $CONDITIONS", "--split-by", "id")
    a, _, said = both(tmp_path / "ok", "--connect", url, *src, "-m", 1)
    assert "reads: " in said and a.column("bl").to_pylist()[699] == b"text in a blob"
    if mode == "table":
        con.execute("UPDATE t SET i = 'abc' WHERE id = 700")
        query = ()
    else:   # integers after the 1000 rows sampled as text
        query = ("--query", "SELECT id, CASE WHEN id > 1100 THEN id ELSE 'x' END AS m FROM t WHERE $CONDITIONS")
    con.commit()
    errors = []
    for fast in ((), ("--no-fast-path",)):
        out_dir = tmp_path / ("bad%d" % len(fast))
        out = fastsync("import", "--connect", url, *(query or src), "-m", 1, "--fetch-size", 500, "--target-dir", out_dir,
                       *fast)
        assert out.returncode == 1 and len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert not out_dir.exists()
        errors.append(out.stderr)
    assert errors[0] == errors[1]
    assert ("t.i: cannot convert a value" if mode == "table" else "--query column m: cannot convert a value") in errors[0]


@pytest.mark.slow
def test_a_real_in_an_integer_column_and_any_nonzero_integer_as_bool(tmp_path):
    db = tmp_path / "src.db"
    con = make_db(db)
    con.execute("UPDATE t SET i = 2.5 WHERE id = 3")     # the generic path's pa.array truncates it: 2
    con.commit()
    a, _, said = both(tmp_path / "real", "--connect", "sqlite:///%s" % db, "--table", "t", "-m", 1)
    assert "reads: " in said and a.column("i").to_pylist()[2] == 2
    con.execute("UPDATE t SET i = 1, bo = 7 WHERE id = 3")     # any non-zero integer is true, as bool() reads it
    con.commit()
    a, _, said = both(tmp_path / "bool", "--connect", "sqlite:///%s" % db, "--table", "t", "-m", 1)
    assert FAST in said and a.column("bo").to_pylist()[2] is True


def test_an_integer_past_2_53_in_a_double_query_column_fails_as_on_the_generic_path(tmp_path):
    """ADBC's driver would turn it into a double silently; the generic path refuses it."""
    db = tmp_path / "src.db"
    make_db(db)
    query = "SELECT id, CASE WHEN id > 1100 THEN 9007199254740993 ELSE id / 2.0 END AS m FROM t WHERE $CONDITIONS"
    errors = []
    for fast in ((), ("--no-fast-path",)):
        out = fastsync("import", "--connect", "sqlite:///%s" % db, "--query", query, "-m", 1, "--fetch-size", 500,
                       "--target-dir", tmp_path / ("o%d" % len(fast)), *fast)
        assert out.returncode == 1 and len(out.stderr.strip().splitlines()) == 1, out.stderr
        errors.append(out.stderr)
    assert errors[0] == errors[1] and "--query column m: cannot convert a value" in errors[0]
