"""A small program using fastsync's transfers as functions, against a SQLite file it makes:
import a table into Parquet files, read it back as Arrow record batches without writing
files, and catch an error carrying the command line's message.

    python examples/python/import_with_api.py [WORK_DIR]
"""
from __future__ import annotations

import sqlite3
import sys
import tempfile
from pathlib import Path

import fastsync
from fastsync.transfer.api import TableReader, TransferProgress, TransferResult


def make_db(path: Path, rows: int = 10_000) -> str:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT, amount REAL)")
    con.executemany("INSERT INTO orders VALUES (?, ?, ?)", ((i, "c%d" % (i % 97), i * 0.5) for i in range(rows)))
    con.commit()
    con.close()
    return "sqlite:///%s" % path


def show(update: TransferProgress) -> None:
    print("  %d rows, %.0f rows/s, per split %s" % (update.rows, update.rows_per_s, update.per_split))


def main(work: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)
    url = make_db(work / "shop.db")
    print("tables:", fastsync.list_tables(url))

    # fastsync import --connect URL --table orders -m 2 --target-dir WORK/orders --where 'amount > 10'
    result: TransferResult = fastsync.import_table(url, table="orders", target_dir=work / "orders", num_mappers=2,
                                                   where="amount > 10", progress=show)
    print("imported %d rows into %d files (%d bytes) in %.2f s" % (result.rows, len(result.files), result.bytes, result.seconds))
    for split in result.splits:
        print("  split %d: %s rows -> %s" % (split.index, split.rows, split.file))

    # the same rows, streamed: no files written
    reader: TableReader = fastsync.read_table(url, table="orders", columns=["id", "amount"], batch_size=4096)
    total = 0.0
    for batch in reader:
        total += sum(v for v in batch.column("amount").to_pylist() if v is not None)
    print("schema:", reader.schema, "sum(amount) = %.1f" % total)
    frame = fastsync.read_table(url, query="SELECT customer, count(*) AS n FROM orders WHERE $CONDITIONS GROUP BY customer",
                                ).to_pandas()
    print(frame.sort_values("n").tail(3))

    rows = fastsync.eval(url, "SELECT count(*) FROM orders WHERE amount > 10")
    assert rows[0][0] == result.rows

    try:        # the target exists now: the error is the CLI's line
        fastsync.import_table(url, table="orders", target_dir=work / "orders")
    except fastsync.TransferError as exc:
        print("error (exit code %d): %s" % (exc.code, exc))


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp))
