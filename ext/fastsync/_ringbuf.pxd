# Contract of the memory channel's storage: a bounded FIFO of committed event batches,
# held by reference (the source's own buffers), never copied in.
from cpython.ref cimport PyObject
from libc.stdint cimport int64_t
from fastsync._sync cimport pthread_mutex_t, pthread_cond_t

cdef struct Extent:
    PyObject *owner          # the chunk (data, offsets, hid, hstart); one reference per extent
    const char *data         # base of the chunk's body buffer
    const int64_t *offsets   # the chunk's offsets: events [pos, end) span data[offsets[pos]:offsets[end]]
    int64_t pos, end
    int64_t sep              # 1: each event is followed in data by a '\n' that is not part of its body
    int64_t hid              # key of the header columns in the Python-side table; 0 = none
    int64_t hstart           # index, within those header columns, of event `pos`

cdef class RingBuffer:
    cdef:
        # [head, head + used) modulo ext_cap: the committed extents, oldest first
        Extent *ext
        int64_t ext_cap, ext_head, ext_used
        readonly int64_t events, nbytes       # committed and waiting
        # Taken but not yet committed: still counted against capacity so a rollback
        # always has room to go back to the head.
        readonly int64_t reserved_events, reserved_bytes, reserved_slots
        readonly int64_t max_events, max_bytes
        int64_t waiting                       # threads blocked in a wait on `changed`
        pthread_mutex_t mu
        pthread_cond_t changed
        bint interrupted

    cdef int _lock(self) except -1
    cdef int _wait(self, double deadline) except -1
    cdef void _signal(self) noexcept nogil
    cdef int _reserve_physical(self, int64_t nslots) noexcept nogil
    cdef bint _fits(self, int64_t n, int64_t nbytes, int64_t credit_n, int64_t credit_b) noexcept nogil
    cdef bint _append(self, Extent *e) noexcept nogil
    cdef void _prepend(self, Extent *e) noexcept nogil
    cdef int _wait_events(self, double timeout) except -1
    cdef void _reserve_taken(self, int64_t n, int64_t nbytes, int64_t nslots) noexcept nogil
    cdef int _end_take(self, Extent *segs, int64_t nseg, int64_t n, int64_t nbytes, bint commit) except -1
    cdef int64_t _pop(self, Extent *segs, int64_t max_events, int64_t max_segs, bint stop_at_headers,
                      int64_t *events, int64_t *nbytes) except -1


cdef class Taken:
    cdef:
        RingBuffer ring
        Extent *segs             # the extents taken, each holding a reference to its owner
        int64_t nseg
        readonly int64_t n, nbytes
        bint live                # neither committed nor rolled back yet

    cdef int _end(self, bint commit) except -1
