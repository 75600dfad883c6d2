"""`fastsync merge` end to end through the CLI: two datasets written by `fastsync import` from
SQLite, merged, and the result read back with other readers (pyarrow, fastavro, Python's csv
and json, a split on the delimiter) and compared value by value with the merge computed here in plain
Python from the rows put into the source tables."""
import base64
import csv
import datetime
import decimal
import gzip
import json
import os
import sqlite3

import fastavro
import pyarrow.parquet as pq
import pytest

from test_import import fastsync

OLD = range(0, 2000)            # onto: ids 0..1999
NEW = range(1500, 2500)         # new-data: 500 replace, 500 are added
# a second new-data part (imported after, so later in name order): keys repeated within
# it (the later row wins) and keys of NEW again (they win over NEW's)
DUP = [(1600, "dup-1600-first"), (1600, "dup-1600-last"), (1700, "dup-1700"), (3000, "dup-3000-a"),
       (3000, "dup-3000-b"), (5, "dup-5")]


def row(i, tag):
    name = None if i % 97 == 0 else '%s n\u00e9%d, "x"' % (tag, i)
    return (i, name, decimal.Decimal("%d.%02d" % (i, i % 100)), (i * 7) % 1000 - 500)


def expected():
    """The merge, computed from the source rows: later rows of the same key win."""
    out = {i: row(i, "old") for i in OLD}
    for i in NEW:
        out[i] = row(i, "new")
    for i, name in DUP:
        out[i] = (i, name, decimal.Decimal("1.25"), 7)
    return sorted(out.values())


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "src.db"
    c = sqlite3.connect(path)
    for t in ("old", "new"):
        c.execute("CREATE TABLE %s (id INTEGER PRIMARY KEY, name VARCHAR(100), price NUMERIC(12, 2), qty INTEGER)" % t)
    c.execute("CREATE TABLE dup (id INTEGER, name VARCHAR(100), price NUMERIC(12, 2), qty INTEGER)")   # no key
    c.executemany("INSERT INTO old VALUES (?, ?, ?, ?)", [_sql(row(i, "old")) for i in OLD])
    c.executemany("INSERT INTO new VALUES (?, ?, ?, ?)", [_sql(row(i, "new")) for i in NEW])
    c.executemany("INSERT INTO dup VALUES (?, ?, '1.25', 7)", DUP)
    c.execute("CREATE TABLE narrow (id INTEGER PRIMARY KEY, name VARCHAR(100), price NUMERIC(12, 2))")
    c.execute("INSERT INTO narrow VALUES (1, 'a', '1.00')")
    c.execute("CREATE TABLE badtype (id INTEGER PRIMARY KEY, name VARCHAR(100), price NUMERIC(12, 2), qty VARCHAR(10))")
    c.execute("INSERT INTO badtype VALUES (1, 'a', '1.00', 'many')")
    c.execute("CREATE TABLE nullkey (id INTEGER, name VARCHAR(100), price NUMERIC(12, 2), qty INTEGER)")
    c.execute("INSERT INTO nullkey VALUES (1, 'a', '1.00', 1), (NULL, 'b', '2.00', 2)")
    c.commit()
    c.close()
    return path


def _sql(r):
    return (r[0], r[1], str(r[2]), r[3])


def imp(db, table, target, *flags, append=False):
    out = fastsync("import", "--connect", "sqlite:///%s" % db, "--table", table, "--target-dir", target,
                   *(["-m", 2] if table in ("old", "new") else ["-m", 1]), *(["--append"] if append else []), *flags)
    assert out.returncode == 0, out.stderr


def datasets(db, tmp_path, *flags):
    imp(db, "old", tmp_path / "onto", *flags)
    imp(db, "new", tmp_path / "newdata", *flags)
    imp(db, "dup", tmp_path / "newdata", *flags, append=True)
    return tmp_path / "onto", tmp_path / "newdata"


def merge(new, onto, target, *flags, key="id"):
    return fastsync("merge", "--new-data", new, "--onto", onto, "--target-dir", target, "--merge-key", key, *flags)


def parts(d):
    return sorted(n for n in os.listdir(d) if n.startswith("part-"))


def as_text(rows, null):
    """Rows as the text a text format holds, NULL as `null`."""
    return sorted((str(i), null if n is None else n, str(p), str(q)) for i, n, p, q in rows)


# format flags, part suffix, reader of one part file -> rows as tuples of text (NULL: None)
def read_parquet(path):
    return [(str(r["id"]), r["name"], str(r["price"]), str(r["qty"])) for r in pq.read_table(path).to_pylist()]


def read_avro(path):
    with open(path, "rb") as f:
        return [(str(r["id"]), r["name"], str(r["price"]), str(r["qty"])) for r in fastavro.reader(f)]


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["id", "name", "price", "qty"]
    return [tuple(None if v == "" else v for v in r) for r in rows[1:]]   # NULL: an empty field


def read_text(path):
    with open(path, encoding="utf-8") as f:
        return [tuple(None if v == "\\N" else v for v in line.split("|")) for line in f.read().splitlines()]


def read_jsonl(path):
    data = str(path).endswith(".zst") and _unzstd(path) or open(path, "rb").read()
    rows = [json.loads(line) for line in data.decode("utf-8").split("\n") if line]
    assert all(list(r) == ["id", "name", "price", "qty"] for r in rows)
    # import writes a decimal as a JSON string, an integer as a JSON number
    assert all(type(r["id"]) is int and (r["price"] is None or type(r["price"]) is str) for r in rows)
    return [(str(r["id"]), r["name"], r["price"], None if r["qty"] is None else str(r["qty"])) for r in rows]


def _unzstd(path):
    import pyarrow as pa
    with pa.CompressedInputStream(pa.OSFile(str(path)), "zstd") as s:
        return s.read()


TEXT = ["--as-textfile", "--fields-terminated-by", "|", "--null-string", "\\\\N", "--null-non-string", "\\\\N"]
TEXT_IN = ["--columns", "id,name,price,qty", "--input-fields-terminated-by", "|", "--input-null-string", "\\\\N",
           "--input-null-non-string", "\\\\N"]


@pytest.mark.parametrize("flags,merge_flags,suffix,reader", [
    ([], [], ".parquet", read_parquet),
    (["--as-avrodatafile"], [], ".avro", read_avro),
    (["--format", "csv"], [], ".csv", read_csv),
    (TEXT, TEXT_IN, "", read_text),      # Sqoop text: part-m-00000
    (["--format", "jsonl"], [], ".jsonl", read_jsonl),
    (["--format", "jsonl", "--compression-codec", "zstd"], [], ".jsonl.zst", read_jsonl),
], ids=["parquet", "avro", "csv", "text", "jsonl", "jsonl-zstd"])
def test_merge_replaces_adds_keeps_and_last_duplicate_wins(db, tmp_path, flags, merge_flags, suffix, reader):
    onto, new = datasets(db, tmp_path, *flags)
    assert len(parts(new)) == 3            # two splits of `new`, then `dup`'s part
    out = merge(new, onto, tmp_path / "merged", *merge_flags)
    assert out.returncode == 0, out.stderr
    want = expected()
    replaced = len(({*NEW} | {i for i, _ in DUP}) & set(OLD))
    added = len(want) - len(OLD)
    assert out.stdout.startswith("merged %d rows (%d replaced, %d added) from %s onto %s into %s in "
                                 % (len(want), replaced, added, new, onto, tmp_path / "merged")), out.stdout
    assert "rows/s" in out.stdout and out.stderr == ""       # in a pipe: the summary line only
    files = sorted(os.listdir(tmp_path / "merged"))
    assert "_SUCCESS" in files and all(f.endswith(suffix) for f in files if f != "_SUCCESS")
    got = sorted(r for p in parts(tmp_path / "merged") for r in reader(tmp_path / "merged" / p))
    assert len({r[0] for r in got}) == len(got)               # one row per key
    assert got == as_text(want, None)
    # spot checks of the three kinds of rows
    by_id = {int(r[0]): r for r in got}
    assert by_id[10][1] == 'old n\u00e910, "x"'                  # untouched
    assert by_id[1800][1] == 'new n\u00e91800, "x"'              # replaced
    assert by_id[2400][1] == 'new n\u00e92400, "x"'              # added
    assert by_id[1600][1] == "dup-1600-last" and by_id[3000][1] == "dup-3000-b"   # last duplicate wins
    assert by_id[5][1] == "dup-5" and by_id[97][1] is None       # NULL kept
    assert not [n for n in os.listdir(tmp_path) if ".tmp-" in n]


def test_compressed_text_keeps_its_codec_and_output_options_apply(db, tmp_path):
    onto, new = datasets(db, tmp_path, *TEXT, "--compression-codec", "zstd")
    out = merge(new, onto, tmp_path / "merged", *TEXT_IN, "--fields-terminated-by", "\\t")
    assert out.returncode == 0, out.stderr
    merged = tmp_path / "merged"
    assert parts(merged) and all(p.split(".")[1:] == ["zst"] for p in parts(merged))     # part-m-00000.zst, as Sqoop
    import pyarrow as pa
    got = []
    for p in parts(merged):
        with pa.CompressedInputStream(pa.OSFile(str(merged / p)), "zstd") as s:
            got += [tuple(None if v == "\\N" else v for v in line.split("\t"))
                    for line in s.read().decode("utf-8").splitlines()]
    assert sorted(got) == as_text(expected(), None)


@pytest.mark.slow
def test_progress_line_on_a_terminal(db, tmp_path):
    import sys

    from e2e_support import run_on_terminal
    onto, new = datasets(db, tmp_path)
    code, text = run_on_terminal([sys.executable, "-m", "fastsync", "merge", "--new-data", str(new), "--onto", str(onto),
                                  "--target-dir", str(tmp_path / "merged"), "--merge-key", "id"])
    assert code == 0, text
    assert "rows, " in text and " rows/s   " in text and "\r" in text, text     # the status line
    assert "merged %d rows" % len(expected()) in text


@pytest.mark.slow
def test_delete_target_dir_and_existing_target(db, tmp_path):
    onto, new = datasets(db, tmp_path)
    target = tmp_path / "merged"
    target.mkdir()
    (target / "keep.txt").write_text("x")
    out = merge(new, onto, target)
    assert out.returncode == 1 and out.stderr.strip().splitlines() == [
        "fastsync: error: --target-dir %s already exists (use --delete-target-dir to replace it)" % target]
    assert os.listdir(target) == ["keep.txt"]
    out = merge(new, onto, target, "--delete-target-dir")
    assert out.returncode == 0, out.stderr
    assert "keep.txt" not in os.listdir(target) and "_SUCCESS" in os.listdir(target)
    got = sorted(r for p in parts(target) for r in read_parquet(target / p))
    assert got == as_text(expected(), None)
    assert sorted(os.listdir(tmp_path)) == ["merged", "newdata", "onto", "src.db"]


def one_error(out):
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 1 and len(lines) == 1 and lines[0].startswith("fastsync: error: "), out.stderr
    return lines[0]


@pytest.mark.slow
def test_schema_mismatch_and_missing_key_fail_clearly(db, tmp_path):
    onto, new = datasets(db, tmp_path)
    imp(db, "narrow", tmp_path / "narrow")
    err = one_error(merge(tmp_path / "narrow", onto, tmp_path / "m1"))
    assert "narrow/part-m-00000.parquet: no column qty" in err and "onto/part-m-00000.parquet" in err
    imp(db, "badtype", tmp_path / "badtype")
    err = one_error(merge(tmp_path / "badtype", onto, tmp_path / "m2"))
    assert "badtype/part-m-00000.parquet: column qty" in err and "many" in err, err
    err = one_error(merge(new, onto, tmp_path / "m3", key="nosuch"))
    assert err == "fastsync: error: --merge-key nosuch: no such column in onto/part-m-00000.parquet (--onto)"
    imp(db, "nullkey", tmp_path / "nullkey")
    err = one_error(merge(tmp_path / "nullkey", onto, tmp_path / "m4"))
    assert "nullkey/part-m-00000.parquet row 2: the --merge-key id is NULL" in err
    imp(db, "old", tmp_path / "onto_csv", "--format", "csv")
    err = one_error(merge(new, tmp_path / "onto_csv", tmp_path / "m5"))
    assert "--new-data holds parquet files, --onto csv files" in err
    err = one_error(merge(tmp_path / "nowhere", onto, tmp_path / "m6"))
    assert err == "fastsync: error: --new-data %s: no such directory" % (tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    err = one_error(merge(new, tmp_path / "empty", tmp_path / "m7"))
    assert "--onto %s: no part files" % (tmp_path / "empty") in err
    assert sorted(n for n in os.listdir(tmp_path) if n.startswith((".m", "m"))) == []


@pytest.mark.slow
def test_corrupt_part_file_leaves_no_target_and_no_temp_dir(db, tmp_path):
    onto, new = datasets(db, tmp_path)
    (new / "part-m-00009.parquet").write_bytes(b"PAR1 this is not parquet")
    err = one_error(merge(new, onto, tmp_path / "merged"))
    assert "newdata/part-m-00009.parquet" in err
    assert not (tmp_path / "merged").exists()
    assert sorted(os.listdir(tmp_path)) == ["newdata", "onto", "src.db"]     # no .merged.tmp-*
    # a part file that fails in the middle of the merge (not at the schema check)
    (new / "part-m-00009.parquet").unlink()
    with open(onto / "part-m-00001.parquet", "r+b") as f:
        f.seek(200)
        f.write(b"\xff" * 400)
    out = merge(new, onto, tmp_path / "merged")
    assert out.returncode == 1 and "onto/part-m-00001.parquet" in out.stderr, out.stderr
    assert sorted(os.listdir(tmp_path)) == ["newdata", "onto", "src.db"]


# JSON lines with more types: every value written again exactly as import wrote it
TEXTS = ['line1\nline2\r\nline3', 'quote " and \'single\' and \\ and \ttab', '\u00e9 \u2603 \U0001F600 \u4e2d',
         'sep\u2028and\u2029and\x85end', "", "{\"not\": [\"json\"]}"]
BIGS = [2 ** 63 - 1, -2 ** 63, 2 ** 53 + 1, 0]
FLOATS = [0.1, 1e-07, 1e300, -2.5, 123456.789]


def rich_row(i, tag):
    """id, name, price, day, ts, big, f, raw: NULL in every column but the key for some rows."""
    if i % 11 == 0:
        return (i, None, None, None, None, None, None, None)
    return (i, "%s %d %s" % (tag, i, TEXTS[i % len(TEXTS)]),
            decimal.Decimal("%d.%04d" % (i * 1000 + (7 if tag == "new" else 3), i % 10000)) * (-1 if i % 3 else 1),
            datetime.date(2000, 1, 1) + datetime.timedelta(days=i),
            datetime.datetime(2024, 2, 29, 13, 45, 56, 123456) + datetime.timedelta(hours=i, microseconds=i),
            BIGS[(i + (tag == "new")) % len(BIGS)], FLOATS[i % len(FLOATS)] * (2 if tag == "new" else 1),
            bytes([i % 256, 0, 255]) + tag.encode())


def rich_db(path):
    c = sqlite3.connect(path)
    for t in ("rold", "rnew"):
        c.execute("CREATE TABLE %s (id INTEGER PRIMARY KEY, name TEXT, price NUMERIC(14, 4), day DATE, ts TIMESTAMP, "
                  "big BIGINT, f REAL, raw BLOB)" % t)
    c.executemany("INSERT INTO rold VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [_rich_sql(rich_row(i, "old")) for i in range(300)])
    c.executemany("INSERT INTO rnew VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [_rich_sql(rich_row(i, "new"))
                                                                       for i in range(200, 400)])
    c.commit()
    c.close()


def _rich_sql(r):
    i, name, price, day, ts, big, f, raw = r
    return (i, name, None if price is None else str(price), None if day is None else day.isoformat(),
            None if ts is None else ts.isoformat(" "), big, f, raw)


def from_json(r):
    """A merged JSON object back to the values of rich_row (decimals, dates and timestamps
    are ISO text, bytes base64, in import's encoding)."""
    if r["name"] is None:
        assert all(v is None for k, v in r.items() if k != "id")
        return (r["id"],) + (None,) * 7
    assert type(r["price"]) is str and type(r["big"]) is int and type(r["f"]) is float
    return (r["id"], r["name"], decimal.Decimal(r["price"]), datetime.date.fromisoformat(r["day"]),
            datetime.datetime.fromisoformat(r["ts"]), r["big"], r["f"], base64.b64decode(r["raw"]))


def lines(d, opener):
    out = []
    for p in parts(d):
        with opener(d / p, "rb") as f:
            out += f.read().decode("utf-8").split("\n")[:-1]
    return out


@pytest.mark.parametrize("codec", [None, "gzip"])
@pytest.mark.slow
def test_jsonl_values_round_trip_exactly(tmp_path, codec):
    rich_db(tmp_path / "rich.db")
    flags = ["--format", "jsonl"] + (["--compression-codec", codec] if codec else [])
    imp(tmp_path / "rich.db", "rold", tmp_path / "onto", *flags)
    imp(tmp_path / "rich.db", "rnew", tmp_path / "newdata", *flags)
    # an empty split: a part file without rows (and so without column names)
    out = fastsync("import", "--connect", "sqlite:///%s" % (tmp_path / "rich.db"), "--table", "rnew", "--where", "id < 0",
                   "--target-dir", tmp_path / "newdata", "--append", "-m", 1, *flags)
    assert out.returncode == 0, out.stderr
    opener = gzip.open if codec else open
    suffix = ".jsonl.gz" if codec else ".jsonl"
    assert len(parts(tmp_path / "newdata")) == 2 and all(p.endswith(suffix) for p in parts(tmp_path / "newdata"))
    with opener(tmp_path / "newdata" / parts(tmp_path / "newdata")[1], "rb") as f:
        assert f.read() == b""
    out = merge(tmp_path / "newdata", tmp_path / "onto", tmp_path / "merged")
    assert out.returncode == 0, out.stderr
    assert "merged 400 rows (100 replaced, 100 added)" in out.stdout, out.stdout
    merged = tmp_path / "merged"
    assert all(p.endswith(suffix) for p in parts(merged))
    got_lines = lines(merged, opener)
    got = {}
    for line in got_lines:
        r = json.loads(line)
        assert list(r) == ["id", "name", "price", "day", "ts", "big", "f", "raw"]
        got[r["id"]] = from_json(r)
    want = {i: rich_row(i, "old") for i in range(200)} | {i: rich_row(i, "new") for i in range(200, 400)}
    assert len(got_lines) == len(got) == len(want)
    for i, w in want.items():
        assert got[i] == w, i
    # and each line is the one import wrote for that row, byte for byte (an untouched row
    # from --onto, the others from --new-data)
    source = {json.loads(x)["id"]: x for x in lines(tmp_path / "onto", opener) if json.loads(x)["id"] < 200}
    source |= {json.loads(x)["id"]: x for x in lines(tmp_path / "newdata", opener)}
    assert sorted(got_lines) == sorted(source.values())
    assert any("\u2028and\u2029and\x85" in x for x in got_lines)        # not escaped, yet one line each


@pytest.mark.slow
def test_jsonl_member_not_in_the_other_files_fails(db, tmp_path):
    onto, new = datasets(db, tmp_path, "--format", "jsonl")
    with open(new / "part-m-00002.jsonl", "a", encoding="utf-8") as f:
        f.write('{"id": 7, "name": "x", "price": "1.00", "qty": 1, "extra": true}\n')
    err = one_error(merge(new, onto, tmp_path / "merged"))      # found when the columns are read
    assert err.endswith("newdata/part-m-00002.jsonl: column extra is not in newdata/part-m-00000.jsonl"), err
    os.unlink(new / "part-m-00002.jsonl")
    with open(onto / "part-m-00001.jsonl", "a+", encoding="utf-8") as f:    # after the first 1000 rows read for them
        f.seek(0)
        n = len(f.read().splitlines())
        f.write('{"id": 7, "name": "x", "price": "1.00", "qty": 1, "extra": true}\n')
    assert n >= 1000
    err = one_error(merge(new, onto, tmp_path / "merged"))
    assert err.endswith("onto/part-m-00001.jsonl row %d: column extra is not in the other files" % (n + 1)), err
    assert sorted(os.listdir(tmp_path)) == ["newdata", "onto", "src.db"]
