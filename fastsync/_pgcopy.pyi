"""Types of fastsync._pgcopy (ext/fastsync/_pgcopy.pyx): PostgreSQL binary COPY into Arrow.
tests/test_stubs.py checks this stub names exactly what the compiled module exposes."""
from typing import Any, Sequence, TypeAlias

_Buffer: TypeAlias = Any    # anything with the buffer protocol: bytes, pyarrow.Buffer, numpy arrays
_PaArray: TypeAlias = Any   # a pyarrow.Array
_PaType: TypeAlias = Any    # a pyarrow.DataType

HEADER: bytes               # the binary COPY signature
ARRAY: int                  # added to a kind: a one-dimensional array of it
DTYPES: dict[int, Any]      # fixed-width kind -> its numpy dtype
TEMPORAL: dict[int, _PaType]
INTERVAL_RANGE: tuple[int, int]
OUT_OF_RANGE: dict[str, str]

class OutOfRange(ValueError):
    """A well-formed value the Arrow type of its column cannot hold."""
    column: int
    what: str
    def __init__(self, column: int, what: str) -> None: ...

class CopyDecoder:
    """Decode a binary COPY stream for columns of the given kinds into pyarrow arrays."""
    finished: bool
    def __init__(self, kinds: Sequence[int]) -> None: ...
    @property
    def buffered_rows(self) -> int: ...
    def feed(self, data: _Buffer) -> None: ...
    def take(self, types: Sequence[_PaType]) -> list[_PaArray]: ...

class CopyReader:
    """A COPY ... TO STDOUT read straight from libpq (a psycopg connection's PGconn)."""
    done: bool
    def __init__(self, pgconn_ptr: int, libpq_path: Any, query: str) -> None: ...
    def read(self, want: int = 1 << 20) -> bytes: ...
