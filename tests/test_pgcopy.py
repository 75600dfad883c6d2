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

from fastsync._native import COPY_ARRAY as A, CopyDecoder, CopyOutOfRange
from e2e_support import drop_tables

PG_URL = os.environ.get("FASTSYNC_TEST_PG_URL", "postgresql://fastsync:fastsync@127.0.0.1:5432/fastsync")
# the table and type on the shared server: named per process, so concurrent runs never share one
FAST, FAST_MOOD = "fast_%d" % os.getpid(), "fast_mood_%d" % os.getpid()


@pytest.fixture(scope="module", autouse=True)
def _drop_server_tables():
    """The table and type these tests make on the shared server go when the module is done."""
    yield
    drop_tables(PG_URL, FAST, types=(FAST_MOOD,))
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


# time, interval and one-dimensional arrays: (select expression, kind, Arrow type). The
# reference is what psycopg returns for the same rows (text format, as the generic path reads).
LIST = pa.list_
NEW_COLUMNS = [
    ("TIME '00:00' + (g::int8 * 7777777777 % 86400000000) * INTERVAL '1 microsecond'", 10, pa.time64("us")),
    ("make_interval(months => ((g + 1000)::int8 * 7919 % 6000001 - 3000000)::int,"
     " days => ((g + 1000)::int8 * 104729 % 20000001 - 10000000)::int)"
     " + ((g + 1000)::int8 * 99991 % 200000001 - 100000000) * INTERVAL '1 second 1 microsecond'", 11, pa.duration("us")),
    ("CASE g % 4 WHEN 0 THEN NULL WHEN 1 THEN '{}' ELSE ARRAY[g, NULL, -g * 1000000000000] END::int8[]", A | 3, LIST(pa.int64())),
    ("array_fill(g::int8, ARRAY[abs(g) % 40], ARRAY[abs(g) % 3 - 1])", A | 3, LIST(pa.int64())),   # lower bounds 0..2
    ("ARRAY[g % 300, NULL]::int2[]", A | 1, LIST(pa.int16())),
    ("ARRAY['row ' || g, NULL, '', 'q\"\\,{} \u00e9']", A | 7, LIST(pa.string())),
    ("ARRAY[g % 2 = 0, NULL]", A | 6, LIST(pa.bool_())),
    ("ARRAY[g / 7.0, 'Infinity', '-0', 1e-300]::float8[]", A | 5, LIST(pa.float64())),
    ("ARRAY[DATE '2000-01-01' + g * 37, NULL]", A | 8, LIST(pa.date32())),
    ("ARRAY[TIMESTAMP '1969-12-31 23:00:00' + g * INTERVAL '1 minute 1 microsecond']", A | 9, LIST(pa.timestamp("us"))),
    ("ARRAY[TIMESTAMPTZ '2000-01-01 00:00:00+00' - g * INTERVAL '1 second', NULL]", A | 9, LIST(pa.timestamp("us", tz="UTC"))),
    ("ARRAY[TIME '12:00' + g * INTERVAL '1.5 second', NULL]", A | 10, LIST(pa.time64("us"))),
    ("ARRAY[g * INTERVAL '1 mon 1 day -1 microsecond', NULL, -g * INTERVAL '1 year']", A | 11, LIST(pa.duration("us"))),
    ("ARRAY[decode(lpad(to_hex(abs(g)), 8, '0'), 'hex'), NULL, '']", A | 7, LIST(pa.binary())),
    ("ARRAY[(g * 1.25)::numeric(12, 2), NULL]::text[]", A | 7, LIST(pa.string())),
]
NEW_SELECT = "SELECT " + ", ".join("CASE WHEN g %% 13 = 5 THEN NULL ELSE %s END" % e for e, _, _ in NEW_COLUMNS)
NEW_KINDS = [k for _, k, _ in NEW_COLUMNS]
NEW_TYPES = [t for _, _, t in NEW_COLUMNS]


def psycopg_rows(sql):
    with psycopg.connect(PG_URL) as conn:
        return [list(r) for r in conn.execute(sql).fetchall()]


def decode(stream, kinds, types, steps=(len,), seed=0):
    """Rows decoded from `stream` fed in pieces of the given sizes (chosen at random), taken
    at random points."""
    rng = random.Random(seed)
    dec, cols, pos = CopyDecoder(kinds), [[] for _ in kinds], 0
    while pos < len(stream):
        step = rng.choice(steps)
        step = step(stream) if callable(step) else step
        dec.feed(stream[pos:pos + step])
        pos += step
        if rng.random() < 0.3:
            for c, a in zip(cols, dec.take(types)):
                c += a.to_pylist()
    for c, a, t in zip(cols, dec.take(types), types):
        assert a.type == t
        c += a.to_pylist()
    assert dec.finished
    return [list(r) for r in zip(*cols)]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_times_intervals_and_arrays_decode_to_what_psycopg_returns(seed):
    sql = NEW_SELECT + " FROM generate_series(-300, 1700) g"
    got = decode(copy_bytes(sql), NEW_KINDS, NEW_TYPES, (1, 2, 3, 7, 64, 1000, 65536), seed)
    want = psycopg_rows(sql)
    assert len(got) == len(want) == 2001
    assert got == want
    assert sum(r[2] == [] for r in got) > 100 and sum(r[2] is None for r in got) > 100    # empty and NULL arrays


def test_stream_cut_at_every_byte():
    sql = NEW_SELECT + " FROM generate_series(3, 6) g"
    stream, want = copy_bytes(sql), psycopg_rows(sql)
    for cut in range(1, len(stream)):
        assert decode(stream, NEW_KINDS, NEW_TYPES, (lambda s, cut=cut: cut, len)) == want, cut


INTERVALS = ["0", "1 mon -30 days", "-1 year -1 mon", "13 mons 2 days 00:00:00.000001", "-00:00:00.000001",
             "-1 days +00:00:00.5", "1 day -25:00:00", "5965232 years -2147483647 days",   # 32-bit day sums wrap
             "2562047788:00:54.775807", "-106751991 days", "292471 years", "-292471 years -2 mons -4 days"]


def test_intervals_at_the_edges_of_duration_decode_to_what_psycopg_returns():
    sql = "SELECT v::interval, ARRAY[v::interval, NULL] FROM unnest(ARRAY[%s]) v" % ", ".join("'%s'" % v for v in INTERVALS)
    got = decode(copy_bytes(sql), [11, A | 11], [pa.duration("us"), LIST(pa.duration("us"))])
    want = psycopg_rows(sql)
    assert got == want
    assert got[8][0] == datetime.timedelta(microseconds=2**63 - 1) and got[9][0] == datetime.timedelta(days=-106751991)


@pytest.mark.parametrize("sql, kinds, what", [
    ("SELECT '24:00:00'::time", [10], "time"),
    ("SELECT '{12:00, 24:00:00}'::time[]", [A | 10], "time"),
    ("SELECT '106751991 days 04:00:54.775808'::interval", [11], "interval"),
    ("SELECT '-106751991 days -00:00:00.000001'::interval", [11], "interval"),
    ("SELECT '11767033 years'::interval", [11], "interval"),          # psycopg's C loader says -251 days
    ("SELECT '-178000000 years'::interval", [11], "interval"),
    ("SELECT '2147483647 days 2562047788:00:54.775807'::interval", [11], "interval"),
    ("SELECT ARRAY['1 day', '999999999 days']::interval[]", [A | 11], "interval"),
    ("SELECT '{{1,2},{3,4}}'::int8[]", [A | 3], "array"),
])
def test_decoder_refuses_values_arrow_cannot_hold(sql, kinds, what):
    stream = copy_bytes("SELECT 1::int8, v FROM (%s) AS t(v)" % sql)
    with pytest.raises(CopyOutOfRange) as err:
        CopyDecoder([3] + kinds).feed(stream)
    assert err.value.column == 1 and err.value.what == what


def one_field(field: bytes, nfields=1):
    """A binary COPY stream of one tuple whose fields are all `field` (a length-prefixed body)."""
    return b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0) + struct.pack(">h", nfields) + field * nfields + struct.pack(">h", -1)


def array(ndim=1, oid=20, dims=((2, 1),), elements=(struct.pack(">q", 1), None), raw=None):
    body = struct.pack(">iiI", ndim, 0, oid) + b"".join(struct.pack(">ii", *d) for d in dims)
    body += raw if raw is not None else b"".join(struct.pack(">i", -1) if e is None else struct.pack(">i", len(e)) + e for e in elements)
    return struct.pack(">i", len(body)) + body


@pytest.mark.parametrize("field, message", [
    (array(), None),
    (array(ndim=0, dims=(), elements=()), None),
    (struct.pack(">i", 8) + b"\0" * 8, "malformed array \\(shorter than its header"),
    (array(ndim=-1), "dimension count"),
    (array(ndim=7), "dimension count"),
    (array(ndim=0, dims=(), elements=(b"x",)), "bytes after an empty array"),
    (array(dims=()), "malformed array"),
    (array(dims=((3, 1),)), "elements past its end|more elements"),
    (array(dims=((-1, 1),)), "more elements"),
    (array(dims=((2 ** 30, 1),)), "more elements"),
    (array(raw=struct.pack(">iq", 8, 1) + struct.pack(">i", 100)), "element length past its end"),
    (array(raw=struct.pack(">iq", 8, 1) + struct.pack(">i", -2)), "element length past its end"),
    (array(elements=(struct.pack(">q", 1), None, b"")), "bytes after its last element"),
    (array(oid=23), "an array of type oid 23, expected 20"),
    (array(elements=(b"\0" * 4, None)), "has an element that is 4 bytes, expected 8"),
    (struct.pack(">i", -7), "field 0 has length -7"),
])
def test_decoder_rejects_malformed_arrays(field, message):
    stream = one_field(field, 2)
    dec = CopyDecoder([A | 3, A | 3])
    if message is None:
        dec.feed(stream)
        assert dec.finished and dec.take([LIST(pa.int64())] * 2)[0].to_pylist() in ([[1, None]], [[]])
        return
    with pytest.raises(ValueError, match=message):
        dec.feed(stream)
    with pytest.raises(ValueError, match="stopped at an earlier error"):
        dec.feed(b"")


def test_decoder_survives_corrupted_and_truncated_streams():
    sql = NEW_SELECT + " FROM generate_series(1, 12) g"
    stream = copy_bytes(sql)
    for end in range(len(stream)):               # a truncated stream waits for the rest
        dec = CopyDecoder(NEW_KINDS)
        dec.feed(stream[:end])
        assert not dec.finished
    rng = random.Random(7)
    failures = 0
    for _ in range(400):                          # flipped bytes: an error or some rows, never a crash
        bad = bytearray(stream)
        for _ in range(rng.randint(1, 4)):
            bad[rng.randrange(19, len(bad))] = rng.randrange(256)
        dec = CopyDecoder(NEW_KINDS)
        try:
            dec.feed(bytes(bad))
            dec.take(NEW_TYPES)
        except (ValueError, pa.ArrowInvalid):
            failures += 1
    assert failures > 100


def test_import_through_binary_copy_matches_the_rows(tmp_path):
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {FAST}")
        conn.execute(f"DROP TYPE IF EXISTS {FAST_MOOD}")
        conn.execute(f"CREATE TYPE {FAST_MOOD} AS ENUM ('a', 'b')")
        conn.execute(f"CREATE TABLE {FAST} (id bigint PRIMARY KEY, s smallint, i int, f real, d double precision, b boolean,"
                     " c char(4), v varchar(50), t text, n numeric(20, 5), by bytea, dt date, ts timestamp, tz timestamptz,"
                     f" u uuid, j json, jb jsonb, e {FAST_MOOD})")
        conn.execute(f"INSERT INTO {FAST} SELECT g, g % 32000, g * 3, g / 4.0, g / 3.0, g % 2 = 0, 'c' || (g % 10),"
                     " 'v\u00e9' || g, repeat('t', g % 5), g * 1.00001, decode('00ff' || lpad(to_hex(g), 6, '0'), 'hex'),"
                     " DATE '2020-01-01' + g, TIMESTAMP '2020-01-01' + g * INTERVAL '1 ms',"
                     " TIMESTAMPTZ '2020-01-01 00:00:00+00' + g * INTERVAL '1 hour', md5(g::text)::uuid,"
                     f" json_build_object('g', g), jsonb_build_object('h', g), CASE WHEN g % 2 = 0 THEN 'a' ELSE 'b' END::{FAST_MOOD}"
                     " FROM generate_series(1, 3000) g")
        conn.execute(f"INSERT INTO {FAST} (id) VALUES (0)")      # NULL in every other column
        want = conn.execute(f"SELECT * FROM {FAST} ORDER BY id").fetchall()
        names = [d.name for d in conn.execute(f"SELECT * FROM {FAST} LIMIT 0").description]
    out = subprocess.run([sys.executable, "-m", "fastsync", "import", "--connect", PG_URL, "--table", FAST, "-m", "3",
                          "--fetch-size", "500", "--target-dir", str(tmp_path / "o"), "--as-parquetfile"],
                         capture_output=True, text=True, timeout=300)
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
    from fastsync.transfer.pgread import libpq_path as _libpq_path
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
