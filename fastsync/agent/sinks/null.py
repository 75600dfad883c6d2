"""Flume's `null` sink: takes batches and discards them."""
from __future__ import annotations

from dataclasses import dataclass

from fastsync.agent.component import SINKS, setting
from fastsync.agent.sink import Sink, SinkConfig


@dataclass
class NullSinkConfig(SinkConfig):
    batchSize: int = setting("batchSize", 100, "events per take transaction", min=1)


@SINKS.register("null", "org.apache.flume.sink.NullSink")
class NullSink(Sink):
    Config = NullSinkConfig

    def deliver(self, batch) -> None:
        pass
