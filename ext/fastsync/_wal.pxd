# Contract of the write-ahead log's native part (format version 1, layout in _wal.pyx):
#   Segment  one memory-mapped segment file; view(start, stop) is a zero-copy pyarrow Buffer,
#            and the segment itself exports its read-only map (buffer protocol)
#   Log      appends whole transactions to the current segment — append(): records framed
#            by the caller; append_txn(): puts, take and commit framed here (the file
#            channel's commit) — and makes them durable with group commit: sync(lsn)
#            returns once fdatasync has covered every byte appended up to lsn, one
#            fdatasync for all waiters.
#   Iov      the iovecs of records being appended, and their framing
# Replay is in fastsync/agent/channels/wal.py, with the Python reference of the framing
# (frame()); tests check the two against each other.
from libc.stdint cimport int64_t, uint64_t
from fastsync._sync cimport pthread_mutex_t, pthread_cond_t

cdef class Segment:
    cdef readonly int64_t id
    cdef readonly object path
    cdef readonly int64_t mapped      # bytes mapped (the segment's largest size)
    cdef readonly int64_t allocated   # bytes preallocated in the file
    cdef readonly int64_t end         # bytes used: header + records
    cdef readonly bint writable
    cdef int fd
    cdef char *base
    cdef int64_t drop_from            # drop_pages: where the last drop ended (the kernel may map pages back behind it)
    cdef pthread_mutex_t grow_mu      # serialises growing the file (append vs background prefill)
    cdef int _grow(self, int64_t upto, bint zero_fill=*) except -1
    cdef void _unmap(self) noexcept

cdef extern from "<sys/uio.h>" nogil:
    struct iovec:
        void *iov_base
        size_t iov_len

cdef class Iov:
    cdef iovec *iov
    cdef Py_ssize_t cap
    cdef Py_ssize_t n                 # iovecs used
    cdef int64_t total                # their bytes
    cdef Py_ssize_t rec               # the first iovec of the record being framed
    cdef void begin(self) noexcept
    cdef int add(self, const char *p, int64_t size) except -1
    cdef int frame(self, char *h, int kind, uint64_t txn, int64_t length, bint release) except -1
    cdef int pad(self) except -1

cdef class Log:
    cdef pthread_mutex_t mu
    cdef pthread_cond_t cond
    cdef readonly Segment current
    cdef readonly int64_t written     # LSN: bytes appended over the log's life
    cdef readonly int64_t durable     # LSN covered by a finished fdatasync
    cdef readonly int64_t syncs       # fdatasync calls made
    cdef int64_t chunk
    cdef bint syncing
    cdef int failed                   # errno of a failed fdatasync: the log is unusable after it
    cdef int _use(self, Segment segment) except -1
    cdef int _check_failed(self) except -1
    cdef int _sync(self, int64_t lsn) noexcept nogil
    cdef object _write(self, Iov out, bint release)
