# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Batch framing in native code: split text into lines, join bodies into lines, make
the `seq` source's decimal bodies.

All functions take and return the Arrow binary layout: a data buffer and n + 1 int64
offsets (offsets[0] may be non-zero). Results are fresh pyarrow Buffers.
"""
from libc.stdint cimport int64_t, INT64_MAX
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memchr, memset

include "_owned.pxi"


cdef int64_t decimal_width(int64_t v) noexcept nogil:
    cdef int64_t w = 1
    while v >= 10:
        v //= 10
        w += 1
    return w


def decimal_bodies(int64_t start, int64_t n):
    """Bodies str(start), str(start + 1), ... str(start + n - 1) (start >= 0).

    Returns (data, offsets) as pyarrow Buffers.
    """
    if start < 0 or n < 0:
        raise ValueError("start and n must be >= 0")
    if n and n - 1 > INT64_MAX - start:
        raise ValueError("the last body, start + n - 1, must not exceed 2**63 - 1")
    cdef int64_t i, v, w, pos = 0, total = 0, left = n, cnt, hi, p
    with nogil:
        # total width by decade, not per number; counts what is left, never start + n,
        # which may not fit an int64
        v = start
        while left > 0:
            w = decimal_width(v)
            cnt = left
            if w < 19:   # 10**19 does not fit an int64: every later number has 19 digits
                hi = 1
                for p in range(w):
                    hi *= 10
                if hi - v < cnt:
                    cnt = hi - v
            total += cnt * w
            left -= cnt
            if left:
                v += cnt
    cdef char *data = <char *>malloc(total if total else 1)
    cdef int64_t *offs = <int64_t *>malloc((n + 1) * sizeof(int64_t))
    if data == NULL or offs == NULL:
        free(data); free(offs)
        raise MemoryError()
    cdef char digits[20]     # the current number, right-aligned: digits[20 - w:]
    with nogil:
        memset(digits, 48, 20)
        v = start
        w = decimal_width(v)
        for p in range(19, 19 - w, -1):
            digits[p] = <char>(48 + v % 10)
            v //= 10
        offs[0] = 0
        for i in range(n):
            memcpy(data + pos, digits + 20 - w, w)
            pos += w
            offs[i + 1] = pos
            # count up like an odometer: no division per number
            p = 19
            while digits[p] == 57:
                digits[p] = 48
                p -= 1
            if p < 20 - w:
                w += 1
                digits[p] = 49
            else:
                digits[p] += 1
    return owned_buffer(data, total), owned_buffer(offs, (n + 1) * sizeof(int64_t))


cdef int64_t *grow_offsets(int64_t *offs, int64_t n, int64_t *cap) noexcept nogil:
    """offs (n + 1 used of *cap) moved to a block twice as large; NULL (offs freed) when
    out of memory."""
    cdef int64_t *fresh
    cap[0] *= 2
    fresh = <int64_t *>malloc(cap[0] * sizeof(int64_t))
    if fresh != NULL:
        memcpy(fresh, offs, (n + 1) * sizeof(int64_t))
    free(offs)
    return fresh


def split_lines(src, bint strip_cr=True, bint final=False, int64_t max_line=0):
    """Split complete lines out of `src` (a buffer); bodies exclude the terminator.

    A trailing piece without a newline is left unconsumed unless `final`. With strip_cr,
    a '\\r' before the '\\n' is dropped too. With max_line > 0, a body longer than
    max_line bytes is cut to its first max_line bytes.
    Returns (data, offsets, n, consumed, truncated): consumed is how many bytes of src
    the lines used; truncated counts cut bodies.
    """
    cdef ByteView s = ByteView(src)
    cdef int64_t size = s.size, i, n = 0, cap, pos = 0, start, end, ln, out_pos = 0, trunc = 0
    cdef const char *base = s.ptr
    cdef const char *nl
    # bodies are never longer than the input; there are at most size + 1 lines
    cdef char *data = <char *>malloc(size if size else 1)
    cap = 64 + size // 64      # enough for lines of 64 bytes and more: rarely grown
    cdef int64_t *offs = <int64_t *>malloc(cap * sizeof(int64_t))
    cdef bint oom = False
    if data == NULL or offs == NULL:
        free(data); free(offs)
        raise MemoryError()
    with nogil:
        offs[0] = 0
        while pos < size:
            nl = <const char *>memchr(base + pos, 10, size - pos)
            if nl == NULL:
                if not final:
                    break
                end = size
                start = pos
                pos = size
            else:
                start = pos
                end = nl - base
                pos = end + 1
                if strip_cr and end > start and base[end - 1] == 13:
                    end -= 1
            ln = end - start
            if max_line > 0 and ln > max_line:
                ln = max_line
                trunc += 1
            if n + 2 > cap:
                offs = grow_offsets(offs, n, &cap)
                if offs == NULL:
                    oom = True
                    break
            memcpy(data + out_pos, base + start, ln)
            out_pos += ln
            n += 1
            offs[n] = out_pos
    if oom:
        free(data); free(offs)
        raise MemoryError()
    return (owned_buffer(data, out_pos), owned_buffer(offs, (n + 1) * sizeof(int64_t)), n, pos if pos <= size else size, trunc)


def join_lines(data, offsets, bytes terminator=b"\n"):
    """Each body followed by `terminator`, as one pyarrow Buffer (a TEXT file's bytes)."""
    cdef ByteView d = ByteView(data)
    cdef const int64_t[::1] o = offsets
    cdef int64_t n = o.shape[0] - 1, i, pos = 0, ln
    cdef const char *t = terminator
    cdef int64_t tl = len(terminator)
    if n < 0:
        raise ValueError("offsets must have n + 1 entries")
    check_offsets(&o[0], n, d.size, INT64_MAX)
    cdef int64_t total = o[n] - o[0] + n * tl
    cdef char *out = <char *>malloc(total if total else 1)
    cdef const char *base = d.ptr
    if out == NULL:
        raise MemoryError()
    with nogil:
        for i in range(n):
            ln = o[i + 1] - o[i]
            memcpy(out + pos, base + o[i], ln)
            pos += ln
            memcpy(out + pos, t, tl)
            pos += tl
    return owned_buffer(out, total)


def line_starts(src, int64_t limit):
    """Where the complete lines of `src` (a buffer) start, for lines that can stay in it
    as bodies each followed by its '\\n': returns (offsets, n), offsets a memoryview of
    n + 1 int64 positions (format 'q', over an immutable bytes: no numpy or pyarrow
    needed to read it), line i being src[offsets[i]:offsets[i + 1] - 1] and offsets[n]
    the bytes the lines use. None when a line ends with '\\r\\n' or is longer than `limit`
    bytes, or the unfinished piece after the last newline is: such text needs
    split_lines (which strips the '\\r' and copies the bodies out)."""
    cdef ByteView s = ByteView(src)
    cdef int64_t size = s.size, n = 0, cap, pos = 0, end
    cdef const char *base = s.ptr
    cdef const char *nl
    cdef int64_t *offs
    cdef int bad = 0
    if limit <= 0:
        raise ValueError("limit must be positive")
    cap = 64 + size // 64
    offs = <int64_t *>malloc(cap * sizeof(int64_t))
    if offs == NULL:
        raise MemoryError()
    with nogil:
        offs[0] = 0
        while pos < size:
            nl = <const char *>memchr(base + pos, 10, size - pos)
            if nl == NULL:
                if size - pos > limit:
                    bad = 1
                break
            end = nl - base
            if end - pos > limit or (end > pos and base[end - 1] == 13):
                bad = 1
                break
            if n + 2 > cap:
                offs = grow_offsets(offs, n, &cap)
                if offs == NULL:
                    bad = 2
                    break
            pos = end + 1
            n += 1
            offs[n] = pos
    if bad:
        free(offs)
        if bad == 2:
            raise MemoryError()
        return None
    try:
        out = PyBytes_FromStringAndSize(<const char *>offs, (n + 1) * sizeof(int64_t))
    finally:
        free(offs)
    return memoryview(out).cast("q"), n


from cpython.list cimport PyList_New


def bodies_list(data, offsets):
    """The bodies data[offsets[i]:offsets[i + 1]] as a list of bytes (what a client that
    takes one bytes object per message, like confluent-kafka's produce(), needs)."""
    cdef ByteView d = ByteView(data)
    cdef ByteView ov = ByteView(offsets)     # an int64 array or a buffer of them
    cdef const int64_t *o = <const int64_t *>ov.ptr
    cdef Py_ssize_t n = ov.size // 8 - 1, i
    if n < 0 or ov.size % 8:
        raise ValueError("offsets must be n + 1 int64 values")
    check_offsets(o, n, d.size, INT64_MAX)
    out = PyList_New(n)
    fill_bodies(out, 0, d.ptr, o, 0, n, 0)
    return out


# -- blocks read from files, in reused memory ----------------------------------------------

from cpython.buffer cimport PyBuffer_FillInfo, PyBUF_WRITABLE
from posix.unistd cimport pread
from libc.errno cimport errno, EINTR

DEF POOL_BLOCK = 4 << 20    # bytes of a pooled block: TAILDIR's read size
DEF POOL_KEEP = 4           # free pooled blocks kept (16 MiB at most while idle)

cdef char *_pool[POOL_KEEP]
cdef int _pooled = 0


cdef class Block:
    """Bytes read from a file (read_block), as a read-only buffer nobody can change: a
    channel may keep it by reference. Reads of more than half a pooled block use memory
    of a small pool, taken back when the block and every view of it are gone, so a
    reader going through a file does not fault in, zero and hand back fresh pages for
    every block (8 % of a TAILDIR -> memory -> file_roll agent's CPU, and the sink's frees)."""
    cdef char *ptr
    cdef readonly Py_ssize_t size
    cdef bint pooled

    def __getbuffer__(self, Py_buffer *buffer, int flags):
        if flags & PyBUF_WRITABLE:
            raise BufferError("a Block is read-only")
        PyBuffer_FillInfo(buffer, self, self.ptr, self.size, 1, flags)

    def __releasebuffer__(self, Py_buffer *buffer):
        pass

    def __len__(self):
        return self.size

    @property
    def immutable(self):
        """Always True (LineBatch asks: such text can be kept by reference)."""
        return True

    def __dealloc__(self):
        global _pooled
        if self.ptr == NULL:
            return
        if self.pooled and _pooled < POOL_KEEP:      # the GIL is held: it guards the pool
            _pool[_pooled] = self.ptr
            _pooled += 1
        else:
            free(self.ptr)


def read_block(int fd, int64_t offset, Py_ssize_t size):
    """Up to `size` bytes of fd from `offset` (fewer only at the end of the file), read
    with the GIL released, as a Block: what os.pread returns, in reused memory."""
    global _pooled
    cdef Block b = Block.__new__(Block)
    cdef Py_ssize_t got = 0
    cdef ssize_t r
    cdef int err = 0
    if size < 0 or offset < 0:
        raise ValueError("negative size or offset")
    b.pooled = POOL_BLOCK // 2 < size <= POOL_BLOCK
    if b.pooled and _pooled:
        _pooled -= 1
        b.ptr = _pool[_pooled]
    else:
        b.ptr = <char *>malloc(POOL_BLOCK if b.pooled else (size if size else 1))
        if b.ptr == NULL:
            raise MemoryError()
    with nogil:
        while got < size:
            r = pread(fd, b.ptr + got, size - got, offset + got)
            if r < 0:
                if errno == EINTR:
                    continue
                err = errno
                break
            if r == 0:
                break
            got += r
    if err:
        raise OSError(err, os_strerror(err))
    b.size = got
    return b


cdef str os_strerror(int err):
    import os
    return os.strerror(err)
