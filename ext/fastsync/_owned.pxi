# Shared by the native modules: hand a malloc'd block to Python as a pyarrow Buffer
# without copying (the capsule owns the block and frees it when the last view is gone),
# read any buffer as bytes, and check offsets before native code trusts them.
from cpython.pycapsule cimport PyCapsule_New, PyCapsule_GetPointer
from libc.stdint cimport int64_t
from libc.stdlib cimport malloc, free

cdef object _pa = None


cdef object pyarrow():
    """pyarrow, imported on first use: an agent whose path never makes a pyarrow Buffer
    (TAILDIR -> memory -> file_roll) starts without it (and numpy) loaded."""
    global _pa
    if _pa is None:
        import pyarrow as pa
        _pa = pa
    return _pa

cdef void _free_capsule(object capsule) noexcept:
    free(PyCapsule_GetPointer(capsule, NULL))

cdef object owned_buffer(void *ptr, Py_ssize_t size):
    """A pyarrow Buffer over ptr[0:size] that frees ptr when released."""
    if ptr == NULL:
        ptr = malloc(1)
        if ptr == NULL:
            raise MemoryError()
    cap = PyCapsule_New(ptr, NULL, <void (*)(object) noexcept>_free_capsule)
    return pyarrow().foreign_buffer(<size_t>ptr, size, base=cap)


from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE

cdef class ByteView:
    """Read access to any buffer (bytes, pyarrow Buffer, numpy array) as raw bytes,
    whatever its item format; holds the buffer until released or collected."""
    cdef Py_buffer view
    cdef bint held
    cdef const char *ptr
    cdef Py_ssize_t size

    def __cinit__(self, obj):
        PyObject_GetBuffer(obj, &self.view, PyBUF_SIMPLE)
        self.held = True
        self.ptr = <const char *>self.view.buf
        self.size = self.view.len

    def __dealloc__(self):
        if self.held:
            PyBuffer_Release(&self.view)


cdef int check_offsets(const int64_t *o, int64_t n, Py_ssize_t size, int64_t max_len) except -1:
    """Raise ValueError unless o[0..n] are non-decreasing positions inside a buffer of
    `size` bytes, each body at most max_len bytes."""
    cdef int64_t i
    if o[0] < 0 or o[n] > size:
        raise ValueError("offsets out of the data buffer (%d..%d, %d bytes)" % (o[0], o[n], size))
    for i in range(n):
        if o[i + 1] < o[i]:
            raise ValueError("offsets must not decrease: offsets[%d] = %d, offsets[%d] = %d" % (i, o[i], i + 1, o[i + 1]))
        if o[i + 1] - o[i] > max_len:
            raise ValueError("body %d is %d bytes, more than the %d allowed" % (i, o[i + 1] - o[i], max_len))
    return 0


from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.list cimport PyList_SET_ITEM
from cpython.ref cimport Py_INCREF

cdef int fill_bodies(list out, Py_ssize_t at, const char *data, const int64_t *offsets, int64_t pos, int64_t end,
                     int64_t sep) except -1:
    """Set out[at:at + end - pos] (a list from PyList_New) to the bodies of events [pos,
    end), data[offsets[k]:offsets[k + 1] - sep], as bytes: what a client that takes one
    bytes object per message (confluent-kafka's produce()) needs."""
    cdef int64_t k
    for k in range(pos, end):
        b = PyBytes_FromStringAndSize(data + offsets[k], offsets[k + 1] - offsets[k] - sep)
        Py_INCREF(b)            # PyList_SET_ITEM steals a reference
        PyList_SET_ITEM(out, at, b)
        at += 1
    return 0
