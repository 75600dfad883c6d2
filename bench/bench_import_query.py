"""`fastsync import --query` against `import --table` of the same rows (PostgreSQL and
MariaDB, the servers scripts/services.sh starts), and against `--query --no-fast-path`
(the rows fetched by the driver and transposed to columns in Python, the only --query path
before), in one run, rounds alternating; rows/s from the wall time of the CLI process, the
rows of the Parquet output counted.

    python bench/bench_import_query.py [--rows 500000] [--rounds 3] [-m 1] [--db postgresql,mariadb]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import pytest

URLS = {"postgresql": os.environ.get("FASTSYNC_TEST_PG_URL", "postgresql://fastsync:fastsync@127.0.0.1:5432/fastsync"),
        "mariadb": os.environ.get("FASTSYNC_TEST_MYSQL_URL", "mysql://fastsync:fastsync@127.0.0.1:3306/fastsync")}
DDL = {"postgresql": "CREATE TABLE %s (id bigint PRIMARY KEY, name varchar(100), price numeric(12,2), qty integer, "
                     "ts timestamp, score double precision)",
       "mariadb": "CREATE TABLE %s (id bigint PRIMARY KEY, name varchar(100), price decimal(12,2), qty int, "
                  "ts datetime(6), score double)"}
FILL = {"postgresql": "INSERT INTO %s SELECT i, 'name ' || i, mod(i, 100000) + mod(i, 100) / 100.0, mod(i, 1000), "
                      "timestamp '2026-01-01' + i * interval '1 second', i / 8.0 FROM generate_series(0, %d) AS i",
        "mariadb": "INSERT INTO %s SELECT seq, CONCAT('name ', seq), MOD(seq, 100000) + MOD(seq, 100) / 100, MOD(seq, 1000), "
                   "TIMESTAMP '2026-01-01 00:00:00' + INTERVAL seq SECOND, seq / 8 FROM seq_0_to_%d"}


def engine(kind: str):
    import sqlalchemy as sa
    from fastsync.transfer.connect import build_url
    return sa.create_engine(build_url(URLS[kind]))


def make_table(kind: str, rows: int) -> str:
    name = "bench_imq_" + uuid.uuid4().hex[:10]
    e = engine(kind)
    with e.begin() as c:
        c.exec_driver_sql(DDL[kind] % name)
        c.exec_driver_sql(FILL[kind] % (name, rows - 1))
    e.dispose()
    return name


def drop_table(kind: str, name: str) -> None:
    e = engine(kind)
    with e.begin() as c:
        c.exec_driver_sql("DROP TABLE %s" % name)
    e.dispose()


def run(kind: str, name: str, mode: str, mappers: int, out: str) -> float:
    args = {"table": ["--table", name, "--split-by", "id"],
            "query": ["--query", "SELECT * FROM %s WHERE $CONDITIONS" % name, "--split-by", "id"],
            "query-generic": ["--query", "SELECT * FROM %s WHERE $CONDITIONS" % name, "--split-by", "id", "--no-fast-path"]}[mode]
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "fastsync", "import", "--connect", URLS[kind], *args, "-m", str(mappers),
                        "--target-dir", out, "--as-parquetfile"], capture_output=True, text=True)
    took = time.perf_counter() - start
    assert p.returncode == 0, p.stderr
    return took


def count(out: str) -> int:
    import pyarrow.parquet as pq
    return sum(pq.ParquetFile(os.path.join(out, f)).metadata.num_rows for f in os.listdir(out) if f.endswith(".parquet"))


def compare(kind: str, rows: int, rounds: int, mappers: int) -> dict:
    name = make_table(kind, rows)
    times: dict = {"table": [], "query": [], "query-generic": []}
    tmp = tempfile.mkdtemp(prefix="bench-imq-")
    try:
        for _ in range(rounds):
            for mode in times:
                out = os.path.join(tmp, mode)
                took = run(kind, name, mode, mappers, out)
                assert count(out) == rows, (kind, mode, count(out), rows)
                times[mode].append(rows / took)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        drop_table(kind, name)
    return times


@pytest.mark.slow
def test_import_query_vs_table(benchmark):
    rows = 500_000 if benchmark.enabled else 2000
    results = {}

    def once():
        for kind in URLS:
            results[kind] = compare(kind, rows, 1, 1)
    benchmark.pedantic(once, rounds=3 if benchmark.enabled else 1, iterations=1)
    benchmark.extra_info.update({"%s %s" % (k, m): v for k, r in results.items() for m, v in r.items()})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=500_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("-m", type=int, default=1)
    ap.add_argument("--db", default="postgresql,mariadb")
    a = ap.parse_args()
    print("load average before: %.2f %.2f %.2f" % os.getloadavg())
    for kind in a.db.split(","):
        times = compare(kind, a.rows, a.rounds, a.m)
        table = statistics.median(times["table"])
        for mode, v in times.items():
            print("%-10s %-13s rows/s %s  median %8.0f  ratio to --table %.2f" % (
                kind, mode, " ".join("%.0f" % x for x in v), statistics.median(v), statistics.median(v) / table))
    print("load average after: %.2f %.2f %.2f" % os.getloadavg())


if __name__ == "__main__":
    main()
