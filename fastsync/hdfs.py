"""HDFS as a pyarrow filesystem: pyarrow's libhdfs (JNI) where the machine has it, else
WebHDFS, the NameNode's REST API, spoken here directly (requests) and wrapped as a pyarrow
filesystem; the log says which was chosen and why.

hdfs://host:port/path names the NameNode's RPC port (libhdfs); WebHDFS talks to its HTTP
port: webhdfs://host:port/path gives it; for hdfs:// it is $FASTSYNC_WEBHDFS_PORT, else
dfs.namenode.http-address of $HADOOP_CONF_DIR/hdfs-site.xml, else Hadoop 3's 9870.
The user is $HADOOP_USER_NAME, else the login name, as Hadoop's clients take it (simple
authentication: `user.name` on every request). FASTSYNC_HDFS_CLIENT=webhdfs skips libhdfs.

WebHDFS in pyarrow's terms:
- a directory rename (move) is one RENAME, atomic on the NameNode, with rename2's
  OVERWRITE: a file or empty directory at the destination is replaced, a non-empty one is
  an error, as pyarrow's local move (never the "move into" of plain HDFS rename);
- a write is a CREATE at open (the file exists from then on, as with Hadoop's client), then
  an APPEND of what was written every CHUNK bytes, at close, and at each flush of
  output_stream() (so a sink's flushed take is on the DataNode before the take commits);
  the NameNode redirects each to a DataNode (named 127.0.0.1 by the test HDFS of
  scripts/services.sh);
- a read is OPEN with offset and length, READ_AHEAD bytes at a time;
- every request has a bounded timeout (FASTSYNC_WEBHDFS_TIMEOUT seconds, default 60; a
  connection 10 at most), and an unreachable NameNode is one line naming it.
"""
from __future__ import annotations

import getpass
import logging
import os
import posixpath
import threading
import xml.etree.ElementTree as ET
from urllib.parse import quote

import pyarrow as pa
import pyarrow.fs as pafs

log = logging.getLogger("fastsync.hdfs")

WEBHDFS_PORT = 9870
RPC_PORT = 8020
CHUNK = 16 << 20          # unflushed bytes a writer holds before it appends them
READ_AHEAD = 4 << 20      # bytes a reader asks for at least
_chosen: dict = {}     # (scheme, host, port, user) -> filesystem: one connection per NameNode and user per process
_lock = threading.Lock()


def user() -> str:
    return os.environ.get("HADOOP_USER_NAME") or getpass.getuser()


def connect(scheme: str, host: str, port: int | None) -> pafs.FileSystem:
    """The filesystem of a NameNode, reached once per process; OSError (one line) if it
    does not answer."""
    key = (scheme, host, port, user())
    with _lock:
        if key not in _chosen:
            _chosen[key] = _connect(scheme, host, port)
        return _chosen[key]


def _connect(scheme: str, host: str, port: int | None) -> pafs.FileSystem:
    if scheme == "webhdfs":
        return webhdfs(host, port or WEBHDFS_PORT, "webhdfs://%s:%d" % (host, port or WEBHDFS_PORT), "the URL names WebHDFS", True)
    if scheme == "viewfs":
        # a mount table only Hadoop's own client reads: libhdfs or nothing
        name = "viewfs://%s%s" % (host, ":%d" % port if port else "")
        try:
            fs = pafs.FileSystem.from_uri(name + "/")[0]
        except (OSError, RuntimeError, ValueError) as exc:
            raise OSError("viewfs:// needs libhdfs (Hadoop's client reads the mount table): %s"
                          % (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]) from None
        log.info("%s: through libhdfs", name)
        return fs
    name = "hdfs://%s:%d" % (host, port or RPC_PORT)
    if (os.environ.get("FASTSYNC_HDFS_CLIENT") or "").lower() == "webhdfs":
        return webhdfs(host, http_port(), name, "FASTSYNC_HDFS_CLIENT=webhdfs")
    try:
        fs = pafs.HadoopFileSystem(host, port or RPC_PORT, user=user())
    except (OSError, RuntimeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        why = ("no libhdfs here: " if "load" in first.lower() else "libhdfs failed: ") + first
        return webhdfs(host, http_port(), name, why)
    log.info("%s: through libhdfs", name)
    return fs


def http_port() -> int:
    """The NameNode's HTTP (WebHDFS) port for an hdfs:// URL."""
    if os.environ.get("FASTSYNC_WEBHDFS_PORT"):
        return int(os.environ["FASTSYNC_WEBHDFS_PORT"])
    conf = os.environ.get("HADOOP_CONF_DIR")
    site = os.path.join(conf, "hdfs-site.xml") if conf else ""
    if site and os.path.exists(site):
        try:
            for prop in ET.parse(site).getroot().iter("property"):
                if (prop.findtext("name") or "").strip() == "dfs.namenode.http-address":
                    return int((prop.findtext("value") or "").strip().rsplit(":", 1)[-1])
        except (ET.ParseError, ValueError) as exc:
            raise OSError("%s: no port in dfs.namenode.http-address: %s" % (site, exc)) from None
    return WEBHDFS_PORT


def webhdfs(host: str, port: int, name: str, why: str, scheme_given: bool = False) -> pafs.FileSystem:
    client = WebHDFSClient(host, port, name, user())
    try:
        client.status("/")      # reachable, or the one-line error now
    except Unreachable as exc:
        hint = "from the URL" if scheme_given else "FASTSYNC_WEBHDFS_PORT, else HADOOP_CONF_DIR's dfs.namenode.http-address, else 9870"
        raise Unreachable("the NameNode's WebHDFS at %s %s (its HTTP port: %s)" % (exc.http, exc.why, hint), exc.http, exc.why) from None
    log.info("%s: through WebHDFS at %s as user %s (%s)", name, client.http, client.user, why)
    return pafs.PyFileSystem(WebHDFSHandler(client))


def output_stream(fs: pafs.FileSystem, path: str):
    """(fs.open_output_stream(path), flush): flush() puts what was written so far on the
    DataNodes (Hadoop's hflush), for a sink that commits a take only after that. pyarrow's
    flush does it for libhdfs and local files, not through a Python filesystem (its flush()
    never reaches Python), so a WebHDFS file is opened here and flushed by its writer."""
    handler = getattr(fs, "handler", None)
    if isinstance(handler, WebHDFSHandler):
        path = _abs(path)
        handler.client.create(path)
        w = _Writer(handler.client, path)
        return pa.PythonFile(w, mode="w"), w.flush
    f = fs.open_output_stream(path)
    return f, f.flush


# ---- the REST client ----

# Hadoop's exception names in a RemoteException -> the Python errors pyarrow and callers expect
_ERRORS = {
    "FileNotFoundException": FileNotFoundError,
    "FileAlreadyExistsException": FileExistsError,
    "AccessControlException": PermissionError,
    "SecurityException": PermissionError,
    "ParentNotDirectoryException": NotADirectoryError,
    "PathIsNotEmptyDirectoryException": OSError,
}


def _error(cls, where: str, message: str) -> OSError:
    # the first line: a DataNode's message goes on with the NameNode's Java stack
    return cls("%s: %s" % (where, " ".join((message.strip().splitlines() or [""])[0].split()) or "failed"))


class Unreachable(ConnectionError):
    """The NameNode or a DataNode does not answer (refused, no such host, timed out)."""

    def __init__(self, message: str, http: str, why: str):
        super().__init__(message)
        self.http, self.why = http, why


class WebHDFSClient:
    """WebHDFS requests to one NameNode; errors are OSErrors of one line naming the path."""

    def __init__(self, host: str, port: int, name: str, user: str):
        import requests     # here: libhdfs users never need it
        self._requests = requests
        self.host, self.port, self.name, self.user = host, port, name, user
        self.http = "http://%s:%d" % (host, port)
        self.base = self.http + "/webhdfs/v1"
        read = float(os.environ.get("FASTSYNC_WEBHDFS_TIMEOUT") or 60)
        self.timeout = (min(10.0, read), read)
        self._local = threading.local()     # a requests.Session per thread and process

    @property
    def session(self):
        # per process too: a forked split process must not share the parent's kept-alive
        # connections (two processes on one socket would read each other's answers)
        s = getattr(self._local, "session", None)
        if s is None or self._local.pid != os.getpid():
            s = self._local.session = self._requests.Session()
            self._local.pid = os.getpid()
        return s

    def url(self, path: str) -> str:
        return self.name + path

    def _send(self, method: str, url: str, where: str, **kw):
        http = url.split("/webhdfs/", 1)[0]
        try:
            return self.session.request(method, url, timeout=self.timeout, **kw)
        except self._requests.Timeout:
            why = "did not answer within %gs" % self.timeout[1]
            raise Unreachable("%s: WebHDFS at %s %s" % (where, http, why), http, why) from None
        except self._requests.ConnectionError as exc:
            text = str(exc).lower()
            why = ("connection refused" if "refused" in text else
                   "no such host" if "resolve" in text or "name or service" in text else
                   " ".join(str(exc).split())[-160:])
            why = "is unreachable: %s" % why
            raise Unreachable("%s: WebHDFS at %s %s" % (where, http, why), http, why) from None

    def call(self, method: str, op: str, path: str, *, data=None, params=None, ok=(200,)):
        """One request; the response (checked), following the NameNode's redirect to a
        DataNode by hand when there is a body to send (requests would drop or resend it)."""
        p = {"op": op, "user.name": self.user}
        if params:
            p.update(params)
        url = self.base + quote(path, safe="/")
        where = self.url(path)
        two_step = data is not None or op in ("CREATE", "APPEND")
        r = self._send(method, url, where, params=p, allow_redirects=not two_step)
        if two_step and r.status_code in (301, 302, 303, 307, 308):
            location = r.headers.get("Location")
            r.close()
            r = self._send(method, location, where, data=data if data is not None else b"",
                           headers={"Content-Type": "application/octet-stream"})
        if r.status_code not in ok:
            raise self._failure(r, where)
        return r

    def _failure(self, r, where: str) -> OSError:
        try:
            exc = r.json()["RemoteException"]
            cls = _ERRORS.get(exc.get("exception", ""), OSError)
            return _error(cls, where, exc.get("message") or exc.get("exception") or "")
        except (ValueError, KeyError, TypeError):
            text = " ".join(r.text.split())[:200]
            cls = FileNotFoundError if r.status_code == 404 else PermissionError if r.status_code in (401, 403) else OSError
            return _error(cls, where, "HTTP %d from %s%s" % (r.status_code, r.url.split("?", 1)[0], (": " + text) if text else ""))
        finally:
            r.close()

    # -- operations --
    def status(self, path: str) -> dict | None:
        """The FileStatus of path, or None if there is nothing there."""
        try:
            return self.call("GET", "GETFILESTATUS", path).json()["FileStatus"]
        except FileNotFoundError:
            return None

    def list(self, path: str) -> list[dict]:
        return self.call("GET", "LISTSTATUS", path).json()["FileStatuses"]["FileStatus"]

    def mkdirs(self, path: str) -> None:
        if not self.call("PUT", "MKDIRS", path).json().get("boolean"):
            raise _error(OSError, self.url(path), "the NameNode made no directory")

    def delete(self, path: str, recursive: bool) -> bool:
        return bool(self.call("DELETE", "DELETE", path, params={"recursive": "true" if recursive else "false"}).json().get("boolean"))

    def rename(self, src: str, dest: str) -> None:
        # rename2 with OVERWRITE (non-empty "renameoptions"): replaces a file or an empty
        # directory, fails on a non-empty one, never moves src into an existing directory
        self.call("PUT", "RENAME", src, params={"destination": dest, "renameoptions": "OVERWRITE"})

    def create(self, path: str, data: bytes = b"", overwrite: bool = True) -> None:
        self.call("PUT", "CREATE", path, data=data, params={"overwrite": "true" if overwrite else "false"}, ok=(200, 201))

    def append(self, path: str, data) -> None:
        self.call("POST", "APPEND", path, data=data)

    def read(self, path: str, offset: int, length: int | None) -> bytes:
        params = {"offset": str(offset)}
        if length is not None:
            params["length"] = str(length)
        return self.call("GET", "OPEN", path, params=params).content


# ---- pyarrow's side ----

def _info(path: str, st: dict | None) -> pafs.FileInfo:
    if st is None:
        return pafs.FileInfo(path, pafs.FileType.NotFound)
    mtime = st.get("modificationTime")
    mtime_ns = int(mtime) * 1_000_000 if mtime is not None else None
    if st.get("type") == "DIRECTORY":
        return pafs.FileInfo(path, pafs.FileType.Directory, mtime_ns=mtime_ns)
    if st.get("type") == "FILE":
        return pafs.FileInfo(path, pafs.FileType.File, size=int(st.get("length", 0)), mtime_ns=mtime_ns)
    return pafs.FileInfo(path, pafs.FileType.Unknown, mtime_ns=mtime_ns)


class WebHDFSHandler(pafs.FileSystemHandler):
    """pyarrow's FileSystem calls in WebHDFS requests (see the module's docstring)."""

    def __init__(self, client: WebHDFSClient):
        self.client = client

    def __eq__(self, other):
        if isinstance(other, WebHDFSHandler):
            return (self.client.http, self.client.user) == (other.client.http, other.client.user)
        return NotImplemented

    def __ne__(self, other):
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    def get_type_name(self):
        return "webhdfs"

    def normalize_path(self, path):
        return _abs(path)

    def get_file_info(self, paths):
        return [_info(p, self.client.status(_abs(p))) for p in paths]

    def get_file_info_selector(self, selector):
        base = _abs(selector.base_dir)
        st = self.client.status(base)
        if st is None:
            if selector.allow_not_found:
                return []
            raise FileNotFoundError("%s: no such directory" % self.client.url(base))
        if st.get("type") != "DIRECTORY":
            raise NotADirectoryError("%s: not a directory" % self.client.url(base))
        out, todo = [], [base]
        while todo:
            d = todo.pop()
            for child in self.client.list(d):
                path = posixpath.join(d, child["pathSuffix"])
                out.append(_info(path, child))
                if child.get("type") == "DIRECTORY" and selector.recursive:
                    todo.append(path)
        return out

    def create_dir(self, path, recursive):
        path = _abs(path)
        if not recursive:
            parent = self.client.status(posixpath.dirname(path))
            if parent is None:
                raise FileNotFoundError("%s: no such directory" % self.client.url(posixpath.dirname(path)))
        self.client.mkdirs(path)

    def _dir(self, path: str) -> str:
        path = _abs(path)
        st = self.client.status(path)
        if st is None:
            raise FileNotFoundError("%s: no such directory" % self.client.url(path))
        if st.get("type") != "DIRECTORY":
            raise NotADirectoryError("%s: not a directory" % self.client.url(path))
        return path

    def delete_dir(self, path):
        path = self._dir(path)
        if path == "/":
            raise OSError("%s: will not delete the root directory" % self.client.url(path))
        self.client.delete(path, recursive=True)

    def delete_dir_contents(self, path, missing_dir_ok=False):
        if _abs(path) == "/":
            raise ValueError("delete_dir_contents called on the root directory of %s" % self.client.name)
        self._delete_contents(path, missing_dir_ok)

    def _delete_contents(self, path, missing_dir_ok):
        try:
            path = self._dir(path)
        except FileNotFoundError:
            if missing_dir_ok:
                return
            raise
        for child in self.client.list(path):
            self.client.delete(posixpath.join(path, child["pathSuffix"]), recursive=True)

    def delete_root_dir_contents(self):
        self._delete_contents("/", False)

    def delete_file(self, path):
        path = _abs(path)
        st = self.client.status(path)
        if st is None:
            raise FileNotFoundError("%s: no such file" % self.client.url(path))
        if st.get("type") == "DIRECTORY":
            raise IsADirectoryError("%s: is a directory" % self.client.url(path))
        self.client.delete(path, recursive=False)

    def move(self, src, dest):
        self.client.rename(_abs(src), _abs(dest))

    def copy_file(self, src, dest):
        src, dest = _abs(src), _abs(dest)
        with self.open_input_stream(src) as f_in, self.open_output_stream(dest, None) as f_out:
            while True:
                chunk = f_in.read(CHUNK)
                if not chunk:
                    break
                f_out.write(chunk)

    def open_input_stream(self, path):
        return self.open_input_file(path)

    def open_input_file(self, path):
        path = _abs(path)
        st = self.client.status(path)
        if st is None:
            raise FileNotFoundError("%s: no such file" % self.client.url(path))
        if st.get("type") != "FILE":
            raise IsADirectoryError("%s: not a file" % self.client.url(path))
        return pa.PythonFile(_Reader(self.client, path, int(st.get("length", 0))), mode="r")

    def open_output_stream(self, path, metadata):
        path = _abs(path)
        self.client.create(path)
        return pa.PythonFile(_Writer(self.client, path), mode="w")

    def open_append_stream(self, path, metadata):
        path = _abs(path)
        if self.client.status(path) is None:
            self.client.create(path)
        return pa.PythonFile(_Writer(self.client, path), mode="w")


def _abs(path: str) -> str:
    """An absolute HDFS path: a URL's scheme and authority dropped, '/' added in front."""
    if "://" in path:
        path = "/" + path.split("://", 1)[1].partition("/")[2]
    path = posixpath.normpath("/" + path.lstrip("/"))
    return "/" if path in ("/", "//") else path


class _Reader:
    """A seekable file over OPEN requests (what pyarrow.PythonFile needs)."""

    def __init__(self, client: WebHDFSClient, path: str, size: int):
        self.client, self.path, self.size = client, path, size
        self.pos = 0
        self.buf, self.buf_at = b"", 0
        self.closed = False

    def readable(self):
        return True

    def seekable(self):
        return True

    def writable(self):
        return False

    def tell(self):
        return self.pos

    def seek(self, offset, whence=0):
        base = {0: 0, 1: self.pos, 2: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def read(self, n=-1):
        if n is None or n < 0:
            n = self.size - self.pos
        n = max(0, min(n, self.size - self.pos))
        if n == 0:
            return b""
        lo = self.pos - self.buf_at
        if 0 <= lo and lo + n <= len(self.buf):
            out = self.buf[lo:lo + n]
        else:
            self.buf_at = self.pos
            self.buf = self.client.read(self.path, self.pos, max(n, READ_AHEAD))
            out = self.buf[:n]
            if len(out) < n:    # the file changed under us
                raise OSError("%s: %d bytes expected at offset %d, %d read"
                              % (self.client.url(self.path), n, self.pos, len(out)))
        self.pos += len(out)
        return out

    def close(self):
        self.closed = True
        self.buf = b""


class _Writer:
    """An output file: created by the handler; bytes appended at flush(), every CHUNK, at close()."""

    def __init__(self, client: WebHDFSClient, path: str):
        self.client, self.path = client, path
        self.parts: list[bytes] = []
        self.held = 0
        self.written = 0
        self.closed = False

    def readable(self):
        return False

    def seekable(self):
        return False

    def writable(self):
        return True

    def tell(self):
        return self.written + self.held

    def write(self, data):
        if self.closed:
            raise ValueError("%s: write to a closed file" % self.client.url(self.path))
        b = bytes(data)
        self.parts.append(b)
        self.held += len(b)
        if self.held >= CHUNK:
            self._append()
        return len(b)

    def _append(self):
        if self.held:
            data = b"".join(self.parts)
            self.parts, self.held = [], 0
            self.client.append(self.path, data)
            self.written += len(data)

    def flush(self):
        self._append()

    def close(self):
        if not self.closed:
            try:
                self._append()
            finally:
                self.closed = True
