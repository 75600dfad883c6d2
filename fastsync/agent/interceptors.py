"""Flume's interceptors, applied to whole batches between a source and its channels.

Each interceptor maps an EventBatch to an EventBatch with Arrow compute kernels over the
bodies and header columns: a header set for the whole batch is one shared string (the
timestamp of a batch is the instant it passed), never a value per event built in Python.
Chained in the order `interceptors = i1 i2` lists them, as in Flume.
"""
from __future__ import annotations

import re
import socket
import time
import uuid
from dataclasses import dataclass

import pyarrow as pa

from fastsync.agent.component import INTERCEPTORS, ComponentConfig, Place, check_regex, setting
from fastsync.event import EventBatch, as_utf8


@dataclass
class InterceptorConfig(ComponentConfig):
    pass


class Interceptor:
    TYPE = "?"
    Config = InterceptorConfig

    def __init__(self, name: str, config):
        self.name, self.config = name, config

    def intercept(self, batch: EventBatch) -> EventBatch:
        raise NotImplementedError


def _set_header(batch: EventBatch, name: str, value, preserve: bool) -> EventBatch:
    """Header `name` := value (a str for the batch, or a string array); with `preserve`,
    events that already have it keep theirs."""
    import pyarrow.compute as pc  # lazily: ~0.1 s of every agent's start-up
    old = batch.headers.get(name)
    if preserve and old is not None:
        if isinstance(old, str):
            return batch
        new = value if not isinstance(value, str) else pa.array([value] * len(batch), pa.string())
        value = pc.coalesce(old, new)
    return batch.with_headers(**{name: value})


def _text_bodies(batch: EventBatch) -> pa.Array:
    """Bodies as utf8 for the regex kernels (bytes that are not UTF-8 are replaced)."""
    return as_utf8(batch.bodies(), pa.large_string())


@dataclass
class TimestampConfig(InterceptorConfig):
    headerName: str = setting("headerName", "timestamp", "header set to the time in ms")
    preserveExisting: bool = setting("preserveExisting", False, "keep a timestamp the event has")


@INTERCEPTORS.register("timestamp", "org.apache.flume.interceptor.TimestampInterceptor$Builder")
class TimestampInterceptor(Interceptor):
    """Sets a header to the time the batch passed, in milliseconds since the epoch."""

    Config = TimestampConfig

    def intercept(self, batch):
        return _set_header(batch, self.config.headerName, str(int(time.time() * 1000)), self.config.preserveExisting)


@dataclass
class HostConfig(InterceptorConfig):
    hostHeader: str = setting("hostHeader", "host", "header set to this host")
    useIP: bool = setting("useIP", True, "the IP address rather than the host name")
    preserveExisting: bool = setting("preserveExisting", False, "keep a host the event has")


@INTERCEPTORS.register("host", "org.apache.flume.interceptor.HostInterceptor$Builder")
class HostInterceptor(Interceptor):
    """Sets a header to this host's IP address or name."""

    Config = HostConfig

    def __init__(self, name, config):
        super().__init__(name, config)
        host = socket.gethostname()
        if config.useIP:
            try:
                host = socket.gethostbyname(host)
            except OSError:
                pass
        self.host = host

    def intercept(self, batch):
        return _set_header(batch, self.config.hostHeader, self.host, self.config.preserveExisting)


@dataclass
class StaticConfig(InterceptorConfig):
    key: str = setting("key", "key", "header name")
    value: str = setting("value", "value", "header value")
    preserveExisting: bool = setting("preserveExisting", True, "keep the value an event has")


@INTERCEPTORS.register("static", "org.apache.flume.interceptor.StaticInterceptor$Builder")
class StaticInterceptor(Interceptor):
    """Sets a header to a fixed value."""

    Config = StaticConfig

    def intercept(self, batch):
        return _set_header(batch, self.config.key, self.config.value, self.config.preserveExisting)


@dataclass
class RemoveHeaderConfig(InterceptorConfig):
    withName: str = setting("withName", "", "a header to remove")
    fromList: str = setting("fromList", "", "headers to remove, separated by listSeparator")
    listSeparator: str = setting("listSeparator", r"\s*,\s*", "regex separating fromList")
    matching: str = setting("matching", "", "remove every header whose name matches this regex")

    def validate(self, place: Place) -> None:
        check_regex(place, "listSeparator", self.listSeparator)
        check_regex(place, "matching", self.matching)


@INTERCEPTORS.register("remove_header", "org.apache.flume.interceptor.RemoveHeaderInterceptor$Builder")
class RemoveHeaderInterceptor(Interceptor):
    """Removes headers: one by name, a list of names, or every one whose name matches a regex."""

    Config = RemoveHeaderConfig

    def __init__(self, name, config):
        super().__init__(name, config)
        self.names = {n for n in re.split(config.listSeparator, config.fromList) if n} if config.fromList else set()
        if config.withName:
            self.names.add(config.withName)
        self.matching = re.compile(config.matching) if config.matching else None

    def intercept(self, batch):
        gone = {n: None for n in batch.headers if n in self.names or (self.matching and self.matching.fullmatch(n))}
        return batch.with_headers(**gone) if gone else batch


@dataclass
class UUIDConfig(InterceptorConfig):
    headerName: str = setting("headerName", "id", "header set to a new UUID")
    preserveExisting: bool = setting("preserveExisting", True, "keep an id the event has")
    prefix: str = setting("prefix", "", "put before each UUID")


@INTERCEPTORS.register("uuid", "org.apache.flume.sink.solr.morphline.UUIDInterceptor$Builder")
class UUIDInterceptor(Interceptor):
    """Sets a header to a new UUID per event."""

    Config = UUIDConfig

    def intercept(self, batch):
        c = self.config
        ids = pa.array([c.prefix + str(uuid.uuid4()) for _ in range(len(batch))], pa.string())
        return _set_header(batch, c.headerName, ids, c.preserveExisting)


@dataclass
class RegexFilterConfig(InterceptorConfig):
    regex: str = setting("regex", ".*", "pattern searched for in the body")
    excludeEvents: bool = setting("excludeEvents", False, "drop the events that match (default: keep only them)")

    def validate(self, place: Place) -> None:
        check_regex(place, "regex", self.regex, re2=True)


@INTERCEPTORS.register("regex_filter", "org.apache.flume.interceptor.RegexFilteringInterceptor$Builder")
class RegexFilterInterceptor(Interceptor):
    """Keeps only the events whose body matches a regex (or, with `excludeEvents`, drops them)."""

    Config = RegexFilterConfig

    def intercept(self, batch):
        import pyarrow.compute as pc  # lazily: ~0.1 s of every agent's start-up
        if not len(batch):
            return batch
        found = pc.match_substring_regex(_text_bodies(batch), self.config.regex)
        keep = pc.invert(found) if self.config.excludeEvents else found
        if pc.all(keep).as_py():
            return batch
        return EventBatch.from_arrow(batch.to_arrow().filter(keep))


@dataclass
class RegexExtractorConfig(InterceptorConfig):
    PASSTHROUGH = ("serializers.",)      # serializers.<s>.name / .type, read in validate()
    regex: str = setting("regex", doc="pattern whose groups become headers")
    serializers: list = setting("serializers", [], "one name per group: serializers.<name>.name is the header")

    def validate(self, place: Place) -> None:
        check_regex(place, "regex", self.regex, re2=True)
        groups = re.compile(self.regex).groups
        if len(self.serializers) > groups:
            raise place.error("serializers", "%d serializers for %d groups in regex" % (len(self.serializers), groups))
        self.headers = []
        for s in self.serializers:
            prop = place.props.get("serializers.%s.name" % s)
            if prop is None or not prop.value.strip():
                raise place.error("serializers.%s.name" % s, "required key is missing")
            kind = place.props.get("serializers.%s.type" % s)
            if kind is not None and kind.value.strip() not in (
                    "", "DEFAULT", "org.apache.flume.interceptor.RegexExtractorInterceptorPassThroughSerializer"):
                raise place.error("serializers.%s.type" % s,
                                  "serializer '%s' is not supported (supported: the pass-through default)" % kind.value.strip())
            self.headers.append(prop.value.strip())


@INTERCEPTORS.register("regex_extractor", "org.apache.flume.interceptor.RegexExtractorInterceptor$Builder")
class RegexExtractorInterceptor(Interceptor):
    """Puts the groups of a regex matched in the body into headers, one per serializer."""

    Config = RegexExtractorConfig

    def __init__(self, name, config):
        super().__init__(name, config)
        # Arrow's extract_regex needs named groups: the user's groups are named in order
        self.pattern = _name_groups(config.regex)
        self.headers = getattr(config, "headers", [])

    def intercept(self, batch):
        import pyarrow.compute as pc  # lazily: ~0.1 s of every agent's start-up
        if not len(batch) or not self.headers:
            return batch
        parts = pc.extract_regex(_text_bodies(batch), self.pattern)
        updates = {}
        for i, header in enumerate(self.headers):
            col = pc.struct_field(parts, [i]).cast(pa.string())   # null where the body did not match
            old = batch.headers.get(header)
            # Flume: an event that does not match keeps its headers as they were
            if isinstance(old, str):
                old = pa.array([old] * len(batch), pa.string())
            updates[header] = col if old is None else pc.coalesce(col, old)
        return batch.with_headers(**updates)


def _name_groups(regex: str) -> str:
    """The regex with each capturing group named g0, g1, ... (Arrow names the fields by
    them); escapes and character classes are copied as they are."""
    out, i, k, in_class = [], 0, 0, False
    while i < len(regex):
        c = regex[i]
        if c == "\\":
            out.append(regex[i:i + 2])
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
        elif c == "(" and regex.startswith("(?P<", i):
            out.append("(?P<g%d>" % k)
            k += 1
            i = regex.index(">", i) + 1
            continue
        elif c == "(" and not regex.startswith("(?", i):
            out.append("(?P<g%d>" % k)
            k += 1
            i += 1
            continue
        out.append(c)
        i += 1
    return "".join(out)


@dataclass
class SearchReplaceConfig(InterceptorConfig):
    searchPattern: str = setting("searchPattern", doc="regex searched for in the body")
    replaceString: str = setting("replaceString", "", "what each match becomes ($1 for a group)")
    charset: str = setting("charset", "UTF-8", "bodies are UTF-8", choices=("utf-8", "utf8"))

    def validate(self, place: Place) -> None:
        check_regex(place, "searchPattern", self.searchPattern, re2=True)


@INTERCEPTORS.register("search_replace", "org.apache.flume.interceptor.SearchAndReplaceInterceptor$Builder")
class SearchReplaceInterceptor(Interceptor):
    """Replaces every match of a regex in the body."""

    Config = SearchReplaceConfig

    def __init__(self, name, config):
        super().__init__(name, config)
        self.replacement = re.sub(r"\$(\d+)", r"\\\1", config.replaceString)   # Java's $1 -> RE2's \1

    def intercept(self, batch):
        import pyarrow.compute as pc  # lazily: ~0.1 s of every agent's start-up
        if not len(batch):
            return batch
        bodies = pc.replace_substring_regex(_text_bodies(batch), self.config.searchPattern, self.replacement)
        out = EventBatch.from_arrow(bodies.cast(pa.large_binary()))
        return EventBatch(out.data, out.offsets, batch.headers)


class InterceptorChain:
    def __init__(self, interceptors: list[Interceptor]):
        self.interceptors = interceptors

    def start(self) -> None:
        """Start hooks of the interceptors that have one (custom ones: fastsync.plugins)."""
        for i in self.interceptors:
            getattr(i, "start", lambda: None)()

    def stop(self) -> None:
        for i in self.interceptors:
            getattr(i, "stop", lambda: None)()

    def __call__(self, batch: EventBatch) -> EventBatch:
        for i in self.interceptors:
            batch = i.intercept(batch)
        return batch
