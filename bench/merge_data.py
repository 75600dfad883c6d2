"""Data for the `fastsync merge` figures in README.md: DIR/onto (ids 0 .. 999 999) and
DIR/new (ids 500 000 .. 1 499 999: half replace onto's rows, half are new), each 4 Parquet
part files (snappy, a row group per 10 000 rows, as `fastsync import` writes them) of
int64, string, decimal(12,2), int64 and timestamp columns.

    python bench/merge_data.py /tmp/m
    /usr/bin/time -v fastsync merge --new-data /tmp/m/new --onto /tmp/m/onto --target-dir /tmp/m/out --merge-key id
"""
import os
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def write(d, lo, n, tag, parts=4):
    os.makedirs(d)
    per = n // parts
    for p in range(parts):
        ids = np.arange(lo + p * per, lo + (p + 1) * per, dtype=np.int64)
        t = pa.table({"id": ids, "name": pa.array(np.char.add(tag, ids.astype(str))),
                      "price": pa.array(ids * 7 % 100000).cast(pa.decimal128(19, 0)).cast(pa.decimal128(12, 2), safe=False),
                      "qty": pa.array(ids % 1000 - 500), "ts": pa.array(ids * 1_000_000, pa.timestamp("us"))})
        with pq.ParquetWriter(os.path.join(d, "part-m-%05d.parquet" % p), t.schema, compression="snappy") as w:
            for b in t.to_batches(max_chunksize=10000):
                w.write_batch(b)
    open(os.path.join(d, "_SUCCESS"), "w").close()


if __name__ == "__main__":
    write(os.path.join(sys.argv[1], "onto"), 0, 1_000_000, "old-")
    write(os.path.join(sys.argv[1], "new"), 500_000, 1_000_000, "new-")
