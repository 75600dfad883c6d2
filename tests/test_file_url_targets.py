"""file:// URLs as --target-dir, --export-dir, merge's directories and --warehouse-dir: the
same local directories as a plain path gives (published by rename, an empty `_SUCCESS`)."""
import os
import sqlite3
import subprocess
import sys

import pyarrow.parquet as pq

from e2e_support import parquet_unless_told


def fastsync(*args):
    return subprocess.run([sys.executable, "-m", "fastsync", *parquet_unless_told(args)], capture_output=True, text=True, timeout=300)


def make_db(path, n=2000, table="items"):
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE %s (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER)" % table)
    con.executemany("INSERT INTO %s VALUES (?, ?, ?)" % table, [(i, "n%d" % i, i * 3) for i in range(n)])
    con.execute("CREATE TABLE copy (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER)")
    con.commit()
    return con


def test_import_export_merge_and_warehouse_on_file_urls(tmp_path):
    db = tmp_path / "src.db"
    con = make_db(db)
    connect = "jdbc:sqlite:%s" % db
    url = "file://%s" % (tmp_path / "out")
    out = fastsync("import", "--connect", connect, "--table", "items", "-m", 2, "--target-dir", url)
    assert out.returncode == 0, out.stderr
    assert sorted(os.listdir(tmp_path / "out")) == ["_SUCCESS", "part-m-00000.parquet", "part-m-00001.parquet"]
    assert os.path.getsize(tmp_path / "out" / "_SUCCESS") == 0
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p or ".old-" in p]
    out = fastsync("import", "--connect", connect, "--table", "items", "-m", 1, "--target-dir", url, "--append")
    assert out.returncode == 0, out.stderr
    assert sorted(os.listdir(tmp_path / "out"))[1:] == ["part-m-0000%d.parquet" % i for i in range(3)]
    out = fastsync("export", "--connect", connect, "--table", "copy", "--export-dir", url)
    assert out.returncode == 1 and "UNIQUE" in out.stderr          # every row twice: nothing written
    out = fastsync("import", "--connect", connect, "--table", "items", "-m", 2, "--target-dir", url, "--delete-target-dir")
    assert out.returncode == 0, out.stderr
    out = fastsync("export", "--connect", connect, "--table", "copy", "--export-dir", url)
    assert out.returncode == 0, out.stderr
    assert con.execute("SELECT * FROM copy ORDER BY id").fetchall() == con.execute("SELECT * FROM items ORDER BY id").fetchall()
    # merge: new rows onto the import
    con.execute("UPDATE items SET qty = -1 WHERE id < 10")
    con.commit()
    new = "file://%s" % (tmp_path / "new")
    assert fastsync("import", "--connect", connect, "--table", "items", "--where", "id < 10", "-m", 1,
                    "--target-dir", new).returncode == 0
    out = fastsync("merge", "--new-data", new, "--onto", url, "--target-dir", "file://%s" % (tmp_path / "merged"),
                   "--merge-key", "id")
    assert out.returncode == 0, out.stderr
    got = {r["id"]: r["qty"] for r in pq.read_table(tmp_path / "merged").to_pylist()}
    assert got == {i: -1 if i < 10 else i * 3 for i in range(2000)}
    # import-all-tables into a file:// warehouse
    out = fastsync("import-all-tables", "--connect", connect, "-m", 1, "--warehouse-dir", "file://%s" % (tmp_path / "wh"))
    assert out.returncode == 0, out.stderr
    assert sorted(os.listdir(tmp_path / "wh")) == ["copy", "items"]
    assert pq.read_table(tmp_path / "wh" / "items").num_rows == 2000


def test_publishing_on_a_renaming_filesystem_other_than_local_disk(tmp_path):
    """The path HDFS takes (a pyarrow filesystem that renames, not the local one: here fsspec's
    local files behind pyarrow's PyFileSystem, as fastsync.hdfs wraps WebHDFS): new, append
    (parts renamed in after the old), replace (swapped), a failed run discarded; merge
    reads and writes there too."""
    import fsspec
    import pyarrow as pa
    import pyarrow.fs as pafs

    from fastsync.filesystems import Location
    from fastsync.transfer import publish
    from fastsync.transfer.formats import Output, find_files
    from fastsync.transfer.merger import MergeJob, run_merge

    fs = pafs.PyFileSystem(pafs.FSSpecHandler(fsspec.filesystem("file")))

    def loc(name):
        return Location(fs, str(tmp_path / name), "wrapped://%s" % name, True)

    def run(target, mode, *ids_per_part, fail=False):
        stage = publish.start(target, append=mode == "append")
        for i, ids in enumerate(ids_per_part):
            w = Output("parquet").open(publish.sink(fs, stage.part(i, "parquet")), pa.schema([("id", pa.int64())]))
            w.write_batch(pa.record_batch([pa.array(ids, pa.int64())], names=["id"]))
            w.close()
        if fail:
            publish.discard(stage)
            return
        publish.finish(stage, mode)

    def ids(target):
        return sorted(i for f in find_files(target) for i in pq.read_table(f.random_access()).column("id").to_pylist())

    t = loc("t")
    assert not publish.exists(t)
    run(t, "new", [1, 2], [3])
    assert sorted(os.listdir(tmp_path / "t")) == ["_SUCCESS", "part-m-00000.parquet", "part-m-00001.parquet"]
    run(t, "append", [4], [5])
    assert sorted(os.listdir(tmp_path / "t"))[1:] == ["part-m-0000%d.parquet" % i for i in range(4)]
    assert ids(t) == [1, 2, 3, 4, 5]
    run(t, "replace", [9], fail=True)
    assert ids(t) == [1, 2, 3, 4, 5]
    run(t, "replace", [7, 8])
    assert ids(t) == [7, 8] and sorted(os.listdir(tmp_path / "t")) == ["_SUCCESS", "part-m-00000.parquet"]
    assert sorted(os.listdir(tmp_path)) == ["t"]             # no temporary or old directory left
    new = loc("new")
    run(new, "new", [8, 20])
    r = run_merge(MergeJob(new_data=new, onto=t, target_dir=loc("merged"), merge_key="id"))
    assert r["rows"] == 3 and ids(loc("merged")) == [7, 8, 20]


def test_an_unreachable_object_store_fails_within_a_bounded_wait_in_one_line(tmp_path):
    """gs:// with no reachable store (no credentials, no route): one line naming the flag and
    the URL after the bounded retries, exit 1 (pyarrow's own default retries 15 minutes)."""
    db = tmp_path / "src.db"
    make_db(db, n=10)
    out = subprocess.run([sys.executable, "-m", "fastsync", "import", "--connect", "jdbc:sqlite:%s" % db, "--table", "items",
                          "--target-dir", "gs://fastsync-no-such-bucket/x"], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "FASTSYNC_GCS_RETRY_SECONDS": "2"})
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 1 and len(lines) == 1, out.stderr
    assert lines[0].startswith("fastsync: error: --target-dir gs://fastsync-no-such-bucket/x: "), lines[0]
