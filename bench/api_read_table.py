"""Peak memory of `fastsync.read_table(...).to_pandas()` against `pandas.read_sql` of the same
table (1 M rows by default: id, name, qty, ts, score), each in a process of its own, rounds
alternating; the rows of each DataFrame counted against the table's (a difference fails the run).

Per run: the peak RSS of the process (ru_maxrss), the RSS once everything is imported and
before reading (`base`), and the DataFrame's own size (memory_usage(deep=True)); what reading
cost is peak - base, compared with the DataFrame's size.

    python bench/api_read_table.py [--rows 1000000] [--rounds 3] [--db sqlite,postgresql,mariadb] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import uuid

URLS = {"postgresql": os.environ.get("FASTSYNC_TEST_PG_URL", "postgresql://fastsync:fastsync@127.0.0.1:5432/fastsync"),
        "mariadb": os.environ.get("FASTSYNC_TEST_MYSQL_URL", "mysql://fastsync:fastsync@127.0.0.1:3306/fastsync")}
DDL = {"postgresql": "CREATE TABLE %s (id bigint PRIMARY KEY, name varchar(100), qty integer, ts timestamp, score double precision)",
       "mariadb": "CREATE TABLE %s (id bigint PRIMARY KEY, name varchar(100), qty int, ts datetime(6), score double)",
       "sqlite": "CREATE TABLE %s (id INTEGER PRIMARY KEY, name VARCHAR(100), qty INTEGER, ts DATETIME, score DOUBLE)"}
FILL = {"postgresql": "INSERT INTO %s SELECT i, 'name ' || i, mod(i, 1000), timestamp '2026-01-01' + i * interval '1 second', "
                      "i / 8.0 FROM generate_series(0, %d) AS i",
        "mariadb": "INSERT INTO %s SELECT seq, CONCAT('name ', seq), MOD(seq, 1000), "
                   "TIMESTAMP '2026-01-01 00:00:00' + INTERVAL seq SECOND, seq / 8 FROM seq_0_to_%d",
        "sqlite": "WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < %d) "
                  "INSERT INTO {t} SELECT i, 'name ' || i, i %% 1000, "
                  "strftime('%%Y-%%m-%%d %%H:%%M:%%S', '2026-01-01', '+' || i || ' seconds'), i / 8.0 FROM s"}
VARIANTS = ("read_table", "read_sql")

CHILD = r"""
import json, resource, sys, time
import pandas as pd, pyarrow, sqlalchemy as sa
import fastsync
from fastsync.transfer import api, splitread, connect      # the readers too: their imports are in base
variant, url, table = sys.argv[1:4]
engine = sa.create_engine(connect.build_url(url))

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096
base = rss()
t0 = time.perf_counter()
if variant == "read_table":
    df = fastsync.read_table(url, table=table).to_pandas()
else:
    df = pd.read_sql("SELECT * FROM " + table, engine)
seconds = time.perf_counter() - t0
print(json.dumps({"rows": len(df), "seconds": seconds, "base": base, "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "frame": int(df.memory_usage(deep=True).sum()), "dtypes": {c: str(t) for c, t in df.dtypes.items()}}))
"""


def _engine(db: str, path: str | None):
    import sqlalchemy as sa

    from fastsync.transfer.connect import build_url
    return sa.create_engine(build_url(URLS[db] if db != "sqlite" else "sqlite:///%s" % path))


def make_table(db: str, rows: int, scratch: str) -> tuple[str, str]:
    """(url, table) of a new table of `rows` rows."""
    name = "bench_api_" + uuid.uuid4().hex[:10]
    path = os.path.join(scratch, "api_read_table.db") if db == "sqlite" else None
    e = _engine(db, path)
    with e.begin() as c:
        c.exec_driver_sql(DDL[db] % name)
        if db == "sqlite":
            c.exec_driver_sql(FILL[db].replace("{t}", name) % (rows - 1))
        else:
            c.exec_driver_sql(FILL[db] % (name, rows - 1))
    e.dispose()
    return (URLS[db] if db != "sqlite" else "sqlite:///%s" % path), name


def count(db: str, url: str, table: str) -> int:
    import sqlalchemy as sa

    from fastsync.transfer.connect import build_url
    e = sa.create_engine(build_url(url))
    with e.connect() as c:
        n = c.exec_driver_sql("SELECT count(*) FROM %s" % table).scalar()
    e.dispose()
    return int(n)


def drop(db: str, url: str, table: str) -> None:
    if db == "sqlite":
        return
    import sqlalchemy as sa

    from fastsync.transfer.connect import build_url
    e = sa.create_engine(build_url(url))
    with e.begin() as c:
        c.exec_driver_sql("DROP TABLE %s" % table)
    e.dispose()


def run(variant: str, url: str, table: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, variant, url, table], capture_output=True, text=True, timeout=1800,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))})
    if out.returncode != 0:
        raise SystemExit("%s failed: %s" % (variant, out.stderr.strip()[-2000:]))
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--db", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql, mariadb")
    ap.add_argument("--scratch", help="directory for the SQLite file (default: a temporary one)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    results, failed = [], False
    with tempfile.TemporaryDirectory(dir=args.scratch) as scratch:
        for db in args.db.split(","):
            url, table = make_table(db, args.rows, scratch)
            try:
                want = count(db, url, table)
                for rnd in range(args.rounds):
                    for variant in VARIANTS if rnd % 2 == 0 else VARIANTS[::-1]:
                        r = run(variant, url, table)
                        r.update(db=db, variant=variant, round=rnd)
                        results.append(r)
                        if r["rows"] != want:
                            failed = True
                            print("%s %s: %d rows, the table has %d" % (db, variant, r["rows"], want), file=sys.stderr)
                        print("%-10s %-10s round %d: %7.2f s, peak %6.0f MB, base %5.0f MB, peak - base %6.0f MB, "
                              "DataFrame %6.0f MB" % (db, variant, rnd, r["seconds"], r["peak"] / 2**20, r["base"] / 2**20,
                                                      (r["peak"] - r["base"]) / 2**20, r["frame"] / 2**20), flush=True)
            finally:
                drop(db, url, table)
    summary = []
    for db in args.db.split(","):
        for variant in VARIANTS:
            mine = [r for r in results if r["db"] == db and r["variant"] == variant]
            summary.append({"db": db, "variant": variant, "rows": mine[0]["rows"],
                            "seconds": statistics.median(r["seconds"] for r in mine),
                            "peak_mb": statistics.median(r["peak"] for r in mine) / 2**20,
                            "read_mb": statistics.median(r["peak"] - r["base"] for r in mine) / 2**20,
                            "frame_mb": mine[0]["frame"] / 2**20, "dtypes": mine[0]["dtypes"]})
    print("\n| db | reader | rows | s | peak RSS MB | peak - base MB | DataFrame MB |\n| --- | --- | --- | --- | --- | --- | --- |")
    for s in summary:
        print("| %s | %s | %d | %.2f | %.0f | %.0f | %.0f |" % (s["db"], s["variant"], s["rows"], s["seconds"], s["peak_mb"],
                                                            s["read_mb"], s["frame_mb"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": args.rows, "results": results, "summary": summary}, f, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
