"""The native Avro batch codec (ext/fastsync/_avro.pyx) against fastavro and a pure-Python
reference of its contract: AvroFlumeEvents decoded into columns and encoded from them,
rows interleaved from per-column pieces."""
from __future__ import annotations

import io

import fastavro
import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from fastsync._native import avro_interleave, decode_flume_events
from fastsync.event import EventBatch
from fastsync.kafkaio import FLUME_EVENT_SCHEMA, encode_events, flume_event_bytes, flume_events_batch

SCHEMA = fastavro.parse_schema(FLUME_EVENT_SCHEMA)


def zigzag(v: int) -> bytes:
    z = (v << 1) ^ (v >> 63)
    out = bytearray()
    while True:
        if z < 0x80:
            out.append(z)
            return bytes(out)
        out.append((z & 0x7F) | 0x80)
        z >>= 7


def raw_event(entries: list[tuple[str, str]], body: bytes, sized_blocks: bool) -> bytes:
    """An AvroFlumeEvent written by hand: the map in one block (negative count and byte
    size when `sized_blocks`, as Java writers may), repeated keys allowed."""
    items = b"".join(zigzag(len(k.encode())) + k.encode() + zigzag(len(v.encode())) + v.encode() for k, v in entries)
    if not entries:
        head = b""
    elif sized_blocks:
        head = zigzag(-len(entries)) + zigzag(len(items)) + items
    else:
        head = zigzag(len(entries)) + items
    return head + b"\x00" + zigzag(len(body)) + body


def columns_as_events(values):
    """decode_flume_events, turned back into (headers dict, body) per value."""
    batch, bad = flume_events_batch(values)
    return [(e.headers, e.body) for e in batch.events()], bad


text = st.text(max_size=12)
events = st.lists(st.tuples(st.lists(st.tuples(st.sampled_from(["a", "b", "key", "é", ""]) | text, text), max_size=5),
                            st.binary(max_size=40), st.booleans()), max_size=30)


@settings(max_examples=200, deadline=None)
@given(events)
def test_decode_flume_events_matches_fastavro(evs):
    values = [raw_event(entries, body, sized) for entries, body, sized in evs]
    want = []
    for v in values:
        rec = fastavro.schemaless_reader(io.BytesIO(v), SCHEMA)
        want.append((rec["headers"], rec["body"]))        # a repeated key: the last value, as a dict
    got, bad = columns_as_events(values)
    assert bad == [] and got == want


def test_decode_flume_events_reads_fastavros_output_and_keeps_bad_values_whole():
    good = [flume_event_bytes({"h": "v%d" % i, "x": "é"}, b"body %d" % i) for i in range(5)]
    values = [good[0], b"not avro at all", good[1], None, good[2], good[3] + b"trailing", b"\x02\x02"]
    got, bad = columns_as_events(values)
    assert bad == [1, 3, 6]
    assert got[1] == ({}, b"not avro at all") and got[3] == ({}, b"") and got[6] == ({}, b"\x02\x02")
    assert got[0] == ({"h": "v0", "x": "é"}, b"body 0")
    assert got[5] == ({"h": "v3", "x": "é"}, b"body 3")      # bytes after the record are ignored, as fastavro does


def test_decode_flume_events_header_values_not_utf8_are_replaced():
    v = b"\x02\x02h\x04\xff\xfe\x00\x02b"
    got, bad = columns_as_events([v])
    assert bad == [] and got == [({"h": "\ufffd\ufffd"}, b"b")]


def test_decode_flume_events_empty():
    data, offsets, names, cols, bad = decode_flume_events([])
    assert np.frombuffer(offsets, np.int64).tolist() == [0] and names == [] and cols == [] and bad == []


def interleave_reference(pieces, n):
    rows = []
    for i in range(n):
        rows.append(b"".join(bytes(data)[int(o[i]):int(o[i + 1])] for data, o in pieces))
    return rows


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 20).flatmap(lambda n: st.tuples(st.just(n), st.lists(
    st.lists(st.binary(max_size=9), min_size=n, max_size=n), max_size=4)), ), st.integers(0, 3))
def test_interleave_matches_reference(case, shift):
    n, cols = case
    pieces = []
    for col in cols:
        o = np.zeros(n + 1, np.int64)
        np.cumsum([len(b) for b in col], out=o[1:])
        pieces.append((pa.py_buffer(b"#" * shift + b"".join(col)), o + shift))
    data, offsets = avro_interleave(pieces, n)
    arr = pa.Array.from_buffers(pa.large_binary(), n, [None, offsets, data])
    assert arr.to_pylist() == interleave_reference(pieces, n)


def test_interleave_checks_its_pieces():
    import pytest
    with pytest.raises(ValueError):
        avro_interleave([(b"abc", np.array([0, 4], np.int64))], 1)
    with pytest.raises(ValueError):
        avro_interleave([(b"abc", np.array([0, 1, 2], np.int64))], 1)


FLAT = {"type": "record", "name": "r", "fields": [
    {"name": "b", "type": ["null", "boolean"]}, {"name": "i", "type": ["int", "null"]}, {"name": "l", "type": "long"},
    {"name": "f", "type": ["null", "float"]}, {"name": "d", "type": ["null", "double"]},
    {"name": "s", "type": ["null", "string"]}, {"name": "by", "type": ["null", "bytes"]},
    {"name": "dec", "type": ["null", {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 3}]},
    {"name": "day", "type": ["null", {"type": "int", "logicalType": "date"}]},
    {"name": "at", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}]},
    {"name": "n", "type": "null"}]}
rows = st.fixed_dictionaries({
    "b": st.none() | st.booleans(), "i": st.none() | st.integers(-2**31, 2**31 - 1), "l": st.integers(-2**63, 2**63 - 1),
    "f": st.none() | st.floats(width=32, allow_nan=False), "d": st.none() | st.floats(allow_nan=False),
    "s": st.none() | st.text(max_size=10), "by": st.none() | st.binary(max_size=10),
    "dec": st.none() | st.decimals(min_value=-10**8, max_value=10**8, places=3, allow_nan=False),
    "day": st.none() | st.dates(), "n": st.none(),
    "at": st.none() | st.datetimes(min_value=__import__("datetime").datetime(1900, 1, 1),
                                   timezones=st.just(__import__("datetime").timezone.utc))
                              .map(lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000))})


@settings(max_examples=60, deadline=None)
@given(st.lists(rows, max_size=40), st.sampled_from(["null", "deflate", "snappy"]))
def test_columnar_read_matches_fastavro(tmp_path_factory, recs, codec):
    from fastsync.transfer.avrofile import columnar_batches
    path = str(tmp_path_factory.mktemp("avro") / "f.avro")
    with open(path, "wb") as f:
        fastavro.writer(f, fastavro.parse_schema(FLAT), recs, codec=codec, sync_interval=64)     # many blocks
    with open(path, "rb") as f:
        want = list(fastavro.reader(f))
    names = [x["name"] for x in FLAT["fields"]]
    got = [b.to_pylist() for b in columnar_batches(path, names, 7)]
    assert [r for b in got for r in b] == want


def test_decode_block_names_what_does_not_decode():
    import pytest
    from fastsync._native import AVRO_KINDS, avro_decode_block
    with pytest.raises(ValueError, match="record 1 field 0"):
        avro_decode_block(b"\x02\x04\x02", 2, [AVRO_KINDS["long"]], [0])     # union index 2 in a 2-branch union
    with pytest.raises(ValueError, match="bytes after"):
        avro_decode_block(b"\x02\x00", 1, [AVRO_KINDS["long"]], [-1])


header_value = st.one_of(st.none(), text)
batches = st.integers(0, 12).flatmap(lambda n: st.tuples(
    st.lists(st.binary(max_size=40), min_size=n, max_size=n),
    st.dictionaries(st.sampled_from(["a", "key", "é", "timestamp", ""]),
                    st.one_of(text, st.lists(header_value, min_size=n, max_size=n)), max_size=4),
    st.integers(0, 2)))


@settings(max_examples=300, deadline=None)
@given(batches)
def test_encode_flume_events_is_byte_for_byte_fastavros(case):
    """kafkaio.encode_events (the Kafka sink's and channel's useFlumeEventFormat path, now
    encoded natively by column) against fastavro writing each event; also on a slice of
    a larger batch (offsets and header arrays not starting at 0)."""
    bodies, headers, pad = case
    n = len(bodies)
    cols = {k: (v if isinstance(v, str) else pa.array(v, pa.string())) for k, v in headers.items()}
    whole = EventBatch.from_bodies([b"x"] * pad + bodies + [b"y"] * pad,
                                   {k: (v if isinstance(v, str) else pa.concat_arrays([pa.array(["p"] * pad, pa.string()), v,
                                                                                       pa.array(["q"] * pad, pa.string())]))
                                    for k, v in cols.items()})
    batch = whole.slice(pad, pad + n)
    want = [flume_event_bytes({k: (v if isinstance(v, str) else v[i]) for k, v in headers.items()
                               if isinstance(v, str) or v[i] is not None}, body) for i, body in enumerate(bodies)]
    got, keys = encode_events(batch, True, "key")
    assert got == want
    assert keys == (None if "key" not in headers else [headers["key"] if isinstance(headers["key"], str) else headers["key"][i]
                                                       for i in range(n)])


ARRAY = fastavro.parse_schema({"type": "array", "items": FLUME_EVENT_SCHEMA})


def raw_array(evs, split: int) -> bytes:
    """An array<AvroFlumeEvent> written by hand in blocks of `split` events (a negative
    count with a byte size every other block, as Avro allows)."""
    items = [raw_event(entries, body, sized) for entries, body, sized in evs]
    out = b""
    for b, at in enumerate(range(0, len(items), split)):
        block = items[at:at + split]
        data = b"".join(block)
        out += (zigzag(-len(block)) + zigzag(len(data)) if b % 2 else zigzag(len(block))) + data
    return out + b"\x00"


@settings(max_examples=200, deadline=None)
@given(events, st.integers(1, 7), st.binary(max_size=3), st.binary(max_size=3))
def test_decode_flume_array_matches_fastavro(evs, split, before, after):
    """decode_flume_array (the avro source's appendBatch request) against fastavro reading
    the same array, at an offset inside a buffer with bytes after it."""
    from fastsync._native import decode_flume_array
    from fastsync.kafkaio import flume_columns_batch
    arr = raw_array(evs, split)
    want = [(rec["headers"], rec["body"]) for rec in fastavro.schemaless_reader(io.BytesIO(arr), ARRAY)]
    data, offsets, names, columns, end = decode_flume_array(before + arr + after, len(before))
    assert end == len(before) + len(arr)
    batch = flume_columns_batch(data, offsets, names, columns)
    assert [(e.headers, e.body) for e in batch.events()] == want


def test_decode_flume_array_refuses_what_does_not_decode():
    import pytest
    from fastsync._native import decode_flume_array
    whole = b"".join([zigzag(3)] + [flume_event_bytes({"h": "v"}, b"body %d" % i) for i in range(3)]) + b"\x00"
    assert decode_flume_array(whole)[4] == len(whole)
    for cut in range(len(whole)):                    # every truncation
        with pytest.raises(ValueError, match="not an array of AvroFlumeEvent"):
            decode_flume_array(whole[:cut])
    with pytest.raises(ValueError):
        decode_flume_array(zigzag(1 << 40) + b"\x00\x00")      # a count no buffer holds: refused, not allocated
    data, offsets, names, cols, end = decode_flume_array(b"\x00")
    assert np.frombuffer(offsets, np.int64).tolist() == [0] and names == [] and end == 1
