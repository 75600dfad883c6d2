"""Custom sources, sinks and interceptors: subclass one of the bases here, declare its keys
with `setting()`, and name the class in a configuration as Flume names a class:

    a1.sinks.k1.type = mypkg.sinks:CountSink      # or mypkg.sinks.CountSink
    a1.sinks.k1.type = count                      # an entry point of group fastsync.components

A component runs on the agent's own runtime (transactions, backoff, metrics, validation):

- `Sink.deliver(batch)`: the runtime takes a batch from the channel, calls it, commits the take
  when it returns and rolls it back (to be delivered again after Flume's backoff) when it raises;
- `Source.poll()`: returns an EventBatch (the runtime puts it into the channels, retrying the
  events a full channel refused, never polling past them) or None (nothing now: Flume's backoff);
  a source that is fed by its own threads implements `start()` instead and calls `self.put(batch)`;
- `Interceptor.intercept(batch)`: returns the batch to put, e.g. computed with pyarrow.compute.

Keys are class attributes declared with `setting()`, collected into the component's Config
dataclass when the class is defined; a value reads as `self.<attribute>` (or
`self.config.<attribute>`). `start()` and `stop()` are hooks: override them without calling
super(). See docs/python/plugins.md.
"""
from __future__ import annotations

import dataclasses
import importlib
import logging
import threading
import types
from typing import Any, Callable, ClassVar

from fastsync.agent import interceptors as _interceptors
from fastsync.agent import sink as _sink
from fastsync.agent import source as _source
from fastsync.agent.component import ComponentConfig, Place
from fastsync.agent.component import setting as _setting
from fastsync.agent.errors import ChannelException, ChannelFullException, ConfigError
from fastsync.event import EventBatch

__all__ = ["Source", "Sink", "Interceptor", "setting", "EventBatch", "ENTRY_POINTS", "load_class"]

log = logging.getLogger("fastsync.plugins")
ENTRY_POINTS = "fastsync.components"     # the entry-point group installed packages declare components in
PUT_RETRY = 0.1     # seconds between a put() refused by a full channel and its retry (the put itself waited keep-alive)


def setting(key: str | None = None, default: Any = dataclasses.MISSING, doc: str = "", *,
            min: float | None = None, max: float | None = None, choices: tuple | None = None,
            check: Callable[[Any], None] | None = None) -> Any:
    """A key of a component, as a class attribute whose annotation (int, float, bool, str or
    list[str]) says how its value is parsed: `port: int = setting(default=8080, doc="...", min=1)`.

    key: the key in the configuration (default: the attribute's name; give one with dots or
    Flume's spelling, e.g. "sink.directory"); no default: the key is required; min/max/choices:
    checked bounds; check: a function of the parsed value that raises ValueError when it is bad
    (its message becomes the located error). The built-in components use the same declaration."""
    f = _setting(key or "", default, doc, min=min, max=max, choices=choices)
    f.metadata = types.MappingProxyType({**f.metadata, "key": key, "check": check})
    return f


class _Settings:
    """What the bases share: settings collected into a Config dataclass, and start/stop hooks
    that the runtime's own start/stop (counters' start and stop times) wrap."""

    _RESERVED: ClassVar[frozenset[str]] = frozenset()
    _KIND: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        c: Any = cls        # its Config is the runtime base's (each its own type)
        declared = _declared_settings(cls)
        if declared:
            if "Config" in cls.__dict__:
                raise TypeError("%s: declare settings as class attributes or give a Config dataclass, not both"
                                % cls.__qualname__)
            clash = sorted(set(declared) & cls._RESERVED)
            if clash:
                raise TypeError("%s: a setting cannot be called %s: the %s base uses that name (rename the attribute; "
                                "setting(key=...) keeps the key)" % (cls.__qualname__, ", ".join(clash), cls._KIND))
            c.Config = _make_config(c, declared)
            for name, (_, f) in declared.items():
                setattr(cls, name, _value(name, f.metadata["doc"]))
        for hook in ("start", "stop"):
            if hook in cls.__dict__:
                setattr(cls, hook, _with_runtime(cls, hook, cls.__dict__[hook]))


def _value(name: str, doc: str) -> property:
    """self.<name>: the value of a setting, read from the parsed config."""
    return property(lambda self: getattr(self.config, name), doc=doc)


def _declared_settings(cls) -> dict[str, tuple[type, dataclasses.Field]]:
    """attribute -> (kind, field) of the setting() declarations in cls's own body."""
    out = {}
    annotations = cls.__dict__.get("__annotations__", {})
    for name, value in list(cls.__dict__.items()):
        if not isinstance(value, dataclasses.Field) or "check" not in value.metadata:
            continue
        if name not in annotations:
            raise TypeError("%s.%s: a setting needs a type: `%s: str = setting(...)` (int, float, bool, str or list[str])"
                            % (cls.__qualname__, name, name))
        kind = _kind(annotations[name])
        if kind is None:
            raise TypeError("%s.%s: a setting's type is int, float, bool, str or list[str], not %s"
                            % (cls.__qualname__, name, annotations[name]))
        value.metadata = types.MappingProxyType({**value.metadata, "key": value.metadata["key"] or name})
        out[name] = (kind, value)
    return out


def _kind(annotation) -> type | None:
    """int, float, bool, str or list from an annotation (a string under `from __future__ import annotations`)."""
    if isinstance(annotation, str):
        text = annotation.replace(" ", "")
        if text in ("int", "float", "bool", "str"):
            return {"int": int, "float": float, "bool": bool, "str": str}[text]
        return list if text in ("list", "list[str]", "List[str]", "typing.List[str]") else None
    if annotation in (int, float, bool, str, list):
        return annotation
    return list if getattr(annotation, "__origin__", None) is list and annotation.__args__ == (str,) else None


def _make_config(cls, declared: dict[str, tuple[type, dataclasses.Field]]) -> type[ComponentConfig]:
    base = cls.Config       # the parent's: a subclass of a component keeps its keys

    def validate(self, place: Place) -> None:
        base.validate(self, place)
        for f in dataclasses.fields(self):
            check, key = f.metadata.get("check"), f.metadata.get("key")
            if check is not None and key in place.props:
                try:
                    check(getattr(self, f.name))
                except ValueError as exc:
                    raise place.error(key, str(exc)) from None

    # keyword-only: a required key may follow the base's keys that have defaults (batchSize)
    config = dataclasses.make_dataclass(cls.__name__ + "Config", [(n, kind, f) for n, (kind, f) in declared.items()],
                                        bases=(base,), namespace={"validate": validate}, kw_only=True)
    config.__module__, config.__qualname__ = cls.__module__, cls.__qualname__ + ".Config"
    return config


def _with_runtime(cls, hook: str, user):
    """cls's own start/stop, run after (start) or before (stop) the runtime's part."""
    def wrapped(self) -> None:
        if hook == "start":
            self._runtime_start()
            user(self)
        else:
            self._before_stop()
            try:
                user(self)
            finally:
                self._runtime_stop()
    wrapped.__wrapped__ = user       # type: ignore[attr-defined]
    wrapped.__name__, wrapped.__qualname__, wrapped.__doc__ = user.__name__, user.__qualname__, user.__doc__
    return wrapped


def _instance_names(*bases: type) -> frozenset[str]:
    return frozenset(n for b in bases for n in dir(b))


# -- sinks --------------------------------------------------------------------------------

@dataclasses.dataclass(kw_only=True)
class _SinkConfig(_sink.SinkConfig):
    batchSize: int = _setting("batchSize", 100, "the most events a take (and one deliver() call) carries", min=1)


class Sink(_Settings, _sink.Sink):
    """Base of a custom sink: implement `deliver(batch)`.

    The runtime takes up to `batchSize` events from the channel, calls deliver() with them and
    commits the take when it returns; when it raises, the take is rolled back (the events go back
    to the head of the channel), counted in EventWriteFail, logged once, and delivered again
    after Flume's backoff: delivery is at-least-once, a failure repeats at most one batch.

    Hooks: start() (open connections), stop() (close them), interrupt() (the agent is stopping: a
    deliver() blocked on its destination should give up and raise)."""

    Config = _SinkConfig
    _KIND = "sink"

    def deliver(self, batch: EventBatch) -> None:
        """Write the batch; return once the destination has it (raise to have it rolled back)."""
        raise NotImplementedError

    def start(self) -> None:
        """Called once before the first deliver()."""
        self._runtime_start()

    def stop(self) -> None:
        """Called once after the last deliver() returned."""
        self._runtime_stop()

    def _runtime_start(self) -> None:
        _sink.Sink.start(self)

    def _runtime_stop(self) -> None:
        _sink.Sink.stop(self)

    def _before_stop(self) -> None:
        pass


Sink._RESERVED = _instance_names(Sink) | {"name", "config", "channel", "counters", "reported", "transactions_per_process"}


# -- sources ------------------------------------------------------------------------------

class Source(_Settings, _source.PollableSource):
    """Base of a custom source: implement `poll()`, or `start()` and call `self.put(batch)`.

    A pollable source's poll() is called by the agent's source thread: it returns an EventBatch
    of new events, or None when it has none now (the thread then backs off, 1 s more after each
    empty poll up to 5 s, as Flume's). The batch is put into the source's channels, in as many
    transactions as their transactionCapacity needs; events a full channel refused are put again
    before poll() is called again. A finite source sets `self.finished = True` once it has
    returned its last batch (`--exit-when-done` then stops when the channels are drained).

    An event-driven source (no poll()) starts its own threads in start() and calls
    `self.put(batch)` from them; stop() must end them. stop() is never called while poll() runs."""

    Config = _source.SourceConfig
    _KIND = "source"
    _incomplete: ClassVar[str | None] = None    # why the class cannot run, checked when a config names it

    def __init__(self, name: str, config: Any, processor: _source.ChannelProcessor | None = None):
        self._lock = threading.Lock()       # held by a poll and the put of its batch; stop() waits for it
        self._stopping = threading.Event()
        self._pending: EventBatch | None = None     # events polled, not yet accepted by the channels
        self._done = False
        super().__init__(name, config, processor)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.pollable = _implements(cls, "poll", Source)
        cls._incomplete = None if cls.pollable or _implements(cls, "start", Source) else (
            "implements neither poll() nor start() (an event-driven source calls self.put(batch) from the threads start() starts)")

    def poll(self) -> EventBatch | None:
        """New events, or None when there are none now."""
        raise NotImplementedError

    def put(self, batch: EventBatch) -> None:
        """Put a batch into the source's channels (an event-driven source's threads call it):
        returns once the channels accepted every event, waiting while a channel is full
        (back-pressure). Raises ChannelFullException if the source is stopped before that (its
        `committed`: the events accepted), or the ChannelException of a channel that failed."""
        _check_batch(batch, "put()", self)
        assert self.processor is not None, "a source is given its channels by the agent"
        left, done = batch, 0
        while len(left):
            try:
                done += self.deliver_each(left, self.processor.max_batch)
                return
            except ChannelFullException as exc:
                accepted = getattr(exc, "committed", 0)
                done += accepted
                left = left.slice(accepted, len(left))
                if self._stopping.wait(PUT_RETRY):
                    exc.committed = done
                    raise

    @property
    def finished(self) -> bool:
        """True once a finite source is done and every event it gave has been put."""
        return self._done and self._pending is None

    @finished.setter
    def finished(self, value: bool) -> None:
        self._done = value

    def start(self) -> None:
        """Called once before the first poll() (an event-driven source starts its threads here)."""
        self._runtime_start()

    def stop(self) -> None:
        """Called once; never while poll() runs."""
        self._before_stop()
        self._runtime_stop()

    def _runtime_start(self) -> None:
        self._stopping.clear()
        _source.Source.start(self)

    def _runtime_stop(self) -> None:
        _source.Source.stop(self)

    def process(self) -> _source.Status:
        if not self._lock.acquire(timeout=0.5):     # stop() is waiting for the last poll to end
            return _source.Status.BACKOFF
        try:
            if self._stopping.is_set():
                return _source.Status.BACKOFF
            batch = self._pending
            if batch is None:
                try:
                    batch = self.poll()
                except Exception:
                    self.counters.add(EventReadFail=1)
                    raise
                if batch is None:
                    return _source.Status.BACKOFF
                _check_batch(batch, "poll()", self)
                if not len(batch):
                    return _source.Status.BACKOFF
                self._pending = batch
            assert self.processor is not None, "a source is given its channels by the agent"
            try:
                self.deliver_each(batch, self.processor.max_batch)
            except ChannelException as exc:
                # what the channels accepted is done; the rest is put again before the next poll
                accepted = getattr(exc, "committed", 0)
                self._pending = batch.slice(accepted, len(batch)) if accepted else batch
                log.warning("source %s could not write to its channels (%d events to put again): %s",
                            self.name, len(self._pending), exc)
                return _source.Status.BACKOFF
            self._pending = None
            return _source.Status.READY
        finally:
            self._lock.release()

    def _before_stop(self) -> None:
        self._stopping.set()
        with self._lock:        # a poll in progress (and the put of its batch) ends first
            if self._pending is not None:
                log.warning("source %s stopped with %d events its channels had not accepted: they are dropped",
                            self.name, len(self._pending))


Source._RESERVED = _instance_names(Source) | {"name", "config", "processor", "counters"}


# -- interceptors ---------------------------------------------------------------------------

class Interceptor(_Settings, _interceptors.Interceptor):
    """Base of a custom interceptor: implement `intercept(batch)`, returning the batch the
    source puts (the same one, a filtered one, one with new headers or bodies...). It runs in the
    source's thread, on whole batches: use pyarrow.compute on `batch.bodies()` and
    `batch.header_array(name)`, not a loop over events. Hooks start() and stop() run with the
    source's."""

    Config = _interceptors.InterceptorConfig
    _KIND = "interceptor"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "intercept" in cls.__dict__:
            setattr(cls, "intercept", _checking(cls.__dict__["intercept"]))

    def intercept(self, batch: EventBatch) -> EventBatch:
        raise NotImplementedError

    def start(self) -> None:
        """Called once before the first intercept()."""

    def stop(self) -> None:
        """Called once after the last intercept()."""

    def _runtime_start(self) -> None:
        pass

    def _runtime_stop(self) -> None:
        pass

    def _before_stop(self) -> None:
        pass


Interceptor._RESERVED = _instance_names(Interceptor) | {"name", "config"}


def _a(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _implements(cls, method: str, base: type) -> bool:
    return getattr(cls, method) is not getattr(base, method)


def _checking(intercept):
    """intercept(), its result checked: anything but an EventBatch would fail later, in a channel."""
    def checked(self, batch: EventBatch) -> EventBatch:
        out = intercept(self, batch)
        _check_batch(out, "intercept()", self)
        return out
    checked.__wrapped__ = intercept
    checked.__name__, checked.__qualname__, checked.__doc__ = intercept.__name__, intercept.__qualname__, intercept.__doc__
    return checked


def _check_batch(batch, what: str, comp) -> None:
    if not isinstance(batch, EventBatch):
        raise TypeError("%s %s (%s.%s): %s gave a %s, not an EventBatch"
                        % (comp._KIND, comp.name, type(comp).__module__, type(comp).__qualname__, what, type(batch).__name__))


# -- loading by import path or entry point ------------------------------------------------

_RUNTIME_BASES = {"source": (_source.Source, "fastsync.Source"), "sink": (_sink.Sink, "fastsync.Sink"),
                  "interceptor": (_interceptors.Interceptor, "fastsync.Interceptor")}
_REQUIRED = {Sink: "deliver", Interceptor: "intercept"}


def load_class(kind: str, name: str) -> type | None:
    """The component class a configuration's `type = name` names, for Registry.lookup when no
    built-in has that name: `module:Class` or `module.Class` (a class by import path, as Flume
    loads classes by name), else the entry point `name` of group fastsync.components. None when
    `name` is neither (an unknown type); a ConfigError (unlocated: the caller adds file:line and
    key) when it names something that cannot be loaded or is not a `kind` ("source", "sink",
    "interceptor")."""
    name = label = name.strip()
    if name.lower().startswith("org.apache.flume."):
        return None     # a Flume component fastsync has not got: an unknown type, with the known ones listed
    if ":" in name:
        module, _, attr = name.partition(":")
        obj = _import(name, module, attr)
    elif "." in name:
        module, _, attr = name.rpartition(".")
        obj = _import(name, module, attr)
    else:
        ep = _entry_point(name)
        if ep is None:
            return None
        try:
            obj = ep.load()
        except Exception as exc:
            raise ConfigError("entry point '%s' (%s = %s) failed to load: %s: %s"
                              % (name, ENTRY_POINTS, ep.value, type(exc).__name__, exc)) from None
        label = "entry point '%s' (%s)" % (name, ep.value)
    cls = _checked(kind, label, obj)
    if getattr(cls, "TYPE", "?") == "?":
        setattr(cls, "TYPE", name)      # what docs and logs call it: the name a configuration gave first
    return cls


def _import(name: str, module: str, attr: str):
    if not module or not attr:
        raise ConfigError("'%s' is not a class name: write module:Class or module.Class" % name)
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = exc.name or module
        where = "" if missing != module.split(".")[0] else " (is it installed, or on PYTHONPATH?)"
        raise ConfigError("cannot import %s: no module named '%s'%s" % (module, missing, where)) from None
    except Exception as exc:       # the module's own code failed: SyntaxError, an ImportError of its own...
        raise ConfigError("cannot import %s: %s: %s" % (module, type(exc).__name__, exc)) from None
    obj: Any = mod
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError("module %s has no %s '%s'" % (module, "class" if obj is mod else "attribute", part)) from None
    return obj


def _entry_point(name: str):
    from importlib.metadata import entry_points
    found = list(entry_points(group=ENTRY_POINTS).select(name=name))
    if not found:       # a type is matched without regard to case, as the built-in ones
        found = [ep for ep in entry_points(group=ENTRY_POINTS) if ep.name.lower() == name.lower()]
    return found[0] if found else None


def _checked(kind: str, name: str, obj) -> type:
    base, public = _RUNTIME_BASES[kind]
    if not isinstance(obj, type) or not issubclass(obj, base):
        other = [k for k, (b, _) in _RUNTIME_BASES.items() if isinstance(obj, type) and issubclass(obj, b)]
        what = other[0] if other else ("class" if isinstance(obj, type) else type(obj).__name__)
        raise ConfigError("%s is %s %s, not %s %s: %s %s subclasses %s"
                          % (name, _a(what), what, _a(kind), kind, _a(kind), kind, public))
    for plugin_base, method in _REQUIRED.items():
        if issubclass(obj, plugin_base) and not _implements(obj, method, plugin_base):
            raise ConfigError("%s does not implement %s()" % (name, method))
    incomplete = getattr(obj, "_incomplete", None)
    if incomplete:
        raise ConfigError("%s %s" % (name, incomplete))
    return obj
