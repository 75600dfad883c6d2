# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Write-ahead log segments of the file channel: preallocated, memory-mapped, group-committed.

FORMAT VERSION 1 (all integers little-endian)

Segment file ``log-<id>`` (ids increase from 1 across all data directories):
    0   8  magic            b"FSWALSEG"
    8   4  format version   1
    12  4  header size      64
    16  8  segment id
    24  8  created          ns since the epoch
    32 32  zero
Records follow from byte 64, each starting at a multiple of 8:
    0   4  magic            0x52574653 (b"SFWR")
    4   4  crc32c           of bytes 8 .. 24 + length (everything after this field but the padding)
    8   4  length           payload bytes
    12  1  kind             1 put, 2 take, 3 commit, 4 rollback
    13  3  zero
    16  8  transaction id
    24     payload, then zero padding to the next multiple of 8
Payloads (framed and parsed in fastsync/agent/channels/wal.py):
    put      n u64, headers_len u64, offsets int64[n + 1] (offsets[0] == 0), headers (Arrow IPC
             stream, padded to 8), bodies (offsets[n] bytes)
    take     (segment id u64, record offset u64, first event u32, count u32) per taken range
    commit, rollback   empty

Everything is written with pwrite/pwritev through the file descriptor; the map (read-only,
so writeback never has to write-protect it) serves reads
(zero-copy views of put records for takes, and replay).

Invariants:
  * the bytes after the last record are zero: a segment grows ahead of its end, by real
    zeros written and synced from a background thread (prefill: a commit's fdatasync then
    flushes data only, as PostgreSQL's preallocated WAL does), or by posix_fallocate when
    an append catches up with it; either way a full disk fails an append with ENOSPC
    before anything is written;
  * a transaction's records are appended by one append() call, so they are contiguous and
    its commit record comes last: a torn tail can only cut the newest transaction;
  * ``written`` (the LSN: bytes appended over the log's life) only grows; ``durable`` <= written
    is the LSN covered by a finished fdatasync. sync(lsn) returns once durable >= lsn; the
    first waiter runs fdatasync for everyone appended so far (group commit);
  * a segment is synced before the log moves to the next one, so one fd covers [durable, written);
  * after a failed fdatasync the log refuses every append and sync: the kernel may have
    dropped the dirty pages, so retrying could report durability that does not exist.

The GIL is released while writing, preallocating and syncing; CRCs are computed by the
crc32c package, which releases it too.
"""
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset
from libc.errno cimport errno, ENOSPC
from posix.fcntl cimport open as c_open, O_RDWR, O_RDONLY, O_CREAT, O_EXCL, O_WRONLY, O_TRUNC, O_APPEND
from posix.unistd cimport close as c_close, write as c_write
from posix.stat cimport struct_stat, fstat
from posix.unistd cimport sysconf, _SC_PAGESIZE
from posix.mman cimport mmap, munmap, madvise, MADV_DONTNEED, PROT_READ, PROT_WRITE, MAP_SHARED, MAP_FAILED
from posix.time cimport timespec, clock_gettime, CLOCK_MONOTONIC, CLOCK_REALTIME
from cpython.bytes cimport PyBytes_AS_STRING
from cpython.buffer cimport PyBUF_READ, PyBuffer_FillInfo
from cpython.memoryview cimport PyMemoryView_FromMemory
from libc.stdint cimport INT64_MAX
from fastsync.crc import crc32c as _crc32c     # not the package's __init__: see crc.py
from fastsync._sync cimport *

include "_owned.pxi"

cdef extern from "<fcntl.h>" nogil:
    int posix_fallocate(int fd, long offset, long length)
cdef extern from "<unistd.h>" nogil:
    int fdatasync(int fd)
cdef extern from "<sys/uio.h>" nogil:      # struct iovec: in _wal.pxd
    ssize_t pwritev(int fd, const iovec *iov, int iovcnt, long offset)


cdef extern from "<unistd.h>" nogil:
    ssize_t pwrite(int fd, const void *buf, size_t n, long offset)

cdef char ZEROS[1 << 20]


cdef int _fill_zeros(int fd, int64_t start, int64_t stop) noexcept nogil:
    """Write zeros over [start, stop) and fdatasync; 0 or an errno."""
    cdef int64_t pos = start
    cdef ssize_t w
    cdef int64_t n
    while pos < stop:
        n = stop - pos if stop - pos < (1 << 20) else (1 << 20)
        w = pwrite(fd, ZEROS, n, pos)
        if w < 0:
            return errno
        pos += w
    if fdatasync(fd) != 0:
        return errno
    return 0
cdef int IOV_BATCH = 512
cdef int64_t GIL_WRITE_LIMIT = 1 << 18   # append_txn keeps the GIL for transactions smaller than this
cdef int64_t PUT_PREFIX = 16              # n events, header bytes
cdef int64_t MAX_RECORD = (1 << 32) - 1

FORMAT_VERSION = 1
SEGMENT_MAGIC = b"FSWALSEG"
SEGMENT_HEADER = 64
cdef enum:
    REC_MAGIC = 0x52574653
    REC_HEADER = 24
    K_PUT = 1
    K_TAKE = 2
    K_COMMIT = 3
RECORD_MAGIC = REC_MAGIC
RECORD_HEADER = REC_HEADER
PUT, TAKE, COMMIT, ROLLBACK = K_PUT, K_TAKE, K_COMMIT, 4
cdef int64_t PAGE = sysconf(_SC_PAGESIZE)
cdef int64_t FAULT_AROUND = 1 << 16   # Linux maps up to this much around a faulting page (fault_around_bytes)


cdef inline int64_t pad8(int64_t n) noexcept nogil:
    return (n + 7) & ~(<int64_t>7)


cdef inline double now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef class Segment:
    """One segment file mapped into memory.

    Segment(path, id, size, create=True) makes a new file (it must not exist), writes its
    header and maps ``size`` bytes for appending, with its first ``prealloc`` bytes
    preallocated (0: none, for a nearly full disk); Segment(path) maps an existing file
    read-only, as large as it is. The map lives as long as this object and every Buffer
    from view(), so a consumer may hold taken events after the file is deleted."""

    def __cinit__(self, path, int64_t seg_id=0, int64_t size=0, bint create=False, int64_t chunk=1 << 24,
                  int64_t prealloc=1 << 16):
        cdef struct_stat st
        cdef int64_t ns
        cdef timespec ts
        cdef char head[64]
        pthread_mutex_init(&self.grow_mu, NULL)
        self.fd = -1
        self.base = NULL
        self.path = path
        self.id = seg_id
        self.writable = create
        bpath = str(path).encode()
        if create:
            if size < SEGMENT_HEADER + RECORD_HEADER:
                raise ValueError("segment size %d is below the smallest useful size %d" % (size, SEGMENT_HEADER + RECORD_HEADER))
            self.fd = c_open(bpath, O_RDWR | O_CREAT | O_EXCL, 0o644)
        else:
            self.fd = c_open(bpath, O_RDONLY)
        if self.fd < 0:
            raise OSError(errno, "cannot open WAL segment", str(path))
        try:
            if create:
                self.mapped = size
                self._grow(min(prealloc, size))     # appends grow it a chunk at a time
            else:
                if fstat(self.fd, &st) != 0:
                    raise OSError(errno, "cannot stat WAL segment", str(path))
                self.mapped = self.allocated = self.end = st.st_size
            if self.mapped > 0:
                self.base = <char *>mmap(NULL, self.mapped, PROT_READ,
                                         MAP_SHARED, self.fd, 0)
                if self.base == <char *>MAP_FAILED:
                    self.base = NULL
                    raise OSError(errno, "cannot map WAL segment", str(path))
            if create:
                clock_gettime(CLOCK_REALTIME, &ts)
                ns = ts.tv_sec * 1000000000 + ts.tv_nsec
                memset(head, 0, SEGMENT_HEADER)
                memcpy(head, b"FSWALSEG", 8)
                (<uint32_t *>(head + 8))[0] = FORMAT_VERSION
                (<uint32_t *>(head + 12))[0] = SEGMENT_HEADER
                (<int64_t *>(head + 16))[0] = seg_id
                (<int64_t *>(head + 24))[0] = ns
                if pwrite(self.fd, head, SEGMENT_HEADER, 0) != SEGMENT_HEADER:
                    raise OSError(errno, "cannot write WAL segment header", str(path))
                self.end = SEGMENT_HEADER
                if self.allocated < SEGMENT_HEADER:     # a prefill must never zero the header
                    self.allocated = SEGMENT_HEADER
        except BaseException:
            self._unmap()
            raise

    cdef int _grow(self, int64_t upto, bint zero_fill=False) except -1:
        """Make the file ready up to `upto` bytes: posix_fallocate, or with zero_fill write
        real zeros and fdatasync them. Writing into blocks that already hold data makes
        each commit's fdatasync flush only data (no extent conversion in the journal)."""
        cdef int rc = 0
        cdef int64_t old
        with nogil:
            pthread_mutex_lock(&self.grow_mu)
            old = self.allocated
            if upto > old and self.fd >= 0:
                if zero_fill:
                    rc = _fill_zeros(self.fd, old, upto)
                else:
                    rc = posix_fallocate(self.fd, old, upto - old)
                if rc == 0:
                    self.allocated = upto
            pthread_mutex_unlock(&self.grow_mu)
        if rc != 0:
            raise OSError(rc, "cannot preallocate %d bytes for WAL segment" % (upto - old), str(self.path))
        return 0

    def prefill(self, int64_t ahead):
        """Zero-fill (and sync) the file up to `ahead` bytes past its end; run from a
        background thread so commits find their blocks written. Returns bytes added."""
        cdef int64_t before = self.allocated
        cdef int64_t target = min(self.mapped, self.end + ahead)
        if self.writable and target > before:
            self._grow(target, True)
        return self.allocated - before

    cdef void _unmap(self) noexcept:
        if self.base != NULL:
            munmap(self.base, self.mapped)
            self.base = NULL
        if self.fd >= 0:
            c_close(self.fd)
            self.fd = -1

    def __dealloc__(self):
        self._unmap()
        pthread_mutex_destroy(&self.grow_mu)

    def __getbuffer__(self, Py_buffer *buffer, int flags):
        """The whole map, read-only: np.frombuffer(segment, offset=..., count=...) views a
        part of it at a fraction of the cost of view() and keeps the segment alive."""
        PyBuffer_FillInfo(buffer, self, self.base if self.base != NULL else ZEROS, self.mapped if self.base != NULL else 0,
                          1, flags)

    def __releasebuffer__(self, Py_buffer *buffer):
        pass

    def view(self, int64_t start=0, int64_t stop=-1):
        """Bytes [start, stop) of the segment (stop -1: its end) as a pyarrow Buffer, no copy."""
        if stop < 0:
            stop = self.end
        if start < 0 or start > stop or stop > self.mapped:
            raise ValueError("view %d..%d outside segment %s of %d bytes" % (start, stop, self.path, self.mapped))
        if stop == start:
            return pyarrow().py_buffer(b"")
        return pyarrow().foreign_buffer(<size_t>(self.base + start), stop - start, base=self)

    @property
    def address(self):
        """Where the map starts in this process's memory."""
        return <int64_t>self.base

    def drop_pages(self, int64_t addr, int64_t size):
        """This process no longer needs the mapped bytes [addr, addr + size) (addr: an
        address inside the map, e.g. a view's): the pages holding them leave its memory.
        They stay in the file and the page cache, and a view that reads them again maps
        them back. A read maps its neighbours too (the kernel's fault-around), pages
        already dropped among them, so each drop also covers what lies between the end of
        the previous one (less that window) and this one: reading a segment front to back
        and dropping what was read keeps its resident size to what is being read."""
        cdef int64_t start = addr - <int64_t>self.base, stop, page = PAGE
        if self.base == NULL or size <= 0 or start < 0 or start + size > self.mapped:
            return
        stop = (start + size) & ~(page - 1)
        start = start & ~(page - 1)
        if self.drop_from < start:
            start = self.drop_from
        if stop > start:
            madvise(self.base + start, stop - start, MADV_DONTNEED)
            # the next drop starts a fault-around window back: reads after this one may
            # map pages just behind `stop` again
            self.drop_from = (stop - FAULT_AROUND) & ~(FAULT_AROUND - 1) if stop > FAULT_AROUND else 0

    def sync(self):
        """fdatasync the file (a writable segment: before it is closed for good)."""
        cdef int rc
        with nogil:
            rc = fdatasync(self.fd)
        if rc != 0:
            raise OSError(errno, "fdatasync failed", str(self.path))

    def close(self):
        """Release the file descriptor; the map stays until the last view is gone."""
        with nogil:
            pthread_mutex_lock(&self.grow_mu)     # not while a prefill uses the fd
        self.writable = False
        if self.fd >= 0:
            c_close(self.fd)
            self.fd = -1
        pthread_mutex_unlock(&self.grow_mu)

    def __repr__(self):
        return "Segment(%r, id=%d, end=%d)" % (str(self.path), self.id, self.end)


cdef class Iov:
    """The iovecs of records being appended, and their framing: begin() a record, add()
    its header then its payload's parts, frame() it (fills in the header, CRC included,
    and pads the record to a multiple of 8)."""

    def __cinit__(self, Py_ssize_t cap):
        self.iov = <iovec *>malloc(max(cap, 1) * sizeof(iovec))
        if self.iov == NULL:
            raise MemoryError()
        self.cap = cap
        self.n = 0
        self.total = 0
        self.rec = 0

    def __dealloc__(self):
        free(self.iov)

    cdef void begin(self) noexcept:
        self.rec = self.n

    cdef int add(self, const char *p, int64_t size) except -1:
        if size <= 0:
            return 0
        if self.n == self.cap:
            raise IndexError("Iov: more parts than its %d" % self.cap)
        self.iov[self.n].iov_base = <void *>p
        self.iov[self.n].iov_len = size
        self.n += 1
        self.total += size
        return 0

    cdef int frame(self, char *h, int kind, uint64_t txn, int64_t length, bint release) except -1:
        """Fill in the 24-byte header at h (the start of this record's first part) and pad."""
        cdef Py_ssize_t i
        cdef uint32_t crc = 0
        (<uint32_t *>h)[0] = REC_MAGIC
        (<uint32_t *>(h + 8))[0] = <uint32_t>length
        (<uint32_t *>(h + 12))[0] = kind        # kind, then three zero bytes
        (<uint64_t *>(h + 16))[0] = txn
        mode = 1 if release else 0      # crc32c's gil_release_mode
        for i in range(self.rec, self.n):
            if i == self.rec:      # the CRC covers everything after its own field
                crc = _crc32c(PyMemoryView_FromMemory(h + 8, self.iov[i].iov_len - 8, PyBUF_READ), crc, mode)
            else:
                crc = _crc32c(PyMemoryView_FromMemory(<char *>self.iov[i].iov_base, self.iov[i].iov_len, PyBUF_READ),
                              crc, mode)
        (<uint32_t *>(h + 4))[0] = crc
        return self.pad()

    cdef int pad(self) except -1:
        """Zeros up to the next multiple of 8 (records start 8-aligned)."""
        return self.add(ZEROS, pad8(self.total) - self.total)


cdef class Log:
    """The appending end of the WAL: one current Segment, group commit across threads."""

    def __cinit__(self, Segment segment, int64_t chunk=1 << 24):
        pthread_mutex_init(&self.mu, NULL)
        pthread_cond_init(&self.cond, NULL)
        self.chunk = chunk if chunk > 0 else 1 << 24
        self._use(segment)

    def __dealloc__(self):
        pthread_cond_destroy(&self.cond)
        pthread_mutex_destroy(&self.mu)

    cdef int _use(self, Segment segment) except -1:
        if not segment.writable or segment.base == NULL:
            raise ValueError("segment %s is not open for appending" % segment.path)
        pthread_mutex_lock(&self.mu)     # a leading syncer reads current.fd under mu
        self.current = segment
        pthread_mutex_unlock(&self.mu)
        return 0

    def roll(self, Segment segment):
        """Make `segment` the current one, after syncing and closing the old one."""
        cdef Segment old = self.current
        self._check_failed()
        self.sync(self.written)
        self._use(segment)
        old.close()

    cdef int _check_failed(self) except -1:
        if self.failed:
            raise OSError(self.failed, "an earlier fdatasync of the WAL failed; the channel must be restarted to recover")
        return 0

    def append(self, list records):
        """Append records [(header, parts)] contiguously to the current segment.

        `header` is the record's 24 framing bytes (CRC included), `parts` a sequence of
        buffers whose lengths add up to its length field. Returns the offset of the first
        record, or None when they do not fit in what is left of the segment (roll, retry).
        Raises OSError (ENOSPC when the disk is full) with nothing written. One thread
        appends at a time (the channel's append lock); sync() may run in any thread."""
        cdef Py_ssize_t nparts = 0, i = 0, k
        cdef int64_t total = 0, rec_len
        cdef ByteView v
        cdef Iov out
        self._check_failed()
        views = []
        for header, parts in records:
            if len(header) != RECORD_HEADER:
                raise ValueError("a record header is %d bytes, not %d" % (RECORD_HEADER, len(header)))
            rec_len = RECORD_HEADER
            views.append(ByteView(header))
            for p in parts:
                v = ByteView(p)
                rec_len += v.size
                views.append(v)
            total += pad8(rec_len)
            nparts += 1 + len(parts)
        out = Iov(2 * nparts)
        # each part, and after a record's last part the zero padding to a multiple of 8
        for header, parts in records:
            for k in range(1 + len(parts)):
                v = views[i]
                out.add(v.ptr, v.size)
                i += 1
            out.pad()
        return self._write(out, total >= GIL_WRITE_LIMIT)

    def append_txn(self, uint64_t txn, list puts, take=None):
        """Frame and append one transaction: a put record per (offsets, data, headers) in
        `puts`, a take record with payload `take` unless it is None, and its commit record,
        as the layout above says (tests/test_wal.py checks it against a reference). offsets:
        the n + 1 int64 positions of the bodies in `data` (the first need not be 0: they are
        stored rebased); headers: the encoded header columns (b"" for none). Returns the
        segment offsets of the put records (a tuple), or None when the transaction does not
        fit in what is left of the segment (roll, retry); raises ValueError for offsets
        that are not non-decreasing positions inside data, and OSError as append(), in
        both cases with nothing written.

        A transaction under GIL_WRITE_LIMIT bytes is framed and written holding the GIL
        (its CRCs and its copy into the page cache cost less than handing the GIL to
        another thread and back; the price: a write the kernel throttles for writeback
        holds the other threads too); a larger one releases it for checksums and write,
        as append() does."""
        cdef Py_ssize_t nputs = len(puts), j
        cdef int64_t total = 0, n, first, hlen, plen, rebased = 0, i
        cdef int64_t *offs
        cdef int64_t *dst
        cdef char *meta
        cdef char *rb
        cdef char *h
        cdef ByteView ov, dv, hv, tv = None
        cdef Iov out
        cdef bint release
        self._check_failed()
        # pass 1: check and size everything; the views hold the buffers until written
        views = []
        for offsets, data, headers in puts:
            ov, dv, hv = ByteView(offsets), ByteView(data), ByteView(headers)
            if ov.size < 8 or ov.size % 8:
                raise ValueError("put offsets must be n + 1 int64 positions, got %d bytes" % ov.size)
            n = ov.size // 8 - 1
            offs = <int64_t *>ov.ptr
            check_offsets(offs, n, dv.size, INT64_MAX)
            if offs[0]:
                rebased += ov.size
            plen = PUT_PREFIX + ov.size + pad8(hv.size) + offs[n] - offs[0]
            if plen > MAX_RECORD:
                raise ValueError("a WAL record holds at most %d bytes, this one would be %d" % (MAX_RECORD, plen))
            total += pad8(REC_HEADER + plen)
            views.append((ov, dv, hv, plen))
        if take is not None:
            tv = ByteView(take)
            if tv.size > MAX_RECORD:
                raise ValueError("a WAL record holds at most %d bytes, this one would be %d" % (MAX_RECORD, tv.size))
            total += pad8(REC_HEADER + tv.size)
        total += REC_HEADER
        release = total >= GIL_WRITE_LIMIT
        # pass 2: record headers, put prefixes and rebased offsets in one scratch block
        meta = <char *>malloc((nputs + 2) * (REC_HEADER + PUT_PREFIX) + rebased)
        if meta == NULL:
            raise MemoryError()
        try:
            out = Iov(6 * nputs + 5)
            h = meta
            rb = meta + (nputs + 2) * (REC_HEADER + PUT_PREFIX)
            for j in range(nputs):
                ov, dv, hv, plen = views[j]
                n = ov.size // 8 - 1
                offs = <int64_t *>ov.ptr
                first = offs[0]
                hlen = hv.size
                (<int64_t *>(h + REC_HEADER))[0] = n
                (<int64_t *>(h + REC_HEADER))[1] = hlen
                if first:
                    dst = <int64_t *>rb
                    for i in range(n + 1):
                        dst[i] = offs[i] - first
                    offs = dst
                    rb += ov.size
                out.begin()
                out.add(h, REC_HEADER + PUT_PREFIX)
                out.add(<char *>offs, ov.size)
                out.add(hv.ptr, hlen)
                out.add(ZEROS, pad8(hlen) - hlen)
                out.add(dv.ptr + first, offs[n])
                out.frame(h, K_PUT, txn, plen, release)
                h += REC_HEADER + PUT_PREFIX
            if tv is not None:
                out.begin()
                out.add(h, REC_HEADER)
                out.add(tv.ptr, tv.size)
                out.frame(h, K_TAKE, txn, tv.size, release)
                h += REC_HEADER
            out.begin()
            out.add(h, REC_HEADER)
            out.frame(h, K_COMMIT, txn, 0, release)
            start = self._write(out, release)
        finally:
            free(meta)
        if start is None:
            return None
        res = []
        for j in range(nputs):     # the records follow each other from start
            res.append(start)
            start += pad8(REC_HEADER + views[j][3])
        return tuple(res)

    cdef object _write(self, Iov out, bint release):
        """Write out's iovecs (whole records, out.total bytes) at the end of the current
        segment; its offset there, or None when they do not fit."""
        cdef Segment seg = self.current
        cdef int64_t total = out.total, start = seg.end
        cdef int err
        if start + total > seg.mapped:
            return None
        if start + total > seg.allocated:
            try:
                seg._grow(min(seg.mapped, pad8(start + total + self.chunk)))
            except OSError as exc:
                if exc.errno != ENOSPC:
                    raise
                seg._grow(start + total)       # a nearly full disk: take just what this needs
        # written through the file, not the map: a store into a fresh mapped page costs a
        # fault and a journal handle per 4 KiB, pwritev copies into the page cache at once
        if release:
            with nogil:
                err = _pwrite_all(seg.fd, out.iov, out.n, start)
        else:
            err = _pwrite_all(seg.fd, out.iov, out.n, start)
        if err:
            raise OSError(err, "cannot write to WAL segment", str(seg.path))
        with nogil:
            pthread_mutex_lock(&self.mu)
            seg.end = start + total
            self.written += total
            pthread_mutex_unlock(&self.mu)
        return start

    def sync(self, int64_t lsn=-1):
        """Return once fdatasync has covered the log up to `lsn` (-1: all appended so far)."""
        cdef int rc
        with nogil:
            rc = self._sync(lsn)
        if rc:
            raise OSError(rc, "fdatasync of the WAL failed", str(self.current.path))

    cdef int _sync(self, int64_t lsn) noexcept nogil:
        cdef int64_t target
        cdef int fd, rc = 0
        pthread_mutex_lock(&self.mu)
        if lsn < 0:
            lsn = self.written
        while self.durable < lsn and not self.failed:
            if self.syncing:
                pthread_cond_wait(&self.cond, &self.mu)
                continue
            # lead: one fdatasync covers every byte appended so far, for every waiter
            self.syncing = True
            target = self.written
            fd = self.current.fd
            pthread_mutex_unlock(&self.mu)
            rc = fdatasync(fd)
            if rc != 0:
                rc = errno
            pthread_mutex_lock(&self.mu)
            self.syncing = False
            self.syncs += 1
            if rc != 0:
                self.failed = rc
            elif target > self.durable:
                self.durable = target
            pthread_cond_broadcast(&self.cond)
        rc = self.failed
        pthread_mutex_unlock(&self.mu)
        return rc


cdef int _pwrite_all(int fd, iovec *iov, int niov, int64_t pos) noexcept nogil:
    """Write every iovec at pos, resuming after short writes; 0 or an errno."""
    cdef int first = 0, cnt
    cdef ssize_t w
    while first < niov:
        cnt = niov - first if niov - first < IOV_BATCH else IOV_BATCH
        w = pwritev(fd, iov + first, cnt, pos)
        if w < 0:
            return errno
        pos += w
        while first < niov and <size_t>w >= iov[first].iov_len:
            w -= iov[first].iov_len
            first += 1
        if w > 0:
            iov[first].iov_base = <char *>iov[first].iov_base + w
            iov[first].iov_len -= w
    return 0


def fdatasync_baseline(path, data, int64_t batches):
    """The physical limit of a durable log on this disk: append `data` to a new file
    `batches` times, fdatasync after each. Returns the seconds it took."""
    cdef ByteView v = ByteView(data)
    cdef int fd
    cdef int64_t i, done
    cdef long w
    cdef double t0, t1
    cdef int err = 0
    fd = c_open(str(path).encode(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0o644)
    if fd < 0:
        raise OSError(errno, "cannot open", str(path))
    with nogil:
        t0 = now()
        for i in range(batches):
            done = 0
            while done < v.size:
                w = c_write(fd, v.ptr + done, v.size - done)
                if w < 0:
                    err = errno
                    break
                done += w
            if err or fdatasync(fd) != 0:
                if not err:
                    err = errno
                break
        t1 = now()
    c_close(fd)
    if err:
        raise OSError(err, "baseline write failed", str(path))
    return t1 - t0
