"""The file channel's write-ahead log: record framing, replay and checkpoints.

The byte layout (format version 1) is documented at the top of ext/fastsync/_wal.pyx, which
appends and syncs; this module frames records, parses them back and rebuilds the queue of
committed, untaken events after a restart.

Replay rules:
  * records are read in log order, from the checkpoint's position on (or from the oldest
    segment when there is no usable checkpoint); a transaction counts only once its commit
    record is read, so nothing uncommitted is ever delivered;
  * the first zero magic ends a segment's data (its preallocated rest is zeros);
  * a bad record (wrong magic, impossible length, CRC mismatch) with no valid record after
    it in the newest segment is a torn tail: the file is truncated there (it was never
    committed, because a commit returns only after its records are synced);
  * any other bad record is corruption: start-up fails naming the file and byte offset,
    unless `repair` is set, which skips the record (and its transaction) and counts it.
"""
from __future__ import annotations

import logging
import os
import re
import struct
import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from fastsync._native import Segment, _wal
from fastsync.crc import crc32c
from fastsync.redact import create_private

log = logging.getLogger("fastsync.channel.file")



FORMAT_VERSION = _wal.FORMAT_VERSION
SEGMENT_HEADER = _wal.SEGMENT_HEADER
RECORD_HEADER = _wal.RECORD_HEADER
RECORD_MAGIC = _wal.RECORD_MAGIC
PUT, TAKE, COMMIT, ROLLBACK = _wal.PUT, _wal.TAKE, _wal.COMMIT, _wal.ROLLBACK
KIND_NAMES = {PUT: "put", TAKE: "take", COMMIT: "commit", ROLLBACK: "rollback"}

_HEAD = struct.Struct("<II")           # magic, crc32c
_TAIL = struct.Struct("<IB3xQ")        # length, kind, txn id  (bytes 8..24, covered by the CRC)
_PUT_PREFIX = struct.Struct("<QQ")     # n events, header bytes
TAKE_RANGE = np.dtype([("seg", "<u8"), ("off", "<u8"), ("start", "<u4"), ("count", "<u4")])
SEGMENT_NAME = re.compile(r"^log-(\d+)$")
MAX_RECORD = (1 << 32) - 1


class CorruptLogError(Exception):
    """Committed data in the WAL failed its check; start-up cannot go on without repair."""


def pad8(n: int) -> int:
    return (n + 7) & ~7


def nbytes(p) -> int:
    """Length in bytes of bytes, a pyarrow Buffer or a numpy array."""
    return p.size if isinstance(p, pa.Buffer) else memoryview(p).nbytes


def frame(kind: int, txn: int, parts) -> tuple[bytes, list]:
    """(24-byte record header with its CRC, parts) for Log.append."""
    length = sum(nbytes(p) for p in parts)
    if length > MAX_RECORD:
        raise ValueError("a WAL record holds at most %d bytes, this one would be %d" % (MAX_RECORD, length))
    tail = _TAIL.pack(length, kind, txn)
    crc = crc32c(tail)
    for p in parts:
        crc = crc32c(p, crc)
    return _HEAD.pack(RECORD_MAGIC, crc) + tail, parts


# -- put payloads (framed natively by Log.append_txn) --

def txn_bytes(puts, take) -> int:
    """Bytes of log that Log.append_txn(txn, puts, take) appends."""
    total = pad8(RECORD_HEADER + len(take)) + RECORD_HEADER if take is not None else RECORD_HEADER
    for offsets, data, headers in puts:
        total += pad8(RECORD_HEADER + _PUT_PREFIX.size + 8 * len(offsets) + pad8(len(headers))
                      + int(offsets[-1] - offsets[0]))
    return total


def encode_headers(headers: dict, n: int) -> bytes:
    """Header columns as an Arrow IPC stream: per-event columns as a record batch, headers
    shared by the batch as schema metadata (no per-event copy of them)."""
    shared = {k: v for k, v in headers.items() if isinstance(v, str)}
    cols = {k: v for k, v in headers.items() if not isinstance(v, str)}
    meta = {("s:" + k).encode(): v.encode() for k, v in shared.items()}
    rb = pa.RecordBatch.from_arrays(list(cols.values()), names=list(cols), metadata=meta) if cols else \
        pa.RecordBatch.from_arrays([pa.nulls(n, pa.null())], names=[""], metadata=meta)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, rb.schema) as w:
        w.write_batch(rb)
    return sink.getvalue().to_pybytes()


def decode_headers(buf) -> dict:
    rb = pa.ipc.open_stream(buf).read_next_batch()
    out = {}
    for k, v in (rb.schema.metadata or {}).items():
        if k.startswith(b"s:"):
            out[k[2:].decode()] = v.decode()
    for name, col in zip(rb.schema.names, rb.columns):
        if name or not pa.types.is_null(col.type):
            out[name] = col
    return out


class PutRecord:
    """A put record in a mapped segment: its bodies and offsets are views of the map."""
    __slots__ = ("seg", "off", "n", "offsets", "body", "_hbuf", "_headers")

    def __init__(self, seg: Segment, off: int, payload: pa.Buffer):
        self.seg = seg
        self.off = off
        n, hlen = _PUT_PREFIX.unpack_from(payload, 0)
        self.n = n
        pos = _PUT_PREFIX.size
        self.offsets = np.frombuffer(payload, dtype=np.int64, count=n + 1, offset=pos)
        pos += 8 * (n + 1)
        self._hbuf = payload.slice(pos, hlen) if hlen else None
        self._headers = None
        pos += pad8(hlen)
        self.body = payload.slice(pos, int(self.offsets[-1]))
        if self.offsets[0] != 0 or pos + int(self.offsets[-1]) != payload.size or np.any(np.diff(self.offsets) < 0):
            raise ValueError("put record payload is inconsistent")

    @classmethod
    def written(cls, seg: Segment, off: int, n: int, hlen: int, body_len: int) -> "PutRecord":
        """The record that Log.append_txn just wrote at off, from what the writer knows of
        it: nothing to parse or check again."""
        rec = cls.__new__(cls)
        rec.seg, rec.off, rec.n = seg, off, n
        pos = off + RECORD_HEADER + _PUT_PREFIX.size
        rec.offsets = np.frombuffer(seg, dtype=np.int64, count=n + 1, offset=pos)
        pos += 8 * (n + 1)
        rec._hbuf = seg.view(pos, pos + hlen) if hlen else None
        rec._headers = None
        pos += pad8(hlen)
        rec.body = seg.view(pos, pos + body_len)
        return rec

    @property
    def headers(self) -> dict | None:
        if self._hbuf is not None and self._headers is None:
            self._headers = decode_headers(self._hbuf)
        return self._headers

    def headers_slice(self, start: int, count: int) -> dict | None:
        h = self.headers
        if not h:
            return None
        if start == 0 and count == self.n:
            return h
        return {k: (v if isinstance(v, str) else v.slice(start, count)) for k, v in h.items()}


# -- scanning segments --

@dataclass
class Record:
    off: int
    kind: int
    txn: int
    payload: pa.Buffer


@dataclass
class ScanResult:
    records: list
    end: int                      # where valid data ends
    torn_at: int | None = None    # a torn tail starts here (newest segment only)
    skipped: list = field(default_factory=list)   # (offset, reason) of records skipped by repair


def _check_record(mv: memoryview, pos: int, size: int):
    """(kind, txn, length) of a valid record at pos, or a reason string."""
    if pos + RECORD_HEADER > size:
        return "record header runs past the end of the file"
    magic, crc = _HEAD.unpack_from(mv, pos)
    if magic != RECORD_MAGIC:
        return "bad record magic 0x%08x" % magic
    length, kind, txn = _TAIL.unpack_from(mv, pos + 8)
    if kind not in KIND_NAMES:
        return "unknown record kind %d" % kind
    if pos + RECORD_HEADER + length > size:
        return "record of %d bytes runs past the end of the file" % length
    if crc32c(mv[pos + 8:pos + RECORD_HEADER + length]) != crc:
        return "CRC mismatch"
    return kind, txn, length


def _next_valid(mv: memoryview, words: np.ndarray, pos: int, size: int) -> int | None:
    """Offset of the next valid record after pos (8-aligned candidates with the magic)."""
    start = (pos + 8) // 8 * 2       # words are uint32; records start at multiples of 8
    cand = np.flatnonzero(words[start::2] == RECORD_MAGIC)
    for c in cand[:10000]:
        off = (start + 2 * int(c)) * 4
        if not isinstance(_check_record(mv, off, size), str):
            return off
    return None


def scan_segment(seg: Segment, start: int, newest: bool, repair: bool) -> ScanResult:
    buf = seg.view(0, seg.end)
    size = buf.size
    mv = memoryview(buf)
    words = np.frombuffer(buf, dtype="<u4", count=size // 4)
    records = []
    skipped = []
    pos = start
    while pos + 4 <= size:
        if words[pos // 4] == 0:
            # zeros: the end of the data, unless a valid record follows (a zeroed header)
            nxt = _next_valid(mv, words, pos, size)
            if nxt is None:
                return ScanResult(records, pos, None, skipped)
            reason = "zeroed record header"
        else:
            got = _check_record(mv, pos, size)
            if not isinstance(got, str):
                kind, txn, length = got
                records.append(Record(pos, kind, txn, buf.slice(pos + RECORD_HEADER, length)))
                pos += pad8(RECORD_HEADER + length)
                continue
            reason = got
            nxt = _next_valid(mv, words, pos, size)
            if nxt is None and newest:
                return ScanResult(records, pos, pos, skipped)
        if not repair:
            raise CorruptLogError("%s: corrupt WAL record at byte %d (%s); set repair = true on the channel to skip it"
                                  % (seg.path, pos, reason))
        skipped.append((pos, reason))
        log.warning("%s: skipping corrupt WAL record at byte %d (%s)", seg.path, pos, reason)
        if nxt is None:
            return ScanResult(records, pos, None, skipped)
        pos = nxt
    return ScanResult(records, min(pos, size), None, skipped)


def open_segment_file(path: str, seg_id: int) -> Segment:
    """Map an existing segment read-only after checking its header."""
    seg = Segment(path, seg_id)
    if seg.end < SEGMENT_HEADER:
        return seg        # torn before its header was complete: holds nothing
    head = seg.view(0, SEGMENT_HEADER).to_pybytes()
    if head[:8] != b"FSWALSEG":
        raise CorruptLogError("%s: not a fastsync WAL segment (bad magic %r)" % (path, head[:8]))
    version, hsize, sid = struct.unpack_from("<IIQ", head, 8)
    if version != FORMAT_VERSION:
        raise CorruptLogError("%s: WAL format version %d, this fastsync reads version %d" % (path, version, FORMAT_VERSION))
    if sid != seg_id:
        raise CorruptLogError("%s: segment header says id %d, the file name says %d" % (path, sid, seg_id))
    return seg


def list_segments(data_dirs) -> dict[int, str]:
    found = {}
    for d in data_dirs:
        if not os.path.isdir(d):
            continue
        for name in os.listdir(d):
            m = SEGMENT_NAME.match(name)
            if m:
                sid = int(m.group(1))
                if sid in found:
                    raise CorruptLogError("segment log-%d is in two data directories: %s and %s" % (sid, found[sid], os.path.join(d, name)))
                found[sid] = os.path.join(d, name)
    return dict(sorted(found.items()))


# -- checkpoints --

CHECKPOINT_NAME = "checkpoint"
_CKPT = struct.Struct("<8sIIqQQQQ")   # magic, version, zero, created ns, segment, offset, next txn, entries


@dataclass
class Checkpoint:
    created_ns: int
    segment: int           # replay resumes at this segment ...
    offset: int            # ... and byte
    next_txn: int
    entries: np.ndarray    # TAKE_RANGE records: the queue, head first
    path: str = ""

    def encode(self) -> bytes:
        body = _CKPT.pack(b"FSWALCKP", FORMAT_VERSION, 0, self.created_ns, self.segment, self.offset,
                          self.next_txn, len(self.entries)) + self.entries.astype(TAKE_RANGE).tobytes()
        return body + struct.pack("<I", crc32c(body))


def read_checkpoint(path: str) -> Checkpoint:
    """Raises ValueError saying what is wrong with a damaged checkpoint, OSError when unreadable."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < _CKPT.size + 4:
        raise ValueError("%s: checkpoint is truncated (%d bytes)" % (path, len(raw)))
    (crc,) = struct.unpack_from("<I", raw, len(raw) - 4)
    if crc32c(raw[:-4]) != crc:
        raise ValueError("%s: checkpoint CRC mismatch" % path)
    magic, version, _, created, seg, off, next_txn, n = _CKPT.unpack_from(raw, 0)
    if magic != b"FSWALCKP" or version != FORMAT_VERSION:
        raise ValueError("%s: not a version %d checkpoint" % (path, FORMAT_VERSION))
    if len(raw) != _CKPT.size + n * TAKE_RANGE.itemsize + 4:
        raise ValueError("%s: checkpoint length does not match its %d entries" % (path, n))
    entries = np.frombuffer(raw, dtype=TAKE_RANGE, count=n, offset=_CKPT.size)
    return Checkpoint(created, seg, off, next_txn, entries, path)


def write_atomically(path: str, data: bytes) -> None:
    """temp file + fsync + rename + fsync of the directory: the old or the new, never a mix."""
    tmp = path + ".tmp"
    fd = create_private(tmp)        # 0600: the channel's read positions
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)      # a full disk: give back what the half-written file took
        except OSError:
            pass
        raise
    dfd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def load_checkpoint(dirs) -> tuple[Checkpoint | None, list[str]]:
    """The newest valid checkpoint among dirs, and warnings about damaged ones."""
    best, warnings = None, []
    for d in dirs:
        path = os.path.join(d, CHECKPOINT_NAME)
        if not os.path.exists(path):
            continue
        try:
            ck = read_checkpoint(path)
        except (ValueError, OSError) as exc:
            warnings.append(str(exc))
            continue
        if best is None or ck.created_ns > best.created_ns:
            best = ck
    return best, warnings


def now_ns() -> int:
    return time.time_ns()
