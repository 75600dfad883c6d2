"""TPC-H `lineitem` into PostgreSQL and MariaDB: `fastsync export` of the Parquet files
`fastsync import` wrote, against the raw bulk load of the same rows (`COPY … FROM` a CSV
file through psql, `LOAD DATA LOCAL INFILE` through the mariadb client), in one run.

    python bench/tpch_export.py [--sf 1] [--mappers 1,2] [--json FILE]

Every load goes into a new, empty table with lineitem's primary key, in a process of its
own; wall time covers the whole command (for fastsync: reading the files, the staging
tables, the one-transaction move). Before each load the server writes out what the one
before left dirty (PostgreSQL CHECKPOINT, MariaDB dirty pages), so no run pays for another.
Row counts are checked after every load.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from tpch_import import DDL, MYSQL_URL, PG_URL, generate, load_postgres, measure, table_name


def _sql(source: str, *statements: str):
    """Run statements on a fresh connection; the last one's first value."""
    out = None
    if source == "postgresql":
        import psycopg
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            for s in statements:
                cur = conn.execute(s)
                out = cur.fetchone()[0] if cur.description else None
        return out
    import pymysql
    from sqlalchemy.engine import make_url
    u = make_url(MYSQL_URL)
    conn = pymysql.connect(host=u.host, port=u.port or 3306, user=u.username, password=u.password,
                           database=u.database, autocommit=True)
    try:
        cur = conn.cursor()
        for s in statements:
            cur.execute(s)
            out = cur.fetchone()[0] if cur.description else None
    finally:
        conn.close()
    return out


def settle(source: str, limit: float = 30.0) -> float:
    """Let the server write out what the previous load left dirty, so no run pays for the
    one before it; returns the seconds it waited. PostgreSQL: CHECKPOINT (needs pg_checkpoint,
    which scripts/services.sh grants). MariaDB: wait until the buffer pool has few dirty pages,
    their count has stopped falling for 2 s, or `limit` seconds have passed. A stock MariaDB
    10.11 flushes nothing while idle (innodb_max_dirty_pages_pct_lwm=0), so scripts/services.sh
    sets that to 0.001; the idle flush then writes ~150 pages/s. The limit keeps a server that
    trickles its pages out slowly (the count always just falling) from costing minutes."""
    start = time.monotonic()
    if source == "postgresql":
        _sql(source, "CHECKPOINT")
        return time.monotonic() - start
    lowest, since = None, start
    while time.monotonic() - start < limit:
        dirty = int(_sql(source, "SELECT variable_value FROM information_schema.global_status "
                                 "WHERE variable_name = 'INNODB_BUFFER_POOL_PAGES_DIRTY'"))
        if dirty < 100:
            break
        if lowest is None or dirty < lowest:
            lowest, since = dirty, time.monotonic()
        elif time.monotonic() - since > 2:
            break
        time.sleep(0.5)
    return time.monotonic() - start


def parquet_files(sf: float, table: str) -> str:
    """The lineitem part files as `fastsync import -m 4` writes them (cached)."""
    out = os.path.join(os.path.expanduser("~/.cache/fastsync-bench"), "tpch-sf%g" % sf, "parquet")
    if not os.path.exists(os.path.join(out, "_SUCCESS")):
        subprocess.run([sys.executable, "-m", "fastsync", "import", "--connect", PG_URL, "--table", table,
                        "--split-by", "l_orderkey", "-m", "4", "--target-dir", out, "--delete-target-dir", "--as-parquetfile"],
                       check=True, stdout=subprocess.DEVNULL)
    return out


def runs(csv_path: str, parquet: str, rows: int, mappers: list[int], with_mysql: bool) -> list[dict]:
    from sqlalchemy.engine import make_url
    results = []
    target = "tpch_export_%d" % os.getpid()      # concurrent runs don't collide

    def record(source, tool, m, cmd):
        _sql(source, "DROP TABLE IF EXISTS %s" % target, DDL.format(table=target))
        waited = settle(source)
        try:
            wall, peak, _ = measure(cmd)
            loaded = _sql(source, "SELECT count(*) FROM %s" % target)
        finally:
            _sql(source, "DROP TABLE IF EXISTS %s" % target)
        if loaded != rows:
            raise SystemExit("bench: %s loaded %s rows, expected %d" % (tool, loaded, rows))
        results.append(dict(source=source, tool=tool, mappers=m, seconds=round(wall, 3),
                            rows_per_s=round(rows / wall), peak_mb=round(peak / 2**20)))
        print("%-10s %-40s m=%d %7.2f s %9.0f rows/s %6d MB (settled in %.1f s)"
              % (source, tool, m, wall, rows / wall, peak / 2**20, waited), file=sys.stderr)

    for source, url in (("postgresql", PG_URL), ("mariadb", MYSQL_URL)):
        if source == "mariadb" and not with_mysql:
            continue
        if source == "postgresql":
            raw = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", PG_URL, "-c",
                   "\\copy %s FROM '%s' (FORMAT csv, HEADER true)" % (target, csv_path)]
            record(source, "raw COPY FROM (csv file, psql)", 1, raw)
        else:
            u = make_url(url)
            raw = ["mariadb", "--protocol=tcp", "-h", u.host, "-P", str(u.port or 3306), "-u", u.username,
                   "-p" + u.password, "--local-infile=1", u.database, "-e",
                   "LOAD DATA LOCAL INFILE '%s' INTO TABLE %s FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' "
                   "IGNORE 1 LINES" % (csv_path, target)]
            record(source, "raw LOAD DATA LOCAL INFILE (csv file)", 1, raw)
        for m in mappers:
            record(source, "fastsync export (parquet)", m,
                   [sys.executable, "-m", "fastsync", "export", "--connect", url, "--table", target,
                    "--export-dir", parquet, "-m", str(m)])
    return results


def report(results: list[dict]) -> str:
    raw = {r["source"]: r["rows_per_s"] for r in results if r["tool"].startswith("raw")}
    lines = ["| target | loader | -m | s | rows/s | peak MB | vs raw bulk load |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        lines.append("| %s | %s | %d | %.2f | %s | %d | %.2f |" % (
            r["source"], r["tool"], r["mappers"], r["seconds"], format(r["rows_per_s"], ","), r["peak_mb"],
            r["rows_per_s"] / raw[r["source"]]))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sf", type=float, default=1.0, help="TPC-H scale factor (1: 6 M rows)")
    ap.add_argument("--mappers", default="1,2", help="writers (-m) for fastsync export")
    ap.add_argument("--no-mysql", action="store_true", help="PostgreSQL only")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--table", help="the lineitem table to load and read (default: tpch_lineitem_sf<sf>, kept for the next run)")
    args = ap.parse_args(argv)
    csv_path, rows = generate(args.sf)
    table = args.table or table_name(args.sf)
    load_postgres(csv_path, rows, table)
    parquet = parquet_files(args.sf, table)
    results = runs(csv_path, parquet, rows, [int(m) for m in args.mappers.split(",")], not args.no_mysql)
    print(report(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(sf=args.sf, rows=rows, results=results), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
