"""TPC-H `lineitem` out of PostgreSQL and MariaDB: `fastsync import` against ConnectorX,
the ADBC PostgreSQL driver, `pandas.read_sql` and the raw COPY / client stream, in one run.

    python bench/tpch_import.py [--sf 1] [--mappers 1,2,4] [--json FILE]

Generates the table with `tpchgen-cli` (cached under ~/.cache/fastsync-bench), loads it
once into each database (reloaded when the row count differs), then runs every reader in
its own process and reports wall time, rows/s and peak memory of the whole process tree
(the sum of PSS, so pages shared by forked processes count once). Every reader's row count
is checked against the table's.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

PG_URL = os.environ.get("FASTSYNC_TEST_PG_URL", "postgresql://fastsync:fastsync@127.0.0.1:5432/fastsync")
MYSQL_URL = os.environ.get("FASTSYNC_TEST_MYSQL_URL", "mysql://fastsync:fastsync@127.0.0.1:3306/fastsync")

COLUMNS = [
    ("l_orderkey", "BIGINT NOT NULL"), ("l_partkey", "BIGINT NOT NULL"), ("l_suppkey", "BIGINT NOT NULL"),
    ("l_linenumber", "INTEGER NOT NULL"), ("l_quantity", "DECIMAL(15,2) NOT NULL"),
    ("l_extendedprice", "DECIMAL(15,2) NOT NULL"), ("l_discount", "DECIMAL(15,2) NOT NULL"),
    ("l_tax", "DECIMAL(15,2) NOT NULL"), ("l_returnflag", "CHAR(1) NOT NULL"), ("l_linestatus", "CHAR(1) NOT NULL"),
    ("l_shipdate", "DATE NOT NULL"), ("l_commitdate", "DATE NOT NULL"), ("l_receiptdate", "DATE NOT NULL"),
    ("l_shipinstruct", "CHAR(25) NOT NULL"), ("l_shipmode", "CHAR(10) NOT NULL"), ("l_comment", "VARCHAR(44) NOT NULL"),
]
DDL = "CREATE TABLE {table} (%s, PRIMARY KEY (l_orderkey, l_linenumber))" % ", ".join("%s %s" % c for c in COLUMNS)


def table_name(sf: float) -> str:
    """One table per scale factor, so a small check run leaves the big table loaded."""
    return "tpch_lineitem_sf" + ("%g" % sf).replace(".", "_")


def generate(sf: float) -> tuple[str, int]:
    """The lineitem CSV for this scale factor, and its row count."""
    out = os.path.join(os.path.expanduser("~/.cache/fastsync-bench"), "tpch-sf%g" % sf)
    path = os.path.join(out, "lineitem.csv")
    if not os.path.exists(path):
        os.makedirs(out, exist_ok=True)
        tool = shutil.which("tpchgen-cli") or os.path.join(os.path.dirname(sys.executable), "tpchgen-cli")
        subprocess.run([tool, "csv", "-s", "%g" % sf, "--tables=lineitem", "-o", out + ".tmp"], check=True)
        os.replace(os.path.join(out + ".tmp", "lineitem.csv"), path)
        os.rmdir(out + ".tmp")
    with open(path, "rb") as f:
        rows = sum(buf.count(b"\n") for buf in iter(lambda: f.read(1 << 24), b"")) - 1
    return path, rows


def _count(conn, table: str) -> int | None:
    cur = conn.cursor()
    try:
        cur.execute("SELECT count(*) FROM %s" % table)
        return cur.fetchone()[0]
    except Exception:
        conn.rollback()
        return None


def load_postgres(csv_path: str, rows: int, table: str) -> None:
    import psycopg
    with psycopg.connect(PG_URL) as conn:
        if _count(conn, table) == rows:
            return
        print("loading %d rows into PostgreSQL ..." % rows, file=sys.stderr)
        conn.execute("DROP TABLE IF EXISTS %s" % table)
        conn.execute(DDL.format(table=table))
        with conn.cursor().copy("COPY %s FROM STDIN (FORMAT csv, HEADER true)" % table) as copy, open(csv_path, "rb") as f:
            for buf in iter(lambda: f.read(1 << 20), b""):
                copy.write(buf)
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE %s" % table)


def load_mysql(csv_path: str, rows: int, table: str) -> None:
    import pymysql
    from sqlalchemy.engine import make_url
    u = make_url(MYSQL_URL)
    conn = pymysql.connect(host=u.host, port=u.port or 3306, user=u.username, password=u.password,
                           database=u.database, local_infile=True)
    try:
        if _count(conn, table) == rows:
            return
        print("loading %d rows into MariaDB ..." % rows, file=sys.stderr)
        cur = conn.cursor()
        cur.execute("DROP TABLE IF EXISTS %s" % table)
        cur.execute(DDL.format(table=table) + " ENGINE=InnoDB")
        cur.execute("LOAD DATA LOCAL INFILE %s INTO TABLE " + table +
                    " FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' IGNORE 1 LINES", (csv_path,))
        conn.commit()
    finally:
        conn.close()


def _pss_kb(pid: int) -> int:
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _tree(pid: int) -> list[int]:
    """pid and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/%s/stat" % name) as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def measure(cmd: list[str], stdout=subprocess.PIPE, also: tuple[int, ...] = ()) -> tuple[float, int, str]:
    """Run cmd; wall seconds, peak PSS of its process tree in bytes, its stdout. `also`: pids
    of processes the command works through (a running cluster's) whose trees count in each sample."""
    peak = 0
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.PIPE, text=True)
    done = threading.Event()

    def sample():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, sum(_pss_kb(p) for root in (proc.pid, *also) for p in _tree(root)))
            done.wait(0.02)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    done.set()
    t.join()
    if proc.returncode != 0:
        raise SystemExit("bench: %s failed (exit %d): %s" % (cmd[:4], proc.returncode, (err or "").strip()[-500:]))
    return wall, peak * 1024, out or ""


# Each peer runs as `python -c URL TABLE [M]` in a process of its own and prints the rows it read.
CONNECTORX = """
import sys, connectorx as cx
url, table, m = sys.argv[1], sys.argv[2], int(sys.argv[3])
kw = dict(partition_on="l_orderkey", partition_num=m) if m > 1 else {}
print(cx.read_sql(url, "SELECT * FROM " + table, return_type="arrow", **kw).num_rows)
"""
ADBC = """
import sys, adbc_driver_postgresql.dbapi as adbc
with adbc.connect(sys.argv[1]) as conn, conn.cursor() as cur:
    cur.execute("SELECT * FROM " + sys.argv[2])
    print(sum(b.num_rows for b in cur.fetch_record_batch()))
"""
PANDAS = """
import sys, pandas as pd, sqlalchemy as sa
print(len(pd.read_sql("SELECT * FROM " + sys.argv[2], sa.create_engine(sys.argv[1]))))
"""


def runs(table: str, rows: int, mappers: list[int], with_pandas: bool, with_mysql: bool) -> list[dict]:
    py = sys.executable
    fastsync = [py, "-m", "fastsync"]
    tmp = tempfile.mkdtemp(prefix="tpch-bench-")
    results = []

    def record(source, tool, m, cmd, check_rows=True, stdout=subprocess.PIPE):
        wall, peak, out = measure(cmd, stdout)
        if check_rows and int(out.split()[-1]) != rows:
            raise SystemExit("bench: %s read %s rows, the table has %d" % (tool, out.split()[-1], rows))
        results.append(dict(source=source, tool=tool, mappers=m, seconds=round(wall, 3),
                            rows_per_s=round(rows / wall), peak_mb=round(peak / 2**20)))
        print("%-10s %-34s m=%d %7.2f s %9.0f rows/s %6d MB" % (source, tool, m, wall, rows / wall, peak / 2**20),
              file=sys.stderr)

    def import_rows(target):
        import pyarrow.dataset as ds
        return ds.dataset(target, format="parquet").count_rows()

    try:
        for source, url in (("postgresql", PG_URL), ("mariadb", MYSQL_URL)):
            if source == "mariadb" and not with_mysql:
                continue
            if source == "postgresql":
                with open(os.devnull, "w") as devnull:
                    record(source, "raw COPY (binary) > /dev/null", 1,
                           ["psql", "-X", "-q", "-d", PG_URL, "-c", "COPY %s TO STDOUT (FORMAT binary)" % table],
                           check_rows=False, stdout=devnull)
            else:
                from sqlalchemy.engine import make_url
                u = make_url(url)
                with open(os.devnull, "w") as devnull:
                    record(source, "raw mariadb --quick > /dev/null", 1,
                           ["mariadb", "--protocol=tcp", "-h", u.host, "-P", str(u.port or 3306), "-u", u.username,
                            "-p" + u.password, "--quick", "-N", "-B", "-e", "SELECT * FROM %s" % table, u.database],
                           check_rows=False, stdout=devnull)
            for m in mappers:
                target = os.path.join(tmp, "%s-m%d" % (source, m))
                record(source, "fastsync import (parquet)", m,
                       fastsync + ["import", "--connect", url, "--table", table, "--split-by", "l_orderkey",
                                   "-m", str(m), "--target-dir", target, "--delete-target-dir", "--as-parquetfile"],
                       check_rows=False)
                if import_rows(target) != rows:
                    raise SystemExit("bench: fastsync import wrote %d rows, the table has %d" % (import_rows(target), rows))
                shutil.rmtree(target)
                record(source, "ConnectorX (arrow, in memory)", m, [py, "-c", CONNECTORX, url, table, str(m)])
            if source == "postgresql":
                record(source, "ADBC PostgreSQL (record batches)", 1, [py, "-c", ADBC, url, table])
            if with_pandas:
                sa_url = url.replace("postgresql://", "postgresql+psycopg://").replace("mysql://", "mysql+pymysql://")
                record(source, "pandas.read_sql", 1, [py, "-c", PANDAS, sa_url, table])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return results


def report(results: list[dict]) -> str:
    raw = {r["source"]: r["rows_per_s"] for r in results if r["tool"].startswith("raw")}
    cx = {(r["source"], r["mappers"]): r for r in results if r["tool"].startswith("ConnectorX")}
    lines = ["| source | reader | -m | s | rows/s | peak MB | vs raw | vs ConnectorX (rows/s, memory) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        peer = cx.get((r["source"], r["mappers"]))
        vs_cx = ("%.2f, %.2f" % (r["rows_per_s"] / peer["rows_per_s"], r["peak_mb"] / max(1, peer["peak_mb"]))
                 if peer and r["tool"].startswith("fastsync") else "")
        lines.append("| %s | %s | %d | %.2f | %s | %d | %.2f | %s |" % (
            r["source"], r["tool"], r["mappers"], r["seconds"], format(r["rows_per_s"], ","), r["peak_mb"],
            r["rows_per_s"] / raw[r["source"]], vs_cx))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sf", type=float, default=1.0, help="TPC-H scale factor (1: 6 M rows)")
    ap.add_argument("--mappers", default="1,2,4", help="parallelism for fastsync and ConnectorX")
    ap.add_argument("--no-pandas", action="store_true", help="skip pandas.read_sql (the slowest reader)")
    ap.add_argument("--no-mysql", action="store_true", help="PostgreSQL only")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--table", help="the lineitem table to load and read (default: tpch_lineitem_sf<sf>, kept for the next run)")
    args = ap.parse_args(argv)
    csv_path, rows = generate(args.sf)
    table = args.table or table_name(args.sf)
    load_postgres(csv_path, rows, table)
    if not args.no_mysql:
        load_mysql(csv_path, rows, table)
    results = runs(table, rows, [int(m) for m in args.mappers.split(",")], not args.no_pandas, not args.no_mysql)
    print(report(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(sf=args.sf, table=table, rows=rows, results=results), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
