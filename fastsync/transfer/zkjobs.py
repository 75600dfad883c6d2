"""Saved jobs in ZooKeeper (`--meta-connect zk://host:port[,host:port...]/path`), as Sqoop's
shared metastore: the same interface as jobs.Metastore, and a run of a job holds a lock.

    <path>/jobs/<name>    {"argv": [...], "created": t, "updated": t}; the --last-value is in argv,
                          advanced by a set() conditional on the version read when the run began
    <path>/locks/<name>   kazoo's Lock recipe: an ephemeral sequential child per contender, holding
                          "pid P on host H since T"; a killed run's goes when its session expires

URL parameters: ?session-timeout=S (default 10: how long a kill -9'ed run keeps the lock) and
connect-timeout=S (default 30: the wait for an unreachable ZooKeeper)."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import time
from urllib.parse import parse_qsl

from fastsync.transfer.jobs import JobError, refuse_saved_password, with_last_value
from fastsync.zk import ZkError, connect, join_path, split_connect

log = logging.getLogger("fastsync.jobs")

DEFAULT_PATH = "/fastsync"
PARAMS = {"session-timeout": 10.0, "connect-timeout": 30.0}


def parse_url(url: str) -> tuple[str, str, dict[str, float]]:
    """'zk://h1:2181,h2:2181/base?session-timeout=5' -> (hosts, '/base', parameters)."""
    rest, _, query = url[len("zk://"):].partition("?")
    try:
        hosts, path = split_connect(rest, "--meta-connect")
    except ZkError as exc:       # its text names `rest`; ours the whole URL
        raise JobError("--meta-connect %s: %s" % (url, str(exc).partition(": ")[2].replace(
            "expected host:port", "expected zk://host:port"))) from None
    params = dict(PARAMS)
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in PARAMS:
            raise JobError("--meta-connect %s: unknown parameter %r (known: %s)" % (url, key, ", ".join(PARAMS)))
        try:
            params[key] = float(value)
        except ValueError:
            params[key] = -1.0
        if params[key] <= 0:
            raise JobError("--meta-connect %s: %s=%s: expected a number of seconds above 0" % (url, key, value))
    return hosts, path or DEFAULT_PATH, params


def holder() -> str:
    """Who holds a lock: what the message of a run that finds it taken names."""
    return "pid %d on %s since %s" % (os.getpid(), socket.gethostname(), time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))


class ZkMetastore:
    def __init__(self, url: str):
        hosts, base, params = parse_url(url)
        try:
            self.client = connect(hosts, "--meta-connect %s" % url, wait=params["connect-timeout"],
                                  session_timeout=params["session-timeout"])
        except ZkError as exc:
            raise JobError(str(exc)) from None
        self.jobs, self.locks = join_path(base, "jobs"), join_path(base, "locks")
        self._read_at: dict[str, tuple[dict, int]] = {}     # name -> (job, znode version) as get() read it
        self._lock = None

    def _zk(self, what: str, fn, *args, passing: tuple = (), **kw):
        """fn(*args, **kw); a ZooKeeper failure (but those `passing`) as one JobError line."""
        from kazoo.exceptions import KazooException
        from kazoo.handlers.threading import KazooTimeoutError
        try:
            return fn(*args, **kw)
        except passing:
            raise
        except (KazooException, KazooTimeoutError) as exc:
            raise JobError("%s: ZooKeeper: %s%s" % (what, type(exc).__name__, (": %s" % exc) if str(exc) else "")) from None

    def _path(self, name: str) -> str:
        if not name or "/" in name or name in (".", "..") or any(ord(c) < 32 for c in name):
            raise JobError("job name %r: not a ZooKeeper node name (no '/' or control characters, not . or ..)" % name)
        return join_path(self.jobs, name)

    def _read(self, name: str) -> tuple[dict, int]:
        from kazoo.exceptions import NoNodeError
        path = self._path(name)
        try:
            data, stat = self._zk("job %s" % name, self.client.get, path, passing=(NoNodeError,))
        except NoNodeError:
            raise JobError("no saved job named %r" % name) from None
        try:
            job = json.loads(data)
            if not isinstance(job.get("argv"), list):
                raise ValueError("no argv")
        except (ValueError, AttributeError) as exc:
            raise JobError("job %s: the znode %s is not a saved job (%s)" % (name, path, exc)) from None
        return job, stat.version

    def create(self, name: str, argv: list[str]) -> None:
        from kazoo.exceptions import NodeExistsError
        refuse_saved_password(name, argv)
        now = time.time()
        data = json.dumps({"argv": argv, "created": now, "updated": now}).encode()
        try:
            self._zk("job --create %s" % name, self.client.create, self._path(name), data, makepath=True,
                     passing=(NodeExistsError,))
        except NodeExistsError:
            raise JobError("job --create %s: a job of that name exists (--delete it first)" % name) from None

    def get(self, name: str) -> list[str]:
        job, version = self._read(name)
        self._read_at[name] = (job, version)
        return job["argv"]

    def names(self) -> list[str]:
        from kazoo.exceptions import NoNodeError
        try:
            return sorted(self._zk("job --list", self.client.get_children, self.jobs, passing=(NoNodeError,)))
        except NoNodeError:
            return []

    def delete(self, name: str) -> None:
        from kazoo.exceptions import KazooException, NoNodeError
        try:
            self._zk("job --delete %s" % name, self.client.delete, self._path(name), passing=(NoNodeError,))
        except NoNodeError:
            raise JobError("no saved job named %r" % name) from None
        with contextlib.suppress(KazooException):     # NotEmpty: a run still holds or waits for it
            self.client.delete(join_path(self.locks, name))

    @contextlib.contextmanager
    def running(self, name: str, wait: bool = False):
        """Hold the job's lock for a run: taken at once, or (wait) once every earlier contender
        is gone; else a JobError naming the holder."""
        self._read(name)                     # no lock znode for a job that does not exist
        lock = self.client.Lock(join_path(self.locks, name), holder())
        what = "job --exec %s" % name
        got, holders = False, []
        for _ in range(3):                   # the holder may leave between our try and our look
            got = self._zk(what, lock.acquire, blocking=False)
            holders = [] if got else [h for h in self._zk(what, lock.contenders) if h]
            if got or holders:
                break
        if not got:
            held_by = holders[0] if holders else "another run"
            if not wait:
                raise JobError("%s: already running (%s holds its lock in ZooKeeper); use --wait to wait for it"
                               % (what, held_by))
            print("%s: waiting for the run of %s to end (--wait)" % (what, held_by), file=sys.stderr, flush=True)
            self._zk(what, lock.acquire)
        self._lock = lock
        try:
            yield
        finally:
            self._lock = None
            with contextlib.suppress(JobError):
                self._zk(what, lock.release)

    def _lock_lost(self, what: str) -> bool:
        """True if this run's lock went with its session (a stall longer than the session
        timeout): another run may hold the job now."""
        lock = self._lock
        if lock is None or lock.node is None:
            return False
        stat = self._zk(what, self.client.retry, self.client.exists, join_path(lock.path, lock.node))
        return stat is None or stat.ephemeralOwner != (self.client.client_id or (None,))[0]

    def check_held(self, name: str) -> None:
        """Before a run publishes its output: a JobError if its lock is gone, so that a run
        stalled past its session does not publish rows another run may have imported too."""
        what = "job --exec %s" % name
        if self._lock_lost(what):
            raise JobError("%s: this run's ZooKeeper session expired during the run and its lock went with it "
                           "(another run may hold the job now): its output is not published, the target and "
                           "the --last-value are left as they were" % what)

    def set_last_value(self, name: str, value) -> None:
        """Compare-and-set against the version get() read: a job changed meanwhile (another run
        advanced it, or it was re-created) is left as it is, with a JobError."""
        from kazoo.exceptions import BadVersionError, NoNodeError
        what = "job --exec %s" % name
        if self._lock_lost(what):       # published before the loss was seen: the compare-and-set still guards
            log.warning("%s: the ZooKeeper session holding this run's lock expired during the run; "
                        "the last-value is advanced only if no other run changed the job", what)
        if name not in self._read_at:
            self.get(name)
        job, version = self._read_at[name]
        job = dict(job, argv=with_last_value(job["argv"], value), updated=time.time())
        data = json.dumps(job).encode()
        try:                    # retried over a lost connection or session (kazoo makes a new one)
            stat = self._zk(what, self.client.retry, self.client.set, self._path(name), data, version=version,
                            passing=(BadVersionError, NoNodeError))
        except BadVersionError:
            now, stat = self._zk(what, self.client.get, self._path(name))
            if now == data:     # our own set, whose answer the connection lost before the retry
                self._read_at[name] = (job, stat.version)
                return
            raise JobError("%s: the job changed in ZooKeeper during this run (its znode is no longer version %d): "
                           "left as it is, this run's --last-value %s not saved" % (what, version, value)) from None
        except NoNodeError:
            raise JobError("%s: the job was deleted during this run: its --last-value %s not saved" % (what, value)) from None
        self._read_at[name] = (job, stat.version)

    def close(self) -> None:
        """Ends the session: its ephemeral nodes (a lock) go at once."""
        with contextlib.suppress(Exception):
            self.client.stop()
            self.client.close()
