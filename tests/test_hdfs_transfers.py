"""`fastsync import`, `export` and `merge` with their directories on the test HDFS
(hdfs://127.0.0.1:8020, reached through WebHDFS here), against the real PostgreSQL; what
fastsync wrote is read back with Hadoop's FsShell (and pyarrow on the fetched files), what it
reads was put there by FsShell where that matters.
"""
from __future__ import annotations

import os
import posixpath
import subprocess
import sys
from decimal import Decimal

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from e2e_support import drop_tables, free_port, parquet_unless_told
from hdfs_support import ls_recursive
from fastsync.filesystems import resolve

PG_URL = os.environ.get("FASTSYNC_TEST_PG_URL", "postgresql://fastsync:fastsync@127.0.0.1:5432/fastsync")
CONNECT = ["--connect", PG_URL]
SRC, DST = "hdfs_src_%d" % os.getpid(), "hdfs_dst_%d" % os.getpid()
N = 3000


@pytest.fixture(scope="module", autouse=True)
def _drop_server_tables():
    yield
    drop_tables(PG_URL, SRC, DST)


def engine():
    return sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://"))


def sql(*statements: str) -> list:
    e = engine()
    try:
        with e.begin() as c:
            out = [c.execute(sa.text(s)) for s in statements]
            return [r.fetchall() if r.returns_rows else None for r in out]
    finally:
        e.dispose()


def make_source(n: int = N, offset: int = 0) -> None:
    """SRC: id, name (NULL every 97th), price; `offset` shifts the names and prices."""
    sql("DROP TABLE IF EXISTS %s" % SRC,
        "CREATE TABLE %s (id integer PRIMARY KEY, name text, price numeric(12, 2))" % SRC,
        "INSERT INTO %s SELECT i, CASE WHEN i %% 97 = 0 THEN NULL ELSE 'n' || (i + %d) END, (i + %d) / 100.0 "
        "FROM generate_series(0, %d) i" % (SRC, offset, offset, n - 1))


def expected(n: int = N, offset: int = 0) -> list[dict]:
    cent = Decimal("0.01")
    return [{"id": i, "name": None if i % 97 == 0 else "n%d" % (i + offset), "price": (Decimal(i + offset) * cent).quantize(cent)}
            for i in range(n)]


def fastsync(*args, env=None):
    return subprocess.run([sys.executable, "-m", "fastsync", *parquet_unless_told(args)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def parts(hdfs, sub: str) -> dict[str, int | None]:
    """{name: size} directly in the test's directory `sub`, by FsShell."""
    base = posixpath.join(hdfs.dir, sub).rstrip("/") + "/"
    return {p[len(base):]: s for p, s in ls_recursive(base).items() if "/" not in p[len(base):]}


def fetched_parquet(hdfs, sub: str, tmp_path) -> list[dict]:
    """The Parquet parts of `sub`, fetched with FsShell -get and read locally, rows by id."""
    local = tmp_path / ("got-" + sub.replace("/", "-"))
    local.parent.mkdir(parents=True, exist_ok=True)
    hdfs.dfs("-get", "%s/%s" % (hdfs.dir, sub), local)
    return pq.read_table(sorted(str(p) for p in local.glob("part-m-*.parquet"))).sort_by("id").to_pylist()


def test_import_parquet_and_text_read_back_by_fsshell(hdfs, tmp_path):
    make_source()
    out = fastsync("import", *CONNECT, "--table", SRC, "-m", 2, "--target-dir", hdfs.dir_url + "/pq")
    assert out.returncode == 0, out.stderr
    assert "imported %d rows" % N in out.stdout and hdfs.dir_url + "/pq" in out.stdout
    assert set(parts(hdfs, "pq")) == {"_SUCCESS", "part-m-00000.parquet", "part-m-00001.parquet"}
    assert parts(hdfs, "pq")["_SUCCESS"] == 0
    assert fetched_parquet(hdfs, "pq", tmp_path) == expected()
    loc = resolve(hdfs.dir_url + "/pq")
    assert ds.dataset(loc.path, filesystem=loc.fs, format="parquet").to_table().sort_by("id").to_pylist() == expected()

    out = fastsync("import", *CONNECT, "--table", SRC, "-m", 2, "--as-textfile", "--target-dir", hdfs.dir_url + "/txt")
    assert out.returncode == 0, out.stderr
    assert set(parts(hdfs, "txt")) == {"_SUCCESS", "part-m-00000", "part-m-00001"}
    text = hdfs.dfs("-cat", hdfs.dir + "/txt/part-m-00000", hdfs.dir + "/txt/part-m-00001")
    want = ["%d,%s,%s" % (r["id"], "null" if r["name"] is None else r["name"], r["price"]) for r in expected()]
    assert sorted(text.splitlines()) == sorted(want)
    # nothing else was left beside the targets (no staging directories)
    assert set(parts(hdfs, "")) == {"pq", "txt"}


def test_failed_import_leaves_nothing(hdfs):
    make_source()
    # fails while the rows stream in, after the staging directory was made
    out = fastsync("import", *CONNECT, "--query", "SELECT id, 10 / (id - %d) AS x FROM %s WHERE $CONDITIONS" % (N - 10, SRC),
                   "-m", 1, "--target-dir", hdfs.dir_url + "/bad")
    assert out.returncode != 0
    assert len(out.stderr.strip().splitlines()) == 1 and "division by zero" in out.stderr, out.stderr
    assert ls_recursive(hdfs.dir) == {}
    # an existing target is refused, and left as it was
    assert fastsync("import", *CONNECT, "--table", SRC, "--target-dir", hdfs.dir_url + "/t").returncode == 0
    before = ls_recursive(hdfs.dir)
    out = fastsync("import", *CONNECT, "--table", SRC, "--target-dir", hdfs.dir_url + "/t")
    assert out.returncode != 0 and "already exists" in out.stderr and hdfs.dir_url + "/t" in out.stderr, out.stderr
    assert ls_recursive(hdfs.dir) == before


def test_dead_namenode_is_one_line(tmp_path):
    """No NameNode at the URL (nor WebHDFS at FASTSYNC_WEBHDFS_PORT): import and export stop
    at once with one line naming the flag and the URL."""
    make_source(n=10)
    url = "hdfs://127.0.0.1:%d/user/x/t" % free_port()
    env = {"FASTSYNC_WEBHDFS_PORT": str(free_port())}
    for args in (("import", *CONNECT, "--table", SRC, "--target-dir", url), ("export", *CONNECT, "--table", SRC, "--export-dir", url)):
        out = fastsync(*args, env=env)
        assert out.returncode != 0
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and url in lines[0] and "connection refused" in lines[0], out.stderr


def test_append_and_delete_target_dir(hdfs, tmp_path):
    make_source()
    target = hdfs.dir_url + "/t"
    assert fastsync("import", *CONNECT, "--table", SRC, "-m", 2, "--target-dir", target).returncode == 0
    make_source(offset=100_000)
    out = fastsync("import", *CONNECT, "--table", SRC, "-m", 2, "--target-dir", target, "--append")
    assert out.returncode == 0, out.stderr
    assert set(parts(hdfs, "t")) == {"_SUCCESS"} | {"part-m-%05d.parquet" % i for i in range(4)}
    both = sorted(expected() + expected(offset=100_000), key=lambda r: (r["id"], r["price"]))
    got = fetched_parquet(hdfs, "t", tmp_path)
    assert sorted(got, key=lambda r: (r["id"], r["price"])) == both

    make_source(n=N // 2, offset=7)
    out = fastsync("import", *CONNECT, "--table", SRC, "-m", 3, "--target-dir", target, "--delete-target-dir")
    assert out.returncode == 0, out.stderr
    assert set(parts(hdfs, "t")) == {"_SUCCESS"} | {"part-m-%05d.parquet" % i for i in range(3)}
    assert fetched_parquet(hdfs, "t", tmp_path / "again") == expected(n=N // 2, offset=7)
    assert set(parts(hdfs, "")) == {"t"}      # the old directory is gone, no staging left


def test_export_from_hdfs_into_postgresql(hdfs, tmp_path):
    """A text file put by FsShell, and Parquet parts fastsync imported, exported into a table."""
    sql("DROP TABLE IF EXISTS %s" % DST, "CREATE TABLE %s (id integer PRIMARY KEY, name text, price numeric(12, 2))" % DST)
    rows = expected(n=500)
    local = tmp_path / "part-m-00000.txt"
    local.write_text("".join("%d,%s,%s\n" % (r["id"], "null" if r["name"] is None else r["name"], r["price"]) for r in rows))
    hdfs.dfs("-mkdir", hdfs.dir + "/in")
    hdfs.dfs("-put", local, hdfs.dir + "/in/part-m-00000.txt")
    out = fastsync("export", *CONNECT, "--table", DST, "--export-dir", hdfs.dir_url + "/in")
    assert out.returncode == 0, out.stderr
    got = sql("SELECT id, name, price FROM %s ORDER BY id" % DST)[0]
    assert [dict(zip(("id", "name", "price"), r)) for r in got] == rows

    make_source()
    assert fastsync("import", *CONNECT, "--table", SRC, "-m", 2, "--target-dir", hdfs.dir_url + "/pq").returncode == 0
    sql("DELETE FROM %s" % DST)
    out = fastsync("export", *CONNECT, "--table", DST, "--export-dir", hdfs.dir_url + "/pq", "-m", 2)
    assert out.returncode == 0, out.stderr
    got = sql("SELECT id, name, price FROM %s ORDER BY id" % DST)[0]
    assert [dict(zip(("id", "name", "price"), r)) for r in got] == expected()

    out = fastsync("export", *CONNECT, "--table", DST, "--export-dir", hdfs.dir_url + "/nope")
    assert out.returncode != 0 and hdfs.dir_url + "/nope" in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_merge_on_hdfs(hdfs, tmp_path):
    make_source()
    assert fastsync("import", *CONNECT, "--table", SRC, "-m", 2, "--target-dir", hdfs.dir_url + "/old").returncode == 0
    sql("UPDATE %s SET name = 'changed' || id WHERE id %% 10 = 0" % SRC,
        "INSERT INTO %s SELECT i, 'new' || i, 1 FROM generate_series(%d, %d) i" % (SRC, N, N + 99))
    out = fastsync("import", *CONNECT, "--table", SRC, "--where", "id %% 10 = 0 OR id >= %d" % N, "-m", 1,
                   "--target-dir", hdfs.dir_url + "/delta")
    assert out.returncode == 0, out.stderr
    out = fastsync("merge", "--new-data", hdfs.dir_url + "/delta", "--onto", hdfs.dir_url + "/old",
                   "--target-dir", hdfs.dir_url + "/merged", "--merge-key", "id")
    assert out.returncode == 0, out.stderr
    assert "_SUCCESS" in parts(hdfs, "merged")
    now = sql("SELECT id, name, price FROM %s ORDER BY id" % SRC)[0]
    assert fetched_parquet(hdfs, "merged", tmp_path) == [dict(zip(("id", "name", "price"), r)) for r in now]
    assert set(parts(hdfs, "")) == {"old", "delta", "merged"}


@pytest.mark.slow
def test_cluster_workers_write_and_read_hdfs(hdfs, tmp_path):
    """--cluster local:2: the workers write their part files straight to HDFS (attempt names,
    the accepted one moved into place) and load the parts of an HDFS export dir."""
    make_source()
    target = hdfs.dir_url + "/cl"
    out = fastsync("import", *CONNECT, "--table", SRC, "-m", 3, "--cluster", "local:2", "--target-dir", target)
    assert out.returncode == 0, out.stderr
    assert set(parts(hdfs, "cl")) == {"_SUCCESS"} | {"part-m-%05d.parquet" % i for i in range(3)}
    assert fetched_parquet(hdfs, "cl", tmp_path) == expected()
    assert set(parts(hdfs, "")) == {"cl"}          # no staging directory, no attempt file left
    sql("DROP TABLE IF EXISTS %s" % DST, "CREATE TABLE %s (id integer PRIMARY KEY, name text, price numeric(12, 2))" % DST)
    out = fastsync("export", *CONNECT, "--table", DST, "--export-dir", target, "-m", 2, "--cluster", "local:2")
    assert out.returncode == 0, out.stderr
    got = sql("SELECT id, name, price FROM %s ORDER BY id" % DST)[0]
    assert [dict(zip(("id", "name", "price"), r)) for r in got] == expected()
