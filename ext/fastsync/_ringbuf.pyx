# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Bounded FIFO of event batches held by reference: the memory channel's storage.

A committed batch is not copied: the ring keeps a reference to the chunk the source put
(its body buffer and offsets, Arrow layout) as an extent [pos, end) of its events. A take
of events from one extent hands back a view of the source's buffer; a take spanning
several extents gathers their bodies into one fresh buffer (the only copy).

A chunk may also hold lines as read (`sep` 1): each body followed by its '\n' in the
buffer, so a reader's block goes in as it is and a sink writing lines (write_each) writes
the block's bytes as they are; a take of such events gathers the bodies without the
newlines.

Invariants (all under ``mu``):
  * ``events`` and ``nbytes`` are the events and body bytes of the ext_used extents.
  * events + reserved_events <= max_events and nbytes + reserved_bytes <= max_bytes:
    a batch taken but not committed keeps its room, so rolling it back (``unget``)
    never blocks and never fails.
  * the extent array has room for ext_used + reserved_slots extents.

Locking: ``mu`` may be held while the GIL is acquired, never the other way round: a
thread holding the GIL only ever *tries* ``mu`` and releases the GIL before blocking
on it. So an uncontended put or take costs no GIL release at all; waiting always
releases it. While ``mu`` is held only C code and reference increments run (no
allocation, no decrement), so no Python code can run and re-enter the ring.
"""
from cpython.ref cimport PyObject, Py_INCREF, Py_DECREF
from libc.stdint cimport int64_t, INT64_MAX
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy
from libc.errno cimport errno, EINTR, ENOMEM
from posix.uio cimport iovec, writev
from cpython.list cimport PyList_New
from posix.time cimport timespec, clock_gettime, CLOCK_MONOTONIC
from fastsync._sync cimport *

include "_owned.pxi"

cdef int64_t MIN_EXTENTS = 64
DEF MAX_SEGS = 64       # extents one write_each writev takes at most
DEF WRITE_GROUP = 4 << 20   # bytes of consecutive transactions write_each writes at once


cdef inline double now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef int load_chunk(object chunk, Extent *e) except -1:
    """Point e at chunk (data, offsets, hid, hstart[, sep]), offsets an int64 array of
    n + 1 non-decreasing positions in data; with sep 1 each event's bytes end with a
    '\n' that is not part of its body. The chunk tuple is the owner: it keeps both
    buffers alive. Takes no reference."""
    cdef int64_t sep = 0, i
    if len(chunk) == 5:
        data, offsets, hid, hstart, sep = chunk
    else:
        data, offsets, hid, hstart = chunk
    cdef ByteView view = ByteView(data)
    cdef const int64_t[::1] offs = offsets
    cdef int64_t n = offs.shape[0] - 1
    if n < 0:
        raise ValueError("offsets must have n + 1 entries")
    if sep not in (0, 1):
        raise ValueError("sep must be 0 or 1")
    check_offsets(&offs[0], n, view.size, INT64_MAX)
    if sep:
        for i in range(n):
            if offs[i + 1] == offs[i] or view.ptr[offs[i + 1] - 1] != 10:
                raise ValueError("line %d does not end with a newline" % i)
    e.sep = sep
    e.owner = <PyObject *>chunk
    e.data = view.ptr
    e.offsets = &offs[0]
    e.pos = 0
    e.end = n
    e.hid = hid
    e.hstart = hstart
    return 0


cdef inline int64_t extent_bytes(const Extent *e) noexcept nogil:
    """Body bytes of e's events (newlines of a line chunk not counted)."""
    return e.offsets[e.end] - e.offsets[e.pos] - e.sep * (e.end - e.pos)


cdef int load_chunks(list chunks, Extent *es, int64_t *total_n, int64_t *total_b) except -1:
    """load_chunk of every chunk into es, and their events and body bytes in all."""
    cdef Py_ssize_t j
    total_n[0] = total_b[0] = 0
    for j in range(len(chunks)):
        load_chunk(chunks[j], &es[j])
        total_n[0] += es[j].end
        total_b[0] += extent_bytes(&es[j])
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
        if self._reserve_physical(1) < 0:   # never a zero capacity: positions are taken modulo it
            raise MemoryError()

    def __dealloc__(self):
        cdef int64_t i
        for i in range(self.ext_used):
            Py_DECREF(<object>self.ext[(self.ext_head + i) % self.ext_cap].owner)
        free(self.ext)
        pthread_cond_destroy(&self.changed)
        pthread_mutex_destroy(&self.mu)

    # -- introspection (a snapshot; exact only when no other thread is active) --
    @property
    def batches(self):
        """Extents queued: committed chunks, consecutive ones of one chunk counted once."""
        return self.ext_used

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

    # -- internals --
    cdef int _lock(self) except -1:
        """Take mu from a thread holding the GIL, releasing the GIL only if mu is busy."""
        if pthread_mutex_trylock(&self.mu) != 0:
            with nogil:
                pthread_mutex_lock(&self.mu)
        return 0

    cdef int _wait(self, double deadline) except -1:
        """With mu held: wait for a change, the GIL released; 0 when the deadline passed
        or the ring was interrupted."""
        cdef int r
        with nogil:
            r = wait_changed(&self.changed, &self.mu, &self.interrupted, &self.waiting, deadline)
        return r

    cdef void _signal(self) noexcept nogil:
        if self.waiting:
            pthread_cond_broadcast(&self.changed)

    cdef int _reserve_physical(self, int64_t nslots) noexcept nogil:
        """Grow the extent array so nslots more fit; -1 when out of memory."""
        cdef int64_t need = self.ext_used + self.reserved_slots + nslots, cap, i, first
        if need <= self.ext_cap:
            return 0
        cap = self.ext_cap if self.ext_cap else MIN_EXTENTS
        while cap < need:
            cap *= 2
        cdef Extent *fresh = <Extent *>malloc(cap * sizeof(Extent))
        if fresh == NULL:
            return -1
        if self.ext_used:   # unwrap the live part to index 0
            first = self.ext_cap - self.ext_head
            if first > self.ext_used:
                first = self.ext_used
            memcpy(fresh, self.ext + self.ext_head, first * sizeof(Extent))
            memcpy(fresh + first, self.ext, (self.ext_used - first) * sizeof(Extent))
        free(self.ext)
        self.ext = fresh
        self.ext_cap = cap
        self.ext_head = 0
        return 0

    cdef bint _fits(self, int64_t n, int64_t nbytes, int64_t credit_n, int64_t credit_b) noexcept nogil:
        return (self.events + self.reserved_events - credit_n + n <= self.max_events and
                self.nbytes + self.reserved_bytes - credit_b + nbytes <= self.max_bytes)

    cdef bint _append(self, Extent *e) noexcept nogil:
        """Queue e at the tail (room checked by the caller). True when it continued the
        tail extent (the same chunk, the next events): then the ring keeps no new reference."""
        cdef Extent *tail
        cdef int64_t n = e.end - e.pos
        self.events += n
        self.nbytes += extent_bytes(e)
        if self.ext_used:
            tail = &self.ext[(self.ext_head + self.ext_used - 1) % self.ext_cap]
            if (tail.owner == e.owner and tail.offsets == e.offsets and tail.end == e.pos and tail.hid == e.hid
                    and tail.hstart + (tail.end - tail.pos) == e.hstart):
                tail.end = e.end
                return True
        self.ext[(self.ext_head + self.ext_used) % self.ext_cap] = e[0]
        self.ext_used += 1
        return False

    cdef void _prepend(self, Extent *e) noexcept nogil:
        self.ext_head = (self.ext_head - 1 + self.ext_cap) % self.ext_cap
        self.ext[self.ext_head] = e[0]
        self.ext_used += 1
        self.events += e.end - e.pos
        self.nbytes += extent_bytes(e)

    cdef int _wait_events(self, double timeout) except -1:
        """With mu held: wait up to `timeout` s for an event; 0 if none came (mu still held)."""
        cdef double deadline = 0    # the clock is read only if there is a wait
        while self.events == 0:
            if deadline == 0:
                deadline = now() + timeout
            if not self._wait(deadline):
                return 0
        return 1

    cdef int64_t _pop(self, Extent *segs, int64_t max_events, int64_t max_segs, bint stop_at_headers,
                      int64_t *events, int64_t *nbytes) except -1:
        """With mu held: move up to max_events from the head into segs (at most max_segs
        extents; before events with headers if stop_at_headers), adding to *events and
        *nbytes. A whole extent's reference passes to its segment; a split one gets its
        own. Returns the segments filled. The caller reserves their room."""
        cdef Extent *h
        cdef int64_t k, nseg = 0
        while max_events and self.ext_used and nseg < max_segs:
            h = &self.ext[self.ext_head]
            if stop_at_headers and h.hid:
                break
            k = h.end - h.pos
            segs[nseg] = h[0]
            if k <= max_events:
                self.ext_head = (self.ext_head + 1) % self.ext_cap
                self.ext_used -= 1
            else:
                k = max_events
                segs[nseg].end = h.pos + k
                Py_INCREF(<object>h.owner)
                h.pos += k
                h.hstart += k
            max_events -= k
            events[0] += k
            nbytes[0] += extent_bytes(&segs[nseg])
            nseg += 1
        return nseg

    cdef void _reserve_taken(self, int64_t n, int64_t nbytes, int64_t nslots) noexcept nogil:
        """With mu held: n events of nbytes body bytes leave the queue for a take; their
        room, and nslots extent slots for a rollback, stay reserved until it ends."""
        self.events -= n
        self.nbytes -= nbytes
        self.reserved_events += n
        self.reserved_bytes += nbytes
        self.reserved_slots += nslots
        self._signal()

    cdef int _end_take(self, Extent *segs, int64_t nseg, int64_t n, int64_t nbytes, bint commit) except -1:
        """End a take of the segments _pop filled (n events, nbytes, one slot each): a
        commit frees their room and drops their references, a rollback puts them back at
        the head in their order, references and all."""
        cdef int64_t j
        self._lock()
        if not commit:
            for j in range(nseg - 1, -1, -1):
                self._prepend(&segs[j])
        self.reserved_events -= n
        self.reserved_bytes -= nbytes
        self.reserved_slots -= nseg
        self._signal()
        pthread_mutex_unlock(&self.mu)
        if commit:
            for j in range(nseg):
                Py_DECREF(<object>segs[j].owner)
        return 0

    # -- the Python-visible contract --
    def put(self, list chunks, double timeout, int64_t release_events=0, int64_t release_bytes=0,
            int64_t release_slots=0):
        """Append chunks atomically, FIFO, waiting up to `timeout` s for room; the ring
        keeps references to them, copying nothing.

        chunks: [(data, offsets, hid, hstart)], data any buffer, offsets an int64 array of
        n + 1 non-decreasing positions in data; neither may change afterwards. Returns
        False if there was no room in time (nothing was appended), raises ValueError if
        they could never fit.
        release_*: a take reservation of the same transaction, counted as room and
        released together with the append (Flume commits a transaction's takes and puts
        at once, needing room only for the net growth).
        """
        cdef Py_ssize_t m = len(chunks), j
        cdef Extent *es = <Extent *>malloc(sizeof(Extent) * (m if m else 1))
        cdef char *merged = <char *>malloc(m if m else 1)
        cdef int64_t total_n = 0, total_b = 0
        cdef int ok = 0
        cdef double deadline
        if es == NULL or merged == NULL:
            free(es); free(merged)
            raise MemoryError()
        try:
            load_chunks(chunks, es, &total_n, &total_b)
            if total_n > self.max_events or total_b > self.max_bytes:
                raise ValueError("%d events of %d bytes can never fit a ring of %d events, %d bytes"
                                 % (total_n, total_b, self.max_events, self.max_bytes))
            deadline = 0
            self._lock()
            while True:
                if self._fits(total_n, total_b, release_events, release_bytes):
                    self.reserved_events -= release_events
                    self.reserved_bytes -= release_bytes
                    self.reserved_slots -= release_slots
                    if self._reserve_physical(m) < 0:
                        self.reserved_events += release_events
                        self.reserved_bytes += release_bytes
                        self.reserved_slots += release_slots
                        ok = -2
                        break
                    for j in range(m):
                        merged[j] = True
                        if es[j].end:
                            Py_INCREF(<object>es[j].owner)   # the ring's reference
                            merged[j] = self._append(&es[j])
                    self._signal()
                    ok = 1
                    break
                if deadline == 0:
                    deadline = now() + timeout
                if not self._wait(deadline):
                    break
            pthread_mutex_unlock(&self.mu)
            if ok == 1:
                for j in range(m):
                    if merged[j] and es[j].end:
                        Py_DECREF(<object>es[j].owner)
            elif ok == -2:
                raise MemoryError("ring buffer: out of memory")
            return ok == 1
        finally:
            free(es)
            free(merged)

    def put_each(self, tuple chunk, int64_t per_tx, double timeout):
        """Commit chunk's events as consecutive transactions of per_tx events (the last
        may be shorter), each atomically and in order, each waiting up to `timeout` s for
        room; stops at the first that finds none. Returns (events committed, why it
        stopped): 1 all committed, 0 no room in time (or interrupted), -1 the next
        transaction's bodies are more than the ring's bytes and can never fit.

        The GIL is released for the whole loop, so a sink takes while this still commits;
        consecutive transactions of one chunk become one extent.
        """
        cdef Extent e, part
        cdef int64_t n, done = 0, k, spare, new_extents = 0
        cdef int64_t nbytes
        cdef double deadline
        cdef int ok = 1
        if per_tx <= 0:
            raise ValueError("per_tx must be positive")
        load_chunk(chunk, &e)
        n = e.end
        if not n:
            return 0, 1
        if min(per_tx, n) > self.max_events:
            raise ValueError("%d events can never fit a ring of %d events" % (min(per_tx, n), self.max_events))
        # one reference per extent this may create, at most one per transaction
        spare = (n + per_tx - 1) // per_tx
        for k in range(spare):
            Py_INCREF(chunk)
        with nogil:
            while done < n and ok == 1:
                part = e
                part.pos = done
                part.end = done + per_tx if done + per_tx < n else n
                part.hstart = e.hstart + done
                nbytes = extent_bytes(&part)
                if nbytes > self.max_bytes:
                    ok = -1
                    break
                pthread_mutex_lock(&self.mu)
                deadline = 0    # set at the first wait: most transactions never wait
                while True:
                    if self._fits(part.end - part.pos, nbytes, 0, 0):
                        if self._reserve_physical(1) < 0:
                            ok = -2
                        elif not self._append(&part):
                            new_extents += 1
                        self._signal()
                        break
                    if deadline == 0:
                        deadline = now() + timeout
                    if not wait_changed(&self.changed, &self.mu, &self.interrupted, &self.waiting, deadline):
                        ok = 0
                        break
                pthread_mutex_unlock(&self.mu)
                if ok == 1:
                    done = part.end
        for k in range(spare - new_extents):
            Py_DECREF(chunk)
        if ok == -2 and not done:
            raise MemoryError("ring buffer: out of memory")
        return done, (ok if ok < 1 else 0) if done < n else 1

    def take(self, int64_t max_events, double timeout):
        """Remove up to max_events from the head, waiting up to `timeout` s for the first.

        Returns None if nothing came in time, else (data, offsets, n, segments): a buffer
        of bodies and an int64 array (or buffer) of n + 1 offsets into it (from one chunk
        a view of the put's own buffers, offsets not starting at 0; from several, fresh
        ones), and the header segments [(hid, hstart, count, whole_extent)] in order, runs
        of header-less events as one. The room stays reserved until release() (commit) or
        unget() (rollback).
        """
        cdef Extent *segs
        cdef int64_t n = 0, nbytes = 0, m, nseg, i, groups
        cdef char *data
        cdef int64_t *offs
        if max_events <= 0:
            raise ValueError("max_events must be positive")
        self._lock()
        if not self._wait_events(timeout):
            pthread_mutex_unlock(&self.mu)
            return None
        m = max_events if max_events < self.ext_used else self.ext_used
        segs = <Extent *>malloc(m * sizeof(Extent))
        # a split head extent adds one to what a rollback puts back: keep its slot
        if segs == NULL or self._reserve_physical(1) < 0:
            free(segs)
            pthread_mutex_unlock(&self.mu)
            raise MemoryError("ring buffer: cannot allocate a take")
        nseg = self._pop(segs, max_events, m, False, &n, &nbytes)
        groups = 0
        for i in range(nseg):
            if i == 0 or segs[i].hid or segs[i - 1].hid:
                groups += 1
        self._reserve_taken(n, nbytes, groups)
        pthread_mutex_unlock(&self.mu)
        try:
            segments = []
            for i in range(nseg):
                if i and not segs[i].hid and not segs[i - 1].hid:
                    last = len(segments) - 1
                    segments[last] = (0, 0, segments[last][2] + segs[i].end - segs[i].pos, False)
                else:
                    segments.append((segs[i].hid, segs[i].hstart, segs[i].end - segs[i].pos, False))
            if nseg == 1 and not segs[0].sep:
                chunk = <object>segs[0].owner
                return chunk[0], chunk[1][segs[0].pos:segs[0].end + 1], n, segments
            data = <char *>malloc(nbytes if nbytes else 1)
            offs = <int64_t *>malloc((n + 1) * sizeof(int64_t))
            if data == NULL or offs == NULL:
                free(data); free(offs)
                raise MemoryError("ring buffer: cannot allocate a taken batch")
            with nogil:
                gather(segs, nseg, data, offs)
            return owned_buffer(data, nbytes), owned_buffer(offs, (n + 1) * sizeof(int64_t)), n, segments
        finally:
            for i in range(nseg):
                Py_DECREF(<object>segs[i].owner)
            free(segs)

    def take_open(self, int64_t max_events, double timeout):
        """A take transaction held natively, for a sink that needs each body as bytes
        (kafka): up to max_events headerless events from the head, waiting up to
        `timeout` s for the first. Returns a Taken (commit() or rollback() it), None when
        nothing came in time, False when events with headers are at the head (take those
        with take())."""
        cdef int64_t n = 0, nbytes = 0, m, nseg
        cdef Taken t
        if max_events <= 0:
            raise ValueError("max_events must be positive")
        t = Taken.__new__(Taken)
        self._lock()
        if not self._wait_events(timeout):
            pthread_mutex_unlock(&self.mu)
            return None
        m = max_events if max_events < self.ext_used else self.ext_used
        t.segs = <Extent *>malloc(m * sizeof(Extent))
        if t.segs == NULL or self._reserve_physical(1) < 0:    # as take(): a split head's slot
            pthread_mutex_unlock(&self.mu)
            raise MemoryError("ring buffer: cannot allocate a take")
        nseg = self._pop(t.segs, max_events, m, True, &n, &nbytes)
        if n == 0:
            pthread_mutex_unlock(&self.mu)
            return False
        self._reserve_taken(n, nbytes, nseg)
        pthread_mutex_unlock(&self.mu)
        t.ring, t.nseg, t.n, t.nbytes, t.live = self, nseg, n, nbytes, True
        return t

    def take_each(self, int64_t per_tx, int64_t limit, double timeout):
        """Consecutive take transactions of up to per_tx events each (what is there, as a
        sink takes), each committed at once, for a sink that discards what it takes: the
        first waits up to `timeout` s for an event; they stop when the channel is empty,
        when events with headers are at the head, or after `limit` events. Returns
        (events, transactions, transactions of per_tx events, body bytes, stopped at
        events with headers)."""
        cdef int64_t events = 0, txs = 0, full = 0, nbytes = 0, m, b, nseg, i
        cdef bint headers = False
        cdef Extent segs[MAX_SEGS]     # what a transaction took, released after it
        if per_tx <= 0 or limit <= 0:
            raise ValueError("per_tx and limit must be positive")
        while events < limit and not headers:
            self._lock()
            if txs == 0:
                self._wait_events(timeout)
            m = b = 0
            nseg = self._pop(segs, per_tx, MAX_SEGS, True, &m, &b)
            headers = m < per_tx and self.ext_used > 0 and self.ext[self.ext_head].hid != 0
            self.events -= m
            self.nbytes -= b
            if m:
                self._signal()
            pthread_mutex_unlock(&self.mu)
            for i in range(nseg):
                Py_DECREF(<object>segs[i].owner)
            if m == 0:
                break
            events += m
            nbytes += b
            txs += 1
            full += m == per_tx
        return events, txs, full, nbytes, headers

    def write_each(self, int fd, int64_t per_tx, int64_t limit, double timeout):
        """Consecutive take transactions of up to per_tx events each (what is there, as a
        sink takes), written to fd as lines (every body followed by a newline: a TEXT
        file) and committed once written. The first waits up to `timeout` s for an event;
        they stop when the channel is empty, when events with headers are at the head,
        after `limit` events, or at a failed write. While events are there, the
        transactions of up to WRITE_GROUP bytes are written with one writev and then
        committed together (a system call per transaction costs more than its copy);
        a failed write rolls them back: their events go back to the head (what was
        written stays written, as with any failed delivery). Lines put as they were read
        (sep 1) are written from their own buffer, others joined first. Returns (events,
        transactions, transactions of per_tx events, body bytes, stopped at events with
        headers, errno of the failed write or 0, events rolled back)."""
        cdef int64_t events = 0, txs = 0, full = 0, nbytes = 0, m, b, t, nseg, j, gtx, gfull, raw, first
        cdef bint headers = False
        cdef int err = 0
        cdef Extent segs[MAX_SEGS]
        cdef char *join = NULL
        cdef int64_t join_cap = 0
        if per_tx <= 0 or limit <= 0:
            raise ValueError("per_tx and limit must be positive")
        try:
            while events < limit and not headers:
                self._lock()
                if txs == 0:
                    self._wait_events(timeout)
                m = b = nseg = gtx = gfull = raw = 0
                # a rollback puts back a slot per segment: room for every split extent
                if self.ext_used and self._reserve_physical(MAX_SEGS) < 0:
                    pthread_mutex_unlock(&self.mu)
                    raise MemoryError("ring buffer: out of memory")
                # transactions while there are events, up to WRITE_GROUP bytes and MAX_SEGS extents
                while self.ext_used and not headers and nseg < MAX_SEGS and raw < WRITE_GROUP and events + m < limit:
                    t = 0
                    first = nseg
                    nseg += self._pop(segs + nseg, per_tx, MAX_SEGS - nseg, True, &t, &b)
                    for j in range(first, nseg):
                        raw += segs[j].offsets[segs[j].end] - segs[j].offsets[segs[j].pos]
                    headers = t < per_tx and self.ext_used > 0 and self.ext[self.ext_head].hid != 0
                    if t == 0:
                        break
                    m += t
                    gtx += 1
                    gfull += t == per_tx
                if m:
                    self._reserve_taken(m, b, nseg)
                pthread_mutex_unlock(&self.mu)
                if m == 0:
                    break
                with nogil:
                    err = write_lines(fd, segs, nseg, &join, &join_cap)
                self._end_take(segs, nseg, m, b, not err)     # a failed write: rolled back
                if err:
                    return events, txs, full, nbytes, headers, err, m
                events += m
                nbytes += b
                txs += gtx
                full += gfull
        finally:
            free(join)
        return events, txs, full, nbytes, headers, 0, 0

    def release(self, int64_t events, int64_t nbytes, int64_t nslots):
        """Commit of a take: free the room reserved by take()."""
        self._lock()
        self.reserved_events -= events
        self.reserved_bytes -= nbytes
        self.reserved_slots -= nslots
        self._signal()
        pthread_mutex_unlock(&self.mu)

    def unget(self, list chunks, int64_t nslots_taken):
        """Rollback of a take: put its chunks back at the head, in their original order.

        chunks as for put(); nslots_taken is the segment count take() reported, whose
        reservation this ends. Never blocks: the room was reserved by take().
        """
        cdef Py_ssize_t m = len(chunks), j
        cdef Extent *es = <Extent *>malloc(sizeof(Extent) * (m if m else 1))
        cdef int64_t total_n = 0, total_b = 0
        if es == NULL:
            raise MemoryError()
        try:
            load_chunks(chunks, es, &total_n, &total_b)
            self._lock()
            # reserved room covers these extents, so no growth is needed
            for j in range(m - 1, -1, -1):
                if es[j].end:
                    Py_INCREF(<object>es[j].owner)
                    self._prepend(&es[j])
            self.reserved_events -= total_n
            self.reserved_bytes -= total_b
            self.reserved_slots -= nslots_taken
            self._signal()
            pthread_mutex_unlock(&self.mu)
        finally:
            free(es)


cdef int wait_changed(pthread_cond_t *changed, pthread_mutex_t *mu, bint *interrupted, int64_t *waiting,
                      double deadline) noexcept nogil:
    """With mu held and no GIL: wait for a change; 0 when the deadline passed or the
    ring was interrupted."""
    cdef timespec ts
    cdef double left
    if interrupted[0]:
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
    waiting[0] += 1
    pthread_cond_timedwait(changed, mu, &ts)
    waiting[0] -= 1
    return 0 if interrupted[0] else 1


cdef void gather(const Extent *segs, int64_t nseg, char *data, int64_t *offs) noexcept nogil:
    """Bodies of the segments end to end into data, their offsets (from 0) into offs."""
    cdef int64_t i, k, at = 0, shift, nb, out = 0
    offs[0] = 0
    for i in range(nseg):
        if segs[i].sep:     # lines: each body without its newline
            for k in range(segs[i].pos, segs[i].end):
                nb = segs[i].offsets[k + 1] - segs[i].offsets[k] - 1
                memcpy(data + at, segs[i].data + segs[i].offsets[k], nb)
                at += nb
                out += 1
                offs[out] = at
            continue
        nb = extent_bytes(&segs[i])
        memcpy(data + at, segs[i].data + segs[i].offsets[segs[i].pos], nb)
        shift = at - segs[i].offsets[segs[i].pos]
        for k in range(segs[i].pos + 1, segs[i].end + 1):
            out += 1
            offs[out] = segs[i].offsets[k] + shift
        at += nb


cdef int write_lines(int fd, Extent *segs, int64_t nseg, char **join, int64_t *join_cap) noexcept nogil:
    """Write the segments' events to fd, each body followed by a newline: line segments
    from their own buffer, the others joined into *join (grown as needed), all in one
    writev resumed after short writes. 0, or the errno of the failure."""
    cdef iovec iov[MAX_SEGS]
    cdef int64_t i, k, need = 0, at = 0, nb, left = 0, first = 0
    cdef ssize_t w
    cdef char *fresh
    for i in range(nseg):
        if not segs[i].sep:
            need += segs[i].offsets[segs[i].end] - segs[i].offsets[segs[i].pos] + segs[i].end - segs[i].pos
    if need > join_cap[0]:
        fresh = <char *>malloc(need)
        if fresh == NULL:
            return ENOMEM
        free(join[0])
        join[0] = fresh
        join_cap[0] = need
    for i in range(nseg):
        if segs[i].sep:
            iov[i].iov_base = <void *>(segs[i].data + segs[i].offsets[segs[i].pos])
            iov[i].iov_len = segs[i].offsets[segs[i].end] - segs[i].offsets[segs[i].pos]
        else:
            iov[i].iov_base = <void *>(join[0] + at)
            for k in range(segs[i].pos, segs[i].end):
                nb = segs[i].offsets[k + 1] - segs[i].offsets[k]
                memcpy(join[0] + at, segs[i].data + segs[i].offsets[k], nb)
                at += nb
                join[0][at] = 10
                at += 1
            iov[i].iov_len = <size_t>(join[0] + at - <char *>iov[i].iov_base)
        left += iov[i].iov_len
    while left > 0:
        w = writev(fd, iov + first, <int>(nseg - first))
        if w < 0:
            if errno == EINTR:
                continue
            return errno
        left -= w
        while first < nseg and <size_t>w >= iov[first].iov_len:
            w -= iov[first].iov_len
            first += 1
        if first < nseg and w:
            iov[first].iov_base = <void *>(<char *>iov[first].iov_base + w)
            iov[first].iov_len -= w
    return 0


cdef class Taken:
    """A take transaction of headerless events held by the ring (RingBuffer.take_open):
    their extents, with a reference to each, and their room reserved until commit() or
    rollback(); one dropped without either is rolled back."""

    def __dealloc__(self):
        if self.live:
            self._end(False)
        free(self.segs)

    def bodies(self):
        """The bodies, each as a bytes object, in order."""
        cdef int64_t i, at = 0
        out = PyList_New(self.n)
        for i in range(self.nseg):
            fill_bodies(out, at, self.segs[i].data, self.segs[i].offsets, self.segs[i].pos, self.segs[i].end,
                        self.segs[i].sep)
            at += self.segs[i].end - self.segs[i].pos
        return out

    def commit(self):
        """The events are delivered: their room is freed."""
        self._end(True)

    def rollback(self):
        """The events go back to the head of the ring, in their order."""
        self._end(False)

    cdef int _end(self, bint commit) except -1:
        if not self.live:
            raise RuntimeError("this take transaction has ended")
        self.live = False
        return self.ring._end_take(self.segs, self.nseg, self.n, self.nbytes, commit)
