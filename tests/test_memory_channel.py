"""Tests of the memory channel (fastsync.agent.channels.memory on the native ring buffer).

(a) random transaction scripts run against the real channel and a pure-Python reference
    channel with Flume's MemoryChannel semantics, comparing every observable result;
(b) producers and consumers on threads: every event delivered exactly once, in order;
(c) blocking: back-pressure on a full channel, keep-alive expiry, take timeouts;
(d) byteCapacity accounting.
"""
import collections
import os
import random
import tempfile
import threading
import time

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, Phase, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from fastsync.agent.channels.memory import MemoryChannel, MemoryChannelConfig
from fastsync.agent.errors import ChannelException, ChannelFullException
from fastsync.event import Event, EventBatch, LineBatch

HUGE = 1 << 40


def make_channel(capacity=100, tx=None, keep_alive=0.01, byte_capacity=HUGE, pct=0):
    return MemoryChannel("c1", MemoryChannelConfig(
        capacity=capacity, transactionCapacity=tx or capacity, keepAlive=keep_alive,
        byteCapacity=byte_capacity, byteCapacityBufferPercentage=pct))


def put_commit(ch, batch):
    with ch.transaction() as tx:
        tx.put(batch)


def drain(ch, max_events=None):
    """Take and commit everything the channel holds, as Events."""
    out = []
    while True:
        with ch.transaction() as tx:
            b = tx.take(max_events, timeout=0)
        if b is None:
            return out
        out += b.events()


def outcome(fn):
    """('ok', value) or the exact exception class raised."""
    try:
        return ("ok", fn())
    except ChannelException as exc:
        return type(exc)


# ======================================================================================
# (a) the reference channel and the state machine
# ======================================================================================

class RefChannel:
    """Flume's MemoryChannel, one Event at a time: a deque, per-transaction put and take
    lists, `capacity` events counting the taken-but-uncommitted ones, and (fastsync's
    exact variant of byteCapacity) `max_bytes` body bytes counting those too. As in
    Flume's doCommit, what a transaction took counts as room for its own puts (fastsync
    applies that to bytes as well as events)."""

    def __init__(self, capacity, tx_capacity, max_bytes):
        self.capacity, self.tx_capacity, self.max_bytes = capacity, tx_capacity, max_bytes
        self.queue = collections.deque()
        self.txns = []

    @property
    def size(self):
        return len(self.queue)

    @property
    def nbytes(self):
        return sum(len(e.body) for e in self.queue)

    @property
    def in_flight(self):
        return sum(len(t.takes) for t in self.txns)

    @property
    def in_flight_bytes(self):
        return sum(len(e.body) for t in self.txns for e in t.takes)

    def transaction(self):
        t = RefTxn(self)
        self.txns.append(t)
        return t


class RefTxn:
    def __init__(self, ch):
        self.ch, self.puts, self.takes = ch, [], []

    def put(self, events):
        if len(self.puts) + len(events) > self.ch.tx_capacity:
            raise ChannelException("put list full")
        self.puts += events

    def take(self, k=None):
        ch = self.ch
        room = ch.tx_capacity - len(self.takes)
        if room <= 0:
            raise ChannelException("take list full")
        want = room if k is None else min(k, room)
        if not ch.queue:
            return None
        got = [ch.queue.popleft() for _ in range(min(want, len(ch.queue)))]
        self.takes += got
        return got

    def commit(self):
        ch = self.ch
        if self.puts:
            put_bytes = sum(len(e.body) for e in self.puts)
            if put_bytes > ch.max_bytes:          # can never fit: fails at once
                raise ChannelException("larger than the channel")
            # Flume's doCommit: the space this transaction's own takes free counts for its
            # puts (remainingChange = takes - puts); only the net growth needs room.
            if ch.size + ch.in_flight - len(self.takes) + len(self.puts) > ch.capacity:
                raise ChannelFullException("full")
            own_bytes = sum(len(e.body) for e in self.takes)
            if ch.nbytes + ch.in_flight_bytes - own_bytes + put_bytes > ch.max_bytes:
                raise ChannelFullException("full (bytes)")
            ch.queue.extend(self.puts)
        self._done()

    def rollback(self):
        self.ch.queue.extendleft(reversed(self.takes))
        self._done()

    def _done(self):
        self.puts, self.takes = [], []
        self.ch.txns.remove(self)


class TxPair:
    def __init__(self, real, ref):
        self.real, self.ref, self.role = real, ref, None


HEADER_MODES = ["none", "shared", "per_event", "sparse", "mixed", "sparse", "mixed"]


class ChannelMachine(RuleBasedStateMachine):
    """Random scripts of (open, put, take, commit, rollback) over up to three concurrently
    open transactions, on the real channel and on RefChannel in lockstep."""

    MIXED = True   # may a transaction both put and take?

    def __init__(self):
        super().__init__()
        self.counter = 0
        self.txns = []
        self.broken = False   # a comparison failed: teardown must not pile a second error on it

    @initialize(capacity=st.integers(1, 9), tx_frac=st.sampled_from([0.3, 0.6, 1.0, 1.0]),
                byte_capacity=st.sampled_from([HUGE, 12, 30, 60]))
    def setup(self, capacity, tx_frac, byte_capacity):
        tx_capacity = max(1, int(capacity * tx_frac))
        self.real = make_channel(capacity, tx_capacity, keep_alive=0.001, byte_capacity=byte_capacity)
        self.ref = RefChannel(capacity, tx_capacity, byte_capacity)

    # -- helpers --
    def _events(self, n, mode, pads, lines=False):
        events = []
        pad = b"\x00\r" if lines else b"\x00\n"     # a line's body has no newline
        for i in range(n):
            self.counter += 1
            body = b"%d|" % self.counter + pad * pads[i % len(pads)]
            headers = {}
            if mode in ("shared", "mixed"):
                headers["src"] = "s1"
            if mode in ("per_event", "mixed") or (mode == "sparse" and self.counter % 3 == 0):
                headers["seq"] = "#%d" % self.counter
            if mode == "sparse" and self.counter % 2:
                headers["ü"] = "odd ✓"
            events.append(Event(body, headers))
        return events

    def _pick(self, idx, role):
        ok = [t for t in self.txns if t.role != "native" and (self.MIXED or t.role in (None, role))]
        return ok[idx % len(ok)] if ok else None

    def check(self, got, want, what):
        if got != want:
            self.broken = True
        assert got == want, "%s: real %r, reference %r" % (what, got, want)

    # -- rules --
    def _can(self, role):
        return any(t.role != "native" and (self.MIXED or t.role in (None, role)) for t in self.txns)

    @precondition(lambda self: len(self.txns) < 3)
    @rule()
    def open_txn(self):
        real = self.real.transaction()
        real.begin()
        self.txns.append(TxPair(real, self.ref.transaction()))

    @precondition(lambda self: self._can("put"))
    @rule(idx=st.integers(0, 5), n=st.integers(0, 6), mode=st.sampled_from(HEADER_MODES),
          pads=st.lists(st.integers(0, 3), min_size=1, max_size=3),
          around=st.tuples(st.integers(0, 2), st.integers(0, 2)), lines=st.booleans())
    def put(self, idx, n, mode, pads, around, lines=False):
        t = self._pick(idx, "put")
        events = self._events(n, mode, pads, lines)
        if lines:   # lines as TAILDIR reads them: kept in their text, newlines and all
            pre = self._events(around[0], mode, pads, lines)
            batch = line_batch(pre + events + self._events(around[1], mode, pads, lines)).slice(len(pre), len(pre) + n)
        elif around == (0, 0):
            batch = EventBatch.from_events(events)
        else:  # a slice of a larger batch: offsets[0] != 0 and header arrays with an offset
            pre, post = self._events(around[0], mode, pads), self._events(around[1], mode, pads)
            batch = EventBatch.from_events(pre + events + post).slice(len(pre), len(pre) + n)
        t.role = "put"
        got = outcome(lambda: t.real.put(batch))
        want = outcome(lambda: t.ref.put(events))
        self.check(got, want, "put")

    @precondition(lambda self: self._can("take"))
    @rule(idx=st.integers(0, 5), ks=st.lists(st.one_of(st.none(), st.integers(1, 4)), min_size=1, max_size=3))
    def take(self, idx, ks):
        """One to three takes in a row in one transaction."""
        t = self._pick(idx, "take")
        t.role = "take"
        for k in ks:
            got = outcome(lambda: t.real.take(k, timeout=0))
            want = outcome(lambda: t.ref.take(k))
            if isinstance(got, tuple) and got[1] is not None:
                got = ("ok", got[1].events())
            self.check(got, want, "take")

    @rule(n=st.integers(0, 12), per_tx=st.integers(1, 5), mode=st.sampled_from(HEADER_MODES),
          pads=st.lists(st.integers(0, 3), min_size=1, max_size=3), sliced=st.booleans(), lines=st.booleans())
    def put_each(self, n, per_tx, mode, pads, sliced, lines):
        """Channel.put_each: consecutive transactions of per_tx events, on the reference
        one put transaction after another, stopping at the first that fails."""
        events = self._events(n, mode, pads, lines)
        make = line_batch if lines else EventBatch.from_events
        batch = make(self._events(1, mode, pads, lines) + events).slice(1, n + 1) if sliced else make(events)
        try:
            got = ("ok", self.real.put_each(batch, per_tx))
        except ChannelException as exc:
            got = (type(exc), getattr(exc, "committed", 0))
        want, done = ("ok", n), 0
        for start in range(0, n, per_tx):
            tx = self.ref.transaction()
            try:
                tx.put(events[start:start + per_tx])
                tx.commit()
            except ChannelException as exc:
                tx.rollback()
                want = (type(exc), done)
                break
            done = min(n, start + per_tx)
        self.check(got, want, "put_each")

    @rule(per_tx=st.integers(1, 5))
    def drain_each(self, per_tx):
        """MemoryChannel.drain_each (the null sink's native take-and-commit loop): the
        events it reports gone are the reference's first ones, bytes and all."""
        got = self.real.drain_each(per_tx, 0)
        if got is None:         # events with headers at the head: none taken
            self.check(bool(self.ref.queue), True, "drain_each stopped at headers of an empty channel")
            return
        k, txs, full, nbytes = got
        cap = min(per_tx, self.ref.tx_capacity)
        self.check((txs, full), (-(-k // cap), k // cap if cap == per_tx else 0), "drain_each transactions")
        gone = [self.ref.queue.popleft() for _ in range(min(k, len(self.ref.queue)))]
        self.check((len(gone), sum(len(e.body) for e in gone)), (k, nbytes), "drain_each events and bytes")

    @precondition(lambda self: len(self.txns) < 3)
    @rule(k=st.integers(1, 5))
    def take_open(self, k):
        """MemoryChannel.take_open (the kafka sink's native take transaction): the bodies
        of the reference's first events, or False when events with headers are at the
        head; it stays open, ended by the commit and rollback rules as any transaction."""
        k = min(k, self.ref.tx_capacity)
        got = self.real.take_open(k, 0)
        if got is None:
            self.check(len(self.ref.queue), 0, "take_open found nothing")
            return
        if got is False:
            self.check(bool(self.ref.queue), True, "take_open stopped at headers of an empty channel")
            return
        ref = self.ref.transaction()
        gone = ref.take(got.n)
        self.check(got.bodies(), [e.body for e in gone], "take_open bodies")
        self.check(got.nbytes, sum(len(e.body) for e in gone), "take_open bytes")
        pair = TxPair(NativeAdapter(got), ref)
        pair.role = "native"
        self.txns.append(pair)

    @rule(per_tx=st.integers(1, 5), broken=st.booleans())
    def write_each(self, per_tx, broken):
        """MemoryChannel.write_each (file_roll's native take-write-commit loop): the file
        holds the reference's first events, each body and a newline; a write that fails
        (a read-only descriptor) rolls its transactions back, so nothing changes."""
        if broken:
            fd = os.open(os.devnull, os.O_RDONLY)
            try:
                got = self.real.write_each(fd, per_tx, 0)
            except OSError as exc:
                self.check((exc.committed, exc.failed > 0), ((0, 0, 0, 0), True), "write_each on a bad descriptor")
            else:
                self.check(got is None or got[1] == 0, True, "write_each wrote to a read-only descriptor")
            finally:
                os.close(fd)
            return
        with tempfile.TemporaryFile() as f:
            got = self.real.write_each(f.fileno(), per_tx, 0)
            f.seek(0)
            written = f.read()
        if got is None:         # events with headers at the head: none taken
            self.check((bool(self.ref.queue), written), (True, b""), "write_each stopped at headers")
            return
        k, txs, full, nbytes = got
        cap = min(per_tx, self.ref.tx_capacity)
        self.check((txs, full), (-(-k // cap), k // cap if cap == per_tx else 0), "write_each transactions")
        gone = [self.ref.queue.popleft() for _ in range(min(k, len(self.ref.queue)))]
        self.check((len(gone), sum(len(e.body) for e in gone), written),
                   (k, nbytes, b"".join(e.body + b"\n" for e in gone)), "write_each events, bytes and file")

    @rule(modes=st.lists(st.sampled_from(HEADER_MODES), min_size=1, max_size=3), extra=st.integers(0, 1))
    def fill_up(self, modes, extra):
        """A put transaction of as many events as there is room for (or one more), in one
        batch per mode, so that full channels and multi-batch contents are common."""
        room = self.ref.capacity - self.ref.size - self.ref.in_flight
        n = max(0, min(room + extra, self.ref.tx_capacity))
        real, ref = self.real.transaction(), self.ref.transaction()
        real.begin()
        for i, mode in enumerate(modes):
            part = n // len(modes) + (i < n % len(modes))
            events = self._events(part, mode, [0, 2, 1])
            real.put(EventBatch.from_events(events))
            ref.put(events)
        got, want = outcome(real.commit), outcome(ref.commit)
        self.check(got, want, "commit of fill_up")
        if got != ("ok", None):
            real.rollback()
            ref.rollback()
        real.close()

    @precondition(lambda self: self.ref.max_bytes < HUGE)
    @rule(n=st.integers(1, 3), extra=st.integers(-1, 1), mode=st.sampled_from(HEADER_MODES))
    def fill_bytes(self, n, extra, mode):
        """A put transaction whose bodies fill the byte room exactly (or miss it by one)."""
        room = self.ref.max_bytes - self.ref.nbytes - self.ref.in_flight_bytes + extra
        n = min(n, self.ref.tx_capacity)
        sizes = [max(0, room) // n] * n
        sizes[0] += max(0, room) - sum(sizes)
        events = [Event(b"B" * size, e.headers) for size, e in zip(sizes, self._events(n, mode, [0]))]
        real, ref = self.real.transaction(), self.ref.transaction()
        real.begin()
        real.put(EventBatch.from_events(events))
        ref.put(events)
        got, want = outcome(real.commit), outcome(ref.commit)
        self.check(got, want, "commit of fill_bytes")
        if got != ("ok", None):
            real.rollback()
            ref.rollback()
        real.close()

    @precondition(lambda self: self.MIXED and self._can("take"))     # not only native takes open
    @rule(idx=st.integers(0, 5), k=st.integers(1, 4), mode=st.sampled_from(HEADER_MODES))
    def take_and_put(self, idx, k, mode):
        """Take up to k events and put as many new ones in the same transaction (the
        pattern of a component that re-queues what it read)."""
        self.take(idx, [k])
        t = self._pick(idx, "take")
        self.put(idx, min(k, len(t.ref.takes)), mode, [1], (0, 0))

    @precondition(lambda self: self.txns)
    @rule(idx=st.integers(0, 5))
    def commit(self, idx):
        t = self.txns[idx % len(self.txns)]
        got = outcome(t.real.commit)
        want = outcome(t.ref.commit)
        self.check(got, want, "commit")
        if got == ("ok", None):
            t.real.close()
            self.txns.remove(t)

    @precondition(lambda self: self.txns)
    @rule(idx=st.integers(0, 5))
    def rollback(self, idx):
        t = self.txns[idx % len(self.txns)]
        t.real.rollback()
        t.real.close()
        t.ref.rollback()
        self.txns.remove(t)

    @invariant()
    def same_state(self):
        if not hasattr(self, "real"):
            return
        assert self.real.size == self.ref.size
        assert self.real.in_flight == self.ref.in_flight
        assert self.real.ring.nbytes == self.ref.nbytes

    def teardown(self):
        if not hasattr(self, "real") or self.broken:
            return
        for t in list(self.txns):   # roll everything back, then compare the whole content
            if t.real.state == "OPEN":
                t.real.rollback()
            if t.ref in self.ref.txns:
                t.ref.rollback()
        assert self.real.in_flight == 0
        assert drain(self.real, 4) == list(self.ref.queue)
        assert self.real.size == 0


class NativeAdapter:
    """A NativeTake seen as the machine's transactions are (state, commit, rollback, close)."""

    def __init__(self, take):
        self.take, self.state = take, "OPEN"

    def commit(self):
        self.take.commit()
        self.state = "COMPLETED"

    def rollback(self):
        self.take.rollback()
        self.state = "COMPLETED"

    def close(self):
        pass


def line_batch(events) -> LineBatch:
    """The events as a LineBatch: their bodies, each with a newline, in one text."""
    text = b"".join(e.body + b"\n" for e in events)
    starts = np.zeros(len(events) + 1, dtype=np.int64)
    np.cumsum([len(e.body) + 1 for e in events], out=starts[1:])
    return LineBatch(text, starts, EventBatch.from_events(events).headers)


class SingleRoleChannelMachine(ChannelMachine):
    """Every transaction only puts or only takes (what sources and sinks do), with byte
    limits in play."""
    MIXED = False


# no explain phase: on a failure it re-runs the machine hundreds of times (~10 s)
STATEFUL = settings(max_examples=120, stateful_step_count=40, deadline=None, database=None,
                    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

TestChannelAgainstReference = SingleRoleChannelMachine.TestCase
TestChannelAgainstReference.settings = STATEFUL

# Transactions that both take and put (at 8bd040a this failed: see
# test_commit_counts_own_takes_as_room).
TestMixedTransactionsAgainstReference = ChannelMachine.TestCase
TestMixedTransactionsAgainstReference.settings = STATEFUL


def test_commit_counts_own_takes_as_room():
    # REGRESSION for a BUG found at 8bd040a (fixed in 2d5a95c), MemoryTransaction.commit:
    # the events a transaction took stayed reserved in the ring until after its puts
    # were appended, so on a full channel a transaction that takes k events and puts k
    # (or fewer) back failed with ChannelFullException after keep-alive.  Flume's
    # MemoryChannel.doCommit only needs room for the net growth (remainingChange =
    # takeList.size() - putList.size(); it acquires queueRemaining only when that is
    # negative), so the same transaction commits there.
    ch = make_channel(capacity=2, keep_alive=0.05)
    put_commit(ch, EventBatch.from_bodies([b"a", b"b"]))
    with ch.transaction() as tx:
        assert tx.take(1, timeout=0).events() == [Event(b"a")]
        tx.put(EventBatch.from_bodies([b"c"]))
    assert drain(ch) == [Event(b"b"), Event(b"c")]


def test_commit_counts_own_taken_bytes_as_room():
    ch = make_channel(capacity=10, keep_alive=0.05, byte_capacity=10, pct=0)
    put_commit(ch, EventBatch.from_bodies([b"12345", b"67890"]))      # bytes full
    with ch.transaction() as tx:
        assert tx.take(1, timeout=0).events() == [Event(b"12345")]
        tx.put(EventBatch.from_bodies([b"abcde"], {"h": "v"}))        # net growth 0 bytes
    tx = ch.transaction()
    tx.begin()
    tx.take(1, timeout=0)
    tx.put(EventBatch.from_bodies([b"abcdef"]))                       # net growth 1 byte
    with pytest.raises(ChannelFullException):
        tx.commit()
    tx.rollback()
    tx.close()
    assert ch.in_flight == 0 and ch.ring.nbytes == 10
    assert drain(ch) == [Event(b"67890"), Event(b"abcde", {"h": "v"})]


# ======================================================================================
# deterministic Flume semantics, headers across splits / rollbacks / merges
# ======================================================================================

def test_puts_invisible_until_commit_and_rollback_discards():
    ch = make_channel(10)
    tx = ch.transaction()
    tx.begin()
    tx.put(EventBatch.from_bodies([b"a", b"b"]))
    assert ch.size == 0
    with ch.transaction() as other:
        assert other.take(timeout=0) is None
    tx.rollback()
    tx.close()
    assert ch.size == 0
    put_commit(ch, EventBatch.from_bodies([b"c"]))
    assert ch.size == 1
    assert drain(ch) == [Event(b"c")]


def test_context_manager_commits_or_rolls_back():
    ch = make_channel(10)
    with pytest.raises(RuntimeError):
        with ch.transaction() as tx:
            tx.put(EventBatch.from_bodies([b"x"]))
            raise RuntimeError("source failed")
    assert ch.size == 0
    put_commit(ch, EventBatch.from_bodies([b"a", b"b", b"c"]))
    with pytest.raises(RuntimeError):
        with ch.transaction() as tx:
            assert len(tx.take(2, timeout=0)) == 2
            assert ch.in_flight == 2
            raise RuntimeError("sink failed")
    assert ch.size == 3 and ch.in_flight == 0
    assert drain(ch) == [Event(b"a"), Event(b"b"), Event(b"c")]


def test_transaction_capacity_errors():
    ch = make_channel(capacity=10, tx=3)
    with ch.transaction() as tx:
        tx.put(EventBatch.from_bodies([b"1", b"2"]))
        with pytest.raises(ChannelException) as info:
            tx.put(EventBatch.from_bodies([b"3", b"4"]))
        assert type(info.value) is ChannelException
        tx.put(EventBatch.from_bodies([b"3"]))      # the rejected put left nothing behind
    assert ch.size == 3
    put_commit(ch, EventBatch.from_bodies([b"4", b"5"]))
    with ch.transaction() as tx:
        assert len(tx.take(timeout=0)) == 3          # default: what the transaction allows
        with pytest.raises(ChannelException):
            tx.take(1, timeout=0)
    assert drain(ch) == [Event(b"4"), Event(b"5")]


def test_partial_take_keeps_headers():
    ch = make_channel(20)
    events = [Event(b"e%d" % i, {"src": "s", **({"i": str(i)} if i % 2 else {})}) for i in range(6)]
    put_commit(ch, EventBatch.from_events(events))
    with ch.transaction() as tx:
        assert tx.take(2, timeout=0).events() == events[:2]   # splits the stored batch
        assert tx.take(3, timeout=0).events() == events[2:5]
    with ch.transaction() as tx:
        assert tx.take(5, timeout=0).events() == events[5:]


def test_take_across_batches_merges_headers():
    ch = make_channel(20)
    a = [Event(b"a0", {"x": "1"}), Event(b"a1", {"x": "1"})]          # shared x
    b = [Event(b"b0"), Event(b"b1")]                                    # no headers
    c = [Event(b"c0", {"x": "2", "y": "é"}), Event(b"c1", {"x": "3"})]  # per-event
    d = [Event(b"d0", {"x": "1"})]                                      # shared x again
    for evs in (a, b, c, d):
        put_commit(ch, EventBatch.from_events(evs))
    with ch.transaction() as tx:
        assert tx.take(1, timeout=0).events() == a[:1]
        assert tx.take(timeout=0).events() == a[1:] + b + c + d


def test_rollback_restores_order_and_headers_after_several_takes():
    ch = make_channel(30)
    events = [Event(b"%d" % i, {"n": str(i)} if i % 3 else {"k": "v"}) for i in range(12)]
    put_commit(ch, EventBatch.from_events(events[:5]))
    put_commit(ch, EventBatch.from_events(events[5:]))
    tx = ch.transaction()
    tx.begin()
    assert tx.take(3, timeout=0).events() == events[:3]
    assert tx.take(4, timeout=0).events() == events[3:7]     # crosses the batch boundary
    # another transaction takes later events meanwhile, and commits
    with ch.transaction() as other:
        assert other.take(2, timeout=0).events() == events[7:9]
    tx.rollback()
    tx.close()
    assert ch.in_flight == 0
    assert drain(ch, 2) == events[:7] + events[9:]


def test_take_group_takes_several_transactions_at_once():
    """take_group (the flight sink's message of several takes): the head's events up to
    max_txs takes of per_tx (capped at transactionCapacity), as one batch gathered from line
    and header batches; a rollback puts them all back in order; counted as that many takes."""
    ch = make_channel(100, tx=3)
    lines = [Event(b"l%d" % i) for i in range(3)]
    tagged = [Event(b"t%d" % i, {"h": str(i)}) for i in range(3)]
    put_commit(ch, line_batch(lines))
    put_commit(ch, EventBatch.from_events(tagged))
    tx, batch, counts = ch.take_group(10, 2, 0)     # per_tx 10 capped at 3: 2 takes of 3
    assert counts == [3, 3] and batch.events() == lines + tagged
    assert ch.in_flight == 6
    tx.rollback()
    tx.close()
    assert ch.in_flight == 0
    tx, batch, counts = ch.take_group(2, 2, 0)
    assert counts == [2, 2] and batch.events() == lines + tagged[:1]
    tx.commit()
    tx.close()
    tx, batch, counts = ch.take_group(2, 5, 0)      # the channel holds fewer: a short last take
    assert counts == [2] and batch.events() == tagged[1:]
    tx.commit()
    tx.close()
    assert ch.in_flight == 0 and ch.size == 0 and ch.take_group(2, 5, 0) is None
    # as Flume counts takes: every event taken, plus a take that found fewer than it asked for
    got = ch.counters.snapshot()
    assert (got["EventTakeSuccessCount"], got["EventTakeAttemptCount"]) == ("6", str(6 + 4 + 3 + 1))


def test_interleaved_rollbacks_return_to_head():
    ch = make_channel(30)
    events = [Event(b"%d" % i, {"h": "#%d" % i}) for i in range(9)]
    put_commit(ch, EventBatch.from_events(events))
    t1, t2 = ch.transaction(), ch.transaction()
    t1.begin()
    t2.begin()
    assert t1.take(2, timeout=0).events() == events[0:2]
    assert t2.take(3, timeout=0).events() == events[2:5]
    assert t1.take(1, timeout=0).events() == events[5:6]
    t2.rollback()   # back to the head: ahead of 6.., after nothing
    t1.rollback()
    assert drain(ch) == events[0:2] + events[5:6] + events[2:5] + events[6:]


def test_sliced_batch_put():
    ch = make_channel(30)
    events = [Event(b"b%d" % i, {"i": str(i)} if i % 2 else {}) for i in range(10)]
    put_commit(ch, EventBatch.from_events(events).slice(3, 8))
    assert drain(ch, 2) == events[3:8]


# ======================================================================================
# (b) concurrency
# ======================================================================================

def _producer(ch, pid, n, batch, errors, rng=None, rolled_back_rate=0.0):
    """Puts n events "pid:i" in batches, retrying a full channel; with rolled_back_rate,
    that share of batches is first put in a transaction rolled back (never delivered)."""
    try:
        for start in range(0, n, batch):
            idx = range(start, min(n, start + batch))
            b = EventBatch.from_bodies([b"%d:%d" % (pid, i) for i in idx],
                                       {"p": str(pid), "i": pa.array([str(i) for i in idx])})
            if rolled_back_rate and rng.random() < rolled_back_rate:
                tx = ch.transaction()
                tx.begin()
                tx.put(EventBatch.from_bodies([b"rolled back %d:%d" % (pid, i) for i in idx]))
                tx.rollback()
                tx.close()
            while not errors:
                tx = ch.transaction()
                tx.begin()
                tx.put(b)
                try:
                    tx.commit()
                    break
                except ChannelFullException:
                    tx.rollback()      # back-pressure: retry the same batch
                finally:
                    tx.close()
    except BaseException as exc:  # pragma: no cover - reported by the test
        errors.append(exc)


def _consumer(ch, total, state, seed, errors, rollback_rate=0.15):
    """Takes in random-sized transactions, rolling back rollback_rate of them, until `total`
    events are in state["out"] or, once state["producers_done"] (if given) is set, the
    channel is empty with nothing in flight (the caller's multiset comparison tells a loss)."""
    rng = random.Random(seed)
    producers_done = state.get("producers_done")
    try:
        while True:
            with state["lock"]:
                if state["done"] >= total:
                    return
            if producers_done is not None and producers_done.is_set() and ch.size == 0 and ch.in_flight == 0:
                return
            tx = ch.transaction()
            tx.begin()
            got, room = [], ch.transaction_capacity
            for _ in range(rng.randint(1, 3)):
                if room == 0:
                    break
                b = tx.take(rng.randint(1, room), timeout=0.02)
                if b is None:
                    break
                got.append(b)
                room -= len(b)
            if got and rng.random() < rollback_rate:
                tx.rollback()
                tx.close()
                continue
            tx.commit()
            tx.close()
            rows = []
            for b in got:
                rows += zip(b.bodies().to_pylist(), b.header_array("p").to_pylist(),
                            b.header_array("i").to_pylist())
            with state["lock"]:
                state["out"] += rows
                state["done"] += len(rows)
    except BaseException as exc:  # pragma: no cover - reported by the test
        errors.append(exc)


def _run(n_producers, per_producer, n_consumers, capacity=3000, tx=800, batch=100):
    ch = make_channel(capacity, tx, keep_alive=0.5)
    total = n_producers * per_producer
    state = {"lock": threading.Lock(), "done": 0, "out": []}
    errors = []
    threads = [threading.Thread(target=_producer, args=(ch, p, per_producer, batch, errors), daemon=True) for p in range(n_producers)]
    threads += [threading.Thread(target=_consumer, args=(ch, total, state, 1000 + c, errors), daemon=True) for c in range(n_consumers)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    for t in threads:
        t.join(max(0.1, deadline - time.monotonic()))
    alive = [t for t in threads if t.is_alive()]
    if alive:
        ch.interrupt()
    assert not errors, errors
    assert not alive, "threads still running (delivered %d of %d)" % (state["done"], total)
    assert not errors, errors
    assert ch.size == 0 and ch.in_flight == 0
    return state["out"]


def test_concurrent_exactly_once():
    n_producers, per_producer = 3, 66_667
    out = _run(n_producers, per_producer, n_consumers=2)
    bodies = collections.Counter(row[0] for row in out)
    expected = collections.Counter(b"%d:%d" % (p, i) for p in range(n_producers) for i in range(per_producer))
    assert bodies == expected   # every event exactly once
    bad = [row for row in out if row[0] != ("%s:%s" % (row[1], row[2])).encode()]
    assert not bad[:5]          # headers travelled with their events


def test_concurrent_single_consumer_keeps_producer_order():
    n_producers, per_producer = 3, 20_000
    out = _run(n_producers, per_producer, n_consumers=1, capacity=1500, tx=400, batch=50)
    seen = collections.defaultdict(list)
    for body, p, i in out:
        assert body == ("%s:%s" % (p, i)).encode()
        seen[int(p)].append(int(i))
    for p in range(n_producers):
        assert seen[p] == list(range(per_producer)), "producer %d out of order" % p


# ======================================================================================
# (c) blocking
# ======================================================================================

def test_full_commit_blocks_until_consumer_frees_room():
    ch = make_channel(capacity=10, keep_alive=5.0)
    put_commit(ch, EventBatch.from_bodies([b"old%d" % i for i in range(10)]))
    done = {}

    def produce():
        t0 = time.monotonic()
        try:
            put_commit(ch, EventBatch.from_bodies([b"new%d" % i for i in range(4)]))
            done["result"] = "ok"
        except Exception as exc:  # pragma: no cover
            done["result"] = exc
        done["elapsed"] = time.monotonic() - t0

    th = threading.Thread(target=produce)
    th.start()
    time.sleep(0.3)
    assert th.is_alive() and "result" not in done       # blocked: back-pressure
    with ch.transaction() as tx:
        assert len(tx.take(3, timeout=0)) == 3
    time.sleep(0.2)
    assert th.is_alive()                                 # 3 freed, 4 needed: still waits
    with ch.transaction() as tx:
        assert len(tx.take(1, timeout=0)) == 1
    th.join(3.0)
    assert not th.is_alive()
    assert done["result"] == "ok"
    assert 0.45 <= done["elapsed"] < 3.0
    assert [e.body for e in drain(ch)] == [b"old%d" % i for i in range(4, 10)] + [b"new%d" % i for i in range(4)]


def test_uncommitted_take_keeps_room_reserved():
    ch = make_channel(capacity=4, keep_alive=0.05)
    put_commit(ch, EventBatch.from_bodies([b"a", b"b", b"c", b"d"]))
    taker = ch.transaction()
    taker.begin()
    assert len(taker.take(2, timeout=0)) == 2
    with pytest.raises(ChannelFullException):
        put_commit(ch, EventBatch.from_bodies([b"e"]))
    taker.commit()
    taker.close()
    put_commit(ch, EventBatch.from_bodies([b"e", b"f"]))
    assert [e.body for e in drain(ch)] == [b"c", b"d", b"e", b"f"]


def test_full_commit_fails_after_keep_alive():
    ch = make_channel(capacity=5, keep_alive=0.3)
    put_commit(ch, EventBatch.from_bodies([b"x"] * 5))
    tx = ch.transaction()
    tx.begin()
    tx.put(EventBatch.from_bodies([b"y"]))
    t0 = time.monotonic()
    with pytest.raises(ChannelFullException):
        tx.commit()
    elapsed = time.monotonic() - t0
    assert 0.28 <= elapsed < 2.0
    tx.rollback()
    tx.close()
    assert ch.size == 5 and [e.body for e in drain(ch)] == [b"x"] * 5


def test_take_timeout_on_empty_channel():
    ch = make_channel(capacity=5, keep_alive=0.2)
    with ch.transaction() as tx:
        t0 = time.monotonic()
        assert tx.take(3, timeout=0.25) is None
        elapsed = time.monotonic() - t0
        assert 0.23 <= elapsed < 1.5
        t0 = time.monotonic()
        assert tx.take(3) is None                      # default timeout: keep-alive
        assert 0.18 <= time.monotonic() - t0 < 1.5


def test_blocked_take_wakes_on_commit():
    ch = make_channel(capacity=5, keep_alive=0.01)
    timer = threading.Timer(0.2, put_commit, args=(ch, EventBatch.from_bodies([b"late"], {"h": "v"})))
    timer.start()
    try:
        with ch.transaction() as tx:
            t0 = time.monotonic()
            b = tx.take(3, timeout=5.0)
            elapsed = time.monotonic() - t0
    finally:
        timer.join()
    assert b is not None and b.events() == [Event(b"late", {"h": "v"})]
    assert 0.15 <= elapsed < 2.0


# ======================================================================================
# (d) byteCapacity
# ======================================================================================

def test_byte_capacity_exact():
    ch = make_channel(capacity=100, keep_alive=0.05, byte_capacity=100, pct=0)
    put_commit(ch, EventBatch.from_bodies([b"x" * 60, b"y" * 40]))    # exactly full
    assert ch.ring.nbytes == 100
    with pytest.raises(ChannelFullException):
        put_commit(ch, EventBatch.from_bodies([b"z"]))
    put_commit(ch, EventBatch.from_bodies([b""] * 5))                 # empty bodies cost nothing
    tx = ch.transaction()
    tx.begin()
    assert tx.take(1, timeout=0).events() == [Event(b"x" * 60)]
    with pytest.raises(ChannelFullException):                         # taken bytes stay reserved
        put_commit(ch, EventBatch.from_bodies([b"z"]))
    tx.commit()
    tx.close()
    put_commit(ch, EventBatch.from_bodies([b"z" * 60]))
    with pytest.raises(ChannelFullException):
        put_commit(ch, EventBatch.from_bodies([b"!"]))
    assert [e.body for e in drain(ch)] == [b"y" * 40] + [b""] * 5 + [b"z" * 60]


def test_batch_larger_than_byte_capacity_fails_at_once():
    ch = make_channel(capacity=100, keep_alive=2.0, byte_capacity=100, pct=0)
    tx = ch.transaction()
    tx.begin()
    tx.put(EventBatch.from_bodies([b"a" * 50, b"b" * 51]))
    t0 = time.monotonic()
    with pytest.raises(ChannelException) as info:
        tx.commit()
    assert time.monotonic() - t0 < 0.5                                 # no keep-alive wait
    assert not isinstance(info.value, ChannelFullException)
    tx.rollback()
    tx.close()
    assert ch.size == 0
    put_commit(ch, EventBatch.from_bodies([b"a" * 50, b"b" * 50]))      # 100 fits
    assert ch.size == 2


def test_byte_capacity_buffer_percentage():
    ch = make_channel(capacity=100, keep_alive=0.05, byte_capacity=100, pct=20)
    with pytest.raises(ChannelException) as info:
        put_commit(ch, EventBatch.from_bodies([b"q" * 81]))
    assert not isinstance(info.value, ChannelFullException)
    put_commit(ch, EventBatch.from_bodies([b"q" * 80]))
    with pytest.raises(ChannelFullException):
        put_commit(ch, EventBatch.from_bodies([b"r"]))


# ======================================================================================
# (e) by reference: the ring keeps the sources' buffers
# ======================================================================================

def test_a_take_from_one_put_is_a_view_of_its_buffer_and_across_puts_one_copy():
    ch = make_channel(100)
    first = EventBatch.from_bodies([b"a" * 10, b"b" * 20, b"c" * 30])
    second = EventBatch.from_bodies([b"d", b"e"])
    put_commit(ch, first)
    put_commit(ch, second)
    with ch.transaction() as tx:
        part = tx.take(2, timeout=0)
        assert part.data.address == first.data.address          # no copy
        assert part.bodies().to_pylist() == [b"a" * 10, b"b" * 20]
        rest = tx.take(10, timeout=0)                            # the end of one put and another
        assert rest.bodies().to_pylist() == [b"c" * 30, b"d", b"e"]
        assert rest.data.address != second.data.address and rest.offsets[0] == 0
    assert ch.size == 0 and ch.in_flight == 0 and ch.ring.nbytes == 0


def test_a_mutable_buffer_is_copied_at_commit():
    raw = bytearray(b"one\ntwo\n")
    batch = EventBatch(pa.py_buffer(raw), np.array([0, 3, 3, 6], dtype=np.int64))
    ch = make_channel(10)
    put_commit(ch, batch)
    raw[:] = b"XXXXXXXX"
    assert [e.body for e in drain(ch)] == [b"one", b"", b"\ntw"]


def test_put_each_commits_transaction_by_transaction_and_stops_when_full():
    ch = make_channel(capacity=10, tx=4)
    batch = EventBatch.from_bodies([b"%d" % i for i in range(25)], {"h": pa.array(["v%d" % i for i in range(25)])})
    with pytest.raises(ChannelFullException) as err:
        ch.put_each(batch, 3)
    assert err.value.committed == 9             # three transactions of 3; the fourth has no room
    assert ch.counters["EventPutSuccessCount"] == 9 and ch.counters["EventPutAttemptCount"] == 12
    with ch.transaction() as tx:                # consecutive transactions of one batch: one extent
        got = tx.take(4, timeout=0)
        assert got.data.address == batch.data.address
    assert [e.headers["h"] for e in got.events()] == ["v0", "v1", "v2", "v3"]
    assert ch.ring.batches == 1
    assert [e.body for e in drain(ch)] == [b"%d" % i for i in range(4, 9)]
    with pytest.raises(ChannelException, match="Put queue for MemoryTransaction of capacity 4 full"):
        ch.put_each(batch, 5)
    assert ch.put_each(batch.slice(0, 3), 5) == 3   # a shorter batch is one transaction of 3
    assert not ch._headers or all(entry[1] > 0 for entry in ch._headers.values())


def test_put_each_wakes_a_waiting_sink_and_waits_for_room():
    """A producer putting one-event transactions into a small channel while a consumer
    takes: everything arrives once, in order."""
    ch = make_channel(capacity=50, tx=50, keep_alive=5)
    n = 20_000
    batch = EventBatch.from_bodies([b"%d" % i for i in range(n)])
    got = []

    def consume():
        while len(got) < n:
            with ch.transaction() as tx:
                b = tx.take(50, timeout=5)
            assert b is not None
            got.extend(b.bodies().to_pylist())

    t = threading.Thread(target=consume)
    t.start()
    assert ch.put_each(batch, 1) == n
    t.join(30)
    assert got == [b"%d" % i for i in range(n)]


def test_drain_each_takes_what_is_there_transaction_by_transaction_and_stops_at_headers():
    ch = make_channel(capacity=100, tx=4)
    ch.put_each(EventBatch.from_bodies([b"x" * i for i in range(10)]), 3)
    put_commit(ch, EventBatch.from_bodies([b"h1", b"h2"], {"k": "v"}))
    put_commit(ch, EventBatch.from_bodies([b"after"]))
    assert ch.drain_each(4, 0) == (10, 3, 2, sum(range(10)))    # 4 + 4 + 2, then the headers stop it
    assert ch.counters["EventTakeSuccessCount"] == 10 and ch.counters["EventTakeAttemptCount"] == 11
    assert ch.drain_each(4, 0) is None
    assert [e.body for e in drain(ch, 4)] == [b"h1", b"h2", b"after"]
    assert ch.drain_each(4, 0) == (0, 0, 0, 0) and ch.size == 0 and ch.in_flight == 0


@pytest.mark.parametrize("how,commits", [("take", 64), ("write_each", 100)])
def test_rollback_of_a_split_head_in_a_full_extent_table_keeps_every_event(how, commits):
    """64 separate commits fill the ring's table of extents (64 at first); a take of one
    event splits the head in two, and its rollback puts the piece back in front. That
    needs one more slot: without it the piece overwrote the newest extent. write_each
    takes 64 one-event transactions of 100 extents in a table of 128, splitting extents
    43 times, and puts them all back."""
    ch = make_channel(capacity=1000, tx=10)
    events = [Event(b"e%03d" % i) for i in range(3 * commits)]
    for i in range(0, 3 * commits, 3):
        put_commit(ch, EventBatch.from_events(events[i:i + 3]))
    if how == "take":
        tx = ch.transaction()
        tx.begin()
        assert tx.take(1, timeout=0).events() == events[:1]
        tx.rollback()
        tx.close()
    else:
        fd = os.open(os.devnull, os.O_RDONLY)
        with pytest.raises(OSError) as err:
            ch.write_each(fd, 1, 0)
        os.close(fd)
        assert err.value.failed == 64
    assert drain(ch) == events


def test_take_open_spans_batches_and_rolls_back_in_order():
    """A native take transaction over three puts (a split one at the end), rolled back,
    leaves the channel as it was; one dropped without an end is rolled back too; a
    committed one frees its room; events with headers at the head are left to take()."""
    ch = make_channel(capacity=100, tx=20)
    events = [Event(b"e%02d" % i) for i in range(9)]
    for i in range(0, 9, 3):
        put_commit(ch, EventBatch.from_events(events[i:i + 3]))
    t = ch.take_open(8, 0)
    assert t.bodies() == [e.body for e in events[:8]] and t.nbytes == 24
    assert ch.size == 1 and ch.in_flight == 8
    t.rollback()
    assert ch.size == 9 and ch.in_flight == 0
    ch.take_open(4, 0)          # dropped: rolled back when collected
    assert ch.size == 9 and ch.in_flight == 0
    t = ch.take_open(2, 0)
    t.commit()
    assert ch.size == 7 and ch.in_flight == 0
    with pytest.raises(RuntimeError):
        t.rollback()
    put_commit(ch, EventBatch.from_events([Event(b"h", {"k": "v"})]))
    t = ch.take_open(20, 0)
    assert t.bodies() == [e.body for e in events[2:]]       # stops before the headers
    t.commit()
    assert ch.take_open(20, 0) is False
    assert drain(ch) == [Event(b"h", {"k": "v"})]
    assert ch.take_open(20, 0) is None
