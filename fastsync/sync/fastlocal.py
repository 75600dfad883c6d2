"""Local to local without Python per entry (fastsync._treewalk, ext/fastsync/_treewalk.pyx).

Both trees are listed in C into columns (at once, each by WALKERS threads, without the GIL),
compared in C, and only the entries with something to do or to say become Entry objects for
engine.Sync's plan: directories, links, other kinds, big or sparse files, type and attribute
changes, target entries the source lacks. Unchanged files are only counted. Plain copies of small files (the
"simple" ones) are not planned in Python either: C threads copy them (copy_files), a file
costing its syscalls and no Python.

Used when both ends are local directories, with -r, without filter rules (an excluded
directory must not be entered: the rules stay in Python, filters.py); else LocalTree.scan.
"""
from __future__ import annotations

import errno
import os
import threading

from fastsync import _treewalk
from fastsync.sync.local import Entry, LocalTree, unique_tag

CHUNK = 2048      # files per copy_files call: the progress line and -v lines move between calls
WALKERS = 4       # threads listing each tree (both at once): on a busy machine more threads get more of it


class Listed:
    """A tree's native listing, and its root entry."""

    def __init__(self, tree: LocalTree, leftovers: bool):
        self.tree, self.root, self.listing, self.error = tree, None, None, None
        try:
            self.root = tree.stat("")
            if self.root is not None and self.root.kind == "d":
                self.listing = _treewalk.walk(os.fsencode(tree.root), leftovers, WALKERS)
        except OSError as exc:
            self.error = exc

    def entries(self, indices) -> dict[str, Entry]:
        out: dict[str, Entry] = {} if self.root is None else {"": self.root}
        if self.listing is None:
            return out
        entry, fsdecode = self.listing.entry, os.fsdecode
        for i in indices:
            path, kind, size, mtime_ns, mode, target, sparse = entry(i)
            out[fsdecode(path)] = Entry(kind, size, mtime_ns, mode, fsdecode(target) if target else "", sparse)
        return out

    def report_errors(self, report) -> None:
        if self.listing is None:
            return
        for what, rel, err in self.listing.errors:
            path = self.tree.path(os.fsdecode(rel))
            if what == "vanished":
                report.file_vanished(path)
            else:
                report.error(path, what, OSError(err, os.strerror(err)))
                self.tree.scan_errors += 1


def usable(sync) -> bool:
    opts = sync.opts
    return (sync.both_local and opts.recursive and not opts.filters and sync.src_root.kind == "d"
            and type(sync.src) is LocalTree and type(sync.dst) is LocalTree)


def scan(sync, leftovers: list, simple_max: int):
    """(src entries, dst entries, simple): the entries engine.Sync must plan (each dict with its
    root ""), and the plain copies left to copy(), as (listing, int32 indices, bytes)."""
    opts, report = sync.opts, sync.report
    got: dict = {}
    lister = threading.Thread(target=lambda: got.update(dst=Listed(sync.dst, True)), name="sync-list-target")
    lister.start()
    try:
        src = Listed(sync.src, False)
    finally:
        lister.join()
    dst = got["dst"]
    for side, listed in (("SRC", src), ("DST", dst)):
        if listed.error is not None:
            listed.error.side = side      # for the one-line message
            raise listed.error
    src.report_errors(report)
    dst.report_errors(report)
    if src.listing is None:
        return src.entries(()), dst.entries(()), None
    if dst.listing is None:
        # no target tree yet (or not a directory): everything is new
        simple, nbytes, other_src, _, _ = _treewalk.diff(src.listing, _treewalk.Listing(), simple_max=simple_max)
        return src.entries(other_src), dst.entries(()), (src.listing, simple, nbytes)
    leftovers.extend(os.fsdecode(p) for p in dst.listing.leftovers)
    simple, nbytes, other_src, other_dst, unchanged = _treewalk.diff(
        src.listing, dst.listing, size_only=opts.size_only, checksum=opts.checksum, times=opts.times,
        perms=sync.perms, links=opts.links, simple_max=simple_max)
    report.count("unchanged", unchanged)
    return src.entries(other_src), dst.entries(other_dst), (src.listing, simple, nbytes)


def copy(sync, simple, jobs: int) -> None:
    """The simple copies by C threads, CHUNK files a call; failures reported as engine.Sync's
    _copy_one reports them, a name too long for a temporary name here copied by _copy_one."""
    listing, indices, _ = simple
    report, src_tree, dst_tree = sync.report, sync.src, sync.dst
    mode = -1 if dst_tree.perms else 0o666 & ~dst_tree.umask
    times = sync.opts.times
    src_root, dst_root = os.fsencode(src_tree.root), os.fsencode(dst_tree.root)
    step = CHUNK * 4      # int32 indices
    for at in range(0, len(indices), step):
        part = indices[at:at + step]
        files, nbytes, stages, errs = _treewalk.copy_files(
            src_root, dst_root, listing, part, unique_tag().encode(), mode, times, jobs)
        report.copied_many(files, nbytes, nbytes)
        if report.verbose or files != len(part) // 4:
            _after(sync, listing, memoryview(part).cast("i"), stages, memoryview(errs).cast("i"))


def _after(sync, listing, idx, stages, errs) -> None:
    report = sync.report
    for k, i in enumerate(idx):
        stage = stages[k]
        rel = os.fsdecode(listing.path(i))
        if stage == _treewalk.STAGE_OK:
            if report.verbose:
                report.show(rel)
            continue
        err = errs[k]
        exc = OSError(err, os.strerror(err))
        if stage == _treewalk.STAGE_READ:
            if err == errno.ENOENT:
                report.file_vanished(sync.src.path(rel))
            else:
                report.error(sync.src.path(rel), "read", exc)
        elif stage == _treewalk.STAGE_CREATE:
            report.error(sync.dst.path(rel), "create", exc)
        elif stage == _treewalk.STAGE_COPY:
            report.error(sync.src.path(rel), "copy", exc)
        else:         # STAGE_LONG: local.py's temporary name (a hash for a long name)
            _, kind, size, mtime_ns, mode, _, sparse = listing.entry(i)
            sync._copy_one(rel, Entry(kind, size, mtime_ns, mode, "", sparse), None, 1)
