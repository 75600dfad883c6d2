"""TPC-H `lineitem` out of PostgreSQL into Parquet on HDFS (`--target-dir hdfs://...`)
against the same import to the local disk, in one run, rounds alternating.

    python bench/hdfs_import.py [--sf 1] [--rounds 3] [--mappers 2] [--targets local,hdfs]
                                [--hdfs-url hdfs://127.0.0.1:8020/tmp/fastsync-bench] [--cluster SPEC] [--json FILE]

Each import runs in a process of its own, `fastsync import --split-by l_orderkey -m M`; its
output is counted where it was published (on HDFS through fastsync.filesystems, as fastsync
reaches it: libhdfs or WebHDFS) and deleted before the next run. --targets local runs the
local-disk side alone (no HDFS needed). --cluster runs both sides' splits on a Dask cluster:
local:N, or `external` for a scheduler and --tcp-workers workers this script starts once
(see cluster_import.py). Wall time, rows/s, peak PSS and CPU as in cluster_import.py; the
ratio is HDFS / local wall time per round at the same -m. The HDFS of scripts/services.sh
keeps its blocks on the same disk as the local target, with one replica: the difference is
the path through the NameNode and DataNode, not a second disk.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid

from cluster_import import (ExternalCluster, Variant, connect_args, import_cmd, remove, rounds_of, run_one,
                            summary)
from tpch_import import generate, load_postgres, table_name

HDFS_URL = os.environ.get("FASTSYNC_BENCH_HDFS_URL", "hdfs://127.0.0.1:8020/tmp/fastsync-bench")


def runs(table: str, rows: int, targets: list[str], mappers: list[int], rounds: int, hdfs_url: str,
         cluster_spec: str | None, tcp_workers: int, scratch: str | None) -> list[dict]:
    variants = [Variant("%s-m%d" % (t, m), "m", m) for m in mappers for t in targets]
    tmp = tempfile.mkdtemp(prefix="hdfs-bench-", dir=scratch)
    remote = "%s/run-%s" % (hdfs_url.rstrip("/"), uuid.uuid4().hex[:8])     # concurrent runs don't collide
    cluster = None
    try:
        connect = connect_args(tmp)
        if cluster_spec == "external":
            cluster = ExternalCluster(tcp_workers, tmp)
        spec = cluster.address if cluster else cluster_spec

        def run(v: Variant, i: int) -> dict:
            where = tmp if v.name.startswith("local-") else remote
            target = "%s/%s-r%d" % (where, v.name, i)
            try:
                r = run_one(v, import_cmd(connect, table, v, target, spec), target, rows, cluster.pids if cluster else ())
            except SystemExit:
                if "://" in target and os.path.exists(os.path.abspath(target)):    # a fastsync without URL targets
                    shutil.rmtree(os.path.abspath(target.split("://")[0] + ":"), ignore_errors=True)
                    raise SystemExit("bench: this fastsync wrote --target-dir %s as a local path: it has no "
                                     "hdfs:// targets" % target) from None
                raise
            r["target"] = v.name.split("-")[0]
            return r
        return rounds_of(variants, rounds, run)
    finally:
        if cluster:
            cluster.close()
        if "hdfs" in targets:
            try:
                remove(remote)
            except Exception as exc:        # noqa: BLE001 - the run's own error matters more
                print("bench: could not remove %s: %s" % (remote, exc), file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)


def ratios(results: list[dict]) -> list[dict]:
    """HDFS / local wall time at the same -m, per round."""
    base = {(r["mappers"], r["round"]): r["seconds"] for r in results if r["target"] == "local"}
    out = []
    for m in sorted({r["mappers"] for r in results if r["target"] == "hdfs"}):
        per = [round(r["seconds"] / base[(m, r["round"])], 3) for r in results
               if r["target"] == "hdfs" and r["mappers"] == m and (m, r["round"]) in base]
        if per:
            out.append(dict(variant="hdfs-m%d" % m, against="local-m%d" % m, per_round=per,
                            median=round(statistics.median(per), 3)))
    return out


def report(results: list[dict]) -> str:
    lines = ["| target | -m | s, median (min – max) | rows/s | peak MB | CPU s | DB CPU s | own s | load |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for s in summary(results):
        lines.append("| %s | %d | %.2f (%.2f – %.2f) | %s | %d | %.2f | %.2f | %s | %s |" % (
            s["variant"].split("-")[0], s["mappers"], s["seconds"], s["seconds_min"], s["seconds_max"],
            format(s["rows_per_s"], ","), s["peak_mb"], s["cpu_s"], s["db_cpu_s"], s.get("own_s", "–"),
            " ".join("%.1f" % x for x in s["load1"])))
    rat = ratios(results)
    if rat:
        lines += ["", "| HDFS | against | wall ratio per round | median |", "| --- | --- | --- | --- |"]
        lines += ["| %s | %s | %s | %.3f |" % (r["variant"], r["against"], ", ".join("%.3f" % x for x in r["per_round"]),
                                              r["median"]) for r in rat]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sf", type=float, default=1.0, help="TPC-H scale factor (1: 6 M rows)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--mappers", default="2", help="-m of the imports, comma-separated")
    ap.add_argument("--targets", default="local,hdfs", help="local, hdfs or both")
    ap.add_argument("--hdfs-url", default=HDFS_URL, help="directory the HDFS imports go below (a run-<id> of its own)")
    ap.add_argument("--cluster", help="run the splits on a Dask cluster: local:N, or external (a scheduler and "
                                      "--tcp-workers workers started by this script)")
    ap.add_argument("--tcp-workers", type=int, default=2)
    ap.add_argument("--scratch", help="directory for the local output (default: the system's temporary directory)")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--table", help="the lineitem table to load and read (default: tpch_lineitem_sf<sf>, kept)")
    args = ap.parse_args(argv)
    targets = args.targets.split(",")
    if not targets or set(targets) - {"local", "hdfs"}:
        raise SystemExit("bench: --targets %s: expected local, hdfs or local,hdfs" % args.targets)
    csv_path, rows = generate(args.sf)
    table = args.table or table_name(args.sf)
    load_postgres(csv_path, rows, table)
    load = [os.getloadavg()]
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    results = runs(table, rows, targets, [int(m) for m in args.mappers.split(",")], args.rounds, args.hdfs_url,
                   args.cluster, args.tcp_workers, args.scratch)
    load.append(os.getloadavg())
    print("started %s, load average before %.2f %.2f %.2f, after %.2f %.2f %.2f" % (started, *load[0], *load[1]))
    print(report(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(sf=args.sf, table=table, rows=rows, started=started, rounds=args.rounds, targets=targets,
                           hdfs_url=args.hdfs_url, cluster=args.cluster, load_before=load[0], load_after=load[1],
                           cpus=os.cpu_count(), results=results, summary=summary(results), ratios=ratios(results)),
                      f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
