"""Sinks: take a batch from their channel, deliver it, then commit the take.

Sink.process() is the one place with the transaction idiom: a batch that could not be
delivered is rolled back to the head of the channel and retried after a backoff, so
delivery is at-least-once and a failure duplicates at most one batch.
"""
from __future__ import annotations

from dataclasses import dataclass

from fastsync.agent.channels.base import Channel
from fastsync.agent.component import ComponentConfig
from fastsync.agent.metrics import SINK_COUNTERS, Counters
from fastsync.agent.source import Status
from fastsync.event import EventBatch

TAKE_WAIT = 0.5   # seconds a take waits for events before process() reports BACKOFF


@dataclass
class SinkConfig(ComponentConfig):
    STRUCTURAL = ("type", "channel")


class Sink:
    TYPE = "?"
    Config = SinkConfig

    def __init__(self, name: str, config: SinkConfig):
        self.name = name
        self.config = config
        self.channel: Channel | None = None
        self.counters = Counters("SINK", SINK_COUNTERS)

    @property
    def batch_size(self) -> int:
        return getattr(self.config, "batchSize", 100)

    def start(self) -> None:
        self.counters.started()

    def stop(self) -> None:
        self.counters.stopped()

    def deliver(self, batch: EventBatch) -> None:
        """Write a whole batch to the destination; raise to have the take rolled back."""
        raise NotImplementedError

    def interrupt(self) -> None:
        """The agent is stopping: a deliver() waiting on its destination should give up
        (raise, so the take is rolled back)."""

    def idle(self) -> None:
        """Called when a take found nothing (e.g. to roll files on time)."""

    def process(self) -> Status:
        tx = self.channel.transaction()
        tx.begin()
        try:
            batch = tx.take(self.batch_size, TAKE_WAIT)
            if batch is None:
                tx.commit()
                self.counters.add(BatchEmptyCount=1)
                self.idle()
                return Status.BACKOFF
            n = len(batch)
            self.counters.add(EventDrainAttemptCount=n)
            try:
                self.deliver(batch)
            except Exception:
                self.counters.add(EventWriteFail=1)
                raise
            tx.commit()
            self.counters.add(EventDrainSuccessCount=n, **{"BatchCompleteCount" if n == self.batch_size else "BatchUnderflowCount": 1})
            return Status.READY
        except BaseException:
            tx.rollback()
            raise
        finally:
            tx.close()
