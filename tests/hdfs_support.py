"""The test HDFS (scripts/services.sh: one NameNode, one DataNode, Hadoop 3.4.1 on loopback)
and Hadoop's own client on it, to check what fastsync wrote with something that is not
fastsync. The fixture `hdfs` (tests/conftest.py) gives a test a directory of its own.

* HDFS_URL                 hdfs://127.0.0.1:8020 (FASTSYNC_TEST_HDFS)
* dfs(*args)               `hadoop fs ARGS` on it: Java's FsShell from the jars services.sh
                           fetched, e.g. dfs("-cat", path), dfs("-ls", "-R", path); its stdout,
                           AssertionError (with stderr) when it fails
* ls_recursive(path)       {path: size or None for a directory} below path, by FsShell
* webhdfs(method, path, op, **params)
                           one plain WebHDFS request to the NameNode (urllib), its JSON: what
                           the fixture makes and removes directories with (no JVM to start)
"""
from __future__ import annotations

import getpass
import json
import os
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

HDFS_URL = os.environ.get("FASTSYNC_TEST_HDFS", "hdfs://127.0.0.1:8020")
WEBHDFS = os.environ.get("FASTSYNC_TEST_WEBHDFS", "http://127.0.0.1:9870")
HADOOP_HOME = Path(os.environ.get("FASTSYNC_HADOOP_HOME") or Path.home() / ".cache" / "fastsync-hadoop")
# the same options as services.sh's hdfs_java (Java 17 and Hadoop 3.4), a small heap, quick start
JAVA = ["java", "-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Dhadoop.home.dir=%s" % HADOOP_HOME,
        "--add-opens", "java.base/java.lang=ALL-UNNAMED", "--add-opens", "java.base/java.util=ALL-UNNAMED",
        "--add-opens", "java.base/java.nio=ALL-UNNAMED"]


def classpath() -> str:
    libs = HADOOP_HOME / "libs"
    if not (libs / ".pom.sha256").exists():
        raise AssertionError("no Hadoop jars in %s: run `bash scripts/services.sh up`" % libs)
    return "%s:%s/*" % (HADOOP_HOME / "conf", libs)


def dfs(*args: str, check: bool = True, timeout: float = 120) -> str:
    """FsShell ARGS against the test HDFS; its stdout."""
    argv = JAVA + ["-cp", classpath(), "org.apache.hadoop.fs.FsShell", "-fs", HDFS_URL, *map(str, args)]
    p = subprocess.run(argv, capture_output=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError("hadoop fs %s: exit %d\n%s" % (" ".join(map(str, args)), p.returncode,
                                                           p.stderr.decode("utf-8", "replace")[-3000:]))
    return p.stdout.decode("utf-8", "replace")


def exists(path: str) -> bool:
    return subprocess.run(JAVA + ["-cp", classpath(), "org.apache.hadoop.fs.FsShell", "-fs", HDFS_URL, "-test", "-e", path],
                          capture_output=True, timeout=120).returncode == 0


def ls_recursive(path: str) -> dict[str, int | None]:
    """Every file and directory below path: {path: size, or None for a directory}."""
    out = {}
    for line in dfs("-ls", "-R", path).splitlines():
        parts = line.split(None, 7)
        if len(parts) == 8 and parts[0][0] in "d-":
            out[parts[7]] = None if parts[0].startswith("d") else int(parts[4])
    return out


def webhdfs(method: str, path: str, op: str, timeout: float = 30.0, **params):
    query = {"op": op, "user.name": os.environ.get("HADOOP_USER_NAME") or getpass.getuser(), **params}
    url = "%s/webhdfs/v1%s?%s" % (WEBHDFS, urllib.parse.quote(path), urllib.parse.urlencode(query))
    with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=timeout) as r:
        return json.loads(r.read() or b"null")
