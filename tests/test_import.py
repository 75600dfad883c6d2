"""`fastsync import` end to end through the CLI, against SQLite and the real PostgreSQL and
MariaDB servers that scripts/services.sh starts (tests fail, never skip, without them)."""
import decimal
import os
import sqlite3
import subprocess
import sys

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from e2e_support import drop_tables, parquet_unless_told

PG_URL = os.environ.get("FASTSYNC_TEST_PG_URL", "postgresql://fastsync:fastsync@127.0.0.1:5432/fastsync")
MYSQL_URL = os.environ.get("FASTSYNC_TEST_MYSQL_URL", "mysql://fastsync:fastsync@127.0.0.1:3306/fastsync")
N = 5000
# the tables on the shared servers: named per process, so concurrent runs (xdist workers,
# another checkout's suite) never share one
ITEMS, DATED = "items_%d" % os.getpid(), "dated_%d" % os.getpid()


@pytest.fixture(scope="module", autouse=True)
def _drop_server_tables():
    """The tables these tests make on the shared servers go when the module is done."""
    yield
    drop_tables(PG_URL, ITEMS, DATED)
    drop_tables(MYSQL_URL, ITEMS)


def fastsync(*args, env=None):
    return subprocess.run([sys.executable, "-m", "fastsync", *parquet_unless_told(args)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})


def rows():
    out = []
    for i in range(N):
        out.append({"id": i, "name": None if i % 97 == 0 else "n\u00e9%d\t\"x\"" % i,
                    "price": decimal.Decimal("%d.%02d" % (i, i % 100)), "qty": (i * 7) % 1000 - 500})
    return out


def create(url, name="items"):
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://").replace("mysql://", "mysql+pymysql://"))
    md = sa.MetaData()
    t = sa.Table(name, md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                 sa.Column("name", sa.String(100)), sa.Column("price", sa.Numeric(12, 2)), sa.Column("qty", sa.Integer))
    with engine.begin() as conn:
        md.drop_all(conn)
        md.create_all(conn)
        conn.execute(t.insert(), rows())
    engine.dispose()


def check_parquet(path, where=None):
    table = pq.read_table(path).sort_by("id")
    want = [r for r in rows() if where is None or where(r)]
    assert table.to_pylist() == want
    assert str(table.schema.field("price").type) == "decimal128(12, 2)"


@pytest.fixture
def sqlite_db(tmp_path):
    path = tmp_path / "src.db"
    create("sqlite:///%s" % path)
    return path


def test_sqlite_to_parquet_in_parallel_splits(sqlite_db, tmp_path):
    out = fastsync("import", "--connect", "jdbc:sqlite:%s" % sqlite_db, "--table", "items", "-m", 3,
                   "--target-dir", tmp_path / "out")
    assert out.returncode == 0, out.stderr
    assert "imported %d rows" % N in out.stdout and "rows/s" in out.stdout
    files = sorted(os.listdir(tmp_path / "out"))
    assert files == ["_SUCCESS", "part-m-00000.parquet", "part-m-00001.parquet", "part-m-00002.parquet"]
    check_parquet(tmp_path / "out")


def test_where_columns_and_csv(sqlite_db, tmp_path):
    out = fastsync("import", "--connect", "sqlite:///%s" % sqlite_db, "--table", "items", "--columns", "id,qty",
                   "--where", "qty > 0", "-m", 2, "--format", "csv", "--target-dir", tmp_path / "csv")
    assert out.returncode == 0, out.stderr
    parts = sorted(p for p in os.listdir(tmp_path / "csv") if p.startswith("part-"))
    assert parts == ["part-m-00000.csv", "part-m-00001.csv"]
    got = sorted(r for p in parts for r in zip(*[pacsv.read_csv(tmp_path / "csv" / p).column(c).to_pylist() for c in ("id", "qty")]))
    assert got == [(r["id"], r["qty"]) for r in rows() if r["qty"] > 0]


@pytest.mark.parametrize("flags,suffix,fmt", [
    (["-z", "--as-textfile"], ".gz", "text"), (["--compress", "--format", "csv", "--compression-codec", "zstd"], ".csv.zst", "csv"),
    (["--format", "jsonl", "--compression-codec", "lz4"], ".jsonl.lz4", "jsonl")])
def test_compressed_text_outputs(sqlite_db, tmp_path, flags, suffix, fmt):
    import gzip
    import json

    import pyarrow as pa
    out = fastsync("import", "--connect", "sqlite:///%s" % sqlite_db, "--table", "items", "-m", 2, *flags,
                   "--target-dir", tmp_path / "o")
    assert out.returncode == 0, out.stderr
    parts = sorted(p for p in os.listdir(tmp_path / "o") if p.startswith("part-"))
    assert parts == ["part-m-00000" + suffix, "part-m-00001" + suffix]
    codec = {"gz": "gzip", "zst": "zstd", "lz4": "lz4"}[suffix.rsplit(".", 1)[1]]
    data = b"".join(pa.CompressedInputStream(pa.OSFile(str(tmp_path / "o" / p)), codec).read() for p in parts)
    if codec == "gzip":          # a standard gzip file, readable by gzip(1)
        assert gzip.decompress((tmp_path / "o" / parts[0]).read_bytes())
    if fmt == "jsonl":
        got = sorted(json.loads(line)["id"] for line in data.decode().splitlines())
    elif fmt == "csv":
        got = sorted(pacsv.read_csv(pa.BufferReader(data.split(b"\n", 1)[0] + b"\n" + b"\n".join(
            l for l in data.split(b"\n")[1:] if l and not l.startswith(b'"id"')))).column("id").to_pylist())
    else:
        got = sorted(int(line.split(b",", 1)[0]) for line in data.splitlines())
    assert got == list(range(N))


def test_snappy_for_text_is_refused_before_anything_is_written(sqlite_db, tmp_path):
    out = fastsync("import", "--connect", "sqlite:///%s" % sqlite_db, "--table", "items", "--as-textfile",
                   "--compression-codec", "snappy", "--target-dir", tmp_path / "o")
    assert out.returncode == 1 and "--compression-codec snappy: not available for text files" in out.stderr
    assert os.listdir(tmp_path) == ["src.db"]


@pytest.mark.slow
def test_existing_target_and_bad_flags_fail_clearly_and_change_nothing(sqlite_db, tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep").write_text("old")
    out = fastsync("import", "--connect", "jdbc:sqlite:%s" % sqlite_db, "--table", "items", "--target-dir", target)
    assert out.returncode == 1 and "--target-dir" in out.stderr and "already exists" in out.stderr
    for args, words in ((("--table", "nope"), "--table nope: no such table"),
                        (("--table", "items", "--columns", "id,zzz"), "no column zzz"),
                        (("--table", "items", "--split-by", "zzz"), "--split-by: items has no column zzz"),
                        (("--table", "items", "--where", "no_such_col > 1"), "no_such_col")):
        out = fastsync("import", "--connect", "jdbc:sqlite:%s" % sqlite_db, *args, "--target-dir", target,
                       "--delete-target-dir")
        assert out.returncode == 1, out.stdout
        assert words in out.stderr and out.stderr.count("\n") == 1, out.stderr
        assert sorted(os.listdir(target)) == ["keep"]
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]
    out = fastsync("import", "--connect", "jdbc:sqlite:%s" % sqlite_db, "--table", "items", "--target-dir", target,
                   "--delete-target-dir", "-m", 2)
    assert out.returncode == 0, out.stderr
    check_parquet(target)


def test_postgresql_with_password_file_never_shows_the_password(tmp_path):
    create(PG_URL, ITEMS)
    pw = tmp_path / "pw"
    pw.write_text("fastsync\n")
    out = fastsync("import", "--connect", "jdbc:postgresql://127.0.0.1:5432/fastsync", "--username", "fastsync",
                   "--password-file", pw, "--table", ITEMS, "-m", 4, "--target-dir", tmp_path / "pg")
    assert out.returncode == 0, out.stderr
    check_parquet(tmp_path / "pg")
    bad = tmp_path / "bad"
    bad.write_text("s3cret-wrong\n")
    out = fastsync("import", "--connect", "jdbc:postgresql://127.0.0.1:5432/fastsync", "--username", "fastsync",
                   "--password-file", bad, "--table", ITEMS, "--target-dir", tmp_path / "pg2")
    assert out.returncode == 1
    assert "s3cret-wrong" not in out.stderr + out.stdout and "password authentication failed" in out.stderr, out.stderr
    assert not (tmp_path / "pg2").exists()


def test_password_on_the_command_line_is_hidden_from_the_process_list(tmp_path):
    """`--password` is visible to `ps` while the import runs unless the title is rewritten;
    the parent and every split process are checked while a slow query runs."""
    import time
    cmd = [sys.executable, "-m", "fastsync", "import", "--connect", "jdbc:postgresql://127.0.0.1:5432/fastsync",
           "--username", "fastsync", "--password", "fastsync", "--query",
           "SELECT * FROM (SELECT x AS id, pg_sleep(0.002) AS s FROM generate_series(1, 2000) x) t WHERE $CONDITIONS",
           "--split-by", "id", "-m", "2", "--boundary-query", "SELECT 1, 2000", "--target-dir", str(tmp_path / "o")]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    try:
        deadline = time.monotonic() + 60
        while p.poll() is None and time.monotonic() < deadline:
            for pid in [p.pid] + [int(c) for c in open("/proc/%d/task/%d/children" % (p.pid, p.pid)).read().split()]:
                try:
                    cmdline = open("/proc/%d/cmdline" % pid, "rb").read()
                except OSError:
                    continue
                if cmdline:          # empty while a process exits
                    seen.append(cmdline)
            time.sleep(0.05)
        out, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 0, err
    # the password's place holds *** (the password here equals the user name, so it is
    # checked by position) from the moment the CLI starts, before any connection: only the
    # interpreter's start-up shows the original command line
    masked = [b"--password ***" in c.replace(b"\0", b" ") for c in seen]
    assert len(seen) > 20 and True in masked, seen[:3]
    first = masked.index(True)
    unmasked = [c for c, m in zip(seen[first:], masked[first:]) if not m]
    assert all(masked[first:]) and first < len(seen) // 4, (first, len(seen), unmasked[:2])


def test_where_with_a_percent_sign_on_both_postgresql_paths(tmp_path):
    """The binary COPY path sends its SQL to libpq as is: a `%` in --where must stay one."""
    create(PG_URL, ITEMS)
    for extra in ([], ["--no-fast-path"]):
        out = fastsync("import", "--connect", PG_URL, "--table", ITEMS, "-m", 2, *extra, "--where",
                       "name LIKE 'n%1' OR LENGTH('%') = 2", "--target-dir", tmp_path / ("o%d" % len(extra)))
        assert out.returncode == 0, out.stderr
        check_parquet(tmp_path / ("o%d" % len(extra)), where=lambda r: r["name"] is not None and r["name"].endswith("1"))


def test_mariadb_with_env_password(tmp_path):
    create(MYSQL_URL, ITEMS)
    out = fastsync("import", "--connect", "jdbc:mariadb://127.0.0.1:3306/fastsync", "--username", "fastsync",
                   "--table", ITEMS, "-m", 2, "--where", "id < 4000", "--target-dir", tmp_path / "my",
                   env={"FASTSYNC_PASSWORD": "fastsync"})
    assert out.returncode == 0, out.stderr
    check_parquet(tmp_path / "my", where=lambda r: r["id"] < 4000)


def test_dead_server_is_one_clear_line(tmp_path):
    out = fastsync("import", "--connect", "postgresql://fastsync:fastsync@127.0.0.1:1/fastsync", "--table", "items",
                   "--target-dir", tmp_path / "x")
    assert out.returncode == 1
    line = out.stderr.strip()
    assert line.startswith("fastsync: error: postgresql+psycopg://fastsync:***@127.0.0.1:1/fastsync:") and "\n" not in line, line
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("jdbc,want", [
    ("jdbc:postgresql://db.example:5433/shop", "postgresql+psycopg://db.example:5433/shop"),
    ("jdbc:mysql://h/shop?useSSL=false", "mysql+pymysql://h/shop"),      # JDBC properties dropped
    ("jdbc:mariadb://h:3307/shop", "mysql+pymysql://h:3307/shop"),
    ("jdbc:sqlite:/var/db/a.db", "sqlite:////var/db/a.db"),
    ("jdbc:sqlite:rel.db", "sqlite:///rel.db"),
    ("postgresql://u@h/d", "postgresql+psycopg://u@h/d"),
    ("sqlite:///x.db", "sqlite:///x.db"),
])
def test_jdbc_urls_translate(jdbc, want):
    from fastsync.transfer.connect import translate_url
    assert translate_url(jdbc).render_as_string(hide_password=False) == want


def test_unsupported_jdbc_url_hides_the_password(tmp_path):
    out = fastsync("import", "--connect", "jdbc:oracle://h/db?password=hunter2", "--table", "t", "--target-dir", tmp_path / "o")
    assert out.returncode == 2 and "unsupported JDBC URL" in out.stderr and "hunter2" not in out.stderr, out.stderr


@pytest.mark.parametrize("lo,hi,m", [(0, 99, 4), (5, 5, 4), (-10, 3, 3), (0, 2, 8), (1, 10**12, 7)])
def test_plan_splits_cover_the_range_once(lo, hi, m):
    from fastsync.transfer.splits import plan_splits
    splits = plan_splits(lo, hi, m)
    assert 1 <= len(splits) <= min(m, hi - lo + 1)
    if hi - lo + 1 >= 2 * m:
        assert len(splits) == m
    assert splits[0].lo == lo and splits[-1].hi == hi and splits[-1].last
    for a, b in zip(splits, splits[1:]):
        assert a.hi == b.lo and a.lo < a.hi and not a.last
    assert splits[-1].lo <= splits[-1].hi
    if hi - lo < 1000:
        covered = [v for v in range(lo, hi + 1) for s in splits
                   if s.lo <= v and (v <= s.hi if s.last else v < s.hi)]
        assert covered == list(range(lo, hi + 1))


@pytest.mark.slow
def test_incremental_append_imports_only_new_rows(tmp_path):
    db = tmp_path / "inc.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE ev (id INTEGER PRIMARY KEY, v TEXT)")
    con.executemany("INSERT INTO ev VALUES (?, ?)", [(i, "a%d" % i) for i in range(100)])
    con.commit()
    base = ["import", "--connect", "jdbc:sqlite:%s" % db, "--table", "ev", "-m", 2, "--target-dir", tmp_path / "out",
            "--incremental", "append", "--check-column", "id"]
    out = fastsync(*base)
    assert out.returncode == 0, out.stderr
    assert "--last-value 99" in out.stdout
    con.executemany("INSERT INTO ev VALUES (?, ?)", [(i, "b%d" % i) for i in range(100, 150)])
    con.commit()
    out = fastsync(*base, "--last-value", "99")
    assert out.returncode == 0, out.stderr
    assert "imported 50 rows" in out.stdout and "--last-value 149" in out.stdout
    parts = sorted(p for p in os.listdir(tmp_path / "out") if p.startswith("part-"))
    assert parts == ["part-m-%05d.parquet" % i for i in range(4)]
    assert sorted(os.listdir(tmp_path)) == ["inc.db", "out"]     # the swap left nothing behind
    got = sorted(pq.read_table(tmp_path / "out").to_pylist(), key=lambda r: r["id"])
    assert got == [{"id": i, "v": ("a%d" if i < 100 else "b%d") % i} for i in range(150)]
    out = fastsync(*base, "--last-value", "not-a-number")
    assert out.returncode == 1 and "--last-value 'not-a-number'" in out.stderr, out.stderr


def test_list_tables_list_databases_and_eval(sqlite_db, tmp_path):
    create(PG_URL, ITEMS)
    pg = ["--connect", "jdbc:postgresql://127.0.0.1:5432/fastsync", "--username", "fastsync"]
    env = {"FASTSYNC_PASSWORD": "fastsync"}
    out = fastsync("list-tables", *pg, env=env)
    assert out.returncode == 0 and ITEMS in out.stdout.split(), out.stderr
    out = fastsync("list-databases", "--connect", "jdbc:mariadb://127.0.0.1:3306/fastsync", "--username", "fastsync",
                   env=env)
    assert out.returncode == 0 and "fastsync" in out.stdout.split(), out.stderr
    out = fastsync("eval", "--connect", "jdbc:sqlite:%s" % sqlite_db,
                   "--query", "SELECT id, name FROM items WHERE id IN (0, 1) ORDER BY id")
    assert out.returncode == 0, out.stderr
    assert "| id | name" in out.stdout and "| 0  | NULL" in out.stdout and "n\u00e91" in out.stdout, out.stdout
    out = fastsync("eval", "--connect", "jdbc:sqlite:%s" % sqlite_db, "--query", "DELETE FROM items WHERE id < 10")
    assert out.returncode == 0 and "10 row(s) affected" in out.stdout, out.stdout
    out = fastsync("eval", "--connect", "jdbc:sqlite:%s" % sqlite_db, "--query", "SELECT nope FROM items")
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and "no such column: nope" in out.stderr, out.stderr


@pytest.mark.slow
def test_free_form_query_with_conditions(tmp_path):
    create(PG_URL, ITEMS)
    pg = ["--connect", "postgresql://fastsync:fastsync@127.0.0.1:5432/fastsync"]
    q = "SELECT id, qty * 2 AS twice FROM %s WHERE qty > 0 AND $CONDITIONS" % ITEMS
    out = fastsync("import", *pg, "--query", q, "--split-by", "id", "-m", 3, "--target-dir", tmp_path / "q")
    assert out.returncode == 0, out.stderr
    assert len([p for p in os.listdir(tmp_path / "q") if p.startswith("part-")]) == 3
    got = sorted(pq.read_table(tmp_path / "q").to_pylist(), key=lambda r: r["id"])
    assert got == [{"id": r["id"], "twice": r["qty"] * 2} for r in rows() if r["qty"] > 0]
    out = fastsync("import", *pg, "--query", q, "--split-by", "id", "-m", 2, "--target-dir", tmp_path / "b",
                   "--boundary-query", "SELECT 0, 99")
    assert out.returncode == 0, out.stderr
    # as in Sqoop, the boundary query decides the splits' ranges: rows outside are not read;
    # the first split (ids 0..49) is empty and still has the query's column types
    table = pq.read_table(tmp_path / "b")
    assert str(table.schema.field("id").type) == "int64"
    assert sorted(table.column("id").to_pylist()) == [r["id"] for r in rows() if r["qty"] > 0 and r["id"] <= 99]
    for args, words in ((("--query", "SELECT id FROM items", "-m", 1), "must contain $CONDITIONS"),
                        (("--query", q, "-m", 2), "needs --split-by"),
                        (("--query", q, "--table", "items"), "one of --table or --query")):
        out = fastsync("import", *pg, *args, "--target-dir", tmp_path / "bad")
        assert out.returncode in (1, 2) and words in out.stderr, out.stderr
        assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_progress_on_a_terminal_and_quiet_in_a_pipe(sqlite_db, tmp_path):
    from e2e_support import run_on_terminal
    code, text = run_on_terminal([sys.executable, "-m", "fastsync", "import", "--connect", "jdbc:sqlite:%s" % sqlite_db,
                                  "--table", "items", "-m", "2", "--fetch-size", "500", "--target-dir", str(tmp_path / "tty")])
    assert code == 0, text
    assert "%d rows 100%%" % N in text and "rows/s" in text and "[splits 0:" in text, text
    piped = fastsync("import", "--connect", "jdbc:sqlite:%s" % sqlite_db, "--table", "items", "--target-dir", tmp_path / "pipe")
    assert piped.returncode == 0 and piped.stderr == "", piped.stderr


@pytest.mark.slow
def test_saved_incremental_job_advances_only_after_publishing(tmp_path):
    db = tmp_path / "j.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE ev (id INTEGER PRIMARY KEY, v TEXT)")
    con.executemany("INSERT INTO ev VALUES (?, ?)", [(i, "v%d" % i) for i in range(10)])
    con.commit()
    meta = ["--meta-connect", "sqlite:///%s" % (tmp_path / "meta.db")]
    pw = tmp_path / "pw"
    pw.write_text("unused\n")
    out = fastsync("job", *meta, "--create", "ev-inc", "--", "import", "--connect", "jdbc:sqlite:%s" % db,
                   "--password", "hunter2", "--table", "ev", "--target-dir", tmp_path / "out")
    assert out.returncode == 1 and "--password-file" in out.stderr and "hunter2" not in out.stderr, out.stderr
    out = fastsync("job", *meta, "--create", "ev-inc", "--", "import", "--connect", "jdbc:sqlite:%s" % db,
                   "--password-file", pw, "--table", "ev", "-m", 1, "--target-dir", tmp_path / "out",
                   "--incremental", "append", "--check-column", "id")
    assert out.returncode == 0, out.stderr
    assert fastsync("job", *meta, "--list").stdout.split() == ["ev-inc"]
    assert fastsync("job", *meta, "--exec", "ev-inc").returncode == 0
    assert "--last-value 9" in fastsync("job", *meta, "--show", "ev-inc").stdout
    con.executemany("INSERT INTO ev VALUES (?, ?)", [(i, "v%d" % i) for i in range(10, 15)])
    con.commit()
    # a failing run (its split reads a column that does not exist) publishes nothing and keeps the last value
    out = fastsync("job", *meta, "--exec", "ev-inc", "--", "--columns", "id,nope")
    assert out.returncode == 1
    assert "--last-value 9" in fastsync("job", *meta, "--show", "ev-inc").stdout
    out = fastsync("job", *meta, "--exec", "ev-inc")
    assert out.returncode == 0 and "imported 5 rows" in out.stdout, out.stdout + out.stderr
    assert "--last-value 14" in fastsync("job", *meta, "--show", "ev-inc").stdout
    assert sorted(pq.read_table(tmp_path / "out").column("id").to_pylist()) == list(range(15))
    assert fastsync("job", *meta, "--delete", "ev-inc").returncode == 0
    out = fastsync("job", *meta, "--exec", "ev-inc")
    assert out.returncode == 1 and "no saved job named 'ev-inc'" in out.stderr


@pytest.mark.parametrize("fmt", ["arrow", "jsonl"])
def test_arrow_and_json_lines_output(sqlite_db, tmp_path, fmt):
    import json

    import pyarrow as pa
    out = fastsync("import", "--connect", "jdbc:sqlite:%s" % sqlite_db, "--table", "items", "-m", 2, "--format", fmt,
                   "--target-dir", tmp_path / fmt)
    assert out.returncode == 0, out.stderr
    parts = sorted(p for p in os.listdir(tmp_path / fmt) if p.startswith("part-"))
    assert parts == ["part-m-00000.%s" % fmt, "part-m-00001.%s" % fmt]
    got = []
    for p in parts:
        path = tmp_path / fmt / p
        if fmt == "arrow":
            got += pa.ipc.open_file(path).read_all().to_pylist()
        else:
            got += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    got.sort(key=lambda r: r["id"])
    want = rows()
    if fmt == "jsonl":
        want = [{**r, "price": str(r["price"])} for r in want]
    assert got == want


def test_import_all_tables(tmp_path):
    db = tmp_path / "all.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE a (id INTEGER PRIMARY KEY, v TEXT)")
    con.execute("CREATE TABLE b (id INTEGER PRIMARY KEY, v TEXT)")
    con.execute("CREATE TABLE c (x INTEGER, y TEXT)")
    for t in "abc":
        con.executemany("INSERT INTO %s VALUES (?, ?)" % t, [(i, "%s%d" % (t, i)) for i in range(20)])
    con.commit()
    base = ["import-all-tables", "--connect", "jdbc:sqlite:%s" % db, "--warehouse-dir", tmp_path / "wh", "-m", 2,
            "--exclude-tables", "b"]
    out = fastsync(*base)
    assert out.returncode == 1 and "table c has no single-column primary key" in out.stderr, out.stderr
    assert not (tmp_path / "wh").exists()          # refused before importing anything
    out = fastsync(*base, "--autoreset-to-one-mapper")
    assert out.returncode == 0, out.stderr
    assert sorted(os.listdir(tmp_path / "wh")) == ["a", "c"]
    assert sorted(pq.read_table(tmp_path / "wh" / "a").column("v").to_pylist()) == sorted("a%d" % i for i in range(20))
    assert len(pq.read_table(tmp_path / "wh" / "c")) == 20


@pytest.mark.slow
def test_split_keys_of_other_types_and_quantile_splits_for_skew(tmp_path):
    import datetime
    db = tmp_path / "skew.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE s (id INTEGER PRIMARY KEY, k INTEGER, name TEXT, day DATE, amount NUMERIC(10, 2))")
    # 90 % of the keys in [0, 100), the rest spread up to 1 000 000: min/max splits are lopsided
    keys = [i % 100 if i % 10 else i * 100 for i in range(10000)]
    con.executemany("INSERT INTO s VALUES (?, ?, ?, ?, ?)",
                    [(i, k, "name-%05d" % ((i * 7919) % 10000), (datetime.date(2020, 1, 1) + datetime.timedelta(days=i % 1500)).isoformat(),
                      "%d.%02d" % (i % 977, i % 100)) for i, k in enumerate(keys)])
    con.commit()

    def part_rows(name, *args):
        out = fastsync("import", "--connect", "jdbc:sqlite:%s" % db, "--table", "s", "-m", 4, "--target-dir", tmp_path / name, *args)
        assert out.returncode == 0, out.stderr
        parts = sorted(p for p in os.listdir(tmp_path / name) if p.startswith("part-"))
        counts = [pq.read_metadata(tmp_path / name / p).num_rows for p in parts]
        assert sum(counts) == 10000
        assert sorted(pq.read_table(tmp_path / name).column("id").to_pylist()) == list(range(10000))
        return counts

    lopsided = part_rows("minmax", "--split-by", "k")
    assert max(lopsided) > 8000, lopsided
    balanced = part_rows("quantile", "--split-by", "k", "--split-strategy", "quantile")
    assert len(balanced) >= 2 and max(balanced) <= 2 * 10000 / len(balanced), balanced
    text = part_rows("text", "--split-by", "name", "--split-strategy", "quantile")
    assert len(text) == 4 and max(text) - min(text) <= 1, text
    for col in ("amount",):
        counts = part_rows("by-" + col, "--split-by", col)
        assert len(counts) == 4 and min(counts) > 1000, counts
    out = fastsync("import", "--connect", "jdbc:sqlite:%s" % db, "--table", "s", "-m", 4, "--split-by", "name",
                   "--target-dir", tmp_path / "textminmax")
    assert out.returncode == 1 and "--split-strategy quantile" in out.stderr, out.stderr


@pytest.mark.slow
def test_date_and_timestamp_split_keys_in_postgresql(tmp_path):
    import datetime
    engine = sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS %s" % DATED))
        conn.execute(sa.text("CREATE TABLE %s (id int PRIMARY KEY, d date, ts timestamptz)" % DATED))
        conn.execute(sa.text("INSERT INTO %s SELECT" % DATED + " g, DATE '2024-01-01' + g, "
                             "TIMESTAMPTZ '2024-01-01 00:00:00+00' + g * INTERVAL '1 hour' FROM generate_series(0, 999) g"))
    engine.dispose()
    for col in ("d", "ts"):
        out = fastsync("import", "--connect", PG_URL, "--table", DATED, "-m", 3, "--split-by", col,
                       "--target-dir", tmp_path / col)
        assert out.returncode == 0, out.stderr
        parts = sorted(p for p in os.listdir(tmp_path / col) if p.startswith("part-"))
        counts = [pq.read_metadata(tmp_path / col / p).num_rows for p in parts]
        assert len(counts) == 3 and sum(counts) == 1000 and min(counts) >= 300, counts
        t = pq.read_table(tmp_path / col)
        assert sorted(t.column("id").to_pylist()) == list(range(1000))
        assert str(t.schema.field("ts").type) == "timestamp[us, tz=UTC]"
        first = t.sort_by("id").slice(0, 1).to_pylist()[0]
        assert first["d"] == datetime.date(2024, 1, 1)
        assert first["ts"] == datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)


@pytest.mark.slow
def test_sqoop_text_options(tmp_path):
    db = tmp_path / "t.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT, n NUMERIC(6, 2), b BLOB)")
    con.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", [
        (1, 'plain', "1.50", b"\x00\xff"), (2, 'tab\there, "q" \\ x', None, None), (3, None, "-2.00", b"")])
    con.commit()

    def text(*flags):
        target = tmp_path / ("o%d" % len(os.listdir(tmp_path)))
        out = fastsync("import", "--connect", "jdbc:sqlite:%s" % db, "--table", "t", "-m", 1, "--as-textfile",
                       "--target-dir", target, *flags)
        assert out.returncode == 0, out.stderr
        return (target / "part-m-00000").read_bytes()

    # as Sqoop writes them: bytes in spaced hex; NULL enclosed and escaped like a value; inside
    # quotes only the quote and the escape are escaped (tests/test_sqoop_differential.py)
    assert text() == b'1,plain,1.50,00 ff\n2,tab\there, "q" \\ x,null,null\n3,null,-2.00,\n'
    assert text("--fields-terminated-by", "\\t", "--enclosed-by", '"', "--escaped-by", "\\\\",
                "--null-string", "\\\\N", "--null-non-string", "NA") == (
        b'"1"\t"plain"\t"1.50"\t"00 ff"\n'
        b'"2"\t"tab\there, \\"q\\" \\\\ x"\t"NA"\t"NA"\n'
        b'"3"\t"\\\\N"\t"-2.00"\t""\n')
    assert text("--optionally-enclosed-by", "'", "--lines-terminated-by", "|") == (
        b"1,plain,1.50,00 ff|2,tab\there, \"q\" \\ x,null,null|3,null,-2.00,|"
        .replace(b'2,tab\there, "q" \\ x', b"2,'tab\there, \"q\" \\ x'"))
    out = fastsync("import", "--connect", "jdbc:sqlite:%s" % db, "--table", "t", "--as-textfile",
                   "--fields-terminated-by", "ab", "--target-dir", tmp_path / "bad")
    assert out.returncode == 2 and "--fields-terminated-by: expected one character" in out.stderr


@pytest.mark.slow
def test_incremental_lastmodified_merges_on_the_key(tmp_path):
    db = tmp_path / "lm.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE acc (id INTEGER PRIMARY KEY, balance INTEGER, updated DATETIME)")
    con.executemany("INSERT INTO acc VALUES (?, ?, ?)", [(i, 100 + i, "2026-01-01 00:00:00") for i in range(10)])
    con.commit()
    base = ["import", "--connect", "jdbc:sqlite:%s" % db, "--table", "acc", "-m", 2, "--target-dir", tmp_path / "out",
            "--incremental", "lastmodified", "--check-column", "updated"]
    out = fastsync(*base, "--merge-key", "id")
    assert out.returncode == 0, out.stderr
    assert "--incremental lastmodified --check-column updated --last-value 2026-01-01 00:00:00" in out.stdout, out.stdout
    con.execute("UPDATE acc SET balance = 0, updated = '2026-02-01 00:00:00' WHERE id IN (3, 4)")
    con.execute("INSERT INTO acc VALUES (10, 7, '2026-02-01 00:00:00')")
    con.commit()
    out = fastsync(*base, "--last-value", "2026-01-01 00:00:00")
    assert out.returncode == 1 and "needs --merge-key or --append" in out.stderr, out.stderr
    out = fastsync(*base, "--last-value", "2026-01-01 00:00:00", "--merge-key", "id")
    assert out.returncode == 0, out.stderr
    assert "imported 3 rows" in out.stdout
    got = {r["id"]: r["balance"] for r in pq.read_table(tmp_path / "out").to_pylist()}
    assert got == {**{i: 100 + i for i in range(10)}, 3: 0, 4: 0, 10: 7}
    assert sorted(os.listdir(tmp_path / "out")) == ["_SUCCESS", "part-m-00000.parquet"]
    assert not [p for p in os.listdir(tmp_path) if ".old-" in p or ".tmp-" in p]


@pytest.mark.parametrize("fmt", ["parquet", "csv", "text"])
def test_lastmodified_merge_is_fastsync_merge(tmp_path, fmt):
    """--incremental lastmodified --merge-key goes through `fastsync merge`'s streaming merge:
    a key that comes twice in the new rows keeps one row, the last (the in-memory merge it
    replaces kept both), and every format merge reads works (it took Parquet and Arrow only)."""
    db = tmp_path / "lm.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE ev (id INTEGER PRIMARY KEY, k INTEGER, v TEXT, updated DATETIME)")
    con.executemany("INSERT INTO ev VALUES (?, ?, ?, ?)", [(i, i, "old%d" % i, "2026-01-01 00:00:00") for i in range(5)])
    con.commit()
    out = tmp_path / "out"
    base = ["import", "--connect", "jdbc:sqlite:%s" % db, "--table", "ev", "-m", 2, "--format", fmt, "--target-dir", out,
            "--incremental", "lastmodified", "--check-column", "updated", "--merge-key", "k"]
    r = fastsync(*base)
    assert r.returncode == 0, r.stderr
    con.executemany("INSERT INTO ev VALUES (?, ?, ?, ?)", [(5, 2, "new-a", "2026-02-01 00:00:00"),
                                                           (6, 2, "new-b", "2026-02-01 00:00:00"),
                                                           (7, 9, "new-c", "2026-02-01 00:00:00")])
    con.commit()
    r = fastsync(*base, "--last-value", "2026-01-01 00:00:00", "-m", 1)
    assert r.returncode == 0, r.stderr
    assert "imported 3 rows" in r.stdout
    parts = sorted(n for n in os.listdir(out) if n.startswith("part-m-"))
    assert parts == ["part-m-00000" + ("" if fmt == "text" else "." + fmt)]      # Sqoop text: no extension
    if fmt == "parquet":
        got = [(r["k"], r["v"]) for r in pq.read_table(out).to_pylist()]
    elif fmt == "csv":
        got = [(int(r["k"]), r["v"]) for r in pacsv.read_csv(out / parts[0]).to_pylist()]
    else:
        got = [(int(line.split(",")[1]), line.split(",")[2]) for line in (out / parts[0]).read_text().splitlines()]
    assert sorted(got) == [(0, "old0"), (1, "old1"), (2, "new-b"), (3, "old3"), (4, "old4"), (9, "new-c")]
    assert sorted(os.listdir(tmp_path)) == ["lm.db", "out"]


def test_where_still_applies_to_rows_with_a_null_split_key(tmp_path):
    db = tmp_path / "nk.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE n (k INTEGER, keep INTEGER)")
    con.executemany("INSERT INTO n VALUES (?, ?)", [(None, 0), (None, 1), (1, 0), (2, 1), (3, 1), (4, 0)])
    con.commit()
    out = fastsync("import", "--connect", "jdbc:sqlite:%s" % db, "--table", "n", "--split-by", "k", "-m", 2,
                   "--where", "keep = 1", "--target-dir", tmp_path / "o")
    assert out.returncode == 0, out.stderr
    got = sorted(pq.read_table(tmp_path / "o").to_pylist(), key=lambda r: (r["k"] is not None, r["k"] or 0))
    assert got == [{"k": None, "keep": 1}, {"k": 2, "keep": 1}, {"k": 3, "keep": 1}]


QUERY_DDL = {
    PG_URL: "CREATE TABLE {t} (id int PRIMARY KEY, s smallint, b bigint, r real, f double precision, n numeric(12,2), "
            "ok boolean, t text, v varchar(9), c char(4), raw bytea, d date, ts timestamp, tz timestamptz, tm time, "
            "iv interval, j jsonb)",
    MYSQL_URL: "CREATE TABLE {t} (id int PRIMARY KEY, s smallint, b bigint, r float, f double, n decimal(12,2), "
               "ok boolean, t text, v varchar(9), c char(4), raw blob, d date, ts datetime(6), tz timestamp(6) NULL, "
               "tm time(6), iv int, j json) DEFAULT CHARSET=utf8mb4",
}


@pytest.mark.parametrize("url", [PG_URL, MYSQL_URL], ids=["postgresql", "mariadb"])
@pytest.mark.slow
def test_free_form_query_is_read_natively_into_the_generic_paths_types(tmp_path, url):
    """`import --query` splits are read by the table path's native readers (PostgreSQL binary
    COPY, MySQL text rows) into exactly the types and values the generic path gives
    (--no-fast-path); a column they can't read that way (JSON) sends the split to the
    generic path. Decimal columns take their declared precision, so rows past the first
    1000 the query's types are sampled from may hold larger values."""
    import uuid
    name = "imq_" + uuid.uuid4().hex[:10]
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://").replace("mysql://", "mysql+pymysql://"))
    pg = url == PG_URL
    with engine.begin() as c:
        c.exec_driver_sql(QUERY_DDL[url].format(t=name))
        values = []
        for i in range(3000):
            values.append("(%d, %d, %d, %d.1, %d.3, %s, %s, %s, 'v%d', 'c', %s, '2026-01-%02d', '2026-01-01 00:00:00.%06d', "
                          "'2026-01-01 00:00:00.%06d', '12:00:00.%06d', %s, '{\"k\": %d}')" % (
                              i, i % 30000, i * 10 ** 9, i, i, "NULL" if i % 7 == 0 else "%d.%02d" % (i * 1000, i % 100),
                              ("true" if i % 2 else "false") if pg else i % 2, "NULL" if i % 10 == 0 else "'t\u00e9%d'" % i,
                              i, "'\\x0102'" if pg else "x'0102'", i % 28 + 1, i, i, i,
                              "'%d seconds'" % i if pg else str(i), i))
        c.exec_driver_sql("INSERT INTO %s VALUES %s" % (name, ", ".join(values)))
    try:
        cols = "id, s, b, r, f, n, n * 2 AS n2, ok, t, v, c, raw, d, ts, tz, tm, iv"
        for query, native in (("SELECT %s FROM %s WHERE $CONDITIONS" % (cols, name), True),
                              # jsonb has no native decoder; MariaDB's JSON is text, but an
                              # unsigned BIGINT sampled as int64 is not read natively
                              ("SELECT %s, %s FROM %s WHERE $CONDITIONS" % (cols, "j" if pg else "CAST(id AS UNSIGNED) AS u",
                                                                            name), False)):
            got = {}
            for fast in (True, False):
                out_dir = tmp_path / ("%s-%s" % (native, fast))
                out = fastsync("import", "--connect", url, "--query", query, "--split-by", "id", "-m", 2,
                               "--target-dir", out_dir, "--log-level", "INFO", *(() if fast else ("--no-fast-path",)))
                assert out.returncode == 0, out.stderr
                if fast:
                    said = "binary COPY, decoded natively" if pg else "read as MySQL text rows, decoded natively"
                    assert (out.stderr.count("--query split") == 2 and said in out.stderr) == native, out.stderr
                got[fast] = pq.read_table(out_dir).sort_by("id")
            assert got[True].num_rows == got[False].num_rows == 3000
            assert got[True].schema == got[False].schema
            assert got[True].to_pylist() == got[False].to_pylist()
            assert str(got[True].schema.field("n").type) == "decimal128(%d, 2)" % (12 if pg else 13)
            assert got[True].column("n").to_pylist()[2999] == decimal.Decimal("2999000.99")
    finally:
        with engine.begin() as c:
            c.exec_driver_sql("DROP TABLE %s" % name)
        engine.dispose()
