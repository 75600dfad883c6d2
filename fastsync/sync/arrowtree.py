"""A tree on any pyarrow filesystem (hdfs://, s3://, gs://, ...): listing with FileSelector,
streams in and out; a temporary name then a move where the filesystem renames atomically (HDFS),
else the object store's own atomic put."""
from __future__ import annotations

import errno

import pyarrow.fs as pafs

from fastsync.filesystems import Location
from fastsync.sync.local import TMP_SUFFIX, Entry, _split, _temp_name, is_leftover, unique_tag


class ArrowTree:
    """A tree on any pyarrow filesystem (hdfs://, s3://, gs://, ...). Modification times and
    permissions are the filesystem's own (pyarrow sets neither); there are no symbolic links."""
    local = False
    keeps_times = keeps_perms = keeps_links = False

    def __init__(self, loc: Location):
        self.loc = loc
        self.scan_errors = 0
        self.fs, self.root, self.url, self.renames = loc.fs, loc.path.rstrip("/") or "/", loc.url, loc.renames

    def path(self, rel: str) -> str:
        return (self.root.rstrip("/") + "/" + rel) if rel else self.root

    def child(self, name: str) -> "ArrowTree":
        import dataclasses
        return ArrowTree(dataclasses.replace(self.loc, path=self.path(name), url=self.url.rstrip("/") + "/" + name))

    @staticmethod
    def _entry(info: pafs.FileInfo) -> Entry | None:
        if info.type == pafs.FileType.File:
            return Entry("f", info.size or 0, info.mtime_ns or 0, 0o644)
        if info.type == pafs.FileType.Directory:      # an object store's has no mtime: -1, not set
            return Entry("d", 0, -1 if info.mtime_ns is None else info.mtime_ns, 0o755)
        return None

    def stat(self, rel: str = "") -> Entry | None:
        return self._entry(self.fs.get_file_info(self.path(rel)))

    def scan(self, filters, recursive: bool, report, leftovers: list | None = None) -> dict[str, Entry]:
        root = self.stat("")
        if root is None:
            return {}
        entries = {"": root}
        if root.kind != "d" or not recursive:
            return entries
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(self.root, recursive=True, allow_not_found=True))
        except (OSError, ValueError) as exc:
            report.error(self.url, "list", exc)
            self.scan_errors += 1
            return entries
        base = len(self.root.rstrip("/")) + 1
        excluded: set[str] = set()
        for info in sorted(infos, key=lambda i: i.path):     # parents before children
            rel = info.path[base:]
            head, name = _split(rel)
            if head and _below(head, excluded):
                continue
            e = self._entry(info)
            if e is None:
                continue
            if leftovers is not None and is_leftover(name):
                leftovers.append(rel)
                continue
            if filters and not filters.included(rel, e.kind == "d"):
                if e.kind == "d":
                    excluded.add(rel)
                continue
            entries[rel] = e
        return entries

    def open_read(self, rel: str):
        return self.fs.open_input_file(self.path(rel))

    def mkdir(self, rel: str, src: Entry) -> None:
        self.fs.create_dir(self.path(rel), recursive=not rel)

    def remove(self, rel: str, entry: Entry) -> None:
        if entry.kind == "d":
            self.fs.delete_dir(self.path(rel))
        else:
            self.fs.delete_file(self.path(rel))

    def rmdir(self, rel: str) -> None:
        if self.fs.get_file_info(pafs.FileSelector(self.path(rel), allow_not_found=True)):
            raise OSError(errno.ENOTEMPTY, "Directory not empty")
        self.fs.delete_dir(self.path(rel))

    def set_attrs(self, rel, src, dst, perms, times) -> bool:
        return False

    def writer(self, rel: str, src: Entry, partial: bool) -> "ArrowSink":
        return ArrowSink(self, rel, src)

    def remove_leftover(self, rel: str) -> None:
        try:
            self.fs.delete_file(self.path(rel))
        except FileNotFoundError:
            pass


def _below(path: str, dirs: set[str]) -> bool:
    while path:
        if path in dirs:
            return True
        path = path.rpartition("/")[0]
    return False


class ArrowSink:
    """A file written through pyarrow: under a temporary name then moved where the filesystem
    renames atomically (HDFS), else straight to its key (an object store's put is atomic: the
    object appears once the stream is closed). No --partial resume here: a copy starts over."""

    def __init__(self, tree: ArrowTree, rel: str, src: Entry):
        self.tree, self.final, self.offset = tree, tree.path(rel), 0
        if tree.renames:
            head, _, name = self.final.rpartition("/")
            self.tmp = head + "/" + _temp_name(name, unique_tag(), TMP_SUFFIX)
        else:
            self.tmp = self.final
        self.stream = tree.fs.open_output_stream(self.tmp)

    def write(self, data) -> None:
        self.stream.write(data)

    def commit(self, perms: bool, times: bool) -> None:
        self.stream.close()
        if self.tmp != self.final:
            try:
                self.tree.fs.move(self.tmp, self.final)
            except OSError:      # a filesystem whose rename does not replace: remove, then move
                self.tree.fs.delete_file(self.final)
                self.tree.fs.move(self.tmp, self.final)

    def abort(self) -> None:
        # pyarrow can't abort an upload: closing completes it, so the object is deleted again
        try:
            self.stream.close()
        finally:
            try:
                self.tree.fs.delete_file(self.tmp)
            except OSError as exc:
                if exc.errno not in (None, errno.ENOENT) and not isinstance(exc, FileNotFoundError):
                    raise
