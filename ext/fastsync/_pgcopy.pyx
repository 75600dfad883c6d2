# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""PostgreSQL `COPY ... TO STDOUT (FORMAT binary)` decoded straight into Arrow buffers.

Stream layout (PostgreSQL docs, "Binary Format"), all integers big-endian:
    header   b"PGCOPY\\n\\xff\\r\\n\\0", int32 flags, int32 extension length + extension
    tuple    int16 field count, then per field int32 length (-1: NULL) + that many bytes
    trailer  int16 -1
Column kinds (what the caller asks for each column; other types are cast to text in SQL):
    1 int2 -> int16   2 int4 -> int32   3 int8 -> int64   4 float4 -> float32
    5 float8 -> float64   6 bool -> bool (one byte per value here, packed by pyarrow)
    7 text/varchar/bytea -> offsets + bytes   8 date -> days since 1970 (int32)
    9 timestamp[tz] -> microseconds since 1970 (int64)
Invariants: `feed` may get the stream cut anywhere; bytes of an incomplete tuple wait in
`pending` for the next call. Every length is checked against the buffer before a read.
"""
from libc.stdint cimport int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport malloc, calloc, realloc, free
from libc.string cimport memcpy

import numpy as np
import pyarrow as pa

cdef int64_t PG_EPOCH_DAYS = 10957            # 2000-01-01 - 1970-01-01
cdef int64_t PG_EPOCH_US = 946684800000000
KIND_WIDTH = {1: 2, 2: 4, 3: 8, 4: 4, 5: 8, 6: 1, 8: 4, 9: 8}
HEADER = b"PGCOPY\n\xff\r\n\x00"


cdef inline uint16_t be16(const uint8_t *p) noexcept nogil:
    return (<uint16_t>p[0] << 8) | p[1]

cdef inline uint32_t be32(const uint8_t *p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]

cdef inline uint64_t be64(const uint8_t *p) noexcept nogil:
    return (<uint64_t>be32(p) << 32) | be32(p + 4)


cdef int grow(Buf *b, int64_t need) except -1:
    cdef int64_t cap
    cdef char *q
    if b.n + need <= b.cap:
        return 0
    cap = max(b.cap * 2, b.n + need, 4096)
    q = <char *>realloc(b.p, cap)
    if q == NULL:
        raise MemoryError()
    b.p = q
    b.cap = cap
    return 0


cdef class CopyDecoder:
    """Decode a binary COPY stream for columns of the given kinds into pyarrow arrays."""

    def __cinit__(self, kinds):
        cdef int i
        self.ncols = len(kinds)
        self.kinds = <int *>malloc(max(1, self.ncols) * sizeof(int))
        # zeroed, so __dealloc__ can free them whatever point __cinit__ failed at
        self.values = <Buf *>calloc(max(1, self.ncols), sizeof(Buf))
        self.offsets = <Buf *>calloc(max(1, self.ncols), sizeof(Buf))
        self.valid = <Buf *>calloc(max(1, self.ncols), sizeof(Buf))
        if not self.kinds or not self.values or not self.offsets or not self.valid:
            raise MemoryError()
        for i in range(self.ncols):
            if kinds[i] not in KIND_WIDTH and kinds[i] != 7:
                raise ValueError("unknown column kind %r" % kinds[i])
            self.kinds[i] = kinds[i]
        self.pending = b""
        self._reset()

    def __dealloc__(self):
        cdef int i
        if self.values != NULL:
            for i in range(self.ncols):
                free(self.values[i].p)
                free(self.offsets[i].p)
                free(self.valid[i].p)
        free(self.kinds); free(self.values); free(self.offsets); free(self.valid)

    cdef int _reset(self) except -1:
        cdef int i
        self.rows = 0
        for i in range(self.ncols):
            self.values[i].n = 0
            self.valid[i].n = 0
            self.offsets[i].n = 0
            if self.kinds[i] == 7:
                grow(&self.offsets[i], 8)
                (<int64_t *>self.offsets[i].p)[0] = 0
                self.offsets[i].n = 8
        return 0

    @property
    def buffered_rows(self):
        return self.rows

    def feed(self, data):
        """Decode every complete tuple in pending + data."""
        cdef bytes buf = self.pending + bytes(data)
        cdef const uint8_t *p = <const uint8_t *>(<char *>buf)
        cdef int64_t n = len(buf), pos = 0, start, flen
        cdef int i, k, w
        cdef int16_t nf
        cdef int64_t v64
        if not self.header_done:
            if n < 19:
                self.pending = buf
                return
            if buf[:11] != HEADER:
                raise ValueError("not a PostgreSQL binary COPY stream")
            pos = 19 + be32(p + 15)
            if pos > n:
                self.pending = buf
                return
            self.header_done = True
        while pos + 2 <= n and not self.finished:
            start = pos
            nf = <int16_t>be16(p + pos)
            if nf == -1:
                self.finished = True
                pos += 2
                break
            if nf != self.ncols:
                raise ValueError("COPY tuple has %d fields, expected %d" % (nf, self.ncols))
            pos += 2
            # check the whole tuple is here before writing any of it
            for i in range(self.ncols):
                if pos + 4 > n:
                    break
                flen = <int32_t>be32(p + pos)
                pos += 4 + (flen if flen > 0 else 0)
            else:
                if pos <= n:
                    pos = start + 2
                    for i in range(self.ncols):
                        flen = <int32_t>be32(p + pos)
                        pos += 4
                        k = self.kinds[i]
                        grow(&self.valid[i], 1)
                        self.valid[i].p[self.valid[i].n] = flen >= 0
                        self.valid[i].n += 1
                        if k == 7:
                            if flen > 0:
                                grow(&self.values[i], flen)
                                memcpy(self.values[i].p + self.values[i].n, p + pos, flen)
                                self.values[i].n += flen
                            grow(&self.offsets[i], 8)
                            (<int64_t *>(self.offsets[i].p + self.offsets[i].n))[0] = self.values[i].n
                            self.offsets[i].n += 8
                        else:
                            w = 2 if k == 1 else 4 if (k == 2 or k == 4 or k == 8) else 8 if (k == 3 or k == 5 or k == 9) else 1
                            if flen >= 0 and flen != w:
                                raise ValueError("COPY field %d is %d bytes, expected %d" % (i, flen, w))
                            grow(&self.values[i], w)
                            if flen < 0:
                                memcpy(self.values[i].p + self.values[i].n, b"\0\0\0\0\0\0\0\0", w)
                            elif w == 1:
                                self.values[i].p[self.values[i].n] = p[pos]
                            elif w == 2:
                                (<uint16_t *>(self.values[i].p + self.values[i].n))[0] = be16(p + pos)
                            elif w == 4:
                                (<uint32_t *>(self.values[i].p + self.values[i].n))[0] = be32(p + pos)
                                if k == 8:
                                    (<int32_t *>(self.values[i].p + self.values[i].n))[0] += PG_EPOCH_DAYS
                            else:
                                v64 = <int64_t>be64(p + pos)
                                if k == 9:
                                    v64 += PG_EPOCH_US
                                (<int64_t *>(self.values[i].p + self.values[i].n))[0] = v64
                            self.values[i].n += w
                        pos += flen if flen > 0 else 0
                    self.rows += 1
                    continue
            pos = start
            break
        self.pending = buf[pos:]

    def take(self, types):
        """The rows decoded so far as pyarrow arrays of `types` (one per column); resets."""
        cdef int i
        out = []
        for i in range(self.ncols):
            mask = np.frombuffer(self.valid[i].p[:self.valid[i].n], dtype=np.uint8) == 0 if self.valid[i].n else np.zeros(0, bool)
            t = types[i]
            if self.kinds[i] == 7:
                offs = pa.py_buffer(self.offsets[i].p[:self.offsets[i].n])
                data = pa.py_buffer(self.values[i].p[:self.values[i].n])
                validity = pa.array(~mask).buffers()[1] if mask.any() else None
                base = pa.large_binary() if not (pa.types.is_string(t) or pa.types.is_large_string(t)) else pa.large_string()
                arr = pa.Array.from_buffers(base, self.rows, [validity, offs, data], null_count=int(mask.sum()))
                out.append(arr.cast(t) if arr.type != t else arr)
            else:
                raw = self.values[i].p[:self.values[i].n]
                dt = {1: np.int16, 2: np.int32, 3: np.int64, 4: np.float32, 5: np.float64, 6: np.uint8, 8: np.int32, 9: np.int64}[self.kinds[i]]
                vals = np.frombuffer(raw, dtype=dt)
                if self.kinds[i] == 6:
                    vals = vals.astype(bool)
                arr = pa.array(vals, mask=mask if mask.any() else None)
                if self.kinds[i] in (8, 9):
                    arr = arr.view(t) if pa.types.is_date32(t) or pa.types.is_timestamp(t) else arr.cast(t)
                elif arr.type != t:
                    arr = arr.cast(t)
                out.append(arr)
        self._reset()
        return out


# ---- reading COPY data straight from libpq -------------------------------------------
# The server sends one CopyData message per row; reading them through a driver's Python
# iterator costs a Python call chain per row. CopyReader takes the PGconn* of an open
# psycopg connection and the libpq psycopg loaded, and gathers messages into ~1 MiB
# chunks with the GIL released.
from posix.dlfcn cimport dlopen, dlsym, RTLD_NOW

ctypedef int (*getcopydata_t)(void *conn, char **buf, int is_async) noexcept nogil
ctypedef void (*freemem_t)(void *p) noexcept nogil
ctypedef void *(*exec_t)(void *conn, const char *query) noexcept nogil
ctypedef void *(*getresult_t)(void *conn) noexcept nogil
ctypedef int (*resultstatus_t)(void *res) noexcept nogil
ctypedef void (*clear_t)(void *res) noexcept nogil
ctypedef char *(*errormessage_t)(void *conn) noexcept nogil

cdef int PGRES_COMMAND_OK = 1
cdef int PGRES_COPY_OUT = 3


cdef class CopyReader:
    cdef void *conn
    cdef getcopydata_t getcopydata
    cdef freemem_t freemem
    cdef getresult_t getresult
    cdef resultstatus_t resultstatus
    cdef clear_t clear
    cdef errormessage_t errormessage
    cdef readonly bint done

    def __cinit__(self, size_t pgconn_ptr, libpq_path, query):
        cdef void *lib = dlopen(str(libpq_path).encode(), RTLD_NOW)
        cdef exec_t pqexec
        cdef void *res
        cdef int status
        if lib == NULL:
            raise OSError("cannot load libpq from %s" % libpq_path)
        pqexec = <exec_t>dlsym(lib, "PQexec")
        self.getcopydata = <getcopydata_t>dlsym(lib, "PQgetCopyData")
        self.freemem = <freemem_t>dlsym(lib, "PQfreemem")
        self.getresult = <getresult_t>dlsym(lib, "PQgetResult")
        self.resultstatus = <resultstatus_t>dlsym(lib, "PQresultStatus")
        self.clear = <clear_t>dlsym(lib, "PQclear")
        self.errormessage = <errormessage_t>dlsym(lib, "PQerrorMessage")
        if not (pqexec and self.getcopydata and self.freemem and self.getresult and self.resultstatus and self.clear and self.errormessage):
            raise OSError("libpq at %s lacks the COPY functions" % libpq_path)
        self.conn = <void *>pgconn_ptr
        q = str(query).encode()
        cdef const char *cq = q
        with nogil:
            res = pqexec(self.conn, cq)
            status = self.resultstatus(res) if res != NULL else -1
            if res != NULL:
                self.clear(res)
        if status != PGRES_COPY_OUT:
            raise RuntimeError(self._error())

    cdef str _error(self):
        cdef char *m = self.errormessage(self.conn)
        return (m.decode("utf-8", "replace") if m != NULL else "unknown error").strip() or "COPY failed"

    def read(self, int64_t want=1 << 20):
        """At least `want` bytes of the stream (less at its end); b"" once it is over."""
        cdef Buf b = Buf(NULL, 0, 0)
        cdef char *msg
        cdef int n = 0
        cdef void *res
        cdef int bad = 0
        if self.done:
            return b""
        try:
            while b.n < want:
                with nogil:
                    n = self.getcopydata(self.conn, &msg, 0)
                if n > 0:
                    grow(&b, n)
                    memcpy(b.p + b.n, msg, n)
                    b.n += n
                    self.freemem(msg)
                    continue
                if n == -2:
                    raise RuntimeError(self._error())
                # -1: the COPY is over; collect its result
                with nogil:
                    while True:
                        res = self.getresult(self.conn)
                        if res == NULL:
                            break
                        if self.resultstatus(res) != PGRES_COMMAND_OK:
                            bad = 1
                        self.clear(res)
                self.done = True
                if bad:
                    raise RuntimeError(self._error())
                break
            return b.p[:b.n] if b.n else b""
        finally:
            free(b.p)
