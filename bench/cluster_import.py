"""TPC-H `lineitem` out of PostgreSQL into Parquet with the splits run on a Dask cluster
(`fastsync import --cluster`) against the same import without one, at equal parallelism, in
one run, rounds alternating.

    python bench/cluster_import.py [--sf 1] [--rounds 3] [--workers 1,2,4] [--json FILE]

Variants (--variants picks some; each run is a process of its own, its output counted):

    raw<w>      w `psql -c "COPY (SELECT * ... WHERE l_orderkey in 1/w of the keys) TO STDOUT
                (FORMAT binary)"` at once, > /dev/null: the server's output rate over w
                connections (R_db of the model in bench/README.md); rows not counted
    m<w>        fastsync import -m w: no cluster, the splits in forked processes
    local<w>    fastsync import -m w --cluster local:w: a Dask cluster of w one-thread worker
                processes that the command starts and stops itself (so counted)
    tcp<m>      fastsync import -m m --cluster tcp://127.0.0.1:P: a `dask scheduler` and
                --tcp-workers `dask worker --nworkers 1 --nthreads 1 --no-nanny` processes this script starts
                once before the rounds and stops after, by pid (their start-up, and a first
                import of a few rows that has the workers import fastsync, not counted; their
                PSS and CPU are counted with the command's)
    <any>-fixed the same import of a few rows (--where "l_orderkey <= 64"): start-up,
                planning, the cluster's and the tasks' overhead, publishing: the fixed terms

Wall time is the whole command; "own s" is the import's own figure (plan to publish, no
interpreter start-up). Peak memory is the largest sum of PSS over the command's process
tree (plus the external cluster's processes for tcp), sampled every 20 ms. CPU is user +
system of the command's tree (and of the external cluster's processes); DB CPU is that of
every PostgreSQL server process in the same time (other clients' work included). Rounds run
the variants in order, then in reverse, so each pair of neighbours alternates who goes
first. The ratios are cluster / no cluster at the same -m, per round: of wall time, and of
the command's CPU (with the external cluster's): on a loaded machine wall time stretches
every extra CPU second, CPU time much less. The external cluster's CPU while idle (5 s,
after the warm-up) is reported too: its share of a run's CPU grows with the run's length.

    python bench/cluster_import.py --report FILE.json    # the tables of a saved run again
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

from tpch_import import PG_URL, _pss_kb, _tree, generate, load_postgres, measure, table_name

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.append(ROOT)             # fastsync.filesystems, to count rows on any target
FIXED_WHERE = "l_orderkey <= 64"
TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Variant:
    name: str
    kind: str                 # raw, m, local, tcp
    mappers: int
    fixed: bool = False
    target: str = ""          # filled per run (fastsync variants)
    cmd: list = field(default_factory=list)


def parse_variant(name: str) -> Variant:
    m = re.fullmatch(r"(raw|m|local|tcp)(\d+)(-fixed)?", name)
    if not m or int(m.group(2)) < 1 or (m.group(1) == "raw" and m.group(3)):
        raise SystemExit("bench: --variants %s: expected raw<w>, m<w>, local<w> or tcp<m>, optionally -fixed" % name)
    return Variant(name, m.group(1), int(m.group(2)), bool(m.group(3)))


def default_variants(workers: list[int], tcp_workers: int, fixed: bool) -> list[str]:
    names = []
    for w in workers:
        names += ["raw%d" % w, "m%d" % w, "local%d" % w] + (["tcp%d" % w] if w == tcp_workers else [])
    if fixed:
        names += [n + "-fixed" for n in names if not n.startswith("raw")]
    return names


# ---------------------------------------------------------------------------- processes

def _stat_cpu(pid: int) -> float:
    """utime + stime of pid and of its reaped children, seconds."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            v = f.read().rsplit(")", 1)[1].split()
        return sum(int(x) for x in v[11:15]) / TICK
    except (OSError, IndexError, ValueError):
        return 0.0


def tree_cpu(roots) -> float:
    return sum(_stat_cpu(p) for r in roots for p in _tree(r))


def tree_pss_mb(roots) -> float:
    return sum(_pss_kb(p) for r in roots for p in _tree(r)) / 1024


def postgres_cpu() -> float:
    """CPU seconds of every PostgreSQL server process so far: exited backends are in the
    postmaster's reaped-children figure, so a backend that has exited but is not reaped yet
    (a zombie shows no CPU) is waited for, up to a second."""
    deadline = time.monotonic() + 1.0
    while True:
        total, zombie = 0.0, False
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    with open("/proc/%s/stat" % name) as f:
                        comm, rest = f.read().split(" (", 1)[1].rsplit(") ", 1)
                except (OSError, IndexError, ValueError):
                    continue
                if comm == "postgres":
                    zombie = zombie or rest.startswith("Z")
                    total += _stat_cpu(int(name))
        if not zombie or time.monotonic() > deadline:
            return total
        time.sleep(0.02)


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


class ExternalCluster:
    """A Dask scheduler and `workers` one-thread workers, as separate processes of this
    script (stopped by pid); fastsync's tcp variants connect to it."""

    def __init__(self, workers: int, scratch: str, worker_args: list[str]):
        dask = os.path.join(os.path.dirname(sys.executable), "dask")
        with socket.socket() as s:       # a free port, so concurrent runs don't collide
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.address = "tcp://127.0.0.1:%d" % port
        # the workers import the fastsync that `python -m fastsync` here does: the current
        # directory's, else PYTHONPATH's; this checkout's as the last resort
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (os.getcwd(), os.environ.get("PYTHONPATH"), ROOT) if p))
        # started as docs/transfers/cluster.md recommends for fastsync's tasks (local:N's settings)
        from fastsync.transfer.cluster import quiet_worker_env
        env.update(quiet_worker_env())
        self.log = open(os.path.join(scratch, "dask-cluster.log"), "w")
        self.procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                                       stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=scratch)]
        try:
            for i in range(workers):
                self.procs.append(subprocess.Popen(
                    [dask, "worker", self.address, "--nworkers", "1", "--nthreads", "1", "--no-dashboard",
                     *worker_args,
                     "--name", "bench-%d" % i, "--local-directory", scratch],
                    stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=scratch))
            wait = ("from distributed import Client\n"
                    "with Client(%r, timeout=60) as c: c.wait_for_workers(%d, timeout=120)" % (self.address, workers))
            subprocess.run([sys.executable, "-c", wait], check=True, env=env, capture_output=True, timeout=180)
        except BaseException:
            self.close()
            raise

    @property
    def pids(self) -> tuple[int, ...]:
        return tuple(p.pid for p in self.procs)

    def close(self) -> None:
        for p in reversed(self.procs):          # workers first, then the scheduler
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.log.close()


# ---------------------------------------------------------------------------- targets

def count_rows(url: str) -> int:
    """Rows of the Parquet parts published at url (local path or hdfs://, s3:// ...);
    fails when the directory has no _SUCCESS (the import did not publish)."""
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    from fastsync.filesystems import resolve
    loc = resolve(url)
    if loc.fs.get_file_info(loc.join("_SUCCESS")).type != pafs.FileType.File:
        raise SystemExit("bench: %s has no _SUCCESS" % url)
    rows = 0
    for info in loc.fs.get_file_info(pafs.FileSelector(loc.path)):
        if info.path.endswith(".parquet"):
            with loc.fs.open_input_file(info.path) as f:
                rows += pq.ParquetFile(f).metadata.num_rows
    return rows


def remove(url: str) -> None:
    from fastsync.filesystems import resolve
    loc = resolve(url)
    if loc.local:
        shutil.rmtree(loc.path, ignore_errors=True)
    else:
        try:
            loc.fs.delete_dir(loc.path)
        except (OSError, FileNotFoundError):
            pass


# ---------------------------------------------------------------------------- runs

def key_bounds(table: str, where: str | None = None) -> tuple[int, int, int]:
    """min and max l_orderkey and the row count (of the rows `where` keeps)."""
    import psycopg
    with psycopg.connect(PG_URL) as conn:
        return conn.execute("SELECT min(l_orderkey), max(l_orderkey), count(*) FROM %s%s"
                            % (table, " WHERE " + where if where else "")).fetchone()


def raw_cmd(table: str, w: int, lo: int, hi: int) -> list[str]:
    """w psql COPYs of 1/w of the key range each, at once, into /dev/null; fails if one does."""
    step = (hi - lo + 1) / w
    copies = []
    for i in range(w):
        a, b = lo + round(i * step), lo + round((i + 1) * step)
        sql = "COPY (SELECT * FROM %s WHERE l_orderkey >= %d AND l_orderkey < %d) TO STDOUT (FORMAT binary)" % (table, a, b)
        copies.append("psql -X -q -d '%s' -c '%s' > /dev/null & p%d=$!" % (PG_URL, sql, i))
    return ["sh", "-c", "; ".join(copies) + "; " + "; ".join("wait $p%d || exit 1" % i for i in range(w))]


def connect_args(scratch: str) -> list[str]:
    """--connect without the password and --password-file: a tcp:// cluster's workers read
    the password from that file (fastsync refuses to send it in the task graph); every
    variant connects this way, so they differ only in where the splits run."""
    from sqlalchemy.engine import make_url
    u = make_url(PG_URL)
    if u.password is None:
        return ["--connect", PG_URL]
    path = os.path.join(scratch, "pg-password")
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(str(u.password))
    return ["--connect", u.set(password=None).render_as_string(hide_password=False), "--password-file", path]


def import_cmd(connect: list[str], table: str, v: Variant, target: str, cluster: str | None, extra=()) -> list[str]:
    cmd = [sys.executable, "-m", "fastsync", "import", *connect, "--table", table,
           "--split-by", "l_orderkey", "-m", str(v.mappers), "--target-dir", target, "--delete-target-dir", "--as-parquetfile", *extra]
    if cluster:
        cmd += ["--cluster", cluster]
    if v.fixed:
        cmd += ["--where", FIXED_WHERE]
    return cmd


OWN = re.compile(r"\((\d+) splits\) in ([0-9.]+) s")


def run_one(v: Variant, cmd: list[str], target: str | None, expect: int, cluster_pids=()) -> dict:
    """One measured run: wall, peak PSS, CPU; the rows published checked."""
    load = os.getloadavg()[0]
    idle_mb = tree_pss_mb(cluster_pids) if cluster_pids else 0.0
    cpu0, ccpu0, db0 = children_cpu(), tree_cpu(cluster_pids), postgres_cpu()
    if target is None:
        with open(os.devnull, "w") as devnull:
            wall, peak, out = measure(cmd, stdout=devnull)
    else:
        wall, peak, out = measure(cmd, also=tuple(cluster_pids))
    cpu = children_cpu() - cpu0 + tree_cpu(cluster_pids) - ccpu0
    db = postgres_cpu() - db0
    r = dict(variant=v.name, kind=v.kind, mappers=v.mappers, fixed=v.fixed, seconds=round(wall, 3),
             rows=expect, rows_per_s=round(expect / wall), peak_mb=round(peak / 2**20),
             cpu_s=round(cpu, 2), db_cpu_s=round(db, 2), load1=round(load, 2))
    if cluster_pids:
        r["cluster_idle_mb"] = round(idle_mb)
    if target is not None:
        got = count_rows(target)
        remove(target)
        if got != expect:
            raise SystemExit("bench: %s wrote %d rows, expected %d" % (v.name, got, expect))
        own = OWN.search(out)
        if own:
            r["splits"], r["own_s"] = int(own.group(1)), float(own.group(2))
    return r


def rounds_of(variants: list, rounds: int, run) -> list[dict]:
    """Every variant once per round, in order, then in reverse: neighbours alternate who
    goes first. `run(variant, round)` returns its record."""
    results = []
    for i in range(rounds):
        order = variants if i % 2 == 0 else variants[::-1]
        for v in order:
            r = run(v, i)
            r["round"] = i
            results.append(r)
            print("round %d %-14s %7.2f s %9.0f rows/s %6d MB cpu %6.2f s db %6.2f s own %s load %.1f" % (
                i, r["variant"], r["seconds"], r["rows_per_s"], r["peak_mb"], r["cpu_s"], r["db_cpu_s"],
                r.get("own_s", "-"), r["load1"]), file=sys.stderr, flush=True)
    return results


def runs(table: str, rows: int, names: list[str], rounds: int, tcp_workers: int, scratch: str | None,
         worker_args: list[str]) -> list[dict]:
    variants = [parse_variant(n) for n in names]
    lo, hi, _ = key_bounds(table)
    fixed_rows = key_bounds(table, FIXED_WHERE)[2] if any(v.fixed for v in variants) else 0
    tmp = tempfile.mkdtemp(prefix="cluster-bench-", dir=scratch)
    cluster = None
    try:
        connect = connect_args(tmp)
        if any(v.kind == "tcp" for v in variants):
            cluster = ExternalCluster(tcp_workers, tmp, worker_args)
            # not counted: the workers import fastsync, pyarrow and the drivers at their first
            # task, which a cluster kept running has done before
            warm = Variant("warm-up", "tcp", tcp_workers, fixed=True)
            subprocess.run(import_cmd(connect, table, warm, os.path.join(tmp, "warm-up"), cluster.address),
                           check=True, capture_output=True)
            remove(os.path.join(tmp, "warm-up"))
            cpu0 = tree_cpu(cluster.pids)
            time.sleep(5)
            idle_cpu = (tree_cpu(cluster.pids) - cpu0) / 5      # what the cluster costs doing nothing

        def run(v: Variant, i: int) -> dict:
            expect = fixed_rows if v.fixed else rows
            if v.kind == "raw":
                return run_one(v, raw_cmd(table, v.mappers, lo, hi), None, rows)
            target = os.path.join(tmp, "%s-r%d" % (v.name, i))
            spec = {"m": None, "local": "local:%d" % v.mappers, "tcp": cluster.address if cluster else None}[v.kind]
            r = run_one(v, import_cmd(connect, table, v, target, spec), target, expect,
                        cluster.pids if v.kind == "tcp" else ())
            if v.kind == "tcp":
                r["cluster_idle_cpu_per_s"] = round(idle_cpu, 4)
            return r
        return rounds_of(variants, rounds, run)
    finally:
        if cluster:
            cluster.close()
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------- report

def summary(results: list[dict]) -> list[dict]:
    """Per variant: medians (and min, max) over the rounds."""
    out = []
    for name in dict.fromkeys(r["variant"] for r in results):
        rs = [r for r in results if r["variant"] == name]
        secs = [r["seconds"] for r in rs]
        med = statistics.median(secs)
        s = dict(variant=name, kind=rs[0]["kind"], mappers=rs[0]["mappers"], fixed=rs[0]["fixed"], runs=len(rs),
                 seconds=round(med, 3), seconds_min=min(secs), seconds_max=max(secs),
                 rows_per_s=round(rs[0]["rows"] / med), peak_mb=round(statistics.median(r["peak_mb"] for r in rs)),
                 cpu_s=round(statistics.median(r["cpu_s"] for r in rs), 2),
                 db_cpu_s=round(statistics.median(r["db_cpu_s"] for r in rs), 2),
                 load1=[r["load1"] for r in rs])
        if "own_s" in rs[0]:
            s["own_s"] = round(statistics.median(r["own_s"] for r in rs), 3)
        if "cluster_idle_mb" in rs[0]:
            s["cluster_idle_mb"] = round(statistics.median(r["cluster_idle_mb"] for r in rs))
        if "cluster_idle_cpu_per_s" in rs[0]:
            s["cluster_idle_cpu_per_s"] = rs[0]["cluster_idle_cpu_per_s"]
        out.append(s)
    return out


def ratios(results: list[dict]) -> list[dict]:
    """Cluster / no cluster wall time at the same -m (and fixedness), per round."""
    base = {(r["mappers"], r["fixed"], r["round"]): r for r in results if r["kind"] == "m"}
    out = []
    for name in dict.fromkeys(r["variant"] for r in results if r["kind"] in ("local", "tcp")):
        pairs = [(r, base[(r["mappers"], r["fixed"], r["round"])]) for r in results
                 if r["variant"] == name and (r["mappers"], r["fixed"], r["round"]) in base]
        if pairs:
            per = [round(r["seconds"] / b["seconds"], 3) for r, b in pairs]
            cpu = [round(r["cpu_s"] / max(0.01, b["cpu_s"]), 3) for r, b in pairs]
            out.append(dict(variant=name, against=pairs[0][1]["variant"], per_round=per,
                            median=round(statistics.median(per), 3), cpu_per_round=cpu,
                            cpu_median=round(statistics.median(cpu), 3)))
    return out


def model(rows: int, summ: list[dict], cores: int | None = None) -> list[dict]:
    """The model of bench/README.md with its terms from this run, predicted against measured
    time of `--cluster local:w -m w`:

        T(w) = T_fixed(w) + max(S / (w * r_worker), S / R_db(w), S * (c_worker + c_db) / cores)

    T_fixed(w): local<w>-fixed; R_db(w) = S / time of raw<w>; r_worker = S / (T(1) - T_fixed(1))
    from local1 (so w = 1 fits by construction); c_worker, c_db: CPU seconds per row of the
    command's tree and of the server in m1, less m1-fixed (the same per-row work as a worker's;
    a local<w> run's workers are forked by a fork server this process does not reap, so their
    CPU is not in its figures) (the cores term: workers and server share this machine's cores)."""
    by = {s["variant"]: s for s in summ}
    one, one_fixed = by.get("local1"), by.get("local1-fixed")
    m1, m1_fixed = by.get("m1"), by.get("m1-fixed")
    if not one or not one_fixed or not m1 or not m1_fixed:
        return []
    cores = cores or os.cpu_count() or 1
    r_worker = rows / max(1e-9, one["seconds"] - one_fixed["seconds"])
    c_worker = max(0.0, m1["cpu_s"] - m1_fixed["cpu_s"]) / rows
    c_db = max(0.0, m1["db_cpu_s"] - m1_fixed["db_cpu_s"]) / rows
    out = []
    for s in summ:
        w = s["mappers"]
        if s["kind"] != "local" or s["fixed"] or "local%d-fixed" % w not in by or "raw%d" % w not in by:
            continue
        terms = {"workers": rows / (w * r_worker), "database": by["raw%d" % w]["seconds"],
                 "cores": rows * (c_worker + c_db) / cores}
        bound = max(terms, key=terms.get)
        t_fixed = by["local%d-fixed" % w]["seconds"]
        predicted = t_fixed + terms[bound]
        out.append(dict(workers=w, r_worker=round(r_worker), r_db=round(rows / terms["database"]),
                        c_worker_us=round(1e6 * c_worker, 2), c_db_us=round(1e6 * c_db, 2), cores=cores,
                        t_fixed=round(t_fixed, 2), t_workers=round(terms["workers"], 2), t_db=round(terms["database"], 2),
                        t_cores=round(terms["cores"], 2), bound=bound, predicted_s=round(predicted, 2),
                        measured_s=s["seconds"], error=round(s["seconds"] / predicted - 1, 3)))
    return out


def report(rows: int, results: list[dict], cores: int | None = None) -> str:
    summ = summary(results)
    lines = ["| variant | -m | s, median (min – max) | rows/s | peak MB | CPU s | DB CPU s | own s | load |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for s in summ:
        peak = "%d" % s["peak_mb"] + (" (idle cluster %d)" % s["cluster_idle_mb"] if "cluster_idle_mb" in s else "")
        if "cluster_idle_cpu_per_s" in s:
            peak += ", idle cluster CPU %.3f s/s" % s["cluster_idle_cpu_per_s"]
        lines.append("| %s | %d | %.2f (%.2f – %.2f) | %s | %s | %.2f | %.2f | %s | %s |" % (
            s["variant"], s["mappers"], s["seconds"], s["seconds_min"], s["seconds_max"],
            "–" if s["fixed"] else format(s["rows_per_s"], ","),
            peak, s["cpu_s"], s["db_cpu_s"], s.get("own_s", "–"), " ".join("%.1f" % x for x in s["load1"])))
    rat = ratios(results)
    if rat:
        lines += ["", "| cluster | against | wall ratio per round | median | ≤ 1.10 | CPU ratio per round | median |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        lines += ["| %s | %s | %s | %.3f | %s | %s | %.3f |" % (
            r["variant"], r["against"], ", ".join("%.3f" % x for x in r["per_round"]), r["median"],
            "yes" if r["median"] <= 1.10 else "**no**", ", ".join("%.3f" % x for x in r.get("cpu_per_round", ())),
            r.get("cpu_median", float("nan"))) for r in rat]
    mod = model(rows, summ, cores)
    if mod:
        m0 = mod[0]
        lines += ["", "model: r_worker %s rows/s, c_worker %.2f µs/row, c_db %.2f µs/row, %d cores" % (
            format(m0["r_worker"], ","), m0["c_worker_us"], m0["c_db_us"], m0["cores"]), "",
            "| workers | T_fixed s | S/(w·r_worker) s | S/R_db(w) s (R_db rows/s) | S·(c_w+c_db)/cores s | bound "
            "| predicted s | measured s | error |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        lines += ["| %d | %.2f | %.2f | %.2f (%s) | %.2f | %s | %.2f | %.2f | %+.0f %% |" % (
            m["workers"], m["t_fixed"], m["t_workers"], m["t_db"], format(m["r_db"], ","), m["t_cores"], m["bound"],
            m["predicted_s"], m["measured_s"], 100 * m["error"]) for m in mod]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sf", type=float, default=1.0, help="TPC-H scale factor (1: 6 M rows)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", default="1,2,4", help="parallelism of the default variants (-m = workers)")
    ap.add_argument("--tcp-workers", type=int, default=2, help="workers of the external cluster (tcp variants)")
    ap.add_argument("--tcp-worker-args", default="--no-nanny",
                    help="more arguments of each `dask worker` (default: --no-nanny, as docs/transfers/cluster.md "
                         "recommends; '' keeps Dask's nanny)")
    ap.add_argument("--variants", help="comma-separated, e.g. m2,local2,tcp2 (default: raw, m, local per --workers, "
                                       "tcp at --tcp-workers, and each import's -fixed)")
    ap.add_argument("--no-fixed", action="store_true", help="leave out the -fixed variants of the default set")
    ap.add_argument("--scratch", help="directory for the output (default: the system's temporary directory)")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--table", help="the lineitem table to load and read (default: tpch_lineitem_sf<sf>, kept)")
    ap.add_argument("--report", metavar="JSON", help="print the tables of an earlier run's --json file, run nothing")
    args = ap.parse_args(argv)
    if args.report:
        with open(args.report) as f:
            saved = json.load(f)
        print("started %s, load average before %.2f %.2f %.2f, after %.2f %.2f %.2f"
              % (saved["started"], *saved["load_before"], *saved["load_after"]))
        print(report(saved["rows"], saved["results"], saved.get("cpus")))
        return 0
    names = (args.variants.split(",") if args.variants else
             default_variants([int(w) for w in args.workers.split(",")], args.tcp_workers, not args.no_fixed))
    for n in names:
        parse_variant(n)
    csv_path, rows = generate(args.sf)
    table = args.table or table_name(args.sf)
    load_postgres(csv_path, rows, table)
    load = [os.getloadavg()]
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    results = runs(table, rows, names, args.rounds, args.tcp_workers, args.scratch, args.tcp_worker_args.split())
    load.append(os.getloadavg())
    print("started %s, load average before %.2f %.2f %.2f, after %.2f %.2f %.2f" % (started, *load[0], *load[1]))
    print(report(rows, results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(sf=args.sf, table=table, rows=rows, started=started, rounds=args.rounds,
                           tcp_workers=args.tcp_workers, tcp_worker_args=args.tcp_worker_args,
                           load_before=load[0], load_after=load[1], cpus=os.cpu_count(),
                           results=results, summary=summary(results), ratios=ratios(results),
                           model=model(rows, summary(results))), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
