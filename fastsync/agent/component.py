"""The component model: a config dataclass with Flume's key names, parsed and validated
from properties, and a registry mapping Flume type names to component classes: one
Registry per kind of plug-in (sources, channels, sinks, interceptors, channel selectors,
sink processors), all declared at the bottom of this module.

A config field is declared with `setting(flume_key, default, doc)`; its Python type
(int, float, bool, str, list) decides how the value is parsed. Keys a component does not
know are reported as warnings (Flume ignores them; errors with --strict), never silently
dropped, with the declared key they are probably a misspelling of.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
import logging
from collections import Counter
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from fastsync.agent.errors import ConfigError, UnknownKey
from fastsync.agent.properties import Prop

log = logging.getLogger("fastsync.config")
_MISSING = dataclasses.MISSING


def setting(key: str, default: Any = _MISSING, doc: str = "", *, min: float | None = None,
            max: float | None = None, choices: tuple | None = None):
    """A config field read from the Flume key `key` (relative to the component)."""
    meta = {"key": key, "doc": doc, "min": min, "max": max, "choices": choices}
    if isinstance(default, list):
        return field(default_factory=functools.partial(list, default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class ComponentConfig:
    """Base of every component's config. `type` is the name it was registered under."""

    # keys every component may carry that are wired by the agent, not by the component
    STRUCTURAL: ClassVar[tuple[str, ...]] = ("type",)
    # key prefixes passed through as `extra` (e.g. kafka.producer.*), none by default
    PASSTHROUGH: ClassVar[tuple[str, ...]] = ()

    def validate(self, place: "Place") -> None:
        """Cross-field checks; raise place.error(key, message)."""


@dataclass(frozen=True)
class Place:
    """Where a component's keys came from, for errors that name file:line and key."""
    path: str
    prefix: str              # e.g. "a1.channels.c1"
    props: dict[str, Prop]   # keys relative to prefix
    # where keys nobody reads are reported: parse_agent_config's list (warnings, or errors
    # with --strict); None: logged as warnings at once
    unknown: list[UnknownKey] | None = field(default=None, compare=False, repr=False)

    def line(self, key: str) -> int | None:
        p = self.props.get(key)
        return p.line if p else None

    def error(self, key: str, message: str) -> ConfigError:
        line = self.line(key) or self.line("type")
        return ConfigError(message, self.path, line, "%s.%s" % (self.prefix, key))

    def missing(self, key: str, message: str = "required key is missing", candidates=None) -> ConfigError:
        """The error of a required key that is absent, with did_you_mean's hint."""
        return self.error(key, message + self.did_you_mean(key, candidates))

    def did_you_mean(self, key: str, candidates=None) -> str:
        """For an absent key: the key present (one of `candidates`, by default any) that is
        probably its misspelling, and its line, as `— did you mean ...`; else ""."""
        near = suggest(key, [k for k in (self.props if candidates is None else candidates) if k != key])
        return "" if near is None else " — did you mean `%s` on line %d?" % (near, self.props[near].line)

    def ignored(self, key: str, suggestion: str | None = None, what: str = "unknown key") -> None:
        """Report `key` (of props) as read by nobody, with the key it probably misspells."""
        u = UnknownKey(self.path, self.line(key), "%s.%s" % (self.prefix, key), suggestion, what)
        if self.unknown is None:
            log.warning("%s", u.warning())
        else:
            self.unknown.append(u)


def suggest(word: str, candidates) -> str | None:
    """The candidate `word` is most probably a misspelling of (case aside), or None. Among
    more than MAX_CANDIDATES (e.g. thousands of listed channel names) none is looked for:
    difflib compares with each, and a file may have as many unknown keys."""
    candidates = tuple(candidates)
    return None if len(candidates) > MAX_CANDIDATES else _closest(word, candidates)


MAX_CANDIDATES = 200


@functools.lru_cache(maxsize=4096)      # the same typo in 20 000 channels is looked up once
def _closest(word: str, candidates: tuple[str, ...]) -> str | None:
    import difflib      # only when a key is unknown: an agent's start-up does not pay for it
    by_lower = {c.lower(): c for c in candidates}
    near = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.75)
    return by_lower[near[0]] if near else None


def duplicates(names: list[str]) -> list[str]:
    """The names listed more than once, sorted."""
    return sorted(n for n, count in Counter(names).items() if count > 1)


def _parse_value(kind, raw: str, place: Place, key: str):
    text = raw.strip()
    if kind is bool:
        low = text.lower()
        if low in ("true", "false"):
            return low == "true"
        raise place.error(key, "expected true or false, got %r" % raw)
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise place.error(key, "expected an integer, got %r" % raw) from None
    if kind is float:
        try:
            return float(text)
        except ValueError:
            raise place.error(key, "expected a number, got %r" % raw) from None
    if kind is list:
        items = text.replace(",", " ").split()
        dup = duplicates(items)
        if dup:
            raise place.error(key, "%s listed twice" % ", ".join(dup))
        return items
    return text


def check_regex(place: Place, key: str, pattern: str, re2: bool = False) -> None:
    """A config error at `key` unless `pattern` compiles: with Python's re, or with RE2 (the
    engine of Arrow's regex kernels) when re2."""
    import re
    try:
        if re2:
            import pyarrow as pa
            import pyarrow.compute as pc
            pc.count_substring_regex(pa.array([""]), pattern)
        else:
            re.compile(pattern)
    except (re.error, ValueError) as exc:     # pyarrow's ArrowInvalid is a ValueError
        raise place.error(key, "not a valid regex: %s" % str(exc).splitlines()[0]) from None


def parse_config(cls: type[ComponentConfig], place: Place) -> ComponentConfig:
    """Build cls from place.props, checking types, ranges, choices and required keys; keys
    cls does not know are reported with place.ignored."""
    values: dict[str, Any] = {}
    settings, known = _settings(cls)  # type: ignore[arg-type]  # mypy: a class is hashable, whatever its instances are
    for f, key, kind in settings:
        prop = place.props.get(key)
        if prop is None:
            if f.default is _MISSING and f.default_factory is _MISSING:
                raise place.missing(key, candidates=[k for k in place.props if not _is_known(cls, known, k)])
            continue
        value = _parse_value(kind, prop.value, place, key)
        lo, hi, choices = f.metadata.get("min"), f.metadata.get("max"), f.metadata.get("choices")
        if lo is not None and value < lo:
            raise place.error(key, "must be at least %s, got %s" % (lo, prop.value.strip()))
        if hi is not None and value > hi:
            raise place.error(key, "must be at most %s, got %s" % (hi, prop.value.strip()))
        if choices is not None:
            low = value.lower() if isinstance(value, str) else value
            if low not in choices:
                raise place.error(key, "must be one of %s, got %r" % (", ".join(map(str, choices)), prop.value))
            value = low
        values[f.name] = value
    config = cls(**values)
    extra = {}
    for key in place.props:
        if key in known or any(key == s or key.startswith(s + ".") for s in cls.STRUCTURAL):
            continue
        if any(key.startswith(p) for p in cls.PASSTHROUGH):
            extra[key] = place.props[key].value
            continue
        place.ignored(key, suggest(key, known))
    if extra:
        config.extra = extra  # type: ignore[attr-defined]
    config.validate(place)
    return config


@functools.lru_cache(maxsize=None)
def _settings(cls: type[ComponentConfig]) -> tuple[list[tuple[dataclasses.Field, str, type]], frozenset[str]]:
    """The (field, key, kind) of each setting of cls and every key it knows, worked out once
    per class, not once per component."""
    settings = [(f, f.metadata["key"], _resolve(f.type)) for f in fields(cls) if f.metadata.get("key") is not None]
    return settings, frozenset(cls.STRUCTURAL) | {key for _, key, _ in settings}


def _is_known(cls: type[ComponentConfig], known: frozenset[str], key: str) -> bool:
    return (key in known or any(key.startswith(s + ".") for s in cls.STRUCTURAL)
            or any(key.startswith(p) for p in cls.PASSTHROUGH))


def _resolve(t):
    if isinstance(t, str):
        return {"int": int, "float": float, "bool": bool, "str": str}.get(t.split("[")[0], list if t.startswith("list") else str)
    return t


class Registry:
    """Type name (Flume alias, case-insensitive, or fully qualified class name) -> class.

    Components are declared by name and module (`declare`) and their module is imported only
    when a config uses them, so an agent does not pay for the libraries of components it has
    not got (confluent_kafka, sqlalchemy, pyarrow.parquet...). The module registers the class
    with the `register` decorator when imported."""

    def __init__(self, kind: str, plugins: bool = False):
        self.kind = kind
        # a type no built-in has may name a class (module:Class) or an entry point: fastsync.plugins
        self.plugins = plugins
        self._by_name: dict[str, type] = {}
        self._aliases: list[str] = []
        self._modules: dict[str, str] = {}    # lower-case alias or class name -> module

    def declare(self, module: str, alias: str, *class_names: str) -> None:
        for name in (alias, *class_names):
            self._modules[name.lower()] = module
        if alias not in self._aliases:
            self._aliases.append(alias)

    def register(self, alias: str, *class_names: str):
        def deco(cls):
            self._by_name[alias.lower()] = cls
            if alias not in self._aliases:
                self._aliases.append(alias)
            for name in class_names:
                self._by_name[name.lower()] = cls
            cls.TYPE = alias
            cls.CLASS_NAMES = class_names     # as written, for the reference pages (docref)
            return cls
        return deco

    def lookup(self, name: str):
        """The class of type `name`, or None; a ConfigError (not located) when `name` names a
        plug-in that cannot be loaded."""
        key = name.strip().lower()
        if key not in self._by_name and key in self._modules:
            importlib.import_module(self._modules[key])
        cls = self._by_name.get(key)
        if cls is None and self.plugins and key:
            from fastsync.plugins import load_class     # only for a type no built-in has
            cls = load_class(self.kind, name)
        return cls

    def known(self) -> list[str]:
        return sorted(self._aliases)

    def load_all(self) -> dict[str, type]:
        """Every component, by lower-case name (imports all their modules)."""
        for module in set(self._modules.values()):
            importlib.import_module(module)
        return self._by_name


SOURCES = Registry("source", plugins=True)
CHANNELS = Registry("channel")
SINKS = Registry("sink", plugins=True)
INTERCEPTORS = Registry("interceptor", plugins=True)
SELECTORS = Registry("channel selector")
SINK_PROCESSORS = Registry("sink processor")
REGISTRIES = (SOURCES, CHANNELS, SINKS, INTERCEPTORS, SELECTORS, SINK_PROCESSORS)   # every kind of plug-in

_P = "fastsync.agent."
# (registry, module under fastsync.agent, alias, Flume class names...)
_DECLARED: list[tuple[Any, ...]] = [
        (SOURCES, "sources.seq", "seq", "org.apache.flume.source.SequenceGeneratorSource"),
        (SOURCES, "sources.taildir", "TAILDIR", "org.apache.flume.source.taildir.TaildirSource"),
        (SOURCES, "sources.syslog", "syslogtcp", "org.apache.flume.source.SyslogTcpSource"),
        (SOURCES, "sources.syslog", "syslogudp", "org.apache.flume.source.SyslogUDPSource"),
        (SOURCES, "sources.http", "http", "org.apache.flume.source.http.HTTPSource"),
        (SOURCES, "sources.kafka", "kafka", "org.apache.flume.source.kafka.KafkaSource"),
        (SOURCES, "sources.netcat", "netcat", "org.apache.flume.source.NetcatSource"),
        (SOURCES, "sources.spooldir", "spooldir", "org.apache.flume.source.SpoolDirectorySource"),
        (SOURCES, "sources.dirtree", "dirtree", "org.apache.flume.source.hdfs.HdfsSource"),
        (SOURCES, "sources.exec", "exec", "org.apache.flume.source.ExecSource"),
        (SOURCES, "sources.avro", "avro", "org.apache.flume.source.AvroSource"),
        (SOURCES, "sources.flight", "flight"),
        (CHANNELS, "channels.memory", "memory", "org.apache.flume.channel.MemoryChannel"),
        (CHANNELS, "channels.file", "file", "org.apache.flume.channel.file.FileChannel"),
        (CHANNELS, "channels.kafka", "kafka", "org.apache.flume.channel.kafka.KafkaChannel"),
        (SINKS, "sinks.null", "null", "org.apache.flume.sink.NullSink"),
        (SINKS, "sinks.logger", "logger", "org.apache.flume.sink.LoggerSink"),
        (SINKS, "sinks.file_roll", "file_roll", "org.apache.flume.sink.RollingFileSink"),
        (SINKS, "sinks.hdfs", "hdfs", "org.apache.flume.sink.hdfs.HDFSEventSink"),
        (SINKS, "sinks.kafka", "kafka", "org.apache.flume.sink.kafka.KafkaSink"),
        (SINKS, "sinks.jdbc", "jdbc"),
        (SINKS, "sinks.parquet", "parquet"),
        (SINKS, "sinks.avro", "avro", "org.apache.flume.sink.AvroSink"),
        (SINKS, "sinks.flight", "flight"),
        (INTERCEPTORS, "interceptors", "timestamp", "org.apache.flume.interceptor.TimestampInterceptor$Builder"),
        (INTERCEPTORS, "interceptors", "host", "org.apache.flume.interceptor.HostInterceptor$Builder"),
        (INTERCEPTORS, "interceptors", "static", "org.apache.flume.interceptor.StaticInterceptor$Builder"),
        (INTERCEPTORS, "interceptors", "remove_header", "org.apache.flume.interceptor.RemoveHeaderInterceptor$Builder"),
        (INTERCEPTORS, "interceptors", "uuid", "org.apache.flume.sink.solr.morphline.UUIDInterceptor$Builder"),
        (INTERCEPTORS, "interceptors", "regex_filter", "org.apache.flume.interceptor.RegexFilteringInterceptor$Builder"),
        (INTERCEPTORS, "interceptors", "regex_extractor", "org.apache.flume.interceptor.RegexExtractorInterceptor$Builder"),
        (INTERCEPTORS, "interceptors", "search_replace", "org.apache.flume.interceptor.SearchAndReplaceInterceptor$Builder"),
        (SELECTORS, "selectors", "replicating", "org.apache.flume.channel.ReplicatingChannelSelector"),
        (SELECTORS, "selectors", "multiplexing", "org.apache.flume.channel.MultiplexingChannelSelector"),
        (SINK_PROCESSORS, "sinkprocessors", "default", "org.apache.flume.sink.DefaultSinkProcessor"),
        (SINK_PROCESSORS, "sinkprocessors", "failover", "org.apache.flume.sink.FailoverSinkProcessor"),
        (SINK_PROCESSORS, "sinkprocessors", "load_balance", "org.apache.flume.sink.LoadBalancingSinkProcessor")]
for _registry, _module, _alias, *_names in _DECLARED:
    _registry.declare(_P + _module, _alias, *_names)
