"""Tests of fastsync.event: Event / EventBatch and their Arrow conversions.

The reference for every property is the plain list of `Event`s: a batch must behave as
that list (round trips, slicing, concatenation), whatever the header layout.
"""
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

from fastsync.event import Event, EventBatch, LineBatch

SETTINGS = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

# -- strategies --------------------------------------------------------------------------

# bodies: arbitrary bytes, biased towards the awkward ones (empty, NUL, CR, LF)
bodies = st.one_of(
    st.binary(max_size=24),
    st.lists(st.sampled_from([b"\x00", b"\n", b"\r", b"\r\n", b"a", b"\xff"]), max_size=6).map(b"".join),
    st.just(b""),
)
# header names: any text except "body", which names the body column in to_arrow() (see
# test_header_named_body_round_trips for that case)
header_names = st.one_of(st.sampled_from(["host", "topic", "ts", ""]), st.text(max_size=6)).filter(
    lambda s: s != "body")
header_values = st.text(max_size=10)  # any unicode (hypothesis excludes lone surrogates)


@st.composite
def event_lists(draw, max_size=12):
    """Events whose headers come from a small pool of names, so that some headers are on
    every event with one value (shared), some on every event with different values and
    some on a few events only."""
    names = draw(st.lists(header_names, max_size=4, unique=True))
    n = draw(st.integers(0, max_size))
    shared = {name: draw(header_values) for name in names if draw(st.booleans())}
    events = []
    for _ in range(n):
        headers = {}
        for name in names:
            mode = draw(st.sampled_from(["shared", "own", "absent"]))
            if mode == "shared" and name in shared:
                headers[name] = shared[name]
            elif mode == "own":
                headers[name] = draw(header_values)
        events.append(Event(draw(bodies), headers))
    return events


def as_pairs(events):
    return [(e.body, dict(e.headers)) for e in events]


def check_batch(batch: EventBatch, events):
    """The batch holds exactly `events` and is internally consistent."""
    assert len(batch) == len(events)
    assert batch.events() == events
    assert list(batch) == events
    assert batch.nbytes == sum(len(e.body) for e in events)
    assert [batch.body(i) for i in range(len(batch))] == [e.body for e in events]
    assert batch.bodies().to_pylist() == [e.body for e in events]
    assert batch.offsets.dtype == np.int64 and len(batch.offsets) == len(events) + 1
    assert np.all(np.diff(batch.offsets) >= 0)
    for name, col in batch.headers.items():
        assert isinstance(col, str) or len(col) == len(events)
        assert batch.header_array(name).to_pylist() == [e.headers.get(name) for e in events]


# -- round trips -------------------------------------------------------------------------

@SETTINGS
@given(event_lists())
def test_events_batch_arrow_round_trip(events):
    batch = EventBatch.from_events(events)
    check_batch(batch, events)

    rb = batch.to_arrow()
    assert isinstance(rb, pa.RecordBatch)
    assert rb.num_rows == len(events)
    assert rb.schema.field("body").type == pa.large_binary()
    assert rb.column("body").to_pylist() == [e.body for e in events]
    for name in batch.headers:
        col = rb.column(name)
        if pa.types.is_dictionary(col.type):
            col = col.dictionary_decode()
        assert col.to_pylist() == [e.headers.get(name) for e in events]

    back = EventBatch.from_arrow(rb)
    check_batch(back, events)
    # shared headers stay shared through Arrow (one-value dictionary columns)
    for name, col in batch.headers.items():
        if isinstance(col, str) and len(events):
            assert back.headers[name] == col
            assert pa.types.is_dictionary(rb.column(name).type)
            assert len(rb.column(name).dictionary) == 1

    # and through a Table (possibly several chunks)
    check_batch(EventBatch.from_arrow(pa.Table.from_batches([rb])), events)
    check_batch(EventBatch.from_arrow(pa.Table.from_batches([rb, rb])), events + events)


@SETTINGS
@given(event_lists())
def test_from_events_header_layout(events):
    """A header every event carries with one value is stored once (a str); any other is a
    string column with nulls where it is absent."""
    batch = EventBatch.from_events(events)
    names = {k for e in events for k in e.headers}
    assert set(batch.headers) == names
    for name in names:
        values = [e.headers.get(name) for e in events]
        col = batch.headers[name]
        if None not in values and len(set(values)) == 1:
            assert col == values[0]
        else:
            assert isinstance(col, pa.Array)
            assert col.to_pylist() == values


@SETTINGS
@given(st.lists(bodies, max_size=20), st.dictionaries(header_names, header_values, max_size=3))
def test_from_bodies_shared_headers(bs, headers):
    batch = EventBatch.from_bodies(bs, headers)
    check_batch(batch, [Event(b, headers) for b in bs])
    check_batch(EventBatch.from_arrow(batch.to_arrow()), [Event(b, headers) for b in bs])


def test_binary_bodies_with_nul_and_newlines():
    bs = [b"", b"\x00", b"\n", b"a\nb\r\n", b"\x00\x00\n\x00", b"", b"\r", bytes(range(256))]
    batch = EventBatch.from_bodies(bs)
    check_batch(batch, [Event(b) for b in bs])
    check_batch(EventBatch.from_arrow(batch.to_arrow()), [Event(b) for b in bs])
    check_batch(EventBatch.from_arrow(batch.bodies()), [Event(b) for b in bs])


def test_all_empty_bodies():
    batch = EventBatch.from_bodies([b""] * 5, {"h": "v"})
    check_batch(batch, [Event(b"", {"h": "v"})] * 5)
    assert batch.nbytes == 0
    check_batch(EventBatch.from_arrow(batch.to_arrow()), [Event(b"", {"h": "v"})] * 5)


@pytest.mark.parametrize("make", [
    lambda: EventBatch.empty(),
    lambda: EventBatch.from_events([]),
    lambda: EventBatch.from_bodies([]),
    lambda: EventBatch.from_bodies([], {"h": "v"}),
    lambda: EventBatch.from_arrow(pa.array([], pa.binary())),
    lambda: EventBatch.from_arrow(pa.array([], pa.large_string())),
    lambda: EventBatch.from_bodies([b"abc", b"d"]).slice(1, 1),
])
def test_empty_batches(make):
    batch = make()
    check_batch(batch, [])
    rb = batch.to_arrow()
    assert rb.num_rows == 0
    check_batch(EventBatch.from_arrow(rb), [])
    check_batch(EventBatch.from_arrow(pa.Table.from_batches([rb])), [])
    check_batch(EventBatch.concat([batch, batch]), [])


def test_unicode_header_values():
    values = ["", "ümlaut", "日本語", "emoji 🎉", "nul\x00inside", "line\nbreak", "\u200b", "\U0010ffff"]
    events = [Event(b"%d" % i, {"v": v, "k": "same"}) for i, v in enumerate(values)]
    batch = EventBatch.from_events(events)
    check_batch(batch, events)
    check_batch(EventBatch.from_arrow(batch.to_arrow()), events)


def test_headers_on_some_events_only():
    events = [Event(b"a", {"x": "1"}), Event(b"b"), Event(b"c", {"y": "2"}), Event(b"d", {"x": "1", "y": "3"})]
    batch = EventBatch.from_events(events)
    check_batch(batch, events)
    assert batch.headers["x"].to_pylist() == ["1", None, None, "1"]
    assert batch.headers["y"].to_pylist() == [None, None, "2", "3"]
    check_batch(EventBatch.from_arrow(batch.to_arrow()), events)


def test_header_named_body_round_trips():
    # REGRESSION for a BUG found at 8bd040a (fixed in 2d5a95c): a header called "body"
    # -- an ordinary Flume header name -- collided with the body column in to_arrow():
    # the RecordBatch got two "body" columns and from_arrow() then failed with
    #   KeyError: 'Field "body" exists 2 times in schema'
    events = [Event(b"a", {"body": "x"}), Event(b"b", {"body": "y"})]
    batch = EventBatch.from_events(events)
    check_batch(batch, events)
    check_batch(EventBatch.from_arrow(batch.to_arrow()), events)


# -- slicing and concatenation -----------------------------------------------------------

@SETTINGS
@given(event_lists(max_size=15), st.integers(-18, 18), st.integers(-18, 18))
def test_slice_is_list_slicing(events, start, stop):
    batch = EventBatch.from_events(events)
    part = batch.slice(start, stop)
    check_batch(part, events[start:stop])
    # zero-copy: the slice shares the body buffer
    assert part.data.address == batch.data.address
    # a slice survives Arrow and re-slicing
    check_batch(EventBatch.from_arrow(part.to_arrow()), events[start:stop])
    check_batch(part.slice(1, -1), events[start:stop][1:-1])


@SETTINGS
@given(st.lists(st.tuples(event_lists(max_size=6), st.integers(0, 6), st.integers(0, 6)), max_size=5))
def test_concat_is_list_concatenation(parts):
    """concat of batches (some of them slices) holds the concatenated events (at 8bd040a
    this failed for per-event header columns, see test_concat_with_per_event_header_columns)."""
    batches, expected = [], []
    for events, a, b in parts:
        batches.append(EventBatch.from_events(events).slice(a, b))
        expected += events[a:b]
    out = EventBatch.concat(batches)
    check_batch(out, expected)
    check_batch(EventBatch.from_arrow(out.to_arrow()), expected)


def test_concat_with_per_event_header_columns():
    # REGRESSION for a BUG found at 8bd040a (fixed in 2d5a95c): EventBatch.concat put
    # header columns in a set (`shared = {b.headers.get(name) for b in batches}`), and
    # pyarrow arrays are unhashable, so concatenating any batch that had a per-event
    # header failed:  TypeError: unhashable type: 'pyarrow.lib.StringArray'
    a = EventBatch.from_events([Event(b"a", {"k": "1"}), Event(b"b", {"k": "2"})])
    b = EventBatch.from_events([Event(b"c", {"k": "3"})])
    out = EventBatch.concat([a, b])
    check_batch(out, [Event(b"a", {"k": "1"}), Event(b"b", {"k": "2"}), Event(b"c", {"k": "3"})])


def test_concat_shared_headers():
    a = EventBatch.from_bodies([b"a", b"b"], {"k": "1", "s": "x"})
    b = EventBatch.from_bodies([b"c"], {"k": "1"})
    out = EventBatch.concat([a, EventBatch.empty(), b])
    check_batch(out, [Event(b"a", {"k": "1", "s": "x"}), Event(b"b", {"k": "1", "s": "x"}), Event(b"c", {"k": "1"})])
    assert out.headers["k"] == "1"  # still shared


# -- with_headers ------------------------------------------------------------------------

@SETTINGS
@given(event_lists(), header_names, header_values, st.booleans())
def test_with_headers(events, name, value, remove):
    batch = EventBatch.from_events(events)
    if remove:
        out = batch.with_headers(**{name: None})
        expected = [Event(e.body, {k: v for k, v in e.headers.items() if k != name}) for e in events]
    else:
        out = batch.with_headers(**{name: value})
        expected = [Event(e.body, {**e.headers, name: value}) for e in events]
    check_batch(out, expected)
    assert out.data.address == batch.data.address
    check_batch(batch, events)  # the original is unchanged (immutable)


def test_with_headers_column():
    batch = EventBatch.from_bodies([b"a", b"b", b"c"])
    out = batch.with_headers(n=pa.array(["1", None, "3"]), m=["x", "y", "z"])
    check_batch(out, [Event(b"a", {"n": "1", "m": "x"}), Event(b"b", {"m": "y"}), Event(b"c", {"n": "3", "m": "z"})])
    with pytest.raises(ValueError):
        batch.with_headers(n=pa.array(["1"]))


# -- zero copy ---------------------------------------------------------------------------

@SETTINGS
@given(event_lists())
def test_bodies_zero_copy(events):
    batch = EventBatch.from_events(events)
    arr = batch.bodies()
    assert arr.type == pa.large_binary()
    assert arr.buffers()[2].address == batch.data.address
    assert arr.buffers()[1].address == batch.offsets.ctypes.data
    rb = batch.to_arrow()
    assert rb.column("body").buffers()[2].address == batch.data.address
    back = EventBatch.from_arrow(rb)
    assert back.data.address == batch.data.address
    assert back.offsets.ctypes.data == batch.offsets.ctypes.data


def test_from_arrow_large_binary_is_zero_copy():
    arr = pa.array([b"one", b"", b"three"], pa.large_binary())
    batch = EventBatch.from_arrow(arr)
    assert batch.data.address == arr.buffers()[2].address
    assert batch.offsets.ctypes.data == arr.buffers()[1].address
    check_batch(batch, [Event(b"one"), Event(b""), Event(b"three")])


# -- from_arrow inputs -------------------------------------------------------------------

ARROW_TYPES = [pa.binary(), pa.large_binary(), pa.string(), pa.large_string()]


@SETTINGS
@given(st.sampled_from(ARROW_TYPES),
       st.lists(st.one_of(st.none(), st.text(max_size=8)), max_size=15),
       st.integers(0, 16), st.integers(0, 16), st.booleans())
def test_from_arrow_arrays(typ, values, a, b, chunked):
    """int32- and int64-offset arrays, sliced (array.offset != 0), with nulls (a null body
    is an empty body), plain or chunked."""
    if pa.types.is_binary(typ) or pa.types.is_large_binary(typ):
        values = [None if v is None else v.encode() for v in values]
    arr = pa.array(values, typ).slice(a, b)
    expected = [Event(b"" if v is None else (v if isinstance(v, bytes) else v.encode())) for v in values[a:a + b]]
    if chunked:
        mid = len(arr) // 2
        src = pa.chunked_array([arr.slice(0, mid), arr.slice(mid)], typ)
    else:
        src = arr
    check_batch(EventBatch.from_arrow(src), expected)


def test_from_arrow_sliced_int32_offsets():
    arr = pa.array([b"xx", b"hello", b"", b"wo\x00rld", b"z"], pa.binary())
    part = arr.slice(1, 3)
    assert part.offset == 1
    batch = EventBatch.from_arrow(part)
    check_batch(batch, [Event(b"hello"), Event(b""), Event(b"wo\x00rld")])
    assert batch.offsets.dtype == np.int64
    assert batch.offsets[0] == 2  # positions into the unsliced data buffer


def test_from_arrow_rejects_non_binary():
    with pytest.raises(TypeError):
        EventBatch.from_arrow(pa.array([1, 2, 3]))
    with pytest.raises(ValueError):
        EventBatch.from_arrow(pa.RecordBatch.from_pydict({"x": pa.array([b"a"])}))


@SETTINGS
@given(st.lists(st.tuples(st.one_of(st.none(), st.binary(max_size=6)),
                          st.one_of(st.none(), st.text(max_size=5)),
                          st.one_of(st.none(), st.text(max_size=5))), max_size=12),
       st.integers(0, 12), st.integers(0, 12),
       st.sampled_from([pa.string(), pa.large_string()]),
       st.sampled_from([pa.binary(), pa.large_binary()]))
def test_from_arrow_record_batch(rows, a, b, htype, btype):
    """A RecordBatch with a `body` column (nulls, any binary type) and string header
    columns (nulls = header absent), sliced; also as a Table of two chunks."""
    rb = pa.RecordBatch.from_arrays([
        pa.array([r[0] for r in rows], btype),
        pa.array([r[1] for r in rows], htype),
        pa.array([r[2] for r in rows], pa.string()).dictionary_encode(),
    ], names=["body", "h1", "h2"]).slice(a, b)
    expected = []
    for body, h1, h2 in rows[a:a + b]:
        headers = {}
        if h1 is not None:
            headers["h1"] = h1
        if h2 is not None:
            headers["h2"] = h2
        expected.append(Event(body or b"", headers))
    check_batch(EventBatch.from_arrow(rb), expected)
    mid = rb.num_rows // 2
    check_batch(EventBatch.from_arrow(pa.Table.from_batches([rb.slice(0, mid), rb.slice(mid)])), expected)


def test_constructor_validates():
    with pytest.raises(ValueError):
        EventBatch(b"abc", np.array([0, 1, 2], dtype=np.int32))
    with pytest.raises(ValueError):
        EventBatch(b"abc", np.zeros(0, dtype=np.int64))
    with pytest.raises(ValueError):
        EventBatch(b"abc", np.array([0, 1, 3], dtype=np.int64), {"h": ["only one"]})
    with pytest.raises(TypeError):
        Event("not bytes")


# -- LineBatch: lines left in their text ---------------------------------------------------

def line_batch(events):
    """The events as a LineBatch: bodies without newlines, each followed by one."""
    text = b"".join(e.body + b"\n" for e in events)
    starts = np.zeros(len(events) + 1, dtype=np.int64)
    np.cumsum([len(e.body) + 1 for e in events], out=starts[1:])
    return LineBatch(text, starts, EventBatch.from_events(events).headers)


@SETTINGS
@given(event_lists(max_size=15).map(lambda es: [Event(e.body.replace(b"\n", b"_"), e.headers) for e in es]),
       st.integers(-18, 18), st.integers(-18, 18))
def test_line_batch_is_the_batch_of_its_lines(events, start, stop):
    batch = line_batch(events)
    check_batch(batch, events)
    part = batch.slice(start, stop)
    assert isinstance(part, LineBatch) and part.text.address == batch.text.address   # no copy
    check_batch(part, events[start:stop])
    check_batch(EventBatch.from_arrow(part.to_arrow()), events[start:stop])
    marked = part.with_headers(tag="x")
    assert isinstance(marked, LineBatch)
    check_batch(marked, [Event(e.body, {**e.headers, "tag": "x"}) for e in events[start:stop]])
