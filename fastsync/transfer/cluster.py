"""--cluster: an import's splits, an export's part files, as tasks on a Dask distributed
cluster (`tcp://HOST:PORT`, a running scheduler; or `local:N`, N worker processes of one
thread each, started for the run and closed after it).

Import: each task runs one SplitSpec (splitread.run_with_retries, --retries included) into a
part file of its own attempt, `part-m-NNNNN.<ext>.attempt-<uuid>` (the uuid made in the
task, so a rerun never meets the file of an earlier one) and returns (that path, rows). The
client accepts exactly one attempt per split (the result Dask delivers), and settle_attempts
renames it to the part's name and deletes every other file of the temporary directory (the
attempts of killed workers); importer then publishes as without --cluster.

Export: each task loads one part file into a staging table of its own attempt, named
`<prefix><uuid>` with a prefix of the run's, commits it and returns (its name, rows); the
client moves the accepted tables into the target in ONE transaction, then drops every table
of the prefix (the accepted ones, and those of attempts whose worker was killed).

A worker killed mid-task: Dask's scheduler gives the task to another worker (a task whose
workers died more than `distributed.scheduler.allowed-failures` times fails, KilledWorker).
Bad input (ImportError_, ExportError) fails its task at once and is not rerun by Dask.

Passwords never travel in the task graph: the job the tasks get has its URL's password
removed; a worker puts it back from its environment (local:N: set in the forked worker) or from
--password-file, the same path on every worker (tcp://). password_refusal says which ways
are refused with tcp://.

Progress: tasks publish (split or file, rows) with the worker's log_event, at most twice a
second, to a topic of the run's that the client subscribes to, only when the client shows
a status line (a terminal).
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import threading
import time
import uuid

from fastsync.progress import Counter, Progress, Update, on_terminal

log = logging.getLogger("fastsync.cluster")

PASSWORD_ENV = "FASTSYNC_CLUSTER_PASSWORD"      # local:N: the workers' password, in their environment
CONNECT_TIMEOUT = 5.0                           # s: the scheduler must answer, and have a worker, by then
REPORT_EVERY = 0.5                              # s between progress events of one task


class ClusterError(Exception):
    """--cluster can't be used: the message names the flag and the address."""


def parse(text: str) -> tuple[str, object]:
    """--cluster's value: ("tcp", "tcp://HOST:PORT") or ("local", N); ValueError otherwise."""
    m = re.fullmatch(r"local:(\d+)", text)
    if m:
        n = int(m.group(1))
        if n < 1:
            raise ValueError("local:N needs at least 1 worker, got %d" % n)
        return "local", n
    if re.fullmatch(r"tcp://[^\s/:]+:\d+", text) or re.fullmatch(r"tcp://\[[0-9a-fA-F:]+\]:\d+", text):
        return "tcp", text
    raise ValueError("expected tcp://HOST:PORT (a running Dask scheduler) or local:N (N local worker processes), got %r"
                     % text)


def password_refusal(cluster: str | None, password: str | None, password_file: str | None, prompt: bool,
                     connect_password: bool) -> str | None:
    """The error for a password a tcp:// cluster's workers could not get but through the
    task graph (None: no problem). They read --password-file, the same path on each."""
    if not cluster or not cluster.startswith("tcp://") or password_file:
        return None
    how = ("--password" if password is not None else "-P" if prompt
           else "FASTSYNC_PASSWORD" if os.environ.get("FASTSYNC_PASSWORD") is not None
           else "the password in --connect's URL" if connect_password else None)
    if how is None:
        return None
    return ("--cluster %s: workers of a tcp:// cluster read the password from --password-file (the same path on "
            "every worker), never from the task graph; %s is refused" % (cluster, how))


@dataclasses.dataclass(frozen=True)
class Secret:
    """Where a worker finds the password (never the password itself): `env` (PASSWORD_ENV)
    or `file` (a --password-file path); none: the URL needs none."""
    kind: str = "none"
    path: str | None = None

    def apply(self, url):
        """`url` with the password put back, on the worker."""
        if self.kind == "env":
            pw = os.environ.get(PASSWORD_ENV)
            if pw is None:
                raise RuntimeError("this worker has no %s in its environment" % PASSWORD_ENV)
            return url.set(password=pw)
        if self.kind == "file":
            from fastsync.transfer.connect import read_password_file
            try:
                return url.set(password=read_password_file(self.path))
            except OSError as exc:
                raise OSError("--password-file %s on worker %s: %s" % (self.path, _worker_name(), exc.strerror)) from None
        return url


def _worker_name() -> str:
    try:
        from distributed import get_worker
        return get_worker().address
    except ValueError:
        return "?"


@contextlib.contextmanager
def session(cluster: str, url, password_file: str | None):
    """(client, Secret, url without its password): connected to the scheduler (tcp://), or
    to a LocalCluster started here (or by `starting`, while the run planned) and closed after
    (local:N)."""
    from distributed import Client
    kind, where = parse(cluster)
    password = url.password if url is not None else None
    bare = url._replace(password=None) if password is not None else url     # URL.set ignores None
    if bare is not None and bare.get_backend_name() == "sqlite" and bare.database not in (None, "", ":memory:"):
        bare = bare._replace(database=os.path.abspath(bare.database))      # a worker's working directory is its own
    local = None
    _quiet_distributed()
    if kind == "local":
        secret = Secret("env") if password is not None else Secret()
        early = _take_early(where, password)
        local = early.take() if early is not None else _ForkedCluster(cluster, where, password)
        try:
            client = Client(local.scheduler_address, set_as_default=False, timeout=CONNECT_TIMEOUT)
            client.wait_for_workers(local.n, timeout=60)
        except Exception as exc:
            local.close()
            raise ClusterError("--cluster %s: could not start the local workers: %s" % (cluster, _one_line(exc))) from None
    else:
        if password is not None and not password_file:
            raise ClusterError(password_refusal(cluster, None, None, False, True))
        secret = Secret("file", os.path.abspath(os.path.expanduser(password_file))) if password is not None else Secret()
        _probe(where)
        try:
            client = Client(where, timeout=CONNECT_TIMEOUT, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise ClusterError("--cluster %s: no Dask scheduler answered within %g s (%s)"
                               % (where, CONNECT_TIMEOUT, _one_line(exc))) from None
        try:
            client.wait_for_workers(1, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError):
            client.close()
            raise ClusterError("--cluster %s: the scheduler has no worker (waited %g s)" % (where, CONNECT_TIMEOUT)) from None
    try:
        yield client, secret, bare
    finally:
        client.close()
        if local is not None:
            local.close()


def _quiet_distributed() -> None:
    """distributed logs at INFO by default, and its client logs tracebacks when the scheduler
    goes: the command's one error line says what failed; --log-level INFO or DEBUG shows them."""
    level = logging.getLogger().getEffectiveLevel()
    # asyncio's "Future exception was never retrieved" of a comm the closing cluster dropped too
    logging.getLogger("asyncio").setLevel(max(level, logging.INFO) if level < logging.WARNING else logging.CRITICAL)
    for name in ["distributed"] + [n for n in logging.root.manager.loggerDict if n.startswith("distributed.")]:
        if name == "distributed" or logging.getLogger(name).level != logging.NOTSET:     # set by distributed's config
            logging.getLogger(name).setLevel(max(level, logging.INFO) if level < logging.WARNING else logging.CRITICAL)


class _ForkedCluster:
    """local:N as N worker processes forked from this one (which has imported distributed,
    pyarrow, SQLAlchemy and the drivers by then: a worker imports nothing) and a scheduler
    in this process. Forked before the scheduler's thread starts: this process has one
    thread at that moment. Each worker dies with this process (PR_SET_PDEATHSIG)."""

    def __init__(self, cluster: str, n: int, password):
        import multiprocessing

        import dask
        from distributed import LocalCluster
        level = logging.getLogger().getEffectiveLevel()
        env = {PASSWORD_ENV: str(password)} if password is not None else {}
        ctx = multiprocessing.get_context("fork")
        self.procs, self.pipes, self.local = [], [], None
        try:
            dask.config.set(QUIET_WORKERS)
            for i in range(n):
                mine, theirs = ctx.Pipe()
                p = ctx.Process(target=_forked_worker, args=(theirs, env, i), name="fastsync-worker-%d" % i, daemon=True)
                p.start()
                theirs.close()
                self.procs.append(p)
                self.pipes.append(mine)
            self.local = LocalCluster(n_workers=0, processes=False, protocol="tcp://", host="127.0.0.1", dashboard_address=None,
                                      silence_logs=logging.CRITICAL if level >= logging.WARNING else level,
                                      scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})
            for pipe in self.pipes:
                pipe.send(self.local.scheduler_address)
        except Exception as exc:
            self.close()
            raise ClusterError("--cluster %s: could not start the local workers: %s" % (cluster, _one_line(exc))) from None
        self.n = n

    @property
    def scheduler_address(self) -> str:
        return self.local.scheduler_address

    def close(self) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.send(None)          # a worker still waiting for the address: stop
        if self.local is not None:
            with contextlib.suppress(Exception):
                self.local.close()       # the scheduler tells its workers to close
        for p in self.procs:
            p.join(2)
            if p.is_alive():
                p.kill()
                p.join(2)


def _forked_worker(pipe, env: dict, index: int) -> None:
    """A local:N worker process: waits for the scheduler's address, then is a Dask worker of
    one thread until the scheduler closes it."""
    import ctypes
    import signal
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)      # PR_SET_PDEATHSIG: go with the command
    os.environ.update(env)
    address = pipe.recv()
    if address is None:
        return
    import asyncio

    from distributed import Worker

    async def run() -> None:
        async with Worker(address, nthreads=1, host="127.0.0.1", name="local-%d" % index, dashboard=False,
                          memory_limit=0) as worker:
            await worker.finished()
    asyncio.run(run())
    os._exit(0)


# local:N's scheduler and workers without the housekeeping a long-lived shared cluster wants
# and a run of a few long tasks does not: a worker's event loop woke every 10 ms to sample
# the task thread's stack (the profiler), every 20 ms to time itself (tick) and every 100 ms
# to read its memory; each wake-up takes the GIL from the task. Measured on one TPC-H split:
# the worker's event-loop thread used 4.4 s of CPU beside the task's 11 s, 2.0 s with these.
# One task per split: nothing to steal. (docs/transfers/cluster.md: the same for tcp://.)
QUIET_WORKERS = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.scheduler.work-stealing": False,
}


def quiet_worker_env() -> dict[str, str]:
    """QUIET_WORKERS as the environment of `dask scheduler` / `dask worker` processes."""
    return {"DASK_" + key.upper().replace(".", "__").replace("-", "_"): str(value) for key, value in QUIET_WORKERS.items()}


class _Early:
    """local:N's start: distributed imported by a thread of its own while the run plans
    (most of a second on the critical path otherwise; the planning mostly waits on the
    database, so the two overlap even on one core); take() then forks the workers."""

    def __init__(self, cluster: str, n: int, password):
        self.cluster, self.key = cluster, (n, password)
        self.local = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._start, name="fastsync-cluster-start", daemon=True)
        self.thread.start()

    def _start(self) -> None:
        try:
            import distributed  # noqa: F401  (its loggers exist from here on)
            _quiet_distributed()
        except BaseException as exc:        # handed to the thread that takes it
            self.error = exc

    def take(self):
        """The local cluster, started now (the caller closes it), or the import's error."""
        self.thread.join()
        if self.error is not None:
            raise self.error
        self.local = _ForkedCluster(self.cluster, *self.key)
        return self.local

    def close(self) -> None:
        self.thread.join()
        if self.local is not None:
            self.local.close()


_EARLY: list[_Early] = []       # the one started for the run in progress, until session takes it


def _take_early(n: int, password) -> _Early | None:
    if _EARLY and _EARLY[0].key == (n, password):
        return _EARLY.pop()
    return None


@contextlib.contextmanager
def starting(cluster: str | None, url):
    """Around a run: with local:N, its cluster starts now, in a thread, while the run plans;
    session() takes it. A run that ends before its tasks (bad input) closes it here."""
    if not cluster or not cluster.startswith("local:"):
        yield
        return
    try:
        _, n = parse(cluster)
    except ValueError:
        yield                   # session() reports it
        return
    _EARLY.append(_Early(cluster, n, url.password if url is not None else None))
    try:
        yield
    finally:
        while _EARLY:
            _EARLY.pop().close()


def _probe(address: str) -> None:
    """A refused connection fails at once (distributed's client would retry it until its
    timeout)."""
    import socket
    host, _, port = address[len("tcp://"):].rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT).close()
    except OSError as exc:
        raise ClusterError("--cluster %s: no Dask scheduler there (%s)" % (address, exc.strerror or _one_line(exc))) from None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# -- progress ----------------------------------------------------------------------------

class _Report(threading.local):
    """The running task's progress topic and item, per worker thread."""
    topic: str | None = None
    item: object = None
    last: float = 0.0


_REPORT = _Report()


def _publish(rows: int, final: bool = False) -> None:
    r = _REPORT
    if r.topic is None:
        return
    now = time.monotonic()
    if final or now - r.last >= REPORT_EVERY:
        r.last = now
        from distributed import get_worker
        get_worker().log_event(r.topic, [r.item, rows])


class _SplitProgress:
    """splitread.PROGRESS on a worker: PartSink's `PROGRESS[index] = rows`, published."""

    def __setitem__(self, index, rows) -> None:
        _publish(rows)


class _FileCounter(Counter):
    """exporter's row Counter in an export task: its rows published."""

    def add(self, n: int) -> None:
        super().add(n)
        _publish(self.rows)


@contextlib.contextmanager
def _reporting(topic: str | None, item):
    _REPORT.topic, _REPORT.item, _REPORT.last = topic, item, 0.0
    try:
        yield
    finally:
        _REPORT.topic = None


class _Tracker:
    """The client's view: rows per split (or file) from the workers' events."""

    def __init__(self, client, topic: str | None, items: list):
        self.client, self.topic, self.rows = client, topic, {i: 0 for i in items}
        self.started: set = set()
        if topic is not None:
            client.subscribe_topic(topic, self._event)

    def _event(self, event) -> None:
        item, rows = event[1]
        item = tuple(item) if isinstance(item, list) else item
        if item in self.rows:
            self.rows[item] = rows
            self.started.add(item)

    def total(self) -> int:
        return sum(self.rows.values())

    def close(self) -> None:
        if self.topic is not None:
            with contextlib.suppress(Exception):
                self.client.unsubscribe_topic(self.topic)


def _state(fut, started: bool) -> str:
    if fut.status == "finished":
        return "done"
    if fut.status in ("error", "cancelled"):
        return "failed"
    return "running" if started else "queued"


# -- import ------------------------------------------------------------------------------

def settle_attempts(stage, accepted: dict[str, str]) -> int:
    """The file operations of a cluster import, in one place: each accepted attempt (final
    part path -> attempt path) moved to its part's path, the attempts of killed workers
    (files named after a part of this run, `.attempt-...`) deleted; on any filesystem the
    staging (publish.Staging, or a local directory) is on. Returns how many were deleted."""
    import posixpath

    import pyarrow.fs as pafs

    from fastsync.transfer import publish
    from fastsync.transfer.spec import ImportError_
    fs, directory = (pafs.LocalFileSystem(), stage) if isinstance(stage, str) else (stage.fs, stage.dir)
    for final, path in accepted.items():
        try:
            publish.move(fs, path, final)
        except FileNotFoundError:
            raise ImportError_("--cluster: %s, written by a worker, is not visible here: --target-dir must be on a "
                               "filesystem this client and every worker share" % path) from None
    finals = {posixpath.basename(f) for f in accepted}
    dropped = 0
    for info in fs.get_file_info(pafs.FileSelector(directory)):
        base, sep, _ = posixpath.basename(info.path).partition(".attempt-")
        if sep and base in finals:
            publish.remove_file(fs, info.path)
            dropped += 1
    return dropped


def _import_task(spec, secret: Secret, topic: str | None) -> tuple[str, int]:
    """On a worker: one split into a part file of this attempt's own; (its path, rows)."""
    from fastsync.transfer import splitread
    path = "%s.attempt-%s" % (spec.path, uuid.uuid4().hex)
    spec = dataclasses.replace(spec, path=path, job=dataclasses.replace(spec.job, url=secret.apply(spec.job.url)))
    if topic is not None and not isinstance(splitread.PROGRESS, _SplitProgress):
        splitread.PROGRESS = _SplitProgress()
    with _reporting(topic, spec.split.index):
        rows, _ = splitread.run_with_retries(spec)
        _publish(rows, final=True)
    return path, rows


def run_import_splits(job, found, stage, ext: str, progress: bool | None, t0: float) -> int:
    """importer._run_splits on a cluster: every split a task, its accepted attempt moved to
    its part's path in `stage` (publish.Staging, or a local directory); the rows read."""
    from fastsync.transfer import importer, planner
    from fastsync.transfer.spec import ImportError_
    if job.kafka_config:
        raise ImportError_("--cluster with --kafka-config: the producer's settings would travel in the task graph; "
                           "import to Kafka without --cluster")
    show = on_terminal(progress)
    run = uuid.uuid4().hex[:8]
    try:
        with session(job.cluster, job.url, job.password_file) as (client, secret, url):
            bare = dataclasses.replace(job, url=url)
            total = planner.estimate_rows(job, found) if show is True else None     # a callback: no COUNT(*)
            topic = "fastsync-progress-%s" % run if show else None
            specs = {s.index: importer.split_spec(bare, found, s, stage, ext) for s in found.splits}
            futures = {s.index: client.submit(_import_task, specs[s.index], secret,
                                              topic, key="fastsync-import-%s-split-%05d" % (run, s.index), pure=False)
                       for s in found.splits}
            tracker = _Tracker(client, topic, list(futures))

            def status() -> Update:
                return Update(tracker.total(), time.perf_counter() - t0, total, tuple(
                    tracker.rows[i] if _state(f, i in tracker.started) == "running" else _state(f, i in tracker.started)
                    for i, f in futures.items()))
            try:
                with Progress(status, show=show, name="import-progress"):
                    results = _gather(client, futures, "split", ImportError_, job.cluster)
            finally:
                tracker.close()
    except ClusterError as exc:
        raise ImportError_(str(exc)) from None
    accepted = {specs[i].path: path for i, (path, _) in results.items()}
    if not job.kafka_topic:
        dropped = settle_attempts(stage, accepted)
        if dropped:
            log.info("--cluster: %d file(s) of attempts not accepted deleted", dropped)
    return sum(n for _, n in results.values())


def _gather(client, futures: dict, what: str, error, cluster: str) -> dict:
    """Each future's result, as they come; the first failure cancels the rest and raises
    `error` (bad input: the task's own message)."""
    from distributed import as_completed
    from distributed.scheduler import KilledWorker
    out = {}
    index = {f.key: i for i, f in futures.items()}
    try:
        for fut in as_completed(list(futures.values()), loop=client.loop):
            item = index[fut.key]
            try:
                out[item] = fut.result()
            except KilledWorker as exc:
                raise error("%s %s: the workers running it died %d times (distributed.scheduler.allowed-failures is %d)"
                            % (what, item, exc.allowed_failures + 1, exc.allowed_failures)) from None
            except error:
                raise
            except Exception as exc:
                if fut.cancelled():
                    raise error("--cluster %s: %s %s was cancelled (the scheduler is gone?): %s"
                                % (cluster, what, item, _one_line(exc))) from None
                raise error("%s %s: %s" % (what, item, _one_line(exc))) from None
    except BaseException:
        client.cancel(list(futures.values()))
        _await_cancelled(client, set(index), cluster)
        raise
    return out


def _executing(dask_worker) -> list:
    """On a worker: the keys its threads are running (cancelled ones too)."""
    return [str(ts.key) for ts in dask_worker.state.executing]


def _await_cancelled(client, keys: set, cluster: str, timeout: float = 120.0) -> None:
    """After a failure: a cancelled task already running goes on in its worker's thread
    (Dask can't stop it), writing its attempt's file or table. Waits (up to `timeout`) until
    none runs, so that what the client then removes is all there will be. (A local:N
    cluster's workers are stopped when it closes instead.)"""
    if not cluster.startswith("tcp://"):
        return
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            running = {k for keys_ in client.run(_executing).values() for k in keys_} & keys
        except Exception:           # the scheduler or a worker is gone: nothing more to wait for
            return
        if not running:
            return
        time.sleep(0.2)
    log.warning("--cluster %s: %d cancelled task(s) still running after %g s; what they write may remain",
                cluster, len(running), timeout)


# -- export ------------------------------------------------------------------------------

def _export_task(job, secret: Secret, portable: tuple, columns: list[str], prefix: str,
                 topic: str | None) -> tuple[str, int]:
    """On a worker: one part file into a staging table of this attempt's own, committed;
    (its name, rows). A failed load drops its table."""
    import sqlalchemy as sa

    from fastsync import dbio
    from fastsync.transfer import exporter
    from fastsync.transfer.formats import FileError
    from fastsync.transfer.localinfile import guard as guard_local_infile
    job = dataclasses.replace(job, url=secret.apply(job.url))
    f = _resolved(*portable)
    engine = dbio.make_engine(exporter.export_url(job))
    try:
        try:
            if engine.dialect.name in ("mysql", "mariadb"):
                guard_local_infile(engine)
            target = exporter.reflect(engine, job.table, "--table")
            converters = exporter._converters(target, columns, engine.dialect.name)
        except sa.exc.SQLAlchemyError as exc:
            raise exporter.ExportError("%s: %s" % (job.url.render_as_string(hide_password=True), dbio.reason(exc))) from None
        kinds = exporter.target_kinds(target, columns)
        stage = exporter._staging_table(lambda: exporter._create_stage(engine, target, job, prefix + uuid.uuid4().hex[:8]))
        counter = _FileCounter()
        try:
            with _reporting(topic, f.name):
                exporter._write_files(engine, stage, [f], columns, converters, kinds, job, counter)
                _publish(counter.rows, final=True)
        except FileError as exc:
            exporter._drop_stage(engine, stage)
            raise exporter.ExportError(str(exc)) from None
        except BaseException:
            exporter._drop_stage(engine, stage)
            raise
        return stage.name, counter.rows
    finally:
        engine.dispose()


def _portable(f, export_dir: str):
    """A part file as a task carries it: a local one by its absolute path (a worker's working
    directory is its own), one on another filesystem without its live filesystem object
    (the worker resolves --export-dir's URL again: _resolved)."""
    if f.fs is None:
        return dataclasses.replace(f, path=os.path.abspath(f.path)), None
    return dataclasses.replace(f, fs=None), export_dir


def _resolved(f, fs_url: str | None):
    from fastsync.transfer import publish
    return f if fs_url is None else dataclasses.replace(f, fs=publish.filesystem(fs_url))


def stage_prefix(target_name: str, run: str) -> str:
    """The run's staging tables' prefix (fits the 63 characters of a PostgreSQL name)."""
    return "%s_cstage_%s_" % (target_name[:30], run)


def run_export_files(engine, target, files: list, columns: list[str], job, counter: Counter,
                     progress: bool | None = None) -> int:
    """exporter's loading and move on a cluster: every part file a task loading a staging
    table of its own; the accepted tables moved in one transaction; every table of the run's
    prefix dropped. Returns the rows moved."""
    import sqlalchemy as sa

    from fastsync import dbio
    from fastsync.transfer import exporter
    ExportError = exporter.ExportError
    if engine.dialect.name == "sqlite":
        raise ExportError("--cluster: an SQLite file takes one writer at a time; export into it without --cluster")
    if job.staging_table:
        raise ExportError("--staging-table with --cluster: each task loads a staging table of its own")
    run = uuid.uuid4().hex[:8]
    prefix = stage_prefix(target.name, run)
    show = on_terminal(progress)
    try:
        try:
            with session(job.cluster, job.url, job.password_file) as (client, secret, url):
                bare = dataclasses.replace(job, url=url)
                topic = "fastsync-progress-%s" % run if show else None
                # absolute paths: a worker's working directory is its own
                futures = {f.name: client.submit(_export_task, bare, secret,
                                                  _portable(f, job.export_dir), columns, prefix, topic,
                                                  key="fastsync-export-%s-%s" % (run, f.name), pure=False) for f in files}
                tracker = _Tracker(client, topic, list(futures))
                stop = threading.Event()

                def follow():          # the rows of the workers into the export's status line
                    while not stop.wait(0.2):
                        counter.rows = tracker.total()
                follower = threading.Thread(target=follow, daemon=True, name="export-rows")
                follower.start()
                try:
                    results = _gather(client, futures, "file", ExportError, job.cluster)
                finally:
                    stop.set()
                    follower.join()
                    tracker.close()
        except ClusterError as exc:
            raise ExportError(str(exc)) from None
        counter.rows = sum(n for _, n in results.values())
        moved, t1 = 0, time.perf_counter()
        try:
            with engine.connect() as conn, conn.begin():
                for i, f in enumerate(files):
                    stage = exporter.reflect(engine, exporter._qualified(target.schema, results[f.name][0]), "--staging-table")
                    moved += exporter._move(conn, engine, target, stage, columns, job, first=i == 0)
        except sa.exc.SQLAlchemyError as exc:
            raise ExportError("committing the move into %s: %s" % (job.table, dbio.reason(exc))) from None
        log.info("%s: %d rows of %d staging tables moved in one transaction in %.3f s", job.table, moved, len(files),
                 time.perf_counter() - t1)
        return moved
    finally:
        drop_attempt_tables(engine, target.schema, prefix)


def drop_attempt_tables(engine, schema: str | None, prefix: str) -> int:
    """Drops every table named `prefix`...: the staging tables of a run's attempts,
    accepted or orphaned by a killed worker. Returns how many."""
    import sqlalchemy as sa

    from fastsync.transfer import exporter
    try:
        names = [n for n in sa.inspect(engine).get_table_names(schema=schema) if n.lower().startswith(prefix.lower())]
    except sa.exc.SQLAlchemyError as exc:
        log.warning("could not list the staging tables %s*: %s", prefix, _one_line(exc))
        return 0
    for name in names:
        exporter._drop_stage(engine, sa.Table(name, sa.MetaData(), schema=schema))
    return len(names)
