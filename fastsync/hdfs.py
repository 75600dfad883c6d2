"""HDFS as a pyarrow filesystem: pyarrow's libhdfs (JNI) where the machine has it, else
WebHDFS (the NameNode's REST API, through fsspec's `webhdfs`, wrapped as a pyarrow
filesystem); the log says which was chosen and why.

hdfs://host:port/path names the NameNode's RPC port (libhdfs); WebHDFS talks to its HTTP
port: webhdfs://host:port/path gives it, for hdfs:// it is dfs.namenode.http-address of
$HADOOP_CONF_DIR/hdfs-site.xml, else $FASTSYNC_WEBHDFS_PORT, else Hadoop 3's 9870.
The user is $HADOOP_USER_NAME, else the login name, as Hadoop's clients take it.
"""
from __future__ import annotations

import getpass
import logging
import os
import xml.etree.ElementTree as ET

import pyarrow.fs as pafs

log = logging.getLogger("fastsync.hdfs")

WEBHDFS_PORT = 9870
RPC_PORT = 8020
_chosen: dict = {}     # (scheme, host, port) -> filesystem: one connection per NameNode per process


def user() -> str:
    return os.environ.get("HADOOP_USER_NAME") or getpass.getuser()


def connect(scheme: str, host: str, port: int | None) -> pafs.FileSystem:
    key = (scheme, host, port)
    if key not in _chosen:
        _chosen[key] = _connect(scheme, host, port)
    return _chosen[key]


def _connect(scheme: str, host: str, port: int | None) -> pafs.FileSystem:
    if scheme == "webhdfs":
        return webhdfs(host, port or WEBHDFS_PORT, "the URL names WebHDFS")
    try:
        fs = pafs.HadoopFileSystem(host, port or RPC_PORT, user=user())
    except (OSError, RuntimeError) as exc:
        why = " ".join(str(exc).split())[:200]
        return webhdfs(host, http_port(), "no libhdfs here (%s)" % why)
    log.info("hdfs://%s:%s: through libhdfs", host, port or RPC_PORT)
    return fs


def http_port() -> int:
    conf = os.environ.get("HADOOP_CONF_DIR")
    if conf and os.path.exists(os.path.join(conf, "hdfs-site.xml")):
        for prop in ET.parse(os.path.join(conf, "hdfs-site.xml")).getroot().iter("property"):
            if (prop.findtext("name") or "").strip() == "dfs.namenode.http-address":
                return int((prop.findtext("value") or "").rsplit(":", 1)[-1])
    return int(os.environ.get("FASTSYNC_WEBHDFS_PORT") or WEBHDFS_PORT)


def webhdfs(host: str, port: int, why: str) -> pafs.FileSystem:
    from fsspec.implementations.webhdfs import WebHDFS
    log.info("hdfs://%s: through WebHDFS at http://%s:%d (%s)", host, host, port, why)
    return pafs.PyFileSystem(pafs.FSSpecHandler(WebHDFS(host, port=port, user=user())))
