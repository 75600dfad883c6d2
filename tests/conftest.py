"""Fixtures shared by the end-to-end tests; the helpers themselves are in e2e_support.py.

* agent(name, conf, *args)      start `python -m fastsync agent -n name -f conf args...`;
                                killed at teardown if still running
* run_agent(name, conf, *args)  the same, waited for (bounded); returns the AgentProcess
* flume(name, conf)             start the real Apache Flume 1.11 agent (tests/flume_support.py);
                                killed at teardown if still running
* (autouse) Kafka topics a test made are deleted after it
* zk                            the shared ZooKeeper (scripts/services.sh): .hosts, and .base, a
                                znode path of this test's own, deleted with what is under it after
* hdfs                          the test HDFS (scripts/services.sh, tests/hdfs_support.py): .url
                                (hdfs://127.0.0.1:8020), .dir, a directory of this test's own,
                                .dir_url (url + dir), .dfs(*args) (Hadoop's FsShell); .dir is
                                removed with what is under it after
* zk_ensemble(size=3)           a ZooKeeper ensemble of the test's own (tests/zk_support.py),
                                started; stopped at teardown
* s3                            a bucket of the test's own on moto's S3 server (tests/s3_support.py,
                                one server per test process): .bucket, .fs, .endpoint; the
                                environment points S3 (AWS_ENDPOINT_URL, test credentials) at it
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

from e2e_support import DEFAULT_TIMEOUT, AgentProcess, agent_argv, created_topics, delete_topics
from flume_support import flume_command
from zk_support import ZK_HOSTS, Ensemble

KAFKA = os.environ.get("FASTSYNC_TEST_KAFKA", "127.0.0.1:9092")


@pytest.fixture(autouse=True)
def _delete_created_topics():
    """The Kafka topics a test made (test_kafka.new_topic and the like add them to
    e2e_support.created_topics) are deleted after it, so the broker keeps none of them."""
    yield
    if created_topics:
        delete_topics(KAFKA, created_topics)
        created_topics.clear()


@pytest.fixture
def zk(request):
    """The shared ZooKeeper: .hosts ('127.0.0.1:2181') and .base, a path no other test uses
    ('/fastsync-test/<test name>-<pid>'), removed with its children after the test."""
    import types
    import uuid

    from kazoo.client import KazooClient
    client = KazooClient(hosts=ZK_HOSTS)
    client.start(timeout=15)
    base = "/fastsync-test/%s-%s" % (request.node.name.replace("[", "-").strip("]")[:60], uuid.uuid4().hex[:8])
    client.ensure_path(base)
    try:
        yield types.SimpleNamespace(hosts=ZK_HOSTS, base=base, client=client)
    finally:
        client.delete(base, recursive=True)
        client.stop()
        client.close()


@pytest.fixture
def hdfs(request):
    """The test HDFS: .url, .dir (/fastsync-test/<test name>-<uuid>, made empty, removed with
    what is under it after), .dir_url, .dfs(*args) -> FsShell's stdout (tests/hdfs_support.py)."""
    import re
    import types
    import uuid

    from hdfs_support import HDFS_URL, dfs, webhdfs
    d = "/fastsync-test/%s-%s" % (re.sub(r"[^A-Za-z0-9_.-]", "-", request.node.name)[:60], uuid.uuid4().hex[:8])
    webhdfs("PUT", d, "MKDIRS")
    try:
        yield types.SimpleNamespace(url=HDFS_URL, dir=d, dir_url=HDFS_URL + d, dfs=dfs)
    finally:
        webhdfs("DELETE", d, "DELETE", recursive="true")


@pytest.fixture
def zk_ensemble(tmp_path):
    """Factory: zk_ensemble(size=3) -> a started Ensemble of the test's own, stopped after."""
    made: list[Ensemble] = []

    def start(size: int = 3, tick_ms: int = 500) -> Ensemble:
        ens = Ensemble(tmp_path / ("zk%d" % len(made)), size=size, tick_ms=tick_ms)
        made.append(ens)
        return ens.start()
    try:
        yield start
    finally:
        for ens in made:
            ens.stop()


@pytest.fixture
def agent(tmp_path):
    """Factory: agent(name, conf, *extra_args, cwd=None, env=None) -> AgentProcess.
    Every process it started is killed at teardown if still running."""
    with processes(tmp_path, "agent") as spawn:
        def start(name: str, conf: Path | str, *extra: str, cwd: Path | None = None, env=None, argv=None) -> AgentProcess:
            return spawn(argv or agent_argv(name, conf, *extra), cwd=cwd, env=env)
        yield start


@pytest.fixture
def run_agent(agent):
    """run_agent(name, conf, *extra, timeout=30) -> finished AgentProcess (returncode,
    stdout, stderr); killed and failed if it runs past timeout."""
    def run(name: str, conf: Path | str, *extra: str, timeout: float = DEFAULT_TIMEOUT, **kw) -> AgentProcess:
        p = agent(name, conf, *extra, **kw)
        p.wait(timeout)
        p._close_files()
        return p
    return run


@pytest.fixture
def flume(tmp_path):
    """Factory: flume(name, conf, main=..., args=...) -> AgentProcess running the real Apache
    Flume 1.11 (its log in tmp_path/flume.log). Killed at teardown if still running."""
    with processes(tmp_path, "flume") as spawn:
        def start(name: str, conf: Path | str | None = None, **kw) -> AgentProcess:
            return spawn(flume_command(name, conf or "", tmp_path, **kw))
        yield start


@contextlib.contextmanager
def processes(tmp_path: Path, tag: str):
    """spawn(argv, cwd=None, env=None) -> AgentProcess (output in tmp_path/TAG<n>.stdout and
    .stderr); every process it started is killed on exit if still running."""
    started: list[AgentProcess] = []

    def spawn(argv: list[str], cwd: Path | None = None, env=None) -> AgentProcess:
        p = AgentProcess(argv, tmp_path, cwd=cwd or tmp_path, env=env, tag="%s%d" % (tag, len(started) + 1))
        started.append(p)
        return p

    try:
        yield spawn
    finally:
        for p in started:
            p.kill()


@pytest.fixture(scope="session")
def moto_server():
    """moto's S3 server (tests/s3_support.py), one per test process, stopped at the end."""
    from s3_support import MotoServer
    server = MotoServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3(moto_server, monkeypatch):
    """An S3 bucket of the test's own on moto's server: .bucket, .fs (pyarrow), .endpoint; the
    environment (this process's, and so the fastsync processes' it starts) points S3 at the
    server, with its test credentials."""
    import types
    import uuid
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "FASTSYNC_S3_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in moto_server.env.items():
        monkeypatch.setenv(name, value)
    bucket = "t-%s" % uuid.uuid4().hex[:12]
    moto_server.make_bucket(bucket)
    yield types.SimpleNamespace(bucket=bucket, fs=moto_server.filesystem(), endpoint=moto_server.endpoint,
                                env=moto_server.env)
