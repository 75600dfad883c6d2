# Contract of the Avro batch codec (encoding rules at the top of _avro.pyx):
# decode_flume_events(list of AvroFlumeEvent bytes) -> bodies buffer + offsets, one string
# column per header name, the indexes of values that are not events; interleave(pieces, n)
# -> the rows of an Avro block from per-column (data, offsets) pieces; decode_block(data,
# count, kinds, null branches) -> one column per record field. Checked against
# fastavro (and a pure-Python reference) in tests/test_avro_native.py.
from libc.stdint cimport int64_t

cdef int read_long(const char *p, int64_t size, int64_t *pos, int64_t *out) noexcept nogil
cdef int read_span(const char *p, int64_t size, int64_t *pos, int64_t *start, int64_t *length) noexcept nogil
