# The contract of _treewalk.pyx: a local tree listed into columns (no Python object per entry),
# two listings compared, and many small files copied by C threads without the GIL.
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t


cdef struct Buf:            # bytes, one item after another; item i is data[off[i]:off[i + 1]]
    char *data
    Py_ssize_t len, cap
    int64_t *off
    Py_ssize_t n, ncap


cdef class Listing:
    cdef Py_ssize_t n, cap             # entries (the root itself is not one)
    cdef Buf paths                     # relative paths ("a/b"), bytes as the OS gives them
    cdef Buf targets                   # symbolic links' targets (empty for other kinds)
    cdef char *kinds                   # b"f" file, b"d" directory, b"l" link, b"o" other
    cdef int64_t *sizes
    cdef int64_t *mtimes               # ns
    cdef uint32_t *modes               # permission bits (mode & 0o7777)
    cdef uint8_t *sparse               # a file with fewer blocks than bytes
    cdef int32_t *order                # entry indices sorted by path bytes
    cdef Buf err_paths                 # problems met while listing, relative paths ...
    cdef int32_t *err_info             # ... and what: errno * 4 + (0 vanished, 1 opendir, 2 stat)
    cdef Py_ssize_t err_cap
    cdef Buf leftover_paths            # temporary files of earlier runs (not listed as entries)
    cdef int failed                    # out of memory while listing

    cdef int _grow(self) noexcept nogil
    cdef int _error(self, const char *rel, Py_ssize_t rlen, int err, int what) noexcept nogil
