"""Sqoop's delimited text output (`--as-textfile`): no header, fields and lines terminated
by the given characters, optional enclosing and escaping, NULL written as a chosen string.
Built a whole column at a time with pyarrow.compute, never a row at a time."""
from __future__ import annotations

import re
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc


@dataclass
class TextOptions:
    fields_terminated_by: str = ","
    lines_terminated_by: str = "\n"
    enclosed_by: str = ""
    optionally_enclosed_by: str = ""
    escaped_by: str = ""
    null_string: str = "null"
    null_non_string: str = "null"


def unescape(text: str) -> str:
    """Sqoop's flag values: \\t, \\n, \\r, \\0, \\\\, \\' and \\" and plain characters."""
    return re.sub(r"\\(.)", lambda m: {"t": "\t", "n": "\n", "r": "\r", "0": "\0", "b": "\b"}.get(m.group(1), m.group(1)), text)


def _as_text(col: pa.Array) -> pa.Array:
    t = col.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return col
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        # bytes as lower-case hex, so every byte survives a text file
        return pa.array([None if v is None else v.hex() for v in col.to_pylist()], pa.string())
    if pa.types.is_list(t) or pa.types.is_struct(t):
        return pa.array([None if v is None else str(v) for v in col.to_pylist()], pa.string())
    return pc.cast(col, pa.string())


class TextWriter:
    def __init__(self, f, schema: pa.Schema, opts: TextOptions):
        self.f = f                 # a binary stream (a file, or a compressing stream)
        self.opts = opts
        self.schema = schema
        enclose = opts.enclosed_by or opts.optionally_enclosed_by
        specials = [c for c in (opts.fields_terminated_by, opts.lines_terminated_by, enclose, opts.escaped_by) if c]
        self._needs = "|".join(re.escape(c) for c in specials)

    def _field(self, col: pa.Array, is_string: bool) -> pa.Array:
        o = self.opts
        text = _as_text(col)
        if o.escaped_by:
            text = pc.replace_substring(text, o.escaped_by, o.escaped_by + o.escaped_by)
            for ch in {o.fields_terminated_by, o.lines_terminated_by, o.enclosed_by or o.optionally_enclosed_by} - {""}:
                text = pc.replace_substring(text, ch, o.escaped_by + ch)
        if o.enclosed_by:
            text = pc.binary_join_element_wise(o.enclosed_by, text, o.enclosed_by, "")
        elif o.optionally_enclosed_by and self._needs:
            q = o.optionally_enclosed_by
            enclosed = pc.binary_join_element_wise(q, text, q, "")
            text = pc.if_else(pc.match_substring_regex(_as_text(col), self._needs), enclosed, text)
        return pc.fill_null(text, o.null_string if is_string else o.null_non_string)

    def write_batch(self, batch: pa.RecordBatch) -> None:
        if not len(batch):
            return
        cols = [self._field(c, pa.types.is_string(f.type) or pa.types.is_large_string(f.type))
                for c, f in zip(batch.columns, batch.schema)]
        rows = pc.binary_join_element_wise(*cols, self.opts.fields_terminated_by)
        lines = pc.binary_join_element_wise(rows, "", self.opts.lines_terminated_by)
        lines = lines.cast(pa.large_string()) if len(lines) else lines
        offsets = lines.buffers()[1]
        import numpy as np
        o = np.frombuffer(offsets, dtype=np.int64)[lines.offset:lines.offset + len(lines) + 1]
        self.f.write(memoryview(lines.buffers()[2])[o[0]:o[-1]])

    def close(self) -> None:
        self.f.close()
