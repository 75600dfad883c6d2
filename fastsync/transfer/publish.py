"""Where the part files of a transfer live and how a run's files are published: the one place
the transfers touch a filesystem (formats.py reads and writes the files themselves).

A directory is a local path or a URL (fastsync.filesystems.resolve: file://, hdfs://, s3://,
any pyarrow filesystem). A run stages its part files (start), then publishes them (finish)
or removes them (discard). Two ways, chosen by Location.renames:

- rename (local disk, HDFS): the parts go into a temporary directory beside the target
  (.NAME.tmp-RUN), renamed into place once all are written; `_SUCCESS` (empty, as Hadoop's)
  last. `append`: the new parts moved in after the old ones (local disk: the old parts
  hard-linked beside the new and the two directories swapped, so a reader sees the old set
  or the new); `replace` (--delete-target-dir): the old directory renamed aside, the new one
  in, the old removed.
- manifest (S3 and the other object stores, where a rename is a copy): the parts go straight
  into the target under names of their run (part-m-00000-RUN.parquet), then `_SUCCESS` is
  written LAST holding the manifest: a JSON object whose "filenames" are the target's part
  files (all of them: `append` lists the old and the new). Readers (listing) take exactly
  the files a manifest lists, so they see the old set or the new; `replace` writes the new
  manifest, then deletes the old files. A failed run deletes its parts; those of a killed
  one are left, listed by no manifest, so no reader takes them (the next `replace` deletes
  them).

Every error of a filesystem is a PublishError: one line naming the flag and the URL.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import posixpath
import re
import shutil
import time
import uuid
from dataclasses import dataclass, replace

import pyarrow as pa
import pyarrow.fs as pafs

from fastsync.filesystems import FilesystemError, Location, resolve

log = logging.getLogger("fastsync.publish")

MARKER = "_SUCCESS"
TEMPORARY = "_temporary"                 # an object store's staging directory (merge's new rows), as Hadoop's
MANIFEST_NAME = "fastsync-manifest/1"    # a _SUCCESS holding this "name" is a manifest
_TAGGED = re.compile(r"^part-[a-z]-\d{5}-([0-9a-f]{8})(?:\.|$)")     # a part named by its run (manifest publishing)
_MANIFEST_READS = 5                      # reads of a _SUCCESS replaced while it is read
_REQUEST_ID = re.compile(r"\s*\((Request|Extended Request) ID:[^)]*\)")


class PublishError(Exception):
    """A directory can't be read or written; one line naming the flag and the URL."""


def reason(exc: BaseException) -> str:
    """A filesystem error as one line (the AWS SDK's request ids dropped)."""
    return _REQUEST_ID.sub("", " ".join(str(exc).split())) or type(exc).__name__


@contextlib.contextmanager
def failing(flag: str, where):
    """Filesystem errors inside as PublishError('FLAG URL: reason')."""
    try:
        yield
    except PublishError:
        raise
    except (OSError, pa.ArrowException) as exc:
        raise PublishError("%s %s: %s" % (flag, shown(where), reason(exc))) from None


def shown(where) -> str:
    """A directory as the user gave it."""
    return where.url if isinstance(where, Location) else str(where)


def locate(where, flag: str) -> Location:
    """The Location of a local path or URL (a Location is returned as it is); errors name `flag`."""
    if isinstance(where, Location):
        return where
    try:
        return resolve(str(where))
    except FilesystemError as exc:
        raise PublishError("%s %s" % (flag, exc)) from None


_FILESYSTEMS: dict = {}


def filesystem(url: str) -> pafs.FileSystem:
    """The filesystem of a URL, resolved once per process (a split's process, a worker): what
    a SplitSpec carries is the URL, never a live filesystem."""
    if url not in _FILESYSTEMS:
        _FILESYSTEMS[url] = resolve(url).fs
    return _FILESYSTEMS[url]


def child(loc: Location, *names: str) -> Location:
    """The Location of a directory below `loc`."""
    return replace(loc, path=loc.join(*names), url=loc.url.rstrip("/") + "/" + "/".join(names))


def is_local(fs) -> bool:
    return fs is None or isinstance(fs, pafs.LocalFileSystem)


def sink(fs, path: str):
    """Where a part file is written, for formats.Output.open: the path itself on local disk,
    else an output stream of `fs` (never compressed by the filesystem: the writer does that)."""
    return path if is_local(fs) else fs.open_output_stream(path, compression=None)


def source(fs, path: str):
    """A part file opened for reading as a binary file object (read, context manager): on
    local disk the file itself, else a buffered input stream of `fs` (small reads stay local)."""
    if is_local(fs):
        return open(path, "rb", buffering=1 << 20)
    return fs.open_input_stream(path, compression=None, buffer_size=1 << 20)


def random_access(fs, path: str):
    """A part file opened for random access (Parquet, Arrow IPC): a path on local disk, else
    a seekable file of `fs`."""
    return path if is_local(fs) else fs.open_input_file(path)


def remove_file(fs, path: str) -> None:
    """Delete a file if it is there (a split's part, before the split runs again)."""
    if is_local(fs):
        if os.path.exists(path):
            os.unlink(path)
        return
    if fs.get_file_info(path).type != pafs.FileType.NotFound:
        fs.delete_file(path)


def move(fs: pafs.FileSystem, src: str, dst: str) -> None:
    """Rename a file or directory (on an object store: copy, then delete)."""
    if is_local(fs):
        os.rename(src, dst)
    else:
        fs.move(src, dst)


def _remove_dir(fs, path: str) -> None:
    if is_local(fs):
        shutil.rmtree(path, ignore_errors=True)
    elif fs.get_file_info(path).type != pafs.FileType.NotFound:
        fs.delete_dir(path)


def _files(loc: Location, recursive: bool = False) -> list[pafs.FileInfo]:
    return [i for i in loc.fs.get_file_info(pafs.FileSelector(loc.path, allow_not_found=True, recursive=recursive))
            if i.type == pafs.FileType.File]


def _check_bucket(loc: Location) -> None:
    """On an object store: the bucket (the path's first name) exists."""
    if loc.renames:
        return
    bucket = loc.path.lstrip("/").split("/", 1)[0]
    if bucket and loc.fs.get_file_info(bucket).type == pafs.FileType.NotFound:
        raise OSError("no such bucket %s" % bucket)


def is_dir(loc: Location, flag: str) -> bool:
    """The directory is there (on an object store: some object has its path as prefix)."""
    with failing(flag, loc):
        _check_bucket(loc)
        return loc.fs.get_file_info(loc.path).type == pafs.FileType.Directory


def exists(loc: Location, flag: str = "--target-dir") -> bool:
    """Is there a target (anything at the path; on an object store: a `_SUCCESS`, or a file
    that is not an unlisted part of an unfinished run or the staging directory)?"""
    with failing(flag, loc):
        _check_bucket(loc)
        info = loc.fs.get_file_info(loc.path)
        if loc.renames or info.type != pafs.FileType.Directory:
            return info.type != pafs.FileType.NotFound
        names = [posixpath.basename(i.path) for i in loc.fs.get_file_info(pafs.FileSelector(loc.path))]
        return any(n == MARKER or not (_TAGGED.match(n) or n == TEMPORARY) for n in names)


def manifest(loc: Location) -> list[str] | None:
    """The part files `_SUCCESS` lists, in order; None when it is no manifest (absent, or an
    empty marker as Hadoop writes, or anything else)."""
    path = loc.join(MARKER)
    for attempt in range(_MANIFEST_READS):
        info = loc.fs.get_file_info(path)
        if info.type != pafs.FileType.File or not info.size:
            return None
        # an object store reads the size, then the bytes: a manifest replaced in between reads
        # cut short (or fails): read again
        try:
            with loc.fs.open_input_stream(path, compression=None) as f:
                data = f.read()
        except OSError:
            if attempt + 1 < _MANIFEST_READS and not loc.renames:
                continue
            raise
        try:
            doc = json.loads(data)
            break
        except (ValueError, UnicodeDecodeError):
            if data[:1] == b"{" and attempt + 1 < _MANIFEST_READS and not loc.renames:
                continue
            return None
    if not isinstance(doc, dict) or doc.get("name") != MANIFEST_NAME or not isinstance(doc.get("filenames"), list):
        return None
    return [str(n) for n in doc["filenames"]]


def listing(loc: Location) -> list[str]:
    """The names of the files a reader of the directory takes: those its manifest lists, in
    its order, when `_SUCCESS` is one; else every file in it, in name order, but hidden ones
    (`.`, `_`: `_SUCCESS` too) and the parts of a manifest-writing run that no manifest
    lists (an unfinished run's)."""
    names = manifest(loc)
    if names is not None:
        return names
    names = sorted(n for n in (posixpath.basename(i.path) for i in _files(loc)) if not n.startswith((".", "_")))
    unlisted = [n for n in names if _TAGGED.match(n)]
    if unlisted:
        log.info("%s: skipping %d part file(s) of an unfinished run (no _SUCCESS lists them): %s",
                 loc.url, len(unlisted), " ".join(unlisted[:5]))
    return [n for n in names if not _TAGGED.match(n)]


def write_marker(fs: pafs.FileSystem, directory: str, names: list[str] | None = None) -> None:
    """`_SUCCESS` into `directory`: empty, or the manifest of `names`. Written whole (one PUT
    on an object store): a reader sees the old one or the new."""
    path = directory.rstrip("/") + "/" + MARKER
    data = b"" if names is None else (json.dumps(
        {"name": MANIFEST_NAME, "committer": "fastsync", "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
         "filenames": names}, indent=1) + "\n").encode()
    if is_local(fs):
        with open(path, "wb") as f:
            f.write(data)
        return
    with fs.open_output_stream(path, compression=None) as f:
        f.write(data)


# -- a run's parts: staged, then published or discarded ------------------------------------

@dataclass
class Staging:
    """Where one run writes its part files before they are published."""
    target: Location      # the directory published into
    dir: str              # where the parts are written (a path of target.fs)
    run: str              # the run's id: names the temporary directory, or the parts (tagged)
    tagged: bool = False  # parts written straight into the target, named by the run (manifest publishing)
    first: int = 0        # the number of the first part (after the old ones: an append)

    @property
    def fs(self) -> pafs.FileSystem:
        return self.target.fs

    @property
    def fs_url(self) -> str | None:
        """What a process needs to resolve the filesystem again (None: local disk)."""
        return None if self.target.local else self.target.url

    def part(self, index: int, ext: str) -> str:
        """The path of part `index`."""
        from fastsync.transfer.formats import part_name
        if self.tagged:
            return "%s/%s" % (self.dir.rstrip("/"), part_name(self.first + index, ext, self.run))
        return _join(self.fs, self.dir, part_name(index, ext))

    def location(self) -> Location:
        """The staging directory as a Location, for a reader of the staged parts (an import's
        merge reads its new rows from there); not for tagged stagings."""
        if self.dir == self.target.path:
            return self.target
        rel = posixpath.relpath(self.dir, self.target.path) if self.dir.startswith(self.target.path + "/") else None
        url = self.dir if self.target.local or rel is None else self.target.url.rstrip("/") + "/" + rel
        return replace(self.target, path=self.dir, url=url)


def _join(fs, directory: str, name: str) -> str:
    return os.path.join(directory, name) if is_local(fs) else directory.rstrip("/") + "/" + name


def _number(name: str) -> int | None:
    return int(name[7:12]) if name.startswith("part-m-") and name[7:12].isdigit() else None


def start(loc: Location, append: bool = False, flag: str = "--target-dir") -> Staging:
    """Stage a run's parts for `loc`: a temporary directory beside it (renaming filesystems),
    or the target itself under the run's names, numbered after the old parts when `append`."""
    run = uuid.uuid4().hex[:8]
    with failing(flag, loc):
        if loc.renames:
            return _sibling(loc, run)
        first = 0
        if append:
            taken = [n for n in map(_number, listing(loc)) if n is not None]
            first = max(taken) + 1 if taken else 0
        return Staging(loc, loc.path, run, tagged=True, first=first)


def temporary(loc: Location, flag: str = "--target-dir") -> Staging:
    """A staging directory of its own for files that are read, not published (an import's
    new rows before they are merged onto the target): beside the target where directories
    rename, else `_temporary/RUN` inside it (skipped by readers, as Hadoop's)."""
    run = uuid.uuid4().hex[:8]
    with failing(flag, loc):
        if loc.renames:
            return _sibling(loc, run)
        return Staging(loc, loc.join(TEMPORARY, run), run)


def _sibling(loc: Location, run: str) -> Staging:
    fs = loc.fs
    if is_local(fs):
        parent = os.path.dirname(loc.path) or "."
        os.makedirs(parent, exist_ok=True)
        tmp = os.path.join(parent, ".%s.tmp-%s" % (os.path.basename(loc.path), run))
        os.makedirs(tmp)
    else:
        parent, base = posixpath.split(loc.path.rstrip("/"))
        fs.create_dir(parent or "/", recursive=True)
        tmp = posixpath.join(parent or "/", ".%s.tmp-%s" % (base, run))
        fs.create_dir(tmp, recursive=False)
    return Staging(loc, tmp, run)


def staged(stage: Staging) -> list[str]:
    """The names of the parts a tagged staging wrote, in name order."""
    return sorted(n for n in (posixpath.basename(i.path) for i in _files(stage.target))
                  if (m := _TAGGED.match(n)) and m.group(1) == stage.run)


def finish(stage: Staging, mode: str, flag: str = "--target-dir", names: list[str] | None = None) -> None:
    """Publish the staged parts: `mode` new (no target yet), replace (the target's files
    give way to the new: --delete-target-dir) or append (the new parts join the old).
    `_SUCCESS` is written last. Once the new set is published, removing the old files is
    best effort (a warning). `names` (manifest publishing): the staged files to publish,
    when not all the run's parts are (of several attempts of a part, the accepted one; the
    others are deleted by a replace, or left unlisted)."""
    loc, fs = stage.target, stage.fs
    with failing(flag, loc):
        if stage.tagged:
            new = staged(stage) if names is None else list(names)
            write_marker(fs, loc.path, (listing(loc) if mode == "append" else []) + new)
            if mode == "replace":
                _delete_except(loc, {MARKER, *new})
            return
        if mode == "append":
            _append(stage)
        elif mode == "replace" and fs.get_file_info(loc.path).type != pafs.FileType.NotFound:
            aside = "%s.old-%s" % (loc.path.rstrip("/"), stage.run)
            move(fs, loc.path, aside)
            move(fs, stage.dir, loc.path)
            _best_effort(loc, lambda: _remove_dir(fs, aside))
        else:
            move(fs, stage.dir, loc.path)
        write_marker(fs, loc.path)


def discard(stage: Staging) -> None:
    """Remove what a failed run staged (never raises: the run's own error is the one to show)."""
    try:
        if stage.tagged:
            for name in staged(stage):
                stage.fs.delete_file(stage.target.join(name))
        else:
            _remove_dir(stage.fs, stage.dir)
    except (OSError, pa.ArrowException) as exc:
        log.warning("%s: could not remove the files of the failed run %s: %s", stage.target.url, stage.run, reason(exc))


def _best_effort(loc: Location, action) -> None:
    try:
        action()
    except (OSError, pa.ArrowException) as exc:
        log.warning("%s: published; removing the old files failed: %s", loc.url, reason(exc))


def _delete_except(loc: Location, keep: set) -> None:
    """Every file below the target but `keep` (names directly in it) deleted: the old parts,
    the leftovers of killed runs."""
    def delete():
        for info in _files(loc, recursive=True):
            rel = info.path[len(loc.path.rstrip("/")) + 1:]
            if rel not in keep:
                loc.fs.delete_file(info.path)
    _best_effort(loc, delete)


def _append(stage: Staging) -> None:
    """The staged parts join the target's, numbered after them. On local disk the old files
    are hard-linked into the staging directory beside the new parts, then the two
    directories swap by renames, so a reader sees the old set or the new, never a mix;
    elsewhere (HDFS) each new part is renamed into the target."""
    loc, fs, tmp = stage.target, stage.fs, stage.dir
    target = loc.path
    if is_local(fs):
        taken = [n for n in map(_number, os.listdir(target)) if n is not None]
        nxt = max(taken) + 1 if taken else 0
        new_parts = sorted(os.listdir(tmp))
        for name in new_parts:
            os.rename(os.path.join(tmp, name), os.path.join(tmp, ".new-" + name))
        for name in os.listdir(target):
            if name != MARKER:
                os.link(os.path.join(target, name), os.path.join(tmp, name))
        for name in new_parts:
            os.rename(os.path.join(tmp, ".new-" + name), os.path.join(tmp, _renumbered(name, nxt)))
            nxt += 1
        aside = target + ".old-" + stage.run
        os.rename(target, aside)
        os.rename(tmp, target)
        shutil.rmtree(aside)
        return
    taken = [n for n in map(_number, listing(loc)) if n is not None]
    nxt = max(taken) + 1 if taken else 0
    for info in sorted(_files(stage.location()), key=lambda i: i.path):
        fs.move(info.path, loc.join(_renumbered(posixpath.basename(info.path), nxt)))
        nxt += 1
    _remove_dir(fs, tmp)


def _renumbered(name: str, n: int) -> str:
    """part-m-00003.parquet as part number n (its suffix kept; part-m-00003: none)."""
    return "part-m-%05d%s" % (n, "." + name.split(".", 1)[1] if "." in name else "")
