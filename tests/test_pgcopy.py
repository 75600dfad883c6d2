"""The native binary COPY decoder (fastsync._pgcopy) against a pure-Python reference of the
format, on real streams from the PostgreSQL server; and imports that take that path."""
import datetime
import decimal
import os
import random
import struct
import subprocess
import sys
import uuid

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fastsync._native import CopyDecoder

PG_URL = os.environ.get("FASTSYNC_TEST_PG_URL", "postgresql://fastsync:fastsync@127.0.0.1:5432/fastsync")
KINDS = [3, 1, 5, 6, 7, 7, 8, 9, 9, 7]
TYPES = [pa.int64(), pa.int16(), pa.float64(), pa.bool_(), pa.string(), pa.large_binary(), pa.date32(),
         pa.timestamp("us"), pa.timestamp("us", tz="UTC"), pa.string()]
SELECT = ("SELECT g::int8, (g % 300)::int2, g / 7.0::float8, g % 3 = 0, 'row ' || g || ' \u00e9\t\"', "
          "decode(lpad(to_hex(g), 8, '0'), 'hex'), DATE '1999-12-31' + g, TIMESTAMP '1969-12-31 23:00:00' + g * INTERVAL '1 minute', "
          "TIMESTAMPTZ '2000-01-01 00:00:00+00' - g * INTERVAL '1 second', (g * 1.25)::numeric(12, 2)::text")


def reference(stream: bytes, kinds):
    """The binary COPY format decoded with struct, one value at a time."""
    assert stream[:11] == b"PGCOPY\n\xff\r\n\x00"
    pos = 19 + struct.unpack_from(">i", stream, 15)[0]
    rows = []
    while True:
        (n,) = struct.unpack_from(">h", stream, pos)
        pos += 2
        if n == -1:
            return rows
        row = []
        for k in kinds:
            (ln,) = struct.unpack_from(">i", stream, pos)
            pos += 4
            if ln < 0:
                row.append(None)
                continue
            raw = stream[pos:pos + ln]
            pos += ln
            row.append({1: lambda b: struct.unpack(">h", b)[0], 3: lambda b: struct.unpack(">q", b)[0],
                        5: lambda b: struct.unpack(">d", b)[0], 6: lambda b: b != b"\0", 7: bytes,
                        8: lambda b: datetime.date(2000, 1, 1) + datetime.timedelta(days=struct.unpack(">i", b)[0]),
                        9: lambda b: datetime.datetime(2000, 1, 1) + datetime.timedelta(microseconds=struct.unpack(">q", b)[0])}[k](raw))
        rows.append(row)


def copy_bytes(sql):
    with psycopg.connect(PG_URL) as conn, conn.cursor() as cur:
        out = bytearray()
        with cur.copy("COPY (%s) TO STDOUT (FORMAT binary)" % sql) as cp:
            for data in cp:
                out += data
        return bytes(out)


def as_reference_values(arrays):
    cols = []
    for a, t in zip(arrays, TYPES):
        vals = a.to_pylist()
        if pa.types.is_string(t):
            vals = [None if v is None else v.encode() for v in vals]
        if pa.types.is_timestamp(t) and t.tz:
            vals = [None if v is None else v.replace(tzinfo=None) for v in vals]
        cols.append(vals)
    return [list(r) for r in zip(*cols)]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_decoder_matches_the_reference_whatever_the_chunking(seed):
    rng = random.Random(seed)
    stream = copy_bytes(SELECT + " FROM generate_series(-50, 2000) g UNION ALL SELECT "
                        + ", ".join(["NULL"] * 10))
    want = reference(stream, KINDS)
    dec = CopyDecoder(KINDS)
    got, pos = [], 0
    while pos < len(stream):
        step = rng.choice([1, 2, 3, 7, 64, 1000, 65536])
        dec.feed(stream[pos:pos + step])
        pos += step
        if rng.random() < 0.3:
            got += as_reference_values(dec.take(TYPES))
    got += as_reference_values(dec.take(TYPES))
    assert dec.finished
    assert len(got) == len(want) == 2052
    assert got == want


def test_decoder_rejects_what_is_not_its_stream():
    with pytest.raises(ValueError, match="not a PostgreSQL binary COPY"):
        CopyDecoder([3]).feed(b"x" * 40)
    stream = copy_bytes("SELECT 1::int4")
    with pytest.raises(ValueError, match="4 bytes, expected 8"):
        CopyDecoder([3]).feed(stream)
    with pytest.raises(ValueError, match="2 fields, expected 1"):
        CopyDecoder([3]).feed(copy_bytes("SELECT 1::int8, 2::int8"))
    with pytest.raises(ValueError, match="unknown column kind"):
        CopyDecoder([42])


def test_import_through_binary_copy_matches_the_rows(tmp_path):
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS fast")
        conn.execute("DROP TYPE IF EXISTS fast_mood")
        conn.execute("CREATE TYPE fast_mood AS ENUM ('a', 'b')")
        conn.execute("CREATE TABLE fast (id bigint PRIMARY KEY, s smallint, i int, f real, d double precision, b boolean,"
                     " c char(4), v varchar(50), t text, n numeric(20, 5), by bytea, dt date, ts timestamp, tz timestamptz,"
                     " u uuid, j json, jb jsonb, e fast_mood)")
        conn.execute("INSERT INTO fast SELECT g, g % 32000, g * 3, g / 4.0, g / 3.0, g % 2 = 0, 'c' || (g % 10),"
                     " 'v\u00e9' || g, repeat('t', g % 5), g * 1.00001, decode('00ff' || lpad(to_hex(g), 6, '0'), 'hex'),"
                     " DATE '2020-01-01' + g, TIMESTAMP '2020-01-01' + g * INTERVAL '1 ms',"
                     " TIMESTAMPTZ '2020-01-01 00:00:00+00' + g * INTERVAL '1 hour', md5(g::text)::uuid,"
                     " json_build_object('g', g), jsonb_build_object('h', g), CASE WHEN g % 2 = 0 THEN 'a' ELSE 'b' END::fast_mood"
                     " FROM generate_series(1, 3000) g")
        conn.execute("INSERT INTO fast (id) VALUES (0)")      # NULL in every other column
        want = conn.execute("SELECT * FROM fast ORDER BY id").fetchall()
        names = [d.name for d in conn.execute("SELECT * FROM fast LIMIT 0").description]
    out = subprocess.run([sys.executable, "-m", "fastsync", "import", "--connect", PG_URL, "--table", "fast", "-m", "3",
                          "--fetch-size", "500", "--target-dir", str(tmp_path / "o")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    got = pq.read_table(tmp_path / "o").sort_by("id").to_pylist()
    assert len(got) == len(want) == 3001
    for g, w in zip(got, want):
        for name, wv in zip(names, w):
            gv = g[name]
            if isinstance(wv, uuid.UUID):
                wv = str(wv)
            if name in ("j", "jb") and wv is not None:
                import json
                gv = json.loads(gv)
            if name == "f" and wv is not None:
                gv = float(f"{gv:.7g}")        # real widened to double: compare at real precision
                wv = float(f"{wv:.7g}")
            assert gv == wv, (name, gv, wv)
    assert got[0]["c"] is None and got[1]["c"] == "c1  "          # char padding kept
    assert isinstance(got[1]["n"], decimal.Decimal)


def test_copy_reader_gives_the_drivers_stream_and_the_servers_errors():
    from fastsync._native import CopyReader
    from fastsync.transfer.importer import _libpq_path
    sql = SELECT + " FROM generate_series(1, 5000) g"
    want = copy_bytes(sql)
    with psycopg.connect(PG_URL) as conn:
        reader = CopyReader(conn.pgconn.pgconn_ptr, _libpq_path(), "COPY (%s) TO STDOUT (FORMAT binary)" % sql)
        got = b""
        while True:
            chunk = reader.read(4096)
            if not chunk:
                break
            assert len(chunk) >= 4096 or reader.done
            got += chunk
    assert got == want and reader.done
    with psycopg.connect(PG_URL) as conn:
        with pytest.raises(RuntimeError, match='relation "no_such_table" does not exist'):
            CopyReader(conn.pgconn.pgconn_ptr, _libpq_path(), "COPY (SELECT * FROM no_such_table) TO STDOUT (FORMAT binary)")
        with pytest.raises(RuntimeError, match="division by zero"):
            r = CopyReader(conn.pgconn.pgconn_ptr, _libpq_path(),
                           "COPY (SELECT 1 / (5000 - g) FROM generate_series(1, 6000) g) TO STDOUT (FORMAT binary)")
            while r.read(1 << 20):
                pass
