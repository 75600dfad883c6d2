# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""A local tree listed, two listings compared, and many small files copied, in C.

A sync of 10 000 small files spent ~5 µs of Python per listed entry (an os.DirEntry, a stat
result, an Entry, a dict slot, the comparison) and the GIL serialised the Python around each
small file's syscalls. Here the listing is columns (one buffer of paths, arrays of kind, size,
mtime, mode), listed with openat/fdopendir/fstatat without the GIL; the comparison of two
listings returns only the entries that need Python (something to do, or to say); and the
small files are copied by C threads (open, O_EXCL temporary, read/write or copy_file_range,
futimens, rename), so a file costs its syscalls and no Python.

The paths are bytes as the OS gives them; the caller decodes the few it needs (os.fsdecode).
"""
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcpy, memcmp, strlen
from libc.errno cimport errno, ENOENT, EINTR, EXDEV, ENOSYS, EINVAL, EPERM, EBADF
from posix.types cimport off_t
from posix.stat cimport struct_stat, S_ISREG, S_ISDIR, S_ISLNK
from posix.fcntl cimport O_RDONLY, O_WRONLY, O_CREAT, O_EXCL
from posix.unistd cimport close, read, write, dup
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE

cdef extern from "<fcntl.h>" nogil:
    int openat(int dirfd, const char *path, int flags, ...)
    int open(const char *path, int flags, ...)
    int O_DIRECTORY, O_NOFOLLOW, O_CLOEXEC, AT_SYMLINK_NOFOLLOW, AT_FDCWD
    int EOPNOTSUPP_ "EOPNOTSUPP"

cdef extern from "<errno.h>" nogil:
    int *__errno_location()

cdef extern from "<sys/stat.h>" nogil:
    int fstatat(int dirfd, const char *path, struct_stat *buf, int flags)
    int futimens(int fd, const void *times)

cdef extern from "<dirent.h>" nogil:
    ctypedef struct DIR:
        pass
    struct dirent:
        char d_name[256]
    DIR *fdopendir(int fd)
    dirent *readdir(DIR *d)
    int closedir(DIR *d)
    int dirfd(DIR *d)

cdef extern from "<unistd.h>" nogil:
    ssize_t readlinkat(int dirfd, const char *path, char *buf, size_t size)
    int unlinkat(int dirfd, const char *path, int flags)
    ssize_t copy_file_range(int fd_in, off_t *off_in, int fd_out, off_t *off_out, size_t n, unsigned int flags)

cdef extern from "<stdio.h>" nogil:
    int renameat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath)
    int snprintf(char *s, size_t n, const char *fmt, ...)

cdef extern from "<stdlib.h>" nogil:
    void qsort_r(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *, void *) noexcept nogil, void *arg)

cdef extern from "<time.h>" nogil:
    struct timespec:
        long tv_sec
        long tv_nsec

cdef extern from "<pthread.h>" nogil:
    ctypedef unsigned long pthread_t
    ctypedef struct pthread_mutex_t:
        pass
    ctypedef struct pthread_cond_t:
        pass
    int pthread_create(pthread_t *t, const void *attr, void *(*start)(void *) noexcept nogil, void *arg)
    int pthread_join(pthread_t t, void **ret)
    int pthread_mutex_init(pthread_mutex_t *m, const void *attr)
    int pthread_mutex_destroy(pthread_mutex_t *m)
    int pthread_mutex_lock(pthread_mutex_t *m)
    int pthread_mutex_unlock(pthread_mutex_t *m)
    int pthread_cond_init(pthread_cond_t *c, const void *attr)
    int pthread_cond_destroy(pthread_cond_t *c)
    int pthread_cond_wait(pthread_cond_t *c, pthread_mutex_t *m)
    int pthread_cond_broadcast(pthread_cond_t *c)


cdef enum:
    PATH_BUF = 8192
    LINK_BUF = 4097
    SMALL = 262144             # files up to this size: read/write through one buffer per thread
    NAME_MAX_ = 255
    TMP_EXTRA = 300
    # what went wrong with a file in copy_files, per file
    ST_OK = 0
    ST_READ = 1
    ST_CREATE = 2
    ST_COPY = 3
    ST_LONG = 4

STAGE_OK, STAGE_READ, STAGE_CREATE, STAGE_COPY, STAGE_LONG = ST_OK, ST_READ, ST_CREATE, ST_COPY, ST_LONG
WHAT = ("vanished", "opendir", "stat")


# --- growable buffers -----------------------------------------------------------------------
cdef int buf_init(Buf *b) noexcept nogil:
    b.len = b.cap = b.n = b.ncap = 0
    b.data = NULL
    b.off = <int64_t *>malloc(sizeof(int64_t) * 16)
    if b.off == NULL:
        return -1
    b.ncap = 15
    b.off[0] = 0
    return 0


cdef void buf_free(Buf *b) noexcept nogil:
    free(b.data)
    free(b.off)
    b.data = NULL
    b.off = NULL


cdef int buf_add(Buf *b, const char *head, Py_ssize_t hlen, const char *name, Py_ssize_t nlen) noexcept nogil:
    """Appends one item: head + "/" + name, or name alone when head is empty."""
    cdef Py_ssize_t need = b.len + hlen + 1 + nlen, cap
    cdef char *p
    cdef int64_t *o
    if need > b.cap:
        cap = b.cap * 2 if b.cap * 2 > need else need + 4096
        p = <char *>realloc(b.data, cap)
        if p == NULL:
            return -1
        b.data, b.cap = p, cap
    if b.n + 1 > b.ncap:
        o = <int64_t *>realloc(b.off, sizeof(int64_t) * (b.ncap * 2 + 2))
        if o == NULL:
            return -1
        b.off, b.ncap = o, b.ncap * 2 + 1
    if hlen:
        memcpy(b.data + b.len, head, hlen)
        b.data[b.len + hlen] = 47       # "/"
        b.len += hlen + 1
    memcpy(b.data + b.len, name, nlen)
    b.len += nlen
    b.n += 1
    b.off[b.n] = b.len
    return 0


cdef inline bytes buf_item(Buf *b, Py_ssize_t i):
    return PyBytes_FromStringAndSize(b.data + b.off[i], b.off[i + 1] - b.off[i])


cdef int path_cmp(const void *a, const void *b, void *arg) noexcept nogil:
    cdef Buf *p = <Buf *>arg
    cdef int32_t i = (<int32_t *>a)[0], j = (<int32_t *>b)[0]
    return cmp_items(p, i, p, j)


cdef inline int cmp_items(Buf *p, Py_ssize_t i, Buf *q, Py_ssize_t j) noexcept nogil:
    cdef int64_t la = p.off[i + 1] - p.off[i], lb = q.off[j + 1] - q.off[j]
    cdef int c = memcmp(p.data + p.off[i], q.data + q.off[j], la if la < lb else lb)
    if c:
        return c
    return -1 if la < lb else (1 if la > lb else 0)


cdef inline bint ends_with(const char *s, Py_ssize_t n, const char *suffix) noexcept nogil:
    cdef Py_ssize_t k = strlen(suffix)
    return n >= k and memcmp(s + n - k, suffix, k) == 0


cdef int cols_init(Cols *c) noexcept nogil:
    c.n = c.cap = c.err_cap = 0
    c.failed = 0
    c.kinds = NULL
    c.sizes = c.mtimes = NULL
    c.modes = NULL
    c.sparse = NULL
    c.err_info = NULL
    if buf_init(&c.paths) or buf_init(&c.targets) or buf_init(&c.err_paths) or buf_init(&c.leftover_paths):
        return -1
    return 0


cdef void cols_free(Cols *c) noexcept nogil:
    free(c.kinds)
    free(c.sizes)
    free(c.mtimes)
    free(c.modes)
    free(c.sparse)
    free(c.err_info)
    c.kinds = NULL
    c.sizes = c.mtimes = NULL
    c.modes = NULL
    c.sparse = NULL
    c.err_info = NULL
    buf_free(&c.paths)
    buf_free(&c.targets)
    buf_free(&c.err_paths)
    buf_free(&c.leftover_paths)


cdef int cols_reserve(Cols *c, Py_ssize_t need) noexcept nogil:
    cdef Py_ssize_t cap
    cdef void *p
    if need <= c.cap:
        return 0
    cap = c.cap * 2 + 256
    if cap < need:
        cap = need
    p = realloc(c.kinds, cap)
    if p == NULL: return -1
    c.kinds = <char *>p
    p = realloc(c.sizes, cap * sizeof(int64_t))
    if p == NULL: return -1
    c.sizes = <int64_t *>p
    p = realloc(c.mtimes, cap * sizeof(int64_t))
    if p == NULL: return -1
    c.mtimes = <int64_t *>p
    p = realloc(c.modes, cap * sizeof(uint32_t))
    if p == NULL: return -1
    c.modes = <uint32_t *>p
    p = realloc(c.sparse, cap)
    if p == NULL: return -1
    c.sparse = <uint8_t *>p
    c.cap = cap
    return 0


cdef int cols_error(Cols *c, const char *head, Py_ssize_t hlen, const char *name, Py_ssize_t nlen,
                    int err, int what) noexcept nogil:
    cdef void *p
    if c.err_paths.n + 1 > c.err_cap:
        p = realloc(c.err_info, (c.err_cap * 2 + 16) * sizeof(int32_t))
        if p == NULL: return -1
        c.err_info, c.err_cap = <int32_t *>p, c.err_cap * 2 + 16
    if buf_add(&c.err_paths, head, hlen, name, nlen):
        return -1
    c.err_info[c.err_paths.n - 1] = err * 4 + what
    return 0


cdef int buf_extend(Buf *b, Buf *more) noexcept nogil:
    """Appends every item of `more`."""
    cdef Py_ssize_t k
    cdef char *p
    cdef int64_t *o
    if b.len + more.len > b.cap:
        p = <char *>realloc(b.data, b.len + more.len + 1)
        if p == NULL:
            return -1
        b.data, b.cap = p, b.len + more.len + 1
    if b.n + more.n > b.ncap:
        o = <int64_t *>realloc(b.off, sizeof(int64_t) * (b.n + more.n + 1))
        if o == NULL:
            return -1
        b.off, b.ncap = o, b.n + more.n
    if more.len:
        memcpy(b.data + b.len, more.data, more.len)
    for k in range(more.n):
        b.off[b.n + k + 1] = b.len + more.off[k + 1]
    b.len += more.len
    b.n += more.n
    return 0


cdef int cols_extend(Cols *c, Cols *more) noexcept nogil:
    """Appends a worker's entries, problems and leftovers."""
    cdef Py_ssize_t k, n = c.n
    cdef void *p
    if cols_reserve(c, c.n + more.n) or buf_extend(&c.paths, &more.paths) or buf_extend(&c.targets, &more.targets):
        return -1
    if more.n:
        memcpy(c.kinds + n, more.kinds, more.n)
        memcpy(c.sizes + n, more.sizes, more.n * sizeof(int64_t))
        memcpy(c.mtimes + n, more.mtimes, more.n * sizeof(int64_t))
        memcpy(c.modes + n, more.modes, more.n * sizeof(uint32_t))
        memcpy(c.sparse + n, more.sparse, more.n)
    c.n += more.n
    if more.err_paths.n:
        p = realloc(c.err_info, (c.err_paths.n + more.err_paths.n) * sizeof(int32_t))
        if p == NULL:
            return -1
        c.err_info, c.err_cap = <int32_t *>p, c.err_paths.n + more.err_paths.n
        for k in range(more.err_paths.n):
            c.err_info[c.err_paths.n + k] = more.err_info[k]
        if buf_extend(&c.err_paths, &more.err_paths):
            return -1
    return buf_extend(&c.leftover_paths, &more.leftover_paths)


cdef class Listing:
    """The entries below a local directory (the root itself excluded), as columns."""

    def __cinit__(self):
        self.order = NULL
        if cols_init(&self.c):
            cols_free(&self.c)
            raise MemoryError()

    def __dealloc__(self):
        cols_free(&self.c)
        free(self.order)

    def __len__(self):
        return self.c.n

    def path(self, Py_ssize_t i) -> bytes:
        """Entry i's path relative to the root."""
        if i < 0 or i >= self.c.n:
            raise IndexError(i)
        return buf_item(&self.c.paths, i)

    def entry(self, Py_ssize_t i) -> tuple:
        """(path, kind, size, mtime_ns, mode, link target, sparse) of entry i; kind is "f"
        file, "d" directory, "l" symbolic link, "o" anything else."""
        if i < 0 or i >= self.c.n:
            raise IndexError(i)
        return (buf_item(&self.c.paths, i), chr(self.c.kinds[i]), self.c.sizes[i], self.c.mtimes[i],
                self.c.modes[i], buf_item(&self.c.targets, i), bool(self.c.sparse[i]))

    def sorted_indices(self) -> list:
        """Entry indices in the order of their paths' bytes."""
        return [self.order[i] for i in range(self.c.n)]

    @property
    def errors(self) -> list:
        """(what, path, errno) of each problem met while listing: what is "vanished" (ENOENT:
        deleted while listed), "opendir" or "stat"."""
        return [(WHAT[self.c.err_info[i] & 3], buf_item(&self.c.err_paths, i), self.c.err_info[i] >> 2)
                for i in range(self.c.err_paths.n)]

    @property
    def leftovers(self) -> list:
        """Paths of temporary files of earlier runs (.NAME.TAG.fastsync-tmp / -partial), not
        listed as entries."""
        return [buf_item(&self.c.leftover_paths, i) for i in range(self.c.leftover_paths.n)]


cdef struct Shared:              # the directories still to list, shared by the walking threads
    pthread_mutex_t mu
    pthread_cond_t cv
    Buf queue                    # their relative paths ("" the root); taken from the end
    int active                   # threads listing a directory now
    int failed                   # out of memory somewhere: everyone stops
    int rootfd
    int leftovers


cdef struct Walker:
    Shared *sh
    Cols cols                    # what this thread listed
    Buf found                    # subdirectories of the directory being listed


cdef int list_dir(Walker *w, const char *prefix, Py_ssize_t plen) noexcept nogil:
    """The entries of one directory into w.cols, its subdirectories into w.found. -1: out of memory."""
    cdef Cols *c = &w.cols
    cdef int fd, dfd
    cdef DIR *dirp
    cdef dirent *ent
    cdef const char *name
    cdef Py_ssize_t nlen, i
    cdef struct_stat st
    cdef char link[LINK_BUF]
    cdef ssize_t ll
    cdef uint32_t m
    if plen == 0:
        fd = dup(w.sh.rootfd)
    else:
        fd = openat(w.sh.rootfd, prefix, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
    if fd < 0:
        return cols_error(c, NULL, 0, prefix, plen, errno, 0 if errno == ENOENT else 1)
    dirp = fdopendir(fd)
    if dirp == NULL:
        close(fd)
        return cols_error(c, NULL, 0, prefix, plen, errno, 1)
    dfd = dirfd(dirp)
    while True:
        __errno_location()[0] = 0      # readdir: NULL with errno 0 at the end
        ent = readdir(dirp)
        if ent == NULL:
            if errno and cols_error(c, NULL, 0, prefix, plen, errno, 1):
                closedir(dirp)
                return -1
            break
        name = ent.d_name
        if name[0] == 46 and (name[1] == 0 or (name[1] == 46 and name[2] == 0)):
            continue
        nlen = strlen(name)
        if w.sh.leftovers and name[0] == 46 and (ends_with(name, nlen, ".fastsync-tmp")
                                                 or ends_with(name, nlen, ".fastsync-partial")):
            if buf_add(&c.leftover_paths, prefix, plen, name, nlen):
                closedir(dirp)
                return -1
            continue
        if fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0:
            if cols_error(c, prefix, plen, name, nlen, errno, 0 if errno == ENOENT else 2):
                closedir(dirp)
                return -1
            continue
        ll = 0
        if S_ISLNK(st.st_mode):
            ll = readlinkat(dfd, name, link, LINK_BUF)
            if ll < 0 or ll >= LINK_BUF:
                if cols_error(c, prefix, plen, name, nlen, errno if ll < 0 else 36,
                              0 if ll < 0 and errno == ENOENT else 2):
                    closedir(dirp)
                    return -1
                continue
        if (cols_reserve(c, c.n + 1) or buf_add(&c.paths, prefix, plen, name, nlen)
                or buf_add(&c.targets, NULL, 0, link, ll)):
            closedir(dirp)
            return -1
        i = c.n
        m = st.st_mode
        c.kinds[i] = 102 if S_ISREG(m) else (100 if S_ISDIR(m) else (108 if S_ISLNK(m) else 111))
        c.sizes[i] = st.st_size
        c.mtimes[i] = <int64_t>st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec
        c.modes[i] = m & 0o7777
        c.sparse[i] = S_ISREG(m) and st.st_blocks * 512 < st.st_size
        c.n += 1
        if S_ISDIR(m) and buf_add(&w.found, prefix, plen, name, nlen):
            closedir(dirp)
            return -1
    closedir(dirp)
    return 0


cdef void *walker(void *arg) noexcept nogil:
    """Takes a directory from the shared queue, lists it, puts its subdirectories back; until
    the queue is empty and no thread is listing (or memory ran out)."""
    cdef Walker *w = <Walker *>arg
    cdef Shared *sh = w.sh
    cdef char *prefix = <char *>malloc(PATH_BUF)
    cdef Py_ssize_t plen
    cdef int r
    if prefix == NULL:
        pthread_mutex_lock(&sh.mu)
        sh.failed = 1
        pthread_cond_broadcast(&sh.cv)
        pthread_mutex_unlock(&sh.mu)
        return NULL
    pthread_mutex_lock(&sh.mu)
    while True:
        while sh.queue.n == 0 and sh.active > 0 and not sh.failed:
            pthread_cond_wait(&sh.cv, &sh.mu)
        if sh.queue.n == 0 or sh.failed:
            break
        sh.queue.n -= 1
        plen = sh.queue.off[sh.queue.n + 1] - sh.queue.off[sh.queue.n]
        sh.queue.len = sh.queue.off[sh.queue.n]
        if plen >= PATH_BUF:
            r = cols_error(&w.cols, NULL, 0, sh.queue.data + sh.queue.len, plen, 36, 1)     # ENAMETOOLONG
            if r:
                sh.failed = 1
            continue
        memcpy(prefix, sh.queue.data + sh.queue.len, plen)
        prefix[plen] = 0
        sh.active += 1
        pthread_mutex_unlock(&sh.mu)
        r = list_dir(w, prefix, plen)
        pthread_mutex_lock(&sh.mu)
        sh.active -= 1
        if r or buf_extend(&sh.queue, &w.found):
            sh.failed = 1
        w.found.n = w.found.len = 0
        pthread_cond_broadcast(&sh.cv)
    pthread_cond_broadcast(&sh.cv)
    pthread_mutex_unlock(&sh.mu)
    free(prefix)
    return NULL


def walk(bytes root, bint leftovers=False, int threads=1) -> Listing:
    """Every entry below the directory `root` (links not followed, not entered), listed by
    `threads` threads taking directories from one queue, the GIL released meanwhile. With
    `leftovers`, names `.*.fastsync-tmp` / `.*.fastsync-partial` go to .leftovers instead.
    Problems (a directory that can't be opened, an entry that vanished) are in .errors; the
    walk goes on."""
    cdef Listing L = Listing()
    cdef const char *croot = root
    cdef int rootfd, err = 0, failed = 0, t, started = 0
    cdef Shared sh
    cdef Walker *ws
    cdef pthread_t *tids
    cdef Py_ssize_t i
    if threads < 1:
        threads = 1
    ws = <Walker *>malloc(sizeof(Walker) * threads)
    tids = <pthread_t *>malloc(sizeof(pthread_t) * threads)
    if ws == NULL or tids == NULL or buf_init(&sh.queue):
        free(ws)
        free(tids)
        raise MemoryError()
    for t in range(threads):
        ws[t].sh = &sh
        if cols_init(&ws[t].cols) or buf_init(&ws[t].found):
            failed = 1
    with nogil:
        rootfd = open(croot, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if rootfd < 0:
            err = errno
        elif not failed:
            pthread_mutex_init(&sh.mu, NULL)
            pthread_cond_init(&sh.cv, NULL)
            sh.active = sh.failed = 0
            sh.rootfd, sh.leftovers = rootfd, leftovers
            buf_add(&sh.queue, NULL, 0, croot, 0)        # the root: the empty path
            for t in range(1, threads):
                if pthread_create(&tids[t], NULL, walker, &ws[t]) != 0:
                    break
                started = t
            walker(&ws[0])
            for t in range(1, started + 1):
                pthread_join(tids[t], NULL)
            failed = sh.failed
            pthread_mutex_destroy(&sh.mu)
            pthread_cond_destroy(&sh.cv)
        if rootfd >= 0:
            close(rootfd)
        for t in range(threads):
            if not failed and cols_extend(&L.c, &ws[t].cols):
                failed = 1
            cols_free(&ws[t].cols)
            buf_free(&ws[t].found)
        buf_free(&sh.queue)
        if not failed:
            L.order = <int32_t *>malloc(sizeof(int32_t) * (L.c.n + 1))
            if L.order == NULL:
                failed = 1
            else:
                for i in range(L.c.n):
                    L.order[i] = <int32_t>i
                qsort_r(L.order, L.c.n, sizeof(int32_t), path_cmp, &L.c.paths)
    free(ws)
    free(tids)
    if failed:
        raise MemoryError()
    if rootfd < 0 and cols_error(&L.c, NULL, 0, b"", 0, err, 0 if err == ENOENT else 1):
        raise MemoryError()
    return L


def diff(Listing src, Listing dst, bint size_only=False, bint checksum=False, bint times=False,
         bint perms=False, bint links=False, int64_t simple_max=0) -> tuple:
    """Compares two listings of local trees as a sync does, returning only what needs work:

    (simple, simple_bytes, other_src, other_dst, unchanged) where `simple` is an int32 array
    (bytes) of source indices of plain copies: a regular file, not sparse, smaller than
    `simple_max`, whose target is missing or not a directory, and that is not unchanged (or,
    with `checksum`, whose target is not a file of the same size); `other_src` and
    `other_dst` index every other entry that is not unchanged (directories, links, other
    kinds, big or sparse files, type changes, attribute changes) and its target (when it has
    one), and every target entry the source lacks; `unchanged` counts the rest: files of the
    same size and mtime (`size_only`: size), links with the same target, whose mode (with
    `perms`) and mtime (with `times`) are the source's too."""
    cdef Py_ssize_t i = 0, j = 0, a, b, k = 0, unchanged = 0
    cdef int c
    cdef char sk, dk
    cdef bint same, attrs
    cdef int64_t simple_bytes = 0
    cdef int32_t *simple = <int32_t *>malloc(sizeof(int32_t) * (src.c.n + 1))
    cdef list other_src = [], other_dst = []
    if simple == NULL:
        raise MemoryError()
    try:
        while i < src.c.n or j < dst.c.n:
            if j >= dst.c.n:
                c = -1
            elif i >= src.c.n:
                c = 1
            else:
                c = cmp_items(&src.c.paths, src.order[i], &dst.c.paths, dst.order[j])
            if c > 0:
                other_dst.append(dst.order[j])
                j += 1
                continue
            a = src.order[i]
            sk = src.c.kinds[a]
            i += 1
            if c < 0:
                if sk == 102 and not src.c.sparse[a] and src.c.sizes[a] < simple_max:
                    simple[k] = <int32_t>a
                    k += 1
                    simple_bytes += src.c.sizes[a]
                else:
                    other_src.append(a)
                continue
            b = dst.order[j]
            dk = dst.c.kinds[b]
            j += 1
            attrs = (times and src.c.mtimes[a] != dst.c.mtimes[b]) or (perms and sk != 108 and src.c.modes[a] != dst.c.modes[b])
            if sk == 102 and dk == 102:
                same = src.c.sizes[a] == dst.c.sizes[b] and (size_only or src.c.mtimes[a] == dst.c.mtimes[b])
                if same and not checksum:
                    if not attrs:
                        unchanged += 1
                        continue
                elif (not (checksum and src.c.sizes[a] == dst.c.sizes[b]) and not src.c.sparse[a]
                      and src.c.sizes[a] < simple_max):
                    simple[k] = <int32_t>a
                    k += 1
                    simple_bytes += src.c.sizes[a]
                    continue
            elif sk == 102 and dk != 100 and not src.c.sparse[a] and src.c.sizes[a] < simple_max:
                simple[k] = <int32_t>a
                k += 1
                simple_bytes += src.c.sizes[a]
                continue
            elif (sk == 108 and dk == 108 and links and not attrs
                  and cmp_items(&src.c.targets, a, &dst.c.targets, b) == 0):
                unchanged += 1
                continue
            other_src.append(a)
            other_dst.append(b)
        return (PyBytes_FromStringAndSize(<char *>simple, k * sizeof(int32_t)), simple_bytes, other_src,
                other_dst, unchanged)
    finally:
        free(simple)


# --- copying small files ----------------------------------------------------------------------
cdef struct CopyJob:
    int src_root, dst_root
    const char *paths
    const int64_t *off
    const int64_t *sizes
    const int64_t *mtimes
    const uint32_t *modes
    const int32_t *idx
    Py_ssize_t start, end
    uint8_t *stage
    int32_t *err
    const char *tag
    int mode          # -1: the file's own
    int times
    int64_t ok_files, ok_bytes


cdef inline int write_all(int fd, const char *p, Py_ssize_t n) noexcept nogil:
    cdef ssize_t w
    while n > 0:
        w = write(fd, p, n)
        if w < 0:
            if errno == EINTR:
                continue
            return -1
        p += w
        n -= w
    return 0


cdef int copy_fd(int sfd, int dfd, int64_t size, char *buf) noexcept nogil:
    """size bytes (fewer if the source shrank) from sfd to dfd, both at offset 0."""
    cdef int64_t done = 0
    cdef ssize_t r
    cdef off_t a, b
    cdef bint kernel = size > SMALL
    while done < size:
        if kernel:
            a = b = done
            r = copy_file_range(sfd, &a, dfd, &b, <size_t>(size - done if size - done < (1 << 30) else (1 << 30)), 0)
            if r < 0:
                if errno == EINTR:
                    continue
                if (errno == EXDEV or errno == ENOSYS or errno == EINVAL or errno == EOPNOTSUPP_
                        or errno == EPERM or errno == EBADF):
                    kernel = False
                    continue
                return -1
        else:
            r = read(sfd, buf, SMALL if size - done > SMALL else size - done)
            if r < 0:
                if errno == EINTR:
                    continue
                return -1
            if r and write_all(dfd, buf, r):
                return -1
        if r == 0:
            return 0         # the source ended early (it shrank): its bytes so far, as os.copy_file_range
        done += r
    return 0


cdef void *copy_worker(void *arg) noexcept nogil:
    cdef CopyJob *job = <CopyJob *>arg
    cdef char *buf = <char *>malloc(SMALL)
    cdef char rel[PATH_BUF]
    cdef char tmp[PATH_BUF + TMP_EXTRA]
    cdef Py_ssize_t k, i, plen, slash, q, tl
    cdef int sfd, dfd, stage, e
    cdef timespec ts[2]
    if buf == NULL:
        for k in range(job.start, job.end):
            job.stage[k], job.err[k] = ST_READ, 12       # ENOMEM
        return NULL
    for k in range(job.start, job.end):
        i = job.idx[k]
        plen = job.off[i + 1] - job.off[i]
        if plen >= PATH_BUF:
            job.stage[k], job.err[k] = ST_LONG, 36
            continue
        memcpy(rel, job.paths + job.off[i], plen)
        rel[plen] = 0
        slash = plen - 1
        while slash >= 0 and rel[slash] != 47:
            slash -= 1
        # the temporary name: DIR/.NAME.TAG-K.fastsync-tmp (local.py's form: one "." before TAG)
        memcpy(tmp, rel, slash + 1)
        q = slash + 1
        tmp[q] = 46
        memcpy(tmp + q + 1, rel + slash + 1, plen - slash - 1)
        q += 1 + plen - slash - 1
        tl = snprintf(tmp + q, TMP_EXTRA, ".%s-%zx.fastsync-tmp", job.tag, <size_t>k)
        if tl >= TMP_EXTRA or q + tl - slash - 1 > NAME_MAX_:
            job.stage[k], job.err[k] = ST_LONG, 36      # the Python path hashes the name
            continue
        stage, e = ST_OK, 0
        sfd = openat(job.src_root, rel, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        if sfd < 0:
            job.stage[k], job.err[k] = ST_READ, errno
            continue
        dfd = openat(job.dst_root, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
                     job.modes[i] if job.mode < 0 else job.mode)
        if dfd < 0:
            job.stage[k], job.err[k] = ST_CREATE, errno
            close(sfd)
            continue
        if copy_fd(sfd, dfd, job.sizes[i], buf):
            stage, e = ST_COPY, errno
        elif job.times:
            ts[0].tv_sec = ts[1].tv_sec = job.mtimes[i] // 1000000000
            ts[0].tv_nsec = ts[1].tv_nsec = job.mtimes[i] % 1000000000
            if futimens(dfd, ts):
                stage, e = ST_COPY, errno
        if close(dfd) and stage == ST_OK:
            stage, e = ST_COPY, errno
        close(sfd)
        if stage == ST_OK and renameat(job.dst_root, tmp, job.dst_root, rel):
            stage, e = ST_COPY, errno
        if stage != ST_OK:
            unlinkat(job.dst_root, tmp, 0)
            job.stage[k], job.err[k] = stage, e
            continue
        job.stage[k], job.err[k] = ST_OK, 0
        job.ok_files += 1
        job.ok_bytes += job.sizes[i]
    free(buf)
    return NULL


def copy_files(bytes src_root, bytes dst_root, Listing src, bytes indices, bytes tag, int mode=-1,
               bint times=False, int threads=1) -> tuple:
    """Copies the files `indices` (int32s, as diff's `simple`) of the listing `src` from the
    directory src_root to the same relative paths below dst_root, on `threads` C threads (each
    a contiguous slice, so threads mostly write into different directories), the GIL released.
    Each file is written to `DIR/.NAME.<tag>-<k>.fastsync-tmp` (created O_EXCL with `mode`, or
    with -1 the source's permission bits), gets the source's mtime with `times`, and is renamed
    over its name: complete or not at all. A file is copied up to its listed size.

    Returns (files copied, their bytes, stages, errnos): stages one byte per file (STAGE_OK;
    STAGE_READ: the source could not be opened; STAGE_CREATE: the temporary file could not be
    created; STAGE_COPY: reading, writing, the mtime or the rename failed (the temporary file
    is removed); STAGE_LONG: the temporary name is too long here, left to the caller), errnos
    an int32 per file."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(indices) // sizeof(int32_t), t, per
    cdef int src_fd, dst_fd, e = 0
    cdef int64_t files = 0, nbytes = 0
    cdef bytes stages = PyBytes_FromStringAndSize(NULL, n)
    cdef bytes errs = PyBytes_FromStringAndSize(NULL, n * sizeof(int32_t))
    cdef CopyJob *jobs
    cdef pthread_t *tids
    cdef const char *csrc = src_root
    cdef const char *cdst = dst_root
    cdef Py_ssize_t m
    cdef const int32_t *checked = <const int32_t *>PyBytes_AS_STRING(indices)
    for t in range(n):
        if checked[t] < 0 or checked[t] >= src.c.n:
            raise IndexError("copy_files: index %d is not an entry of the listing" % checked[t])
    if threads < 1:
        threads = 1
    if threads > n:
        threads = n if n else 1
    jobs = <CopyJob *>malloc(sizeof(CopyJob) * threads)
    tids = <pthread_t *>malloc(sizeof(pthread_t) * threads)
    if jobs == NULL or tids == NULL:
        free(jobs)
        free(tids)
        raise MemoryError()
    src_fd = open(csrc, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    if src_fd < 0:
        e = errno
        free(jobs)
        free(tids)
        raise OSError(e, "cannot open the source directory", src_root)
    dst_fd = open(cdst, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    if dst_fd < 0:
        e = errno
        close(src_fd)
        free(jobs)
        free(tids)
        raise OSError(e, "cannot open the target directory", dst_root)
    for t in range(threads):
        jobs[t].src_root, jobs[t].dst_root = src_fd, dst_fd
        jobs[t].paths, jobs[t].off = src.c.paths.data, src.c.paths.off
        jobs[t].sizes, jobs[t].mtimes, jobs[t].modes = src.c.sizes, src.c.mtimes, src.c.modes
        jobs[t].idx = <const int32_t *>PyBytes_AS_STRING(indices)
        jobs[t].start, jobs[t].end = n * t // threads, n * (t + 1) // threads
        jobs[t].stage = <uint8_t *>PyBytes_AS_STRING(stages)
        jobs[t].err = <int32_t *>PyBytes_AS_STRING(errs)
        jobs[t].tag = tag
        jobs[t].mode, jobs[t].times = mode, times
        jobs[t].ok_files = jobs[t].ok_bytes = 0
    with nogil:
        m = 0
        for t in range(1, threads):
            if pthread_create(&tids[t], NULL, copy_worker, &jobs[t]) == 0:
                m = t
            else:     # no thread: this one does that slice too, after its own
                break
        copy_worker(&jobs[0])
        for t in range(1, m + 1):
            pthread_join(tids[t], NULL)
        for t in range(m + 1, threads):
            copy_worker(&jobs[t])
        close(src_fd)
        close(dst_fd)
    for t in range(threads):
        files += jobs[t].ok_files
        nbytes += jobs[t].ok_bytes
    free(jobs)
    free(tids)
    return files, nbytes, stages, errs
