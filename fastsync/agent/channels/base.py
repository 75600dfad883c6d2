"""Channel and Transaction, with Flume's semantics.

A channel is used only inside a transaction: begin, then puts or takes of whole batches,
then commit (the puts become visible / the takes are gone for good) or rollback (the puts
vanish / the taken events go back to the head of the channel, in their order).

    with channel.transaction() as tx:      # commit on success, rollback on exception
        tx.put(batch)
"""
from __future__ import annotations

from fastsync.agent.errors import ChannelException
from fastsync.event import EventBatch


class Transaction:
    __slots__ = ("state",)
    NEW, OPEN, COMPLETED, CLOSED = "NEW", "OPEN", "COMPLETED", "CLOSED"

    def __init__(self):
        self.state = Transaction.NEW

    def begin(self) -> None:
        if self.state != Transaction.NEW:
            raise ChannelException("transaction already begun (state %s)" % self.state)
        self.state = Transaction.OPEN

    def put(self, batch: EventBatch) -> None:
        raise NotImplementedError

    def take(self, max_events: int, timeout: float | None = None) -> EventBatch | None:
        raise NotImplementedError

    def commit(self) -> None:
        raise NotImplementedError

    def rollback(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        if self.state == Transaction.OPEN:
            raise ChannelException("transaction closed without commit or rollback")
        self.state = Transaction.CLOSED

    # Flume's class name, kept in the capacity errors so users find Flume's advice on them
    FLUME_NAME = "Transaction"

    @classmethod
    def _check_put_room(cls, queued: int, n: int, capacity: int, channel: str) -> None:
        if queued + n > capacity:
            raise ChannelException(
                "Put queue for %s of capacity %d full, consider committing more frequently, increasing "
                "capacity or increasing thread count (channel %s, %d events in this put)"
                % (cls.FLUME_NAME, capacity, channel, n))

    def _take_room(self, taken: int, capacity: int, channel: str) -> int:
        """How many events the transaction may still take."""
        if taken >= capacity:
            raise ChannelException(
                "Take list for %s, capacity %d full, consider committing more frequently, increasing "
                "capacity, or increasing thread count (channel %s)" % (self.FLUME_NAME, capacity, channel))
        return capacity - taken

    def _check_open(self, what: str) -> None:
        if self.state != Transaction.OPEN:
            raise ChannelException("%s outside an open transaction (state %s)" % (what, self.state))

    def __enter__(self) -> "Transaction":
        self.begin()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                try:
                    self.commit()
                except BaseException:
                    self.rollback()
                    raise
            elif self.state == Transaction.OPEN:
                self.rollback()
        finally:
            self.close()


def put_slices(batch: EventBatch, per_tx: int, put) -> int:
    """put(slice) for consecutive slices of per_tx events of batch, in order. Returns
    len(batch); a ChannelException is raised again with `.committed` set to the events of
    the slices put before it."""
    done = 0
    for start in range(0, len(batch), per_tx):
        part = batch.slice(start, start + per_tx)
        try:
            put(part)
        except ChannelException as exc:
            exc.committed = done
            raise
        done += len(part)
    return done


class Channel:
    """Base of channels: a name, counters, a lifecycle, and transactions."""

    TYPE = "?"
    durable = False     # True: committed events survive a crash of the agent

    def __init__(self, name: str):
        self.name = name

    def transaction(self) -> Transaction:
        raise NotImplementedError

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def interrupt(self) -> None:
        """Wake every thread blocked in a put or take (used at shutdown)."""

    def put_each(self, batch: EventBatch, per_tx: int) -> int:
        """Put `batch` as consecutive transactions of `per_tx` events (the last may be
        shorter), in order, each committed on its own, as a source putting its events
        batchSize at a time would. Returns len(batch); if one fails, raises its
        ChannelException with `.committed` set to the events committed before it."""
        return put_slices(batch, per_tx, self._put_one)

    def _put_one(self, batch: EventBatch) -> None:
        with self.transaction() as tx:
            tx.put(batch)

    @property
    def size(self) -> int:
        """Committed events waiting."""
        raise NotImplementedError

    @property
    def in_flight(self) -> int:
        """Events taken but not yet committed or rolled back."""
        raise NotImplementedError

    @property
    def transaction_capacity(self) -> int | None:
        """Most events one transaction may put or take; None: no limit."""
        return None
