"""import --target-dir, export --export-dir, merge and import-all-tables --warehouse-dir on
s3:// URLs, end to end through the CLI, against a real S3-compatible server (moto's server
mode, tests/s3_support.py: the `s3` fixture) and the real PostgreSQL of scripts/services.sh.

On an object store a run publishes by manifest (fastsync/transfer/publish.py): its parts
under names of its own, then `_SUCCESS` listing the target's parts, written last; readers
take only what the manifest lists."""
import decimal
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from e2e_support import drop_tables, parquet_unless_told, poll

PG_URL = os.environ.get("FASTSYNC_TEST_PG_URL", "postgresql://fastsync:fastsync@127.0.0.1:5432/fastsync")
PG_JDBC = "jdbc:postgresql://127.0.0.1:5432/fastsync"
ITEMS, COPY = "s3items_%d" % os.getpid(), "s3items_copy_%d" % os.getpid()
N = 3000


@pytest.fixture(scope="module", autouse=True)
def _drop_server_tables():
    yield
    drop_tables(PG_URL, ITEMS, COPY)


def fastsync(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "fastsync", *parquet_unless_told(args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def rows(n=N, tag=""):
    return [{"id": i, "name": None if i % 97 == 0 else "n\u00e9%d%s \"x\"" % (i, tag),
             "price": decimal.Decimal("%d.%02d" % (i, i % 100)), "qty": (i * 7) % 1000 - 500} for i in range(n)]


def create(url, name, data):
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    md = sa.MetaData()
    t = sa.Table(name, md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                 sa.Column("name", sa.String(100)), sa.Column("price", sa.Numeric(12, 2)), sa.Column("qty", sa.Integer))
    with engine.begin() as conn:
        md.drop_all(conn)
        md.create_all(conn)
        if data:
            conn.execute(t.insert(), data)
    engine.dispose()


def sqlite_db(path, data=None):
    create("sqlite:///%s" % path, "items", rows() if data is None else data)
    return "jdbc:sqlite:%s" % path


def objects(s3, prefix):
    """The names of the objects below s3://bucket/prefix (relative to it), sorted."""
    base = "%s/%s" % (s3.bucket, prefix)
    return sorted(i.path[len(base) + 1:] for i in s3.fs.get_file_info(pafs.FileSelector(base, recursive=True,
                                                                                            allow_not_found=True))
                  if i.type == pafs.FileType.File)


def manifest(s3, prefix):
    with s3.fs.open_input_stream("%s/%s/_SUCCESS" % (s3.bucket, prefix)) as f:
        return json.loads(f.read())


def read_back(s3, prefix, fmt="parquet"):
    """The rows of the parts the manifest lists, read with pyarrow, as test rows, sorted by id."""
    out = []
    for name in manifest(s3, prefix)["filenames"]:
        path = "%s/%s/%s" % (s3.bucket, prefix, name)
        if fmt == "parquet":
            out += pq.read_table(path, filesystem=s3.fs).to_pylist()
        else:
            with s3.fs.open_input_stream(path) as f:
                t = pacsv.read_csv(f, convert_options=pacsv.ConvertOptions(
                    column_types={"id": pa.int64(), "name": pa.string(), "price": pa.string(), "qty": pa.int64()},
                    strings_can_be_null=True, quoted_strings_can_be_null=False))
            out += [{**r, "price": decimal.Decimal(r["price"])} for r in t.to_pylist()]
    return sorted(out, key=lambda r: r["id"])


def read_rows_of(url):
    """What fastsync's own readers (export's, merge's) take from a target: the ids."""
    from fastsync.transfer.formats import find_files
    ids = []
    for f in find_files(url):
        ids += pq.read_table(f.random_access(), columns=["id"]).column("id").to_pylist()
    return sorted(ids)


def one_error(out):
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 1 and len(lines) == 1, out.stderr
    return lines[0]


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
@pytest.mark.parametrize("source", ["postgresql", "sqlite"])
def test_import_to_s3_reads_back_and_the_manifest_lists_exactly_the_parts(s3, tmp_path, source, fmt):
    if source == "postgresql":
        create(PG_URL, ITEMS, rows())
        src = ("--connect", PG_JDBC, "--username", "fastsync", "--password", "fastsync", "--table", ITEMS)
    else:
        src = ("--connect", sqlite_db(tmp_path / "src.db"), "--table", "items")
    url = "s3://%s/warehouse/items" % s3.bucket
    out = fastsync("import", *src, "-m", 3, "--format", fmt, "--target-dir", url)
    assert out.returncode == 0, out.stderr
    assert "imported %d rows" % N in out.stdout and url in out.stdout
    listed = manifest(s3, "warehouse/items")["filenames"]
    assert len(listed) == 3 and all(n.startswith("part-m-0000%d-" % i) and n.endswith("." + fmt) for i, n in enumerate(listed))
    assert objects(s3, "warehouse/items") == sorted(["_SUCCESS", *listed])
    assert read_back(s3, "warehouse/items", fmt) == rows()
    # an existing target is refused, as on local disk
    out = fastsync("import", *src, "-m", 1, "--format", fmt, "--target-dir", url)
    assert "--target-dir %s already exists" % url in one_error(out)


class Reader(threading.Thread):
    """Reads the target with fastsync's readers over and over while a run publishes; records
    the row counts it saw (a part deleted under it by a --delete-target-dir that published
    meanwhile: read again)."""

    def __init__(self, url):
        super().__init__(daemon=True)
        self.url, self.seen, self.stop, self.error = url, set(), threading.Event(), None

    def run(self):
        from fastsync.transfer.formats import FileError
        while not self.stop.is_set():
            try:
                self.seen.add(len(read_rows_of(self.url)))
            except (FileError, OSError) as exc:
                if not any(gone in str(exc) for gone in ("does not exist", "NoSuchKey", "RESOURCE_NOT_FOUND")):
                    self.error = exc
                    return

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.join(60)
        assert self.error is None, self.error


def test_append_and_delete_target_dir_publish_the_new_set_at_once(s3, tmp_path):
    db = sqlite_db(tmp_path / "src.db")
    url = "s3://%s/t" % s3.bucket
    assert fastsync("import", "--connect", db, "--table", "items", "-m", 2, "--target-dir", url).returncode == 0
    first = manifest(s3, "t")["filenames"]
    with Reader(url) as reader:
        out = fastsync("import", "--connect", db, "--table", "items", "-m", 3, "--target-dir", url, "--append")
        assert out.returncode == 0, out.stderr
    assert reader.seen <= {N, 2 * N} and 2 * N in set(reader.seen) | {len(read_rows_of(url))}
    listed = manifest(s3, "t")["filenames"]
    assert listed[:2] == first and len(listed) == 5          # the old parts, then the new, numbered after them
    assert [n[:12] for n in listed] == ["part-m-%05d" % i for i in range(5)]
    assert objects(s3, "t") == sorted(["_SUCCESS", *listed])
    assert read_rows_of(url) == sorted(list(range(N)) * 2)
    with Reader(url) as reader:
        out = fastsync("import", "--connect", db, "--table", "items", "-m", 2, "--where", "id < 1000", "--target-dir", url,
                       "--delete-target-dir")
        assert out.returncode == 0, out.stderr
    assert reader.seen <= {2 * N, 1000}
    listed = manifest(s3, "t")["filenames"]
    assert len(listed) == 2 and not set(listed) & set(first)
    assert objects(s3, "t") == sorted(["_SUCCESS", *listed])      # the old parts deleted
    assert read_rows_of(url) == list(range(1000))


def test_append_onto_a_directory_another_tool_wrote(s3, tmp_path):
    """No manifest yet (Hadoop's empty `_SUCCESS`): the files there are the old set, and the
    first manifest lists them, then the new parts."""
    db = sqlite_db(tmp_path / "src.db")
    pq.write_table(pa.table({"id": list(range(10)), "name": ["x"] * 10, "qty": [1] * 10}),
                   "%s/plain/part-m-00000.parquet" % s3.bucket, filesystem=s3.fs)
    with s3.fs.open_output_stream("%s/plain/_SUCCESS" % s3.bucket):
        pass
    url = "s3://%s/plain" % s3.bucket
    out = fastsync("import", "--connect", db, "--table", "items", "--columns", "id,name,qty", "--where", "id < 5", "-m", 1,
                   "--target-dir", url, "--append")
    assert out.returncode == 0, out.stderr
    listed = manifest(s3, "plain")["filenames"]
    assert listed[0] == "part-m-00000.parquet" and listed[1].startswith("part-m-00001-") and len(listed) == 2
    assert read_rows_of(url) == sorted(list(range(10)) + list(range(5)))


def test_failed_import_leaves_the_old_target_as_it_was(s3, tmp_path):
    """A value the column's type can't hold in the last split: the other splits' parts were
    written; they are deleted, and the old target (its manifest and parts) is untouched,
    for --delete-target-dir and --append alike."""
    path = tmp_path / "src.db"
    db = sqlite_db(path)
    url = "s3://%s/t" % s3.bucket
    assert fastsync("import", "--connect", db, "--table", "items", "-m", 2, "--target-dir", url).returncode == 0
    before = objects(s3, "t"), manifest(s3, "t")
    con = sqlite3.connect(path)
    con.execute("UPDATE items SET qty = 'not a number' WHERE id = %d" % (N - 10))
    con.commit()
    con.close()
    for flag in ("--delete-target-dir", "--append"):
        out = fastsync("import", "--connect", db, "--table", "items", "-m", 3, "--target-dir", url, flag)
        assert "items.qty: cannot convert a value" in one_error(out)
        assert (objects(s3, "t"), manifest(s3, "t")) == before
        assert read_rows_of(url) == list(range(N))


@pytest.mark.slow
def test_killed_import_leaves_the_old_target_readable(s3, tmp_path):
    """kill -9 of the import and its split processes once one split's part is on S3: the
    old target reads as before (the part is listed by no manifest); the next
    --delete-target-dir removes the leftover."""
    create(PG_URL, ITEMS, rows(1000))
    url = "s3://%s/t" % s3.bucket
    src = ["--connect", PG_JDBC, "--username", "fastsync", "--password", "fastsync"]
    assert fastsync("import", *src, "--table", ITEMS, "-m", 2, "--target-dir", url).returncode == 0
    before = objects(s3, "t"), manifest(s3, "t")
    # split 0 (ids 1..1000) is quick, split 1 sleeps 10 ms a row
    slow = ["import", *src, "--query", "SELECT id, pg_sleep(CASE WHEN id > 1000 THEN 0.01 ELSE 0 END) IS NULL AS s "
            "FROM (SELECT x AS id FROM generate_series(1, 2000) x) t WHERE $CONDITIONS", "--split-by", "id", "-m", 2,
            "--boundary-query", "SELECT 1, 2000", "--target-dir", url, "--delete-target-dir"]
    p = subprocess.Popen([sys.executable, "-m", "fastsync", *map(str, slow)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         start_new_session=True)
    try:
        def written():
            assert p.poll() is None, p.stderr.read()
            return [n for n in objects(s3, "t") if n not in before[0]]
        leftover = poll(written, timeout=120, message="split 0's part on S3")
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(60)
        p.stderr.close()
    assert len(leftover) == 1 and leftover[0].startswith("part-m-00000-")
    assert manifest(s3, "t") == before[1] and objects(s3, "t") == sorted(before[0] + leftover)
    assert read_rows_of(url) == list(range(1000))
    out = fastsync("import", *src, "--table", ITEMS, "-m", 1, "--target-dir", url, "--delete-target-dir")
    assert out.returncode == 0, out.stderr
    assert objects(s3, "t") == sorted(["_SUCCESS", *manifest(s3, "t")["filenames"]])


def test_export_from_s3_into_postgresql(s3, tmp_path):
    create(PG_URL, ITEMS, rows())
    create(PG_URL, COPY, [])
    url = "s3://%s/items" % s3.bucket
    src = ["--connect", PG_JDBC, "--username", "fastsync", "--password", "fastsync"]
    assert fastsync("import", *src, "--table", ITEMS, "-m", 2, "--target-dir", url).returncode == 0
    out = fastsync("export", *src, "--table", COPY, "--export-dir", url, "-m", 2)
    assert out.returncode == 0, out.stderr
    assert "exported %d rows from 2 files in %s" % (N, url) in out.stdout
    engine = sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        got = [dict(r._mapping) for r in conn.exec_driver_sql("SELECT id, name, price, qty FROM %s ORDER BY id" % COPY)]
    engine.dispose()
    assert got == rows()


def test_merge_on_s3_and_incremental_lastmodified_merge_key(s3, tmp_path):
    path = tmp_path / "src.db"
    db = sqlite_db(path)
    b = "s3://%s" % s3.bucket
    assert fastsync("import", "--connect", db, "--table", "items", "-m", 2, "--target-dir", b + "/old").returncode == 0
    new = [r for r in rows(N + 500, tag="+") if r["id"] % 3 == 0]          # some replace old rows, some are new
    sqlite_db(tmp_path / "new.db", new)
    assert fastsync("import", "--connect", "jdbc:sqlite:%s" % (tmp_path / "new.db"), "--table", "items", "-m", 2,
                    "--target-dir", b + "/new").returncode == 0
    out = fastsync("merge", "--new-data", b + "/new", "--onto", b + "/old", "--target-dir", b + "/merged", "--merge-key", "id")
    assert out.returncode == 0, out.stderr
    want = sorted({**{r["id"]: r for r in rows()}, **{r["id"]: r for r in new}}.values(), key=lambda r: r["id"])
    assert read_back(s3, "merged") == want
    assert objects(s3, "merged") == sorted(["_SUCCESS", *manifest(s3, "merged")["filenames"]])
    out = fastsync("merge", "--new-data", b + "/new", "--onto", b + "/old", "--target-dir", b + "/merged", "--merge-key", "id")
    assert "--target-dir %s/merged already exists" % b in one_error(out)
    out = fastsync("merge", "--new-data", b + "/new", "--onto", b + "/new", "--target-dir", b + "/merged", "--merge-key", "id",
                   "--delete-target-dir")
    assert out.returncode == 0, out.stderr
    assert read_back(s3, "merged") == new
    assert objects(s3, "merged") == sorted(["_SUCCESS", *manifest(s3, "merged")["filenames"]])
    # import --incremental lastmodified --merge-key onto an S3 target: the new rows staged in
    # _temporary/, merged, removed
    con = sqlite3.connect(path)
    con.execute("ALTER TABLE items ADD COLUMN updated DATETIME DEFAULT '2026-01-01 00:00:00'")
    con.commit()
    inc = ["import", "--connect", db, "--table", "items", "-m", 2, "--target-dir", b + "/inc", "--incremental",
           "lastmodified", "--check-column", "updated", "--merge-key", "id"]
    assert fastsync(*inc).returncode == 0
    con.execute("UPDATE items SET qty = 12345, updated = '2026-02-01 00:00:00' WHERE id IN (3, 4)")
    con.commit()
    out = fastsync(*inc, "--last-value", "2026-01-01 00:00:00")
    assert out.returncode == 0, out.stderr
    assert "imported 2 rows" in out.stdout
    got = {r["id"]: r["qty"] for r in read_back(s3, "inc")}
    assert got == {**{r["id"]: r["qty"] for r in rows()}, 3: 12345, 4: 12345}
    assert objects(s3, "inc") == sorted(["_SUCCESS", *manifest(s3, "inc")["filenames"]])


def test_import_all_tables_into_an_s3_warehouse(s3, tmp_path):
    db = tmp_path / "src.db"
    sqlite_db(db)
    create("sqlite:///%s" % db, "others", rows(100))
    out = fastsync("import-all-tables", "--connect", "jdbc:sqlite:%s" % db, "-m", 1,
                   "--warehouse-dir", "s3://%s/wh" % s3.bucket)
    assert out.returncode == 0, out.stderr
    assert read_back(s3, "wh/items") == rows() and read_back(s3, "wh/others") == rows(100)


def test_missing_bucket_and_unreachable_store_fail_in_one_line(s3, tmp_path):
    db = sqlite_db(tmp_path / "src.db")
    url = "s3://no-such-bucket-%s/t" % s3.bucket
    out = fastsync("import", "--connect", db, "--table", "items", "--target-dir", url)
    assert one_error(out) == "fastsync: error: --target-dir %s: no such bucket no-such-bucket-%s" % (url, s3.bucket)
    out = fastsync("export", "--connect", db, "--table", "items", "--export-dir", url)
    assert "--export-dir %s: no such bucket" % url in one_error(out)
    out = fastsync("merge", "--new-data", url, "--onto", url, "--target-dir", "s3://%s/m" % s3.bucket, "--merge-key", "id")
    assert "--onto %s: no such bucket" % url in one_error(out)
    assert objects(s3, "m") == []
    out = fastsync("export", "--connect", db, "--table", "items", "--export-dir", "s3://%s/nothing" % s3.bucket)
    assert "--export-dir s3://%s/nothing: no such directory" % s3.bucket in one_error(out)
    # nothing listens on the port: one line naming the flag and URL, before any split runs
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    url = "s3://%s/t" % s3.bucket
    out = fastsync("import", "--connect", db, "--table", "items", "--target-dir", url,
                   env={"AWS_ENDPOINT_URL": "http://127.0.0.1:%d" % closed})
    err = one_error(out)
    assert err.startswith("fastsync: error: --target-dir %s: " % url) and "connect" in err.lower(), err
    assert objects(s3, "t") == []


@pytest.mark.slow
def test_cluster_workers_write_and_read_s3(s3, tmp_path):
    """--cluster local:2: the workers write their parts straight into the bucket (attempt
    names, the accepted one moved to its run's name, then the manifest) and load the parts
    of an S3 export dir."""
    create(PG_URL, ITEMS, rows())
    create(PG_URL, COPY, [])
    url = "s3://%s/cl" % s3.bucket
    src = ["--connect", PG_JDBC, "--username", "fastsync", "--password-file", tmp_path / "pw"]
    (tmp_path / "pw").write_text("fastsync\n")
    out = fastsync("import", *src, "--table", ITEMS, "-m", 3, "--cluster", "local:2", "--target-dir", url)
    assert out.returncode == 0, out.stderr
    names = manifest(s3, "cl")["filenames"]
    assert len(names) == 3 and objects(s3, "cl") == sorted(names + ["_SUCCESS"])     # no attempt file left
    assert read_back(s3, "cl") == rows()
    out = fastsync("export", *src, "--table", COPY, "--export-dir", url, "-m", 2, "--cluster", "local:2")
    assert out.returncode == 0, out.stderr
    engine = sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        got = [dict(r._mapping) for r in conn.exec_driver_sql("SELECT id, name, price, qty FROM %s ORDER BY id" % COPY)]
    engine.dispose()
    assert got == rows()
