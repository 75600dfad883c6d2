# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Avro binary encoding on whole batches, in the Arrow layout (a data buffer + offsets).

    long     zigzag varint: (v << 1) ^ (v >> 63), 7 bits a byte, low first, high bit = more
    bytes / string   a long length, then the bytes
    map      blocks: a long count (negative: -count, then a long byte size), count entries
             (string key, value); a count of 0 ends the map
    record   its fields one after the other, no framing

decode_flume_events: Kafka messages that are Flume's AvroFlumeEvent (record {headers:
map<string>, body: bytes}), as used by the Kafka source's useFlumeEventFormat and the Kafka
channel's parseAsFlumeEvent, decoded into one bodies buffer and one column per header name,
without a Python object per event. Like fastavro and Flume's reader, bytes after the record
are ignored.

interleave: the rows of an Avro block from per-column pieces: row i is piece 0's i-th
segment, then piece 1's, ... (an Avro record is its fields in order), so each column can be
encoded on its own with vectorised code and the rows assembled in one pass.

encode_flume_events: the reverse of decode_flume_events: a batch's bodies and header columns
as AvroFlumeEvents end to end (one buffer + offsets), byte for byte what fastavro writes
(a map of one block, its entries in column order, absent (null) headers left out).

decode_flume_array: the same columns from an Avro array<AvroFlumeEvent> in one buffer (the
request of AvroSourceProtocol.appendBatch, Flume's avro RPC), events parsed where they lie.

decode_block: the records of one block of an Avro data file, flat records whose fields are
primitive types (alone or in a union with null), into one column per field.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_Check, PyBytes_GET_SIZE
from libc.stdint cimport INT32_MAX, INT64_MAX, int32_t, int64_t, uint8_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcmp, memcpy, memset

include "_owned.pxi"


cdef inline int read_long(const char *p, int64_t size, int64_t *pos, int64_t *out) noexcept nogil:
    """The zigzag varint at p[pos[0]] into out[0], pos[0] moved past it; -1 when it runs
    past `size` or is longer than 10 bytes."""
    cdef uint64_t acc = 0
    cdef int shift = 0
    cdef uint8_t b
    while True:
        if pos[0] >= size or shift > 63:
            return -1
        b = <uint8_t>p[pos[0]]
        pos[0] += 1
        acc |= (<uint64_t>(b & 0x7f)) << shift
        if not (b & 0x80):
            break
        shift += 7
    out[0] = <int64_t>((acc >> 1) ^ (0 - (acc & 1)))
    return 0


cdef inline int read_span(const char *p, int64_t size, int64_t *pos, int64_t *start, int64_t *length) noexcept nogil:
    """A bytes/string value: its start and length; -1 when it does not fit."""
    if read_long(p, size, pos, length) < 0 or length[0] < 0 or length[0] > size - pos[0]:
        return -1
    start[0] = pos[0]
    pos[0] += length[0]
    return 0


cdef struct Entry:
    int64_t col
    int64_t event
    const char *ptr
    int64_t len


cdef struct Name:
    const char *ptr
    int64_t len


cdef class _FlumeDecode:
    """The state of one decode_flume_events call; frees its C arrays when collected."""
    cdef const char **ptrs
    cdef int64_t *sizes
    cdef int64_t *body_start
    cdef int64_t *body_len
    cdef Entry *entries
    cdef int64_t n_entries, cap_entries
    cdef Name *names
    cdef int64_t n_names, cap_names

    def __dealloc__(self):
        free(self.ptrs); free(self.sizes); free(self.body_start); free(self.body_len)
        free(self.entries); free(self.names)

    cdef int grow(self, int64_t cap) noexcept nogil:
        """Room for `cap` events in the per-event arrays: 0, or -1 out of memory."""
        cdef void *p
        p = realloc(self.ptrs, cap * sizeof(char *))
        if p == NULL:
            return -1
        self.ptrs = <const char **>p
        p = realloc(self.body_start, cap * sizeof(int64_t))
        if p == NULL:
            return -1
        self.body_start = <int64_t *>p
        p = realloc(self.body_len, cap * sizeof(int64_t))
        if p == NULL:
            return -1
        self.body_len = <int64_t *>p
        return 0

    cdef int64_t name_col(self, const char *k, int64_t klen, int64_t hint) noexcept nogil:
        """The column of header name k (added if new; -1: out of memory). Events usually
        list their headers in the same order: `hint` is tried first."""
        cdef int64_t j
        cdef Name *grown
        if 0 <= hint < self.n_names and self.names[hint].len == klen and memcmp(self.names[hint].ptr, k, klen) == 0:
            return hint
        for j in range(self.n_names):
            if self.names[j].len == klen and memcmp(self.names[j].ptr, k, klen) == 0:
                return j
        if self.n_names == self.cap_names:
            grown = <Name *>realloc(self.names, (self.cap_names * 2 + 8) * sizeof(Name))
            if grown == NULL:
                return -1
            self.names = grown
            self.cap_names = self.cap_names * 2 + 8
        self.names[self.n_names].ptr = k
        self.names[self.n_names].len = klen
        self.n_names += 1
        return self.n_names - 1

    cdef int add_entry(self, int64_t col, int64_t event, const char *v, int64_t vlen) noexcept nogil:
        cdef Entry *grown
        if self.n_entries == self.cap_entries:
            grown = <Entry *>realloc(self.entries, (self.cap_entries * 2 + 64) * sizeof(Entry))
            if grown == NULL:
                return -1
            self.entries = grown
            self.cap_entries = self.cap_entries * 2 + 64
        self.entries[self.n_entries].col = col
        self.entries[self.n_entries].event = event
        self.entries[self.n_entries].ptr = v
        self.entries[self.n_entries].len = vlen
        self.n_entries += 1
        return 0

    cdef int parse(self, int64_t ev) noexcept nogil:
        """Event ev's header entries and body span: 0; -1 not an AvroFlumeEvent (its
        entries are dropped); -2 out of memory."""
        cdef int64_t pos = 0
        return self.parse_at(ev, self.ptrs[ev], self.sizes[ev], &pos)

    cdef int parse_at(self, int64_t ev, const char *p, int64_t size, int64_t *at) noexcept nogil:
        """parse() of the event at p[at[0]], at[0] moved past it (body_start[ev] counts from p)."""
        cdef int64_t pos = at[0], count, ignored, k, ks, kl, vs, vl, col = -1
        cdef int64_t first = self.n_entries
        while True:
            if read_long(p, size, &pos, &count) < 0:
                break
            if count == 0:
                if read_span(p, size, &pos, &self.body_start[ev], &self.body_len[ev]) < 0:
                    break
                at[0] = pos
                return 0
            if count < 0:
                count = -count
                if read_long(p, size, &pos, &ignored) < 0:
                    break
            for k in range(count):
                if read_span(p, size, &pos, &ks, &kl) < 0 or read_span(p, size, &pos, &vs, &vl) < 0:
                    self.n_entries = first
                    return -1
                col = self.name_col(p + ks, kl, col + 1)
                if col < 0 or self.add_entry(col, ev, p + vs, vl) < 0:
                    return -2
        self.n_entries = first
        return -1


cdef object _string_column(Entry *es, int64_t m, int64_t n):
    """(data, offsets, validity, null count) of a string column from its entries `es`
    (ascending events; of two for one event the last wins, as in a Python dict)."""
    cdef int64_t i, j, total = 0, nulls = n, ev
    for i in range(m):
        if i + 1 < m and es[i + 1].event == es[i].event:
            continue
        total += es[i].len
    if total > INT32_MAX:
        raise ValueError("header values of one batch exceed 2 GiB")
    cdef char *data = <char *>malloc(total if total else 1)
    cdef int32_t *offs = <int32_t *>malloc((n + 1) * sizeof(int32_t))
    cdef uint8_t *valid = <uint8_t *>malloc((n + 7) // 8 if n else 1)
    if data == NULL or offs == NULL or valid == NULL:
        free(data); free(offs); free(valid)
        raise MemoryError()
    cdef int32_t pos = 0
    with nogil:
        memset(valid, 0, (n + 7) // 8)
        j = 0
        offs[0] = 0
        for ev in range(n):
            while j + 1 < m and es[j + 1].event == ev and es[j].event == ev:
                j += 1          # a repeated name: the last value
            if j < m and es[j].event == ev:
                memcpy(data + pos, es[j].ptr, es[j].len)
                pos += <int32_t>es[j].len
                valid[ev >> 3] |= <uint8_t>(1 << (ev & 7))
                nulls -= 1
                j += 1
            offs[ev + 1] = pos
    return (owned_buffer(data, total), owned_buffer(offs, (n + 1) * sizeof(int32_t)),
            owned_buffer(valid, (n + 7) // 8), nulls)


cdef object _columns(_FlumeDecode d, int64_t n):
    """The bodies (data, int64 offsets) and header columns (names, columns) of d's n parsed
    events, as decode_flume_events returns them."""
    cdef int64_t i, total = 0, m
    for i in range(n):
        total += d.body_len[i]
    cdef char *data = <char *>malloc(total if total else 1)
    cdef int64_t *offs = <int64_t *>malloc((n + 1) * sizeof(int64_t))
    if data == NULL or offs == NULL:
        free(data); free(offs)
        raise MemoryError()
    cdef int64_t pos = 0
    with nogil:
        offs[0] = 0
        for i in range(n):
            memcpy(data + pos, d.ptrs[i] + d.body_start[i], d.body_len[i])
            pos += d.body_len[i]
            offs[i + 1] = pos
    bodies = (owned_buffer(data, total), owned_buffer(offs, (n + 1) * sizeof(int64_t)))
    # the entries grouped by column (a counting sort, stable: events stay ascending)
    cdef int64_t c, nc = d.n_names
    cdef int64_t *start = <int64_t *>malloc((nc + 1) * sizeof(int64_t))
    cdef Entry *sorted_ = <Entry *>malloc((d.n_entries if d.n_entries else 1) * sizeof(Entry))
    if start == NULL or sorted_ == NULL:
        free(start); free(sorted_)
        raise MemoryError()
    names, columns = [], []
    try:
        memset(start, 0, (nc + 1) * sizeof(int64_t))
        for i in range(d.n_entries):
            start[d.entries[i].col + 1] += 1
        for c in range(nc):
            start[c + 1] += start[c]
        for i in range(d.n_entries):
            c = d.entries[i].col
            sorted_[start[c]] = d.entries[i]
            start[c] += 1
        m = 0
        for c in range(nc):
            # start[c] is now the end of column c's entries; a name only a bad value had
            # has none
            if start[c] > m:
                names.append(d.names[c].ptr[:d.names[c].len])
                columns.append(_string_column(sorted_ + m, start[c] - m, n))
            m = start[c]
    finally:
        free(start); free(sorted_)
    return bodies[0], bodies[1], names, columns


def decode_flume_events(values):
    """AvroFlumeEvents (a list of bytes; None counts as b"") into columns.

    Returns (data, offsets, names, columns, bad): the bodies as a data Buffer and n + 1
    int64 offsets (a Buffer); the header names (bytes, first-seen order) and for each a
    string column (data, int32 offsets, validity bitmap, null count) as Buffers; and the
    indexes of values that are not AvroFlumeEvents, whose body is the whole value and
    which have no headers.
    """
    cdef int64_t n = len(values), i, rc = 0
    cdef _FlumeDecode d = _FlumeDecode()
    keep = []
    d.ptrs = <const char **>malloc((n if n else 1) * sizeof(char *))
    d.sizes = <int64_t *>malloc((n if n else 1) * sizeof(int64_t))
    d.body_start = <int64_t *>malloc((n if n else 1) * sizeof(int64_t))
    d.body_len = <int64_t *>malloc((n if n else 1) * sizeof(int64_t))
    if d.ptrs == NULL or d.sizes == NULL or d.body_start == NULL or d.body_len == NULL:
        raise MemoryError()
    for i in range(n):
        v = values[i]
        if v is None:
            v = b""
        elif not PyBytes_Check(v):
            v = bytes(v)
            keep.append(v)
        d.ptrs[i] = PyBytes_AS_STRING(v)
        d.sizes[i] = PyBytes_GET_SIZE(v)
    bad = []
    with nogil:
        for i in range(n):
            rc = d.parse(i)
            if rc == -2:
                break
            if rc == -1:
                d.body_start[i] = -1
    if rc == -2:
        raise MemoryError()
    for i in range(n):
        if d.body_start[i] < 0:        # not an event: the whole value is the body
            bad.append(i)
            d.body_start[i] = 0
            d.body_len[i] = d.sizes[i]
    data, offsets, names, columns = _columns(d, n)
    return data, offsets, names, columns, bad


DEF NOGIL_BYTES = 4 << 20


cdef int parse_array(_FlumeDecode d, const char *p, int64_t size, int64_t *at, int64_t *n) noexcept nogil:
    """The events of the array at p[at[0]] parsed into d (n[0] of them), at[0] moved past
    it: 0; -1 not an array of AvroFlumeEvent (at[0] where it failed); -2 out of memory."""
    cdef int64_t count = 0, ignored, cap = 0, k
    cdef int rc = 0
    while True:
        if read_long(p, size, at, &count) < 0:
            return -1
        if count == 0:
            return 0
        if count < 0:
            count = -count
            if count < 0 or read_long(p, size, at, &ignored) < 0:
                return -1
        if count > (size - at[0]) // 2:      # an event takes 2 bytes at least
            return -1
        if n[0] + count > cap:
            cap = n[0] + count if n[0] + count > 2 * cap else 2 * cap
            if d.grow(cap) < 0:
                return -2
        for k in range(count):
            d.ptrs[n[0]] = p
            rc = d.parse_at(n[0], p, size, at)
            if rc < 0:
                return rc
            n[0] += 1


def decode_flume_array(buf, int64_t start=0):
    """The Avro array<AvroFlumeEvent> at buf[start:] (the request of Flume's appendBatch)
    into columns, as decode_flume_events: returns (data, offsets, names, columns, end), end
    being the position just past the array. ValueError when the bytes are not such an
    array (say truncated); bytes after it are left to the caller."""
    cdef ByteView b = ByteView(buf)
    cdef _FlumeDecode d = _FlumeDecode()
    cdef int64_t pos = start, n = 0
    cdef int rc
    if start < 0 or start > b.size:
        raise ValueError("start %d outside the %d bytes" % (start, b.size))
    if b.size > NOGIL_BYTES:
        with nogil:
            rc = parse_array(d, b.ptr, b.size, &pos, &n)
    else:
        # a batch of a few MB or less parses in about a millisecond or less: releasing the GIL
        # for it costs more, a wait to get it back from a busy thread (the switch interval)
        rc = parse_array(d, b.ptr, b.size, &pos, &n)
    if rc == -2:
        raise MemoryError()
    if rc == -1:
        raise ValueError("not an array of AvroFlumeEvent: event %d (byte %d) does not decode" % (n, pos))
    data, offsets, names, columns = _columns(d, n)
    return data, offsets, names, columns, pos


def interleave(pieces, int64_t n):
    """Rows made of pieces: `pieces` is a list of (data, offsets) with n + 1 int64 offsets
    each (offsets[0] may be non-zero); row i is the concatenation of every piece's i-th
    segment, in list order. Returns (data, offsets) as Buffers, offsets from 0."""
    cdef int64_t k = len(pieces), j, i, total = 0, pos = 0, ln
    cdef char *out = NULL
    cdef int64_t *offs_out = NULL
    cdef const char **bases = <const char **>malloc((k if k else 1) * sizeof(char *))
    cdef const int64_t **offsets = <const int64_t **>malloc((k if k else 1) * sizeof(int64_t *))
    if bases == NULL or offsets == NULL:
        free(bases); free(offsets)
        raise MemoryError()
    views = []
    cdef ByteView dv, ov
    try:
        for j in range(k):
            data, offs = pieces[j]
            dv, ov = ByteView(data), ByteView(offs)
            views.append((dv, ov))
            if ov.size != (n + 1) * 8:
                raise ValueError("piece %d: %d offsets for %d rows" % (j, ov.size // 8, n))
            check_offsets(<const int64_t *>ov.ptr, n, dv.size, INT64_MAX)
            bases[j] = dv.ptr
            offsets[j] = <const int64_t *>ov.ptr
            total += offsets[j][n] - offsets[j][0]
        out = <char *>malloc(total if total else 1)
        offs_out = <int64_t *>malloc((n + 1) * sizeof(int64_t))
        if out == NULL or offs_out == NULL:
            free(out); free(offs_out)
            raise MemoryError()
        with nogil:
            offs_out[0] = 0
            for i in range(n):
                for j in range(k):
                    ln = offsets[j][i + 1] - offsets[j][i]
                    if ln == 1:
                        out[pos] = bases[j][offsets[j][i]]
                    else:
                        memcpy(out + pos, bases[j] + offsets[j][i], ln)
                    pos += ln
                offs_out[i + 1] = pos
        return owned_buffer(out, total), owned_buffer(offs_out, (n + 1) * sizeof(int64_t))
    finally:
        free(bases); free(offsets)


# column kinds of decode_block (the Avro type of a record field, or of its one non-null
# union branch)
DEF K_NULL = 0
DEF K_BOOLEAN = 1
DEF K_INT = 2          # int and long: int64 values
DEF K_FLOAT = 4        # 4 bytes
DEF K_DOUBLE = 5       # 8 bytes
DEF K_BYTES = 6        # bytes and string: (data, offsets)
KINDS = {"null": K_NULL, "boolean": K_BOOLEAN, "int": K_INT, "long": K_INT, "float": K_FLOAT, "double": K_DOUBLE,
         "bytes": K_BYTES, "string": K_BYTES}


cdef struct Col:
    int kind
    int null_branch     # the union index of "null"; -1: not a union
    uint8_t *valid      # one byte per row
    char *values        # fixed-width values (8 bytes a row; 4 for float, 1 for boolean)
    int64_t *starts     # bytes: where each value starts in the block and its length
    int64_t *lens


cdef class _Block:
    cdef Col *cols
    cdef int ncols

    def __dealloc__(self):
        cdef int j
        if self.cols != NULL:
            for j in range(self.ncols):
                free(self.cols[j].valid); free(self.cols[j].values); free(self.cols[j].starts); free(self.cols[j].lens)
            free(self.cols)


cdef int decode_rows(const char *p, int64_t size, int64_t count, Col *cols, int ncols,
                     int64_t *err_row, int *err_col) noexcept nogil:
    """Decode `count` records of the block into cols: 0, or -1 (err_row/err_col say where)."""
    cdef int64_t pos = 0, r, v, ln
    cdef int j
    cdef Col *c
    for r in range(count):
        for j in range(ncols):
            c = &cols[j]
            err_row[0] = r
            err_col[0] = j
            if c.null_branch >= 0:
                if read_long(p, size, &pos, &v) < 0 or v < 0 or v > 1:
                    return -1
                if v == c.null_branch:
                    c.valid[r] = 0
                    if c.kind == K_BYTES:
                        c.starts[r] = 0
                        c.lens[r] = 0
                    elif c.kind == K_BOOLEAN:
                        c.values[r] = 0
                    elif c.kind == K_FLOAT:
                        memset(c.values + 4 * r, 0, 4)
                    elif c.kind != K_NULL:
                        memset(c.values + 8 * r, 0, 8)
                    continue
            c.valid[r] = 1
            if c.kind == K_NULL:
                c.valid[r] = 0
            elif c.kind == K_BOOLEAN:
                if pos >= size:
                    return -1
                c.values[r] = 1 if p[pos] else 0
                pos += 1
            elif c.kind == K_INT:
                if read_long(p, size, &pos, &v) < 0:
                    return -1
                (<int64_t *>c.values)[r] = v
            elif c.kind == K_FLOAT or c.kind == K_DOUBLE:
                ln = 4 if c.kind == K_FLOAT else 8
                if size - pos < ln:
                    return -1
                memcpy(c.values + ln * r, p + pos, ln)
                pos += ln
            else:
                if read_span(p, size, &pos, &c.starts[r], &c.lens[r]) < 0:
                    return -1
    err_row[0] = count
    return 0 if pos == size else -2


def decode_block(block, int64_t count, kinds, null_branches):
    """The `count` records of an Avro block's data (decompressed), every field one of KINDS
    (alone or in a union with null at index null_branches[j]; -1: no union).

    Returns one tuple per field: (valid: uint8 a row, values) where values is a Buffer of
    fixed-width values (int64, float32, float64, or a byte per boolean), (data, int64
    offsets) Buffers for bytes and strings, None for null. ValueError names the record and
    field that does not decode, or bytes left over.
    """
    cdef ByteView b = ByteView(block)
    cdef int ncols = len(kinds), j, err_col = 0, rc
    cdef int64_t err_row = 0, r, total, pos
    cdef _Block blk = _Block()
    cdef Col *c
    cdef int64_t rows = count if count > 0 else 1
    if count < 0:
        raise ValueError("a block of %d records" % count)
    blk.cols = <Col *>malloc((ncols if ncols else 1) * sizeof(Col))
    if blk.cols == NULL:
        raise MemoryError()
    memset(blk.cols, 0, (ncols if ncols else 1) * sizeof(Col))
    blk.ncols = ncols
    for j in range(ncols):
        c = &blk.cols[j]
        c.kind = kinds[j]
        c.null_branch = null_branches[j]
        c.valid = <uint8_t *>malloc(rows)
        if c.kind == K_BYTES:
            c.starts = <int64_t *>malloc(rows * 8)
            c.lens = <int64_t *>malloc(rows * 8)
            if c.starts == NULL or c.lens == NULL:
                raise MemoryError()
        elif c.kind != K_NULL:
            c.values = <char *>malloc(rows * 8)
            if c.values == NULL:
                raise MemoryError()
        if c.valid == NULL:
            raise MemoryError()
    with nogil:
        rc = decode_rows(b.ptr, b.size, count, blk.cols, ncols, &err_row, &err_col)
    if rc == -1:
        raise ValueError("record %d field %d: not the Avro type of the schema" % (err_row, err_col))
    if rc == -2:
        raise ValueError("bytes after the block's %d records" % count)
    out = []
    cdef char *data
    cdef int64_t *offs
    for j in range(ncols):
        c = &blk.cols[j]
        valid = owned_buffer(c.valid, count)
        c.valid = NULL
        if c.kind == K_NULL:
            out.append((valid, None))
        elif c.kind == K_BYTES:
            total = 0
            for r in range(count):
                total += c.lens[r]
            data = <char *>malloc(total if total else 1)
            offs = <int64_t *>malloc((count + 1) * 8)
            if data == NULL or offs == NULL:
                free(data); free(offs)
                raise MemoryError()
            pos = 0
            with nogil:
                offs[0] = 0
                for r in range(count):
                    memcpy(data + pos, b.ptr + c.starts[r], c.lens[r])
                    pos += c.lens[r]
                    offs[r + 1] = pos
            out.append((valid, (owned_buffer(data, total), owned_buffer(offs, (count + 1) * 8))))
        else:
            width = 1 if c.kind == K_BOOLEAN else 4 if c.kind == K_FLOAT else 8
            out.append((valid, owned_buffer(c.values, count * width)))
            c.values = NULL
    return out


cdef inline int64_t long_size(int64_t v) noexcept nogil:
    cdef uint64_t z = <uint64_t>((v << 1) ^ (v >> 63))
    cdef int64_t k = 1
    while z >= 0x80:
        z >>= 7
        k += 1
    return k


cdef inline int64_t write_long(char *out, int64_t v) noexcept nogil:
    cdef uint64_t z = <uint64_t>((v << 1) ^ (v >> 63))
    cdef int64_t k = 0
    while z >= 0x80:
        out[k] = <char>((z & 0x7F) | 0x80)
        z >>= 7
        k += 1
    out[k] = <char>z
    return k + 1


cdef struct HCol:
    const char *name
    int64_t name_len
    const char *data          # values: data[offsets[i]:offsets[i + 1]], or the shared value
    const int32_t *offsets    # NULL: one value for every event
    const uint8_t *valid      # validity bitmap (bit i: event i has the header), or NULL: all
    int64_t offset            # the array's offset into offsets and valid
    int64_t shared_len


cdef inline bint has_value(const HCol *h, int64_t i) noexcept nogil:
    cdef int64_t j = i + h.offset
    return h.valid == NULL or (h.valid[j >> 3] >> (j & 7)) & 1


cdef inline int64_t value_span(const HCol *h, int64_t i, const char **start) noexcept nogil:
    if h.offsets == NULL:
        start[0] = h.data
        return h.shared_len
    start[0] = h.data + h.offsets[i + h.offset]
    return h.offsets[i + h.offset + 1] - h.offsets[i + h.offset]


def encode_flume_events(data, offsets, list headers):
    """AvroFlumeEvents of n events: data/offsets (int64, n + 1) the bodies, headers
    [(name bytes, value)] with value a bytes (shared by every event) or a pyarrow string
    array of n values (null: the event lacks the header). Returns (buffer, int64 offsets
    buffer of n + 1)."""
    cdef ByteView body = ByteView(data)
    cdef const int64_t[::1] offs = offsets
    cdef int64_t n = offs.shape[0] - 1, i, k, total = 0, pos = 0, count, ln
    cdef Py_ssize_t m = len(headers), j
    cdef HCol *hs = <HCol *>malloc(sizeof(HCol) * (m if m else 1))
    cdef const char *v
    cdef char *out
    cdef int64_t *outoffs
    keep = []
    if hs == NULL:
        raise MemoryError()
    try:
        check_offsets(&offs[0], n, body.size, INT64_MAX)
        for j in range(m):
            name, value = headers[j]
            nv = ByteView(name)
            keep.append(nv)
            hs[j].name = nv.ptr
            hs[j].name_len = nv.size
            if isinstance(value, bytes):
                vv = ByteView(value)
                keep.append(vv)
                hs[j].data, hs[j].offsets, hs[j].valid = vv.ptr, NULL, NULL
                hs[j].offset, hs[j].shared_len = 0, vv.size
            else:
                if len(value) != n:
                    raise ValueError("header %r has %d values for %d events" % (name, len(value), n))
                bufs = value.buffers()
                ob, db = ByteView(bufs[1]), ByteView(bufs[2] if bufs[2] is not None else b"")
                keep += [ob, db]
                hs[j].offsets = <const int32_t *>ob.ptr
                hs[j].data = db.ptr
                hs[j].offset = value.offset
                hs[j].shared_len = 0
                if value.null_count and bufs[0] is not None:
                    vb = ByteView(bufs[0])
                    keep.append(vb)
                    hs[j].valid = <const uint8_t *>vb.ptr
                else:
                    hs[j].valid = NULL
        with nogil:
            for i in range(n):      # sizes first, then one buffer
                count = 0
                for j in range(m):
                    if has_value(&hs[j], i):
                        count += 1
                        ln = value_span(&hs[j], i, &v)
                        total += long_size(hs[j].name_len) + hs[j].name_len + long_size(ln) + ln
                if count:
                    total += long_size(count)
                ln = offs[i + 1] - offs[i]
                total += 1 + long_size(ln) + ln
        out = <char *>malloc(total if total else 1)
        outoffs = <int64_t *>malloc((n + 1) * sizeof(int64_t))
        if out == NULL or outoffs == NULL:
            free(out); free(outoffs)
            raise MemoryError()
        with nogil:
            outoffs[0] = 0
            for i in range(n):
                count = 0
                for j in range(m):
                    count += has_value(&hs[j], i)
                if count:
                    pos += write_long(out + pos, count)
                    for j in range(m):
                        if has_value(&hs[j], i):
                            pos += write_long(out + pos, hs[j].name_len)
                            memcpy(out + pos, hs[j].name, hs[j].name_len)
                            pos += hs[j].name_len
                            ln = value_span(&hs[j], i, &v)
                            pos += write_long(out + pos, ln)
                            memcpy(out + pos, v, ln)
                            pos += ln
                out[pos] = 0            # the end of the map
                pos += 1
                ln = offs[i + 1] - offs[i]
                pos += write_long(out + pos, ln)
                memcpy(out + pos, body.ptr + offs[i], ln)
                pos += ln
                outoffs[i + 1] = pos
        return owned_buffer(out, total), owned_buffer(outoffs, (n + 1) * sizeof(int64_t))
    finally:
        free(hs)
