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
    10 time -> microseconds since midnight (int64); 24:00:00 is refused (no time64 value)
    11 interval (int64 us, int32 days, int32 months) -> microseconds (int64), a month
       counted as 30 days and a year (12 months) as 365, as psycopg's timedelta does
    ARRAY | k: a one-dimensional array of kind k -> a list; the field is int32 ndim,
       int32 has-NULL flag, uint32 element type oid, ndim x (int32 size, int32 lower
       bound), then per element int32 length (-1: NULL) + bytes. Empty arrays have
       ndim 0; lower bounds are dropped; more dimensions are refused.
Invariants: `feed` may get the stream cut anywhere; bytes of an incomplete tuple wait in
`pending` for the next call. Every length is checked against the bytes it claims before
a read. Tuples are decoded with the GIL released; the first error stops the decoder.
"""
from libc.stdint cimport int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t, INT64_MAX
from libc.stdlib cimport calloc, realloc, free
from libc.string cimport memcpy, memset

import numpy as np
import pyarrow as pa

cdef extern from *:
    # GCC and Clang: exact int64 arithmetic, true when the result overflowed
    bint mul_overflow "__builtin_mul_overflow"(int64_t a, int64_t b, int64_t *out) noexcept nogil
    bint add_overflow "__builtin_add_overflow"(int64_t a, int64_t b, int64_t *out) noexcept nogil

cdef int64_t PG_EPOCH_DAYS = 10957            # 2000-01-01 - 1970-01-01
cdef int64_t PG_EPOCH_US = 946684800000000
cdef int64_t DAY_US = 86400000000
# duration[us] as pyarrow converts a timedelta (what the generic path does): up to
# INT64_MAX us, but down to -106751991 days only (past it, its day count overflows)
cdef int64_t INTERVAL_MIN_US = -106751991 * 86400000000
INTERVAL_RANGE = (INTERVAL_MIN_US, INT64_MAX)
HEADER = b"PGCOPY\n\xff\r\n\x00"
ARRAY = 256

cdef enum:
    VARLENA = 7
    DATE = 8
    TIMESTAMP = 9
    TIME = 10
    INTERVAL = 11
    NKINDS = 12
# per kind: bytes of a value on the wire (-1: any) and in the column buffer; the element
# type oids an array of the kind may carry (0: any; timestamp arrays are either of two)
cdef int WIRE[NKINDS]
cdef int STORED[NKINDS]
cdef uint32_t OID[NKINDS]
cdef uint32_t OID2[NKINDS]
WIRE[:] = [0, 2, 4, 8, 4, 8, 1, -1, 4, 8, 8, 16]
STORED[:] = [0, 2, 4, 8, 4, 8, 1, -1, 4, 8, 8, 8]
OID[:] = [0, 21, 23, 20, 700, 701, 16, 0, 1082, 1114, 1083, 1186]
OID2[:] = [0, 21, 23, 20, 700, 701, 16, 0, 1082, 1184, 1083, 1186]
DTYPES = {1: np.int16, 2: np.int32, 3: np.int64, 4: np.float32, 5: np.float64, 6: np.uint8,
          8: np.int32, 9: np.int64, 10: np.int64, 11: np.int64}
TEMPORAL = {8: pa.date32(), 9: pa.timestamp("us"), 10: pa.time64("us"), 11: pa.duration("us")}

cdef enum:
    E_NOMEM = 1
    E_FIELDS        # a tuple with another field count
    E_LENGTH        # a length below -1
    E_WIDTH         # a fixed-width value of another size
    E_ARRAY         # a malformed array (err_why says how)
    E_ARRAY_TYPE    # an array of another element type
    V_TIME          # values Arrow (and the generic path) cannot hold: OutOfRange
    V_INTERVAL
    V_NDIM

# what OutOfRange.what is, and says, for each V_ code
OUT_OF_RANGE = {
    "time": "time 24:00:00 is past the end of the day (time64[us] and Python's time stop at 23:59:59.999999)",
    "interval": "interval outside duration[us] (-106751991 days .. 106751991 days 04:00:54.775807,"
                " a month counted as 30 days, a year as 365)",
    "array": "a multidimensional array (only one-dimensional arrays are imported)",
}


class OutOfRange(ValueError):
    """A well-formed value the Arrow type of its column cannot hold (`what`: a key of
    OUT_OF_RANGE); `column` is its index."""

    def __init__(self, column, what):
        super().__init__("COPY field %d: %s" % (column, OUT_OF_RANGE[what]))
        self.column, self.what = column, what


cdef inline uint16_t be16(const uint8_t *p) noexcept nogil:
    return (<uint16_t>p[0] << 8) | p[1]

cdef inline uint32_t be32(const uint8_t *p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]

cdef inline uint64_t be64(const uint8_t *p) noexcept nogil:
    return (<uint64_t>be32(p) << 32) | be32(p + 4)


cdef int grow(Buf *b, int64_t need) noexcept nogil:
    """Room for `need` more bytes in b; -1 when out of memory."""
    cdef int64_t cap
    cdef char *q
    if b.n + need <= b.cap:
        return 0
    cap = max(b.cap * 2, b.n + need, 4096)
    q = <char *>realloc(b.p, cap)
    if q == NULL:
        return -1
    b.p = q
    b.cap = cap
    return 0


cdef inline int put64(Buf *b, int64_t v) noexcept nogil:
    if grow(b, 8) < 0:
        return E_NOMEM
    (<int64_t *>(b.p + b.n))[0] = v
    b.n += 8
    return 0


cdef int interval_us(const uint8_t *p, int64_t *out) noexcept nogil:
    """The interval at p in microseconds (psycopg's timedelta); V_INTERVAL when outside
    duration[us]."""
    cdef int64_t us = <int64_t>be64(p)
    cdef int64_t months = <int32_t>be32(p + 12)
    # C division truncates: -13 months is -1 year -1 month, as psycopg splits it
    cdef int64_t days = <int32_t>be32(p + 8) + 365 * (months / 12) + 30 * (months % 12)
    if mul_overflow(days, DAY_US, out) or add_overflow(out[0], us, out) or out[0] < INTERVAL_MIN_US:
        return V_INTERVAL
    return 0


cdef object bits(flags):
    """An Arrow bitmap (least significant bit first) of a numpy bool array."""
    return pa.py_buffer(np.packbits(flags, bitorder="little"))


cdef object values_array(Vals *v, int kind, t):
    """Arrow array of t over the values in v (a copy)."""
    cdef int64_t n = v.valid.n
    mask = np.frombuffer(v.valid.p[:n], dtype=np.uint8) == 0 if n else np.zeros(0, bool)
    nulls = int(mask.sum())
    # arrays made from their buffers, never pa.array(numpy): that one imports pandas (a
    # second or so of CPU in each process that decodes) whenever pandas is installed
    validity = bits(~mask) if nulls else None
    if kind == VARLENA:
        offs = pa.py_buffer(v.offsets.p[:v.offsets.n])
        data = pa.py_buffer(v.data.p[:v.data.n])
        base = pa.large_binary() if not (pa.types.is_string(t) or pa.types.is_large_string(t)) else pa.large_string()
        arr = pa.Array.from_buffers(base, n, [validity, offs, data], null_count=nulls)
    else:
        vals = np.frombuffer(v.data.p[:v.data.n], dtype=DTYPES[kind])
        if kind == 6:
            arr = pa.Array.from_buffers(pa.bool_(), n, [validity, bits(vals != 0)], null_count=nulls)
        else:
            arr = pa.Array.from_buffers(pa.from_numpy_dtype(vals.dtype), n, [validity, pa.py_buffer(vals)], null_count=nulls)
        if kind in TEMPORAL:
            arr = arr.view(t if pa.types.is_timestamp(t) and t.unit == "us" else TEMPORAL[kind])
    return arr if arr.type == t else arr.cast(t)


cdef class CopyDecoder:
    """Decode a binary COPY stream for columns of the given kinds into pyarrow arrays."""

    def __cinit__(self, kinds):
        cdef int i, k
        self.ncols = len(kinds)
        # zeroed, so __dealloc__ can free them whatever point __cinit__ failed at
        self.cols = <Col *>calloc(max(1, self.ncols), sizeof(Col))
        if not self.cols:
            raise MemoryError()
        for i in range(self.ncols):
            k = kinds[i] & ~ARRAY
            if not (0 < k < NKINDS) or kinds[i] & ~(ARRAY | 15):
                raise ValueError("unknown column kind %r" % kinds[i])
            self.cols[i].kind = k
            self.cols[i].array = (kinds[i] & ARRAY) != 0
        self.pending = b""
        self._reset()

    def __dealloc__(self):
        cdef int i
        cdef Col *c
        if self.cols != NULL:
            for i in range(self.ncols):
                c = &self.cols[i]
                free(c.v.data.p); free(c.v.offsets.p); free(c.v.valid.p); free(c.lists.p); free(c.list_valid.p)
        free(self.cols)

    cdef int _reset(self) except -1:
        cdef int i
        cdef Col *c
        self.rows = 0
        for i in range(self.ncols):
            c = &self.cols[i]
            c.v.data.n = c.v.valid.n = c.v.offsets.n = c.lists.n = c.list_valid.n = 0
            if (c.kind == VARLENA and put64(&c.v.offsets, 0)) or (c.array and put64(&c.lists, 0)):
                raise MemoryError()
        return 0

    @property
    def buffered_rows(self):
        return self.rows

    def feed(self, data):
        """Decode every complete tuple in pending + data."""
        cdef bytes buf = self.pending + bytes(data)
        cdef const uint8_t *p = <const uint8_t *>(<char *>buf)
        cdef int64_t n = len(buf), pos = 0
        cdef int rc
        if self.err:
            raise ValueError("the COPY decoder stopped at an earlier error")
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
        with nogil:
            rc = self._tuples(p, n, &pos)
        self.pending = buf[pos:]
        if rc:
            self.err = rc
            self._raise()

    cdef int _tuples(self, const uint8_t *p, int64_t n, int64_t *at) noexcept nogil:
        """Decode the complete tuples from p + at[0] on, leaving at[0] after the last."""
        cdef int64_t pos = at[0], q
        cdef int32_t flen
        cdef int16_t nf
        cdef int i, rc
        while pos + 2 <= n and not self.finished:
            nf = <int16_t>be16(p + pos)
            if nf == -1:
                self.finished = True
                pos += 2
                break
            if nf != self.ncols:
                self.err_got = nf
                return E_FIELDS
            # the whole tuple must be here before any of it is written
            q = pos + 2
            for i in range(self.ncols):
                if q + 4 > n:
                    break
                flen = <int32_t>be32(p + q)
                if flen < -1:
                    self.err_col = i
                    self.err_got = flen
                    return E_LENGTH
                q += 4 + (flen if flen > 0 else 0)
            else:
                if q <= n:
                    q = pos + 2
                    for i in range(self.ncols):
                        flen = <int32_t>be32(p + q)
                        q += 4
                        rc = self._field(&self.cols[i], p + q, flen)
                        if rc:
                            self.err_col = i
                            return rc
                        q += flen if flen > 0 else 0
                    pos = q
                    self.rows += 1
                    at[0] = pos
                    continue
            break
        at[0] = pos
        return 0

    cdef int _field(self, Col *c, const uint8_t *p, int32_t flen) noexcept nogil:
        """Append one field (flen -1: NULL) to column c."""
        cdef int rc
        if not c.array:
            return self._value(&c.v, c.kind, p, flen)
        if grow(&c.list_valid, 1) < 0:
            return E_NOMEM
        c.list_valid.p[c.list_valid.n] = flen >= 0
        c.list_valid.n += 1
        if flen >= 0:
            rc = self._array(c, p, flen)
            if rc:
                return rc
        return put64(&c.lists, c.v.valid.n)

    cdef int _array(self, Col *c, const uint8_t *p, int64_t flen) noexcept nogil:
        """Append the elements of the binary array p[0:flen] to c.v."""
        cdef int32_t ndim, size, elen
        cdef uint32_t oid
        cdef int64_t q = 20
        cdef int j, rc
        if flen < 12:
            self.err_why = "shorter than its header"
            return E_ARRAY
        ndim = <int32_t>be32(p)
        oid = be32(p + 8)
        if ndim == 0:               # the empty array
            if flen != 12:
                self.err_why = "bytes after an empty array"
                return E_ARRAY
            return 0
        if ndim < 0 or ndim > 6:    # PostgreSQL's MAXDIM
            self.err_why = "a dimension count outside 0..6"
            return E_ARRAY
        if ndim > 1:
            return V_NDIM
        if OID[c.kind] and oid != OID[c.kind] and oid != OID2[c.kind]:
            self.err_got = oid
            self.err_want = OID[c.kind]
            return E_ARRAY_TYPE
        if flen < 20:
            self.err_why = "shorter than its dimensions"
            return E_ARRAY
        size = <int32_t>be32(p + 12)
        if size < 0 or size > (flen - 20) // 4:
            self.err_why = "more elements than its bytes can hold"
            return E_ARRAY
        for j in range(size):
            if q + 4 > flen:
                self.err_why = "elements past its end"
                return E_ARRAY
            elen = <int32_t>be32(p + q)
            q += 4
            if elen < -1 or elen > flen - q:
                self.err_why = "an element length past its end"
                return E_ARRAY
            rc = self._value(&c.v, c.kind, p + q, elen)
            if rc:
                return rc
            q += elen if elen > 0 else 0
        if q != flen:
            self.err_why = "bytes after its last element"
            return E_ARRAY
        return 0

    cdef int _value(self, Vals *v, int kind, const uint8_t *p, int32_t flen) noexcept nogil:
        """Append one value (flen -1: NULL) of `kind` to v."""
        cdef int w = WIRE[kind], s = STORED[kind]
        cdef char *out
        cdef int64_t v64
        if flen >= 0 and w >= 0 and flen != w:
            self.err_got = flen
            self.err_want = w
            return E_WIDTH
        if grow(&v.valid, 1) < 0:
            return E_NOMEM
        v.valid.p[v.valid.n] = flen >= 0
        v.valid.n += 1
        if kind == VARLENA:
            if flen > 0:
                if grow(&v.data, flen) < 0:
                    return E_NOMEM
                memcpy(v.data.p + v.data.n, p, flen)
                v.data.n += flen
            return put64(&v.offsets, v.data.n)
        if grow(&v.data, s) < 0:
            return E_NOMEM
        out = v.data.p + v.data.n
        if flen < 0:
            memset(out, 0, s)
        elif s == 1:
            out[0] = p[0]
        elif s == 2:
            (<uint16_t *>out)[0] = be16(p)
        elif s == 4:
            (<uint32_t *>out)[0] = be32(p)
            if kind == DATE:
                (<int32_t *>out)[0] += PG_EPOCH_DAYS
        else:
            if kind == INTERVAL:
                if interval_us(p, &v64):
                    return V_INTERVAL
            else:
                v64 = <int64_t>be64(p)
                if kind == TIMESTAMP:
                    v64 += PG_EPOCH_US
                elif kind == TIME and not (0 <= v64 < DAY_US):
                    return V_TIME
            (<int64_t *>out)[0] = v64
        v.data.n += s
        return 0

    cdef int _raise(self) except -1:
        cdef int e = self.err, i = self.err_col
        if e == E_NOMEM:
            raise MemoryError()
        if e == E_FIELDS:
            raise ValueError("COPY tuple has %d fields, expected %d" % (self.err_got, self.ncols))
        if e == E_LENGTH:
            raise ValueError("COPY field %d has length %d" % (i, self.err_got))
        if e == E_WIDTH:
            raise ValueError("COPY field %d%s is %d bytes, expected %d"
                             % (i, " has an element that" if self.cols[i].array else "", self.err_got, self.err_want))
        if e == E_ARRAY:
            raise ValueError("COPY field %d: malformed array (%s)" % (i, self.err_why.decode()))
        if e == E_ARRAY_TYPE:
            raise ValueError("COPY field %d: an array of type oid %d, expected %d" % (i, self.err_got, self.err_want))
        raise OutOfRange(i, {V_TIME: "time", V_INTERVAL: "interval", V_NDIM: "array"}[e])

    def take(self, types):
        """The rows decoded so far as pyarrow arrays of `types` (one per column; an array
        column's type is a list type); resets."""
        cdef int i
        cdef Col *c
        out = []
        for i in range(self.ncols):
            c = &self.cols[i]
            if not c.array:
                out.append(values_array(&c.v, c.kind, types[i]))
                continue
            items = values_array(&c.v, c.kind, types[i].value_type)
            offsets = pa.Array.from_buffers(pa.int64(), c.lists.n // 8, [None, pa.py_buffer(c.lists.p[:c.lists.n])])
            mask = np.frombuffer(c.list_valid.p[:c.list_valid.n], dtype=np.uint8) == 0
            nulls = pa.Array.from_buffers(pa.bool_(), len(mask), [None, bits(mask)]) if mask.any() else None
            arr = pa.LargeListArray.from_arrays(offsets, items, mask=nulls)
            out.append(arr.cast(types[i]))
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
                    if grow(&b, n) < 0:
                        raise MemoryError()
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
