"""Flume's `memory` channel on the native ring buffer (fastsync._ringbuf).

Nothing is copied in: a commit hands the ring references to the source's own batches
(Arrow layout), all the batches of a transaction at once or none; a commit waits up to
keep-alive for room and then fails with ChannelFullException (back-pressure: nothing is
dropped). A take of events of one put is a view of that put's buffers; a take spanning
several puts gathers their bodies into one buffer. Taken events keep their room until
commit, and a rollback puts them back at the head in their order. `byteCapacity` counts
body bytes as Flume does. Header columns stay Python objects, kept beside the ring in a
table keyed per batch, so events with no headers cost no Python work at all.
"""
from __future__ import annotations

import itertools
import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastsync._native import RingBuffer
from fastsync.agent.channels.base import Channel, Transaction
from fastsync.agent.component import CHANNELS, ComponentConfig, Place, setting
from fastsync.agent.errors import ChannelException, ChannelFullException
from fastsync.agent.metrics import CHANNEL_COUNTERS, Counters
from fastsync.event import EventBatch, LineBatch, merge_headers
from fastsync.lazy import lazy_module

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
else:
    np = lazy_module(globals(), "np", "numpy")
    pa = lazy_module(globals(), "pa", "pyarrow")


def _default_byte_capacity() -> int:
    # Flume: 80 % of the JVM heap, whose default is a quarter of memory.
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 0.2)
    except (ValueError, OSError):
        return 1 << 30


DRAIN_LIMIT = 65536    # events drain_each takes per call, so a stop is seen soon


@dataclass
class MemoryChannelConfig(ComponentConfig):
    capacity: int = setting("capacity", 100, "most events the channel holds", min=1)
    transactionCapacity: int = setting("transactionCapacity", 100, "most events put or taken in one transaction", min=1)
    keepAlive: float = setting("keep-alive", 3.0, "seconds a put commit waits for room, and a take for an event", min=0)
    byteCapacity: int = setting("byteCapacity", _default_byte_capacity(), "most body bytes held (default 20 % of memory)", min=1)
    byteCapacityBufferPercentage: int = setting("byteCapacityBufferPercentage", 20, "percent of byteCapacity kept free for header overhead",
                                                min=0, max=99)

    def validate(self, place: Place) -> None:
        if self.transactionCapacity > self.capacity:
            raise place.error("transactionCapacity", "Transaction Capacity of Memory Channel (%d) cannot be higher than the capacity (%d)"
                              % (self.transactionCapacity, self.capacity))


@CHANNELS.register("memory", "org.apache.flume.channel.MemoryChannel")
class MemoryChannel(Channel):
    Config = MemoryChannelConfig

    def __init__(self, name: str, config: MemoryChannelConfig | None = None):
        super().__init__(name)
        self.config = config = config or MemoryChannelConfig()
        self.max_bytes = max(1, config.byteCapacity * (100 - config.byteCapacityBufferPercentage) // 100)
        self.ring = RingBuffer(config.capacity, self.max_bytes)
        self.counters = Counters("CHANNEL", CHANNEL_COUNTERS, self._gauges)
        self._headers: dict[int, list] = {}      # hid -> [header columns, events left]
        self._hlock = threading.Lock()
        self._hids = itertools.count(1)

    def transaction(self) -> "MemoryTransaction":
        return MemoryTransaction(self)

    def start(self) -> None:
        self.ring.resume()
        self.counters.started()

    def stop(self) -> None:
        self.ring.interrupt()
        self.counters.stopped()

    def interrupt(self) -> None:
        self.ring.interrupt()

    def put_each(self, batch: EventBatch, per_tx: int) -> int:
        """Channel.put_each in one native call: the transactions are committed one by one
        with the GIL released, a sink taking meanwhile."""
        n = len(batch)
        if not n:
            return 0
        cap = self.config.transactionCapacity
        MemoryTransaction._check_put_room(0, min(per_tx, n), cap, self.name)
        hid = self._register(batch.headers, n)
        # counted before the events become visible (see commit); the rest undone below
        self.counters.add(EventPutAttemptCount=n, EventPutSuccessCount=n)
        try:
            done, why = self.ring.put_each(_chunk(batch, hid), per_tx, self.config.keepAlive)
            reason = None
        except ValueError as exc:   # more events in one transaction than the capacity
            done, why, reason = 0, -1, str(exc)
        if done < n:
            self._release_headers(hid, n - done)
            tried = min(done + per_tx, n)    # the transactions after the failed one were not tried
            self.counters.add(EventPutAttemptCount=tried - n, EventPutSuccessCount=done - n)
            if why == 0:
                exc = self._full()
            else:
                reason = reason or "a transaction of %d body bytes can never fit %d bytes" % (
                    batch.slice(done, tried).nbytes, self.max_bytes)
                exc = ChannelException("channel %s: %s" % (self.name, reason))
            exc.committed = done
            raise exc
        return n

    def drain_each(self, per_tx: int, timeout: float, max_txs: int | None = None):
        """Take transactions of up to per_tx events (up to max_txs of them), each committed
        at once, in one native call, for a sink that discards what it takes (null):
        (events, transactions, transactions of per_tx events, body bytes), or None when
        the head holds events with headers (take those with a transaction)."""
        cap = min(per_tx, self.config.transactionCapacity)     # a take never holds more
        events, txs, full, nbytes, headers = self.ring.take_each(cap, _limit(cap, max_txs), timeout)
        if cap < per_tx:
            full = 0
        if txs:     # Flume counts the attempt that found fewer than per_tx too
            self.counters.add(EventTakeAttemptCount=events + txs - full, EventTakeSuccessCount=events)
        elif headers:
            return None
        else:
            self.counters.add(EventTakeAttemptCount=1)
        return events, txs, full, nbytes

    def take_open(self, per_tx: int, timeout: float):
        """A take transaction run by the ring, for a sink that needs the bodies as bytes
        (kafka): a NativeTake of up to per_tx headerless events, None when nothing came in
        `timeout` s, False when events with headers are at the head (use a transaction)."""
        want = min(per_tx, self.config.transactionCapacity)
        t = self.ring.take_open(want, timeout)
        if t is None:
            self.counters.add(EventTakeAttemptCount=1)
            return None
        return NativeTake(self, t, want) if t is not False else False

    def take_group(self, per_tx: int, max_txs: int, timeout: float):
        """Up to max_txs takes of up to per_tx events each, from the head, as one open
        transaction holding their events in one batch (gathered once, not per take), for a
        sink that sends them in one message and commits or rolls them back together (flight):
        (transaction, batch, events per take), or None when nothing came in `timeout` s.
        Counted as that many take transactions."""
        cap = min(per_tx, self.config.transactionCapacity)     # a take never holds more
        want = cap * max(1, max_txs)
        tx = MemoryTransaction(self)
        tx.begin()
        try:
            batch = tx._take(want, timeout)
        except BaseException:
            tx.rollback()
            raise
        if batch is None:
            tx.commit()
            return None
        n = len(batch)
        counts = [cap] * (n // cap) + ([n % cap] if n % cap else [])
        return tx, batch, counts

    def write_each(self, fd: int, per_tx: int, timeout: float, max_txs: int | None = None):
        """Take transactions of up to per_tx events (up to max_txs of them), each written
        to fd as lines (a TEXT file: body, newline) and committed once written, in one
        native call: (events, transactions, transactions of per_tx events, body bytes), or
        None when the head holds events with headers (take those with a transaction). A
        failed write rolls its transactions back and raises OSError, with `committed` (the
        tuple above) and `failed` (the events rolled back)."""
        cap = min(per_tx, self.config.transactionCapacity)
        events, txs, full, nbytes, headers, err, failed = self.ring.write_each(fd, cap, _limit(cap, max_txs), timeout)
        if cap < per_tx:
            full = 0
        if txs or failed:
            self.counters.add(EventTakeAttemptCount=events + failed + txs - full, EventTakeSuccessCount=events)
        elif not headers:
            self.counters.add(EventTakeAttemptCount=1)
        if err:
            exc = OSError(err, os.strerror(err))
            exc.committed, exc.failed = (events, txs, full, nbytes), failed
            raise exc
        if headers and not txs:
            return None
        return events, txs, full, nbytes

    def _full(self) -> ChannelFullException:
        return ChannelFullException(
            "Space for commit to queue couldn't be acquired. Sinks are likely not keeping up with sources, "
            "or the buffer size is too tight (channel %s: capacity %d events, %d body bytes; waited %gs)"
            % (self.name, self.config.capacity, self.max_bytes, self.config.keepAlive))

    @property
    def size(self) -> int:
        return self.ring.events

    @property
    def in_flight(self) -> int:
        return self.ring.reserved_events

    @property
    def transaction_capacity(self) -> int:
        return self.config.transactionCapacity

    def _gauges(self) -> dict:
        size = self.ring.events
        return {"ChannelSize": size, "ChannelCapacity": self.config.capacity,
                "ChannelFillPercentage": 100.0 * size / self.config.capacity}

    # -- header table --
    def _register(self, headers, count: int) -> int:
        if not headers:
            return 0
        hid = next(self._hids)
        with self._hlock:
            self._headers[hid] = [headers, count]
        return hid

    def _claim(self, hid: int, count: int):
        with self._hlock:
            entry = self._headers[hid]
            entry[1] -= count
            if entry[1] == 0:
                del self._headers[hid]
        return entry[0]

    def _release_headers(self, hid: int, count: int) -> None:
        if hid:
            self._claim(hid, count)

    def _forget(self, hids) -> None:
        with self._hlock:
            for hid in hids:
                self._headers.pop(hid, None)


def _limit(per_tx: int, max_txs: int | None) -> int:
    # events a native take loop may take in one call
    return DRAIN_LIMIT if max_txs is None else min(DRAIN_LIMIT, max(1, max_txs) * per_tx)


def _chunk(batch: EventBatch, hid: int, hstart: int = 0):
    # the ring keeps this tuple: it must hold buffers nobody changes afterwards
    if type(batch) is LineBatch and batch.immutable:
        return (batch.raw, batch.starts, hid, hstart, 1)     # lines as read: kept as they are
    data = batch.data
    if data.is_mutable:
        data = pa.py_buffer(data.to_pybytes())
    return (data, batch.offsets, hid, hstart)


def _segment_headers(segments):
    """Header columns of a taken batch from its segments [(headers, hstart, count)]."""
    parts = [({k: (v if isinstance(v, str) else v.slice(hstart, count)) for k, v in headers.items()}
              if headers else None, count) for headers, hstart, count in segments]
    if len(parts) == 1:
        return parts[0][0]
    return merge_headers(parts) or None


class MemoryTransaction(Transaction):
    FLUME_NAME = "MemoryTransaction"
    __slots__ = ("ch", "puts", "put_n", "takes", "take_n", "take_bytes", "take_slots", "take_tries")

    def __init__(self, channel: MemoryChannel):
        self.state = Transaction.NEW
        self.ch = channel
        self.puts: list[EventBatch] = []
        self.put_n = 0
        self.takes: list = []   # (batch, header segments or None) in take order
        self.take_n = self.take_bytes = self.take_slots = self.take_tries = 0

    def put(self, batch: EventBatch) -> None:
        self._check_open("put")
        n = len(batch)
        self._check_put_room(self.put_n, n, self.ch.config.transactionCapacity, self.ch.name)
        if n:
            self.puts.append(batch)
            self.put_n += n

    def take(self, max_events: int | None = None, timeout: float | None = None) -> EventBatch | None:
        """Up to max_events (default: what the transaction still allows), waiting up to
        `timeout` s (default keep-alive) for the first; None when nothing came."""
        if self.state != Transaction.OPEN:
            self._check_open("take")
        ch = self.ch
        config = ch.config
        room = config.transactionCapacity - self.take_n
        if room <= 0:
            self._take_room(self.take_n, config.transactionCapacity, ch.name)
        want = room if max_events is None or max_events > room else max_events
        return self._take(want, config.keepAlive if timeout is None else timeout)

    def _take(self, want: int, timeout: float) -> EventBatch | None:
        ch = self.ch
        got = ch.ring.take(want, timeout)
        if got is None:
            self.take_tries += 1
            return None
        data, offs, n, raw_segments = got
        if len(raw_segments) == 1 and raw_segments[0][0] == 0:   # the common case: no headers
            segments = None     # rollback puts the batch back as one chunk
            headers = None
        else:
            segments = [((ch._claim(hid, count) if hid else None), hstart, count) for hid, hstart, count, _ in raw_segments]
            headers = _segment_headers(segments)
        if not isinstance(offs, np.ndarray):
            offs = np.frombuffer(offs, dtype=np.int64)
        batch = EventBatch(data, offs, headers)
        self.takes.append((batch, segments))
        self.take_n += n
        self.take_bytes += batch.nbytes
        self.take_slots += len(raw_segments)
        self.take_tries += n + (n < want)   # counted at the end of the transaction, one update
        return batch

    def commit(self) -> None:
        if self.state != Transaction.OPEN:
            self._check_open("commit")
        ch = self.ch
        if self.puts:
            hids = []
            chunks = []
            for b in self.puts:
                hid = ch._register(b.headers, len(b))
                if hid:
                    hids.append(hid)
                chunks.append(_chunk(b, hid))
            # counted before the events become visible, so a metrics snapshot never
            # shows more taken than put; undone below if the commit fails
            ch.counters.add(EventPutAttemptCount=self.put_n, EventPutSuccessCount=self.put_n)
            try:
                # this transaction's takes count as room, as in Flume
                ok = ch.ring.put(chunks, ch.config.keepAlive, self.take_n, self.take_bytes, self.take_slots)
            except ValueError as exc:
                ok = None
                error = ChannelException("channel %s: %s" % (ch.name, exc))
            if not ok:
                ch._forget(hids)
                ch.counters.add(EventPutSuccessCount=-self.put_n)
                if ok is None:
                    raise error
                raise ch._full()
        elif self.takes:
            ch.ring.release(self.take_n, self.take_bytes, self.take_slots)
        if self.take_tries:
            ch.counters.add(EventTakeAttemptCount=self.take_tries, EventTakeSuccessCount=self.take_n)   # as Flume: at commit
        self._done()

    def rollback(self) -> None:
        self._check_open("rollback")
        ch = self.ch
        if self.put_n or self.take_tries:
            ch.counters.add(EventPutAttemptCount=self.put_n, EventTakeAttemptCount=self.take_tries)
        # the last take goes back first, so the head ends up in the original order
        for batch, segments in reversed(self.takes):
            if segments is None:
                ch.ring.unget([(batch.data, batch.offsets, 0, 0)], 1)
                continue
            chunks, pos = [], 0
            for headers, hstart, count in segments:
                hid = ch._register(headers, count)
                chunks.append((batch.data, batch.offsets[pos:pos + count + 1], hid, hstart))
                pos += count
            ch.ring.unget(chunks, len(segments))
        self._done()

    def _done(self) -> None:
        self.puts = []
        self.takes = []
        self.put_n = self.take_n = self.take_bytes = self.take_slots = self.take_tries = 0
        self.state = Transaction.COMPLETED


class NativeTake:
    """MemoryChannel.take_open's transaction: the events' bodies as bytes (`bodies`), their
    count and body bytes; commit() or rollback() once, then close(), as a Transaction's.
    Counted as Flume counts a take transaction, at its end."""
    __slots__ = ("ch", "taken", "tries", "n", "nbytes")

    def __init__(self, channel: MemoryChannel, taken, want: int):
        self.ch, self.taken = channel, taken
        self.n, self.nbytes = taken.n, taken.nbytes
        self.tries = taken.n + (taken.n < want)

    def bodies(self) -> list:
        return self.taken.bodies()

    def commit(self) -> None:
        self.taken.commit()
        self.ch.counters.add(EventTakeAttemptCount=self.tries, EventTakeSuccessCount=self.n)

    def rollback(self) -> None:
        self.taken.rollback()
        self.ch.counters.add(EventTakeAttemptCount=self.tries)

    def close(self) -> None:
        pass
