# The contract of _treewalk.pyx: a local tree listed into columns (no Python object per entry),
# two listings compared, and many small files copied by C threads without the GIL.
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t


cdef struct Buf:            # bytes, one item after another; item i is data[off[i]:off[i + 1]]
    char *data
    Py_ssize_t len, cap
    int64_t *off
    Py_ssize_t n, ncap


cdef struct Cols:           # a listing's columns
    Py_ssize_t n, cap                  # entries (the root itself is not one)
    Buf paths                          # relative paths ("a/b"), bytes as the OS gives them
    Buf targets                        # symbolic links' targets (empty for other kinds)
    char *kinds                        # b"f" file, b"d" directory, b"l" link, b"o" other
    int64_t *sizes
    int64_t *mtimes                    # ns
    uint32_t *modes                    # permission bits (mode & 0o7777)
    uint8_t *sparse                    # a file with fewer blocks than bytes
    Buf err_paths                      # problems met while listing, relative paths ...
    int32_t *err_info                  # ... and what: errno * 4 + (0 vanished, 1 opendir, 2 stat)
    Py_ssize_t err_cap
    Buf leftover_paths                 # temporary files of earlier runs (not listed as entries)
    int failed


cdef class Listing:
    cdef Cols c
    cdef int32_t *order                # entry indices sorted by path bytes
