"""Avro data files (`--as-avrodatafile`): rows/s writing and reading N rows of a mixed table
(int64, int32, double, decimal, timestamp, date, short text, 10% NULLs), three ways in one
run, alternating rounds:

    columnar   fastsync's AvroWriter / columnar_batches (numpy + the native _avro module)
    rowwise    fastavro row by row, as fastsync did before (dicts from to_pylist, fastavro
               Writer; fastavro.reader into per-column lists, as the exporter read)
    parquet    pyarrow's Parquet writer/reader on the same table (uncompressed), the raw
               columnar baseline

    python bench/bench_avrofile.py [--rows 1000000] [--rounds 3] [--codec null]

Every read checks the row count and a column sum against the table. In the test run each
body runs once on few rows as a check.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

BATCH = 65_536


def table(rows: int) -> pa.Table:
    rng = np.random.default_rng(42)
    nulls = rng.random(rows) < 0.1
    ids = np.arange(rows, dtype=np.int64)
    return pa.table({
        "id": ids,
        "qty": pa.array(rng.integers(-1000, 1000, rows).astype(np.int32), mask=nulls),
        "price": pa.array(rng.random(rows) * 1000, mask=nulls),
        "amount": pa.array(rng.integers(0, 10**9, rows), pa.int64()).cast(pa.decimal128(21, 0)).cast(pa.decimal128(15, 2)),
        "at": pa.array(1_700_000_000_000_000 + ids * 1_000_003, pa.timestamp("us", "UTC")),
        "day": pa.array((ids % 20000).astype(np.int32), pa.int32()).cast(pa.date32()),
        "note": pa.array(np.char.add("note ", (ids % 977).astype(str)), mask=nulls),
    })


def write_columnar(t: pa.Table, path: str, codec: str) -> None:
    from fastsync.transfer.avrofile import AvroWriter
    w = AvroWriter(path, t.schema, codec)
    assert w.w is None, "the columnar encoder was not used"
    for b in t.to_batches(BATCH):
        w.write_batch(b)
    w.close()


def write_rowwise(t: pa.Table, path: str, codec: str) -> None:
    import fastavro

    from fastsync.transfer.avrofile import AvroRecords
    rows = AvroRecords(t.schema)
    with open(path, "wb") as f:
        w = fastavro.write.Writer(f, rows.parsed, codec=codec)
        for b in t.to_batches(BATCH):
            for d in rows.records(b):
                w.write(d)
            w.flush()


def write_parquet(t: pa.Table, path: str, codec: str) -> None:
    pq.write_table(t, path, compression="none" if codec == "null" else "snappy", row_group_size=BATCH)


def read_columnar(path: str, names: list) -> tuple[int, float]:
    from fastsync.transfer.avrofile import columnar_batches
    n, total = 0, 0.0
    for b in columnar_batches(path, names, BATCH):
        n += b.num_rows
        total += pc.sum(b.column("id")).as_py()
    return n, total


def read_rowwise(path: str, names: list) -> tuple[int, float]:
    import fastavro

    from fastsync.transfer.formats import chunks
    n, total = 0, 0.0
    with open(path, "rb") as f:
        for _, cols in chunks(fastavro.reader(f), names):
            n += len(cols["id"])
            total += sum(cols["id"])
    return n, total


def read_parquet(path: str, names: list) -> tuple[int, float]:
    n, total = 0, 0.0
    for b in pq.ParquetFile(path).iter_batches(BATCH, columns=names):
        n += b.num_rows
        total += pc.sum(b.column("id")).as_py()
    return n, total


WAYS = {"columnar": (write_columnar, read_columnar), "rowwise": (write_rowwise, read_rowwise),
        "parquet": (write_parquet, read_parquet)}


def one_round(t: pa.Table, work: str, codec: str, ways=WAYS) -> dict:
    """{way: (write rows/s, read rows/s)}, counts checked."""
    out = {}
    want = float(np.arange(t.num_rows, dtype=np.float64).sum())
    for name, (write, read) in ways.items():
        path = os.path.join(work, name + (".parquet" if name == "parquet" else ".avro"))
        t0 = time.perf_counter()
        write(t, path, codec)
        t1 = time.perf_counter()
        n, total = read(path, t.column_names)
        t2 = time.perf_counter()
        assert n == t.num_rows and total == want, (name, n, total)
        out[name] = (t.num_rows / (t1 - t0), t.num_rows / (t2 - t1))
        os.unlink(path)
    return out


def test_avro_file_ways(tmp_path):
    t = table(3000)
    one_round(t, str(tmp_path), "deflate")
    # what the columnar writer wrote reads the same through fastavro
    import fastavro
    path = str(tmp_path / "c.avro")
    write_columnar(t, path, "snappy")
    with open(path, "rb") as f:
        recs = list(fastavro.reader(f))
    assert [r["amount"] for r in recs] == t.column("amount").to_pylist()
    assert [r["note"] for r in recs] == t.column("note").to_pylist()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--codec", default="null", choices=["null", "deflate", "snappy"])
    a = ap.parse_args(argv)
    t = table(a.rows)
    print("rows %d, codec %s, load %s" % (a.rows, a.codec, os.getloadavg()))
    with tempfile.TemporaryDirectory() as work:
        for r in range(a.rounds):
            res = one_round(t, work, a.codec)
            print("round %d: " % (r + 1) + "; ".join("%s write %.0f read %.0f rows/s" % (k, w, rd) for k, (w, rd) in res.items()))
            c, rw = res["columnar"], res["rowwise"]
            print("   columnar / rowwise: write x%.1f, read x%.1f; columnar / parquet: write %.2f, read %.2f"
                  % (c[0] / rw[0], c[1] / rw[1], c[0] / res["parquet"][0], c[1] / res["parquet"][1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
