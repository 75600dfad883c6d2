"""The native WAL (fastsync._wal) against a pure-Python reference of its byte layout.

The reference below writes what the format comment at the top of ext/fastsync/_wal.pyx
says, with struct and crc32c; the native Log must produce the same bytes in the file
(read back with open(), not through the map)."""
import os
import struct
import threading

import numpy as np
import pytest
from crc32c import crc32c
from hypothesis import HealthCheck, given, settings, strategies as st

from fastsync._native import Log, Segment, fdatasync_baseline
from fastsync.agent.channels import wal

SEG_HEADER = 64
REC_HEADER = 24
MAGIC = 0x52574653


def ref_record(kind: int, txn: int, payload: bytes) -> bytes:
    tail = struct.pack("<IB3xQ", len(payload), kind, txn) + payload
    rec = struct.pack("<II", MAGIC, crc32c(tail)) + tail
    return rec + b"\0" * (-len(rec) % 8)


def new_log(tmp_path, size=1 << 20, sid=1, chunk=1 << 16):
    seg = Segment(str(tmp_path / ("log-%d" % sid)), sid, size, True, chunk)
    return seg, Log(seg, chunk=chunk)


def test_segment_header_layout(tmp_path):
    seg, log = new_log(tmp_path, sid=7)
    log.sync()
    raw = open(seg.path, "rb").read(SEG_HEADER)
    assert raw[:8] == b"FSWALSEG"
    version, hsize, sid, created = struct.unpack_from("<IIqq", raw, 8)
    assert (version, hsize, sid) == (1, SEG_HEADER, 7)
    assert created > 1_600_000_000 * 10**9
    assert raw[32:] == b"\0" * 32
    assert seg.end == SEG_HEADER


record = st.tuples(st.sampled_from([1, 2, 3, 4]), st.integers(0, 2**64 - 1),
                   st.lists(st.binary(max_size=300), max_size=4))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(txns=st.lists(st.lists(record, min_size=1, max_size=5), min_size=1, max_size=6))
def test_appended_bytes_match_the_reference(tmp_path_factory, txns):
    tmp = tmp_path_factory.mktemp("wal")
    seg, log = new_log(tmp)
    expected = bytearray()
    for txn in txns:
        recs = [wal.frame(kind, tid, parts) for kind, tid, parts in txn]
        start = log.append(recs)
        assert start == SEG_HEADER + len(expected)
        for kind, tid, parts in txn:
            expected += ref_record(kind, tid, b"".join(parts))
        assert log.written == len(expected)
    log.sync()
    assert log.durable == log.written
    with open(seg.path, "rb") as f:
        raw = f.read()
    assert raw[SEG_HEADER:SEG_HEADER + len(expected)] == bytes(expected)
    # the rest of the preallocated file is zeros: the end of data for replay
    assert raw[SEG_HEADER + len(expected):].count(0) == len(raw) - SEG_HEADER - len(expected)
    # and the map shows the same bytes
    assert seg.view(SEG_HEADER, seg.end).to_pybytes() == bytes(expected)
    # scanning gives back every record
    res = wal.scan_segment(seg, SEG_HEADER, newest=True, repair=False)
    flat = [r for t in txns for r in t]
    assert [(r.kind, r.txn, r.payload.to_pybytes()) for r in res.records] == \
        [(k, t, b"".join(p)) for k, t, p in flat]
    assert res.torn_at is None


def test_append_takes_numpy_and_arrow_parts(tmp_path):
    import pyarrow as pa
    seg, log = new_log(tmp_path)
    arr = np.arange(5, dtype=np.int64)
    buf = pa.py_buffer(b"arrow-bytes")
    log.append([wal.frame(1, 9, [b"ab", arr, buf])])
    want = ref_record(1, 9, b"ab" + arr.tobytes() + b"arrow-bytes")
    assert seg.view(SEG_HEADER, seg.end).to_pybytes() == want


def ref_put_payload(bodies, hbytes: bytes) -> bytes:
    """A put record's payload per the layout comment: n, headers_len, offsets from 0,
    headers padded to 8, bodies."""
    offs = np.zeros(len(bodies) + 1, dtype="<i8")
    np.cumsum([len(b) for b in bodies], out=offs[1:])
    return (struct.pack("<QQ", len(bodies), len(hbytes)) + offs.tobytes() + hbytes + b"\0" * (-len(hbytes) % 8)
            + b"".join(bodies))


put_spec = st.tuples(st.lists(st.binary(max_size=40), max_size=30), st.integers(0, 5), st.integers(0, 5),
                     st.binary(max_size=20))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(txns=st.lists(st.tuples(st.integers(0, 2**64 - 1), st.lists(put_spec, max_size=3),
                               st.one_of(st.none(), st.binary(max_size=64))), min_size=1, max_size=5))
def test_append_txn_frames_a_transaction_as_the_reference(tmp_path_factory, txns):
    """Log.append_txn (the file channel's commit) writes, for its puts (offsets that need not
    start at 0, a slice of a larger data buffer), take payload and commit, the bytes of the
    reference layout, and returns where each put record starts."""
    tmp = tmp_path_factory.mktemp("wal")
    seg, log = new_log(tmp)
    expected = bytearray()
    for txn, puts, take in txns:
        args, want_at = [], []
        pos = SEG_HEADER + len(expected)
        for bodies, lead, trail, hbytes in puts:
            # the bodies sit in a bigger buffer, after `lead` other bodies' bytes
            data = b"<" * lead + b"".join(bodies) + b">" * trail
            offs = np.full(len(bodies) + 1, lead, dtype=np.int64)
            np.cumsum([len(b) for b in bodies], out=offs[1:])
            offs[1:] += lead
            args.append((offs, data, hbytes))
            rec = ref_record(1, txn, ref_put_payload(bodies, hbytes))
            want_at.append(pos)
            pos += len(rec)
            expected += rec
        if take is not None:
            expected += ref_record(2, txn, take)
        expected += ref_record(3, txn, b"")
        assert log.append_txn(txn, args, take) == tuple(want_at)
        assert log.written == len(expected)
    assert seg.view(SEG_HEADER, seg.end).to_pybytes() == bytes(expected)
    log.sync()
    with open(seg.path, "rb") as f:
        assert f.read()[SEG_HEADER:SEG_HEADER + len(expected)] == bytes(expected)


def test_append_txn_refuses_bad_offsets_and_what_does_not_fit_writing_nothing(tmp_path):
    seg, log = new_log(tmp_path, size=4096, chunk=1024)
    data = b"abcdef"
    for offs in ([0, 4, 2], [0, 7], [-1, 3]):        # decreasing, past the data, before it
        with pytest.raises(ValueError):
            log.append_txn(1, [(np.array(offs, dtype=np.int64), data, b"")], None)
    with pytest.raises(ValueError, match="int64 positions"):
        log.append_txn(1, [(b"\0" * 12, data, b"")], None)
    assert log.written == 0 and seg.end == SEG_HEADER
    big = [(np.array([0, 3000], dtype=np.int64), b"x" * 3000, b"")]
    assert log.append_txn(1, big, None) == (SEG_HEADER,)
    before = log.written
    assert log.append_txn(2, big, None) is None      # does not fit: nothing written, roll and retry
    assert log.written == before and seg.end == SEG_HEADER + before


def test_segment_buffer_is_its_read_only_map(tmp_path):
    """np.frombuffer(segment, ...) (how the file channel views a put record's offsets) shows
    the map's bytes, cannot write them, and keeps the segment mapped while it lives."""
    seg, log = new_log(tmp_path)
    log.append([wal.frame(1, 1, [np.arange(4, dtype=np.int64).tobytes()])])
    arr = np.frombuffer(seg, dtype=np.int64, count=4, offset=SEG_HEADER + REC_HEADER)
    assert arr.tolist() == [0, 1, 2, 3] and not arr.flags.writeable
    assert memoryview(seg).nbytes == seg.mapped
    assert memoryview(seg).readonly
    with pytest.raises(ValueError):
        np.frombuffer(seg, dtype=np.uint8).setflags(write=True)
    path = seg.path
    del log, seg
    os.unlink(path)
    assert arr.tolist() == [0, 1, 2, 3]


def test_full_segment_returns_none_and_roll_moves_on(tmp_path):
    seg, log = new_log(tmp_path, size=4096, chunk=1024)
    big = [wal.frame(1, 1, [b"x" * 3000])]
    assert log.append(big) == SEG_HEADER
    before = log.written
    assert log.append(big) is None          # does not fit: nothing written
    assert log.written == before and seg.end == SEG_HEADER + before
    seg2 = Segment(str(tmp_path / "log-2"), 2, 4096, True, 1024)
    log.roll(seg2)
    assert log.durable == before            # the old segment was synced before the switch
    assert log.current.id == 2
    assert log.append(big) == SEG_HEADER
    assert log.written == 2 * before
    with pytest.raises(ValueError):
        log.append([(b"short", [])])


def test_group_commit_shares_fdatasyncs(tmp_path):
    seg, log = new_log(tmp_path, size=64 << 20)
    lock = threading.Lock()
    commits = 4 * 150

    def worker(i):
        for k in range(150):
            with lock:        # appends come from one thread at a time (the channel's append lock)
                log.append([wal.frame(3, i * 1000 + k, [b"c" * 200])])
                lsn = log.written
            log.sync(lsn)
            assert log.durable >= lsn

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert log.durable == log.written
    # one fdatasync covered several threads' commits at least some of the time
    assert 0 < log.syncs < commits, (log.syncs, commits)


def test_view_outlives_the_segment_object_and_the_file(tmp_path):
    seg, log = new_log(tmp_path)
    log.append([wal.frame(1, 1, [b"payload"])])
    view = seg.view(SEG_HEADER, seg.end)
    path = seg.path
    del log, seg
    os.unlink(path)
    assert view.to_pybytes() == ref_record(1, 1, b"payload")


def test_reopened_segment_is_read_only_and_sized_by_the_file(tmp_path):
    seg, log = new_log(tmp_path, chunk=8192)
    log.append([wal.frame(1, 1, [b"abc"])])
    log.sync()
    ro = Segment(seg.path, 1)
    assert not ro.writable
    assert ro.end == os.path.getsize(seg.path) >= seg.end
    assert ro.view(0, seg.end).to_pybytes() == seg.view(0, seg.end).to_pybytes()


def test_fdatasync_baseline_writes_every_batch(tmp_path):
    data = os.urandom(1000)
    seconds = fdatasync_baseline(str(tmp_path / "b"), data, 20)
    assert seconds > 0
    assert (tmp_path / "b").read_bytes() == data * 20
    with pytest.raises(OSError):
        fdatasync_baseline(str(tmp_path / "missing" / "b"), data, 1)


def _rss_of_mapping(address: int) -> int:
    """Resident bytes of the mapping holding `address` (from /proc/self/smaps)."""
    inside = False
    for line in open("/proc/self/smaps"):
        first = line.split()[0]
        if "-" in first and not first.endswith(":"):
            lo, hi = (int(x, 16) for x in first.split("-"))
            inside = lo <= address < hi
        elif inside and first == "Rss:":
            return int(line.split()[1]) * 1024
    raise AssertionError("no mapping holds %#x" % address)


def test_drop_pages_frees_the_resident_pages_and_a_view_reads_them_again(tmp_path):
    seg, log = new_log(tmp_path, 64 << 20, 1, 1 << 20)
    payload = bytes(range(256)) * (32 << 12)          # 8 MiB
    start = log.append([wal.frame(1, 1, [payload])])
    log.sync()
    view = seg.view(start, seg.end)
    assert view.to_pybytes()[wal.RECORD_HEADER:wal.RECORD_HEADER + len(payload)] == payload   # every page read
    before = _rss_of_mapping(seg.address)
    assert before >= 8 << 20
    seg.drop_pages(view.address, view.size)
    assert _rss_of_mapping(seg.address) <= before - (8 << 20) + (8 << 10)   # all but the last part page
    assert view.to_pybytes()[wal.RECORD_HEADER:wal.RECORD_HEADER + len(payload)] == payload   # mapped back
    seg.drop_pages(view.address - (1 << 40), 10)      # outside the map: nothing happens
