"""`fastsync import` from SQLite (the embedded default): `--table` and `--query` on the fast
path (Arrow batches from ADBC's SQLite driver) against `--no-fast-path` (sqlite3 rows
through SQLAlchemy, transposed to columns in Python), and two raw baselines: ConnectorX
reading the table into Arrow and writing it as Parquet (`raw-cx`, the floor of read+write
in another library) and the sqlite3 module's fetchall alone (`raw-fetchall`, reading the
rows as Python tuples, no columns, no file). Every mode runs as its own process, so each
pays the interpreter's start; rounds alternate; rows/s from the wall time, the rows of the
output (or fetched) counted.

    python bench/bench_sqlite_import.py [--rows 1000000] [--rounds 3] [-m 1]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

import pytest

# the types the fast path reads; a NUMERIC/DECIMAL, TIME or untyped column sends a table
# through the generic path (see README, import)
DDL = ("CREATE TABLE items (id INTEGER PRIMARY KEY, name VARCHAR(100), qty INTEGER, ts DATETIME, "
       "score REAL, flag BOOLEAN)")
FILL = ("WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < %d) "
        "INSERT INTO items SELECT i, 'name ' || i, i %% 1000, datetime(1767225600 + i, 'unixepoch'), i / 8.0, i %% 2 FROM s")
QUERY = "SELECT * FROM items WHERE $CONDITIONS"
RAW_CX = """import sys, connectorx as cx, pyarrow.parquet as pq
t = cx.read_sql("sqlite://" + sys.argv[1], "SELECT * FROM items", return_type="arrow")
pq.write_table(t, sys.argv[2])
print(t.num_rows)"""
RAW_FETCHALL = """import sys, sqlite3
print(len(sqlite3.connect(sys.argv[1]).execute("SELECT * FROM items").fetchall()))"""
MODES = ("table", "table-generic", "query", "query-generic", "raw-cx", "raw-fetchall")


def make_db(path: str, rows: int) -> None:
    con = sqlite3.connect(path)
    con.execute(DDL)
    con.execute(FILL % (rows - 1))
    con.commit()
    con.close()


def count(out: str) -> int:
    import pyarrow.parquet as pq
    if os.path.isfile(out):
        return pq.ParquetFile(out).metadata.num_rows
    return sum(pq.ParquetFile(os.path.join(out, f)).metadata.num_rows for f in os.listdir(out) if f.endswith(".parquet"))


def run(db: str, mode: str, mappers: int, out: str) -> tuple[float, int]:
    """(seconds, rows) of one mode."""
    shutil.rmtree(out, ignore_errors=True)
    if mode.startswith("raw"):
        cmd = [sys.executable, "-c", RAW_CX if mode == "raw-cx" else RAW_FETCHALL, db, out]
    else:
        src = ["--table", "items"] if mode.startswith("table") else ["--query", QUERY, "--split-by", "id"]
        cmd = [sys.executable, "-m", "fastsync", "import", "--connect", "sqlite:///" + db, *src, "-m", str(mappers),
               "--target-dir", out, "--as-parquetfile", *(["--no-fast-path"] if mode.endswith("generic") else [])]
    start = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    took = time.perf_counter() - start
    assert p.returncode == 0, p.stderr
    return took, int(p.stdout) if mode == "raw-fetchall" else count(out)


def compare(rows: int, rounds: int, mappers: int, modes=MODES) -> dict:
    tmp = tempfile.mkdtemp(prefix="bench-sqlite-")
    try:
        db = os.path.join(tmp, "src.db")
        make_db(db, rows)
        times: dict = {m: [] for m in modes}
        for _ in range(rounds):
            for mode in times:
                took, n = run(db, mode, mappers, os.path.join(tmp, mode))
                assert n == rows, (mode, n, rows)
                times[mode].append(rows / took)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return times


@pytest.mark.slow
def test_sqlite_import_fast_vs_generic(benchmark):
    rows = 1_000_000 if benchmark.enabled else 2000
    results = {}

    def once():
        results.update(compare(rows, 1, 1))
    benchmark.pedantic(once, rounds=3 if benchmark.enabled else 1, iterations=1)
    benchmark.extra_info.update(results)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("-m", type=int, default=1)
    a = ap.parse_args()
    from fastsync.bench import versions
    print(versions())
    print("load average before: %.2f %.2f %.2f" % os.getloadavg())
    times = compare(a.rows, a.rounds, a.m)
    generic = statistics.median(times["table-generic"])
    for mode, v in times.items():
        print("%-14s rows/s %s  median %9.0f  x table-generic %.2f" % (
            mode, " ".join("%.0f" % x for x in v), statistics.median(v), statistics.median(v) / generic))
    print("load average after: %.2f %.2f %.2f" % os.getloadavg())


if __name__ == "__main__":
    main()
