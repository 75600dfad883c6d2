# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Bounded FIFO of event batches in native memory: the memory channel's storage.

Invariants (all under ``mu``):
  * queued events = lens_used; their bodies are the next data_used bytes from data_head;
    they are grouped into slot_used slots, whose ``n`` add up to lens_used.
  * lens_used + reserved_events <= max_events and data_used + reserved_bytes <= max_bytes:
    a batch that was taken but not committed keeps its space, so rolling it back
    (``unget``) never blocks and never fails.
  * physical capacities only grow (doubling, up to the logical limits), so memory is
    proportional to what the channel has really held, not to its configured capacity.

The GIL is released while waiting, copying and allocating. Python objects are never
touched while ``mu`` is held, so the two locks cannot deadlock.
"""
from libc.stdint cimport int64_t, uint32_t, UINT32_MAX
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset
from libc.errno cimport ETIMEDOUT
from posix.time cimport timespec, clock_gettime, CLOCK_MONOTONIC
from fastsync._sync cimport *

include "_owned.pxi"

cdef int64_t MIN_DATA = 1 << 20   # initial physical sizes; rings double from here
cdef int64_t MIN_EVENTS = 1 << 12
cdef int64_t MIN_SLOTS = 1 << 8


cdef inline double now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef inline void ring_write(char *ring, int64_t cap, int64_t pos, const char *src, int64_t n) noexcept nogil:
    cdef int64_t first = n if pos + n <= cap else cap - pos
    memcpy(ring + pos, src, first)
    if first < n:
        memcpy(ring, src + first, n - first)


cdef inline void ring_read(const char *ring, int64_t cap, int64_t pos, char *dst, int64_t n) noexcept nogil:
    cdef int64_t first = n if pos + n <= cap else cap - pos
    memcpy(dst, ring + pos, first)
    if first < n:
        memcpy(dst + first, ring, n - first)


cdef int grow(void **arr, int64_t *cap, int64_t head, int64_t used, int64_t need,
              int64_t floor, int64_t limit, size_t item) noexcept nogil:
    """Reallocate a ring so it holds `need` items, unwrapping the live part to index 0.
    Returns -1, changing nothing, when memory runs out."""
    cdef int64_t new_cap = cap[0] if cap[0] > 0 else floor
    while new_cap < need:
        new_cap *= 2
    if new_cap > limit:
        new_cap = limit if limit >= need else need
    cdef char *fresh = <char *>malloc(new_cap * item)
    if fresh == NULL:
        return -1
    if used:
        ring_read(<char *>arr[0], cap[0] * item, head * item, fresh, used * item)
    free(arr[0])
    arr[0] = fresh
    cap[0] = new_cap
    return 0


cdef int load_chunks(list chunks, Chunk *cs, list keep, int64_t *total_n, int64_t *total_b) except -1:
    """Fill cs from [(data, offsets, hid, hstart)], checking that the offsets are
    monotonic positions inside data; `keep` pins the buffers while cs points into them."""
    cdef ByteView data
    cdef const int64_t[::1] offs
    cdef Py_ssize_t j
    cdef int64_t n
    total_n[0] = total_b[0] = 0
    for j in range(len(chunks)):
        d, o, hid, hstart = chunks[j]
        data = ByteView(d)
        offs = o
        keep.append((data, offs))
        n = offs.shape[0] - 1
        if n < 0:
            raise ValueError("offsets must have n + 1 entries")
        check_offsets(&offs[0], n, data.size, UINT32_MAX)   # lengths are stored as uint32
        cs[j].data = data.ptr
        cs[j].offsets = &offs[0]
        cs[j].n = n
        cs[j].hid = hid
        cs[j].hstart = hstart
        total_n[0] += n
        total_b[0] += offs[n] - offs[0]
    return 0


cdef class RingBuffer:
    def __cinit__(self, int64_t max_events, int64_t max_bytes):
        if max_events <= 0 or max_bytes <= 0:
            raise ValueError("ring buffer limits must be positive")
        self.max_events = max_events
        self.max_bytes = max_bytes
        cdef pthread_condattr_t attr
        pthread_mutex_init(&self.mu, NULL)
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(&self.changed, &attr)
        pthread_condattr_destroy(&attr)
        if self._reserve_physical(1, 1, 1) < 0:   # never a zero capacity: positions are taken modulo it
            raise MemoryError()

    def __dealloc__(self):
        free(self.data)
        free(self.lens)
        free(self.slots)
        pthread_cond_destroy(&self.changed)
        pthread_mutex_destroy(&self.mu)

    # -- introspection (a snapshot; exact only when no other thread is active) --
    @property
    def events(self):
        """Committed events waiting to be taken."""
        return self.lens_used

    @property
    def nbytes(self):
        """Body bytes of the committed events waiting to be taken."""
        return self.data_used

    @property
    def batches(self):
        return self.slot_used

    @property
    def arena_bytes(self):
        """Bytes the body arena has grown to (what the channel really allocated)."""
        return self.data_cap

    def interrupt(self):
        """Wake every blocked put/take; they return as if timed out until resume()."""
        with nogil:
            pthread_mutex_lock(&self.mu)
            self.interrupted = True
            pthread_cond_broadcast(&self.changed)
            pthread_mutex_unlock(&self.mu)

    def resume(self):
        with nogil:
            pthread_mutex_lock(&self.mu)
            self.interrupted = False
            pthread_mutex_unlock(&self.mu)

    # -- internals, all called with mu held --
    cdef int _reserve_physical(self, int64_t events, int64_t nbytes, int64_t nslots) noexcept nogil:
        """Grow the rings so `events` more events fit physically; -1 when out of memory."""
        cdef int64_t need
        need = self.data_used + self.reserved_bytes + nbytes
        if need > self.data_cap:
            if grow(<void **>&self.data, &self.data_cap, self.data_head, self.data_used,
                    need, MIN_DATA, self.max_bytes, 1) < 0:
                return -1
            self.data_head = 0
        need = self.lens_used + self.reserved_events + events
        if need > self.lens_cap:
            if grow(<void **>&self.lens, &self.lens_cap, self.lens_head, self.lens_used,
                    need, MIN_EVENTS, self.max_events, sizeof(uint32_t)) < 0:
                return -1
            self.lens_head = 0
        need = self.slot_used + self.reserved_slots + nslots
        if need > self.slot_cap:
            if grow(<void **>&self.slots, &self.slot_cap, self.slot_head, self.slot_used,
                    need, MIN_SLOTS, self.max_events + 1, sizeof(Slot)) < 0:
                return -1
            self.slot_head = 0
        return 0

    cdef int _wait(self, double deadline) noexcept nogil:
        """Wait for a change; 0 when the deadline passed or the ring was interrupted."""
        cdef timespec ts
        cdef double left
        if self.interrupted:
            return 0
        left = deadline - now()
        if left <= 0:
            return 0
        clock_gettime(CLOCK_MONOTONIC, &ts)
        ts.tv_sec += <long>left
        ts.tv_nsec += <long>((left - <long>left) * 1e9)
        if ts.tv_nsec >= 1000000000:
            ts.tv_sec += 1
            ts.tv_nsec -= 1000000000
        pthread_cond_timedwait(&self.changed, &self.mu, &ts)
        return 0 if self.interrupted else 1

    cdef void _append(self, Chunk *c) noexcept nogil:
        cdef int64_t i, k, start = c.offsets[0]
        cdef int64_t nbytes = c.offsets[c.n] - start
        cdef int64_t pos = (self.lens_head + self.lens_used) % self.lens_cap
        ring_write(self.data, self.data_cap, (self.data_head + self.data_used) % self.data_cap,
                   c.data + start, nbytes)
        for i in range(c.n):
            k = pos + i
            if k >= self.lens_cap:
                k -= self.lens_cap
            self.lens[k] = <uint32_t>(c.offsets[i + 1] - c.offsets[i])
        cdef Slot *s = &self.slots[(self.slot_head + self.slot_used) % self.slot_cap]
        s.n = c.n
        s.hid = c.hid
        s.hstart = c.hstart
        self.data_used += nbytes
        self.lens_used += c.n
        self.slot_used += 1

    cdef void _prepend(self, Chunk *c) noexcept nogil:
        cdef int64_t i, k, start = c.offsets[0]
        cdef int64_t nbytes = c.offsets[c.n] - start
        self.data_head = (self.data_head - nbytes) % self.data_cap
        if self.data_head < 0:
            self.data_head += self.data_cap
        ring_write(self.data, self.data_cap, self.data_head, c.data + start, nbytes)
        self.lens_head -= c.n
        if self.lens_head < 0:
            self.lens_head += self.lens_cap
        for i in range(c.n):
            k = self.lens_head + i
            if k >= self.lens_cap:
                k -= self.lens_cap
            self.lens[k] = <uint32_t>(c.offsets[i + 1] - c.offsets[i])
        self.slot_head -= 1
        if self.slot_head < 0:
            self.slot_head += self.slot_cap
        cdef Slot *s = &self.slots[self.slot_head]
        s.n = c.n
        s.hid = c.hid
        s.hstart = c.hstart
        self.data_used += nbytes
        self.lens_used += c.n
        self.slot_used += 1

    cdef int _try_put(self, Chunk *cs, Py_ssize_t m, int64_t total_n, int64_t total_b,
                      int64_t credit_n, int64_t credit_b, int64_t credit_s) noexcept nogil:
        """Append all chunks if there is room, counting the credit (a reservation that is
        released on success) as room: 1 done, 0 no room, -2 out of memory."""
        cdef Py_ssize_t j
        if (self.lens_used + self.reserved_events - credit_n + total_n > self.max_events or
                self.data_used + self.reserved_bytes - credit_b + total_b > self.max_bytes):
            return 0
        self.reserved_events -= credit_n
        self.reserved_bytes -= credit_b
        self.reserved_slots -= credit_s
        if self._reserve_physical(total_n, total_b, m) < 0:
            self.reserved_events += credit_n
            self.reserved_bytes += credit_b
            self.reserved_slots += credit_s
            return -2
        for j in range(m):
            if cs[j].n:
                self._append(&cs[j])
        pthread_cond_broadcast(&self.changed)
        return 1

    cdef int64_t _try_take(self, int64_t max_events, Taken *t) noexcept nogil:
        """Copy up to max_events from the head into fresh blocks: events taken (0 when
        empty), -1 when out of memory (nothing taken)."""
        cdef int64_t n, nbytes = 0, i, k, nseg, take_n, acc
        cdef Slot *s
        if self.lens_used == 0:
            return 0
        n = max_events if max_events < self.lens_used else self.lens_used
        k = self.lens_head
        for i in range(n):
            nbytes += self.lens[k]
            k += 1
            if k == self.lens_cap:
                k = 0
        nseg = n if n < self.slot_used else self.slot_used
        t.data = <char *>malloc(nbytes if nbytes else 1)
        t.offsets = <int64_t *>malloc((n + 1) * sizeof(int64_t))
        t.segs = <Slot *>malloc(nseg * sizeof(Slot))
        t.whole = <char *>malloc(nseg)
        if t.data == NULL or t.offsets == NULL or t.segs == NULL or t.whole == NULL:
            return -1
        k = self.lens_head
        acc = 0
        t.offsets[0] = 0
        for i in range(n):
            acc += self.lens[k]
            t.offsets[i + 1] = acc
            k += 1
            if k == self.lens_cap:
                k = 0
        ring_read(self.data, self.data_cap, self.data_head, t.data, nbytes)
        # walk the slots covering the n events
        nseg = 0
        take_n = n
        while take_n:
            s = &self.slots[self.slot_head]
            t.segs[nseg].hid = s.hid
            t.segs[nseg].hstart = s.hstart
            if s.n <= take_n:
                t.segs[nseg].n = s.n
                t.whole[nseg] = 1
                take_n -= s.n
                self.slot_head += 1
                if self.slot_head == self.slot_cap:
                    self.slot_head = 0
                self.slot_used -= 1
            else:
                t.segs[nseg].n = take_n
                t.whole[nseg] = 0
                s.n -= take_n
                s.hstart += take_n
                take_n = 0
            nseg += 1
        self.data_head = (self.data_head + nbytes) % self.data_cap
        self.lens_head = (self.lens_head + n) % self.lens_cap
        self.data_used -= nbytes
        self.lens_used -= n
        self.reserved_events += n
        self.reserved_bytes += nbytes
        self.reserved_slots += nseg
        t.n = n
        t.nbytes = nbytes
        t.nseg = nseg
        return n

    # -- the Python-visible contract --
    def put(self, list chunks, double timeout, int64_t release_events=0, int64_t release_bytes=0,
            int64_t release_slots=0):
        """Append batches atomically, FIFO, waiting up to `timeout` s for room.

        chunks: [(data, offsets, hid, hstart)], data any buffer, offsets an int64 array of
        n + 1 monotonic positions in data. Returns False if there was no room in time
        (nothing was appended), raises ValueError if they could never fit.
        release_*: a take reservation of the same transaction, counted as room and
        released together with the append (Flume commits a transaction's takes and puts
        at once, needing room only for the net growth).
        """
        cdef Py_ssize_t m = len(chunks)
        cdef Chunk *cs = <Chunk *>malloc(sizeof(Chunk) * (m if m else 1))
        cdef int64_t total_n = 0, total_b = 0
        cdef int ok = 0
        cdef double deadline
        keep = []
        if cs == NULL:
            raise MemoryError()
        try:
            load_chunks(chunks, cs, keep, &total_n, &total_b)
            if total_n > self.max_events or total_b > self.max_bytes:
                raise ValueError("%d events of %d bytes can never fit a ring of %d events, %d bytes"
                                 % (total_n, total_b, self.max_events, self.max_bytes))
            with nogil:
                deadline = now() + timeout
                pthread_mutex_lock(&self.mu)
                while True:
                    ok = self._try_put(cs, m, total_n, total_b, release_events, release_bytes, release_slots)
                    if ok != 0 or not self._wait(deadline):
                        break
                pthread_mutex_unlock(&self.mu)
            if ok == -2:
                raise MemoryError("ring buffer: out of memory")
            return ok == 1
        finally:
            free(cs)

    def take(self, int64_t max_events, double timeout):
        """Remove up to max_events from the head, waiting up to `timeout` s for the first.

        Returns None if nothing came in time, else (data, offsets, n, segments): a fresh
        pyarrow Buffer of bodies, a pyarrow Buffer of n + 1 int64 offsets, and the
        header segments [(hid, hstart, count, whole_slot)] in order. The space stays
        reserved until release() (commit) or unget() (rollback).
        """
        cdef Taken t
        cdef int64_t n = 0, i
        cdef double deadline
        memset(&t, 0, sizeof(t))
        if max_events <= 0:
            raise ValueError("max_events must be positive")
        with nogil:
            deadline = now() + timeout
            pthread_mutex_lock(&self.mu)
            while True:
                n = self._try_take(max_events, &t)
                if n != 0 or not self._wait(deadline):
                    break
            pthread_mutex_unlock(&self.mu)
        if n < 0:
            free(t.data); free(t.offsets); free(t.segs); free(t.whole)
            raise MemoryError("ring buffer: cannot allocate a taken batch")
        if n == 0:
            return None
        try:
            segments = [(t.segs[i].hid, t.segs[i].hstart, t.segs[i].n, bool(t.whole[i])) for i in range(t.nseg)]
        finally:
            free(t.segs)
            free(t.whole)
        return owned_buffer(t.data, t.nbytes), owned_buffer(t.offsets, (n + 1) * sizeof(int64_t)), n, segments

    def release(self, int64_t events, int64_t nbytes, int64_t nslots):
        """Commit of a take: free the space reserved by take()."""
        # nothing is copied here: keep the GIL unless the mutex is busy
        if pthread_mutex_trylock(&self.mu) != 0:
            with nogil:
                pthread_mutex_lock(&self.mu)
        self.reserved_events -= events
        self.reserved_bytes -= nbytes
        self.reserved_slots -= nslots
        pthread_cond_broadcast(&self.changed)
        pthread_mutex_unlock(&self.mu)

    def unget(self, list chunks, int64_t nslots_taken):
        """Rollback of a take: put its chunks back at the head, in their original order.

        chunks as for put(); nslots_taken is the segment count take() reported, whose
        reservation this ends. Never blocks: the space was reserved by take().
        """
        cdef Py_ssize_t m = len(chunks), j
        cdef Chunk *cs = <Chunk *>malloc(sizeof(Chunk) * (m if m else 1))
        cdef int64_t total_n = 0, total_b = 0
        keep = []
        if cs == NULL:
            raise MemoryError()
        try:
            load_chunks(chunks, cs, keep, &total_n, &total_b)
            with nogil:
                pthread_mutex_lock(&self.mu)
                # reserved space covers these events, so no physical growth is needed
                for j in range(m - 1, -1, -1):
                    if cs[j].n:
                        self._prepend(&cs[j])
                self.reserved_events -= total_n
                self.reserved_bytes -= total_b
                self.reserved_slots -= nslots_taken
                pthread_cond_broadcast(&self.changed)
                pthread_mutex_unlock(&self.mu)
        finally:
            free(cs)
