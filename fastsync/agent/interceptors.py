"""Flume's interceptors, applied to whole batches between a source and its channels.

Each interceptor maps an EventBatch to an EventBatch with Arrow compute kernels over the
bodies and header columns: a header set for the whole batch is one shared string (the
timestamp of a batch is the instant it passed), never a value per event built in Python.
Chained in the order `interceptors = i1 i2` lists them, as in Flume.
"""
from __future__ import annotations

import datetime as dt
import functools
import re
import socket
import time
import uuid
from dataclasses import dataclass

import pyarrow as pa

from fastsync.agent.component import INTERCEPTORS, ComponentConfig, Place, check_regex, setting
from fastsync.agent.errors import ConfigError
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
        self.host = local_host(config.useIP)

    def intercept(self, batch):
        return _set_header(batch, self.config.hostHeader, self.host, self.config.preserveExisting)


def local_host(use_ip: bool) -> str:
    """As Flume's InetAddress.getLocalHost(): the address this host's name resolves to, or
    with use_ip false its canonical name (the reverse lookup of that address)."""
    host = socket.gethostname()
    try:
        ip = socket.gethostbyname(host)
    except OSError:
        return host
    if use_ip:
        return ip
    try:
        return socket.gethostbyaddr(ip)[0]
    except OSError:
        return ip      # Java's getCanonicalHostName: the address when it has no name


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
    fromList: str = setting("fromList", "", "headers to remove, separated by fromListSeparator")
    fromListSeparator: str = setting("fromListSeparator", r"\s*,\s*", "regex separating fromList")
    listSeparator: str = setting("listSeparator", "", "older name of fromListSeparator (fromListSeparator wins)")
    matching: str = setting("matching", "", "remove every header whose name matches this regex")

    def validate(self, place: Place) -> None:
        check_regex(place, "fromListSeparator", self.fromListSeparator)
        check_regex(place, "listSeparator", self.listSeparator)
        if self.listSeparator and "fromListSeparator" not in place.props:
            self.fromListSeparator = self.listSeparator
        check_regex(place, "matching", self.matching)


@INTERCEPTORS.register("remove_header", "org.apache.flume.interceptor.RemoveHeaderInterceptor$Builder")
class RemoveHeaderInterceptor(Interceptor):
    """Removes headers: one by name, a list of names, or every one whose name matches a regex."""

    Config = RemoveHeaderConfig

    def __init__(self, name, config):
        super().__init__(name, config)
        self.names = {n for n in re.split(config.fromListSeparator, config.fromList) if n} if config.fromList else set()
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
        self.re2 = runs_in_re2(place, "regex", self.regex)


@INTERCEPTORS.register("regex_filter", "org.apache.flume.interceptor.RegexFilteringInterceptor$Builder")
class RegexFilterInterceptor(Interceptor):
    """Keeps only the events whose body matches a regex (or, with `excludeEvents`, drops them)."""

    Config = RegexFilterConfig

    def __init__(self, name, config):
        super().__init__(name, config)
        self.rx = None if getattr(config, "re2", True) else java_regex(config.regex)

    def intercept(self, batch):
        import pyarrow.compute as pc  # lazily: ~0.1 s of every agent's start-up
        if not len(batch):
            return batch
        if self.rx is None:
            found = pc.match_substring_regex(_text_bodies(batch), self.config.regex)
        else:       # Java syntax RE2 lacks: event by event
            found = pa.array([self.rx.search(t) is not None for t in _text_bodies(batch).to_pylist()], pa.bool_())
        keep = pc.invert(found) if self.config.excludeEvents else found
        if pc.all(keep).as_py():
            return batch
        return EventBatch.from_arrow(batch.to_arrow().filter(keep))


PASS_THROUGH = ("", "DEFAULT", "org.apache.flume.interceptor.RegexExtractorInterceptorPassThroughSerializer")
MILLIS = "org.apache.flume.interceptor.RegexExtractorInterceptorMillisSerializer"


@dataclass
class RegexExtractorConfig(InterceptorConfig):
    PASSTHROUGH = ("serializers.",)      # serializers.<s>.name / .type / .pattern, read in validate()
    regex: str = setting("regex", doc="pattern (Java syntax) whose groups become headers")
    serializers: list = setting("serializers", [], "one name per group: serializers.<name>.name is the header")

    def validate(self, place: Place) -> None:
        self.re2 = runs_in_re2(place, "regex", self.regex)
        try:
            self.compiled = java_regex(self.regex)
            groups = self.compiled.groups
        except re.error:        # RE2 runs it (e.g. \pL), Python's re cannot
            self.compiled = None
            groups = _name_groups(_python_syntax(self.regex)).count("(?P<g")
        if len(self.serializers) > groups:
            raise place.error("serializers", "%d serializers for %d groups in regex" % (len(self.serializers), groups))
        self.headers, self.converters = [], []
        for s in self.serializers:
            prop = place.props.get("serializers.%s.name" % s)
            if prop is None or not prop.value.strip():
                raise place.error("serializers.%s.name" % s, "required key is missing")
            kind = place.props.get("serializers.%s.type" % s)
            kind = kind.value.strip() if kind is not None else ""
            if kind in PASS_THROUGH:
                self.converters.append(None)
            elif kind == MILLIS:
                pat = place.props.get("serializers.%s.pattern" % s)
                if pat is None or not pat.value.strip():
                    raise place.error("serializers.%s.pattern" % s, "required key is missing (a Joda date pattern)")
                try:
                    self.converters.append(joda_parser(pat.value.strip()))
                except ValueError as exc:
                    raise place.error("serializers.%s.pattern" % s, str(exc)) from None
            else:
                raise place.error("serializers.%s.type" % s, "serializer '%s' is not supported (supported: %s, %s)"
                                  % (kind, PASS_THROUGH[-1], MILLIS))
            self.headers.append(prop.value.strip())


def _python_syntax(pattern: str) -> str:
    """Java's named groups `(?<name>` spelled as Python's `(?P<name>`."""
    return re.sub(r"(?<!\\)\(\?<(?=[A-Za-z])", "(?P<", pattern)


def java_regex(pattern: str) -> re.Pattern:
    """A Java regex compiled with Python's re (lookaround, backreferences, possessive
    quantifiers, which RE2 lacks); \\w \\d \\s \\b are ASCII, as Java's by default."""
    return re.compile(_python_syntax(pattern), re.ASCII)


def runs_in_re2(place: Place, key: str, pattern: str) -> bool:
    """True when Arrow's RE2 kernels can run the regex at `key`; False when only Python's re
    can (Java syntax RE2 lacks: look-around, back-references); a ConfigError when neither."""
    try:
        check_regex(place, key, pattern, re2=True)
        return True
    except ConfigError as exc:
        try:
            java_regex(pattern)
        except re.error:
            raise exc from None
        return False


def java_replacement(text: str, rx: re.Pattern):
    """Java's Matcher.replaceAll replacement (`$1`, `${name}`, `\\x` a literal x) as a
    function of a Python match."""
    parts: list[tuple[bool, object]] = []       # (is a group, literal text or group reference)
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            parts.append((False, text[i + 1]))
            i += 2
        elif c == "$" and text.startswith("{", i + 1) and "}" in text[i:]:
            j = text.index("}", i)
            parts.append((True, text[i + 2:j]))
            i = j + 1
        elif c == "$" and i + 1 < len(text) and text[i + 1].isdigit():
            j = i + 2       # as Java: more digits while they still name a group
            while j < len(text) and text[j].isdigit() and int(text[i + 1:j + 1]) <= rx.groups:
                j += 1
            parts.append((True, int(text[i + 1:j])))
            i = j
        else:
            parts.append((False, c))
            i += 1

    def replace(m: re.Match) -> str:
        return "".join((m.group(p) or "") if group else p for group, p in parts)
    return replace


@INTERCEPTORS.register("regex_extractor", "org.apache.flume.interceptor.RegexExtractorInterceptor$Builder")
class RegexExtractorInterceptor(Interceptor):
    """Puts the groups of a regex matched in the body into headers, one per serializer.

    As Flume: the first match in the body counts; an event that does not match keeps its
    headers; a group that did not take part in the match leaves no header (it removes one the
    event had). Arrow's RE2 kernels do the work; a regex RE2 cannot run (lookaround,
    backreferences) and the events where a group came out empty (RE2 cannot tell an empty
    group from one that did not take part) are matched with Python's re instead."""

    Config = RegexExtractorConfig

    def __init__(self, name, config):
        super().__init__(name, config)
        self.headers = getattr(config, "headers", [])
        self.converters = getattr(config, "converters", [None] * len(self.headers))
        self.compiled = getattr(config, "compiled", None)
        # Arrow's extract_regex needs named groups: the user's groups are named in order;
        # None: Java syntax RE2 lacks, Python's re event by event
        self.pattern = _name_groups(_python_syntax(config.regex)) if getattr(config, "re2", True) else None

    def _slow(self, texts: list) -> tuple[list, list]:
        """(matched, [values per header]) by Python's re for these bodies."""
        matched, cols = [], [[] for _ in self.headers]
        for t in texts:
            m = self.compiled.search(t)
            matched.append(m is not None)
            for i, col in enumerate(cols):
                col.append(m.group(i + 1) if m else None)
        return matched, cols

    def intercept(self, batch):
        import numpy as np
        import pyarrow.compute as pc  # lazily: ~0.1 s of every agent's start-up
        if not len(batch) or not self.headers:
            return batch
        texts = _text_bodies(batch)
        if self.pattern is not None:
            parts = pc.extract_regex(texts, self.pattern)
            matched = pc.is_valid(parts)
            cols = [pc.struct_field(parts, [i]).cast(pa.string()) for i in range(len(self.headers))]
            empties = [e for e in (pc.equal(c, "") for c in cols) if pc.any(e).as_py()]
            redo = np.flatnonzero(functools.reduce(pc.or_, empties).to_numpy(zero_copy_only=False)) if empties else ()
            if len(redo) and self.compiled is not None:      # "" or no part in the match: ask re
                _, fixed = self._slow(pc.take(texts, pa.array(redo)).to_pylist())
                cols = [c.to_pylist() for c in cols]
                for c, f in zip(cols, fixed):
                    for j, v in zip(redo, f):
                        c[j] = v
                cols = [pa.array(c, pa.string()) for c in cols]
        else:
            m, cols = self._slow(texts.to_pylist())
            matched = pa.array(m, pa.bool_())
            cols = [pa.array(c, pa.string()) for c in cols]
        updates = {}
        for header, col, convert in zip(self.headers, cols, self.converters):
            if convert is not None:
                col = _per_distinct(col, convert)
            old = batch.headers.get(header)
            if isinstance(old, str):
                old = pa.array([old] * len(batch), pa.string())
            # Flume: an event that does not match keeps its headers as they were (col is null there)
            updates[header] = col if old is None else pc.if_else(matched, col, old)
        return batch.with_headers(**updates)


_JODA_NUMERIC = {"y": "year", "Y": "year", "u": "year", "M": "month", "d": "day", "H": "hour", "k": "hour24",
                 "K": "hour12", "h": "clockhour", "m": "minute", "s": "second", "S": "fraction"}


def joda_parser(pattern: str):
    """A Joda-Time DateTimeFormat pattern (what RegexExtractorInterceptorMillisSerializer
    takes) -> parse(text) -> ms since the epoch as a string, or None when text does not fit
    the pattern. Read in the local zone unless the pattern has Z, as Joda's default zone.
    Letters: y Y u M (MM, MMM, MMMM) d H k K h m s S a E Z and 'quoted text'."""
    import calendar as cal
    tokens: list[tuple[str, int]] = []        # (letter or "'" for text, count or the text)
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "'":
            j = pattern.find("'", i + 1)
            if j < 0:
                raise ValueError("unterminated quote in date pattern %r" % pattern)
            tokens.append(("'", pattern[i + 1:j] or "'"))
            i = j + 1
        elif c.isalpha():
            j = i
            while j < len(pattern) and pattern[j] == c:
                j += 1
            if c not in _JODA_NUMERIC and c not in "aEZ":
                raise ValueError("date pattern letter %r is not supported (supported: %s aEZ)"
                                 % (c, "".join(_JODA_NUMERIC)))
            tokens.append((c, j - i))
            i = j
        else:
            tokens.append(("'", c))
            i += 1
    months = [m.lower() for m in cal.month_name[1:]] + [m.lower() for m in cal.month_abbr[1:]]
    days = [d.lower() for d in cal.day_name] + [d.lower() for d in cal.day_abbr]
    parts = []
    for k, (c, n) in enumerate(tokens):
        nxt = tokens[k + 1][0] if k + 1 < len(tokens) else None
        adjacent = nxt in _JODA_NUMERIC       # Joda: a number followed by a number has a fixed width
        if c == "'":
            parts.append(re.escape(n))
        elif c == "M" and n >= 3:
            parts.append("(?P<monthname>%s)" % "|".join(sorted(months, key=len, reverse=True)))
        elif c == "E":
            parts.append("(?:%s)" % "|".join(sorted(days, key=len, reverse=True)))
        elif c == "a":
            parts.append("(?P<ampm>am|pm)")
        elif c == "Z":
            parts.append(r"(?P<zone>Z|[+-]\d\d:?\d\d)")
        else:
            name = _JODA_NUMERIC[c]
            if c in "yYu" and n == 2:
                name = "year2"
            width = "{%d}" % n if adjacent else ("{1,9}" if c in "yYuS" else "{1,%d}" % max(n, 2))
            parts.append("(?P<%s>%s\\d%s)" % (name, "[+-]?" if name == "year" and not adjacent else "", width))
    rx = re.compile("".join(parts), re.IGNORECASE)

    def parse(text: str) -> str | None:
        m = rx.fullmatch(text)
        if m is None:
            return None
        g = {k: v for k, v in m.groupdict().items() if v is not None}
        year = int(g.get("year", 1970))
        if "year2" in g:        # Joda: the year within 50 years of 30 years ago
            base = dt.date.today().year - 30 - 50
            year = base + (int(g["year2"]) - base) % 100
        month = int(g["month"]) if "month" in g else (months.index(g["monthname"].lower()) % 12 + 1
                                                      if "monthname" in g else 1)
        hour = int(g.get("hour", 0))
        if "hour24" in g:
            hour = int(g["hour24"]) % 24
        if "hour12" in g or "clockhour" in g:
            hour = int(g.get("hour12", g.get("clockhour", 0))) % 12
            if g.get("ampm", "am").lower() == "pm":
                hour += 12
        frac = g.get("fraction", "")
        ms = int((frac + "000")[:3]) if frac else 0
        try:
            t = dt.datetime(year, month, int(g.get("day", 1)), hour, int(g.get("minute", 0)), int(g.get("second", 0)),
                            ms * 1000)
        except ValueError:
            return None
        if "zone" in g:
            z = g["zone"].replace(":", "")
            off = 0 if z.upper() == "Z" else (1 if z[0] == "+" else -1) * (int(z[1:3]) * 60 + int(z[3:5]))
            t = t.replace(tzinfo=dt.timezone(dt.timedelta(minutes=off)))
        return str(round(t.timestamp() * 1000))
    return parse


def _per_distinct(col: pa.Array, convert) -> pa.Array:
    """convert(str) -> str | None once per distinct value, mapped back with Arrow."""
    import pyarrow.compute as pc
    distinct = pc.unique(col.drop_null())
    values = pa.array([convert(v) for v in distinct.to_pylist()], pa.string())
    return pc.take(values, pc.index_in(col, distinct))


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
        self.re2 = runs_in_re2(place, "searchPattern", self.searchPattern)


@INTERCEPTORS.register("search_replace", "org.apache.flume.interceptor.SearchAndReplaceInterceptor$Builder")
class SearchReplaceInterceptor(Interceptor):
    """Replaces every match of a regex in the body."""

    Config = SearchReplaceConfig

    def __init__(self, name, config):
        super().__init__(name, config)
        self.replacement = re.sub(r"\$(\d+)", r"\\\1", config.replaceString)   # Java's $1 -> RE2's \1
        self.rx = None if getattr(config, "re2", True) else java_regex(config.searchPattern)
        if self.rx is not None:
            self.java_replacement = java_replacement(config.replaceString, self.rx)

    def intercept(self, batch):
        import pyarrow.compute as pc  # lazily: ~0.1 s of every agent's start-up
        if not len(batch):
            return batch
        if self.rx is None:
            bodies = pc.replace_substring_regex(_text_bodies(batch), self.config.searchPattern, self.replacement)
        else:       # Java syntax RE2 lacks: event by event
            bodies = pa.array([self.rx.sub(self.java_replacement, t) for t in _text_bodies(batch).to_pylist()], pa.large_string())
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
