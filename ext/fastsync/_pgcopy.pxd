# Contract of the binary COPY decoder (layout and column kinds at the top of _pgcopy.pyx):
# CopyDecoder(kinds).feed(chunk) any number of times, take(arrow types) -> pyarrow arrays.
# CopyReader(pgconn_ptr, libpq_path, copy_query).read(n) -> the stream in ~n-byte chunks.
# Checked against a pure-Python reference decoder and psycopg in tests/test_pgcopy.py.
cimport cython
from libc.stdint cimport int64_t, uint8_t, int32_t

cdef struct Buf:
    char *p
    int64_t n
    int64_t cap

cdef struct Vals:           # a column's values, or all the elements of an array column
    Buf data                # fixed-width values, or varlena bytes
    Buf offsets             # int64 offsets into data, one per value + 1 (varlena only)
    Buf valid               # one byte per value: 0 = NULL

cdef struct Col:
    int kind                # of each value; of each element for an array column
    bint array
    Vals v
    Buf lists               # array columns: int64 offsets into v, one per row + 1
    Buf list_valid          # array columns: one byte per row: 0 = NULL

@cython.final                   # its per-value methods are called directly, not through a vtable
cdef class CopyDecoder:
    cdef int ncols
    cdef Col *cols
    cdef int64_t rows
    cdef bytes pending
    cdef bint header_done
    cdef readonly bint finished
    cdef int err, err_col           # the error that stopped the decoder (0: none) and where
    cdef int64_t err_got, err_want
    cdef const char *err_why
    cdef int _reset(self) except -1
    cdef int _tuples(self, const uint8_t *p, int64_t n, int64_t *at) noexcept nogil
    cdef int _field(self, Col *c, const uint8_t *p, int32_t flen) noexcept nogil
    cdef int _array(self, Col *c, const uint8_t *p, int64_t flen) noexcept nogil
    cdef int _value(self, Vals *v, int kind, const uint8_t *p, int32_t flen) noexcept nogil
    cdef int _raise(self) except -1
