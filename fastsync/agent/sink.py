"""Sinks: take a batch from their channel, deliver it, then commit the take.

Sink.process() is the one place with the transaction idiom: a batch that could not be
delivered is rolled back to the head of the channel and retried after a backoff, so
delivery is at-least-once and a failure duplicates at most one batch. Each failed try
counts in EventWriteFail; its reason is logged once until a batch gets through, not on
every retry (a poison event would otherwise log every few seconds forever).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from fastsync.agent.channels.base import Channel
from fastsync.agent.component import ComponentConfig
from fastsync.agent.errors import EventDeliveryException
from fastsync.agent.metrics import SINK_COUNTERS, Counters
from fastsync.agent.source import Status
from fastsync.event import EventBatch

log = logging.getLogger("fastsync.sink")
TAKE_WAIT = 0.5   # seconds a take waits for events before process() reports BACKOFF
MAX_REPORTED = 100   # distinct failure reasons remembered between two delivered batches


@dataclass
class SinkConfig(ComponentConfig):
    STRUCTURAL = ("type", "channel")


class Sink:
    TYPE = "?"
    Config = SinkConfig
    # take transactions a process() call may run natively (None: as many as there are
    # events, up to the channel's own limit); a load-balancing group sets 1
    transactions_per_process: int | None = None

    def __init__(self, name: str, config: SinkConfig, channel: Channel | None = None,
                 transactions_per_process: int | None = None):
        self.name = name
        self.config = config
        self.channel = channel       # where process() takes batches from (None only for a sink tried alone)
        if transactions_per_process is not None:     # set by its sink group's processor
            self.transactions_per_process = transactions_per_process
        self.counters = Counters("SINK", SINK_COUNTERS)
        self.reported: set[str] = set()     # failure reasons logged since the last delivered batch

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
            n, nbytes = len(batch), batch.nbytes
            try:
                self.deliver(batch)
            except Exception as exc:
                self.counters.add(EventDrainAttemptCount=n, EventWriteFail=1)
                self._report(exc, n)
                raise
            tx.commit()
            # one update per batch: the attempt is counted with its outcome
            self.count_success(n, nbytes, EventDrainAttemptCount=n)
            return Status.READY
        except BaseException:
            tx.rollback()
            raise
        finally:
            tx.close()

    def open_take(self, timeout: float):
        """A take left open, for a sink that commits (or rolls back) its transaction later,
        once its destination answered: (transaction, batch); None when the channel had
        nothing in `timeout` (that transaction closed)."""
        tx = self.channel.transaction()
        tx.begin()
        try:
            batch = tx.take(self.batch_size, timeout)
        except BaseException:
            tx.rollback()
            tx.close()
            raise
        if batch is None:
            tx.commit()
            tx.close()
            return None
        return tx, batch

    def open_takes(self, timeout: float, most: int):
        """Up to `most` takes of open_take at once, for a sink that sends them as one message
        and commits (or rolls back) them together once its destination answered: the
        first waiting up to `timeout`, the others only those the channel already holds.
        Returns (transactions, their events as one batch, events per take), or None. A
        memory channel takes them all in one go (one transaction, one gather of the
        bodies); another channel a take at a time, the batches then put end to end."""
        take_group = getattr(self.channel, "take_group", None)
        if take_group is not None:
            got = take_group(self.batch_size, most, timeout)
            return None if got is None else ([got[0]], got[1], got[2])
        first = self.open_take(timeout)
        if first is None:
            return None
        txs, batches = [first[0]], [first[1]]
        try:
            while len(txs) < most:
                more = self.open_take(0)
                if more is None:
                    break
                txs.append(more[0])
                batches.append(more[1])
            batch = EventBatch.concat(batches) if len(batches) > 1 else batches[0]
        except BaseException:
            for tx in reversed(txs):    # the last taken first: the channel keeps their order
                tx.rollback()
                tx.close()
            raise
        return txs, batch, [len(b) for b in batches]

    def commit_take(self, tx, n: int, nbytes: int) -> None:
        """Commit (and count) a take of open_take once its destination acknowledged it."""
        try:
            tx.commit()
        except BaseException:
            tx.rollback()
            raise
        finally:
            tx.close()
        self.count_success(n, nbytes)

    def count_success(self, n: int, nbytes: int, **more: int) -> None:
        """Count a batch of n events delivered and committed (a success ends any failure streak)."""
        if self.reported:
            self.reported.clear()
        self.counters.add(EventDrainSuccessCount=n, EventDrainSuccessBytes=nbytes,
                          **{"BatchCompleteCount" if n == self.batch_size else "BatchUnderflowCount": 1}, **more)

    def _drained(self, events: int, txs: int, full: int, nbytes: int) -> None:
        """Count transactions a channel took and committed natively for this sink."""
        if txs:
            self.counters.add(EventDrainAttemptCount=events, EventDrainSuccessCount=events,
                              EventDrainSuccessBytes=nbytes, BatchCompleteCount=full, BatchUnderflowCount=txs - full)

    def _ran_natively(self, got) -> Status:
        """process()'s outcome when the channel ran this sink's transactions natively
        (drain_each, write_each: (events, transactions, full ones, body bytes)); None,
        events with headers at the head, means the usual transaction."""
        if got is None:
            return Sink.process(self)
        events, txs, full, nbytes = got
        if not txs:
            self.counters.add(BatchEmptyCount=1)
            self.idle()
            return Status.BACKOFF
        self._drained(events, txs, full, nbytes)
        if self.reported:
            self.reported.clear()
        return Status.READY

    def _report(self, exc: Exception, n: int) -> None:
        """Log a failed delivery the first time its reason is seen, and mark the exception
        as logged so the runner does not log it again on every retry."""
        reason = "%s: %s" % (type(exc).__name__, exc)
        if reason not in self.reported:
            if len(self.reported) >= MAX_REPORTED:
                self.reported.clear()
            self.reported.add(reason)
            expected = isinstance(exc, (EventDeliveryException, OSError, ValueError))
            log.error("sink %s: a batch of %d events not delivered, rolled back and retried (logged once until a "
                      "batch gets through, counted in EventWriteFail): %s", self.name, n,
                      exc if expected else reason, exc_info=not expected)
        try:
            exc.logged = True
        except AttributeError:
            pass
