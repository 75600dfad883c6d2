"""`--cluster`: imports and exports as tasks on a Dask cluster, end to end through the CLI,
against the real PostgreSQL and MariaDB servers: a real `dask scheduler` and two real
`dask worker` processes (ports of 18700-18799; PYTHONPATH reaches this checkout) and
`local:2`. Covered: results equal those of the local split processes row for row; a worker
killed with kill -9 mid-split or mid-load (exactly once, nothing left over); passwords kept
out of the task graph and the worker logs; the dead scheduler; an incremental saved job."""
import contextlib
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from e2e_support import parquet_unless_told, poll
from test_export import engine_for, sql
from test_import import MYSQL_URL, PG_URL, fastsync

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
N = 6000
TABLE = "cl_items_%d" % os.getpid()
SLOW = "cl_slow_%d" % os.getpid()
PG_NOPW = PG_URL.replace("fastsync:fastsync@", "fastsync@")
PASSWORD = "fastsync"       # the shared servers' (no role can be made): the checks below are structural too


def free_port(exclude=()) -> int:
    for port in range(18700, 18800):
        if port in exclude:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 18700-18799")


class DaskCluster:
    """A `dask scheduler` and `dask worker` processes of this module's own."""

    def __init__(self, tmp: Path, workers: int = 2):
        self.tmp, self.port = tmp, free_port()
        self.address = "tcp://127.0.0.1:%d" % self.port
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        self.procs = [self._spawn("scheduler", ["scheduler", "--host", "127.0.0.1", "--port", str(self.port), "--no-dashboard"])]
        for i in range(workers):
            self.procs.append(self._spawn("worker%d" % i, ["worker", self.address, "--nworkers", "1", "--nthreads", "1",
                                                           "--no-dashboard", "--host", "127.0.0.1"]))
        from distributed import Client
        self.client = Client(self.address, timeout=60, set_as_default=False)
        self.client.wait_for_workers(workers, timeout=90)

    def _spawn(self, name, args):
        with open(self.tmp / ("%s.log" % name), "wb") as log:
            # a session of its own: the worker processes its nanny spawned go with it (killpg)
            # (in a directory of their own: a relative path reaching them would fail)
            return subprocess.Popen([str(BIN / "dask"), *args], stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                    start_new_session=True, cwd=self.tmp)

    def logs(self) -> str:
        return "".join((self.tmp / n).read_text(errors="replace") for n in os.listdir(self.tmp) if n.endswith(".log"))

    def worker_logs(self) -> str:
        return "".join((self.tmp / n).read_text(errors="replace") for n in os.listdir(self.tmp) if n.startswith("worker"))

    def ready(self, n: int = 2) -> None:
        self.client.wait_for_workers(n, timeout=90)

    def running(self, prefix: str) -> dict:
        """{key: worker address} of the tasks whose key starts with `prefix`, being processed."""
        return {k: w for w, keys in self.client.processing().items() for k in keys if str(k).startswith(prefix)}

    def kill_worker(self, address: str) -> int:
        pid = self.client.run(os.getpid, workers=[address])[address]
        os.kill(pid, signal.SIGKILL)
        return pid

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close(timeout=5)
        for p in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    c = DaskCluster(tmp_path_factory.mktemp("dask"))
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def password_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("pw") / "password"
    path.write_text(PASSWORD + "\n")
    path.chmod(0o600)
    return path


def make_table(url, name, n=N):
    sql(url, "DROP TABLE IF EXISTS %s" % name,
        "CREATE TABLE %s (id INTEGER PRIMARY KEY, name VARCHAR(40), price NUMERIC(12, 2))" % name)
    engine = engine_for(url)
    try:
        with engine.begin() as conn:
            t = sa.Table(name, sa.MetaData(), autoload_with=conn)
            conn.execute(t.insert(), [{"id": i, "name": None if i % 97 == 0 else "n%d" % i, "price": "%d.%02d" % (i, i % 100)}
                                      for i in range(n)])
    finally:
        engine.dispose()


@pytest.fixture(scope="module", autouse=True)
def tables():
    make_table(PG_URL, TABLE)
    make_table(MYSQL_URL, TABLE)
    make_table(PG_URL, SLOW, 5000)
    yield
    for url in (PG_URL, MYSQL_URL):
        sql(url, "DROP TABLE IF EXISTS %s" % TABLE, "DROP TABLE IF EXISTS %s_copy" % TABLE)
    sql(PG_URL, "DROP TABLE IF EXISTS %s" % SLOW, "DROP TABLE IF EXISTS %s_target" % SLOW,
        "DROP FUNCTION IF EXISTS %s_slow()" % SLOW)


def ok(out):
    assert out.returncode == 0, out.stderr
    return out


def fastsync_in(cwd, *args):
    """`fastsync ARGS` run in `cwd` (relative paths: the workers' working directory is not it)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "fastsync", *parquet_unless_told(args)], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env=env)


def rows_of(path):
    return pq.read_table(path).sort_by("id").to_pylist()


def parts(path):
    return sorted(os.listdir(path))


def test_import_tcp_equals_local_processes(dask_cluster, password_file, tmp_path):
    ok(fastsync("import", "--connect", PG_URL, "--table", TABLE, "-m", 2, "--target-dir", tmp_path / "local"))
    out = ok(fastsync_in(tmp_path, "import", "--connect", PG_NOPW, "--password-file", password_file, "--table", TABLE,
                         "-m", 3, "--target-dir", "dask", "--cluster", dask_cluster.address))
    assert "imported %d rows" % N in out.stdout
    assert parts(tmp_path / "dask") == ["_SUCCESS", "part-m-00000.parquet", "part-m-00001.parquet", "part-m-00002.parquet"]
    assert rows_of(tmp_path / "dask") == rows_of(tmp_path / "local")
    # the files back into PostgreSQL, loaded by the workers, moved in one transaction
    sql(PG_URL, "DROP TABLE IF EXISTS %s_copy" % TABLE, "CREATE TABLE %s_copy (LIKE %s)" % (TABLE, TABLE))
    out = ok(fastsync_in(tmp_path, "export", "--connect", PG_NOPW, "--password-file", password_file, "--table",
                         TABLE + "_copy", "--export-dir", "dask", "--cluster", dask_cluster.address))
    assert "exported %d rows" % N in out.stdout
    assert sql(PG_URL, "SELECT count(*) FROM (SELECT * FROM %s EXCEPT SELECT * FROM %s_copy) d" % (TABLE, TABLE))[0][0] == 0
    assert sql(PG_URL, "SELECT count(*) FROM %s_copy" % TABLE)[0][0] == N
    assert sql(PG_URL, "SELECT count(*) FROM pg_tables WHERE tablename LIKE '%s_copy_cstage_%%'" % TABLE)[0][0] == 0


def test_import_mariadb_local_cluster(tmp_path):
    """local:2: a LocalCluster of the run's own; the password reaches its workers through
    their environment (the tasks' URL has none: the import could not connect otherwise)."""
    ok(fastsync("import", "--connect", MYSQL_URL, "--table", TABLE, "-m", 2, "--target-dir", tmp_path / "local"))
    ok(fastsync("import", "--connect", MYSQL_URL, "--table", TABLE, "-m", 2, "--target-dir", tmp_path / "dask",
                "--cluster", "local:2"))
    assert parts(tmp_path / "dask") == ["_SUCCESS", "part-m-00000.parquet", "part-m-00001.parquet"]
    assert rows_of(tmp_path / "dask") == rows_of(tmp_path / "local")


def slow_query(per_row=0.002):
    """Rows 1000.. sleep per_row each (planning samples rows 0..999 and is given the bounds)."""
    return ("SELECT id, name, price FROM %s WHERE $CONDITIONS AND (id < 1000 OR pg_sleep(%s)::text IS NOT NULL)"
            % (SLOW, per_row))


def test_worker_killed_mid_split(dask_cluster, password_file, tmp_path):
    """kill -9 of the worker running a split: Dask gives the split to the other worker; every
    row is in the output exactly once and no attempt file is left."""
    dask_cluster.ready()
    target = tmp_path / "out"
    args = ["import", "--connect", PG_NOPW, "--password-file", password_file, "--query", slow_query(), "--split-by", "id",
            "--boundary-query", "SELECT 0, 4999", "-m", 2, "--fetch-size", 100, "--target-dir", target,
            "--cluster", dask_cluster.address, "--no-fast-path"]     # (binary COPY reads 1 MiB at a time: all of it)
    result = {}
    run = threading.Thread(target=lambda: result.update(out=fastsync(*args)))
    run.start()
    try:
        # both splits have written their first batch: each attempt's file is there
        def attempts():
            return list(tmp_path.glob(".out.tmp-*/part-m-*.attempt-*"))
        found = poll(lambda: attempts() if len(attempts()) == 2 or "out" in result else None, timeout=60,
                     message="two attempt files")
        assert "out" not in result, result["out"].stderr
        tmp = found[0].parent
        key, worker = next((k, w) for k, w in dask_cluster.running("fastsync-import-").items() if k.endswith("00001"))
        dask_cluster.kill_worker(worker)
        # the rerun makes a third attempt file, beside the killed one's
        poll(lambda: len(list(tmp.glob("*.attempt-*"))) >= 3 or not tmp.exists(), timeout=60,
             message="the rerun's attempt file")
    finally:
        run.join(120)
    out = ok(result["out"])
    assert "imported 5000 rows" in out.stdout
    assert parts(target) == ["_SUCCESS", "part-m-00000.parquet", "part-m-00001.parquet"]
    assert [r["id"] for r in rows_of(target)] == list(range(5000))
    assert not list(tmp_path.glob(".out.tmp-*"))


def test_bad_input_fails_at_once(dask_cluster, password_file, tmp_path):
    """A split that fails (here a division by zero in row 2500) is retried by --retries,
    not by Dask: one error line, no output."""
    dask_cluster.ready()
    q = "SELECT id, 1 / (id - 2500) AS x FROM %s WHERE $CONDITIONS" % SLOW
    out = fastsync("import", "--connect", PG_NOPW, "--password-file", password_file, "--query", q, "--split-by", "id",
                   "--boundary-query", "SELECT 0, 4999", "-m", 2, "--target-dir", tmp_path / "out",
                   "--cluster", dask_cluster.address)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastsync: error: split 1 failed after 2 attempt(s): ")
    assert "division by zero" in lines[0]
    assert os.listdir(tmp_path) == []


def slow_target(tmp_path, bad_first=False):
    """(target table, directory of 2 files of 2000 rows): the staging tables copy the
    target's defaults, and one that sleeps during the loads (COPY), not during the move
    (INSERT), makes each load last ~2 s. `bad_first`: the first file's last name is too long."""
    target = SLOW + "_target"
    sql(PG_URL, "DROP TABLE IF EXISTS %s" % target,
        "CREATE OR REPLACE FUNCTION %s_slow() RETURNS int LANGUAGE plpgsql VOLATILE AS $$ BEGIN "
        "IF current_query() LIKE 'COPY%%' THEN PERFORM pg_sleep(0.001); END IF; RETURN 0; END $$" % SLOW,
        "CREATE TABLE %s (id INTEGER PRIMARY KEY, name VARCHAR(8), slow INTEGER DEFAULT %s_slow())" % (target, SLOW))
    files = tmp_path / "files"
    files.mkdir()
    for i in range(2):
        ids = list(range(i * 2000, (i + 1) * 2000))
        names = ["r%d" % j for j in ids]
        if bad_first and i == 0:
            names[-1] = "much too long"
        pq.write_table(pa.table({"id": ids, "name": names}), files / ("part-m-%05d.parquet" % i))
    return target, files


def staging_tables(target):
    return sql(PG_URL, "SELECT count(*) FROM pg_tables WHERE tablename LIKE '%s_cstage_%%'" % target)[0][0]


def test_failed_load_leaves_nothing(dask_cluster, password_file, tmp_path):
    """A file that can't be loaded fails the export at once, with its message; the other
    file's load, running on the other worker, is waited for, then every staging table dropped."""
    dask_cluster.ready()
    target, files = slow_target(tmp_path, bad_first=True)
    out = fastsync("export", "--connect", PG_NOPW, "--password-file", password_file, "--table", target,
                   "--export-dir", files, "--cluster", dask_cluster.address)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastsync: error: export into %s failed: part-m-00000.parquet" % target)
    assert sql(PG_URL, "SELECT count(*) FROM %s" % target)[0][0] == 0
    assert staging_tables(target) == 0


def test_worker_killed_mid_load(dask_cluster, password_file, tmp_path):
    """kill -9 of a worker loading a file: its attempt's staging table is an orphan the
    client drops; the target changes once, by exactly the files' rows."""
    dask_cluster.ready()
    target, files = slow_target(tmp_path)
    seen, stop = set(), threading.Event()

    def watch():      # the target's row count, all along: 0, then all of them
        engine = engine_for(PG_URL)
        with engine.connect() as conn:
            while not stop.is_set():
                seen.add(conn.execute(sa.text("SELECT count(*) FROM %s" % target)).scalar())
                conn.commit()
                time.sleep(0.02)
        engine.dispose()
    result = {}
    run = threading.Thread(target=lambda: result.update(out=fastsync(
        "export", "--connect", PG_NOPW, "--password-file", password_file, "--table", target, "--export-dir", files,
        "--cluster", dask_cluster.address)))
    watcher = threading.Thread(target=watch)
    watcher.start()
    run.start()
    try:
        running = poll(lambda: dask_cluster.running("fastsync-export-") if staging_tables(target) == 2 else None,
                       timeout=60, message="two staging tables being loaded")
        dask_cluster.kill_worker(next(iter(running.values())))
    finally:
        run.join(120)
        stop.set()
        watcher.join()
    out = ok(result["out"])
    assert "exported 4000 rows" in out.stdout
    assert sql(PG_URL, "SELECT count(*), count(DISTINCT id), min(id), max(id) FROM %s" % target)[0] == (4000, 4000, 0, 3999)
    assert seen <= {0, 4000}
    assert staging_tables(target) == 0


def test_password_not_in_task_graph_nor_worker_logs(dask_cluster, password_file, tmp_path):
    """The scheduler's run specs of a running import carry the URL without a password (and
    where the workers read it: the file); the worker logs don't show it."""
    from fastsync.transfer.cluster import Secret
    dask_cluster.ready()
    result = {}
    run = threading.Thread(target=lambda: result.update(out=fastsync(
        "import", "--connect", PG_NOPW, "--password-file", password_file, "--query", slow_query(0.0005), "--split-by", "id",
        "--boundary-query", "SELECT 0, 4999", "-m", 2, "--target-dir", tmp_path / "out", "--cluster", dask_cluster.address)))
    run.start()
    try:
        import cloudpickle
        cloudpickle.register_pickle_by_value(sys.modules[__name__])    # the scheduler can't import this module

        def specs(dask_scheduler):
            return pickle.dumps([ts.run_spec for k, ts in dask_scheduler.tasks.items()
                                 if str(k).startswith("fastsync-import-")])
        dumped = poll(lambda: (lambda b: b if len(pickle.loads(b)) == 2 else None)(
            dask_cluster.client.run_on_scheduler(specs)), timeout=60, message="the import's tasks on the scheduler")
    finally:
        run.join(120)
    ok(result["out"])
    urls, secrets = [], []

    def walk(obj, depth=0):
        if depth > 12:
            return
        if isinstance(obj, sa.engine.URL):
            urls.append(obj)
        elif isinstance(obj, Secret):
            secrets.append(obj)
        elif isinstance(obj, (list, tuple, set)):
            for o in obj:
                walk(o, depth + 1)
        elif isinstance(obj, dict):
            for o in obj.values():
                walk(o, depth + 1)
        elif hasattr(obj, "__dict__") or hasattr(obj, "__slots__"):
            for name in list(getattr(obj, "__dict__", {})) + list(getattr(obj, "__slots__", ())):
                walk(getattr(obj, name, None), depth + 1)
    walk(pickle.loads(dumped))
    assert len(urls) == 2 and all(u.password is None for u in urls), urls
    assert secrets == [Secret("file", str(password_file))] * 2
    assert b":" + PASSWORD.encode() + b"@" not in dumped
    logs = dask_cluster.logs()
    assert "Register worker" in logs          # these are the cluster's logs
    assert ":%s@" % PASSWORD not in logs and "password" not in logs.lower()


def test_password_given_otherwise_refused_with_tcp(dask_cluster, tmp_path):
    for args, env, how in ((["--connect", PG_URL], {}, "the password in --connect's URL"),
                           (["--connect", PG_NOPW, "--password", PASSWORD], {}, "--password"),
                           (["--connect", PG_NOPW], {"FASTSYNC_PASSWORD": PASSWORD}, "FASTSYNC_PASSWORD")):
        out = fastsync("import", *args, "--table", TABLE, "--target-dir", tmp_path / "out", "--cluster", dask_cluster.address,
                       env=env)
        assert out.returncode == 2
        assert out.stderr.strip().splitlines() == [
            "fastsync: error: --cluster %s: workers of a tcp:// cluster read the password from --password-file (the same "
            "path on every worker), never from the task graph; %s is refused" % (dask_cluster.address, how)]
    assert os.listdir(tmp_path) == []


def test_no_scheduler_and_bad_address(dask_cluster, password_file, tmp_path):
    port = free_port(exclude={dask_cluster.port})
    out = fastsync("import", "--connect", PG_NOPW, "--password-file", password_file, "--table", TABLE,
                   "--target-dir", tmp_path / "out",
                   "--cluster", "tcp://127.0.0.1:%d" % port)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastsync: error: --cluster tcp://127.0.0.1:%d: no Dask scheduler" % port)
    assert os.listdir(tmp_path) == []
    out = fastsync("export", "--connect", PG_URL, "--table", TABLE, "--export-dir", tmp_path, "--cluster", "bogus")
    assert out.returncode == 2 and "argument --cluster: expected tcp://HOST:PORT" in out.stderr


def test_scheduler_killed_mid_import(password_file, tmp_path):
    """The scheduler (one of this test's own) killed while the splits run: one error line
    once the client gives up reconnecting, nothing published."""
    (tmp_path / "cluster").mkdir()
    own = DaskCluster(tmp_path / "cluster", workers=1)
    try:
        result = {}
        run = threading.Thread(target=lambda: result.update(out=fastsync(
            "import", "--connect", PG_NOPW, "--password-file", password_file, "--query", slow_query(), "--split-by", "id",
            "--boundary-query", "SELECT 0, 4999", "-m", 2, "--target-dir", tmp_path / "out", "--cluster", own.address)))
        run.start()
        try:
            poll(lambda: own.running("fastsync-import-"), timeout=60, message="a split running")
            os.killpg(own.procs[0].pid, signal.SIGKILL)
        finally:
            run.join(120)
    finally:
        own.close()
    out = result["out"]
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastsync: error: --cluster %s: split " % own.address), lines
    assert "scheduler-connection-lost" in lines[0]
    assert sorted(os.listdir(tmp_path)) == ["cluster"]


@pytest.mark.slow
def test_incremental_saved_job_twice(tmp_path, password_file):
    """A saved incremental job with --cluster local:2, run twice: each run imports only the
    new rows; the target has every row once."""
    name = "cl_inc_%d" % os.getpid()
    make_table(PG_URL, name, 3000)
    meta = "sqlite:///%s" % (tmp_path / "meta.db")
    try:
        ok(fastsync("job", "--create", "inc", "--meta-connect", meta, "--", "import", "--connect", PG_NOPW,
                    "--password-file", password_file, "--table", name, "-m", 2, "--target-dir", tmp_path / "out",
                    "--incremental", "append", "--check-column", "id", "--cluster", "local:2"))
        assert "imported 3000 rows" in ok(fastsync("job", "--exec", "inc", "--meta-connect", meta)).stdout
        sql(PG_URL, "INSERT INTO %s SELECT g, 'new', 1 FROM generate_series(3000, 3999) g" % name)
        assert "imported 1000 rows" in ok(fastsync("job", "--exec", "inc", "--meta-connect", meta)).stdout
        assert [r["id"] for r in rows_of(tmp_path / "out")] == list(range(4000))
        assert not [n for n in os.listdir(tmp_path / "out") if ".attempt-" in n]
    finally:
        sql(PG_URL, "DROP TABLE IF EXISTS %s" % name)


def test_progress_line_gathers_the_workers_rows(dask_cluster, password_file, tmp_path, capsys):
    """The status line (shown on a terminal; asked for here) counts the rows the workers
    report while their splits run, and each split's state."""
    import re

    from fastsync.transfer.connect import build_url, read_password_file
    from fastsync.transfer.importer import ImportJob, run_import
    dask_cluster.ready()
    job = ImportJob(url=build_url(PG_NOPW, password=read_password_file(str(password_file))), table="query",
                    query=slow_query(0.001), split_by="id", boundary_query="SELECT 0, 4999", mappers=2, fetch_size=100,
                    target_dir=str(tmp_path / "out"), fast_path=False, cluster=dask_cluster.address,
                    password_file=str(password_file))
    assert run_import(job, progress=True)["rows"] == 5000
    lines = [x.strip() for x in capsys.readouterr().err.replace("\r", "\n").splitlines() if x.strip()]
    assert lines[-1].startswith("5000 rows 100%") and lines[-1].endswith("[splits 0:done 1:done]")
    running = [x for x in lines if re.search(r"\[splits .*\b[01]:\d+", x)]
    assert running, lines        # a split's rows while it ran
    assert all(int(x.split()[0]) <= 5000 for x in lines)
