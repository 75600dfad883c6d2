"""ZooKeeper for the agent and the job metastore: the connection string and a started kazoo
client, with a bounded wait for a server that is not up yet and one-line errors."""

from __future__ import annotations

import logging
import time

log = logging.getLogger("fastsync.zk")

# kazoo logs every reconnect attempt at INFO, with tracebacks at WARNING: our own lines say it
logging.getLogger("kazoo.client").setLevel(logging.ERROR)
logging.getLogger("kazoo.protocol.connection").setLevel(logging.ERROR)


class ZkError(Exception):
    """A ZooKeeper problem worth one line to the user (unreachable, bad path, lost node)."""


def split_connect(text: str, what: str) -> tuple[str, str]:
    """'h1:2181,h2:2181/base/path' -> ('h1:2181,h2:2181', '/base/path'); the path is '' if absent.
    `what` names the flag or key in the error for a string that is not one."""
    hosts, slash, path = text.strip().partition("/")
    problem = None
    if not hosts:
        problem = "no host:port"
    else:
        for hp in hosts.split(","):
            host, _, port = hp.strip().rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                problem = "%r is not host:port" % hp
                break
    if problem:
        raise ZkError("%s %s: %s (expected host:port[,host:port...][/path])" % (what, text, problem))
    path = ("/" + path.strip("/")) if slash and path.strip("/") else ""
    return hosts, path


def join_path(*parts: str) -> str:
    """A znode path from pieces, each with or without slashes: join_path('/flume/', 'a1')."""
    inner = "/".join(p.strip("/") for p in parts if p.strip("/"))
    return "/" + inner


def connect(hosts: str, what: str, wait: float = 30.0, session_timeout: float = 10.0):
    """A started KazooClient on `hosts`; while no server answers, one WARNING line, then retries
    for up to `wait` seconds before ZkError. Once connected it reconnects by itself for good
    (a lost session is the caller's to watch with add_listener)."""
    from kazoo.client import KazooClient
    from kazoo.handlers.threading import KazooTimeoutError

    deadline = time.monotonic() + wait
    warned = False
    while True:
        client = KazooClient(hosts=hosts, timeout=session_timeout,
                             connection_retry={"max_tries": -1, "max_delay": 2.0},
                             command_retry={"max_tries": 3, "max_delay": 2.0})
        left = deadline - time.monotonic()
        try:
            client.start(timeout=max(min(3.0, left), 0.1))   # kazoo stops the client on a timeout
            return client
        except KazooTimeoutError:
            pass
        left = deadline - time.monotonic()
        if left <= 0:
            raise ZkError("%s: ZooKeeper at %s unreachable (no answer within %.0f s)" % (what, hosts, wait))
        if not warned:
            log.warning("%s: ZooKeeper at %s does not answer; retrying for up to %.0f s", what, hosts, left)
            warned = True
