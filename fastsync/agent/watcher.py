"""Live reload, as Flume's polling configuration provider (of a file; fastsync.agent.zkconfig
watches a znode and applies changes the same way)."""
from __future__ import annotations

import logging
import time

from fastsync.agent.config import load_agent_config
from fastsync.agent.errors import ConfigError

log = logging.getLogger("fastsync")


class ConfigWatcher:
    """The file is read again every `interval` s; when its text changed, a valid new
    configuration is applied with Agent.reload (only changed components restart), an invalid
    one is logged and ignored (with `strict`, one with keys nobody reads is invalid too)."""

    def __init__(self, path: str, name: str, interval: float, strict: bool = False):
        self.path, self.name, self.interval, self.strict = path, name, interval, strict
        self.text = self._read()
        self.next = time.monotonic() + interval

    def _read(self) -> str | None:
        try:
            with open(self.path, encoding="utf-8") as f:
                return f.read()
        except (OSError, UnicodeDecodeError):
            return None

    def poll(self, agent) -> None:
        if time.monotonic() < self.next:
            return
        self.next = time.monotonic() + self.interval
        text = self._read()
        if text is None or text == self.text:
            return
        self.text = text
        apply_change(agent, lambda: load_agent_config(self.path, self.name, self.strict))


def apply_change(agent, load) -> bool:
    """Agent.reload with the configuration load() returns; an invalid one is logged and the
    running one kept. True if it was applied (also when applying it failed part-way)."""
    try:
        new = load()
    except ConfigError as exc:
        log.error("configuration change rejected, the running configuration is kept: %s", exc)
        return False
    try:
        agent.reload(new)
    except Exception as exc:      # e.g. a new source's port is taken
        log.error("configuration change could not be applied fully: %s", exc)
    return True
