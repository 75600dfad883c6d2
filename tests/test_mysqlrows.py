"""The native MySQL/MariaDB row decoder (fastsync._mysqlrows) against what PyMySQL reads from
the same bytes, on result streams captured from the real MariaDB server; and imports that
take that path, compared with the generic path's output value by value."""
import datetime
import decimal
import os
import random
import struct
import subprocess
import sys
import warnings

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pymysql
import pytest
import sqlalchemy as sa

from fastsync import _mysqlrows as K
from fastsync._native import RowDecoder, RowError
from e2e_support import drop_tables, parquet_unless_told

MYSQL_URL = os.environ.get("FASTSYNC_TEST_MYSQL_URL", "mysql://fastsync:fastsync@127.0.0.1:3306/fastsync")
# the tables on the shared server: named per process, so concurrent runs never share one
CONTRACT, OTHER, ZERO = ("myrows_%s_%d" % (k, os.getpid()) for k in ("contract", "other", "zero"))


@pytest.fixture(scope="module", autouse=True)
def _drop_server_tables():
    """The tables these tests make on the shared server go when the module is done."""
    yield
    drop_tables(MYSQL_URL, CONTRACT, OTHER, ZERO)
DEC = decimal.Decimal
TS = pa.timestamp("us")

# column, SQL type, decoder kind, Arrow type (what the importer plans for that column)
COLUMNS = [
    ("id", "INT PRIMARY KEY", K.INT, pa.int64()),
    ("i64", "BIGINT", K.INT, pa.int64()), ("u64", "BIGINT UNSIGNED", K.UINT, pa.uint64()),
    ("i32", "INT", K.INT, pa.int64()), ("u32", "INT UNSIGNED", K.UINT, pa.uint64()),
    ("i8", "TINYINT", K.INT, pa.int64()), ("i16", "SMALLINT", K.INT, pa.int16()),
    ("i24", "MEDIUMINT", K.INT, pa.int64()), ("y", "YEAR", K.INT, pa.int64()),
    ("dbig", "DECIMAL(65, 30)", K.TEXT, pa.decimal256(65, 30)), ("d38", "DECIMAL(38, 10)", K.TEXT, pa.decimal128(38, 10)),
    ("d15", "DECIMAL(15, 2)", K.TEXT, pa.decimal128(15, 2)), ("d0", "DECIMAL(10, 0)", K.TEXT, pa.decimal128(10, 0)),
    ("f", "FLOAT", K.TEXT, pa.float64()), ("d", "DOUBLE", K.TEXT, pa.float64()),
    ("c", "CHAR(5)", K.TEXT, pa.string()), ("vc", "VARCHAR(300)", K.TEXT, pa.string()),
    ("t", "MEDIUMTEXT", K.TEXT, pa.string()), ("e", "ENUM('a', 'b c')", K.TEXT, pa.string()),
    ("bl", "MEDIUMBLOB", K.TEXT, pa.binary()), ("bn", "BINARY(4)", K.TEXT, pa.binary()),
    ("vb", "VARBINARY(100)", K.TEXT, pa.binary()),
    ("dt", "DATE", K.DATE, pa.date32()), ("ts0", "DATETIME", K.DATETIME, TS), ("ts3", "DATETIME(3)", K.DATETIME, TS),
    ("ts6", "DATETIME(6)", K.DATETIME, TS), ("tsp", "TIMESTAMP(6) NULL", K.DATETIME, TS),
    ("tm", "TIME(6)", K.TIME, pa.duration("us")), ("tm0", "TIME", K.TIME, pa.duration("us")),
]
NAMES = [c[0] for c in COLUMNS]
KINDS = [c[2] for c in COLUMNS]
TYPES = [c[3] for c in COLUMNS]
TRICKY = "snow \u2603 \u00e9, control \x00\x01\x1f\x7f, quote \" ' \\ , newline \n\r tab \t, emoji \U0001F600"


def edge_rows():
    lo = dict(id=1, i64=-2 ** 63, u64=0, i32=-2 ** 31, u32=0, i8=-128, i16=-32768, i24=-2 ** 23, y=1901,
              dbig=DEC("-" + "9" * 35 + "." + "9" * 30), d38=DEC("-" + "9" * 28 + "." + "9" * 10),
              d15=DEC("-9999999999999.99"), d0=DEC("-9999999999"), f=-3.40282e38, d=-1.7976931348623157e308,
              c="", vc="", t="", e="a", bl=b"", bn=b"\x00\x00\x00\x00", vb=b"", dt=datetime.date(1, 1, 1),
              ts0=datetime.datetime(1, 1, 1), ts3=datetime.datetime(1000, 1, 1, 0, 0, 0, 1000),
              ts6=datetime.datetime(1000, 1, 1, 0, 0, 0, 1), tsp=datetime.datetime(1970, 1, 2, 0, 0, 0, 1),
              tm=-datetime.timedelta(hours=838, minutes=59, seconds=59), tm0=-datetime.timedelta(seconds=1))
    hi = dict(id=2, i64=2 ** 63 - 1, u64=2 ** 64 - 1, i32=2 ** 31 - 1, u32=2 ** 32 - 1, i8=127, i16=32767, i24=2 ** 23 - 1,
              y=2155, dbig=DEC("9" * 35 + "." + "9" * 30), d38=DEC("9" * 28 + "." + "9" * 10), d15=DEC("9999999999999.99"),
              d0=DEC("9999999999"), f=3.40282e38, d=1.7976931348623157e308, c="abcde", vc=(TRICKY * 5)[:300],
              t=TRICKY * 1000, e="b c", bl=bytes(range(256)) * 300, bn=b"\x00\xff\x00\x01", vb=b"\x00" * 100,
              dt=datetime.date(9999, 12, 31), ts0=datetime.datetime(9999, 12, 31, 23, 59, 59),
              ts3=datetime.datetime(9999, 12, 31, 23, 59, 59, 999000), ts6=datetime.datetime(9999, 12, 31, 23, 59, 59, 999999),
              tsp=datetime.datetime(2037, 12, 31, 23, 59, 59, 999999),
              tm=datetime.timedelta(hours=838, minutes=59, seconds=59), tm0=datetime.timedelta(hours=838, minutes=59, seconds=59))
    nulls = dict(id=3, **{n: None for n in NAMES[1:]})
    odd = dict(id=4, i64=0, u64=2 ** 63, i32=-1, u32=1, i8=0, i16=-1, i24=0, y=2000,
               dbig=DEC("0." + "0" * 29 + "1"), d38=DEC("-0.0000000001"), d15=DEC("0.01"), d0=DEC("0"),
               f=1.17549e-38, d=5e-324, c="a", vc="\U0001F600" * 300, t="\r\n\t", e="a", bl=b"\x00",
               bn=b"ab\x00\x00", vb=b"\xff\xfe", dt=datetime.date(2024, 2, 29), ts0=datetime.datetime(2000, 2, 29, 12, 0, 1),
               ts3=datetime.datetime(2000, 1, 1, 0, 0, 0, 1000), ts6=datetime.datetime(1999, 12, 31, 23, 59, 59, 1),
               tsp=datetime.datetime(2001, 9, 9, 1, 46, 40), tm=-datetime.timedelta(microseconds=1),
               tm0=datetime.timedelta(0))
    return [lo, hi, nulls, odd]


def generated_rows(n, seed=7):
    """Rows with NULLs in every column somewhere, random doubles and floats (any bit
    pattern that is a finite number), random text and bytes."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        while True:
            d = struct.unpack("<d", rng.randbytes(8))[0]
            f = struct.unpack("<f", rng.randbytes(4))[0]
            if d == d and abs(d) != float("inf") and f == f and abs(f) < 3.4e38:
                break
        r = dict(id=100 + i, i64=rng.randint(-2 ** 63, 2 ** 63 - 1), u64=rng.randint(0, 2 ** 64 - 1),
                 i32=rng.randint(-2 ** 31, 2 ** 31 - 1), u32=rng.randint(0, 2 ** 32 - 1), i8=rng.randint(-128, 127),
                 i16=rng.randint(-32768, 32767), i24=rng.randint(-2 ** 23, 2 ** 23 - 1), y=rng.randint(1901, 2155),
                 dbig=DEC(rng.randint(-10 ** 65 + 1, 10 ** 65 - 1)).scaleb(-30),
                 d38=DEC(rng.randint(-10 ** 38 + 1, 10 ** 38 - 1)).scaleb(-10),
                 d15=DEC(rng.randint(-10 ** 15 + 1, 10 ** 15 - 1)).scaleb(-2), d0=DEC(rng.randint(-10 ** 10 + 1, 10 ** 10 - 1)),
                 f=float("%.6g" % f), d=d, c="".join(rng.choice("ab \u00e9") for _ in range(rng.randint(0, 5))).rstrip(" "),
                 vc="".join(chr(rng.choice([rng.randint(1, 0x7f), rng.randint(0x80, 0xd7ff), rng.randint(0x10000, 0x10ffff)]))
                            for _ in range(rng.randint(0, 120))),
                 t="x" * rng.choice([0, 1, 250, 251, 252, 65535, 65536]) if i % 50 == 0 else "row %d" % i, e=rng.choice(["a", "b c"]),
                 bl=rng.randbytes(rng.choice([0, 1, 250, 251, 70000])) if i % 25 == 0 else rng.randbytes(rng.randint(0, 30)),
                 bn=rng.randbytes(4), vb=rng.randbytes(rng.randint(0, 100)),
                 dt=datetime.date(1, 1, 1) + datetime.timedelta(days=rng.randint(0, 3652058)),
                 ts0=datetime.datetime(1000, 1, 1) + datetime.timedelta(seconds=rng.randint(0, 283000000000)),
                 ts3=datetime.datetime(1000, 1, 1) + datetime.timedelta(milliseconds=rng.randint(0, 283000000000000)),
                 ts6=datetime.datetime(1000, 1, 1) + datetime.timedelta(microseconds=rng.randint(0, 283000000000000000)),
                 tsp=datetime.datetime(1971, 1, 1) + datetime.timedelta(microseconds=rng.randint(0, 2 * 10 ** 15)),
                 tm=datetime.timedelta(microseconds=rng.randint(-3020399999999, 3020399999999)),
                 tm0=datetime.timedelta(seconds=rng.randint(-3020399, 3020399)))
        for name in NAMES[1:]:
            if rng.random() < 0.08:
                r[name] = None
        out.append(r)
    return out


def engine():
    return sa.create_engine(MYSQL_URL.replace("mysql://", "mysql+pymysql://") + "?charset=utf8mb4")


def load(table, rows, columns=COLUMNS):
    e = engine()
    with e.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS %s" % table))
        conn.execute(sa.text("CREATE TABLE %s (%s) CHARACTER SET utf8mb4" % (table, ", ".join("%s %s" % c[:2] for c in columns))))
        conn.execute(sa.text("SET time_zone = '+00:00'"))
        names = [c[0] for c in columns]
        for i in range(0, len(rows), 200):
            conn.exec_driver_sql("INSERT INTO %s (%s) VALUES (%s)" % (table, ", ".join(names), ", ".join(["%s"] * len(names))),
                                 [tuple(format(r[n], "f") if isinstance(r[n], DEC) else r[n] for n in names)  # decimals exact
                                  for r in rows[i:i + 200]])
    e.dispose()


def connect():
    u = sa.engine.make_url(MYSQL_URL)
    return pymysql.connect(host=u.host, port=u.port or 3306, user=u.username, password=u.password,
                           database=u.database, charset="utf8mb4", init_command="SET time_zone = '+00:00'")


def packets(stream):
    """The protocol's framing, in Python: [logical payload], continuation packets joined."""
    out, pos = [], 0
    while pos < len(stream):
        payload = b""
        while True:
            n = int.from_bytes(stream[pos:pos + 3], "little")
            payload += stream[pos + 4:pos + 4 + n]
            pos += 4 + n
            if n < 0xFFFFFF:
                break
        out.append(payload)
    return out


def capture(sql):
    """(sequence id of the first row packet, the row packets through the terminating EOF
    or ERR packet as the server sent them, PyMySQL's rows read from those same payloads)."""
    conn = connect()
    try:
        conn.query(sql, unbuffered=True)
        result, seq, stream = conn._result, conn._next_seq_id, bytearray()
        while True:
            payload = b""
            while True:
                head = conn._rfile.read(4)
                n = int.from_bytes(head[:3], "little")
                body = conn._rfile.read(n)
                stream += head + body
                payload += body
                if n < 0xFFFFFF:
                    break
            if payload[0] == 0xFF or payload[0] == 0xFE and len(payload) < 9:
                break
        result.unbuffered_active = False
        rows = [result._read_row_from_packet(pymysql.protocol.MysqlPacket(p, conn.encoding)) for p in packets(bytes(stream))[:-1]]
        return seq, bytes(stream), rows
    finally:
        conn.close()


def check(arrays, want_rows, types=TYPES):
    """Decoded arrays equal PyMySQL's values, and what pa.array makes of them (the generic path)."""
    assert [a.type for a in arrays] == types
    got = [list(r) for r in zip(*[a.to_pylist() for a in arrays])]
    assert len(got) == len(want_rows)
    for g, w in zip(got, want_rows):
        assert g == list(w), [(n, a, b) for n, a, b in zip(NAMES, g, w) if a != b]
    for i, t in enumerate(types):
        ref = pa.array([r[i] for r in want_rows], type=t)
        assert arrays[i].equals(ref), NAMES[i]


@pytest.fixture(scope="module")
def contract_table():
    load(CONTRACT, edge_rows() + generated_rows(2000))
    return CONTRACT


def decode_in_chunks(stream, seq, sizes, rng, types=TYPES, kinds=KINDS):
    dec = RowDecoder(kinds, seq)
    parts, pos = [], 0
    while pos < len(stream):
        chunk = stream[pos:pos + rng.choice(sizes)]
        at = 0
        while at < len(chunk):
            at = dec.feed(chunk, at, rng.choice([0, 1, 7, 500]))
            if rng.random() < 0.3 or dec.buffered_rows >= 500:
                parts.append(dec.take(types))
        pos += len(chunk)
    parts.append(dec.take(types))
    dec.end()
    return dec, [pa.concat_arrays([p[i] for p in parts]) for i in range(len(types))]


@pytest.mark.parametrize("seed", [1, 2])
def test_decoder_matches_pymysql_whatever_the_chunking(contract_table, seed):
    seq, stream, want = capture("SELECT %s FROM %s ORDER BY id" % (", ".join(NAMES), contract_table))
    assert len(want) == 2004 and want[2][1:] == (None,) * (len(NAMES) - 1)
    dec, arrays = decode_in_chunks(stream, seq, [1, 2, 3, 5, 64, 1000, 65536, 1 << 20], random.Random(seed))
    check(arrays, want)
    assert dec.finished and dec.eof[:2] == b"\x00\x00"           # no warnings
    assert dec.next_seq == (seq + len(packets(stream))) % 256


def test_decoder_split_at_every_byte(contract_table):
    # edge rows 1, 3 and 4: every length form but the 3-byte one, NULLs, empty and NUL-bearing values
    seq, stream, want = capture("SELECT %s FROM %s WHERE id IN (1, 3, 4) ORDER BY id" % (", ".join(NAMES), contract_table))
    for cut in range(len(stream) + 1):
        dec = RowDecoder(KINDS, seq)
        assert dec.feed(stream[:cut]) == cut
        assert dec.feed(stream[cut:]) == len(stream) - cut
        dec.end()
        check(dec.take(TYPES), want)


def test_max_rows_bounds_each_batch(contract_table):
    seq, stream, want = capture("SELECT %s FROM %s ORDER BY id" % (", ".join(NAMES), contract_table))
    dec, sizes, pos, parts = RowDecoder(KINDS, seq), [], 0, []
    while pos < len(stream):
        pos = dec.feed(stream, pos, 300)
        if dec.buffered_rows:
            sizes.append(dec.buffered_rows)
            parts.append(dec.take(TYPES))
    assert sizes == [300] * 6 + [204]
    check([pa.concat_arrays([p[i] for p in parts]) for i in range(len(TYPES))], want)


def test_doubles_and_floats_are_the_drivers_values_bit_for_bit(contract_table):
    seq, stream, want = capture("SELECT f, d FROM %s ORDER BY id" % contract_table)
    dec = RowDecoder([K.TEXT, K.TEXT], seq)
    dec.feed(stream)
    f, d = dec.take([pa.float64(), pa.float64()])
    assert [struct.pack("<d", v) if v is not None else None for v in d.to_pylist()] == \
           [struct.pack("<d", r[1]) if r[1] is not None else None for r in want]
    assert f.to_pylist() == [r[0] for r in want]


@pytest.mark.parametrize("sql", ["SELECT 1, REPEAT('x', 16777209)",                 # exactly 0xFFFFFF: an empty packet follows
                                 "SELECT REPEAT('a', 16000000), NULL, REPEAT('b', 16000000), 7",
                                 "SELECT REPEAT('c', 16777216), 1"])                 # the 8-byte length form
def test_rows_of_16_mib_and_more_span_packets(sql):
    seq, stream, want = capture(sql)
    heads = [0]
    while heads[-1] < len(stream):
        heads.append(heads[-1] + 4 + int.from_bytes(stream[heads[-1]:heads[-1] + 3], "little"))
    assert len(heads) - 1 > 2                                    # the row took more than one packet
    types = [pa.string() if isinstance(v, str) or v is None else pa.int64() for v in want[0]]
    kinds = [K.TEXT if t == pa.string() else K.INT for t in types]
    for cuts in ([], list(range(1 << 20, len(stream), 1 << 20)), [heads[1] + 2, heads[2] + 1, heads[2] + 3]):
        dec, last = RowDecoder(kinds, seq), 0
        for c in cuts + [len(stream)]:
            if c > last:
                dec.feed(stream[last:c])
                last = c
        dec.end()
        assert [a.to_pylist() for a in dec.take(types)] == [[v] for v in want[0]]


def test_server_error_mid_result_is_raised_with_its_message():
    # the subquery returns two rows only for the 500th row: MariaDB has sent 499 rows by then
    seq, stream, want = capture("SELECT seq, IF(seq = 500, (SELECT 1 UNION SELECT 2), seq) FROM seq_1_to_1000")
    assert len(want) == 499
    dec = RowDecoder([K.INT, K.INT], seq)
    with pytest.raises(K.ServerError, match=r"server error 1242 \(21000\): Subquery returns more than 1 row") as e:
        dec.feed(stream)
    assert e.value.code == 1242 and dec.buffered_rows == 499
    with pytest.raises(K.ServerError):
        dec.feed(b"")                                            # it stays failed


def spec_packet(seq, payload):
    return len(payload).to_bytes(3, "little") + bytes([seq]) + payload


def test_malformed_and_truncated_streams_fail_clearly():
    seq, stream, _ = capture("SELECT 12, 'ab', DATE '2020-01-02' UNION ALL SELECT NULL, '', NULL")
    kinds = [K.INT, K.TEXT, K.DATE]
    for cut in range(len(stream)):                              # cut anywhere: not finished, and end() says so
        dec = RowDecoder(kinds, seq)
        dec.feed(stream[:cut])
        with pytest.raises(K.ProtocolError, match="without its EOF packet"):
            dec.end()
    with pytest.raises(K.ProtocolError, match="out of sequence: id %d where %d was due" % (seq, seq + 1)):
        RowDecoder(kinds, seq + 1).feed(stream)
    row = b"\x0212\x02ab\x0a2020-01-02"
    bad = {
        "ends inside column 3 of 3": row[:-1],
        "1 bytes left after its 3 columns": row + b"x",
        "column 2: 0xFF is not a value length": b"\x0212\xff",
        "an empty packet": b"",
        "ends inside column 2": b"\x0212\xfc\x01",            # a 2-byte length cut short
    }
    for message, payload in bad.items():
        dec = RowDecoder(kinds, 1)
        with pytest.raises(K.ProtocolError, match=message):
            dec.feed(spec_packet(1, row) + spec_packet(2, payload) + spec_packet(3, b"\xfe\x00\x00\x02\x00"))
        assert dec.buffered_rows == 1
    # values PyMySQL hands back as strings (no date) or that overflow are errors naming the column
    for value, kind, what in ((b"0000-00-00", K.DATE, "DATE"), (b"2021-02-29", K.DATE, "DATE"), (b"2021-1-02", K.DATE, "DATE"),
                              (b"2021-01-01 24:00:00", K.DATETIME, "DATETIME"), (b"2021-01-01 00:00:00.1234567", K.DATETIME, "DATETIME"),
                              (b"1:60:00", K.TIME, "TIME"), (b"9223372036854775808", K.INT, "signed integer"),
                              (b"18446744073709551616", K.UINT, "unsigned integer"), (b"-1", K.UINT, "unsigned integer"),
                              (b"", K.INT, "signed")):
        dec = RowDecoder([K.TEXT, kind], 1)
        with pytest.raises(RowError, match="row 1, column 2: %r is not a %s" % (value.decode(), what)) as e:
            dec.feed(spec_packet(1, b"\x01a" + bytes([len(value)]) + value))
        assert e.value.column == 1
    dec = RowDecoder([K.TEXT], 1)
    dec.feed(spec_packet(1, b"\x02\xc3\x28") + spec_packet(2, b"\xfe\x00\x00\x02\x00"))
    with pytest.raises(RowError, match="column 1: Invalid UTF8"):
        dec.take([pa.string()])
    with pytest.raises(ValueError, match="unknown column kind"):
        RowDecoder([42])


def test_pymysql_connection_is_consistent_after_a_native_read(contract_table):
    from fastsync.transfer.mysqlread import mysql_batches as _mysql_batches
    conn = connect()
    for fetch in (700, 5000):
        cur = conn.cursor(pymysql.cursors.SSCursor)
        cur.execute("SELECT %s FROM %s ORDER BY id" % (", ".join(NAMES), contract_table))
        batches = list(_mysql_batches(conn, KINDS, TYPES, NAMES, fetch))
        assert [len(b) for b in batches] == ([700] * 2 + [604] if fetch == 700 else [2004])
        with warnings.catch_warnings():
            warnings.simplefilter("error")                       # "Previous unbuffered result was left incomplete"
            cur.close()
            with conn.cursor() as c2:                            # the same connection goes on
                c2.execute("SELECT COUNT(*), SUM(i8) FROM %s" % contract_table)
                count, total = c2.fetchone()
        assert count == 2004 and total == pc.sum(pa.Table.from_batches(batches).column("i8")).as_py()
    conn.close()


# ---- end to end: `fastsync import` takes the fast path and writes what the generic path writes

def fastsync(*args):
    return subprocess.run([sys.executable, "-m", "fastsync", *parquet_unless_told(args)], capture_output=True, text=True, timeout=300)


def fast_and_generic(tmp_path, mappers, *args):
    """The same import through the fast path and the generic path (--no-fast-path), each
    checked to have read every split the way it says: the two outputs read back."""
    common = ["import", "--connect", MYSQL_URL, "-m", mappers, "--fetch-size", 300, "--log-level", "DEBUG", *args]
    fast = fastsync(*common, "--target-dir", tmp_path / "fast")
    assert fast.returncode == 0, fast.stderr
    assert fast.stderr.count("read as MySQL text rows, decoded natively") == mappers, fast.stderr
    assert "generic path" not in fast.stderr
    generic = fastsync(*common, "--no-fast-path", "--target-dir", tmp_path / "generic")
    assert generic.returncode == 0, generic.stderr
    assert generic.stderr.count("generic path, read through SQLAlchemy") == mappers
    a, b = pq.read_table(tmp_path / "fast").sort_by("id"), pq.read_table(tmp_path / "generic").sort_by("id")
    assert a.schema == b.schema and a.num_rows == b.num_rows
    for name in a.column_names:
        assert a.column(name).to_pylist() == b.column(name).to_pylist(), name
    # DuckDB reads the same values from both
    q = "SELECT * FROM read_parquet('%s/*.parquet') ORDER BY id"
    assert duckdb.sql(q % (tmp_path / "fast")).fetchall() == duckdb.sql(q % (tmp_path / "generic")).fetchall()
    return a


@pytest.mark.parametrize("mappers", [1, 2])
def test_import_takes_the_fast_path_and_writes_what_the_generic_path_writes(contract_table, tmp_path, mappers):
    got = fast_and_generic(tmp_path, mappers, "--table", contract_table)
    assert got.num_rows == 2004 and [f.type for f in got.schema] == TYPES


@pytest.mark.parametrize("args", [["--where", "LENGTH('%') = 1 AND e = 'a'"],         # '%' reaches the server as one '%'
                                  ["--incremental", "append", "--check-column", "ts6", "--last-value", "5000-01-01 00:00:00.5"]])
def test_conditions_and_bound_values_reach_the_server_as_in_the_generic_path(contract_table, tmp_path, args):
    got = fast_and_generic(tmp_path, 2, "--table", contract_table, *args)
    assert 100 < got.num_rows < 2000


def small_table(name, columns, *statements):
    e = engine()
    with e.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS %s" % name))
        conn.execute(sa.text("CREATE TABLE %s (%s)" % (name, columns)))
        for sql in statements:
            conn.execute(sa.text(sql))
    e.dispose()


def test_tables_the_decoder_cant_read_exactly_take_the_generic_path(tmp_path):
    small_table(OTHER, "id INT PRIMARY KEY, b BIT(8), s SET('x', 'y')",
                "INSERT INTO %s VALUES (1, b'101', 'x,y'), (2, NULL, NULL)" % OTHER)
    out = fastsync("import", "--connect", MYSQL_URL, "--table", OTHER, "--columns", "id,b", "-m", 1,
                   "--log-level", "DEBUG", "--target-dir", tmp_path / "o")
    assert out.returncode == 0, out.stderr
    assert "generic path, read through SQLAlchemy (column b (BIT))" in out.stderr
    assert pq.read_table(tmp_path / "o").sort_by("id").to_pylist() == [{"id": 1, "b": 5}, {"id": 2, "b": None}]


def test_a_zero_date_fails_the_import_naming_the_column(tmp_path):
    small_table(ZERO, "id INT PRIMARY KEY, d DATE", "SET SESSION sql_mode = ''",
                "INSERT INTO %s VALUES (1, '2020-01-01'), (2, '0000-00-00')" % ZERO)
    for extra in ([], ["--no-fast-path"]):                     # the generic path fails on it too
        out = fastsync("import", "--connect", MYSQL_URL, "--table", ZERO, "-m", 1, *extra, "--target-dir", tmp_path / "z")
        assert out.returncode == 1 and "%s.d: cannot convert a value" % ZERO in out.stderr, out.stderr
        assert not (tmp_path / "z").exists()
    out = fastsync("import", "--connect", MYSQL_URL, "--table", ZERO, "-m", 1, "--target-dir", tmp_path / "z")
    assert "'0000-00-00' is not a DATE" in out.stderr
