# Contract of the framing helpers: whole-batch byte work on the Arrow binary layout
# (one data buffer + int64 offsets). Every function has a pure-Python reference in tests.
from libc.stdint cimport int64_t

cdef int64_t decimal_width(int64_t v) noexcept nogil
