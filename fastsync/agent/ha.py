"""Active/standby agents (`fastsync agent ... --ha-group NAME -z HOSTS`): the agents of a group
elect a leader in ZooKeeper; only the leader runs its sources, every agent runs its channels
and sinks (a standby drains what its channels hold).

The election is kazoo's Lock/Election recipe, built from its parts so that a lost connection is
handled here: each agent has an ephemeral sequential znode `<base>/ha/<group>/<uuid>__lock__N`
holding its `host:pid` (kazoo's names: `client.Election(path).contenders()` lists the agents);
the lowest N leads, every other agent watches the node just before its own. A leader killed
with -9 keeps its node until ZooKeeper expires its session (the session timeout); the next
agent is then told at once and starts its sources.

A leader whose connection to ZooKeeper is SUSPENDED stops its sources at once: it cannot know
whether its session, and with it its leadership, still exists (as Curator's LeaderLatch does).
If the connection comes back with the same session it still holds its node and leads again; if
the session expired (LOST), its node is gone and it enters the election again, at the back.

The role is decided by the election thread; the agent's main loop applies it (poll(): start or
stop the sources, one log line per change), so sources start and stop in one thread only.
"""
from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
import uuid

from kazoo.exceptions import KazooException, NoNodeError
from kazoo.protocol.states import KazooState

log = logging.getLogger("fastsync.ha")

LEADER, STANDBY, DISCONNECTED = "leader", "standby", "disconnected"
NODE = "__lock__"               # kazoo's Lock names its contenders <uuid>__lock__<sequence>
RECHECK = 2.0                   # seconds between checks of the group besides the watches
START_RETRY = 5.0               # seconds before a leader tries again to start sources that failed to


def check_group(name: str) -> str | None:
    """Why `name` cannot be a group (a znode name), or None."""
    if not name or name in (".", "..") or "/" in name or name == "zookeeper":
        return "not a znode name (no '/', not '.' or '..')"
    return None


class HaMember:
    """This agent's place in one HA group: the election in a thread of its own, the role as the
    agent's main loop applies it (poll), and the role's metrics (snapshot)."""

    def __init__(self, client, path: str, agent_name: str, group: str):
        self.client, self.path, self.name, self.group = client, path, agent_name, group
        self.identifier = "%s:%d" % (socket.gethostname(), os.getpid())
        self.prefix = uuid.uuid4().hex + NODE
        self.node: str | None = None          # our znode's name under path, while we have one
        self.session = None                   # the session it was created in
        self._wanted = ("", "")               # (role, leader's identifier): the election's verdict
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._connected = threading.Event()
        # as applied by poll(), for the metrics
        self.role, self.leader = "", ""
        self.changes, self.since = 0, 0
        self._retry_at = 0.0
        if client.state == KazooState.CONNECTED:
            self._connected.set()
        client.add_listener(self._on_state)
        self._thread = threading.Thread(target=self._loop, name="ha-election", daemon=True)

    def start(self) -> "HaMember":
        self._thread.start()
        return self

    # -- the election (its own thread; kazoo's callbacks only set events) --------------------

    def _on_state(self, state) -> None:
        with self._lock:
            if state == KazooState.CONNECTED:
                self._connected.set()
            else:       # SUSPENDED: maybe still leading, maybe not; LOST: our node is gone
                self._connected.clear()
                self._wanted = (DISCONNECTED, "")
        self._wake.set()

    def _want(self, role: str, leader: str) -> None:
        """The election's verdict, unless the connection was lost meanwhile (then it is stale)."""
        with self._lock:
            if self._connected.is_set():
                self._wanted = (role, leader)

    def _loop(self) -> None:
        while not self._closing.is_set():
            if not self._connected.wait(0.2):
                continue
            self._wake.clear()
            try:
                self._step()
            except KazooException as exc:       # connection lost in between: the listener says so
                log.debug("HA group %s: %r", self.group, exc)
                self._closing.wait(0.2)
                continue
            except Exception:                   # never leave the election thread
                log.warning("HA group %s: election step failed; trying again", self.group, exc_info=True)
                self._closing.wait(1.0)
                continue
            self._wake.wait(RECHECK)

    def _step(self) -> None:
        session = self.client.client_id
        if self.node is None or session != self.session:
            # (re-)enter; a create whose answer was lost may have made our node: look first
            self.node = self._ours() or self.client.create(
                "%s/%s" % (self.path, self.prefix), self.identifier.encode(), ephemeral=True, sequence=True,
                makepath=True).rsplit("/", 1)[1]
            self.session = session
        contenders = self._contenders()
        if self.node not in contenders:         # deleted by someone, or expired: enter again
            self.node = None
            self._wake.set()
            return
        i = contenders.index(self.node)
        watch = contenders[i - 1] if i else self.node     # a standby watches the one before it
        if i == 0:
            self._want(LEADER, self.identifier)
        else:
            try:
                self._want(STANDBY, self.client.get("%s/%s" % (self.path, contenders[0]))[0].decode(errors="replace"))
            except NoNodeError:
                self._wake.set()
                return
        if self.client.exists("%s/%s" % (self.path, watch), watch=lambda event: self._wake.set()) is None:
            self._wake.set()

    def _contenders(self) -> list[str]:
        """The group's nodes, the leader first."""
        seq = re.compile(re.escape(NODE) + r"(\d{10})$")
        try:
            children = self.client.get_children(self.path)
        except NoNodeError:                     # the group's znode was deleted: enter again
            return []
        nodes = [(m.group(1), c) for c in children for m in [seq.search(c)] if m]
        return [c for _, c in sorted(nodes)]

    def _ours(self) -> str | None:
        try:
            return next((c for c in self.client.get_children(self.path) if c.startswith(self.prefix)), None)
        except NoNodeError:
            return None

    # -- the agent's side ------------------------------------------------------------------

    def poll(self, agent) -> None:
        """Called by the agent's main loop: start or stop the sources for the role decided."""
        with self._lock:
            role, leader = self._wanted
        if not role:
            return
        leading = role == LEADER
        if leading and not agent.sources_on and time.monotonic() >= self._retry_at:
            try:
                agent.start_sources()
            except Exception as exc:            # e.g. a port taken: try again later, still leading
                log.error("%s: leader of HA group %s, but its sources could not start (again in %g s): %s",
                          self.name, self.group, START_RETRY, exc)
                try:
                    agent.stop_sources()
                except Exception:
                    log.exception("%s: stopping the sources that started", self.name)
                self._retry_at = time.monotonic() + START_RETRY
        elif not leading and agent.sources_on:
            agent.stop_sources()
        if (role, leader) == (self.role, self.leader):
            return
        if role != self.role:
            self.changes += 1
            self.since = int(time.time() * 1000)
        self.role, self.leader = role, leader
        if role == LEADER:
            log.info("%s: leader of HA group %s (%s): sources started", self.name, self.group, self.identifier)
        elif role == STANDBY:
            log.info("%s: standby in HA group %s (leader: %s)", self.name, self.group, leader)
        else:
            log.info("%s: no ZooKeeper connection: not leading HA group %s until it is back (its sources do not run)",
                     self.name, self.group)

    def snapshot(self) -> dict[str, str]:
        """The AGENT entry of /metrics."""
        return {"Type": "AGENT", "HaGroup": self.group, "HaRole": self.role, "HaLeader": self.leader,
                "HaId": self.identifier, "IsLeader": "1" if self.role == LEADER else "0",
                "HaRoleChangeCount": str(self.changes), "HaRoleSince": str(self.since)}

    def close(self) -> None:
        """Leave the group (our node deleted: a standby takes over at once) and disconnect."""
        if self._closing.is_set():
            return
        self._closing.set()
        self._wake.set()
        self._thread.join(10)
        self.client.remove_listener(self._on_state)
        if self.node is not None and self._connected.is_set() and self.session == self.client.client_id:
            try:
                self.client.delete("%s/%s" % (self.path, self.node))
            except KazooException:
                pass
        self.client.stop()
        self.client.close()
