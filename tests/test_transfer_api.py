"""Transfers as functions (fastsync.transfer.api): import_table gives the files the CLI gives
(SQLite, PostgreSQL, MariaDB), export_files, merge, list_tables and eval, errors carry the
CLI's line, the progress callback, read_table's batches."""
import logging
import os
import sqlite3

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import fastsync
from e2e_support import drop_tables
from test_import import MYSQL_URL, PG_URL, create, fastsync as cli, rows
from test_import_sqlite import make_db

TABLE = "api_items_%d" % os.getpid()        # per process: xdist workers share the servers
URLS = {"postgresql": PG_URL, "mariadb": MYSQL_URL}


@pytest.fixture(scope="module")
def server_tables():
    for url in URLS.values():
        create(url, TABLE)
    yield TABLE
    for url in URLS.values():
        drop_tables(url, TABLE)


@pytest.fixture
def sqlite_url(tmp_path):
    create("sqlite:///%s" % (tmp_path / "src.db"))
    return "sqlite:///%s" % (tmp_path / "src.db")


def same_files(api_dir, cli_dir):
    """Same part files, of the same rows (and schema) file by file."""
    names = sorted(n for n in os.listdir(cli_dir) if not n.startswith("."))
    assert sorted(n for n in os.listdir(api_dir) if not n.startswith(".")) == names
    for n in names:
        if n.endswith(".parquet"):
            assert pq.read_table(api_dir / n).equals(pq.read_table(cli_dir / n)), n
    return names


@pytest.mark.parametrize("db", ["sqlite", "postgresql", "mariadb"])
def test_import_table_gives_the_files_the_cli_gives(db, request, tmp_path):
    if db == "sqlite":
        url, table = request.getfixturevalue("sqlite_url"), "items"
    else:
        url, table = URLS[db], request.getfixturevalue("server_tables")
    out = cli("import", "--connect", url, "--table", table, "-m", 2, "--as-parquetfile", "--target-dir", tmp_path / "cli")
    assert out.returncode == 0, out.stderr
    updates = []
    r = fastsync.import_table(url, table=table, target_dir=tmp_path / "api", num_mappers=2, progress=updates.append)
    names = same_files(tmp_path / "api", tmp_path / "cli")
    assert r.rows == len(rows()) and sum(s.rows for s in r.splits) == r.rows and len(r.splits) == 2
    assert [os.path.basename(f) for f in r.files] == [n for n in names if n.startswith("part-")]
    assert r.bytes == sum(os.path.getsize(f) for f in r.files) == sum(s.bytes for s in r.splits)
    assert r.target == str(tmp_path / "api") and r.seconds > 0 and r.last_value is None
    # the callback got the figures of the status line: rows, rate, rows per split (the last: final)
    assert updates and isinstance(updates[-1], fastsync.transfer.api.TransferProgress)
    assert updates[-1].rows == r.rows and updates[-1].per_split == tuple(s.rows for s in r.splits)
    assert updates[-1].rows_per_s > 0


def test_options_as_flags_text_and_incremental(sqlite_url, tmp_path):
    """Snake-case flags (a separator starting the value, a list of columns, store_false by its
    destination), the same text files as the CLI; an incremental import's next last value."""
    argv = ["--fields-terminated-by", "|", "--columns", "id,name,qty", "--where", "id < 100", "--as-textfile",
            "--no-fast-path"]
    out = cli("import", "--connect", sqlite_url, "--table", "items", "-m", 1, "--target-dir", tmp_path / "cli", *argv)
    assert out.returncode == 0, out.stderr
    r = fastsync.import_table(sqlite_url, table="items", target_dir=tmp_path / "api", fields_terminated_by="|",
                              columns=["id", "name", "qty"], where="id < 100", as_textfile=True, fast_path=False)
    names = same_files(tmp_path / "api", tmp_path / "cli")
    for n in names:
        assert (tmp_path / "api" / n).read_bytes() == (tmp_path / "cli" / n).read_bytes()
    assert r.rows == 100 and os.path.basename(r.files[0]) == "part-m-00000"      # Sqoop's name: no extension

    def broken(update):
        raise RuntimeError("a callback's bug")
    # a failing callback is logged, and the import goes on
    r = fastsync.import_table(sqlite_url, table="items", target_dir=tmp_path / "inc", incremental="append",
                              check_column="id", last_value=4989, format="csv", progress=broken)
    assert r.rows == 10 and r.last_value == "4999" and r.files[0].endswith(".csv")


def test_errors_carry_the_cli_line(sqlite_url, tmp_path):
    cases = [({"table": "nope"}, ["--table", "nope"], fastsync.TransferError, 1),
             ({"table": "items", "num_mappers": 0}, ["--table", "items", "-m", "0"], fastsync.transfer.api.UsageError, 2),
             ({"table": "items", "query": "SELECT 1"}, ["--table", "items", "--query", "SELECT 1"],
              fastsync.transfer.api.UsageError, 2)]
    for kwargs, argv, kind, code in cases:
        out = cli("import", "--connect", sqlite_url, "--target-dir", tmp_path / "x", *argv)
        assert out.returncode == code
        with pytest.raises(kind) as caught:
            fastsync.import_table(sqlite_url, target_dir=tmp_path / "x", **kwargs)
        line = out.stderr.strip().splitlines()[-1]
        assert line.endswith("error: " + str(caught.value)), (line, str(caught.value))
        assert caught.value.code == code
    assert not (tmp_path / "x").exists()
    with pytest.raises(fastsync.TransferError, match="unrecognized arguments: --no-such-flag 3"):
        fastsync.import_table(sqlite_url, table="items", target_dir=tmp_path / "x", no_such_flag=3)
    with pytest.raises(fastsync.TransferError, match="^export into nope failed: "):
        fastsync.export_files(sqlite_url, table="nope", export_dir=tmp_path)


def test_export_round_trip_merge_list_tables_and_eval(sqlite_url, tmp_path):
    url2 = "sqlite:///%s" % (tmp_path / "dst.db")
    con = sqlite3.connect(tmp_path / "dst.db")
    con.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name VARCHAR(100), price NUMERIC(12, 2), qty INTEGER)")
    con.commit()
    assert fastsync.list_tables(url2) == ["items"]
    fastsync.import_table(sqlite_url, table="items", target_dir=tmp_path / "out", num_mappers=2)
    updates = []
    r = fastsync.export_files(url2, table="items", export_dir=tmp_path / "out", progress=updates.append)
    assert r.rows == len(rows()) and len(r.files) == 2 and r.bytes > 0 and r.figures["writers"] == 1 and updates
    assert fastsync.eval(url2, "SELECT count(*), sum(qty) FROM items") == fastsync.eval(sqlite_url, "SELECT count(*), sum(qty) FROM items")
    got = fastsync.eval(url2, "SELECT id, name FROM items WHERE id IN (1, 97) ORDER BY id")
    assert got == [(1, "n\u00e91\t\"x\""), (97, None)] and got.columns == ["id", "name"]
    changed = fastsync.eval(url2, "UPDATE items SET qty = 0 WHERE id < 10")
    assert changed == [] and changed.rowcount == 10
    # merge: the changed rows (and one new) onto the first import
    fastsync.eval(url2, "INSERT INTO items VALUES (5000, 'new', 1.5, 7)")
    fastsync.import_table(url2, table="items", where="id < 10 OR id = 5000", target_dir=tmp_path / "new")
    r = fastsync.merge(new_data=tmp_path / "new", onto=tmp_path / "out", target_dir=tmp_path / "merged", merge_key="id")
    assert (r.rows, r.figures["replaced"], r.figures["added"]) == (len(rows()) + 1, 10, 1)
    merged = pq.read_table(tmp_path / "merged").sort_by("id")
    assert merged.column("qty").to_pylist()[:12] == [0] * 10 + [r["qty"] for r in rows()[10:12]]
    with pytest.raises(fastsync.TransferError, match="no such table: nope"):
        fastsync.eval(url2, "SELECT * FROM nope")


def server_url(db, request):
    return URLS[db], request.getfixturevalue("server_tables")


@pytest.mark.parametrize("db", ["postgresql", "mariadb"])
def test_read_table_from_the_servers(db, request):
    url, table = server_url(db, request)
    reader = fastsync.read_table(url, table=table, split_by="id", num_mappers=2, batch_size=1000)
    assert reader.schema.names == ["id", "name", "price", "qty"]
    df = reader.to_pandas()
    arrow = reader.to_arrow().sort_by("id")
    assert arrow.to_pylist() == rows()
    assert df.sort_values("id").reset_index(drop=True).equals(arrow.to_pandas())
    q = fastsync.read_table(url, query="SELECT id, qty FROM %s WHERE $CONDITIONS AND id < 100" % table, split_by="id",
                            num_mappers=2).to_arrow()
    assert sorted(q.column("id").to_pylist()) == list(range(100))


def test_read_table_streams_batches_on_sqlite(sqlite_url):
    reader = fastsync.read_table(sqlite_url, table="items", columns="id,qty", where="id < 4500", batch_size=1000)
    batches = list(reader)
    assert [len(b) for b in batches] == [1000] * 4 + [500]
    assert reader.schema == pa.schema([("id", pa.int64()), ("qty", pa.int64())])
    assert pa.Table.from_batches(batches).column("qty").to_pylist() == [r["qty"] for r in rows()[:4500]]
    # stopped early, then read again from the start
    for b in reader:
        assert b.column("id")[0].as_py() == 0
        break
    assert reader.to_arrow().num_rows == 4500
    empty = fastsync.read_table(sqlite_url, table="items", where="id < 0")
    assert empty.to_arrow().num_rows == 0 and empty.schema.names == ["id", "name", "price", "qty"]
    with pytest.raises(fastsync.TransferError, match="read_table: --target-dir"):
        fastsync.read_table(sqlite_url, table="items", target_dir="x")
    with pytest.raises(fastsync.TransferError, match="--table nope: no such table"):
        fastsync.read_table(sqlite_url, table="nope")


def test_read_table_sqlite_fast_path_falling_back_mid_split(tmp_path, caplog):
    """ADBC meets text in a BLOB column in a split's second batch: the split is read again by
    the generic path and the rows already given are not given twice."""
    caplog.set_level(logging.INFO, logger="fastsync.import")
    db = tmp_path / "src.db"
    con = make_db(db)
    con.execute("UPDATE t SET bl = 'text in a blob' WHERE id = 700")
    con.commit()
    url = "sqlite:///%s" % db
    fast = fastsync.read_table(url, table="t", batch_size=500).to_arrow()
    assert "generic path, read through SQLAlchemy (a value the generic path reads" in caplog.text
    generic = fastsync.read_table(url, table="t", batch_size=500, fast_path=False).to_arrow()
    assert fast.num_rows == 1200 and fast.column("id").to_pylist() == list(range(1, 1201))
    assert fast.equals(generic)
    assert fast.column("bl")[699].as_py() == b"text in a blob"
