"""Tests of the native framing functions (fastsync._framing via fastsync._native) against
small pure-Python references written from their documented contracts."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

from fastsync._native import Block, bodies_list, decimal_bodies, join_lines, line_starts, read_block, split_lines

SETTINGS = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
INT64_MAX = 2 ** 63 - 1


def offsets_of(buf) -> np.ndarray:
    return np.frombuffer(buf, dtype=np.int64)


def bodies_of(data, offsets) -> list:
    raw = data.to_pybytes() if isinstance(data, pa.Buffer) else bytes(data)
    o = offsets_of(offsets) if isinstance(offsets, pa.Buffer) else offsets
    return [raw[o[i]:o[i + 1]] for i in range(len(o) - 1)]


# -- decimal_bodies ----------------------------------------------------------------------

def ref_decimal_bodies(start, n):
    return [str(v).encode() for v in range(start, start + n)]


def check_decimal(start, n):
    data, offs = decimal_bodies(start, n)
    assert isinstance(data, pa.Buffer) and isinstance(offs, pa.Buffer)
    o = offsets_of(offs)
    expected = ref_decimal_bodies(start, n)
    assert len(o) == n + 1
    assert o[0] == 0
    assert data.size == o[-1] == sum(map(len, expected))
    assert bodies_of(data, o) == expected


# in-process: numbers below 10**18; 19-digit numbers run in a child process, as they hung
# at 8bd040a (see test_decimal_bodies_19_digit_numbers)
MAX_SAFE = 10 ** 18 - 1
near_decades = st.integers(1, 18).flatmap(lambda k: st.integers(max(0, 10 ** k - 60), 10 ** k + 5))


@SETTINGS
@given(st.one_of(near_decades, st.integers(0, 1000), st.integers(0, MAX_SAFE - 300)), st.integers(0, 120))
def test_decimal_bodies(start, n):
    check_decimal(min(start, MAX_SAFE + 1 - n), n)


@pytest.mark.parametrize("start,n", [(0, 0), (0, 1), (0, 10), (0, 1001), (9, 2), (99, 2), (5, 0),
                                     (10 ** 17 - 3, 6), (MAX_SAFE, 1), (123456, 5000)])
def test_decimal_bodies_cases(start, n):
    check_decimal(start, n)


def test_decimal_bodies_rejects_negative():
    with pytest.raises(ValueError):
        decimal_bodies(-1, 3)
    with pytest.raises(ValueError):
        decimal_bodies(0, -1)


def _decimal_in_subprocess(start, n, timeout=3.0):
    """Run decimal_bodies in a child: the bug below makes it spin forever with the GIL
    released (no KeyboardInterrupt), or write past its buffer."""
    code = textwrap.dedent("""
        import numpy as np
        from fastsync._native import decimal_bodies
        data, offs = decimal_bodies(%d, %d)
        o = np.frombuffer(offs, dtype=np.int64)
        print(repr((data.to_pybytes(), o.tolist())))
    """ % (start, n))
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        proc = None
    if proc is None:
        pytest.fail("decimal_bodies(%d, %d) did not return within %gs (infinite loop)" % (start, n, timeout))
    assert proc.returncode == 0, proc.stderr
    return eval(proc.stdout)


@pytest.mark.parametrize("start,n", [
    (10 ** 18 - 2, 3),   # crosses into 19 digits: hung at 8bd040a
    (10 ** 18, 1),       # any 19-digit number: hung at 8bd040a
    (INT64_MAX, 1),      # start + n overflows int64: returned 0 data bytes, offsets [0, 19]
])
def test_decimal_bodies_19_digit_numbers(start, n):
    # REGRESSION for a BUG found at 8bd040a (fixed in 2d5a95c), ext/fastsync/_framing.pyx
    # decimal_bodies: the size pass computed the next decade as 10**w in int64; for
    # w == 19 that overflows (10**19 > 2**63 - 1), `hi` went negative and the
    # `while v < start + n` loop never ended -- decimal_bodies spun forever, GIL
    # released, for any range reaching 10**18.  And `start + n` itself overflowed for
    # start near INT64_MAX: decimal_bodies(2**63 - 1, 1) malloc'd 1 byte, wrote 19
    # digits past it (heap overflow) and returned empty data with offsets [0, 19].
    data, offsets = _decimal_in_subprocess(start, n)
    expected = ref_decimal_bodies(start, n)
    assert data == b"".join(expected)
    assert offsets == list(np.cumsum([0] + [len(b) for b in expected]))


def test_decimal_bodies_past_int64_is_rejected():
    # the last body would be 2**63, which no int64 holds: ValueError, not a heap overflow
    # (in a child process: at 8bd040a this wrote two bodies past a 1-byte malloc)
    code = textwrap.dedent("""
        from fastsync._native import decimal_bodies
        try:
            decimal_bodies(%d, 2)
        except ValueError:
            print("ValueError")
        else:
            print("returned")
    """ % INT64_MAX)
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=3.0)
    except subprocess.TimeoutExpired:
        proc = None
    assert proc is not None, "decimal_bodies(2**63 - 1, 2) did not return"
    assert proc.stdout.strip() == "ValueError", (proc.returncode, proc.stdout, proc.stderr[-500:])


# -- split_lines -------------------------------------------------------------------------

def ref_split_lines(src: bytes, strip_cr=True, final=False, max_line=0):
    """Lines of src: every piece ended by b"\\n" (without it, and without one b"\\r" right
    before it when strip_cr), plus the unterminated tail when final and non-empty;
    bodies longer than max_line (> 0) cut to max_line bytes."""
    *complete, tail = src.split(b"\n")
    if strip_cr:
        complete = [p[:-1] if p.endswith(b"\r") else p for p in complete]
    consumed = len(src) - len(tail)
    if final and tail:
        complete.append(tail)
        consumed = len(src)
    truncated = 0
    if max_line > 0:
        truncated = sum(len(p) > max_line for p in complete)
        complete = [p[:max_line] for p in complete]
    return complete, consumed, truncated


line_bytes = st.one_of(
    st.binary(max_size=60),
    st.lists(st.sampled_from([b"\n", b"\r", b"\r\n", b"\x00", b"a", b"bc", b"\n\n", b"\r\r\n", b"\xff"]),
             max_size=25).map(b"".join),
)


def check_split(src, strip_cr, final, max_line, wrap=bytes):
    data, offs, n, consumed, truncated = split_lines(wrap(src), strip_cr=strip_cr, final=final, max_line=max_line)
    lines, ref_consumed, ref_truncated = ref_split_lines(src, strip_cr, final, max_line)
    assert isinstance(data, pa.Buffer) and isinstance(offs, pa.Buffer)
    o = offsets_of(offs)
    assert n == len(lines) == len(o) - 1
    assert o[0] == 0 and data.size == o[-1]
    assert bodies_of(data, o) == lines
    assert consumed == ref_consumed
    assert truncated == ref_truncated


@SETTINGS
@given(line_bytes, st.booleans(), st.booleans(), st.sampled_from([0, 0, 1, 2, 3, 7]),
       st.sampled_from([bytes, pa.py_buffer, bytearray, lambda b: np.frombuffer(b, dtype=np.uint8)]))
def test_split_lines(src, strip_cr, final, max_line, wrap):
    check_split(src, strip_cr, final, max_line, wrap)


@pytest.mark.parametrize("src,strip_cr,final,max_line", [
    (b"", True, False, 0), (b"", True, True, 0), (b"\n", True, False, 0), (b"\r\n", True, False, 0),
    (b"\r\n", False, False, 0), (b"abc", True, False, 0), (b"abc", True, True, 0), (b"abc\r", True, True, 0),
    (b"a\r\rb\r\n\r\n", True, False, 0), (b"x" * 100 + b"\n", True, False, 10), (b"\n" * 300, True, False, 0),
    (b"a\x00b\nc", True, True, 1), (b"line\n" * 1000 + b"tail", True, False, 3),
])
def test_split_lines_cases(src, strip_cr, final, max_line):
    check_split(src, strip_cr, final, max_line)


@SETTINGS
@given(line_bytes, st.lists(st.integers(0, 60), max_size=6), st.booleans())
def test_split_lines_streaming(src, cuts, strip_cr):
    """Feeding src in pieces, carrying the unconsumed rest over, gives the same lines as
    splitting it whole (strip_cr cannot see a \\r\\n cut in two, so the reference is the
    whole-buffer split of the same stream)."""
    cuts = sorted(set(c for c in cuts if c < len(src)))
    pieces = [src[a:b] for a, b in zip([0] + cuts, cuts + [len(src)])]
    lines, pending = [], b""
    for i, piece in enumerate(pieces):
        buf = pending + piece
        data, offs, n, consumed, _ = split_lines(buf, strip_cr=strip_cr, final=(i == len(pieces) - 1))
        lines += bodies_of(data, offs)
        pending = buf[consumed:]
    if not pieces:
        pending = b""
    assert pending == b""
    assert lines == ref_split_lines(src, strip_cr, True, 0)[0]


# -- join_lines --------------------------------------------------------------------------

def ref_join_lines(data: bytes, offsets, terminator=b"\n") -> bytes:
    return b"".join(data[offsets[i]:offsets[i + 1]] + terminator for i in range(len(offsets) - 1))


@st.composite
def layouts(draw):
    """(data, offsets) with bodies somewhere inside data: offsets[0] often non-zero and
    offsets[-1] often short of the end."""
    bodies = draw(st.lists(st.binary(max_size=12), max_size=20))
    prefix = draw(st.binary(max_size=10))
    suffix = draw(st.binary(max_size=10))
    data = prefix + b"".join(bodies) + suffix
    offsets = np.cumsum([len(prefix)] + [len(b) for b in bodies]).astype(np.int64)
    return data, offsets


@SETTINGS
@given(layouts(), st.sampled_from([b"\n", b"\r\n", b"", b"\x00", b"--sep--"]),
       st.sampled_from([bytes, pa.py_buffer]))
def test_join_lines(layout, terminator, wrap):
    data, offsets = layout
    out = join_lines(wrap(data), offsets, terminator)
    assert isinstance(out, pa.Buffer)
    assert out.to_pybytes() == ref_join_lines(data, offsets, terminator)


def test_join_lines_default_terminator_and_view_offsets():
    data = b"XXhelloworld!"
    full = np.array([0, 2, 7, 12, 13], dtype=np.int64)
    view = full[1:]  # a contiguous view whose first offset is 2
    assert join_lines(data, view).to_pybytes() == b"hello\nworld\n!\n"
    assert join_lines(data, full[:1]).to_pybytes() == b""


@SETTINGS
@given(st.lists(st.binary(max_size=15).map(lambda b: b.replace(b"\n", b"")), max_size=30))
def test_join_then_split_round_trip(bodies):
    data = b"".join(bodies)
    offsets = np.cumsum([0] + [len(b) for b in bodies]).astype(np.int64)
    text = join_lines(data, offsets)
    out_data, out_offs, n, consumed, truncated = split_lines(text, strip_cr=False)
    assert n == len(bodies) and consumed == text.size and truncated == 0
    assert bodies_of(out_data, out_offs) == bodies


def test_join_lines_rejects_offsets_outside_data():
    with pytest.raises(ValueError):
        join_lines(b"abc", np.array([0, 4], dtype=np.int64))
    with pytest.raises(ValueError):
        join_lines(b"abc", np.array([-1, 2], dtype=np.int64))


def test_join_lines_rejects_decreasing_offsets():
    # BUG (ext/fastsync/_framing.pyx, join_lines): only offsets[0] >= 0 and
    # offsets[-1] <= len(data) are checked. Decreasing offsets inside that range give a
    # negative body length: total is miscomputed and memcpy gets a negative length, so
    # join_lines(b"abcdef", np.array([0, 5, 2, 6])) corrupts the heap ("double free or
    # corruption", SIGABRT) instead of raising ValueError as it does for offsets outside
    # the data (RingBuffer.put does check monotonicity). Run in a child process.
    code = textwrap.dedent("""
        import numpy as np
        from fastsync._native import join_lines
        try:
            out = join_lines(b"abcdef", np.array([0, 5, 2, 6], dtype=np.int64))
        except ValueError:
            print("ValueError")
        else:
            print("returned", out.size)
    """)
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=5.0)
    except subprocess.TimeoutExpired:
        proc = None
    assert proc is not None, "join_lines did not return"
    assert proc.stdout.strip() == "ValueError", (proc.returncode, proc.stdout, proc.stderr[-300:])


# -- line_starts -------------------------------------------------------------------------

def ref_line_starts(src: bytes, limit: int):
    """Offsets of the complete lines of src, each line with its b"\\n" (n + 1 positions),
    or None when a line ends with b"\\r\\n", a line is longer than limit, or the
    unterminated tail is."""
    *complete, tail = src.split(b"\n")
    if len(tail) > limit or any(len(l) > limit or l.endswith(b"\r") for l in complete):
        return None
    offsets = [0]
    for l in complete:
        offsets.append(offsets[-1] + len(l) + 1)
    return offsets


@SETTINGS
@given(line_bytes, st.sampled_from([1, 2, 3, 7, 1000]), st.sampled_from([bytes, bytearray, pa.py_buffer]))
def test_line_starts(src, limit, wrap):
    got = line_starts(wrap(src), limit)
    want = ref_line_starts(src, limit)
    if want is None:
        assert got is None
        return
    offsets, n = got
    assert list(offsets_of(offsets)) == want and n == len(want) - 1


@pytest.mark.parametrize("src,limit,want", [
    (b"", 5, [0]), (b"abc", 5, [0]), (b"abcdef", 5, None), (b"ab\ncd\n", 5, [0, 3, 6]),
    (b"\n\n", 1, [0, 1, 2]), (b"ab\r\n", 5, None), (b"\r\n", 5, None), (b"abcde\n", 5, [0, 6]),
    (b"abcdef\n", 5, None), (b"ab\r", 5, [0])])
def test_line_starts_cases(src, limit, want):
    got = line_starts(src, limit)
    assert (None if got is None else list(offsets_of(got[0]))) == want


# -- bodies_list -------------------------------------------------------------------------

@SETTINGS
@given(layouts(), st.sampled_from(["ndarray", "buffer"]))
def test_bodies_list(layout, offsets_as):
    data, offsets = layout
    offs = np.asarray(offsets, dtype=np.int64)
    got = bodies_list(pa.py_buffer(data), offs if offsets_as == "ndarray" else pa.py_buffer(offs.tobytes()))
    assert got == [bytes(data[offs[i]:offs[i + 1]]) for i in range(len(offs) - 1)]
    assert all(type(b) is bytes for b in got)


def test_bodies_list_checks_offsets():
    with pytest.raises(ValueError):
        bodies_list(b"abc", np.array([0, 4], dtype=np.int64))
    with pytest.raises(ValueError):
        bodies_list(b"abc", b"\0" * 12)


# -- read_block --------------------------------------------------------------------------

POOL_BLOCK = 4 << 20


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("blocks") / "data"
    path.write_bytes(os.urandom(3 * POOL_BLOCK + 12345))
    fd = os.open(path, os.O_RDONLY)
    yield fd
    os.close(fd)


@settings(max_examples=60, deadline=None, database=None)
@given(st.integers(0, 3 * POOL_BLOCK + 20000), st.sampled_from([0, 1, 100, POOL_BLOCK // 2, POOL_BLOCK // 2 + 1,
                                                                 POOL_BLOCK - 1, POOL_BLOCK, POOL_BLOCK + 1]))
def test_read_block_is_pread(big_file, offset, size):
    """What os.pread returns (fewer bytes only at the end of the file), as a read-only
    buffer that says it is immutable."""
    b = read_block(big_file, offset, size)
    assert isinstance(b, Block) and b.immutable is True
    assert bytes(b) == os.pread(big_file, size, offset) and len(b) == b.size
    view = memoryview(b)
    assert view.readonly and view.nbytes == b.size
    with pytest.raises(BufferError):        # nothing can read into it
        os.preadv(big_file, [b], 0)


def test_read_blocks_reuse_memory_only_once_released(big_file):
    """Pooled memory goes to a new block only when no block or view holds it any more:
    blocks kept (directly, by a view, in a pyarrow Buffer) never change."""
    want = [os.pread(big_file, POOL_BLOCK, i * POOL_BLOCK) for i in range(3)]
    kept = read_block(big_file, 0, POOL_BLOCK)
    view = memoryview(read_block(big_file, POOL_BLOCK, POOL_BLOCK))
    wrapped = pa.py_buffer(read_block(big_file, 2 * POOL_BLOCK, POOL_BLOCK))
    addresses = set()
    for i in range(12):     # blocks made and dropped: their memory comes back again and again
        b = read_block(big_file, (i % 3) * POOL_BLOCK, POOL_BLOCK)
        addresses.add(pa.py_buffer(b).address)
        assert bytes(b) == want[i % 3]
        del b
    assert len(addresses) == 1
    assert bytes(kept) == want[0] and bytes(view) == want[1] and wrapped.to_pybytes() == want[2]
    assert pa.py_buffer(kept).address not in addresses and wrapped.address not in addresses


def test_read_block_errors():
    with pytest.raises(OSError):
        read_block(-1, 0, 10)
    r, w = os.pipe()
    os.close(w)
    with pytest.raises(OSError):      # a pipe cannot be read at an offset (ESPIPE)
        read_block(r, 0, 10)
    os.close(r)
    with pytest.raises(ValueError):
        read_block(0, -1, 10)
