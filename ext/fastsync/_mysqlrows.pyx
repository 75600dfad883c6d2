# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""MySQL / MariaDB result rows (the text protocol) decoded straight into Arrow buffers.

After COM_QUERY the server sends the column count and definitions (the driver reads
those), then one packet per row, then an EOF packet, or an ERR packet if the statement
fails midway. This module decodes the row packets and the terminator.
    packet   3-byte little-endian payload length, 1-byte sequence id (the previous
             packet's + 1, mod 256), payload. A payload of 0xFFFFFF bytes goes on in the
             next packet (rows of 16 MiB or more): the logical payload is the concatenation.
    row      one length-encoded string per column, the value as text:
             first byte < 0xFB: the length; 0xFB: NULL; 0xFC / 0xFD / 0xFE: a 2 / 3 / 8-byte
             little-endian length follows; 0xFF: not a length.
    EOF      0xFE, warnings (2 bytes), status flags (2 bytes): under 9 bytes (a row that
             starts with 0xFE has an 8-byte length after it, so it has at least 9).
    ERR      0xFF, error code (2 bytes), "#" and SQLSTATE (5 bytes), message.
Column kinds (what the caller asks for each column):
    1 text: the bytes as sent (strings, binaries; also DECIMAL and FLOAT/DOUBLE, which
      Arrow's casts parse exactly: a decimal's digits, a double correctly rounded)
    2 signed integer -> int64         3 unsigned integer -> uint64
    4 DATE "YYYY-MM-DD" -> days since 1970-01-01 (int32)
    5 DATETIME / TIMESTAMP "YYYY-MM-DD HH:MM:SS[.ffffff]" -> microseconds since 1970 (int64)
    6 TIME "[-]H:MM:SS[.ffffff]" (hours up to 3 digits) -> microseconds (int64, a duration)
A date or time that is no calendar value (0000-00-00, 2021-02-30: PyMySQL hands those back
as strings) and an integer out of range are errors naming the column.
Invariants: `feed` may get the stream cut anywhere; a packet cut by the end of a chunk is
gathered in `part` (only that packet is copied). Every length is checked against the
payload before a read, and a row must use its payload exactly. The decoding loop runs
without the GIL.
"""
from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t, INT64_MAX, UINT64_MAX
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcpy

import pyarrow as pa

include "_owned.pxi"

cdef enum:
    K_TEXT = 1
    K_INT = 2
    K_UINT = 3
    K_DATE = 4
    K_DATETIME = 5
    K_TIME = 6

TEXT, INT, UINT, DATE, DATETIME, TIME = K_TEXT, K_INT, K_UINT, K_DATE, K_DATETIME, K_TIME
_NAMES = {4: "DATE", 5: "DATETIME", 6: "TIME", 2: "signed integer", 3: "unsigned integer"}
_BASE = {2: pa.int64(), 3: pa.uint64(), 4: pa.date32(), 5: pa.timestamp("us"), 6: pa.duration("us")}

cdef enum:
    E_NOMEM = 1
    E_SEQ = 2
    E_LENGTH = 3
    E_SHORT = 4
    E_LONG = 5
    E_VALUE = 6
    E_SERVER = 7
    E_EMPTY = 8

cdef int64_t MAX_PACKET = 0xFFFFFF


class ProtocolError(ValueError):
    """The bytes are not (or no longer) a text-protocol result of these columns."""


class RowError(ValueError):
    """A value the column's kind cannot hold; `column` is its index."""

    def __init__(self, column, message):
        super().__init__(message)
        self.column = column


class ServerError(RuntimeError):
    """The server ended the result with an ERR packet (e.g. the query was killed)."""

    def __init__(self, code, sqlstate, message):
        super().__init__("server error %d (%s): %s" % (code, sqlstate, message))
        self.code, self.sqlstate, self.message = code, sqlstate, message


cdef inline int width(int kind) noexcept nogil:
    return 0 if kind == K_TEXT else 4 if kind == K_DATE else 8


cdef inline int num(const uint8_t *s, int n, int64_t *out) noexcept nogil:
    """The decimal digits s[0:n] (1 to 18 of them) in out; -1 if any is not a digit."""
    cdef int64_t v = 0
    cdef int i
    if n < 1 or n > 18:
        return -1
    for i in range(n):
        if s[i] < 48 or s[i] > 57:
            return -1
        v = v * 10 + (s[i] - 48)
    out[0] = v
    return 0


cdef inline int parse_uint(const uint8_t *s, int64_t n, uint64_t *out) noexcept nogil:
    cdef uint64_t v = 0, d
    cdef int64_t i
    if n < 1:
        return -1
    for i in range(n):
        if s[i] < 48 or s[i] > 57:
            return -1
        d = s[i] - 48
        if v > (UINT64_MAX - d) // 10:
            return -1
        v = v * 10 + d
    out[0] = v
    return 0


cdef inline int parse_int(const uint8_t *s, int64_t n, int64_t *out) noexcept nogil:
    cdef uint64_t v
    if n > 0 and s[0] == 45:                       # '-'
        if parse_uint(s + 1, n - 1, &v) or v > <uint64_t>INT64_MAX + 1:
            return -1
        out[0] = <int64_t>(0 - v)
        return 0
    if parse_uint(s, n, &v) or v > <uint64_t>INT64_MAX:
        return -1
    out[0] = <int64_t>v
    return 0


cdef inline int64_t days_from_civil(int64_t y, int64_t m, int64_t d) noexcept nogil:
    """Days since 1970-01-01 of a proleptic Gregorian date, year >= 1."""
    cdef int64_t yoe, doy, doe
    if m <= 2:
        y -= 1
    yoe = y % 400
    doy = (153 * (m - 3 if m > 2 else m + 9) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return (y // 400) * 146097 + doe - 719468


cdef inline int parse_date(const uint8_t *s, int64_t n, int64_t *days) noexcept nogil:
    cdef int64_t y, m, d, dim
    if n < 10 or s[4] != 45 or s[7] != 45:
        return -1
    if num(s, 4, &y) or num(s + 5, 2, &m) or num(s + 8, 2, &d):
        return -1
    if y < 1 or m < 1 or m > 12 or d < 1:
        return -1
    dim = 31
    if m == 4 or m == 6 or m == 9 or m == 11:
        dim = 30
    elif m == 2:
        dim = 29 if (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)) else 28
    if d > dim:
        return -1
    days[0] = days_from_civil(y, m, d)
    return 0


cdef inline int parse_clock(const uint8_t *s, int64_t n, int64_t max_hours, int64_t *us) noexcept nogil:
    """H:MM:SS[.f] (hours: 1 to 3 digits, below max_hours) as microseconds."""
    cdef int64_t h, mi, sec, frac = 0
    cdef int hn = 0, fn, i
    while hn < n and hn < 4 and s[hn] != 58:       # ':'
        hn += 1
    if hn < 1 or hn > 3 or n < hn + 6 or s[hn + 3] != 58:
        return -1
    if num(s, hn, &h) or num(s + hn + 1, 2, &mi) or num(s + hn + 4, 2, &sec):
        return -1
    if h >= max_hours or mi > 59 or sec > 59:
        return -1
    fn = <int>(n - hn - 6)
    if fn > 0:
        if fn < 2 or fn > 7 or s[hn + 6] != 46:     # '.' and 1 to 6 digits
            return -1
        if num(s + hn + 7, fn - 1, &frac):
            return -1
        for i in range(7 - fn):
            frac *= 10
    us[0] = ((h * 60 + mi) * 60 + sec) * 1000000 + frac
    return 0


cdef inline int parse_datetime(const uint8_t *s, int64_t n, int64_t *us) noexcept nogil:
    cdef int64_t days, t
    if n < 19 or (s[10] != 32 and s[10] != 84):     # ' ' or 'T'
        return -1
    if parse_date(s, 10, &days) or s[13] != 58 or parse_clock(s + 11, n - 11, 24, &t):
        return -1
    us[0] = days * <int64_t>86400000000 + t
    return 0


cdef inline int parse_time(const uint8_t *s, int64_t n, int64_t *us) noexcept nogil:
    cdef int64_t t
    if n > 0 and s[0] == 45:
        if parse_clock(s + 1, n - 1, 1000, &t):
            return -1
        us[0] = -t
        return 0
    return parse_clock(s, n, 1000, us)


cdef inline int reserve(char **p, int64_t *cap, int64_t need) noexcept nogil:
    """Make *p hold at least `need` bytes (growing by doubling); -1 when out of memory."""
    cdef int64_t c = cap[0]
    cdef char *q
    if need <= c:
        return 0
    c = c * 2 if c * 2 > need else need
    q = <char *>realloc(p[0], c)
    if q == NULL:
        return -1
    p[0] = q
    cap[0] = c
    return 0


cdef class RowDecoder:
    """Decode the rows of a text-protocol result with columns of the given kinds;
    `seq` is the sequence id of the first row packet (the driver's next one)."""

    def __cinit__(self, kinds, int seq=0):
        cdef int i
        self.ncols = len(kinds)
        if self.ncols < 1:
            raise ValueError("a result has at least one column")
        self.cols = <Column *>malloc(self.ncols * sizeof(Column))
        if self.cols == NULL:
            raise MemoryError()
        for i in range(self.ncols):
            self.cols[i] = Column(0, NULL, 0, 0, NULL, NULL, 0)
        for i in range(self.ncols):
            if kinds[i] not in (TEXT, INT, UINT, DATE, DATETIME, TIME):
                raise ValueError("unknown column kind %r" % (kinds[i],))
            self.cols[i].kind = kinds[i]
        self.next_seq = seq & 0xFF
        self._alloc(1024)

    def __dealloc__(self):
        cdef int i
        if self.cols != NULL:
            for i in range(self.ncols):
                free(self.cols[i].data)
                free(self.cols[i].offsets)
                free(self.cols[i].valid)
            free(self.cols)
        free(self.part)

    cdef int _alloc(self, int64_t rows) except -1:
        """Fresh buffers for `rows` rows (text data sized as the column's `cap` says)."""
        cdef int i
        cdef Column *c
        self.rows = 0
        self.row_cap = rows if rows > 1024 else 1024
        for i in range(self.ncols):
            c = &self.cols[i]
            c.n = 0
            c.nulls = 0
            c.valid = <uint8_t *>malloc((self.row_cap + 7) // 8)
            if c.kind == K_TEXT:
                c.cap = c.cap if c.cap > 4096 else 4096
                c.offsets = <int64_t *>malloc((self.row_cap + 1) * sizeof(int64_t))
                if c.offsets != NULL:
                    c.offsets[0] = 0
            else:
                c.cap = self.row_cap * width(c.kind)
            c.data = <char *>malloc(c.cap)
            if c.valid == NULL or c.data == NULL or (c.kind == K_TEXT and c.offsets == NULL):
                raise MemoryError()
        return 0

    cdef int _grow_rows(self) noexcept nogil:
        cdef int64_t cap = self.row_cap * 2, vb = (self.row_cap + 7) // 8, ob = (self.row_cap + 1) * 8
        cdef int i
        cdef Column *c
        for i in range(self.ncols):
            c = &self.cols[i]
            if reserve(<char **>&c.valid, &vb, (cap + 7) // 8):
                return E_NOMEM
            vb = (self.row_cap + 7) // 8
            if c.kind == K_TEXT:
                if reserve(<char **>&c.offsets, &ob, (cap + 1) * 8):
                    return E_NOMEM
                ob = (self.row_cap + 1) * 8
            elif reserve(&c.data, &c.cap, cap * width(c.kind)):
                return E_NOMEM
        self.row_cap = cap
        return 0

    cdef int _row(self, const uint8_t *q, int64_t n) noexcept nogil:
        cdef int64_t pos = 0, r = self.rows, v = 0
        cdef uint64_t ln, u = 0
        cdef uint8_t b
        cdef int i, j, bad
        cdef bint null
        cdef Column *c
        if r == self.row_cap and self._grow_rows():
            return E_NOMEM
        for i in range(self.ncols):
            c = &self.cols[i]
            self.err_col = i
            if pos >= n:
                return E_SHORT
            b = q[pos]
            null = b == 0xFB
            if b < 0xFB:
                ln = b
                pos += 1
            elif null:
                ln = 0
                pos += 1
            elif b == 0xFC and pos + 3 <= n:
                ln = q[pos + 1] | (<uint64_t>q[pos + 2] << 8)
                pos += 3
            elif b == 0xFD and pos + 4 <= n:
                ln = q[pos + 1] | (<uint64_t>q[pos + 2] << 8) | (<uint64_t>q[pos + 3] << 16)
                pos += 4
            elif b == 0xFE and pos + 9 <= n:
                ln = 0
                for j in range(8):
                    ln |= <uint64_t>q[pos + 1 + j] << (8 * j)
                pos += 9
            elif b == 0xFF:
                return E_LENGTH
            else:
                return E_SHORT
            if ln > <uint64_t>(n - pos):
                return E_SHORT
            if r & 7 == 0:
                c.valid[r >> 3] = 0
            if null:
                c.nulls += 1
            else:
                c.valid[r >> 3] |= 1 << (r & 7)
            if c.kind == K_TEXT:
                if ln:
                    if reserve(&c.data, &c.cap, c.n + <int64_t>ln):
                        return E_NOMEM
                    memcpy(c.data + c.n, q + pos, ln)
                    c.n += ln
                c.offsets[r + 1] = c.n
            else:
                bad = 0
                if null:
                    v = 0
                elif c.kind == K_INT:
                    bad = parse_int(q + pos, ln, &v)
                elif c.kind == K_UINT:
                    bad = parse_uint(q + pos, ln, &u)
                    v = <int64_t>u
                elif c.kind == K_DATE:
                    bad = 1 if ln != 10 else parse_date(q + pos, ln, &v)
                elif c.kind == K_DATETIME:
                    bad = parse_datetime(q + pos, ln, &v)
                else:
                    bad = parse_time(q + pos, ln, &v)
                if bad:
                    self.err_text_n = <int>(ln if ln < 48 else 48)
                    memcpy(self.err_text, q + pos, self.err_text_n)
                    return E_VALUE
                if c.kind == K_DATE:
                    (<int32_t *>c.data)[r] = <int32_t>v
                else:
                    (<int64_t *>c.data)[r] = v
            pos += ln
        if pos != n:
            self.err_a = n - pos
            return E_LONG
        self.rows += 1
        self.rows_seen += 1
        return 0

    cdef int _payload(self, const uint8_t *q, int64_t n) noexcept nogil:
        if n == 0:
            return E_EMPTY
        if q[0] == 0xFF:
            self.err_packet = q
            self.err_packet_n = n
            return E_SERVER
        if q[0] == 0xFE and n < 9:
            self.finished = True
            self.eof_n = <int>n - 1
            memcpy(self.eof_buf, q + 1, self.eof_n)
            return 0
        return self._row(q, n)

    cdef int64_t _run(self, const uint8_t *p, int64_t n, int64_t pos, int64_t max_rows) noexcept nogil:
        cdef int64_t k
        cdef int rc
        while pos < n:
            if self.header_n < 4:
                k = min(4 - self.header_n, n - pos)
                memcpy(self.header + self.header_n, p + pos, k)
                self.header_n += <int>k
                pos += k
                if self.header_n < 4:
                    break
                self.packet_len = self.header[0] | (self.header[1] << 8) | (<int64_t>self.header[2] << 16)
                if self.header[3] != self.next_seq:
                    self.err_a, self.err_b = self.header[3], self.next_seq
                    self.err = E_SEQ
                    return pos
                self.next_seq = (self.next_seq + 1) & 0xFF
                self.packet_got = 0
            if not self.continued and self.packet_len < MAX_PACKET and self.packet_got == 0 and n - pos >= self.packet_len:
                rc = self._payload(p + pos, self.packet_len)          # whole in this chunk: no copy
                pos += self.packet_len
            else:
                k = min(self.packet_len - self.packet_got, n - pos)
                if reserve(&self.part, &self.part_cap, self.part_n + k):
                    self.err = E_NOMEM
                    return pos
                memcpy(self.part + self.part_n, p + pos, k)
                self.part_n += k
                self.packet_got += k
                pos += k
                if self.packet_got < self.packet_len:
                    break
                self.header_n = 0
                if self.packet_len == MAX_PACKET:
                    self.continued = True
                    continue
                self.continued = False
                rc = self._payload(<const uint8_t *>self.part, self.part_n)
                self.part_n = 0
            self.header_n = 0
            if rc:
                self.err = rc
                return pos
            if self.finished or (max_rows > 0 and self.rows >= max_rows):
                break
        return pos

    @property
    def buffered_rows(self):
        return self.rows

    @property
    def eof(self):
        """The EOF packet's payload after its 0xFE (warnings, status flags), once finished."""
        return bytes(self.eof_buf[:self.eof_n]) if self.finished else None

    def feed(self, data, int64_t pos=0, int64_t max_rows=0):
        """Decode data[pos:]; stop after the EOF packet, or (max_rows > 0) as soon as
        max_rows rows are buffered. Returns where it stopped (len(data) if it used all)."""
        cdef const uint8_t[::1] view = data
        cdef int64_t n = view.shape[0]
        if self.failure is not None:
            raise self.failure
        if pos < 0 or pos > n:
            raise IndexError("feed position %d outside 0..%d" % (pos, n))
        if self.finished or pos == n or (max_rows > 0 and self.rows >= max_rows):
            return pos
        with nogil:
            pos = self._run(&view[0], n, pos, max_rows)
        if self.err:
            self.failure = self._exception()
            raise self.failure
        return pos

    def end(self):
        """Check the stream is complete: the EOF packet came and nothing is half read."""
        if self.failure is not None:
            raise self.failure
        if not self.finished:
            raise ProtocolError("the result ended after %d rows without its EOF packet (%d bytes of a packet read)"
                                % (self.rows_seen, self.header_n + self.part_n))

    def _exception(self):
        cdef bytes payload
        if self.err == E_NOMEM:
            return MemoryError()
        if self.err == E_SERVER:
            payload = self.err_packet[:self.err_packet_n]
            code = int.from_bytes(payload[1:3], "little") if len(payload) >= 3 else 0
            if payload[3:4] == b"#":
                state, msg = payload[4:9].decode("ascii", "replace"), payload[9:]
            else:
                state, msg = "HY000", payload[3:]
            return ServerError(code, state, msg.decode("utf-8", "replace"))
        row, col = self.rows_seen + 1, self.err_col
        if self.err == E_VALUE:
            return RowError(col, "row %d, column %d: %r is not a %s" % (
                row, col + 1, bytes(self.err_text[:self.err_text_n]).decode("latin-1"), _NAMES[self.cols[col].kind]))
        if self.err == E_SEQ:
            return ProtocolError("packet out of sequence: id %d where %d was due" % (self.err_a, self.err_b))
        if self.err == E_EMPTY:
            return ProtocolError("row %d: an empty packet" % row)
        if self.err == E_LENGTH:
            return ProtocolError("row %d, column %d: 0xFF is not a value length" % (row, col + 1))
        if self.err == E_LONG:
            return ProtocolError("row %d: %d bytes left after its %d columns" % (row, self.err_a, self.ncols))
        return ProtocolError("row %d ends inside column %d of %d" % (row, col + 1, self.ncols))

    def take(self, types):
        """The rows decoded so far as pyarrow arrays of `types` (one per column); resets."""
        cdef int i
        cdef int64_t rows = self.rows
        cdef Column *c
        if len(types) != self.ncols:
            raise ValueError("%d types for %d columns" % (len(types), self.ncols))
        raw = []
        for i in range(self.ncols):
            c = &self.cols[i]
            validity = owned_buffer(c.valid, (rows + 7) // 8) if c.nulls else None
            if validity is None:
                free(c.valid)
            c.valid = NULL
            if c.kind == K_TEXT:
                bufs = [validity, owned_buffer(c.offsets, (rows + 1) * 8), owned_buffer(c.data, c.n)]
                c.offsets = NULL
                raw.append(pa.Array.from_buffers(pa.large_binary(), rows, bufs, null_count=c.nulls))
                c.cap = c.n                      # the next batch's first guess
            else:
                t = types[i] if c.kind == K_DATETIME and pa.types.is_timestamp(types[i]) else _BASE[c.kind]
                raw.append(pa.Array.from_buffers(t, rows, [validity, owned_buffer(c.data, rows * width(c.kind))],
                                                 null_count=c.nulls))
            c.data = NULL
        self._alloc(rows)
        out = []
        for i, (a, t) in enumerate(zip(raw, types)):
            try:
                if a.type == t:
                    out.append(a)
                elif pa.types.is_large_binary(a.type) and not (pa.types.is_string(t) or pa.types.is_large_string(t)
                                                               or pa.types.is_binary(t)):
                    out.append(a.view(pa.large_string()).cast(t))     # decimal or float text
                else:
                    out.append(a.cast(t))            # to string: checks the UTF-8
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
                raise RowError(i, "column %d: %s" % (i + 1, exc)) from None
        return out
