# Contract of the binary COPY decoder (layout and column kinds at the top of _pgcopy.pyx):
# CopyDecoder(kinds).feed(chunk) any number of times, take(arrow types) -> pyarrow arrays.
# CopyReader(pgconn_ptr, libpq_path, copy_query).read(n) -> the stream in ~n-byte chunks.
# Checked against a pure-Python reference decoder in tests/test_pgcopy.py.
from libc.stdint cimport int64_t

cdef struct Buf:
    char *p
    int64_t n
    int64_t cap

cdef class CopyDecoder:
    cdef int ncols
    cdef int *kinds
    cdef Buf *values        # per column: fixed-width values, or varlena bytes
    cdef Buf *offsets       # per column: int64 offsets (varlena only)
    cdef Buf *valid         # per column: one byte per row
    cdef int64_t rows
    cdef bytes pending
    cdef bint header_done
    cdef readonly bint finished
    cdef int _reset(self) except -1
