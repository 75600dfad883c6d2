"""Lines of a block of bytes with a longest line: what the `exec` and `TAILDIR` sources read.

A line longer than `limit` bytes is cut into several events of at most `limit` bytes each,
none of it dropped, and never inside a UTF-8 character (a cut moves back over up to 3
continuation bytes). The start of an unfinished last line is cut off the same way once more
than `limit` bytes of it are there, so a reader never holds more than about `limit` bytes of
a line waiting for its newline. A cut keeps at least one byte of the line back, so a newline
right after a cut never makes an empty event: a line of exactly `limit` bytes is one event.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from fastsync._native import split_lines
from fastsync.lazy import lazy_module

if TYPE_CHECKING:
    import numpy as np
else:   # only for lines that need cutting: TAILDIR's usual path needs no numpy
    np = lazy_module(globals(), "np", "numpy")


def _cuts(buf, start: int, end: int, limit: int) -> list[int]:
    """Where to cut buf[start:end] (longer than limit) so every piece has at most limit
    bytes and the last one at least one."""
    cuts = []
    at = start
    while end - at > limit:
        c = at + limit
        back = c
        while back > at + 1 and back > c - 3 and buf[back] & 0xC0 == 0x80:
            back -= 1               # inside a character: cut before it
        if buf[back] & 0xC0 != 0x80:
            c = back
        cuts.append(c)
        at = c
    return cuts


def cut_lines(chunk, limit: int, final: bool = False, strip_cr: bool = True, positions: bool = False):
    """split_lines(chunk, strip_cr, final), each body longer than limit bytes cut into pieces,
    and the front of an unfinished last line longer than limit taken as pieces too.
    Returns (data, offsets, n, used, starts): data and offsets (an int64 array of n + 1)
    as for EventBatch, used the bytes of chunk consumed, and with `positions` where each
    piece starts in chunk (else None)."""
    chunk = memoryview(chunk).cast("B")     # any buffer (TAILDIR's read Block has no indexing)
    data, offsets, n, used, _ = split_lines(chunk, strip_cr, final)
    offs = np.frombuffer(offsets, dtype=np.int64)
    tail = len(chunk) - used        # an unfinished line (not final)
    sure = tail - (1 if strip_cr and tail and chunk[-1] == 13 else 0)    # bytes surely in its body
    lens = np.diff(offs)
    long = np.flatnonzero(lens > limit)
    starts = None
    if positions:
        # line i starts at offs[i] + (bytes of terminators before it): 1 each unless a '\r' went too
        terminated = n - (1 if n and final and chunk[used - 1] != 10 else 0)
        if used - int(offs[-1]) == terminated:
            starts = offs[:-1] + np.arange(n, dtype=np.int64)
        else:
            nl = np.flatnonzero(np.frombuffer(chunk, dtype=np.uint8, count=used) == 10)
            starts = np.concatenate([[0], nl[:n - 1] + 1]).astype(np.int64)
    if not len(long) and sure <= limit:
        return data, offs, n, used, starts
    view = memoryview(data)
    new_offs, new_starts = [], []
    done = 0
    for i in long:      # cut each long body: offsets inside it (data is the bodies end to end)
        i = int(i)
        cuts = _cuts(view, int(offs[i]), int(offs[i + 1]), limit)
        new_offs.append(offs[done:i + 1])
        new_offs.append(np.array(cuts, dtype=np.int64))
        if positions:
            new_starts.append(starts[done:i + 1])
            new_starts.append(starts[i] + np.array(cuts, dtype=np.int64) - offs[i])
        done = i + 1
    new_offs.append(offs[done:])
    if positions:
        new_starts.append(starts[done:])
    if sure > limit:    # the front of the unfinished line, as pieces
        piece = memoryview(chunk)[used:used + sure]
        cuts = _cuts(piece, 0, sure, limit)
        took = cuts[-1]
        end = int(offs[-1])
        data = bytes(view) + bytes(piece[:took]) if len(view) else bytes(piece[:took])
        new_offs.append(end + np.array(cuts, dtype=np.int64))
        if positions:
            new_starts.append(used + np.array([0] + cuts[:-1], dtype=np.int64))
        used += took
    offs = np.concatenate(new_offs)
    if positions:
        starts = np.concatenate(new_starts)
    return data, offs, len(offs) - 1, used, starts
