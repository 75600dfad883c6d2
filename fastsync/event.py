"""Event and EventBatch: events travel as columnar batches in the Arrow binary layout.

An EventBatch holds every body in one buffer plus n + 1 int64 offsets (Arrow's
large_binary layout, so conversion to and from pyarrow copies nothing), and its headers
as columns: header name -> one str shared by the whole batch, or a pyarrow string array
with one value (or null: header absent) per event. Batches are immutable.

`Event` is the per-event convenience for tests and small inputs; it is the slow path.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Mapping, Union

from fastsync.lazy import lazy_module

__all__ = ["Event", "EventBatch", "LineBatch"]

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
    HeaderColumn = Union[str, pa.Array]
else:   # imported at first use: LineBatch's path (TAILDIR -> memory -> file_roll) needs neither
    np = lazy_module(globals(), "np", "numpy")
    pa = lazy_module(globals(), "pa", "pyarrow")
    HeaderColumn = Union[str, "pa.Array"]


@dataclass(frozen=True)
class Event:
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.body, (bytes, bytearray, memoryview)):
            raise TypeError("Event body must be bytes, got %s" % type(self.body).__name__)
        object.__setattr__(self, "body", bytes(self.body))
        object.__setattr__(self, "headers", dict(self.headers))


class EventBatch:
    __slots__ = ("data", "offsets", "headers")

    def __init__(self, data, offsets, headers: Mapping[str, HeaderColumn] | None = None):
        """data: a pyarrow Buffer (or any buffer) of bodies; offsets: n + 1 int64 positions
        into it, non-decreasing; headers: name -> str | pyarrow string array of length n."""
        self.data = data if isinstance(data, pa.Buffer) else pa.py_buffer(data)
        offsets = np.asarray(offsets)
        if offsets.dtype != np.int64 or offsets.ndim != 1 or len(offsets) < 1:
            raise ValueError("offsets must be a 1-d int64 array of n + 1 positions")
        self.offsets = offsets
        self.headers = _header_columns(headers, len(offsets) - 1)

    # -- construction --
    @classmethod
    def empty(cls) -> "EventBatch":
        return cls(b"", np.zeros(1, dtype=np.int64))

    @classmethod
    def from_bodies(cls, bodies: Iterable[bytes], headers: Mapping[str, HeaderColumn] | None = None):
        bodies = [bytes(b) for b in bodies]
        offsets = np.zeros(len(bodies) + 1, dtype=np.int64)
        if bodies:
            np.cumsum([len(b) for b in bodies], out=offsets[1:])
        return cls(pa.py_buffer(b"".join(bodies)), offsets, headers)

    @classmethod
    def from_events(cls, events: Iterable[Event]) -> "EventBatch":
        events = list(events)
        names: dict[str, None] = {}
        for e in events:
            for k in e.headers:
                names.setdefault(k, None)
        headers: dict[str, HeaderColumn] = {}
        for name in names:
            values = [e.headers.get(name) for e in events]
            first = values[0]
            if first is not None and all(v == first for v in values):
                headers[name] = first
            else:
                headers[name] = pa.array(values, type=pa.string())
        return cls.from_bodies((e.body for e in events), headers)

    @classmethod
    def from_arrow(cls, obj) -> "EventBatch":
        """From a binary/string array (the bodies) or a RecordBatch/Table with a `body`
        column and one string column per header. Large (int64-offset) arrays convert
        without copying; a dictionary column with one value and no nulls becomes a
        header shared by the batch (that is how to_arrow writes shared headers)."""
        if isinstance(obj, pa.Table):
            obj = obj.combine_chunks().to_batches()[0] if obj.num_rows else pa.RecordBatch.from_pydict(
                {n: pa.array([], t) for n, t in zip(obj.schema.names, obj.schema.types)})
        if isinstance(obj, pa.RecordBatch):
            names = obj.schema.names
            if "body" not in names:
                raise ValueError("a RecordBatch needs a 'body' column")
            # by position: a header may itself be called "body" (to_arrow puts the bodies first)
            body_at = names.index("body")
            headers = {}
            for i, name in enumerate(names):
                if i == body_at:
                    continue
                col = obj.column(i)
                if pa.types.is_dictionary(col.type) and len(col.dictionary) == 1 and col.null_count == 0 and len(col):
                    headers[name] = col.dictionary[0].as_py()
                else:
                    if pa.types.is_dictionary(col.type):
                        col = col.dictionary_decode()
                    headers[name] = col
            data, offsets = _binary_buffers(obj.column(body_at))
            return cls(data, offsets, headers)
        if isinstance(obj, pa.ChunkedArray):
            obj = obj.combine_chunks()
        data, offsets = _binary_buffers(obj)
        return cls(data, offsets)

    @staticmethod
    def concat(batches: Iterable["EventBatch"]) -> "EventBatch":
        batches = [b for b in batches if len(b)]
        if not batches:
            return EventBatch.empty()
        if len(batches) == 1:
            return batches[0]
        bodies = pa.concat_arrays([b.bodies() for b in batches])
        headers = merge_headers([(b.headers, len(b)) for b in batches])
        data, offsets = _binary_buffers(bodies)
        return EventBatch(data, offsets, headers)

    # -- access --
    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def nbytes(self) -> int:
        """Total body bytes."""
        return int(self.offsets[-1] - self.offsets[0])

    def bodies(self) -> pa.LargeBinaryArray:
        """The bodies as a pyarrow large_binary array, without copying."""
        return pa.Array.from_buffers(pa.large_binary(), len(self), [None, pa.py_buffer(self.offsets), self.data])

    def body(self, i: int) -> bytes:
        o = self.offsets
        return self.data[int(o[i]):int(o[i + 1])].to_pybytes()

    def header_array(self, name: str) -> pa.Array:
        """One value (or null) per event for header `name`."""
        return _header_column(self.headers.get(name), len(self))

    def with_headers(self, **updates: HeaderColumn | None) -> "EventBatch":
        """A batch sharing these bodies with headers changed (None removes one)."""
        headers = dict(self.headers)
        for k, v in updates.items():
            if v is None:
                headers.pop(k, None)
            else:
                headers[k] = v
        return self._like(self._positions(), headers)

    def slice(self, start: int, stop: int) -> "EventBatch":
        """Events [start, stop) sharing this batch's buffers."""
        n = len(self)
        start, stop, _ = slice(start, stop).indices(n)
        stop = max(start, stop)
        headers = {k: (v if isinstance(v, str) else v.slice(start, stop - start)) for k, v in self.headers.items()}
        return self._like(self._positions()[start:stop + 1], headers)

    def _positions(self) -> np.ndarray:
        """The n + 1 positions that delimit the events in the buffer (slice() cuts them)."""
        return self.offsets

    def _like(self, positions, headers) -> "EventBatch":
        """A batch of the same kind on the same buffer."""
        return EventBatch(self.data, positions, headers)

    def to_arrow(self) -> pa.RecordBatch:
        """A RecordBatch: `body` (large_binary) first, then a string column per header; a
        header shared by the batch is a one-value dictionary column (no per-event copy)."""
        cols = [self.bodies()]
        names = ["body"]
        n = len(self)
        for name, col in self.headers.items():
            if isinstance(col, str):
                col = pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), pa.array([col], pa.string()))
            cols.append(col)
            names.append(name)
        return pa.RecordBatch.from_arrays(cols, names=names)

    def events(self) -> list[Event]:
        """Per-event view (slow path)."""
        bodies = self.bodies().to_pylist()
        cols = {k: (v if isinstance(v, str) else v.to_pylist()) for k, v in self.headers.items()}
        out = []
        for i, b in enumerate(bodies):
            h = {}
            for k, v in cols.items():
                val = v if isinstance(v, str) else v[i]
                if val is not None:
                    h[k] = val
            out.append(Event(b, h))
        return out

    def __iter__(self):
        return iter(self.events())

    def __repr__(self) -> str:
        return "EventBatch(%d events, %d bytes, headers=%s)" % (len(self), self.nbytes, sorted(self.headers))


class LineBatch(EventBatch):
    """Events that are the lines of a text buffer, left where they were read: line i is
    text[starts[i]:starts[i + 1] - 1], each followed there by its '\n', which is not part
    of the body. The memory channel keeps such a batch as it is and a file_roll sink
    writes its bytes as they are (no copy out of the read buffer, none back in); `data`
    and `offsets` (the Arrow layout, what every other consumer reads) are made on first
    use, with one copy. `raw` is the text as given (bytes or a read Block stay as they
    are, `starts` may be a memoryview of int64), so the path that never asks for the Arrow layout never
    imports numpy or pyarrow; `text` is it as a pyarrow Buffer (no copy)."""
    __slots__ = ("raw", "starts", "_plain", "_text")

    def __init__(self, text, starts, headers: Mapping[str, HeaderColumn] | None = None):
        # bytes, or a buffer that says nobody can change it (fastsync._framing.Block)
        self.raw = text if isinstance(text, bytes) or getattr(text, "immutable", False) is True else self._buffer(text)
        self._text = None
        self.starts = starts
        self._plain = None
        self.headers = _header_columns(headers, len(starts) - 1)

    @staticmethod
    def _buffer(text):
        return text if isinstance(text, pa.Buffer) else pa.py_buffer(text)

    @property
    def text(self):
        if self._text is None:
            self._text = self._buffer(self.raw)
        return self._text

    @property
    def immutable(self) -> bool:
        """Nobody can change the text (what a channel keeping it by reference needs)."""
        raw = self.raw
        return isinstance(raw, bytes) or getattr(raw, "immutable", False) is True or not raw.is_mutable

    def _split(self):
        if self._plain is None:
            from fastsync._native import split_lines
            s = self.starts
            data, offsets, n, _, _ = split_lines(self.text.slice(int(s[0]), int(s[-1] - s[0])), False)
            self._plain = (data, np.frombuffer(offsets, dtype=np.int64))
        return self._plain

    data = property(lambda self: self._split()[0])
    offsets = property(lambda self: self._split()[1])

    def __len__(self) -> int:
        return len(self.starts) - 1

    @property
    def nbytes(self) -> int:
        return int(self.starts[-1] - self.starts[0]) - len(self)

    def _positions(self):
        return self.starts

    def _like(self, positions, headers) -> "LineBatch":
        return LineBatch(self.raw, positions, headers)


def _header_columns(headers: Mapping[str, HeaderColumn] | None, n: int) -> dict[str, HeaderColumn]:
    """Header columns checked for n events: a str stays shared, values become a pyarrow
    string array of n."""
    cols = {}
    for name, col in (headers or {}).items():
        if not isinstance(name, str):
            raise TypeError("header names must be str")
        if isinstance(col, str):
            cols[name] = col
        else:
            if not isinstance(col, pa.Array):
                col = pa.array(col, type=pa.string())
            if len(col) != n:
                raise ValueError("header %r has %d values for %d events" % (name, len(col), n))
            if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
                col = col.cast(pa.string())
            cols[name] = col
    return cols


def merge_headers(parts) -> dict[str, HeaderColumn]:
    """Header columns of consecutive pieces [(headers or None, n events)] put end to end:
    a header every piece shares with one value stays shared, others become one array
    (null where a piece lacks the header)."""
    names: dict[str, None] = {}
    for headers, _ in parts:
        for k in headers or ():
            names.setdefault(k, None)
    out: dict[str, HeaderColumn] = {}
    for name in names:
        values = [(headers or {}).get(name) for headers, _ in parts]
        if all(isinstance(v, str) for v in values) and len(set(values)) == 1:
            out[name] = values[0]
        else:
            out[name] = pa.concat_arrays([_header_column(v, n) for v, (_, n) in zip(values, parts)])
    return out


def _header_column(col: HeaderColumn | None, n: int) -> pa.Array:
    if col is None:
        return pa.nulls(n, pa.string())
    if isinstance(col, str):
        return pa.array([col] * n, type=pa.string())
    return col.cast(pa.string())


def _binary_buffers(arr: pa.Array):
    """(data buffer, int64 offsets ndarray) of a binary-like array; copies only offsets
    when they are int32, and the array when it has nulls (null bodies become empty)."""
    if arr.null_count:
        arr = arr.fill_null(b"" if pa.types.is_binary(arr.type) or pa.types.is_large_binary(arr.type) else "")
    t = arr.type
    if pa.types.is_large_binary(t) or pa.types.is_large_string(t):
        width = np.int64
    elif pa.types.is_binary(t) or pa.types.is_string(t):
        width = np.int32
    else:
        raise TypeError("bodies must be a binary or string array, got %s" % t)
    bufs = arr.buffers()
    n = len(arr)
    offsets = np.frombuffer(bufs[1], dtype=width)[arr.offset:arr.offset + n + 1] if bufs[1] is not None else np.zeros(n + 1, width)
    if width is np.int32:
        offsets = offsets.astype(np.int64)
    data = bufs[2] if bufs[2] is not None else pa.py_buffer(b"")
    return data, offsets


def as_utf8(arr: pa.Array, type: pa.DataType | None = None) -> pa.Array:
    """A binary array as text (default: string) for Arrow's string kernels; bytes that
    are not UTF-8 are replaced (element by element, only when the whole-array cast refuses)."""
    type = type or pa.string()
    try:
        return arr.cast(type)
    except pa.ArrowInvalid:
        return pa.array([b.decode("utf-8", "replace") for b in arr.to_pylist()], type)
