"""`fastsync.Agent`: an agent built (or read) in Python and run in this process by the same
runtime as `fastsync agent`.

No second code path: the builder only writes Flume keys. Validating, starting or running turns
them into properties text (`to_properties()`) and reads that with the parser of
`fastsync agent -f`, so the checks, the --strict warnings and the located errors are the CLI's,
word for word. Only the place an error names differs: the file (or `<string>`) an agent was read
from while it is unchanged, else `<Agent NAME>` and the line of `to_properties()`.

"The same properties" means the same set of keys and values for the agent (a file's comments,
its order and other agents' keys aside). `to_properties()` writes them in one canonical order,
so two agents with the same keys give the same text, and reading that text back gives it again:
  1. `<agent>.sources`, `.channels`, `.sinks`, `.sinkgroups`;
  2. each listed source, channel, sink and sink group, in the order listed, a blank line before
     each: its `type` (a group: `sinks`, `processor.type`), then its binding (`channels` of a
     source, `channel` of a sink), then its other keys sorted; a source's interceptors last, in
     the order listed, each `type` first then its keys sorted;
  3. the agent's keys that belong to no listed component, sorted (Flume ignores them;
     validating warns about each, as the CLI does).
"""
from __future__ import annotations

import builtins
import os
import signal
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Union

from fastsync.agent.component import CHANNELS, INTERCEPTORS, SINKS, SOURCES, Registry
from fastsync.agent.config import KINDS, AgentConfig, agent_config_from_text, parse_agent_config, read_config_file
from fastsync.agent.errors import ConfigError
from fastsync.agent.properties import parse_properties

if TYPE_CHECKING:
    from fastsync.agent.agent import Agent as Runtime
    from fastsync.agent.agent import Run
    from fastsync.agent.metrics import MetricsServer

__all__ = ["Agent", "ConfigError", "Value"]

# a key's value: written as text, a bool as true/false, a list (of names) joined by spaces;
# None leaves the key out. (`keys={...}` takes Mapping[str, object], so that a dict a user built,
# which mypy types dict[str, object], type-checks; its values are checked when set.)
Value = Union[str, int, float, "os.PathLike[str]", Sequence[Union[str, int]], None]
# a component's type: a Flume alias or class name, `mypkg.mod:Class`, or a component class
TypeName = Union[str, builtins.type]

# per kind of component: the keys written first, in this order (see the module's docstring)
_FIRST = {"sources": ("type", "channels"), "channels": ("type",), "sinks": ("type", "channel"),
          "sinkgroups": ("sinks", "processor.type")}


class Agent:
    """A Flume agent built key by key, e.g.

        a = (Agent("a1")
             .source("r1", "seq", channels=["c1"], totalEvents=1000, batchSize=100)
             .channel("c1", "memory", capacity=10000, transactionCapacity=100)
             .sink("k1", "file_roll", channel="c1", keys={"sink.directory": "out", "sink.rollInterval": 0}))
        run = a.run()              # until the finite sources are exhausted and the channels drained

    Each method writes the keys a properties file would have (`a1.sources.r1.type = seq`, ...)
    and returns the agent, so calls chain. Keys with dots go in `keys={...}` (or `**{...}`).
    Problems are found when validating, starting or running, as by `fastsync agent`: a
    ConfigError with the CLI's located message."""

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ValueError("an agent's name must be a non-empty string, got %r" % (name,))
        self.name = name
        self._keys: dict[str, str] = {}        # relative to "<name>.", in the order written
        # the text and place the agent was read from, while unchanged: errors name them
        self._origin: tuple[str, str] | None = None
        self._runtime: Runtime | None = None
        self._running = False
        self._server: MetricsServer | None = None
        self._stop_flag: _StopFlag | None = None     # set while run() blocks: stop() sets it
        self._run_done = threading.Event()
        self._last_run: Run | None = None

    # -- building -----------------------------------------------------------------------------

    def source(self, name: str, type: TypeName, /, channels: str | Sequence[str] | None = None,
               keys: Mapping[str, object] | None = None, **more: Value) -> Agent:
        """Add source `name` of `type`, putting into `channels` (a name or a list)."""
        self._add("sources", name, SOURCES, type, {"channels": channels}, keys, more)
        return self

    def channel(self, name: str, type: TypeName, /, keys: Mapping[str, object] | None = None, **more: Value) -> Agent:
        """Add channel `name` of `type`."""
        self._add("channels", name, CHANNELS, type, {}, keys, more)
        return self

    def sink(self, name: str, type: TypeName, /, channel: str | None = None,
             keys: Mapping[str, object] | None = None, **more: Value) -> Agent:
        """Add sink `name` of `type`, taking from `channel`."""
        self._add("sinks", name, SINKS, type, {"channel": channel}, keys, more)
        return self

    def interceptor(self, source: str, name: str, type: TypeName, /, keys: Mapping[str, object] | None = None,
                    **more: Value) -> Agent:
        """Add interceptor `name` of `type` at the end of `source`'s chain."""
        prefix = "sources.%s.interceptors.%s." % (source, name)
        values = _values(prefix, {"type": _type_name(type, INTERCEPTORS)}, keys, more)
        self._write("sources.%s.interceptors" % source, name, values)
        return self

    def sinkgroup(self, name: str, /, sinks: Sequence[str], processor: str | None = "failover",
                  keys: Mapping[str, object] | None = None, **more: Value) -> Agent:
        """Add sink group `name` of `sinks`, run by `processor` (failover, load_balance, default).
        The processor's keys may be given without their `processor.` prefix:
        `keys={"priority.k1": 10}` is `processor.priority.k1 = 10`."""
        given = {k if k.startswith("processor.") else "processor." + k: v for k, v in {**(keys or {}), **more}.items()}
        values = _values("sinkgroups.%s." % name, {"sinks": sinks, "processor.type": processor}, given, {})
        self._write("sinkgroups", name, values)
        return self

    def set(self, key: str, value: Value) -> Agent:
        """Set one key, named relative to the agent (`sinks.k1.sink.rollInterval`); None removes it."""
        self._write(None, "", _values("", {key: value}, None, {}))
        return self

    def _add(self, kind: str, name: str, registry: Registry, type: TypeName, binding: dict[str, object],
             keys: Mapping[str, object] | None, more: Mapping[str, object]) -> None:
        values = _values("%s.%s." % (kind, name), {"type": _type_name(type, registry), **binding}, keys, more)
        self._write(kind, name, values)

    def _write(self, list_key: str | None, name: str, values: dict[str, str | None]) -> None:
        """Append `name` to the list-valued key `list_key` (`sources`), as a file would list it
        (twice: the validation says so), and set the keys (None: remove)."""
        if not isinstance(name, str):
            raise TypeError("a component's name is a str, got %r" % (name,))
        self._origin = None
        if list_key is not None:
            old = self._keys.get(list_key, "")
            self._keys[list_key] = (old + " " + name).strip() if old.strip() else name
        for k, v in values.items():
            if v is None:
                self._keys.pop(k, None)
            else:
                self._keys[k] = v

    # -- properties -----------------------------------------------------------------------------

    @classmethod
    def from_properties(cls, source: str | os.PathLike[str], name: str) -> Agent:
        """Agent `name` of a Flume properties file, or of properties text: a path-like object,
        or a str without a line break, is a file's path; a str with line breaks is the text.
        Only the keys of agent `name` are kept. Raises ConfigError (located) if the file cannot
        be read or parsed, or has no keys for `name`."""
        if isinstance(source, os.PathLike) or "\n" not in source and "\r" not in source:
            where = os.fspath(source)
            text = read_config_file(where)
        else:
            text, where = source, "<string>"
        props = parse_properties(text, where)
        prefix = name + "."
        agent = cls(name)
        agent._keys = {k[len(prefix):]: p.value for k, p in props.items() if k.startswith(prefix)}
        if not agent._keys:
            parse_agent_config(props, name, where)      # raises the CLI's "no keys for agent" error
        agent._origin = (text, where)
        return agent

    def to_properties(self) -> str:
        """The agent's keys as Flume properties text, in the canonical order (module docstring)."""
        text = "\n\n".join("\n".join("%s = %s" % (_escape_key(self.name + "." + k), _escape_value(self._keys[k]))
                                     for k in block) for block in self._blocks() if block)
        return text + "\n" if text else ""

    def _blocks(self) -> list[list[str]]:
        """The agent's keys (relative) in blocks: the lists, each component, the rest."""
        keys = self._keys
        blocks = [[k for k in KINDS if k in keys]]
        # the keys of each (kind, name), found in one pass
        by_component: dict[tuple[str, str], list[str]] = {}
        for k in keys:
            parts = k.split(".", 2)
            if len(parts) == 3 and parts[0] in KINDS:
                by_component.setdefault((parts[0], parts[1]), []).append(parts[2])
        placed = set(blocks[0])
        for kind in KINDS:
            for name in dict.fromkeys(keys.get(kind, "").split()):
                rest = by_component.pop((kind, name), [])
                if not rest:
                    continue
                prefix = "%s.%s." % (kind, name)
                ordered = _component_order(kind, rest, keys.get(prefix + "interceptors", ""))
                blocks.append([prefix + r for r in ordered])
                placed.update(blocks[-1])
        blocks.append(sorted(k for k in keys if k not in placed))
        return blocks

    # -- validating and running ---------------------------------------------------------------

    def validate(self, strict: bool = False) -> Agent:
        """Check the agent as `fastsync agent --validate` does; raises ConfigError. With
        `strict`, keys nobody reads are errors (an UnknownKeysError, a ConfigError whose
        `problems` holds one located error per key) rather than logged warnings."""
        self._config(strict)
        return self

    def _config(self, strict: bool) -> AgentConfig:
        text, where = self._origin or (self.to_properties(), "<Agent %s>" % self.name)
        return agent_config_from_text(text, where, self.name, strict)

    def start(self, strict: bool = False, metrics_port: int | None = None) -> Agent:
        """Validate, then start the agent's threads and return at once (stop() stops them).
        With `metrics_port`, /metrics is served on 127.0.0.1 as with `--metrics-port`
        (0: any free port, see `metrics_url`)."""
        runtime = self._prepare(strict)
        self._bind(metrics_port)
        try:
            runtime.start()
        except BaseException:
            self._unserve()
            raise
        self._running = True
        return self

    def stop(self, drain_timeout: float = 30.0) -> bool:
        """Stop the sources, let the sinks drain the channels for up to `drain_timeout` s, stop
        the rest; True if every channel was drained. From another thread while run() blocks:
        makes run() stop so, and waits for it. Nothing running: True."""
        flag = self._stop_flag
        if flag is not None:
            flag.set()
            self._run_done.wait()
            return self._last_run.drained if self._last_run is not None else True
        if not self._running or self._runtime is None:
            return True
        try:
            return self._runtime.stop(drain_timeout)
        finally:
            self._running = False
            self._unserve()

    def run(self, until_done: bool = True, drain_timeout: float = 30.0, strict: bool = False,
            metrics_port: int | None = None) -> Run:
        """Start and block: with `until_done` (`--exit-when-done`) until the finite sources are
        exhausted and the channels drained, else until stop() is called from another thread;
        SIGINT/SIGTERM (Ctrl-C) stop it too when called on the main thread, as they stop
        `fastsync agent`. Returns how it ended: .drained, .seconds, .delivered."""
        runtime = self._prepare(strict)
        self._bind(metrics_port)
        self._run_done.clear()
        self._last_run = None
        flag = self._stop_flag = _StopFlag()
        previous = _on_signals(flag.set)
        try:
            self._running = True
            self._last_run = runtime.run(flag, exit_when_done=until_done, drain_timeout=drain_timeout, progress=False)
            return self._last_run
        finally:
            _restore_signals(previous)
            self._running = False
            self._stop_flag = None
            self._unserve()
            self._run_done.set()

    def _prepare(self, strict: bool) -> Runtime:
        from fastsync.agent.agent import Agent as Runtime
        if self._running:
            raise RuntimeError("agent %s is already running" % self.name)
        self._runtime = Runtime(self._config(strict))
        return self._runtime

    def _bind(self, port: int | None) -> None:
        """Serve /metrics on `port` (bound first: a port in use fails before anything starts)."""
        if port is None or self._runtime is None:
            return
        from fastsync.agent.metrics import MetricsServer
        self._server = MetricsServer(port, self._runtime.metrics)
        self._server.start()

    def _unserve(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    @property
    def metrics_url(self) -> str | None:
        """http://127.0.0.1:PORT/metrics while started with a metrics_port, else None."""
        return None if self._server is None else "http://127.0.0.1:%d/metrics" % self._server.port

    @property
    def running(self) -> bool:
        return self._running

    def metrics(self) -> dict[str, dict[str, str]]:
        """Flume's counters per component, as the /metrics endpoint serves them:
        {"SOURCE.r1": {"EventAcceptedCount": "10", ...}, "CHANNEL.c1": {...}, "SINK.k1": {...}},
        every value a string. Those of the last start or run once it stopped; {} before."""
        return {} if self._runtime is None else self._runtime.metrics()

    def __enter__(self) -> Agent:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        listed = ", ".join("%s %s" % (k, self._keys[k]) for k in KINDS if self._keys.get(k, "").strip())
        return "<Agent %s: %s>" % (self.name, listed or "empty")


class _StopFlag:
    """run()'s stop flag: set by stop() from another thread or by a signal handler, so not a
    threading.Event (see fastsync.signals.SignalFlag, whose wait() it shares)."""

    def __init__(self) -> None:
        from fastsync.signals import SignalFlag
        self._flag = SignalFlag()
        self.set, self.is_set, self.wait = self._flag.set, self._flag.is_set, self._flag.wait


def _on_signals(handler: Any) -> dict[int, Any]:
    """On the main thread: SIGINT and SIGTERM call handler() until _restore_signals; the
    handlers they had. Elsewhere (signals reach only the main thread): nothing."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous: dict[int, Any] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, lambda _signum, _frame: handler())
    return previous


def _restore_signals(previous: dict[int, Any]) -> None:
    for sig, old in previous.items():
        signal.signal(sig, old)


def _values(prefix: str, first: Mapping[str, object], keys: Mapping[str, object] | None,
            more: Mapping[str, object]) -> dict[str, str | None]:
    """{prefix + key: text, or None to remove it}: the arguments `first` (type, binding), then
    `keys`, then the keywords; all checked before anything is written. A key that is also an
    argument of its own (`type`, a given `channels`) is a TypeError, as Python's keywords are."""
    given: dict[str, object] = dict(first)
    for extra in (keys or {}), more:
        for k, v in extra.items():
            if not isinstance(k, str) or not k:
                raise TypeError("a key is a non-empty str, got %r" % (k,))
            if first.get(k) is not None:
                raise TypeError("key %r given twice (it is an argument of its own)" % k)
            given[k] = v
    return {prefix + k: None if v is None else _text(v, prefix + k) for k, v in given.items()}


def _type_name(kind: TypeName, registry: Registry) -> str:
    """A type as a config names it: a str as given; a built-in component's class by its alias;
    another class by its import path, `module:QualifiedName`."""
    if isinstance(kind, str):
        return kind
    if isinstance(kind, builtins.type):
        alias = getattr(kind, "TYPE", None)
        if isinstance(alias, str) and registry.lookup(alias) is kind:
            return alias
        return "%s:%s" % (kind.__module__, kind.__qualname__)
    raise TypeError("a component's type is a str or a class, got %r" % (kind,))


def _text(value: object, key: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Sequence) and all(isinstance(v, (str, int)) for v in value):
        return " ".join(map(str, value))
    raise TypeError("%s: a value is a str, number, bool, path or list of names, got %r" % (key, value))


def _component_order(kind: str, rest: list[str], interceptors: str) -> list[str]:
    """A component's keys (relative to it) in the canonical order; `interceptors`: the value
    of a source's interceptors key."""
    first = [k for k in _FIRST[kind] if k in rest]
    if kind != "sources":
        return first + sorted(k for k in rest if k not in first)
    own = sorted(k for k in rest if k not in first and k != "interceptors" and not k.startswith("interceptors."))
    chain = ["interceptors"] if "interceptors" in rest else []
    left = {k for k in rest if k.startswith("interceptors.")}
    for iname in dict.fromkeys(interceptors.split()):
        mine = sorted(k for k in left if k.startswith("interceptors.%s." % iname))
        typed = "interceptors.%s.type" % iname
        chain += ([typed] if typed in mine else []) + [k for k in mine if k != typed]
        left -= set(mine)
    return first + own + chain + sorted(left)


# characters escaped in a key (they would end it) and in a value (they would be lost or garble it)
_KEY_ESCAPES = {"\\": "\\\\", " ": "\\ ", "=": "\\=", ":": "\\:", "\t": "\\t", "\f": "\\f", "\n": "\\n", "\r": "\\r"}
_VALUE_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\f": "\\f", "\n": "\\n", "\r": "\\r"}


def _escape(text: str, table: dict[str, str]) -> str:
    return "".join(table.get(c) or ("\\u%04x" % ord(c) if ord(c) < 0x20 or ord(c) == 0x7f else c) for c in text)


def _escape_key(key: str) -> str:
    out = _escape(key, _KEY_ESCAPES)
    return "\\" + out if out[:1] in ("#", "!") else out      # not a comment


def _escape_value(value: str) -> str:
    # leading and trailing spaces kept visibly (a parser drops the leading ones, an editor the trailing)
    body = value.strip(" ")
    lead = len(value) - len(value.lstrip(" "))
    trail = len(value) - len(value.rstrip(" ")) if body else 0
    return "\\ " * lead + _escape(body, _VALUE_ESCAPES) + "\\ " * trail
