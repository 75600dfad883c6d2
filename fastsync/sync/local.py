"""The two ends of a sync as trees of entries keyed by their path relative to the root ("" is the
root itself). This module: the entries, the temporary names, and the local disk through os
(scandir, lstat, rename), without pyarrow, whose import alone costs a local sync ~0.2 s.
Any other filesystem: arrowtree.py.

Writers never show a half-written file under its name: the bytes go to a temporary name in the
same directory (`.NAME.XXXXXXXX.fastsync-tmp`, or with --partial
`.NAME.SIZE-MTIME.fastsync-partial`, which names the source version its prefix came from), which
is renamed over NAME once complete. A later run removes the temporary files a killed run left.
"""
from __future__ import annotations

import itertools
import os
import stat as st

TMP_SUFFIX, PARTIAL_SUFFIX = ".fastsync-tmp", ".fastsync-partial"


class Entry:
    """kind: "f" file, "d" directory, "l" symbolic link, "o" other (device, FIFO, socket); mode:
    the permission bits; target: a link's; sparse: fewer blocks than bytes (look for holes)."""
    __slots__ = ("kind", "size", "mtime_ns", "mode", "target", "sparse")

    def __init__(self, kind: str, size: int, mtime_ns: int, mode: int, target: str = "", sparse: bool = False):
        self.kind, self.size, self.mtime_ns, self.mode, self.target, self.sparse = kind, size, mtime_ns, mode, target, sparse

    @classmethod
    def of(cls, s: os.stat_result) -> "Entry":
        m = s.st_mode
        kind = _KINDS.get(m & 0o170000, "o")
        return cls(kind, s.st_size, s.st_mtime_ns, m & 0o7777, "", kind == "f" and s.st_blocks * 512 < s.st_size)


_KINDS = {st.S_IFREG: "f", st.S_IFDIR: "d", st.S_IFLNK: "l"}


def is_leftover(name: str) -> bool:
    """A temporary file of an earlier, interrupted run."""
    return name.startswith(".") and (name.endswith(TMP_SUFFIX) or name.endswith(PARTIAL_SUFFIX))


_serial = itertools.count()


def unique_tag() -> str:
    """Unique among this process's temporary files (next() of a count is atomic under the GIL);
    O_EXCL refuses a clash with another process's."""
    return "%x-%x" % (os.getpid(), next(_serial))


def _temp_name(name: str, tag: str, suffix: str) -> str:
    tmp = ".%s.%s%s" % (name, tag, suffix)
    if len(tmp) > 63 and len(os.fsencode(tmp)) > 255:      # NAME_MAX: a hash of the name stands for it
        import hashlib
        tmp = ".%s.%s%s" % (hashlib.sha1(os.fsencode(name)).hexdigest(), tag, suffix)
    return tmp


def partial_name(name: str, entry: Entry) -> str:
    """The --partial file of this version of the source file: size and mtime in its name, so a
    prefix is only resumed from the source version it was copied from."""
    return _temp_name(name, "%d-%d" % (entry.size, entry.mtime_ns), PARTIAL_SUFFIX)


def _split(rel: str) -> tuple[str, str]:
    head, _, name = rel.rpartition("/")
    return head, name


class LocalTree:
    """A tree on the local disk (a local path or file:// URL)."""
    local = True
    keeps_times = keeps_perms = keeps_links = True

    def __init__(self, root: str, url: str):
        self.root, self.url = root, url
        self.umask = _umask()
        self.perms = False       # -p: files and directories are created with the source's mode
        self.scan_errors = 0

    def new_mode(self, src: Entry, dirs: bool = False) -> int:
        """The mode something new is created with (the process's umask is 0 while a sync writes)."""
        if self.perms:
            return src.mode | (0o700 if dirs else 0)    # a directory writable until its mode is set last
        return (0o777 if dirs else 0o666) & ~self.umask

    def path(self, rel: str) -> str:
        return self.root + "/" + rel if rel else self.root       # root: absolute, no trailing /

    def child(self, name: str) -> "LocalTree":
        return LocalTree(os.path.join(self.root, name), self.url.rstrip("/") + "/" + name)

    def stat(self, rel: str = "") -> Entry | None:
        try:
            e = Entry.of(os.lstat(self.path(rel)))
        except FileNotFoundError:
            return None
        if e.kind == "l":
            e.target = os.readlink(self.path(rel))
        return e

    def scan(self, filters, recursive: bool, report, leftovers: list | None = None) -> dict[str, Entry]:
        """Every entry below the root that the filters include (an excluded directory is not
        entered), the root included as "". Temporary files of earlier runs go to `leftovers`
        (given for the target) instead."""
        root = self.stat("")
        if root is None:
            return {}
        entries = {"": root}
        if root.kind != "d" or not recursive:
            return entries
        stack = [""]
        filters = filters if filters else None
        while stack:
            d = stack.pop()
            try:
                it = os.scandir(self.path(d))
            except FileNotFoundError:
                report.file_vanished(self.path(d))
                continue
            except OSError as exc:
                report.error(self.path(d), "opendir", exc)
                self.scan_errors += 1
                continue
            prefix = d + "/" if d else ""
            with it:
                for de in it:
                    name = de.name
                    rel = prefix + name
                    if leftovers is not None and name[0] == "." and is_leftover(name):
                        leftovers.append(rel)
                        continue
                    try:
                        if filters and not filters.included(rel, de.is_dir(follow_symlinks=False)):
                            continue
                        e = Entry.of(de.stat(follow_symlinks=False))
                        if e.kind == "l":
                            e.target = os.readlink(de.path)
                    except FileNotFoundError:
                        report.file_vanished(de.path)
                        continue
                    except OSError as exc:
                        report.error(de.path, "stat", exc)
                        self.scan_errors += 1
                        continue
                    entries[rel] = e
                    if e.kind == "d":
                        stack.append(rel)
        return entries

    # reading
    def open_read(self, rel: str):
        return open(self.path(rel), "rb", buffering=0)

    # writing
    def mkdir(self, rel: str, src: Entry) -> None:
        if rel:
            os.mkdir(self.path(rel), self.new_mode(src, True))
        else:      # the root, and any missing parents with the default mode (as mkdir -p)
            missing, p = [], self.root
            while not os.path.lexists(p):
                missing.append(p)
                p = os.path.dirname(p)
            for i, p in enumerate(reversed(missing)):
                os.mkdir(p, self.new_mode(src, True) if i == len(missing) - 1 else 0o777 & ~self.umask)

    def remove(self, rel: str, entry: Entry) -> None:
        p = self.path(rel)
        if entry.kind == "d":
            import shutil      # (imports zlib, bz2, lzma: only when needed)
            shutil.rmtree(p)
        else:
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass

    def rmdir(self, rel: str) -> None:
        os.rmdir(self.path(rel))

    def symlink(self, rel: str, src: Entry, times: bool) -> None:
        head, name = _split(rel) if rel else (os.path.dirname(self.root), os.path.basename(self.root))
        tmp = os.path.join(self.path(head) if rel else head, _temp_name(name, unique_tag(), TMP_SUFFIX))
        os.symlink(src.target, tmp)
        try:
            if times:
                os.utime(tmp, ns=(src.mtime_ns, src.mtime_ns), follow_symlinks=False)
            os.rename(tmp, self.path(rel))
        except BaseException:
            os.unlink(tmp)
            raise

    def set_attrs(self, rel: str, src: Entry, dst: Entry | None, perms: bool, times: bool) -> bool:
        """The source's permission bits and mtime on an existing entry; True if one changed."""
        p, changed = self.path(rel), False
        if perms and src.kind != "l" and (dst is None or dst.mode != src.mode):
            os.chmod(p, src.mode)
            changed = True
        if times and src.mtime_ns >= 0 and (dst is None or dst.mtime_ns != src.mtime_ns):
            os.utime(p, ns=(src.mtime_ns, src.mtime_ns), follow_symlinks=False)
            changed = True
        return changed

    def writer(self, rel: str, src: Entry, partial: bool) -> "LocalSink":
        return LocalSink(self, rel, src, partial)

    def remove_leftover(self, rel: str) -> None:
        try:
            os.unlink(self.path(rel))
        except FileNotFoundError:
            pass


class LocalSink:
    """A file being written under its temporary name; `offset` is where a kept --partial prefix
    ends (the copy continues there). commit() gives it the source's mode and mtime and renames it."""

    def __init__(self, tree: LocalTree, rel: str, src: Entry, partial: bool):
        if rel:
            head, _, name = rel.rpartition("/")
            folder = tree.root + "/" + head if head else tree.root
        else:
            folder, name = os.path.split(tree.root)
        self.final, self.src, self.partial = tree.path(rel), src, partial
        self.offset = 0
        self.mode = tree.new_mode(src)
        if partial:
            self.tmp = folder + "/" + partial_name(name, src)
            self.fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
            have = os.fstat(self.fd).st_size
            self.offset = have if have <= src.size else 0
        else:
            self.tmp = folder + "/" + _temp_name(name, unique_tag(), TMP_SUFFIX)
            self.fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, self.mode)

    def write(self, data) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]

    def commit(self, perms: bool, times: bool) -> None:
        try:
            if self.src.sparse:
                os.ftruncate(self.fd, self.src.size)     # a trailing hole kept as a hole
            if self.partial:
                os.fchmod(self.fd, self.mode)
            if times:
                os.utime(self.fd, ns=(self.src.mtime_ns, self.src.mtime_ns))
        finally:
            os.close(self.fd)
        os.rename(self.tmp, self.final)

    def abort(self) -> None:
        """After a failure: the temporary file goes, except a --partial one, kept to resume."""
        os.close(self.fd)
        if not self.partial:
            try:
                os.unlink(self.tmp)
            except FileNotFoundError:
                pass


_UMASK = None


def _umask() -> int:
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return _UMASK


