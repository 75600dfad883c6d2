"""An agent's configuration in ZooKeeper, as Flume's ZooKeeper configuration provider: the
whole properties text in the znode <base>/<agent> (`-z HOSTS -p /flume -n a1` reads
/flume/a1), read at start and watched while the agent runs.

A change is applied as a changed file is (watcher.apply_change: only changed components
restart, an invalid text is logged and the running configuration kept). kazoo's DataWatch
calls us from its own thread; the text is handed to the agent's main loop, which applies
it. While the connection or the session is lost the agent runs on what it has; the
DataWatch reads the znode again (and sets a new watch) whenever a connection is back,
also in a new session after an expiry, so a change made meanwhile is applied then."""
from __future__ import annotations

import logging
import threading

from fastsync.agent.config import AgentConfig, agent_config_from_text
from fastsync.agent.watcher import apply_change
from fastsync.zk import ZkError, connect, join_path, split_connect

log = logging.getLogger("fastsync.zkconfig")
DEFAULT_BASE = "/flume"      # Flume's default -p


class ZkConfig:
    """The znode holding agent `name`'s configuration: `connect` is -z's text
    (host:port[,host:port...][/chroot]), `base` -p's."""

    def __init__(self, connect: str, base: str, name: str):
        self.hosts, chroot = split_connect(connect, "-z")
        self.name = name
        self.path = join_path(chroot, base or DEFAULT_BASE, name)
        self.where = "zk://%s%s" % (self.hosts, self.path)
        self.client = None
        self.closing = False

    def connect(self, wait: float, session_timeout: float) -> "ZkConfig":
        self.client = connect(self.hosts, "-z", wait, session_timeout)
        return self

    def read(self) -> tuple[str, int]:
        """The text and its znode version; ZkError if there is no such znode."""
        from kazoo.exceptions import KazooException, NoNodeError
        try:
            data, stat = self.client.get(self.path)
        except NoNodeError:
            raise ZkError("%s: no such znode (upload the agent's configuration with "
                          "`fastsync zk put-config -z %s -p ... -n %s -f FILE`)" % (self.where, self.hosts, self.name)) from None
        except KazooException as exc:
            raise ZkError("%s: cannot read: %s" % (self.where, type(exc).__name__)) from None
        return self.decode(data), stat.version

    def decode(self, data: bytes | None) -> str:
        try:
            return (data or b"").decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ZkError("%s: not UTF-8 text: %s" % (self.where, exc)) from None

    def parse(self, text: str, strict: bool = False) -> AgentConfig:
        return agent_config_from_text(text, self.where, self.name, strict)

    def put(self, text: str) -> int:
        """Creates the znode (and its parents) or sets it; its new version."""
        from kazoo.exceptions import NodeExistsError
        data = text.encode("utf-8")
        try:
            self.client.create(self.path, data, makepath=True)
            return 0
        except NodeExistsError:
            return self.client.set(self.path, data).version

    def close(self) -> None:
        self.closing = True         # the session's end is ours: no warning about it
        if self.client is not None:
            self.client.stop()
            self.client.close()
            self.client = None


class ZkConfigWatcher:
    """Watches the znode from `text` (version `version`) on; the agent's main loop calls
    poll(agent), which applies the latest change. metrics() is the AGENT.<name> group."""

    def __init__(self, zk: ZkConfig, text: str, version: int, strict: bool = False):
        from kazoo.recipe.watchers import DataWatch
        self.zk, self.text, self.version, self.strict = zk, text, version, strict
        self.applied = text         # the text of the running configuration; `version` is its znode's
        self.reloads = self.rejected = 0
        self.connected = True
        self._lock = threading.Lock()
        self._pending: tuple | None = None      # (data, stat) the DataWatch saw last, not applied yet
        zk.client.add_listener(self._state)
        DataWatch(zk.client, zk.path, self._changed)

    def _state(self, state: str) -> None:
        # kazoo's connection thread: only log and note, never block
        was = self.connected
        self.connected = state == "CONNECTED"
        if self.zk.closing:
            return
        if state == "SUSPENDED":
            log.warning("ZooKeeper connection lost; agent %s runs on its last good configuration until it is back",
                        self.zk.name)
        elif state == "LOST":
            log.warning("ZooKeeper session expired; agent %s runs on its last good configuration; a new session "
                        "will read %s again", self.zk.name, self.zk.where)
        elif state == "CONNECTED" and not was:
            log.info("ZooKeeper connection back; %s read and watched again", self.zk.where)

    def _changed(self, data, stat, event=None) -> None:
        with self._lock:
            self._pending = (data, stat)

    def poll(self, agent) -> None:
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is None:
            return
        data, stat = pending
        if stat is None:
            log.error("%s was deleted; agent %s keeps its running configuration", self.zk.where, self.zk.name)
            return
        try:
            text = self.zk.decode(data)
        except ZkError as exc:
            log.error("configuration change rejected, the running configuration is kept: %s", exc)
            self.rejected += 1
            return
        if text == self.text:
            self.version = stat.version if text == self.applied else self.version
            return
        self.text = text
        log.info("agent %s: configuration changed in %s (version %d)", self.zk.name, self.zk.where, stat.version)
        if apply_change(agent, lambda: self.zk.parse(text, self.strict)):
            self.reloads += 1
            self.applied, self.version = text, stat.version
        else:
            self.rejected += 1

    def metrics(self) -> dict:
        return {"AGENT.%s" % self.zk.name: {
            "Type": "AGENT", "ConfigSource": self.zk.where, "ConfigVersion": str(self.version),
            "ConfigReloadCount": str(self.reloads), "ConfigRejectedCount": str(self.rejected),
            "ZkConnected": "1" if self.connected else "0"}}
