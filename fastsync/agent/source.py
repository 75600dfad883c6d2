"""Sources and the ChannelProcessor that puts their batches into channels.

A source never touches a channel: it hands a batch to its ChannelProcessor, which puts it
into every required channel, one transaction per channel (replicating selector), and
raises ChannelException if a required channel refused it; optional channels' failures
are logged only. A source reports an event as accepted only after that returns.
"""
from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from fastsync.agent.channels.base import Channel, put_slices
from fastsync.agent.component import ComponentConfig
from fastsync.agent.errors import ChannelException
from fastsync.agent.metrics import SOURCE_COUNTERS, Counters
from fastsync.event import EventBatch

log = logging.getLogger("fastsync.source")


class Status(enum.Enum):
    READY = "READY"       # did work; call again at once
    BACKOFF = "BACKOFF"   # nothing to do (or a retryable failure); the runner waits


@dataclass
class SourceConfig(ComponentConfig):
    STRUCTURAL = ("type", "channels", "selector", "interceptors")


@dataclass
class Multiplexing:
    """Flume's multiplexing selector: the value of `header` picks the channels of each
    event (`mapping`: value -> required channel names, `optional`: value -> optional ones);
    an event without the header, or with an unmapped value, goes to `default`."""
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


class ChannelProcessor:
    def __init__(self, required: list[Channel], optional: list[Channel] = (), interceptor=None,
                 multiplexing: Multiplexing | None = None):
        self.required = list(required)
        self.optional = list(optional)
        self.interceptor = interceptor     # batch -> batch (the source's interceptor chain), or None
        self.multiplexing = multiplexing   # None: replicating (every event to every channel)
        caps = [ch.transaction_capacity for ch in self.required + self.optional]
        # the most events one put may carry: sources that receive bursts split by this
        self.max_batch = min([c for c in caps if c] or [1 << 62])

    def _routes(self, batch: EventBatch) -> tuple[list, list]:
        """[(channel, events)] it must get, [(channel, events)] it may get."""
        if self.multiplexing is None:
            return [(ch, batch) for ch in self.required], [(ch, batch) for ch in self.optional]
        required, optional = [], []
        arrow = None
        for ch in self.required + self.optional:
            must, may = self.multiplexing.masks(batch, ch.name)
            for mask, out in ((must, required), (may, optional)):
                if mask is not None:
                    arrow = batch.to_arrow() if arrow is None else arrow
                    out.append((ch, EventBatch.from_arrow(arrow.filter(mask))))
        return required, optional

    def process_batch(self, batch: EventBatch) -> None:
        if self.interceptor is not None and len(batch):
            batch = self.interceptor(batch)
        if not len(batch):
            return
        required, optional = self._routes(batch)
        for ch, events in required:
            with ch.transaction() as tx:
                tx.put(events)
        for ch, events in optional:
            try:
                with ch.transaction() as tx:
                    tx.put(events)
            except ChannelException as exc:
                log.warning("Unable to put batch on optional channel %s: %s", ch.name, exc)

    def process_each(self, batch: EventBatch, per_tx: int) -> int:
        """process_batch of consecutive slices of per_tx events, each its own transaction
        per channel (as a source delivering batchSize at a time). Returns len(batch); a
        failure raises its ChannelException with `.committed`, the events of the slices
        delivered before it."""
        if self.interceptor is None and self.multiplexing is None and len(self.required) == 1 and not self.optional:
            return self.required[0].put_each(batch, per_tx)
        return put_slices(batch, per_tx, self.process_batch)


class Source:
    """Base of sources. Subclasses are pollable (process() called by a SourceRunner) or
    event driven (start() starts their own threads)."""

    TYPE = "?"
    Config = SourceConfig
    pollable = False

    def __init__(self, name: str, config: SourceConfig):
        self.name = name
        self.config = config
        self.processor: ChannelProcessor | None = None
        self.counters = Counters("SOURCE", SOURCE_COUNTERS)
        self.finished = False   # True once a finite source has delivered everything

    def start(self) -> None:
        self.counters.started()

    def stop(self) -> None:
        self.counters.stopped()

    def deliver(self, batch: EventBatch) -> None:
        """Put a batch through the processor, keeping Flume's counters; re-raises
        ChannelException so the caller can retry the same batch."""
        n, nbytes = len(batch), batch.nbytes
        self.counters.add(EventReceivedCount=n, AppendBatchReceivedCount=1)
        try:
            self.processor.process_batch(batch)
        except ChannelException:
            self.counters.add(ChannelWriteFail=1)
            raise
        self.counters.add(EventAcceptedCount=n, AppendBatchAcceptedCount=1, EventAcceptedBytes=nbytes)

    def deliver_each(self, batch: EventBatch, per_tx: int) -> int:
        """deliver() as consecutive transactions of per_tx events, in as few Python
        steps as the channels allow. Returns the events accepted; on a failure raises its
        ChannelException with `.committed` (the events accepted before it)."""
        n = len(batch)
        if not n:
            return 0
        self.counters.add(EventReceivedCount=n, AppendBatchReceivedCount=-(-n // per_tx))
        try:
            done = self.processor.process_each(batch, per_tx)
        except ChannelException as exc:
            done = getattr(exc, "committed", 0)
            self._accepted(batch, done, per_tx)
            self.counters.add(ChannelWriteFail=1)
            raise
        self._accepted(batch, n, per_tx)
        return done

    def _accepted(self, batch: EventBatch, done: int, per_tx: int) -> None:
        if done:
            nbytes = batch.nbytes if done == len(batch) else int(batch.offsets[done] - batch.offsets[0])
            self.counters.add(EventAcceptedCount=done, AppendBatchAcceptedCount=-(-done // per_tx),
                              EventAcceptedBytes=nbytes)


class PollableSource(Source):
    pollable = True
    waits_itself = False   # True: process() already waited for input, no backoff sleep after BACKOFF

    def process(self) -> Status:
        raise NotImplementedError
