"""Types of fastsync._mysqlrows (ext/fastsync/_mysqlrows.pyx): MySQL text-protocol rows into
Arrow. tests/test_stubs.py checks this stub names exactly what the compiled module exposes."""
from typing import Any, Sequence, TypeAlias

_Buffer: TypeAlias = Any    # anything with the buffer protocol: bytes, pyarrow.Buffer, numpy arrays
_PaArray: TypeAlias = Any   # a pyarrow.Array
_PaType: TypeAlias = Any    # a pyarrow.DataType

# column kinds
TEXT: int
INT: int
UINT: int
DATE: int
DATETIME: int
TIME: int

class ByteView:
    """Read access to any buffer as raw bytes; holds the buffer until collected."""
    def __init__(self, obj: _Buffer) -> None: ...

class ProtocolError(ValueError):
    """The bytes are not (or no longer) a text-protocol result of these columns."""

class RowError(ValueError):
    """A value the column's kind cannot hold; `column` is its index."""
    column: int
    def __init__(self, column: int, message: str) -> None: ...

class ServerError(RuntimeError):
    """The server ended the result with an ERR packet (e.g. the query was killed)."""
    code: int
    sqlstate: str
    message: str
    def __init__(self, code: int, sqlstate: str, message: str) -> None: ...

class RowDecoder:
    """Decode the rows of a text-protocol result with columns of the given kinds."""
    next_seq: int
    finished: bool
    def __init__(self, kinds: Sequence[int], seq: int = 0) -> None: ...
    @property
    def buffered_rows(self) -> int: ...
    @property
    def eof(self) -> bytes | None: ...
    def feed(self, data: _Buffer, pos: int = 0, max_rows: int = 0) -> int: ...
    def end(self) -> None: ...
    def take(self, types: Sequence[_PaType]) -> list[_PaArray]: ...
