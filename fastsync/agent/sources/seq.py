"""Flume's `seq` source: bodies are the decimal counter 0, 1, 2, ..., made natively."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from fastsync._native import decimal_bodies
from fastsync.agent.component import SOURCES, setting
from fastsync.agent.errors import ChannelException
from fastsync.agent.source import PollableSource, SourceConfig, Status
from fastsync.event import EventBatch

log = logging.getLogger("fastsync.source.seq")
BLOCK = 16384    # events made per process() call, when batchSize is smaller


@dataclass
class SeqSourceConfig(SourceConfig):
    totalEvents: int = setting("totalEvents", 2**63 - 1, "events to generate, then stop", min=0)
    batchSize: int = setting("batchSize", 1, "events per channel transaction", min=1)


@SOURCES.register("seq", "org.apache.flume.source.SequenceGeneratorSource")
class SeqSource(PollableSource):
    Config = SeqSourceConfig

    def __init__(self, name, config, processor=None):
        super().__init__(name, config, processor)
        self.next = 0

    def process(self) -> Status:
        per_tx = self.config.batchSize
        # several transactions' events made at once, committed one transaction at a time
        n = min(per_tx * max(1, BLOCK // per_tx), self.config.totalEvents - self.next)
        if n <= 0:
            self.finished = True
            return Status.BACKOFF
        data, offsets = decimal_bodies(self.next, n)
        try:
            self.next += self.deliver_each(EventBatch(data, np.frombuffer(offsets, dtype=np.int64)), per_tx)
        except ChannelException as exc:
            # the counter advances past what was committed only: the rest is retried
            self.next += getattr(exc, "committed", 0)
            log.warning("%s source could not write to channel: %s", self.name, exc)
            return Status.BACKOFF
        return Status.READY
