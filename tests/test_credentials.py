"""Credentials and read positions, end to end through the CLI: a password in --connect is
masked in the process list (parent and split processes) and in every error, never saved in
a job, and the files holding positions or jobs are created owner-only (0600)."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time

import pytest

from e2e_support import parquet_unless_told, poll, write_config

PG = "fastsync:fastsync@127.0.0.1:5432/fastsync"


def fastsync(*args, env=None):
    return subprocess.run([sys.executable, "-m", "fastsync", *parquet_unless_told(args)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def one_line_error(out) -> str:
    line = out.stderr.strip()
    assert out.returncode != 0 and line.startswith("fastsync: error: ") and "\n" not in line, out.stderr
    return line


def command_lines_while_running(cmd: list[str]) -> tuple[subprocess.CompletedProcess, list[bytes], int]:
    """Run cmd, reading /proc/PID/cmdline of it and of its children until it exits: (result,
    the command lines seen from the first child on, how many came from children)."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen, from_children = [], 0
    try:
        deadline = time.monotonic() + 90
        while p.poll() is None and time.monotonic() < deadline:
            try:
                children = [int(c) for c in open("/proc/%d/task/%d/children" % (p.pid, p.pid)).read().split()]
            except OSError:
                break
            # the interpreter's start-up shows the original line until the CLI masks it; a
            # split process exists only once the CLI runs: look from then on
            if children or seen:
                for pid in [p.pid] + children:
                    try:
                        cmdline = open("/proc/%d/cmdline" % pid, "rb").read()
                    except OSError:
                        continue
                    if cmdline:              # empty while a process exits
                        seen.append(cmdline)
                        from_children += pid != p.pid
            time.sleep(0.02)
        out, err = p.communicate(timeout=60)
    finally:
        p.kill()
    return subprocess.CompletedProcess(cmd, p.returncode, out, err), seen, from_children


@pytest.mark.parametrize("connect,secret,masked", [
    ("postgresql://" + PG, b"fastsync:fastsync@", b"postgresql://fastsync:***@127.0.0.1"),
    ("jdbc:postgresql://127.0.0.1:5432/fastsync?user=fastsync&password=fastsync", b"password=fastsync",
     b"user=fastsync&password=***"),
])
def test_password_in_the_connect_url_is_hidden_from_the_process_list(tmp_path, connect, secret, masked):
    """The password (which equals the user name here, so it is checked by position) is in
    no command line of the import or of its split processes while they run."""
    cmd = [sys.executable, "-m", "fastsync", "import", "--connect", connect, "--query",
           "SELECT * FROM (SELECT x AS id, pg_sleep(0.002) AS s FROM generate_series(1, 1000) x) t WHERE $CONDITIONS",
           "--split-by", "id", "-m", "2", "--boundary-query", "SELECT 1, 1000", "--target-dir", str(tmp_path / "o")]
    out, seen, from_children = command_lines_while_running(cmd)
    assert out.returncode == 0, out.stderr
    assert from_children > 4 and len(seen) > 10, (from_children, seen[:3])
    assert not [c for c in seen if secret in c], [c for c in seen if secret in c][:2]
    assert all(masked in c for c in seen), seen[:2]


@pytest.mark.parametrize("connect", [
    "postgresql://fastsync:S3cret-x@127.0.0.1:1/fastsync",               # nothing listens on port 1
    "jdbc:postgresql://127.0.0.1:1/fastsync?user=fastsync&password=S3cret-x",
    "jdbc:mysql://fastsync:S3cret-x@127.0.0.1:1/fastsync",
    "postgresql://fastsync:S3cret-x@no-such-host.invalid/fastsync",
    "postgresql://fastsync:S3cret-x@127.0.0.1:port/fastsync",             # not a port
    "jdbc:postgresql://127.0.0.1:port/fastsync?password=S3cret-x",
    "nosuchdb://fastsync:S3cret-x@127.0.0.1/fastsync",                    # no such database type
    "postgresql://fastsync:S3cret@x@127.0.0.1:1/fastsync",                # an @ in the password, not %40
])
@pytest.mark.parametrize("tool", ["import", "eval"])
def test_connect_errors_are_one_line_with_the_password_masked(tmp_path, connect, tool):
    args = ["--table", "t", "--target-dir", tmp_path / "o"] if tool == "import" else ["-e", "SELECT 1"]
    out = fastsync(tool, "--connect", connect, *args)
    line = one_line_error(out)
    assert "S3cret" not in out.stderr + out.stdout and "x@" not in line and "***" in line, line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("connect", [
    "postgresql://fastsync:S3cret-x@127.0.0.1:5432/fastsync",
    "jdbc:postgresql://127.0.0.1:5432/fastsync?user=fastsync&password=S3cret-x",
    "jdbc:mysql://fastsync:S3cret-x@127.0.0.1:3306/fastsync",
    "--connect=postgresql://fastsync:S3cret-x@127.0.0.1:5432/fastsync",
])
def test_job_with_a_password_in_the_url_is_refused(tmp_path, connect):
    meta = ["--meta-connect", "sqlite:///%s" % (tmp_path / "meta.db")]
    flag = [] if connect.startswith("--") else ["--connect"]
    out = fastsync("job", *meta, "--create", "j", "--", "import", *flag, connect, "--table", "t",
                   "--target-dir", tmp_path / "o")
    line = one_line_error(out)
    assert "password in --connect's URL would be stored" in line and "--password-file" in line, line
    assert "S3cret" not in out.stderr + out.stdout
    assert fastsync("job", *meta, "--list").stdout == ""
    assert b"S3cret" not in (tmp_path / "meta.db").read_bytes()


def test_job_show_masks_a_password_saved_by_an_older_version(tmp_path):
    db = tmp_path / "meta.db"
    assert fastsync("job", "--meta-connect", "sqlite:///%s" % db, "--list").returncode == 0
    con = sqlite3.connect(db)     # as an older fastsync saved it
    argv = ["import", "--connect", "postgresql://u:S3cret-x@h/db", "--password", "S3cret-y", "--table", "t"]
    con.execute("INSERT INTO fastsync_jobs VALUES ('old', ?, 0, 0)", (json.dumps(argv),))
    con.commit()
    con.close()
    out = fastsync("job", "--meta-connect", "sqlite:///%s" % db, "--show", "old")
    assert out.returncode == 0, out.stderr
    assert "S3cret" not in out.stdout and "--connect 'postgresql://u:***@h/db' --password '***'" in out.stdout, out.stdout


@pytest.fixture
def umask_022():
    """The usual umask, under which files are made 0644 unless asked otherwise."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_metastore_is_created_owner_only(tmp_path, umask_022):
    """The default metastore (~/.fastsync/metastore.db) and its directory are made 0600 and
    0700 whatever the umask; an older world-readable metastore is narrowed to 0600."""
    home = tmp_path / "home"
    home.mkdir()
    pw = tmp_path / "pw"
    pw.write_text("fastsync\n")
    out = fastsync("job", "--create", "j", "--", "import", "--connect", "jdbc:postgresql://127.0.0.1:5432/fastsync",
                   "--username", "fastsync", "--password-file", pw, "--table", "t", "--target-dir", tmp_path / "o",
                   env={"HOME": str(home)})
    assert out.returncode == 0, out.stderr
    assert mode(home / ".fastsync") == 0o700 and mode(home / ".fastsync" / "metastore.db") == 0o600
    old = tmp_path / "old.db"
    sqlite3.connect(old).close()
    os.chmod(old, 0o644)
    assert fastsync("job", "--meta-connect", "sqlite:///%s" % old, "--list").returncode == 0
    assert mode(old) == 0o600


def test_meta_connect_errors_are_one_line_with_the_password_masked():
    out = fastsync("job", "--meta-connect", "postgresql://fastsync:S3cret-x@127.0.0.1:1/meta", "--list")
    line = one_line_error(out)
    assert "S3cret" not in out.stderr and "--meta-connect postgresql://fastsync:***@127.0.0.1:1/meta" in line, line


def test_position_files_and_checkpoints_are_created_owner_only(tmp_path, agent, umask_022):
    """TAILDIR's position file, the spooling directory source's tracker file and the file
    channel's checkpoint hold read positions: 0600 from their creation (an older 0644
    position file is replaced by a 0600 one)."""
    logs, spool = tmp_path / "logs", tmp_path / "spool"
    logs.mkdir()
    spool.mkdir()
    (logs / "a.log").write_text("".join("line %d\n" % i for i in range(50)))
    (spool / "s.txt").write_text("".join("row %d\n" % i for i in range(100)))
    positions = tmp_path / "pos" / "taildir_position.json"
    positions.parent.mkdir()
    positions.write_text("[]")
    os.chmod(positions, 0o644)
    conf = write_config(tmp_path, {
        "a1.sources": "r1 r2", "a1.channels": "c1 c2",
        "a1.sources.r1.type": "TAILDIR", "a1.sources.r1.channels": "c1",
        "a1.sources.r1.filegroups": "f1", "a1.sources.r1.filegroups.f1": "%s/.*\\.log" % logs,
        "a1.sources.r1.positionFile": positions, "a1.sources.r1.writePosInterval": 0,
        "a1.channels.c1.type": "memory",
        # the spooling source fills its channel (no sink takes) and waits mid-file
        "a1.sources.r2.type": "spooldir", "a1.sources.r2.channels": "c2", "a1.sources.r2.spoolDir": spool,
        "a1.sources.r2.batchSize": 10,
        "a1.channels.c2.type": "file", "a1.channels.c2.capacity": 20, "a1.channels.c2.transactionCapacity": 10,
        "a1.channels.c2.keep-alive": 0.1,
        "a1.channels.c2.checkpointDir": tmp_path / "ck", "a1.channels.c2.dataDirs": tmp_path / "data",
    })
    p = agent("a1", conf, "--no-reload-conf")
    p.wait_for_stderr("started", 30)
    tracker = spool / ".flumespool" / ".fastsync-r2.json"
    poll(lambda: tracker.exists() and json.loads(tracker.read_text())["pos"] > 0, 30, message="tracker written")
    poll(lambda: json.loads(positions.read_text() or "[]"), 30, message="positions written")
    assert mode(tracker) == 0o600 and mode(positions) == 0o600
    assert p.stop(signal.SIGTERM) == 0, p.stderr
    assert mode(tmp_path / "ck" / "checkpoint") == 0o600
