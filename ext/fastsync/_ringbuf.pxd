# Contract of the memory channel's storage: a bounded FIFO of committed event batches.
from libc.stdint cimport int64_t, uint32_t
from fastsync._sync cimport pthread_mutex_t, pthread_cond_t

cdef struct Slot:
    int64_t n        # events of one committed batch still queued
    int64_t hid      # key of that batch's header columns in the Python-side table; 0 = none
    int64_t hstart   # index, within those header columns, of the slot's first queued event

cdef struct Chunk:
    const char *data        # base of the source buffer
    const int64_t *offsets  # n + 1 body offsets into data (offsets[0] need not be 0)
    int64_t n
    int64_t hid
    int64_t hstart

cdef struct Taken:
    char *data           # n bodies, malloc'd, handed to Python
    int64_t *offsets     # n + 1 offsets into data, malloc'd, handed to Python
    Slot *segs           # the header segments the events came from
    char *whole          # per segment: 1 if its slot was used up
    int64_t n, nbytes, nseg

cdef class RingBuffer:
    cdef:
        # Three circular arrays, each [head, head + used) modulo its capacity:
        # body bytes, one uint32 length per event, one Slot per committed batch.
        char *data
        int64_t data_cap, data_head, data_used
        uint32_t *lens
        int64_t lens_cap, lens_head, lens_used
        Slot *slots
        int64_t slot_cap, slot_head, slot_used
        # Taken but not yet committed: still counted against capacity so a rollback
        # always has room to go back to the head.
        readonly int64_t reserved_events, reserved_bytes, reserved_slots
        readonly int64_t max_events, max_bytes
        pthread_mutex_t mu
        pthread_cond_t changed
        bint interrupted

    cdef int _reserve_physical(self, int64_t events, int64_t nbytes, int64_t nslots) noexcept nogil
    cdef int _wait(self, double deadline) noexcept nogil
    cdef void _append(self, Chunk *c) noexcept nogil
    cdef void _prepend(self, Chunk *c) noexcept nogil
    cdef int _try_put(self, Chunk *cs, Py_ssize_t m, int64_t total_n, int64_t total_b,
                      int64_t credit_n, int64_t credit_b, int64_t credit_s) noexcept nogil
    cdef int64_t _try_take(self, int64_t max_events, Taken *t) noexcept nogil
