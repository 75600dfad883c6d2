"""Reads a Flume properties file into a validated AgentConfig, before anything starts.

Layout, as Flume's: `<agent>.sources|channels|sinks|sinkgroups = names`, then
`<agent>.<kind>.<name>.<key> = value`; a source binds with `channels = c1 c2`, a sink with
`channel = c1`. Every problem is a ConfigError naming file:line and the key.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from fastsync.agent.component import (CHANNELS, INTERCEPTORS, SINKS, SOURCES, ComponentConfig, Place, Registry,
                                      duplicates, parse_config)
from fastsync.agent.errors import ConfigError
from fastsync.agent.properties import Prop, parse_properties
from fastsync.agent.sinkprocessors import PROCESSORS, SinkProcessorConfig
from fastsync.agent.source import Multiplexing

log = logging.getLogger("fastsync.config")
KINDS = ("sources", "channels", "sinks", "sinkgroups")


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
    multiplexing: Multiplexing | None = None


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
    processor: type | None          # None: the default processor (each sink runs on its own)
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


def _multiplexing(place: Place, bound: list[str]) -> Multiplexing:
    """Flume's multiplexing selector keys of a source: selector.header
    (flume.selector.header), selector.mapping.<value>, selector.optional.<value>,
    selector.default; every channel named must be one of the source's."""
    bound_set = set(bound)

    def channels_of(key: str) -> list[str]:
        names = _listed(place, key)
        for ch in names:
            if ch not in bound_set:
                raise place.error(key, "channel '%s' is not in %s.channels" % (ch, place.prefix))
        return names
    header = place.props["selector.header"].value.strip() if "selector.header" in place.props else "flume.selector.header"
    mapping, optional, default = {}, {}, []
    for key in place.props:
        if key.startswith("selector.mapping."):
            mapping[key[len("selector.mapping."):]] = channels_of(key)
        elif key.startswith("selector.optional."):
            optional[key[len("selector.optional."):]] = channels_of(key)
        elif key == "selector.default":
            default = channels_of(key)
        elif key == "selector.optional":
            raise place.error(key, "with a multiplexing selector, optional channels are per value: selector.optional.<value>")
    return Multiplexing(header, mapping, optional, default)


def load_agent_config(path: str, agent: str) -> AgentConfig:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise ConfigError("cannot read the configuration file: %s" % exc.strerror, path) from None
    except UnicodeDecodeError as exc:
        raise ConfigError("not UTF-8 text: %s" % exc, path) from None
    return parse_agent_config(parse_properties(text, path), agent, path)


def parse_agent_config(props: dict[str, Prop], agent: str, path: str = "<string>") -> AgentConfig:
    prefix = agent + "."
    mine = {k[len(prefix):]: v for k, v in props.items() if k.startswith(prefix)}
    if not mine:
        agents = sorted({k.split(".", 1)[0] for k in props if "." in k})
        raise ConfigError("no keys for agent '%s' (agents in this file: %s)" % (agent, ", ".join(agents) or "none"), path)

    agent_place = Place(path, agent, mine)

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

    def component_props(kind: str, name: str) -> dict[str, Prop]:
        return by_component[kind].get(name, {})

    # keys of components that are not listed: Flume ignores them; say so
    for key, p in mine.items():
        parts = key.split(".")
        if len(parts) >= 3 and parts[0] in KINDS and parts[1] not in listed_sets[parts[0]]:
            log.warning("%s:%d: %s%s: component '%s' is not listed in %s%s, ignored",
                        path, p.line, prefix, key, parts[1], prefix, parts[0])
        elif len(parts) == 1 and parts[0] not in KINDS:
            log.warning("%s:%d: %s%s: unknown key, ignored", path, p.line, prefix, key)

    def build(kind: str, registry: Registry, name: str) -> tuple[type, ComponentConfig, Place]:
        cprops = component_props(kind, name)
        place = Place(path, "%s%s.%s" % (prefix, kind, name), cprops)
        type_prop = cprops.get("type")
        if type_prop is None:
            raise ConfigError("required key is missing (%s '%s' is listed at line %s)" % (registry.kind, name, listed[kind][1]),
                              path, listed[kind][1], "%s.type" % place.prefix)
        cls = registry.lookup(type_prop.value)
        if cls is None:
            raise place.error("type", "unknown %s type '%s' (known: %s)"
                              % (registry.kind, type_prop.value.strip(), ", ".join(registry.known())))
        return cls, parse_config(cls.Config, place), place

    channel_names, channels_line = listed["channels"]
    if not channel_names:
        raise ConfigError("no channels: %schannels must list at least one" % prefix, path, channels_line)
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
            raise place.error("type", "source '%s' has no channels: set %s.channels" % (name, place.prefix))
        bound = _listed(place, "channels")
        if not bound:
            raise place.error("channels", "source '%s' has no channels" % name)
        for ch in bound:
            check_channel(place, "channels", ch)
        selector = place.props.get("selector.type")
        kind = selector.value.strip().lower() if selector is not None else "replicating"
        multiplexing = None
        if kind in ("multiplexing", "org.apache.flume.channel.multiplexingchannelselector"):
            multiplexing = _multiplexing(place, bound)
            optional = []
        elif kind in ("replicating", "org.apache.flume.channel.replicatingchannelselector"):
            optional = _listed(place, "selector.optional")
            bound_set = set(bound)
            for ch in optional:
                if ch not in bound_set:
                    raise place.error("selector.optional", "optional channel '%s' is not in %s.channels" % (ch, place.prefix))
        else:
            assert selector is not None     # the default is known
            raise place.error("selector.type", "unknown channel selector '%s' (known: replicating, multiplexing)" % selector.value.strip())
        interceptors = []
        iprops_of = _children(_children(place.props).get("interceptors", {}))
        for iname in _listed(place, "interceptors"):
            if "." in iname:
                raise place.error("interceptors", "'%s': an interceptor name cannot contain '.'" % iname)
            iprops = iprops_of.get(iname, {})
            iplace = Place(path, "%s.interceptors.%s" % (place.prefix, iname), iprops)
            itype = iprops.get("type")
            if itype is None:
                raise place.error("interceptors", "interceptor '%s' has no type: set %s.type" % (iname, iplace.prefix))
            icls = INTERCEPTORS.lookup(itype.value)
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
                                   multiplexing)

    sinks = {}
    for name in listed["sinks"][0]:
        cls, cfg, place = build("sinks", SINKS, name)
        channel = place.props.get("channel")
        if channel is None or not channel.value.strip():
            raise place.error("type", "sink '%s' has no channel: set %s.channel" % (name, place.prefix))
        check_channel(place, "channel", channel.value.strip())
        sinks[name] = SinkSpec(name, cls, cfg, place, channel.value.strip())

    if not sources and not sinks:
        raise ConfigError("agent '%s' has no sources and no sinks" % agent, path, channels_line)

    sinkgroups = {}
    member_of: dict[str, str] = {}
    for group in listed["sinkgroups"][0]:
        gprops = component_props("sinkgroups", group)
        place = Place(path, "%ssinkgroups.%s" % (prefix, group), gprops)
        if "sinks" not in gprops:
            raise ConfigError("sink group '%s' lists no sinks" % group, path, listed["sinkgroups"][1], place.prefix + ".sinks")
        members = _listed(place, "sinks")
        for s in members:
            if s not in sinks:
                raise place.error("sinks", "sink '%s' is not defined in %ssinks" % (s, prefix))
            if s in member_of:
                raise place.error("sinks", "sink '%s' is already in sink group '%s'" % (s, member_of[s]))
            member_of[s] = group
        ptype = gprops.get("processor.type")
        kind = ptype.value.strip().lower() if ptype is not None else "default"
        if kind not in PROCESSORS:
            assert ptype is not None        # the default is known
            raise place.error("processor.type", "unknown sink processor '%s' (known: default, failover, load_balance)"
                              % ptype.value.strip())
        pplace = Place(path, place.prefix + ".processor", _children(gprops).get("processor", {}))
        pconfig = parse_config(SinkProcessorConfig, pplace)
        member_set = set(members)
        for s in getattr(pconfig, "priorities", {}):
            if s not in member_set:
                raise pplace.error("priority." + s, "sink '%s' is not in sink group '%s'" % (s, group))
        sinkgroups[group] = SinkGroupSpec(group, members, PROCESSORS[kind], pconfig)
    return AgentConfig(agent, path, channels, sources, sinks, sinkgroups)
