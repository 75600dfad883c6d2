"""Shared helpers for end-to-end tests: real processes, real files, real sockets.

Import them with `from e2e_support import ...` (a plain module next to conftest.py; a
`from conftest import ...` would pick up bench/conftest.py when both directories are
collected). The fixtures `agent` and `run_agent` are in tests/conftest.py.

Everything here is generic (no knowledge of a particular test file):

* free_port()                    a TCP port on 127.0.0.1 that was free a moment ago
* properties_text / write_config  a Flume properties file from a dict or a string
* line_of(text, key)             the 1-based line a key is defined on
* poll(fn, timeout)              wait, bounded, until fn() returns something truthy
* http_get / get_json            one HTTP GET with a timeout
* wait_for_port(port, timeout)   until something accepts TCP connections there
* LineClient                     a TCP client that sends bytes and reads reply lines
* AgentProcess / agent_argv
                                 `python -m fastsync agent ...` as a child process, its
                                 stdout and stderr in files, always killed at teardown
* run_on_terminal(argv)          a command with a pseudo-terminal as stdin/out/err: (code, output)
* read_dir_lines(dir)            the lines of every file in a directory, in file order
* multiset_problems(...)         a short description of missing / extra / duplicate items
* drop_tables(url, *names)       DROP TABLE IF EXISTS on a test server (PostgreSQL or MariaDB URL)
* created_topics / delete_topics  Kafka topics a test made, deleted after it (tests/conftest.py)
"""
from __future__ import annotations

import collections
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Iterable, Mapping

PYTHON = sys.executable
AGENT_CMD = [PYTHON, "-m", "fastsync", "agent"]
DEFAULT_TIMEOUT = 30.0


# -- ports and sockets --------------------------------------------------------------------

def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel just handed out for (host, 0); free unless someone races us."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1", alive: Callable[[], bool] | None = None) -> None:
    """Until a TCP connect to (host, port) succeeds. `alive`, if given, is checked on every
    try so a crashed server fails fast instead of after the whole timeout."""
    def attempt():
        if alive is not None and not alive():
            raise AssertionError("process exited while waiting for port %d" % port)
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            return False
    poll(attempt, timeout, interval=0.05, message="nothing listening on %s:%d" % (host, port))


class LineClient:
    """A TCP client for line protocols: send raw bytes, read whole reply lines."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.closed_by_peer = False

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_lines(self, n: int, timeout: float = 10.0) -> list[bytes]:
        """Exactly n reply lines (without their newline); AssertionError on timeout or if
        the peer closes first."""
        deadline = time.monotonic() + timeout
        while self.buf.count(b"\n") < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("timed out waiting for %d reply lines, have %r" % (n, self.buf))
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                self.closed_by_peer = True
                raise AssertionError("peer closed after %r, wanted %d lines" % (self.buf, n))
            self.buf += chunk
        lines = self.buf.split(b"\n")
        out, rest = lines[:n], b"\n".join(lines[n:])
        self.buf = rest
        return out

    def read_available(self, wait: float = 0.2) -> bytes:
        """Whatever arrives within `wait` seconds (b"" if nothing); sets closed_by_peer on EOF."""
        deadline = time.monotonic() + wait
        got = b""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                self.closed_by_peer = True
                break
            got += chunk
        data, self.buf = self.buf + got, b""
        return data

    def read_until_closed(self, timeout: float = 10.0) -> bytes:
        """Everything until the peer closes; AssertionError if it does not within timeout."""
        deadline = time.monotonic() + timeout
        data, self.buf = self.buf, b""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("peer did not close within %gs; got %r" % (timeout, data))
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                self.closed_by_peer = True
                return data
            if not chunk:
                self.closed_by_peer = True
                return data
            data += chunk

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# -- waiting and HTTP ---------------------------------------------------------------------

def poll(fn: Callable[[], object], timeout: float, interval: float = 0.02, message: str = ""):
    """Call fn until it returns something truthy and return that; AssertionError after
    `timeout` seconds (the last value is in the message)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %gs%s (last value: %r)" % (timeout, ": " + message if message else "", last))
        time.sleep(interval)


def run_on_terminal(argv: list[str], timeout: float = 60.0) -> tuple[int, str]:
    """Run argv with a pseudo-terminal as its stdin, stdout and stderr (so isatty() is
    true); (exit code, all it wrote). Stops reading after `timeout` s of silence."""
    import pty
    import select
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(argv[0], argv)
    out = b""
    while True:
        r, _, _ = select.select([fd], [], [], timeout)
        if not r:
            break
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out.decode("utf-8", "replace")


def http_get(url: str, timeout: float = 5.0) -> tuple[int, dict, bytes]:
    """(status, headers, body) of one GET; HTTP errors are returned, not raised."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def get_json(url: str, timeout: float = 5.0):
    status, _, body = http_get(url, timeout)
    assert status == 200, "GET %s: HTTP %d %r" % (url, status, body[:200])
    return json.loads(body)


def wait_for_json(url: str, timeout: float = 10.0, alive: Callable[[], bool] | None = None):
    """The JSON at url as soon as it answers 200."""
    def attempt():
        if alive is not None and not alive():
            raise AssertionError("process exited while waiting for %s" % url)
        try:
            status, _, body = http_get(url, timeout=1.0)
        except OSError:
            return None
        return json.loads(body) if status == 200 else None
    return poll(attempt, timeout, interval=0.05, message="GET %s" % url)


# -- configuration files ------------------------------------------------------------------

def properties_text(props: Mapping[str, object] | str) -> str:
    """A .properties text: a string as is, or `key = value` lines in the dict's order."""
    if isinstance(props, str):
        return props if props.endswith("\n") else props + "\n"
    return "".join("%s = %s\n" % (k, v) for k, v in props.items())


def write_config(directory: Path, props: Mapping[str, object] | str, name: str = "agent.properties") -> Path:
    """Written whole at once (a temporary file renamed over it): an agent's live reload never
    reads half of it."""
    path = Path(directory) / name
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(properties_text(props), encoding="utf-8")
    os.replace(tmp, path)
    return path


def line_of(text: str, key: str) -> int:
    """1-based line number of the (last) definition of `key` in a properties text."""
    found = None
    for i, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if re.match(r"%s\s*[=:\s]" % re.escape(key), stripped + " "):
            found = i
    assert found is not None, "key %s not in config" % key
    return found


# -- agent processes ----------------------------------------------------------------------

class AgentProcess:
    """A running `fastsync agent` (or any command); stdout/stderr go to files so a chatty
    child can never block on a full pipe."""

    def __init__(self, argv: list[str], workdir: Path, cwd: Path | None = None, env: Mapping[str, str] | None = None,
                 tag: str = "agent"):
        self.argv = list(argv)
        self.stdout_path = Path(workdir) / ("%s.stdout" % tag)
        self.stderr_path = Path(workdir) / ("%s.stderr" % tag)
        full_env = dict(os.environ)
        full_env["PYTHONUNBUFFERED"] = "1"
        if env:
            full_env.update(env)
        self._out = open(self.stdout_path, "wb")
        self._err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self._out, stderr=self._err,
                                     cwd=str(cwd or workdir), env=full_env)
        self.started_at = time.monotonic()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self):
        return self.proc.poll()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float = DEFAULT_TIMEOUT) -> int:
        """The exit code; AssertionError (after killing it) if it runs past timeout."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            if "agent" in self.argv:    # its threads' stacks (kill -QUIT), to see where it hangs
                self.proc.send_signal(signal.SIGQUIT)
                time.sleep(2)
            self.kill()
            raise AssertionError("%s did not exit within %gs; stderr tail:\n%s"
                                 % (" ".join(self.argv), timeout, self.stderr[-12000:])) from None

    def send_signal(self, sig: int = signal.SIGTERM) -> None:
        if self.alive():
            self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = DEFAULT_TIMEOUT) -> int:
        self.send_signal(sig)
        return self.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self._close_files()

    def _close_files(self) -> None:
        for f in (self._out, self._err):
            if not f.closed:
                f.close()

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_bytes().decode("utf-8", "replace")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_bytes().decode("utf-8", "replace")

    def wait_for_stderr(self, pattern: str, timeout: float = 10.0) -> re.Match:
        """The first match of regex `pattern` in stderr, waiting for it."""
        def attempt():
            m = re.search(pattern, self.stderr, re.M)
            if m is None and not self.alive():
                m = re.search(pattern, self.stderr, re.M)
                if m is None:
                    raise AssertionError("process exited (code %s) before stderr matched %r:\n%s"
                                         % (self.returncode, pattern, self.stderr[-3000:]))
            return m
        return poll(attempt, timeout, interval=0.02, message="stderr matching %r" % pattern)


def agent_argv(name: str, conf: Path | str, *extra: str) -> list[str]:
    return AGENT_CMD + ["-n", name, "-f", str(conf)] + [str(x) for x in extra]


# -- output checks ------------------------------------------------------------------------

def _file_order(p: Path):
    # file_roll names: [prefix]<ms>-<index>[.ext]; order by series, then index
    m = re.search(r"(\d+)-(\d+)", p.name)
    return (0, int(m.group(1)), int(m.group(2)), p.name) if m else (1, 0, 0, p.name)


def dir_files(directory: Path) -> list[Path]:
    d = Path(directory)
    if not d.exists():
        return []
    return sorted((p for p in d.iterdir() if p.is_file()), key=_file_order)


def read_dir_bytes(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in dir_files(directory))


def read_dir_lines(directory: Path) -> list[bytes]:
    """Lines of every file in the directory, files in (series, index) order; each file
    must end with a newline (a torn last line is an error)."""
    lines: list[bytes] = []
    for p in dir_files(directory):
        data = p.read_bytes()
        if not data:
            continue
        assert data.endswith(b"\n"), "%s does not end with a newline: ...%r" % (p, data[-40:])
        lines.extend(data[:-1].split(b"\n"))
    return lines


def lines_so_far(directory: Path) -> list[bytes]:
    """The complete lines in the directory's files so far, for polling while a sink still
    writes (a reader may see its last line half written; read_dir_lines checks that none is,
    once the sink stopped)."""
    lines: list[bytes] = []
    for p in dir_files(directory):
        data = p.read_bytes()
        end = data.rfind(b"\n")
        if end >= 0:
            lines.extend(data[:end].split(b"\n"))
    return lines


def count_lines(directory: Path) -> int:
    """Complete lines in the directory's files so far: for polling while a sink still
    writes (a reader may see the last line half written)."""
    return sum(p.read_bytes().count(b"\n") for p in dir_files(directory))


def multiset_problems(actual: Iterable, expected: Iterable, limit: int = 10) -> str:
    """'' if actual and expected hold the same items equally often; otherwise a short
    description (no giant diffs)."""
    a, e = collections.Counter(actual), collections.Counter(expected)
    if a == e:
        return ""
    missing = e - a
    extra = a - e
    dups = {k: v for k, v in a.items() if v > 1}
    parts = ["%d items, expected %d" % (sum(a.values()), sum(e.values()))]
    if missing:
        parts.append("%d missing, e.g. %s" % (sum(missing.values()), sorted(missing)[:limit]))
    if extra:
        parts.append("%d unexpected/extra, e.g. %s" % (sum(extra.values()), sorted(extra)[:limit]))
    if dups:
        parts.append("%d duplicated, e.g. %s" % (len(dups), sorted(dups.items())[:limit]))
    return "; ".join(parts)


def sequence_problems(actual: list, expected: list, limit: int = 5) -> str:
    """'' if the two lists are equal; otherwise where they first differ (no giant diffs)."""
    if actual == expected:
        return ""
    for i, (x, y) in enumerate(zip(actual, expected)):
        if x != y:
            return "first difference at index %d: got %r, expected %r (lengths %d / %d); got around it: %r" % (
                i, x, y, len(actual), len(expected), actual[max(0, i - limit):i + limit])
    return "lengths differ: got %d, expected %d (common prefix equal); tail got %r expected %r" % (
        len(actual), len(expected), actual[len(expected):][:limit], expected[len(actual):][:limit])


def drop_tables(url: str, *names: str, types: Iterable[str] = ()) -> None:
    """DROP TABLE IF EXISTS each name (then DROP TYPE IF EXISTS each of types, PostgreSQL) on
    the server of a postgresql:// or mysql:// URL: what a test made on a shared server goes
    at its end, so the suite leaves nothing behind."""
    import sqlalchemy as sa
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://").replace("mysql://", "mysql+pymysql://"))
    try:
        with engine.begin() as conn:
            for name in names:
                conn.exec_driver_sql("DROP TABLE IF EXISTS %s" % name)
            for name in types:
                conn.exec_driver_sql("DROP TYPE IF EXISTS %s" % name)
    finally:
        engine.dispose()


# Kafka topics made by the tests (test_kafka.new_topic adds to it); tests/conftest.py deletes
# them after each test
created_topics: list[str] = []


def delete_topics(brokers: str, topics: list[str], config: Mapping[str, str] | None = None) -> None:
    """Delete the topics (asynchronously on the broker; a topic already gone is fine)."""
    from confluent_kafka.admin import AdminClient
    admin = AdminClient({"bootstrap.servers": brokers, **(config or {})})
    for future in admin.delete_topics(list(topics), operation_timeout=30).values():
        try:
            future.result(30)
        except Exception:   # gone already, or never made (a test that failed before it)
            pass


# an import's flags that choose what it writes (no --as-parquetfile added: see parquet_unless_told)
_OUTPUT_FLAGS = ("--as-parquetfile", "--as-textfile", "--as-avrodatafile", "--format", "--kafka-topic", "--help")


def parquet_unless_told(args) -> list[str]:
    """The arguments of a `fastsync import` / `import-all-tables` (or a `job --create ... --
    import ...`) with --as-parquetfile added where they choose no output: the tests written when
    Parquet was the default read Parquet; Sqoop's text is the default now (test_sqoop_differential)."""
    args = [str(a) for a in args]
    if any(a in ("import", "import-all-tables") for a in args) and not any(
            a.split("=")[0] in _OUTPUT_FLAGS for a in args):
        args.append("--as-parquetfile")
    return args
