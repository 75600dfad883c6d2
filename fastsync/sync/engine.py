"""One sync, in rsync's order of work: list both trees (filters applied, excluded directories
not entered), decide per entry, create the missing directories, copy the changed files and
links in parallel (`jobs` threads), delete the extraneous entries (--delete), then give the
directories their modes and times (copying into a directory changes its mtime).

A file is unchanged when its size and mtime are the source's (--size-only: its size;
--checksum: same size and the same bytes). On a target that can't keep mtimes (object stores,
HDFS through pyarrow), "the same mtime" is "a target mtime not older than the source's",
in whole seconds (S3 keeps seconds): a same-size change within the second of the last copy
needs -c there."""
from __future__ import annotations

import os
import threading
import time


from fastsync.progress import Progress, on_terminal
from fastsync.sync.copy import RANGE, BandwidthLimit, copy_local, copy_stream, parallel, same_content
from fastsync.sync.filters import Filters
from fastsync.sync.report import Report
from fastsync.sync.local import Entry, LocalTree, partial_name


PROCESS_THRESHOLD = 256    # small local files from which worker processes copy them


class SyncError(Exception):
    """The sync can't start (bad URL, missing source); one line, exit code `code`."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


class SyncOptions:
    """What a sync keeps and does (the command's flags; -a is recursive, links, perms, times)."""

    def __init__(self, recursive: bool = False, links: bool = False, perms: bool = False, times: bool = False,
                 delete: bool = False, dry_run: bool = False, checksum: bool = False, size_only: bool = False,
                 verbose: bool = False, progress: bool = False, bwlimit: float = 0.0, partial: bool = False,
                 jobs: int = 4, filters: Filters | None = None):
        self.recursive, self.links, self.perms, self.times = recursive, links, perms, times
        self.delete, self.dry_run, self.checksum, self.size_only = delete, dry_run, checksum, size_only
        self.verbose, self.progress = verbose, progress
        self.bwlimit = bwlimit        # bytes/s, 0: none
        self.partial, self.jobs = partial, jobs
        self.filters = filters or Filters()


def _basename(path: str) -> str:
    return path.rstrip("/").rpartition("/")[2]


def open_tree(url: str, flag: str):
    """A LocalTree for a local path or a file:// URL (without importing pyarrow), else an
    ArrowTree on the filesystem fastsync.filesystems.resolve finds for the URL."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in ("", "local"):
        return LocalTree(os.path.abspath(url.split("://", 1)[1] if scheme else url), url)
    if scheme == "file":
        from urllib.parse import urlsplit
        return LocalTree(os.path.abspath(urlsplit(url).path), url)
    from fastsync.filesystems import FilesystemError, resolve
    from fastsync.sync.arrowtree import ArrowTree
    try:
        loc = resolve(url)
    except FilesystemError as exc:
        raise SyncError("%s %s" % (flag, exc), 1) from None
    return LocalTree(loc.path, url) if loc.local else ArrowTree(loc)


class Sync:
    def __init__(self, src: str, dst: str, opts: SyncOptions, report: Report | None = None):
        self.opts = opts
        self.report = report or Report(opts.verbose or opts.dry_run)
        self.limit = BandwidthLimit(opts.bwlimit) if opts.bwlimit else None
        # a URL, or (for tests and callers with a filesystem of their own) a tree
        self.src = open_tree(src, "SRC") if isinstance(src, str) else src
        self.dst = open_tree(dst, "DST") if isinstance(dst, str) else dst
        src, dst = self.src.url if not isinstance(src, str) else src, self.dst.url if not isinstance(dst, str) else dst
        # permissions only between two trees that have them (pyarrow reports none)
        self.perms = opts.perms and self.src.keeps_perms and self.dst.keeps_perms
        try:
            root = self.src.stat("")
            if root is not None and root.kind == "l" and src.endswith("/") and self.src.local:
                self.src.root = os.path.realpath(self.src.root)     # "link/": the directory it points to
                root = self.src.stat("")
        except OSError as exc:
            raise SyncError("SRC %s: %s" % (src, exc.strerror or exc), 23) from None
        if root is None:
            raise SyncError("SRC %s: no such file or directory" % src, 23)
        self.src_root = root
        name = _basename(self.src.root)
        # rsync's rule: "src/" (or "src/.") copies what is in src, "src" the directory itself (into DST)
        contents = src.endswith(("/", "/.")) or src == "."
        into = (root.kind == "d" and not contents) or (root.kind != "d" and self._is_dir(dst))
        if into and name:
            self.dst = self.dst.child(name)
            if root.kind == "d":
                opts.filters.prefix = name + "/"
        if self.dst.local and os.path.islink(self.dst.root) and os.path.isdir(self.dst.root):
            self.dst.root = os.path.realpath(self.dst.root)    # DST a link to a directory: into it, as rsync
        self.both_local = self.src.local and self.dst.local

    def _is_dir(self, url: str) -> bool:
        if url.endswith("/"):
            return True
        try:
            e = self.dst.stat("")
        except OSError as exc:
            raise SyncError("DST %s: %s" % (url, exc.strerror or exc), 1) from None
        return e is not None and (e.kind == "d" or (e.kind == "l" and self.dst.local and os.path.isdir(self.dst.root)))

    # --- the work -------------------------------------------------------------------------
    def run(self) -> Report:
        opts, report = self.opts, self.report
        t0 = time.perf_counter()
        if self.src_root.kind == "d" and not opts.recursive:
            report.warn("skipping directory %s (give -r or -a to copy directories)" % self.src.url)
            self.seconds = time.perf_counter() - t0
            return report
        leftovers: list[str] = []
        self.simple = None     # plain copies of small files left to fastlocal.copy (not in the plan)
        from fastsync.sync import fastlocal
        if fastlocal.usable(self):
            try:
                # --dry-run, --partial and --bwlimit copy in Python: no file is left to C there
                simple_max = 0 if opts.dry_run or opts.partial or self.limit else 2 * RANGE
                src, dst, self.simple = fastlocal.scan(self, leftovers, simple_max)
            except OSError as exc:
                side = getattr(exc, "side", "DST")
                tree = self.src if side == "SRC" else self.dst
                raise SyncError("%s %s: %s" % (side, tree.url, exc.strerror or exc), 23) from None
        else:
            src, dst = self._scan(leftovers)
        source_io_error = self.src.scan_errors > 0
        plan = self._plan(src, dst)
        if self.dst.local and not opts.dry_run:
            self.dst.perms = self.perms
            saved = os.umask(0)     # files are created with their final mode: no chmod each
            try:
                self._write(plan, src, dst, leftovers, source_io_error, t0)
            finally:
                os.umask(saved)
        else:
            self._write(plan, src, dst, leftovers, source_io_error, t0)
        self.seconds = time.perf_counter() - t0
        return report

    def _scan(self, leftovers: list) -> tuple[dict, dict]:
        opts, report = self.opts, self.report
        listed: dict = {}

        def list_target() -> None:
            try:
                listed["dst"] = self.dst.scan(opts.filters, opts.recursive, report, leftovers)
            except Exception as exc:
                listed["error"] = exc

        # both trees listed at once: the lstat calls run without the GIL
        lister = threading.Thread(target=list_target, name="sync-list-target")
        lister.start()
        try:
            src = self.src.scan(opts.filters, opts.recursive, report)
        finally:
            lister.join()
        if "error" in listed:
            exc = listed["error"]
            if not isinstance(exc, OSError):
                raise exc
            raise SyncError("DST %s: %s" % (self.dst.url, exc.strerror or exc), 23) from None
        return src, listed["dst"]

    def _write(self, plan: dict, src: dict, dst: dict, leftovers: list, source_io_error: bool, t0: float) -> None:
        opts, report = self.opts, self.report
        if not opts.dry_run:
            self._clean(leftovers, src)
            for rel, d in plan["replace"]:
                self._guard(rel, "remove", self.dst.remove, rel, d)
        for rel in plan["mkdir"]:
            if not opts.dry_run and not self._guard(rel, "mkdir", self.dst.mkdir, rel, src[rel]):
                continue
            report.count("dirs")
            if rel and report.verbose:
                report.show(rel + "/")
        report.files_total = len(plan["copy"]) + (len(self.simple[1]) // 4 if self.simple else 0)
        report.bytes_total = sum(s.size for _, s, _ in plan["copy"]) + (self.simple[2] if self.simple else 0)
        show = opts.progress and on_terminal()
        with Progress(lambda: report.status(time.perf_counter() - t0), show=show, name="sync-progress"):
            self._transfer(plan)
        if opts.delete:
            if source_io_error:
                report.warn("errors reading the source: deleting nothing (as rsync, --delete waits for a clean listing)")
            else:
                self._delete(src, dst, plan["keep"])
        if not opts.dry_run:
            self._dir_attrs(src)

    def _unchanged(self, s: Entry, d: Entry) -> bool:
        if s.size != d.size:
            return False
        if self.opts.size_only:
            return True
        if self.dst.keeps_times:
            return s.mtime_ns == d.mtime_ns
        # the target's own mtime, written after the source's; object stores keep whole seconds
        # (S3's Last-Modified), so the source's is taken to its second
        return d.mtime_ns >= s.mtime_ns - s.mtime_ns % 1_000_000_000

    def _attrs_differ(self, s: Entry, d: Entry) -> bool:
        opts = self.opts
        return self.dst.local and ((self.perms and s.kind != "l" and s.mode != d.mode)
                                   or (opts.times and s.mtime_ns != d.mtime_ns))

    def _plan(self, src: dict, dst: dict) -> dict:
        opts, report = self.opts, self.report
        plan: dict = {"mkdir": [], "replace": [], "copy": [], "link": [], "attrs": [], "keep": set()}
        unchanged = 0
        for rel in sorted(src):
            s, d = src[rel], dst.get(rel)
            if d is not None and d.kind != s.kind and s.kind in "fdl" and (d.kind == "d" or s.kind == "d"):
                plan["replace"].append((rel, d))      # a type change: the old entry goes first
                d = None
            if s.kind == "d":
                if d is None or d.kind != "d":
                    plan["mkdir"].append(rel)
            elif s.kind == "f":
                if d is not None and d.kind == "f" and not opts.checksum and self._unchanged(s, d):
                    unchanged += 1
                    if self._attrs_differ(s, d):
                        plan["attrs"].append((rel, s, d))
                else:
                    plan["copy"].append((rel, s, d if d is not None and d.kind == "f" else None))
            elif s.kind == "l" and opts.links and self.dst.keeps_links:
                if d is not None and d.kind == "l" and d.target == s.target:
                    unchanged += 1
                    if self._attrs_differ(s, d):
                        plan["attrs"].append((rel, s, d))
                else:
                    plan["link"].append((rel, s))
            else:
                plan["keep"].add(rel)
                report.warn("skipping non-regular file %s" % self.src.path(rel)
                            + (" (give -l or -a to copy symbolic links)" if s.kind == "l" and not opts.links else
                               " (the target has no symbolic links)" if s.kind == "l" else ""))
        report.count("unchanged", unchanged)
        return plan

    def _clean(self, leftovers: list[str], src: dict) -> None:
        """Temporary files of killed runs go; with --partial the one of a source file's current
        version stays, to be resumed."""
        for rel in leftovers:
            if self.opts.partial:
                owner = _owner(rel)
                s = src.get(owner)
                if s is not None and s.kind == "f" and rel.rpartition("/")[2] == partial_name(_basename(owner), s):
                    continue
            self._guard(rel, "remove", self.dst.remove_leftover, rel)

    def _guard(self, rel: str, what: str, fn, *args) -> bool:
        try:
            fn(*args)
            return True
        except OSError as exc:
            self.report.error(self.dst.path(rel), what, exc)
            return False

    def _transfer(self, plan: dict) -> None:
        opts = self.opts
        # a big local file is copied as ranges on -j threads of its own (not with --partial)
        range_jobs = opts.jobs if self.both_local and not opts.partial else 1
        copies = plan["copy"]
        if self.simple is not None:
            from fastsync.sync.fastlocal import copy
            copy(self, self.simple, opts.jobs)
        if self.both_local and not opts.dry_run and opts.jobs > 1 and not self.limit and hasattr(os, "fork"):
            # many small local files: worker processes (procs.py says why); --bwlimit paces one process
            small = [(rel, s, d, 1) for rel, s, d in copies if s.size < 2 * RANGE]
            if len(small) >= PROCESS_THRESHOLD:
                from fastsync.sync.procs import run_in_processes
                run_in_processes(min(opts.jobs, len(small) // (PROCESS_THRESHOLD // 4)), small, self._copy_one, self)
                copies = [c for c in copies if c[1].size >= 2 * RANGE]
        work = [(self._copy_one, rel, s, d, range_jobs) for rel, s, d in copies]
        work += [(self._link_one, rel, s) for rel, s in plan["link"]]
        if work:
            parallel(min(opts.jobs, len(work)), work, lambda fn, *args: fn(*args), "sync")
        if not opts.dry_run:
            for rel, s, d in plan["attrs"]:
                self._guard(rel, "set attributes of", self.dst.set_attrs, rel, s, d, self.perms, opts.times)

    def _copy_one(self, rel: str, s: Entry, d: Entry | None, range_jobs: int) -> None:
        opts, report = self.opts, self.report
        path = self.src.path(rel)
        try:
            if d is not None and opts.checksum and d.size == s.size and same_content(self.src, self.dst, rel):
                report.count("unchanged")
                if not opts.dry_run:
                    self.dst.set_attrs(rel, s, d, self.perms, opts.times)
                return
            if opts.dry_run:
                report.copied(s.size)
                report.show(rel or _basename(self.dst.root))
                return
            if self.both_local:
                reader = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
            else:
                reader = self.src.open_read(rel)
        except FileNotFoundError:
            report.file_vanished(path)
            return
        except Exception as exc:
            report.error(path, "read", exc)
            return
        try:
            sink = self.dst.writer(rel, s, opts.partial)
        except Exception as exc:
            os.close(reader) if self.both_local else reader.close()
            report.error(self.dst.path(rel), "create", exc)
            return
        if sink.offset and report.verbose:
            report.show("%s: resuming after %d bytes kept by --partial" % (rel, sink.offset))
        try:
            try:
                if self.both_local:
                    copy_local(reader, sink, s, self.limit, range_jobs, report.progressed)
                else:
                    copy_stream(reader, sink, self.limit, report.progressed)
            finally:
                os.close(reader) if self.both_local else reader.close()
            sink.commit(self.perms, opts.times and self.dst.keeps_times)
        except BaseException as exc:
            try:
                sink.abort()
            except Exception:
                pass
            if not isinstance(exc, Exception):
                raise
            report.error(path, "copy", exc)
            return
        report.copied(s.size)
        if report.verbose:
            report.show(rel or _basename(self.dst.root))

    def _link_one(self, rel: str, s: Entry) -> None:
        report = self.report
        if not self.opts.dry_run:
            try:
                self.dst.symlink(rel, s, self.opts.times)
            except Exception as exc:
                report.error(self.dst.path(rel), "symlink", exc)
                return
        report.count("links")
        if report.verbose:
            report.show("%s -> %s" % (rel or _basename(self.dst.root), s.target))

    def _delete(self, src: dict, dst: dict, keep: set) -> None:
        """Target entries the source lacks, deepest first (an excluded entry was never listed,
        so it stays, and so does the directory holding it)."""
        report = self.report
        for rel in sorted((r for r in dst if r and r not in src and r not in keep), reverse=True):
            d = dst[rel]
            if not self.opts.dry_run:
                try:
                    self.dst.rmdir(rel) if d.kind == "d" else self.dst.remove(rel, d)
                except OSError as exc:
                    report.warn("cannot delete %s: %s" % (self.dst.path(rel), exc.strerror or exc))
                    continue
            report.count("deleted")
            if report.verbose:
                report.show("deleting %s%s" % (rel, "/" if d.kind == "d" else ""))

    def _dir_attrs(self, src: dict) -> None:
        """Directories' modes and mtimes, deepest first, once nothing more is written into them."""
        opts = self.opts
        if not self.dst.local or not (self.perms or opts.times):
            return
        for rel in sorted((r for r, s in src.items() if s.kind == "d"), reverse=True):
            try:
                self.dst.set_attrs(rel, src[rel], self.dst.stat(rel), self.perms, opts.times)
            except OSError as exc:
                self.report.error(self.dst.path(rel), "set attributes of", exc)


def _owner(rel: str) -> str:
    """The file a temporary name `.NAME.TAG.fastsync-...` stands for (same directory)."""
    head, _, name = rel.rpartition("/")
    base = name[1:].rsplit(".", 2)[0]
    return (head + "/" if head else "") + base


def run_sync(src: str, dst: str, opts: SyncOptions, report: Report | None = None) -> tuple[Report, float]:
    sync = Sync(src, dst, opts, report)
    r = sync.run()
    return r, sync.seconds
