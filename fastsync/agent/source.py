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

from fastsync.agent.channels.base import Channel
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
    def __init__(self, required: list[Channel], optional: list[Channel] = (), interceptor=None):
        self.required = list(required)
        self.optional = list(optional)
        self.interceptor = interceptor     # batch -> batch (the source's interceptor chain), or None
        caps = [ch.transaction_capacity for ch in self.required + self.optional]
        # the most events one put may carry: sources that receive bursts split by this
        self.max_batch = min([c for c in caps if c] or [1 << 62])

    def process_batch(self, batch: EventBatch) -> None:
        if self.interceptor is not None and len(batch):
            batch = self.interceptor(batch)
        if not len(batch):
            return
        for ch in self.required:
            with ch.transaction() as tx:
                tx.put(batch)
        for ch in self.optional:
            try:
                with ch.transaction() as tx:
                    tx.put(batch)
            except ChannelException as exc:
                log.warning("Unable to put batch on optional channel %s: %s", ch.name, exc)


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
        n = len(batch)
        self.counters.add(EventReceivedCount=n, AppendBatchReceivedCount=1)
        try:
            self.processor.process_batch(batch)
        except ChannelException:
            self.counters.add(ChannelWriteFail=1)
            raise
        self.counters.add(EventAcceptedCount=n, AppendBatchAcceptedCount=1)


class PollableSource(Source):
    pollable = True
    waits_itself = False   # True: process() already waited for input, no backoff sleep after BACKOFF

    def process(self) -> Status:
        raise NotImplementedError
