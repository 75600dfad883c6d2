"""Moving a file's bytes. Local to local: os.copy_file_range between the two descriptors (the
kernel copies; no byte passes through Python), only over the source's data regions when it has
holes (SEEK_DATA / SEEK_HOLE: the holes stay holes), a big file as ranges copied by several
threads at once. Any other pair: the source's stream read in ranges, written to the target's.
`--bwlimit` paces all of them together."""
from __future__ import annotations

import errno
import os
import threading
import time

RANGE = 64 << 20          # a big file's ranges, copied in parallel
STREAM_CHUNK = 8 << 20    # read size through pyarrow streams
KERNEL_CHUNK = 1 << 30    # one copy_file_range call at most
_NO_COPY_RANGE = (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM, errno.EBADF)


class BandwidthLimit:
    """rsync's --bwlimit: every thread's bytes together at most `rate` bytes/s on average."""

    def __init__(self, rate: float):
        self.rate = rate
        self.chunk = int(max(16 << 10, min(1 << 20, rate / 8)))
        self.lock = threading.Lock()
        self.start = None      # the clock starts with the first bytes, not with the listing
        self.sent = 0

    def take(self, n: int) -> None:
        with self.lock:
            if self.start is None:
                self.start = time.monotonic()
            self.sent += n
            due = self.start + self.sent / self.rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def parallel(jobs: int, items, fn, name: str) -> None:
    """fn(*item) for every item, on `jobs` threads that take the next item from one shared
    iterator (no future per item: ten thousand small files cost their syscalls, not a queue's
    bookkeeping). The first exception is raised once all threads are done."""
    it = iter(items)
    failed: list[BaseException] = []

    def work() -> None:
        try:
            for item in it:      # a list iterator's next() is atomic under the GIL
                if failed:
                    return
                fn(*item)
        except BaseException as exc:
            failed.append(exc)

    if jobs <= 1:
        work()
    else:
        threads = [threading.Thread(target=work, name="%s-%d" % (name, i), daemon=True) for i in range(jobs)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    if failed:
        raise failed[0]


class _Kernel:
    use_copy_range = True     # off once the kernel refuses it for these filesystems


def _copy_bytes(fd_in: int, fd_out: int, n: int, pos: int) -> int:
    if _Kernel.use_copy_range:
        try:
            return os.copy_file_range(fd_in, fd_out, n, pos, pos)
        except OSError as exc:
            if exc.errno not in _NO_COPY_RANGE:
                raise
            _Kernel.use_copy_range = False
    data = os.pread(fd_in, min(n, 8 << 20), pos)
    view, done = memoryview(data), 0
    while done < len(data):
        done += os.pwrite(fd_out, view[done:], pos + done)
    return len(data)


def copy_range(fd_in: int, fd_out: int, start: int, end: int, sparse: bool, limit: BandwidthLimit | None,
               progressed) -> int:
    """Bytes [start, end) at the same offsets; with `sparse` only the data regions (the rest is
    left a hole). Stops early at the source's end of file (it shrank). Returns the data bytes."""
    pos, sent = start, 0
    step = limit.chunk if limit else KERNEL_CHUNK
    while pos < end:
        seg_end = end
        if sparse:
            try:
                pos = os.lseek(fd_in, pos, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:       # no data after pos: the rest is a hole
                    break
                raise
            if pos >= end:
                break
            seg_end = min(os.lseek(fd_in, pos, os.SEEK_HOLE), end)
        while pos < seg_end:
            n = _copy_bytes(fd_in, fd_out, min(seg_end - pos, step), pos)
            if n == 0:
                return sent
            pos += n
            sent += n
            progressed(n)
            if limit:
                limit.take(n)
    return sent


def copy_local(fd_in: int, sink, entry, limit, range_jobs: int, progressed) -> None:
    """A local file (its open descriptor) into a LocalSink, from sink.offset on (a kept --partial
    prefix). With range_jobs > 1 (not with --partial, whose prefix must stay contiguous) a big
    file goes as ranges on that many threads."""
    size = entry.size
    if range_jobs > 1 and size - sink.offset >= 2 * RANGE:
        ranges = [(fd_in, sink.fd, a, min(a + RANGE, size), entry.sparse, limit, progressed)
                  for a in range(sink.offset, size, RANGE)]
        parallel(min(range_jobs, len(ranges)), ranges, copy_range, "sync-range")
    else:
        copy_range(fd_in, sink.fd, sink.offset, size, entry.sparse, limit, progressed)


def copy_stream(reader, sink, limit, progressed) -> None:
    """Any readable file (pyarrow NativeFile or a local file object) into a sink, from
    sink.offset on, in chunks."""
    if sink.offset:
        reader.seek(sink.offset)
    step = limit.chunk if limit else STREAM_CHUNK
    while True:
        data = reader.read(step)
        if not data:
            return
        sink.write(data)
        progressed(len(data))
        if limit:
            limit.take(len(data))


def same_content(src_tree, dst_tree, rel: str) -> bool:
    """--checksum: the two files' bytes compared (rsync compares a checksum computed at each end;
    here both ends are read by this process, so comparing the bytes is as exact and cheaper)."""
    with src_tree.open_read(rel) as a, dst_tree.open_read(rel) as b:
        while True:
            x = _read_full(a, 1 << 20)
            y = _read_full(b, len(x) or 1)
            if x != y:
                return False
            if not x:
                return True


def _read_full(f, n: int) -> bytes:
    data = f.read(n)
    while 0 < len(data) < n:
        more = f.read(n - len(data))
        if not more:
            break
        data += more
    return data
