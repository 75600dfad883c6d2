"""Flume's `null` sink: takes batches and discards them."""
from __future__ import annotations

from dataclasses import dataclass

from fastsync.agent.component import SINKS, setting
from fastsync.agent.sink import TAKE_WAIT, Sink, SinkConfig
from fastsync.agent.source import Status


@dataclass
class NullSinkConfig(SinkConfig):
    batchSize: int = setting("batchSize", 100, "events per take transaction", min=1)


@SINKS.register("null", "org.apache.flume.sink.NullSink")
class NullSink(Sink):
    Config = NullSinkConfig

    def deliver(self, batch) -> None:
        pass

    def process(self) -> Status:
        # Discarding needs no batch: a channel that can take and commit transactions
        # natively (memory) does them in one call; events with headers go the usual way.
        drain = getattr(self.channel, "drain_each", None)
        if drain is None:
            return super().process()
        return self._ran_natively(drain(self.batch_size, TAKE_WAIT, self.transactions_per_process))
