"""The shared job metastore in ZooKeeper (`job --meta-connect zk://host:port/path`): saved jobs
as znodes, a run of a job holding a ZooKeeper lock (a second run fails at once naming the
holder, or waits with --wait; a kill -9'ed run's lock goes with its session), the incremental
--last-value advanced by a compare-and-set after the output is published. The shared ZooKeeper,
real `python -m fastsync job` processes, SQLite and PostgreSQL source tables.

A PostgreSQL run is held mid-split by a brake: the job imports a view whose rows pass a
function that sleeps while the brake table has a row (the max() that plans the run passes)."""
from __future__ import annotations

import collections
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import types
import uuid

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from e2e_support import free_port, poll

PG_URL = os.environ.get("FASTSYNC_TEST_PG_URL", "postgresql://fastsync:fastsync@127.0.0.1:5432/fastsync")


def fastsync(*args, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastsync", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


class Run:
    """A `fastsync job ...` process in the background, its output in files (read while it runs)."""

    def __init__(self, tmp_path, *args):
        tag = uuid.uuid4().hex[:6]
        self.out, self.err = tmp_path / ("run-%s.out" % tag), tmp_path / ("run-%s.err" % tag)
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "fastsync", "job", *map(str, args)], stdout=out,
                                         stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid = self.proc.pid

    def stderr(self) -> str:
        return self.err.read_text()

    def finish(self, timeout: float = 120) -> tuple[int, str, str]:
        rc = self.proc.wait(timeout)
        return rc, self.out.read_text(), self.err.read_text()

    def kill_group(self) -> None:
        """It and the split processes it forked."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(30)


def ids(target) -> list[int]:
    return sorted(pq.read_table(str(target)).column("id").to_pylist()) if target.exists() else []


def exactly_once(got: list[int], want: range) -> str:
    """'' if `got` holds every value of `want` once and nothing else, else what is wrong."""
    counts = collections.Counter(got)
    missing = [v for v in want if v not in counts]
    twice = sorted(v for v, n in counts.items() if n > 1)
    extra = sorted(set(counts) - set(want))
    return "" if not (missing or twice or extra) else "missing %s, twice %s, extra %s" % (missing[:10], twice[:10], extra[:10])


def last_value(zk, name: str) -> str:
    """The job's --last-value as its znode holds it ('' if none)."""
    argv = json.loads(zk.client.get("%s/jobs/%s" % (zk.base, name))[0])["argv"]
    return argv[argv.index("--last-value") + 1] if "--last-value" in argv else ""


@pytest.fixture
def meta(zk):
    return "zk://%s%s" % (zk.hosts, zk.base)


@pytest.fixture
def pg(tmp_path):
    """A PostgreSQL table and the view a job imports; .brake(True) holds a run's split (not its
    planning) until .brake(False); .insert(lo, hi) adds rows lo..hi."""
    t = "zkm_%d_%s" % (os.getpid(), uuid.uuid4().hex[:6])
    engine = sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://"))

    def run(*statements):
        with engine.begin() as conn:
            for s in statements:
                conn.exec_driver_sql(s.format(t=t))
    run("CREATE TABLE {t} (id integer PRIMARY KEY, v text)", "CREATE TABLE {t}_brake (on_ integer)",
        "CREATE FUNCTION {t}_slow(id integer) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$ BEGIN "
        "WHILE strpos(lower(current_query()), 'max(') = 0 AND EXISTS (SELECT 1 FROM {t}_brake) "
        "LOOP PERFORM pg_sleep(0.05); END LOOP; RETURN true; END $$",
        "CREATE VIEW {t}_v AS SELECT id, v FROM {t} WHERE {t}_slow(id)")
    url = sa.engine.make_url(PG_URL)
    password = tmp_path / "pg-password"             # a job stores no password: a file it names
    password.write_text(url.password + "\n")
    try:
        yield types.SimpleNamespace(
            view=t + "_v",
            brake=lambda on: run("INSERT INTO {t}_brake VALUES (1)" if on else "DELETE FROM {t}_brake"),
            insert=lambda lo, hi: run("INSERT INTO {t} SELECT g, 'v' || g FROM generate_series(%d, %d) g" % (lo, hi)),
            argv=["--connect", "jdbc:postgresql://%s:%d/%s" % (url.host, url.port or 5432, url.database),
                  "--username", url.username, "--password-file", password])
    finally:
        run("DELETE FROM {t}_brake",
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%%{t}_v%%' AND pid <> pg_backend_pid()")
        run("DROP VIEW IF EXISTS {t}_v", "DROP TABLE IF EXISTS {t}", "DROP TABLE IF EXISTS {t}_brake",
            "DROP FUNCTION IF EXISTS {t}_slow(integer)")
        engine.dispose()


def create_pg_job(meta, pg, name, target):
    out = fastsync("job", "--meta-connect", meta, "--create", name, "--", "import", *pg.argv, "--table", pg.view,
                   "-m", 1, "--target-dir", target, "--incremental", "append", "--check-column", "id", "--as-parquetfile")
    assert out.returncode == 0, out.stderr


def sqlite_source(path, lo, hi):
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE IF NOT EXISTS ev (id INTEGER PRIMARY KEY, v TEXT)")
    con.executemany("INSERT INTO ev VALUES (?, ?)", [(i, "v%d" % i) for i in range(lo, hi + 1)])
    con.commit()
    con.close()


def test_create_list_show_delete(zk, meta, tmp_path):
    job = ["import", "--connect", "jdbc:sqlite:%s" % (tmp_path / "s.db"), "--table", "ev", "--target-dir", tmp_path / "out"]
    for name in ("nightly", "hourly"):
        out = fastsync("job", "--meta-connect", meta, "--create", name, "--", *job)
        assert out.returncode == 0 and out.stdout == "saved job %s\n" % name, out.stderr
    assert fastsync("job", "--meta-connect", meta, "--list").stdout.split() == ["hourly", "nightly"]
    assert fastsync("job", "--meta-connect", meta, "--show", "nightly").stdout == "fastsync %s\n" % " ".join(map(str, job))
    # one znode per job under <path>/jobs, its argv as JSON
    data, _ = zk.client.get(zk.base + "/jobs/nightly")
    assert json.loads(data)["argv"] == list(map(str, job))

    out = fastsync("job", "--meta-connect", meta, "--create", "nightly", "--", *job, "-m", 1)
    assert out.returncode == 1 and out.stderr == "fastsync: error: job --create nightly: a job of that name exists (--delete it first)\n"
    assert json.loads(zk.client.get(zk.base + "/jobs/nightly")[0])["argv"] == list(map(str, job))
    out = fastsync("job", "--meta-connect", meta, "--create", "pw", "--", *job, "--password", "hunter2")
    assert out.returncode == 1 and "use --password-file" in out.stderr and "hunter2" not in out.stderr
    assert sorted(zk.client.get_children(zk.base + "/jobs")) == ["hourly", "nightly"]

    assert fastsync("job", "--meta-connect", meta, "--delete", "nightly").returncode == 0
    assert zk.client.get_children(zk.base + "/jobs") == ["hourly"]


def cli(capsys, *args) -> tuple[int, str]:
    """`fastsync ARGS` in this process (the same main() as python -m fastsync): (exit code, stderr)."""
    from fastsync.cli import main
    capsys.readouterr()
    rc = main(list(map(str, args)))
    return rc, capsys.readouterr().err


def test_errors_missing_job_bad_name_bad_url_dead_zookeeper(zk, meta, tmp_path, capsys):
    job = ["import", "--connect", "jdbc:sqlite:%s" % (tmp_path / "s.db"), "--table", "ev", "--target-dir", tmp_path / "out"]
    for action in ("--show", "--delete", "--exec"):
        assert cli(capsys, "job", "--meta-connect", meta, action, "nope") == (1, "fastsync: error: no saved job named 'nope'\n")
    assert cli(capsys, "job", "--meta-connect", meta, "--create", "a/b", "--", *job) == (
        1, "fastsync: error: job name 'a/b': not a ZooKeeper node name (no '/' or control characters, not . or ..)\n")
    assert zk.client.get_children(zk.base) == []
    for url, problem in (("zk://nohost/jobs", "'nohost' is not host:port (expected zk://host:port[,host:port...][/path])"),
                         ("zk:///jobs", "no host:port (expected zk://host:port[,host:port...][/path])"),
                         (meta + "?wait=3", "unknown parameter 'wait' (known: session-timeout, connect-timeout)"),
                         (meta + "?session-timeout=x", "session-timeout=x: expected a number of seconds above 0")):
        assert cli(capsys, "job", "--meta-connect", url, "--list") == (1, "fastsync: error: --meta-connect %s: %s\n" % (url, problem))

    port = free_port()           # nothing listens there: the bounded wait, then one line
    url = "zk://127.0.0.1:%d/jobs?connect-timeout=2" % port
    out = fastsync("job", "--meta-connect", url, "--create", "j", "--", *job)
    assert out.returncode == 1
    assert out.stderr == "fastsync: error: --meta-connect %s: ZooKeeper at 127.0.0.1:%d unreachable (no answer within 2 s)\n" % (url, port)


@pytest.mark.slow
def test_two_concurrent_runs_one_runs_the_other_fails_at_once_or_waits(zk, meta, pg, tmp_path):
    target = tmp_path / "out"
    create_pg_job(meta, pg, "inc", target)
    pg.insert(1, 50)
    pg.brake(True)
    a, b = Run(tmp_path, "--meta-connect", meta, "--exec", "inc"), Run(tmp_path, "--meta-connect", meta, "--exec", "inc")
    # the one that finds the lock taken exits while the other is held by the brake
    loser = poll(lambda: [r for r in (a, b) if r.proc.poll() is not None], 60, 0.05, "neither run exited")
    assert len(loser) == 1
    loser, winner = loser[0], (b if loser[0] is a else a)
    rc, out, err = loser.finish()
    assert rc == 1 and out == "", out
    assert re.fullmatch(r"fastsync: error: job --exec inc: already running \(pid %d on \S+ since [-\d: ]+ UTC holds its "
                        r"lock in ZooKeeper\); use --wait to wait for it\n" % winner.pid, err), err
    assert winner.proc.poll() is None and not target.exists()

    poll(lambda: any(p.name.startswith(".out.tmp-") for p in tmp_path.iterdir()), 60, 0.05, "the run never started its split")
    pg.insert(51, 60)            # after the winner planned its run (up to 50): the waiting run's
    waiting = Run(tmp_path, "--meta-connect", meta, "--exec", "inc", "--wait")
    poll(lambda: "waiting for the run of pid %d" % winner.pid in waiting.stderr(), 60, 0.05, "no waiting line")
    assert waiting.proc.poll() is None
    pg.brake(False)
    rc, out, err = winner.finish()
    assert rc == 0 and "imported 50 rows" in out, err
    rc, out, err = waiting.finish()
    assert rc == 0 and "imported 10 rows" in out, err
    assert not exactly_once(ids(target), range(1, 61)), exactly_once(ids(target), range(1, 61))
    assert last_value(zk, "inc") == "60"


@pytest.mark.slow
def test_n_runs_with_rows_added_between_import_every_row_once(zk, meta, tmp_path):
    """Three rounds of two concurrent --wait runs (SQLite source), rows added before each: every
    run reads the last-value inside the lock, so the second of a round imports nothing."""
    db, target = tmp_path / "s.db", tmp_path / "out"
    sqlite_source(db, 1, 0)
    out = fastsync("job", "--meta-connect", meta, "--create", "ev", "--", "import", "--connect", "jdbc:sqlite:%s" % db,
                   "--table", "ev", "-m", 1, "--target-dir", target, "--incremental", "append", "--check-column", "id",
                   "--as-parquetfile")
    assert out.returncode == 0, out.stderr
    top = 0
    for n in (7, 11, 5):
        sqlite_source(db, top + 1, top + n)
        top += n
        runs = [Run(tmp_path, "--meta-connect", meta, "--exec", "ev", "--wait") for _ in range(2)]
        results = [r.finish() for r in runs]
        assert [rc for rc, _, _ in results] == [0, 0], [err for _, _, err in results]
        counts = sorted(int(re.search(r"imported (\d+) rows", o).group(1)) for _, o, _ in results)
        assert counts == [0, n], results
        assert last_value(zk, "ev") == str(top)
    assert not exactly_once(ids(target), range(1, top + 1)), exactly_once(ids(target), range(1, top + 1))


def test_a_job_changed_during_a_run_is_not_overwritten(zk, meta, pg, tmp_path):
    """The last-value is set only if the job's znode is still the version the run read."""
    target = tmp_path / "out"
    create_pg_job(meta, pg, "inc", target)
    pg.insert(1, 20)
    pg.brake(True)
    run = Run(tmp_path, "--meta-connect", meta, "--exec", "inc")
    poll(lambda: any(p.name.startswith(".out.tmp-") for p in tmp_path.iterdir()), 60, 0.05, "the run never started its split")
    path = zk.base + "/jobs/inc"
    job = json.loads(zk.client.get(path)[0])
    job["argv"] += ["--last-value", "7"]          # another writer, meanwhile
    zk.client.set(path, json.dumps(job).encode())
    pg.brake(False)
    rc, out, err = run.finish()
    assert rc == 1 and "imported 20 rows" in out
    assert err == ("fastsync: error: job --exec inc: the job changed in ZooKeeper during this run (its znode is no "
                   "longer version 0): left as it is, this run's --last-value 20 not saved\n"), err
    assert json.loads(zk.client.get(path)[0]) == job


@pytest.mark.slow
def test_a_killed_run_releases_the_lock_when_its_session_expires(zk, meta, pg, tmp_path):
    """kill -9 of a run mid-split: its lock stays until its session expires (10 s by default):
    a re-run at once fails naming it, one with --wait runs then; no row is lost or doubled."""
    target = tmp_path / "out"
    create_pg_job(meta, pg, "inc", target)
    pg.insert(1, 40)
    rc, out, err = Run(tmp_path, "--meta-connect", meta, "--exec", "inc").finish()
    assert rc == 0 and "imported 40 rows" in out, err
    pg.insert(41, 80)
    pg.brake(True)
    killed = Run(tmp_path, "--meta-connect", meta, "--exec", "inc")
    try:
        poll(lambda: any(p.name.startswith(".out.tmp-") for p in tmp_path.iterdir()), 60, 0.05, "the run never started its split")
        os.kill(killed.pid, signal.SIGKILL)
        assert killed.proc.wait(30) == -signal.SIGKILL
        out = fastsync("job", "--meta-connect", meta, "--exec", "inc")
        assert out.returncode == 1 and "already running (pid %d on " % killed.pid in out.stderr, out.stderr
        assert last_value(zk, "inc") == "40"
        pg.brake(False)
        rc, out, err = Run(tmp_path, "--meta-connect", meta, "--exec", "inc", "--wait").finish()
        assert rc == 0 and "imported 40 rows" in out, err
        assert "waiting for the run of pid %d" % killed.pid in err
    finally:
        killed.kill_group()        # its split process, orphaned by the kill
    assert not exactly_once(ids(target), range(1, 81)), exactly_once(ids(target), range(1, 81))
    assert last_value(zk, "inc") == "80"
    assert zk.client.get_children(zk.base + "/locks/inc") == []


@pytest.mark.slow
def test_a_run_stalled_past_its_session_loses_the_lock_and_publishes_nothing(zk, meta, pg, tmp_path):
    """A run stopped (SIGSTOP) longer than its session timeout loses its lock; another run takes
    it and advances the last-value; the stalled run, resumed, finds its lock gone before it
    publishes: it exits 1, its output is dropped and the value is not moved back, so every row
    is there once."""
    target = tmp_path / "out"
    create_pg_job(meta, pg, "inc", target)
    pg.insert(1, 30)
    pg.brake(True)
    stalled = Run(tmp_path, "--meta-connect", meta + "?session-timeout=3", "--exec", "inc")
    try:
        poll(lambda: any(p.name.startswith(".out.tmp-") for p in tmp_path.iterdir()), 60, 0.05, "the run never started its split")
        os.kill(stalled.pid, signal.SIGSTOP)
        poll(lambda: zk.client.get_children(zk.base + "/locks/inc") == [], 60, 0.2, "the stopped run's lock stayed")
        pg.insert(31, 35)
        pg.brake(False)
        rc, out, err = Run(tmp_path, "--meta-connect", meta, "--exec", "inc").finish()
        assert rc == 0 and "imported 35 rows" in out, err
        assert last_value(zk, "inc") == "35"
        os.kill(stalled.pid, signal.SIGCONT)
        rc, out, err = stalled.finish()
    finally:
        stalled.kill_group()
    assert rc == 1 and "imported" not in out, (out, err)
    assert err.splitlines()[-1] == (
        "fastsync: error: job --exec inc: this run's ZooKeeper session expired during the run and its lock went with "
        "it (another run may hold the job now): its output is not published, the target and the --last-value are "
        "left as they were"), err
    assert last_value(zk, "inc") == "35"
    assert collections.Counter(ids(target)) == collections.Counter(range(1, 36))
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.tmp-")], "the stalled run's parts were left"


@pytest.mark.slow
def test_a_run_over_an_ensemble_keeps_its_lock_when_the_leader_dies(zk_ensemble, pg, tmp_path):
    """zk://h1,h2,h3/path: the leader of a three-node ensemble killed mid-run; the run's client
    moves to a live node, its lock stays (a second run still fails naming it), and it saves the
    last-value at the end."""
    ens = zk_ensemble(3)
    meta = "zk://%s/fastsync" % ens.hosts
    target = tmp_path / "out"
    create_pg_job(meta, pg, "inc", target)
    pg.insert(1, 25)
    pg.brake(True)
    run = Run(tmp_path, "--meta-connect", meta, "--exec", "inc")
    poll(lambda: any(p.name.startswith(".out.tmp-") for p in tmp_path.iterdir()), 60, 0.05, "the run never started its split")
    leader = ens.leader()
    ens.kill(leader)
    ens.wait_serving(60, nodes=[i for i in range(3) if i != leader])
    out = fastsync("job", "--meta-connect", meta, "--exec", "inc")
    assert out.returncode == 1 and "already running (pid %d on " % run.pid in out.stderr, out.stderr
    pg.brake(False)
    rc, out, err = run.finish()
    assert rc == 0 and "imported 25 rows" in out, err
    assert "--last-value 25" in fastsync("job", "--meta-connect", meta, "--show", "inc").stdout
    assert not exactly_once(ids(target), range(1, 26)), exactly_once(ids(target), range(1, 26))
