"""Types of fastsync._avro (ext/fastsync/_avro.pyx): Avro block decoding and AvroFlumeEvent
encoding. tests/test_stubs.py checks this stub names exactly what the compiled module exposes."""
from typing import Any, Sequence, TypeAlias

_Buffer: TypeAlias = Any    # anything with the buffer protocol: bytes, pyarrow.Buffer, numpy arrays
_PaBuffer: TypeAlias = Any  # a pyarrow.Buffer

KINDS: dict[str, int]       # Avro type name -> the kind decode_block takes

class ByteView:
    """Read access to any buffer as raw bytes; holds the buffer until collected."""
    def __init__(self, obj: _Buffer) -> None: ...

def decode_flume_events(
    values: Sequence[bytes | None],
) -> tuple[_PaBuffer, _PaBuffer, list[bytes], list[tuple[_PaBuffer, _PaBuffer, _PaBuffer | None, int]], list[int]]: ...
def decode_flume_array(
    buf: _Buffer, start: int = ...,
) -> tuple[_PaBuffer, _PaBuffer, list[bytes], list[tuple[_PaBuffer, _PaBuffer, _PaBuffer | None, int]], int]: ...
def interleave(pieces: Sequence[tuple[_Buffer, _Buffer]], n: int) -> tuple[_PaBuffer, _PaBuffer]: ...
def decode_block(block: _Buffer, count: int, kinds: Sequence[int], null_branches: Sequence[int]) -> list[tuple[Any, ...]]: ...
def encode_flume_events(data: _Buffer, offsets: _Buffer, headers: list[tuple[bytes, Any]]) -> tuple[_PaBuffer, _PaBuffer]: ...
