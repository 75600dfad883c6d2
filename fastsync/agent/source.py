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

from fastsync.agent.channels.base import put_slices
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


class ChannelProcessor:
    def __init__(self, selector, interceptor=None):
        self.selector = selector           # which channels get each event (fastsync.agent.selectors)
        self.required, self.optional = selector.required, selector.optional
        self.interceptor = interceptor     # batch -> batch (the source's interceptor chain), or None
        caps = [ch.transaction_capacity for ch in self.required + self.optional]
        # the most events one put may carry: sources that receive bursts split by this
        self.max_batch = min([c for c in caps if c] or [1 << 62])

    def process_batch(self, batch: EventBatch) -> None:
        if self.interceptor is not None and len(batch):
            batch = self.interceptor(batch)
        if not len(batch):
            return
        required, optional = self.selector.routes(batch)
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
        direct = self.selector.direct() if self.interceptor is None else None
        if direct is not None:
            return direct.put_each(batch, per_tx)
        return put_slices(batch, per_tx, self.process_batch)


class Source:
    """Base of sources. Subclasses are pollable (process() called by a SourceRunner) or
    event driven (start() starts their own threads)."""

    TYPE = "?"
    Config = SourceConfig
    pollable = False

    def __init__(self, name: str, config: SourceConfig, processor: ChannelProcessor | None = None):
        self.name = name
        self.config = config
        self.processor = processor   # where deliver() puts batches (None only for a source tried alone)
        self.counters = Counters("SOURCE", SOURCE_COUNTERS)
        self.finished = False   # True once a finite source has delivered everything

    def start(self) -> None:
        self.counters.started()

    def stop(self) -> None:
        self.counters.stopped()

    def deliver(self, batch: EventBatch, call: str = "AppendBatch") -> None:
        """Put a batch through the processor, keeping Flume's counters (of an appendBatch
        call, or `call` = "Append" for the one event of an append call); re-raises
        ChannelException so the caller can retry the same batch."""
        n, nbytes = len(batch), batch.nbytes
        self.counters.add(EventReceivedCount=n, **{call + "ReceivedCount": 1})
        try:
            self.processor.process_batch(batch)
        except ChannelException:
            self.counters.add(ChannelWriteFail=1)
            raise
        self.counters.add(EventAcceptedCount=n, EventAcceptedBytes=nbytes, **{call + "AcceptedCount": 1})

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
