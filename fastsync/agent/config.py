"""Reads a Flume properties file into a validated AgentConfig, before anything starts.

Layout, as Flume's: `<agent>.sources|channels|sinks|sinkgroups = names`, then
`<agent>.<kind>.<name>.<key> = value`; a source binds with `channels = c1 c2`, a sink with
`channel = c1`. Every problem is a ConfigError naming file:line and the key. A key the
agent does not use (a misspelling, a component listed nowhere) is a warning, as Flume
ignores it, or with `strict` an error; either names the key it probably meant.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastsync.agent.component import (CHANNELS, INTERCEPTORS, SELECTORS, SINK_PROCESSORS, SINKS, SOURCES, ComponentConfig,
                                      Place, Registry, duplicates, parse_config, suggest)
from fastsync.agent.errors import ConfigError, UnknownKey, UnknownKeysError
from fastsync.agent.properties import Prop, parse_properties

if TYPE_CHECKING:
    from fastsync.agent.sinkprocessors import SinkProcessor

log = logging.getLogger("fastsync.config")
KINDS = ("sources", "channels", "sinks", "sinkgroups")
# the keys of a source's channel selector, by selector; a "." at the end: one key per header value
SELECTOR_KEYS = {"replicating": ("selector.type", "selector.optional"),
                 "multiplexing": ("selector.type", "selector.header", "selector.default", "selector.mapping.", "selector.optional.")}


@dataclass
class ComponentSpec:
    name: str
    cls: type
    config: ComponentConfig
    place: Place


@dataclass
class SourceSpec(ComponentSpec):
    channels: list[str] = field(default_factory=list)
    optional: list[str] = field(default_factory=list)
    interceptors: list[ComponentSpec] = field(default_factory=list)
    multiplexing: object = None     # the selector's settings: a selectors.Multiplexing, or None
    selector: type | None = None    # the channel selector's class (replicating by default)


@dataclass
class SinkSpec(ComponentSpec):
    channel: str = ""


@dataclass
class AgentConfig:
    name: str
    path: str
    channels: dict[str, ComponentSpec]
    sources: dict[str, SourceSpec]
    sinks: dict[str, SinkSpec]
    sinkgroups: dict[str, "SinkGroupSpec"]


@dataclass
class SinkGroupSpec:
    name: str
    sinks: list[str]
    processor: type[SinkProcessor]  # its sink processor's class (default: each sink runs on its own)
    config: ComponentConfig


def _children(props: dict[str, Prop]) -> dict[str, dict[str, Prop]]:
    """{"c1.type": p, "c1.capacity": q} -> {"c1": {"type": p, "capacity": q}}: the keys under
    each first name, in one pass (scanning all keys per component is quadratic)."""
    out: dict[str, dict[str, Prop]] = {}
    for key, p in props.items():
        first, dot, rest = key.partition(".")
        if dot:
            out.setdefault(first, {})[rest] = p
    return out


def _listed(place: Place, key: str) -> list[str]:
    """The names of a list-valued key (`channels = c1 c2`), [] if absent. A name listed twice
    is an error: in a source's channels it would deliver every event twice."""
    if key not in place.props:
        return []
    names = place.props[key].value.split()
    dup = duplicates(names)
    if dup:
        raise place.error(key, "%s listed twice" % ", ".join(dup))
    return names


def load_agent_config(path: str, agent: str, strict: bool = False) -> AgentConfig:
    return agent_config_from_text(read_config_file(path), path, agent, strict)


def read_config_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as exc:
        raise ConfigError("cannot read the configuration file: %s" % exc.strerror, path) from None
    except UnicodeDecodeError as exc:
        raise ConfigError("not UTF-8 text: %s" % exc, path) from None


def agent_config_from_text(text: str, where: str, agent: str, strict: bool = False) -> AgentConfig:
    """The agent's configuration from properties text read elsewhere (a znode); `where`
    names it in errors as a file's path would: zk://127.0.0.1:2181/flume/a1:LINE."""
    return parse_agent_config(parse_properties(text, where), agent, where, strict)


def parse_agent_config(props: dict[str, Prop], agent: str, path: str = "<string>", strict: bool = False) -> AgentConfig:
    """The agent's configuration. Keys it does not use are logged as warnings, or with
    `strict` raised together as an UnknownKeysError (one located problem per key)."""
    unknown: list[UnknownKey] = []
    try:
        config = _parse_agent_config(props, agent, path, unknown)
    except ConfigError:
        _warn(unknown)     # the error is what stops the agent; the typos seen before it are still said
        raise
    unknown.sort(key=lambda u: u.line or 0)
    if strict and unknown:
        raise UnknownKeysError(unknown)
    _warn(unknown)
    return config


def _warn(unknown: list[UnknownKey]) -> None:
    if log.isEnabledFor(logging.WARNING):
        for u in unknown:
            log.warning("%s", u.warning())


def _lookup(registry: Registry, place: Place, name: str) -> Any:
    """registry.lookup(name), a plug-in that cannot be loaded (fastsync.plugins) located at `type`."""
    try:
        return registry.lookup(name)
    except ConfigError as exc:
        raise place.error("type", exc.message) from None


def _unknown_selector_keys(place: Place, kind: str) -> None:
    """The selector.* keys of a source its selector does not read (e.g. a mapping under a
    replicating selector: `selector.type` misspelt)."""
    allowed = SELECTOR_KEYS[kind]
    for key in place.props:
        if key.partition(".")[0] != "selector" or any(key == k or (k[-1] == "." and key.startswith(k)) for k in allowed):
            continue
        head, dot, value = key.partition(".")[2].partition(".")     # selector.mapping.US -> mapping, US
        near = suggest("selector." + head, [k.rstrip(".") for k in allowed if (k[-1] == ".") == bool(dot)])
        place.ignored(key, near and near + dot + value, "not a key of the %s channel selector" % kind)


def _parse_agent_config(props: dict[str, Prop], agent: str, path: str, unknown: list[UnknownKey]) -> AgentConfig:
    prefix = agent + "."
    mine = {k[len(prefix):]: v for k, v in props.items() if k.startswith(prefix)}
    if not mine:
        agents = sorted({k.split(".", 1)[0] for k in props if "." in k})
        raise ConfigError("no keys for agent '%s' (agents in this file: %s)" % (agent, ", ".join(agents) or "none"), path)

    agent_place = Place(path, agent, mine, unknown)

    def names(kind: str) -> tuple[list[str], int | None]:
        listed = _listed(agent_place, kind)
        for n in listed:
            # keys are split at dots: a dotted name could never have keys of its own (as in Flume)
            if "." in n:
                raise agent_place.error(kind, "'%s': a component name cannot contain '.'" % n)
        return listed, agent_place.line(kind)

    listed = {kind: names(kind) for kind in KINDS}
    listed_sets = {kind: set(listed[kind][0]) for kind in KINDS}
    by_kind = _children(mine)
    by_component = {kind: _children(by_kind.get(kind, {})) for kind in KINDS}

    def agent_hint(kind: str) -> str:
        """For an absent list key (`sources`): its probable misspelling among the agent-level keys (`sourcs`)."""
        return agent_place.did_you_mean(kind, [k for k in mine if "." not in k])

    def component_props(kind: str, name: str) -> dict[str, Prop]:
        return by_component[kind].get(name, {})

    # keys the agent does not read, e.g. of components that are not listed: Flume ignores them; say so
    for key in mine:
        parts = key.split(".")
        if parts[0] not in KINDS:             # a1.sourcs = r1
            kind = suggest(parts[0], KINDS)
            agent_place.ignored(key, kind and prefix + ".".join([kind] + parts[1:]))
        elif len(parts) == 2:                 # a1.sources.r1 = ...
            agent_place.ignored(key)
        elif len(parts) > 2 and parts[1] not in listed_sets[parts[0]]:
            name = suggest(parts[1], listed_sets[parts[0]])
            agent_place.ignored(key, name and prefix + ".".join([parts[0], name] + parts[2:]),
                                "component '%s' is not listed in %s%s" % (parts[1], prefix, parts[0]))

    def build(kind: str, registry: Registry, name: str) -> tuple[type, ComponentConfig, Place]:
        cprops = component_props(kind, name)
        place = Place(path, "%s%s.%s" % (prefix, kind, name), cprops, unknown)
        type_prop = cprops.get("type")
        if type_prop is None:
            raise ConfigError("required key is missing (%s '%s' is listed at line %s)%s"
                              % (registry.kind, name, listed[kind][1], place.did_you_mean("type")),
                              path, listed[kind][1], "%s.type" % place.prefix)
        cls = _lookup(registry, place, type_prop.value)
        if cls is None:
            near = suggest(type_prop.value.strip(), registry.known())
            raise place.error("type", "unknown %s type '%s' (known: %s)%s" % (
                registry.kind, type_prop.value.strip(), ", ".join(registry.known()), " — did you mean `%s`?" % near if near else ""))
        return cls, parse_config(cls.Config, place), place

    channel_names, channels_line = listed["channels"]
    if not channel_names:
        raise ConfigError("no channels: %schannels must list at least one%s" % (prefix, agent_hint("channels")), path, channels_line)
    channels = {}
    for name in channel_names:
        cls, cfg, place = build("channels", CHANNELS, name)
        channels[name] = ComponentSpec(name, cls, cfg, place)

    def check_channel(place: Place, key: str, ch: str) -> None:
        if ch not in channels:
            raise place.error(key, "channel '%s' is not defined in %schannels (defined: %s)"
                              % (ch, prefix, ", ".join(channel_names)))

    sources = {}
    for name in listed["sources"][0]:
        cls, cfg, place = build("sources", SOURCES, name)
        if "channels" not in place.props:
            raise place.error("type", "source '%s' has no channels: set %s.channels%s"
                              % (name, place.prefix, place.did_you_mean("channels")))
        bound = _listed(place, "channels")
        if not bound:
            raise place.error("channels", "source '%s' has no channels" % name)
        for ch in bound:
            check_channel(place, "channels", ch)
        selector = place.props.get("selector.type")
        scls = SELECTORS.lookup(selector.value if selector is not None else "replicating")
        if scls is None:
            assert selector is not None     # the default is known
            raise place.error("selector.type", "unknown channel selector '%s' (known: %s)"
                              % (selector.value.strip(), ", ".join(SELECTORS.known())))
        optional, multiplexing = scls.parse(place, bound)
        _unknown_selector_keys(place, scls.TYPE)
        interceptors = []
        iprops_of = _children(_children(place.props).get("interceptors", {}))
        inames = _listed(place, "interceptors")
        for key in place.props:
            first, _, rest = key.partition(".")
            if first == "interceptors" and rest:
                iname = rest.split(".", 1)[0]
                if "." not in rest:
                    place.ignored(key)
                elif iname not in inames:
                    near = suggest(iname, inames)
                    place.ignored(key, near and "%s.interceptors.%s.%s" % (place.prefix, near, rest.split(".", 1)[1]),
                                  "interceptor '%s' is not listed in %s.interceptors" % (iname, place.prefix))
        for iname in inames:
            if "." in iname:
                raise place.error("interceptors", "'%s': an interceptor name cannot contain '.'" % iname)
            iprops = iprops_of.get(iname, {})
            iplace = Place(path, "%s.interceptors.%s" % (place.prefix, iname), iprops, unknown)
            itype = iprops.get("type")
            if itype is None:
                raise place.error("interceptors", "interceptor '%s' has no type: set %s.type" % (iname, iplace.prefix))
            icls = _lookup(INTERCEPTORS, iplace, itype.value)
            if icls is None:
                raise iplace.error("type", "unknown interceptor type '%s' (known: %s)"
                                   % (itype.value.strip(), ", ".join(INTERCEPTORS.known())))
            interceptors.append(ComponentSpec(iname, icls, parse_config(icls.Config, iplace), iplace))
        batch = getattr(cfg, "batchSize", None)
        for ch in bound:
            cap = getattr(channels[ch].config, "transactionCapacity", None)
            if batch and cap and batch > cap:
                raise place.error("batchSize", "%d is more than %schannels.%s.transactionCapacity (%d): every put would fail"
                                  % (batch, prefix, ch, cap))
        optional_set = set(optional)
        sources[name] = SourceSpec(name, cls, cfg, place, [c for c in bound if c not in optional_set], optional, interceptors,
                                   multiplexing, scls)

    sinks = {}
    for name in listed["sinks"][0]:
        if not component_props("sinks", name):
            # as Flume: a listed sink with no keys at all is left out and the rest runs (--strict: an error)
            unknown.append(UnknownKey(path, listed["sinks"][1], prefix + "sinks", None,
                                      "sink '%s' is listed but has no keys: not started" % name))
            continue
        cls, cfg, place = build("sinks", SINKS, name)
        channel = place.props.get("channel")
        if channel is None or not channel.value.strip():
            raise place.error("type", "sink '%s' has no channel: set %s.channel%s" % (name, place.prefix, place.did_you_mean("channel")))
        check_channel(place, "channel", channel.value.strip())
        sinks[name] = SinkSpec(name, cls, cfg, place, channel.value.strip())

    if not sources and not sinks:
        raise ConfigError("agent '%s' has no sources and no sinks%s" % (agent, agent_hint("sources") or agent_hint("sinks")),
                          path, channels_line)

    sinkgroups = {}
    member_of: dict[str, str] = {}
    for group in listed["sinkgroups"][0]:
        gprops = component_props("sinkgroups", group)
        place = Place(path, "%ssinkgroups.%s" % (prefix, group), gprops, unknown)
        if "sinks" not in gprops:
            raise ConfigError("sink group '%s' lists no sinks%s" % (group, place.did_you_mean("sinks")),
                              path, listed["sinkgroups"][1], place.prefix + ".sinks")
        for key in gprops:
            if key != "sinks" and not key.startswith("processor."):
                first, dot, rest = key.partition(".")       # procesor.type -> processor.type
                near = suggest(first, ("sinks", "processor"))
                place.ignored(key, near and near + dot + rest)
        members = _listed(place, "sinks")
        for s in members:
            if s not in sinks:
                raise place.error("sinks", "sink '%s' is not defined in %ssinks" % (s, prefix))
            if s in member_of:
                raise place.error("sinks", "sink '%s' is already in sink group '%s'" % (s, member_of[s]))
            member_of[s] = group
        ptype = gprops.get("processor.type")
        pcls = SINK_PROCESSORS.lookup(ptype.value if ptype is not None else "default")
        if pcls is None:
            assert ptype is not None        # the default is known
            raise place.error("processor.type", "unknown sink processor '%s' (known: %s)"
                              % (ptype.value.strip(), ", ".join(SINK_PROCESSORS.known())))
        pplace = Place(path, place.prefix + ".processor", _children(gprops).get("processor", {}), unknown)
        pconfig = parse_config(pcls.Config, pplace)
        member_set = set(members)
        for s in getattr(pconfig, "priorities", {}):
            if s not in member_set:
                raise pplace.error("priority." + s, "sink '%s' is not in sink group '%s'" % (s, group))
        sinkgroups[group] = SinkGroupSpec(group, members, pcls, pconfig)
    return AgentConfig(agent, path, channels, sources, sinks, sinkgroups)
