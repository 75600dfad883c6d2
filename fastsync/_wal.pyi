"""Types of fastsync._wal (ext/fastsync/_wal.pyx): the file channel's write-ahead log segments.
tests/test_stubs.py checks this stub names exactly what the compiled module exposes."""
from typing import Any, Sequence, TypeAlias

_Buffer: TypeAlias = Any    # anything with the buffer protocol: bytes, pyarrow.Buffer, numpy arrays
_PaBuffer: TypeAlias = Any  # a pyarrow.Buffer

FORMAT_VERSION: int
SEGMENT_MAGIC: bytes
SEGMENT_HEADER: int
RECORD_MAGIC: int
RECORD_HEADER: int
PUT: int                    # record types
TAKE: int
COMMIT: int
ROLLBACK: int

class ByteView:
    """Read access to any buffer as raw bytes; holds the buffer until collected."""
    def __init__(self, obj: _Buffer) -> None: ...

class Segment:
    """One segment file mapped into memory (it supports the buffer protocol: the whole map)."""
    id: int
    path: Any
    mapped: int
    allocated: int
    end: int
    writable: bool
    def __init__(self, path: Any, seg_id: int = 0, size: int = 0, create: bool = False, chunk: int = 1 << 24,
                 prealloc: int = 1 << 16) -> None: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...
    def prefill(self, ahead: int) -> int: ...
    def view(self, start: int = 0, stop: int = -1) -> _PaBuffer: ...
    @property
    def address(self) -> int: ...
    def drop_pages(self, addr: int, size: int) -> None: ...
    def sync(self) -> None: ...
    def close(self) -> None: ...

class Iov:
    """The iovecs of records being appended (used from Cython only)."""
    def __init__(self, cap: int) -> None: ...

class Log:
    """The appending end of the WAL: one current Segment, group commit across threads."""
    current: Segment
    written: int
    durable: int
    syncs: int
    def __init__(self, segment: Segment, chunk: int = 1 << 24) -> None: ...
    def roll(self, segment: Segment) -> None: ...
    def append(self, records: list[tuple[bytes, Sequence[_Buffer]]]) -> int | None: ...
    def append_txn(self, txn: int, puts: list[tuple[_Buffer, _Buffer, bytes]], take: _Buffer | None = None) -> tuple[int, ...] | None: ...
    def sync(self, lsn: int = -1) -> None: ...

def fdatasync_baseline(path: Any, data: _Buffer, batches: int) -> float: ...
