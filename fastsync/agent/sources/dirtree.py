"""The `dirtree` source: follows a directory tree on any filesystem fastsync resolves (a local
path, file://, hdfs://, webhdfs://, s3://...), reading new files and the new bytes of growing
files line by line (`deserializer = LINE`) or as whole blobs (`BLOB`). It also runs the
configurations of the HdfsSource (`org.apache.flume.source.hdfs.HdfsSource`, keys
`hdfs.uri`, `hdfs.path`, `hdfs.user`, `hdfs.batchSize`, `hdfs.zkQuorum`).

The tree is listed every `pollInterval` ms. A file's position (the offset of its first
undelivered byte, and its size at the last listing) advances only once the channel committed
the batch read from it, and is then written: to a local JSON file (`positionFile`, temp file +
rename), or with `hdfs.zkQuorum` to one JSON znode (`zkPath`, a versioned set per batch), so
an agent started anywhere else (an HA standby, another working directory) goes on where the
last commit left: at most the batch whose commit was not yet recorded is read twice.

Lines are read as the spooldir source reads them (Flume's LineDeserializer): only `\\n` ends a
line, a line longer than `deserializer.maxLineLength` characters is cut into several events,
none of it dropped. A last line without its newline waits for it, until the file has not
changed for `idleTimeout` ms: then it is taken as a line (0: it waits for its newline for
ever). A BLOB is what a file holds beyond its position (at most `deserializer.maxBlobLength`
bytes an event), taken once the file has not changed for `idleTimeout` ms, so a file being
written is not cut anywhere. A file that shrank below its position (truncated or rewritten) is
reported and read again from 0; a file that disappeared is reported and forgotten.
One batch takes lines from the files with new ones in path order (several small files make
one transaction and one position write), each event with its own file's headers.
"""
from __future__ import annotations

import json
import logging
import os
import posixpath
import re
import threading
import time
from dataclasses import dataclass

import numpy as np

from fastsync._native import split_lines
from fastsync.agent.component import SOURCES, Place, check_regex, setting
from fastsync.agent.errors import ChannelException
from fastsync.agent.source import PollableSource, SourceConfig, Status
from fastsync.agent.sources.spooldir import flume_lines
from fastsync.event import EventBatch
from fastsync.redact import create_private

log = logging.getLogger("fastsync.source.dirtree")
READ_SIZE = 4 << 20     # bytes read from a file at once (one request on a remote filesystem)
REFUSED_WAIT = 0.2      # s before a batch the channel refused is offered again


@dataclass
class DirtreeSourceConfig(SourceConfig):
    path: str = setting("path", "", "the tree's root: a local path or a filesystem URL (or hdfs.uri + hdfs.path)")
    hdfs_uri: str = setting("hdfs.uri", "", "the filesystem, e.g. hdfs://namenode:8020 (HdfsSource's key)")
    hdfs_path: str = setting("hdfs.path", "", "the tree's root on hdfs.uri (HdfsSource's key)")
    hdfs_user: str = setting("hdfs.user", "", "the HDFS user, as HADOOP_USER_NAME (which wins if set)")
    batchSize: int = setting("batchSize", 100, "most events per channel transaction", min=1)
    hdfs_batchSize: int = setting("hdfs.batchSize", 0, "batchSize under HdfsSource's name (wins if set; 0: unset)", min=0)
    zkQuorum: str = setting("hdfs.zkQuorum", "", "ZooKeeper host:port[,...][/chroot] keeping the positions")
    zkPath: str = setting("zkPath", "", "the positions' znode (default /fastsync/dirtree/<agent>/<source>)")
    positionFile: str = setting("positionFile", "", "local JSON file of the positions "
                                "(default ~/.flume/dirtree-<agent>-<source>.json); unused with hdfs.zkQuorum")
    pollInterval: int = setting("pollInterval", 5000, "ms between listings of the tree", min=1)
    idleTimeout: int = setting("idleTimeout", 10000, "ms unchanged after which a last line without newline, "
                               "or a BLOB, is taken (0: a last line waits for its newline)", min=0)
    recursive: bool = setting("recursive", True, "follow the files of subdirectories too")
    includePattern: str = setting("includePattern", "^.*$", "regex a file name must match (search)")
    ignorePattern: str = setting("ignorePattern", "^$", "regex of file names to skip (search)")
    deserializer: str = setting("deserializer", "LINE", "LINE or BLOB", choices=("line", "blob"))
    maxLineLength: int = setting("deserializer.maxLineLength", 2048, "longer lines are cut into events "
                                 "of this many characters", min=1)
    maxBlobLength: int = setting("deserializer.maxBlobLength", 100000000, "most bytes of one BLOB event", min=1)
    fileHeader: bool = setting("fileHeader", False, "put the file's path in a header")
    fileHeaderKey: str = setting("fileHeaderKey", "file", "header carrying the path")
    basenameHeader: bool = setting("basenameHeader", False, "put the file's name in a header")
    basenameHeaderKey: str = setting("basenameHeaderKey", "basename", "header carrying the name")

    def validate(self, place: Place) -> None:
        agent, _, name = place.prefix.partition(".sources.")
        if self.path and (self.hdfs_uri or self.hdfs_path):
            raise place.error("path", "give either path or hdfs.uri + hdfs.path, not both")
        if self.path:
            self.url = self.path.strip()
        elif self.hdfs_path:
            p = self.hdfs_path.strip()
            if "://" in p:
                self.url = p
            elif not self.hdfs_uri:
                raise place.missing("hdfs.uri", "hdfs.path %s needs hdfs.uri (the filesystem)" % p)
            else:
                base = self.hdfs_uri.strip().rstrip("/")
                base += "//" if base.endswith(":") else ""      # file:// + /data
                self.url = base + "/" + p.lstrip("/")
        else:
            raise place.missing("path", "the tree to follow is missing: set path (or hdfs.uri and hdfs.path)")
        if "://" not in self.url:
            self.url = os.path.expanduser(self.url)
        if "://" not in self.url or self.url.startswith(("file:", "local:")):
            local = self.url.split("://", 1)[-1]
            if not os.path.isdir(os.path.expanduser(local)):
                raise place.error("path" if self.path else "hdfs.path", "Directory does not exist: %s" % local)
        for key in ("includePattern", "ignorePattern"):
            check_regex(place, key, getattr(self, key))
        self.batch = self.hdfs_batchSize or self.batchSize
        if self.zkQuorum:
            from fastsync.zk import ZkError, join_path, split_connect
            try:
                self.zk_hosts, chroot = split_connect(self.zkQuorum, "%s.hdfs.zkQuorum" % place.prefix)
            except ZkError as exc:
                raise place.error("hdfs.zkQuorum", str(exc)) from None
            self.zk_node = join_path(chroot, self.zkPath or join_path("fastsync", "dirtree", agent, name))
        self.position_path = os.path.abspath(os.path.expanduser(
            self.positionFile or "~/.flume/dirtree-%s-%s.json" % (agent, name)))


class Followed:
    """One file of the tree: `offset` is where its first undelivered byte is (what is
    recorded), `size` its size at the last listing; `buf` bytes read from `buf_at` on, `nl`
    the offsets of the newlines in buf."""

    __slots__ = ("path", "offset", "size", "mtime", "changed", "buf", "buf_at", "nl", "_json", "_json_of")

    def __init__(self, path: str, offset: int, size: int):
        self.path, self.offset, self.size = path, offset, size
        self.mtime = None
        self.changed = time.monotonic()
        self.buf, self.buf_at, self.nl = b"", 0, None
        self._json, self._json_of = "", None

    def record(self) -> str:
        """Its position as JSON, made again only when it changed (a tree of many files is
        written after every batch)."""
        if self._json_of != (self.offset, self.size):
            self._json_of = (self.offset, self.size)
            self._json = json.dumps({"file": self.path, "offset": self.offset, "size": self.size}, separators=(",", ":"))
        return self._json


@SOURCES.register("dirtree", "org.apache.flume.source.hdfs.HdfsSource")
class DirtreeSource(PollableSource):
    Config = DirtreeSourceConfig
    waits_itself = True

    def __init__(self, name, config, processor=None):
        super().__init__(name, config, processor)
        c = config
        self.include, self.ignore = re.compile(c.includePattern), re.compile(c.ignorePattern)
        self.blob = c.deserializer == "blob"
        self.files: dict[str, Followed] = {}
        self.location = None
        self.zk = None
        self.zk_version = -1
        self._stop = threading.Event()
        self._lock = threading.Lock()       # process() against stop(): the ZooKeeper client goes at stop
        self._listed_at = None
        self._saved = None
        self._todo: list[Followed] = []     # files with bytes to read, by path, as of the last listing
        self._warned = None

    # -- life cycle --
    def start(self) -> None:
        c = self.config
        if c.hdfs_user:
            have = os.environ.get("HADOOP_USER_NAME")
            if have is None:
                os.environ["HADOOP_USER_NAME"] = c.hdfs_user
            elif have != c.hdfs_user:
                log.warning("dirtree source %s: hdfs.user %s ignored: HADOOP_USER_NAME=%s is set", self.name, c.hdfs_user, have)
        if c.zkQuorum:
            from fastsync.zk import connect
            self.zk = connect(c.zk_hosts, "%s hdfs.zkQuorum" % self.name)
        for r in self._load():
            try:
                f = Followed(str(r["file"]), int(r["offset"]), int(r["size"]))
            except (KeyError, TypeError, ValueError):
                log.error("dirtree source %s: bad position record %r ignored", self.name, r)
                continue
            self.files[f.path] = f
        log.info("dirtree source %s: following %s, %d positions from %s", self.name, c.url, len(self.files),
                 "zk://%s%s" % (c.zk_hosts, c.zk_node) if self.zk else c.position_path)
        super().start()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            super().stop()
            if self.zk is not None:
                self.zk.stop()
                self.zk.close()
                self.zk = None

    # -- positions --
    def _load(self) -> list:
        c = self.config
        try:
            if self.zk is not None:
                from kazoo.exceptions import NoNodeError
                try:
                    data, stat = self.zk.get(c.zk_node)
                except NoNodeError:
                    return []
                self.zk_version = stat.version
                return json.loads(data or b"[]")
            with open(c.position_path, "rb") as fh:
                return json.load(fh)
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            log.error("dirtree source %s: cannot read its positions (%s); starting without them", self.name, exc)
            return []

    def _save(self) -> None:
        data = ("[" + ",".join(f.record() for f in self.files.values()) + "]").encode()
        if data == self._saved:
            return
        if self.zk is not None:
            if not self._save_zk(data):
                return
        else:
            path = self.config.position_path
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = path + ".tmp"
            with os.fdopen(create_private(tmp), "wb") as fh:     # 0600: read positions
                fh.write(data)
            os.replace(tmp, path)
        self._saved = data

    def _save_zk(self, data: bytes) -> bool:
        from kazoo.exceptions import BadVersionError, KazooException, NodeExistsError, NoNodeError
        from kazoo.handlers.threading import KazooTimeoutError
        node = self.config.zk_node
        try:
            try:
                self.zk_version = self.zk.set(node, data, version=self.zk_version).version
            except NoNodeError:
                try:
                    self.zk.create(node, data, makepath=True)
                    self.zk_version = 0
                except NodeExistsError:
                    self._overwrite(node, data)
            except BadVersionError:
                self._overwrite(node, data)
        except (KazooException, KazooTimeoutError) as exc:
            # the lines are in the channel: a restart before the next write reads them again
            log.warning("dirtree source %s: cannot write the positions to %s (%s); again after the next batch",
                        self.name, node, type(exc).__name__)
            return False
        return True

    def _overwrite(self, node: str, data: bytes) -> None:
        # someone else wrote them since we read them: two agents follow the tree
        log.error("dirtree source %s: the positions in %s were changed by someone else (is another agent "
                  "following the tree?); writing ours", self.name, node)
        self.zk_version = self.zk.set(node, data).version

    # -- listing --
    def _list(self) -> bool:
        """List the tree; False if it could not be."""
        c = self.config
        import pyarrow.fs as pafs

        from fastsync.filesystems import FilesystemError, resolve
        try:
            if self.location is None:
                self.location = resolve(c.url)
            infos = self.location.fs.get_file_info(pafs.FileSelector(self.location.path, recursive=c.recursive))
        except (FilesystemError, OSError, ValueError) as exc:
            msg = " ".join(str(exc).split())
            if msg != self._warned:
                log.warning("dirtree source %s: cannot list %s: %s (trying again)", self.name, c.url, msg)
                self._warned = msg
            return False
        self._warned = None
        now = time.monotonic()
        seen = set()
        for info in infos:
            if info.type != pafs.FileType.File:
                continue
            base = posixpath.basename(info.path)
            if (base.startswith(".") or base.endswith("._COPYING_")        # hidden; FsShell's copy in progress
                    or not self.include.search(base) or self.ignore.search(base)):
                continue
            seen.add(info.path)
            size, mtime = info.size, info.mtime_ns
            f = self.files.get(info.path)
            if f is None:
                f = self.files[info.path] = Followed(info.path, 0, size)
                f.mtime = mtime
                log.info("dirtree source %s: new file %s (%d bytes)", self.name, info.path, size)
                continue
            if size != f.size or (f.mtime is not None and mtime != f.mtime):
                f.changed = now
            f.mtime = mtime
            if size < f.offset:
                log.warning("dirtree source %s: %s shrank to %d bytes below its position %d (truncated): "
                            "reading it again from the start", self.name, info.path, size, f.offset)
                f.offset = 0
                f.buf, f.buf_at, f.nl = b"", 0, None
            f.size = size
        for path in [p for p in self.files if p not in seen]:
            log.info("dirtree source %s: %s is gone (deleted or renamed) at offset %d; forgetting it",
                     self.name, path, self.files[path].offset)
            del self.files[path]
        self._todo = sorted((f for f in self.files.values() if f.offset < f.size), key=lambda f: f.path)
        self._save()
        return True

    # -- reading --
    def process(self) -> Status:
        c = self.config
        with self._lock:
            if self._stop.is_set():
                return Status.BACKOFF
            now = time.monotonic()
            if self._listed_at is None or now - self._listed_at >= c.pollInterval / 1000.0:
                self._listed_at = now
                self._list()
            refused = False
            try:
                delivered = self._blobs() if self.blob else self._lines()
            except ChannelException as exc:
                log.warning("dirtree source %s could not write to channel: %s (will retry)", self.name, exc)
                delivered, refused = False, True
        if delivered:
            return Status.READY
        wait = self._listed_at + c.pollInterval / 1000.0 - time.monotonic()
        self._stop.wait(max(0.0, min(wait, REFUSED_WAIT) if refused else wait))
        return Status.BACKOFF

    def _idle(self, f: Followed) -> bool:
        t = self.config.idleTimeout
        return t > 0 and time.monotonic() - f.changed >= t / 1000.0

    def _read(self, f: Followed, at: int, n: int) -> bytes | None:
        """n bytes of f from offset at; None (reported) if they cannot be read now."""
        try:
            with self.location.fs.open_input_file(f.path) as fh:
                fh.seek(at)
                data = fh.read(n)
        except (OSError, ValueError) as exc:
            log.warning("dirtree source %s: cannot read %s at %d: %s", self.name, f.path, at, " ".join(str(exc).split()))
            data = None
        if data is not None and len(data) < n:
            log.warning("dirtree source %s: %s has fewer bytes than listed (%d at %d, %d expected): "
                        "truncated? looking again at the next listing", self.name, f.path, len(data), at, n)
            data = None
        if data is None:
            f.size = min(f.size, f.offset)      # nothing more to read until it is listed again
        return data

    def _headers(self, f: Followed) -> dict:
        c = self.config
        h = {}
        if c.fileHeader:
            h[c.fileHeaderKey] = f.path
        if c.basenameHeader:
            h[c.basenameHeaderKey] = posixpath.basename(f.path)
        return h

    def _lines(self) -> bool:
        """Deliver one batch of lines, from the files with new ones in path order (a batch
        takes the lines of several small files: one transaction, one position write); False
        if none had any."""
        c = self.config
        cap = max(READ_SIZE, 4 * c.maxLineLength + 4)       # room for a whole cut piece
        todo = self._todo
        while todo and todo[0].offset >= todo[0].size:     # read to the end as listed
            todo.pop(0)
        parts, took, left = [], [], c.batch
        for f in todo:
            if f.offset >= f.size:
                continue
            got = self._batch(f, cap, self._idle(f), left)
            if got is None:
                continue
            data, offsets, n, used = got
            parts.append(EventBatch(data, offsets, self._headers(f)))
            took.append((f, used))
            left -= n
            if left <= 0:
                break
        if not parts:
            return False
        self.deliver(parts[0] if len(parts) == 1 else EventBatch.concat(parts))
        for f, used in took:
            f.offset += used
        self._save()
        return True

    def _batch(self, f: Followed, cap: int, final: bool, want: int):
        """(data, offsets, n, used) of f's next lines, at most `want`, or None."""
        c = self.config
        for attempt in (0, 1):
            rel = f.offset - f.buf_at
            if attempt or not 0 <= rel < len(f.buf):
                data = self._read(f, f.offset, min(cap, f.size - f.offset))
                if data is None:
                    return None
                f.buf, f.buf_at, rel = data, f.offset, 0
                f.nl = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
            i = int(np.searchsorted(f.nl, rel))
            newlines = f.nl[i:i + want]
            buf_end = f.buf_at + len(f.buf)
            # short of a batch while the file has more than the buffer: read on from the offset
            if attempt or len(newlines) >= want or buf_end >= f.size or (rel == 0 and len(f.buf) >= cap):
                break
        at_end = final and buf_end >= f.size
        view = memoryview(f.buf)
        if len(newlines) >= want:
            block, at_end = view[rel:int(newlines[-1]) + 1], False
        else:
            block = view[rel:]
        newlines = newlines - rel
        longest = int(np.diff(newlines, prepend=-1).max()) - 1 if len(newlines) else -1
        tail = len(block) - (int(newlines[-1]) + 1 if len(newlines) else 0)
        if longest < c.maxLineLength and (tail < c.maxLineLength or not at_end) and (len(newlines) or at_end):
            data, offsets, n, used, _ = split_lines(block, False, at_end)    # nothing to cut: natively
            offsets = np.frombuffer(offsets, dtype=np.int64)
        else:   # a line to cut, or the front of an unfinished one (as spooldir)
            data, offsets, n, used = flume_lines(bytes(block), at_end, c.maxLineLength, want)
        return (data, offsets, n, used) if n else None

    def _blobs(self) -> bool:
        """Deliver the new bytes of up to batchSize idle files, one event each."""
        c = self.config
        bodies, paths, names, took = [], [], [], []
        for f in self._todo:
            if f.offset >= f.size or not self._idle(f):
                continue
            data = self._read(f, f.offset, min(f.size - f.offset, c.maxBlobLength))
            if data is None:
                continue
            bodies.append(data)
            paths.append(f.path)
            names.append(posixpath.basename(f.path))
            took.append((f, len(data)))
            if len(bodies) >= c.batch:
                break
        if not bodies:
            return False
        headers = {}
        if c.fileHeader:
            headers[c.fileHeaderKey] = paths[0] if len(paths) == 1 else _strings(paths)
        if c.basenameHeader:
            headers[c.basenameHeaderKey] = names[0] if len(names) == 1 else _strings(names)
        self.deliver(EventBatch.from_bodies(bodies, headers))
        for f, n in took:
            f.offset += n
        self._save()
        return True


def _strings(values: list[str]):
    import pyarrow as pa
    return pa.array(values, type=pa.string())
