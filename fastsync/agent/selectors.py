"""Flume's channel selectors: which of a source's channels get each event.

`replicating` (the default): every event to every channel; those listed in
`selector.optional` may refuse it (logged only). `multiplexing`: the value of header
`selector.header` picks each event's channels, `selector.mapping.<value>` (required) and
`selector.optional.<value>`; an event without the header, or with an unmapped value, goes
to `selector.default`. Each selector checks its keys when the configuration is read
(`parse`) and is built with the channels it routes to.
"""
from __future__ import annotations

from dataclasses import dataclass

from fastsync.agent.component import SELECTORS, ComponentConfig, Place, parse_config, setting
from fastsync.agent.config import _listed as parse_list     # loaded: this module is looked up while reading a config
from fastsync.event import EventBatch


def _selector_keys(cls, place: Place, bound: list[str]):
    """cls.Config from a source's `selector.*` keys, every channel it names checked to be
    one of the source's."""
    props = {k[len("selector."):]: p for k, p in place.props.items() if k.startswith("selector.")}
    # keys no selector reads are reported by the config reader, in the selector's words: a
    # list nobody reads takes this parse's reports
    splace = Place(place.path, place.prefix + ".selector", props, [])
    config: SelectorConfig = parse_config(cls.Config, splace)   # type: ignore[assignment]
    bound_set = set(bound)
    for key, names in config.channel_lists(splace):
        for ch in names:
            if ch not in bound_set:
                raise splace.error(key, "%s '%s' is not in %s.channels"
                                   % ("optional channel" if key == "optional" else "channel", ch, place.prefix))
    return config


@dataclass
class Multiplexing:
    """A multiplexing selector's settings: `mapping`: value -> required channel names,
    `optional`: value -> optional ones, `default`: channels of unmapped events."""
    header: str
    mapping: dict
    optional: dict
    default: list

    def masks(self, batch: EventBatch, channel: str) -> tuple:
        """(events `channel` must get, events it may get) as boolean masks, or None for none."""
        import pyarrow as pa
        import pyarrow.compute as pc
        col = batch.header_array(self.header)
        mapped = pa.array(list(self.mapping), pa.string())
        out = []
        for table, default in ((self.mapping, self.default), (self.optional, [])):
            values = pa.array([v for v, chans in table.items() if channel in chans], pa.string())
            mask = pc.is_in(col, value_set=values)
            if channel in default:
                mask = pc.or_(mask, pc.invert(pc.is_in(col, value_set=mapped)))
            out.append(mask if pc.any(mask).as_py() else None)
        return tuple(out)


@dataclass
class SelectorConfig(ComponentConfig):
    def channel_lists(self, place: Place) -> list[tuple[str, list[str]]]:
        """(key, channels it names), to check they are the source's."""
        return []


@dataclass
class ReplicatingConfig(SelectorConfig):
    optional: list = setting("optional", [], "channels that may refuse an event (logged only)")

    def channel_lists(self, place: Place) -> list[tuple[str, list[str]]]:
        return [("optional", self.optional)]


@SELECTORS.register("replicating", "org.apache.flume.channel.ReplicatingChannelSelector")
class ReplicatingSelector:
    """Every event goes to every channel of the source (the default selector)."""
    Config = ReplicatingConfig

    def __init__(self, required: list, optional: list, settings=None):
        self.required, self.optional = list(required), list(optional)

    @classmethod
    def parse(cls, place: Place, bound: list[str]) -> tuple[list[str], None]:
        """(the optional channels, settings) from a source's keys."""
        return _selector_keys(cls, place, bound).optional, None

    def direct(self):
        """The one channel every event goes to, untouched, or None."""
        return self.required[0] if len(self.required) == 1 and not self.optional else None

    def routes(self, batch: EventBatch) -> tuple[list, list]:
        """[(channel, events)] that must get them, [(channel, events)] that may."""
        return [(ch, batch) for ch in self.required], [(ch, batch) for ch in self.optional]


@dataclass
class MultiplexingConfig(SelectorConfig):
    PASSTHROUGH = ("mapping.", "optional.")
    header: str = setting("header", "flume.selector.header", "header whose value picks the channels")
    default: list = setting("default", [], "channels of events without the header or with an unmapped value")
    # mapping.<value> = required channels, optional.<value> = optional ones (passed through as `extra`)

    def validate(self, place: Place) -> None:
        if "optional" in place.props:
            raise place.error("optional", "with a multiplexing selector, optional channels are per value: selector.optional.<value>")
        self.mapping: dict[str, list[str]] = {}
        self.optional: dict[str, list[str]] = {}
        for key in place.props:
            for prefix, table in (("mapping.", self.mapping), ("optional.", self.optional)):
                if key.startswith(prefix):
                    table[key[len(prefix):]] = parse_list(place, key)

    def channel_lists(self, place: Place) -> list[tuple[str, list[str]]]:
        return ([("default", self.default)] + [("mapping." + v, c) for v, c in self.mapping.items()]
                + [("optional." + v, c) for v, c in self.optional.items()])


@SELECTORS.register("multiplexing", "org.apache.flume.channel.MultiplexingChannelSelector")
class MultiplexingSelector:
    """The value of one header picks the channels of each event; an event without it, or with a
    value not mapped, goes to the default channels."""
    Config = MultiplexingConfig

    def __init__(self, required: list, optional: list, settings: Multiplexing):
        self.required, self.optional = list(required), list(optional)
        self.settings = settings

    @classmethod
    def parse(cls, place: Place, bound: list[str]) -> tuple[list[str], Multiplexing]:
        """([], settings) from a source's keys."""
        c = _selector_keys(cls, place, bound)
        return [], Multiplexing(c.header.strip(), c.mapping, c.optional, c.default)

    def direct(self):
        return None

    def routes(self, batch: EventBatch) -> tuple[list, list]:
        required: list = []
        optional: list = []
        arrow = None
        for ch in self.required + self.optional:
            must, may = self.settings.masks(batch, ch.name)
            for mask, out in ((must, required), (may, optional)):
                if mask is not None:
                    arrow = batch.to_arrow() if arrow is None else arrow
                    out.append((ch, EventBatch.from_arrow(arrow.filter(mask))))
        return required, optional
