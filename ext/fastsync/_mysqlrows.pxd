# Contract of the MySQL/MariaDB text-protocol row decoder (packet layout and column kinds
# at the top of _mysqlrows.pyx): RowDecoder(kinds, seq).feed(chunk, pos, max_rows) any
# number of times, take(arrow types) -> pyarrow arrays. Checked against the rows PyMySQL
# reads from the same bytes (and a pure-Python reference) in tests/test_mysqlrows.py.
from libc.stdint cimport int64_t, uint8_t

cdef struct Column:
    int kind
    char *data          # text bytes, or fixed-width values (8 bytes, 4 for DATE)
    int64_t n           # bytes used in data
    int64_t cap         # bytes allocated for data
    int64_t *offsets    # text: rows + 1 offsets into data
    uint8_t *valid      # validity bitmap, LSB first (the Arrow layout)
    int64_t nulls

cdef class RowDecoder:
    cdef int ncols
    cdef Column *cols
    cdef int64_t rows           # rows buffered since the last take()
    cdef int64_t row_cap        # rows the fixed-width, offset and bitmap buffers hold
    cdef int64_t rows_seen      # rows decoded since the start (for error messages)
    cdef uint8_t header[4]      # a packet header cut by the end of a chunk
    cdef int header_n
    cdef int64_t packet_len     # the current packet's payload length (header complete)
    cdef int64_t packet_got     # bytes of it gathered into `part`
    cdef bint continued         # the logical payload goes on in the next packet
    cdef char *part             # a payload cut by the end of a chunk, or a multi-packet one
    cdef int64_t part_n
    cdef int64_t part_cap
    cdef readonly int next_seq  # the sequence id the next packet must carry
    cdef readonly bint finished # the EOF packet has been read
    cdef uint8_t eof_buf[8]     # its payload (warnings, status flags)
    cdef int eof_n
    cdef object failure         # the first error; every later feed() raises it again
    cdef int err
    cdef int err_col
    cdef int64_t err_a
    cdef int64_t err_b
    cdef uint8_t err_text[48]   # the start of the value (or the ERR payload) that failed
    cdef int err_text_n
    cdef const uint8_t *err_packet  # an ERR packet's payload, valid until feed() returns
    cdef int64_t err_packet_n

    cdef int _grow_rows(self) noexcept nogil
    cdef int _payload(self, const uint8_t *q, int64_t n) noexcept nogil
    cdef int _row(self, const uint8_t *q, int64_t n) noexcept nogil
    cdef int64_t _run(self, const uint8_t *p, int64_t n, int64_t pos, int64_t max_rows) noexcept nogil
    cdef int _alloc(self, int64_t rows) except -1
