"""Parity of the channels: the same transaction scripts run against the memory channel,
the file channel and a tiny pure-Python reference, with identical observable results.

(a) a hypothesis state machine drives the three in lock step — several open transactions,
    puts (no headers, a shared str header, per-event arrays with None, all-null columns,
    sliced batches), takes with a zero timeout, commits and rollbacks — and after every
    step compares what came back from takes (bodies and headers), which operations raised
    and with which exception class, and the gauges `size` and `in_flight`;
(b) the same with restarts of the file channel (with and without a checkpoint on close,
    i.e. from the checkpoint or by replaying the log), checking that the restarted queue
    holds exactly the reference's committed events;
(c) producers and consumers on threads with random rollbacks through a file channel:
    every committed event is delivered exactly once.
"""
import collections
import itertools
import random
import shutil
import tempfile
import threading
import time

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, Phase, event, settings, strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from fastsync.agent.channels.file import FileChannel, FileChannelConfig
from fastsync.agent.channels.memory import MemoryChannel, MemoryChannelConfig
from fastsync.agent.errors import ChannelException
from fastsync.event import Event, EventBatch

# The reference: Flume's MemoryChannel one Event at a time (a deque, per-transaction put
# and take lists, `capacity` counting the taken-but-uncommitted events, a transaction's own
# takes counting as room for its puts). Its byte limit is switched off with HUGE: the file
# channel has none, and the memory channel below gets a byteCapacity just as large.
from test_memory_channel import HUGE, RefChannel, _consumer, _producer

KEEP_ALIVE = 0.01


def make_memory(capacity, tx):
    ch = MemoryChannel("c", MemoryChannelConfig(
        capacity=capacity, transactionCapacity=tx, keepAlive=KEEP_ALIVE,
        byteCapacity=HUGE, byteCapacityBufferPercentage=0))
    ch.start()
    return ch


def file_config(root, capacity, tx, **kw):
    return FileChannelConfig(checkpointDir=root + "/checkpoint", dataDirs=[root + "/data1", root + "/data2"],
                             capacity=capacity, transactionCapacity=tx, keepAlive=KEEP_ALIVE,
                             minimumRequiredSpace=0, checkpointInterval=10 ** 7, **kw)


def make_file(root, capacity, tx, **kw):
    ch = FileChannel("c", file_config(root, capacity, tx, **kw))
    ch.start()
    return ch


def outcome(fn):
    """('ok', value) or the exact ChannelException class raised."""
    try:
        return ("ok", fn())
    except ChannelException as exc:
        return type(exc)


def taken(result):
    """A take's outcome with the batch as a list of Events."""
    if isinstance(result, tuple) and result[1] is not None:
        return ("ok", result[1].events())
    return result


def drain(ch, max_events=None):
    """Take and commit everything the channel holds, as Events."""
    out = []
    while True:
        with ch.transaction() as tx:
            b = tx.take(max_events, timeout=0)
        if b is None:
            return out
        out += b.events()


def peek(ch):
    """The channel's whole queue, head first, left in place: take everything with as many
    transactions as transactionCapacity needs, then roll them back last first (each
    rollback goes to the head, so the queue ends up as it was)."""
    txs, out = [], []
    while True:
        tx = ch.transaction()
        tx.begin()
        txs.append(tx)
        b = tx.take(None, timeout=0)
        if b is None:
            break
        out += b.events()
    for tx in reversed(txs):
        tx.rollback()
        tx.close()
    return out


def note(label):
    """hypothesis.event (shown by --hypothesis-show-statistics), also outside a test."""
    try:
        event(label)
    except InvalidArgument:
        pass


def event_key(e):
    return (e.body, tuple(sorted(e.headers.items())))


def multiset(events):
    return sorted(map(event_key, events))


# ======================================================================================
# (a) the three channels in lock step
# ======================================================================================

class Triple:
    """One transaction on each channel, opened together."""

    def __init__(self, mem, file, ref):
        self.mem, self.file, self.ref = mem, file, ref


# header shapes of a generated batch (see ParityMachine._batch)
HEADER_MODES = ["none", "shared", "per_event", "sparse", "mixed", "all_null", "empty_vs_null"]


class ParityMachine(RuleBasedStateMachine):
    """Random scripts of (open, put, take, commit, rollback) over up to three concurrently
    open transactions, on MemoryChannel, FileChannel and RefChannel in lock step."""

    def __init__(self):
        super().__init__()
        self.counter = 0
        self.txns = []
        self.broken = False   # a comparison failed: teardown must not pile a second error on it
        self.tmp = None
        self.seq = {}          # id(Event in the reference) -> order of its commit
        self.seqs = itertools.count()

    @initialize(capacity=st.integers(1, 9), tx_frac=st.sampled_from([0.3, 0.6, 1.0, 1.0]))
    def setup(self, capacity, tx_frac):
        self.capacity = capacity
        self.tx_capacity = max(1, int(capacity * tx_frac))
        self.tmp = tempfile.mkdtemp(prefix="fastsync-parity-")
        self.mem = make_memory(capacity, self.tx_capacity)
        self.file = make_file(self.tmp, capacity, self.tx_capacity)
        self.ref = RefChannel(capacity, self.tx_capacity, HUGE)

    # -- helpers --
    def check(self, what, mem, file, ref):
        if not (mem == ref and file == ref):
            self.broken = True
        assert mem == ref and file == ref, (
            "%s differs:\n  memory:    %r\n  file:      %r\n  reference: %r" % (what, mem, file, ref))

    def check_file(self, what, file, ref):
        if file != ref:
            self.broken = True
        assert file == ref, "%s differs:\n  file:      %r\n  reference: %r" % (what, file, ref)

    def _batch(self, n, mode, around, empty_every):
        """n new events with headers of the given shape, as (EventBatch, [Event]); with
        `around` != (0, 0) the batch is a slice of a larger one (offsets[0] != 0, header
        arrays with an offset)."""
        pre, post = around
        total = pre + n + post
        bodies, ids = [], []
        for _ in range(total):
            self.counter += 1
            ids.append(self.counter)
            # some empty bodies; the others distinct, with bytes that framing must not mind
            bodies.append(b"" if empty_every and self.counter % empty_every == 0
                          else b"%d|\x00\n" % self.counter + b"x" * (self.counter % 5))
        cols = {}
        if mode in ("shared", "mixed"):
            cols["src"] = "s1"
        if mode in ("per_event", "mixed"):
            cols["seq"] = ["#%d" % i for i in ids]
        if mode == "sparse":
            cols["seq"] = ["#%d" % i if i % 3 == 0 else None for i in ids]
            cols["ü"] = ["odd ✓" if i % 2 else None for i in ids]
        if mode == "all_null":      # a column with no value at all: no header on any event
            cols["gone"] = [None] * total
            cols["src"] = "s2"
        if mode == "empty_vs_null":  # "" is a value, None is "absent"
            cols["e"] = ["" if i % 2 else None for i in ids]
            cols["blank"] = ""
        headers = {k: (v if isinstance(v, str) else pa.array(v, type=pa.string())) for k, v in cols.items()}
        batch = EventBatch.from_bodies(bodies, headers)
        events = []
        for i, body in enumerate(bodies):
            h = {k: (v if isinstance(v, str) else v[i]) for k, v in cols.items()}
            events.append(Event(body, {k: v for k, v in h.items() if v is not None}))
        if around != (0, 0):
            batch = batch.slice(pre, pre + n)
        return batch, events[pre:pre + n]

    def _pick(self, idx):
        """One of the open transactions; a new one when none is open (rather than a
        precondition, which makes hypothesis throw draws away)."""
        if not self.txns:
            self.open_txn()
        return self.txns[idx % len(self.txns)]

    def _commit(self, t):
        """Commit on all three; returns the (common) outcome."""
        puts = list(t.ref.puts)
        got_mem = outcome(t.mem.commit)
        got_file = outcome(t.file.commit)
        want = outcome(t.ref.commit)
        self.check("commit", got_mem, got_file, want)
        note("commit: %s" % (want[0] if isinstance(want, tuple) else want.__name__))
        if want == ("ok", None):
            for e in puts:
                self.seq[id(e)] = next(self.seqs)
        return want

    def _rollback(self, t):
        t.mem.rollback()
        t.file.rollback()
        t.ref.rollback()
        t.mem.close()
        t.file.close()

    # -- rules --
    @precondition(lambda self: len(self.txns) < 3)
    @rule()
    def open_rule(self):
        self.open_txn()

    def open_txn(self):
        mem, file = self.mem.transaction(), self.file.transaction()
        mem.begin()
        file.begin()
        t = Triple(mem, file, self.ref.transaction())
        self.txns.append(t)
        return t

    @rule(idx=st.integers(0, 5), n=st.integers(0, 6), mode=st.sampled_from(HEADER_MODES),
          around=st.sampled_from([(0, 0), (0, 0), (1, 0), (0, 2), (2, 1)]),
          empty_every=st.sampled_from([0, 0, 2, 3]))
    def put(self, idx, n, mode, around, empty_every):
        t = self._pick(idx)
        batch, events = self._batch(n, mode, around, empty_every)
        self.check("put", outcome(lambda: t.mem.put(batch)), outcome(lambda: t.file.put(batch)),
                   outcome(lambda: t.ref.put(events)))

    @rule(idx=st.integers(0, 5), ks=st.lists(st.one_of(st.none(), st.integers(1, 4)), min_size=1, max_size=3),
          timeout=st.sampled_from([0, 0, 0.001]))
    def take(self, idx, ks, timeout):
        """One to three takes in a row in one transaction (k None: what the transaction
        still allows); a short timeout, so that an empty channel gives None."""
        t = self._pick(idx)
        for k in ks:
            self.check("take(%r)" % k, taken(outcome(lambda: t.mem.take(k, timeout=timeout))),
                       taken(outcome(lambda: t.file.take(k, timeout=timeout))),
                       outcome(lambda: t.ref.take(k)))

    @rule(idx=st.integers(0, 5), k=st.integers(1, 4), mode=st.sampled_from(HEADER_MODES))
    def take_and_put(self, idx, k, mode):
        """Take up to k events and put as many new ones in the same transaction."""
        self.take(idx, [k], 0)
        t = self._pick(idx)
        self.put(idx, min(k, len(t.ref.takes)), mode, (0, 0), 0)

    @precondition(lambda self: len(self.txns) <= 1)
    @rule(k1=st.integers(1, 3), k2=st.integers(1, 3), then=st.sampled_from(["first, then second", "second, then first", "none"]))
    def two_takers(self, k1, k2, then):
        """Two new transactions take k1 and k2 events, one after the other; then both roll
        back (the first one first moves events out of commit order), or both stay open."""
        first, second = self.open_txn(), self.open_txn()
        self.take(self.txns.index(first), [k1], 0)
        self.take(self.txns.index(second), [k2], 0)
        if then != "none":
            for t in ((first, second) if then.startswith("first") else (second, first)):
                self._rollback(t)
                self.txns.remove(t)

    @rule(modes=st.lists(st.sampled_from(HEADER_MODES), min_size=1, max_size=3), extra=st.integers(0, 1))
    def fill_up(self, modes, extra):
        """A put transaction of as many events as there is room for (or one more), in one
        batch per mode, so that full channels and multi-record contents are common."""
        room = self.ref.capacity - self.ref.size - self.ref.in_flight
        n = max(0, min(room + extra, self.ref.tx_capacity))
        mem, file = self.mem.transaction(), self.file.transaction()
        mem.begin()
        file.begin()
        t = Triple(mem, file, self.ref.transaction())
        for i, mode in enumerate(modes):
            part = n // len(modes) + (i < n % len(modes))
            batch, events = self._batch(part, mode, (0, 0), 0)
            t.mem.put(batch)
            t.file.put(batch)
            t.ref.put(events)
        if self._commit(t) == ("ok", None):
            mem.close()
            file.close()
        else:
            self._rollback(t)

    @rule(idx=st.integers(0, 5))
    def commit(self, idx):
        t = self._pick(idx)
        if self._commit(t) == ("ok", None):
            t.mem.close()
            t.file.close()
            self.txns.remove(t)
        # a failed commit leaves the transaction open on all three: it may be retried or
        # rolled back later

    @rule(idx=st.integers(0, 5))
    def rollback(self, idx):
        t = self._pick(idx)
        self._rollback(t)
        self.txns.remove(t)

    @invariant()
    def same_gauges(self):
        if not hasattr(self, "ref"):
            return
        self.check("size", self.mem.size, self.file.size, self.ref.size)
        self.check("in_flight", self.mem.in_flight, self.file.in_flight, self.ref.in_flight)

    def teardown(self):
        try:
            if hasattr(self, "ref") and not self.broken:
                for t in list(self.txns):   # roll everything back, then compare the whole content
                    for tx in (t.mem, t.file):
                        if tx.state == "OPEN":
                            tx.rollback()
                    if t.ref in self.ref.txns:
                        t.ref.rollback()
                self.check("in_flight after rollbacks", self.mem.in_flight, self.file.in_flight, 0)
                want = list(self.ref.queue)
                self.check("drained content", drain(self.mem, 4), drain(self.file, 4), want)
                self.check("size after drain", self.mem.size, self.file.size, 0)
        finally:
            for name in ("mem", "file"):
                if hasattr(self, name):
                    getattr(self, name).stop()
            if self.tmp:
                shutil.rmtree(self.tmp, ignore_errors=True)


class RestartParityMachine(ParityMachine):
    """ParityMachine plus restarts of the file channel between transactions."""

    @rule(checkpoint_on_close=st.booleans(), ends=st.lists(st.tuples(st.integers(0, 5), st.booleans()), max_size=3))
    def restart(self, checkpoint_on_close, ends):
        """End the open transactions — each committed or rolled back, in the order `ends`
        picks, so that rollbacks out of take order are common — then stop() the file
        channel, open a new FileChannel on the same directories, start().

        With checkpointOnClose the new channel loads the checkpoint written at stop (the
        queue's ranges in queue order); without it, it loads the checkpoint written when
        the previous instance started and replays the log after it.

        What the restarted queue must hold:
          * always exactly the reference's committed events — nothing lost, nothing
            uncommitted or already taken delivered, every header intact (a multiset
            comparison);
          * in the same order as long as the reference's queue is in commit order (every
            event after those committed before it), which is the case until a rollback of
            takes interleaved with other takes moves events out of that order.
          * in exactly the order before the stop whenever it loads the checkpoint written
            at stop: recovery (_Replay) keeps the checkpoint's entry order, as Flume does.
        Replaying the log after an older checkpoint rebuilds the order of what it replays
        from the log (commit order), so after a rollback of interleaved takes the order can
        differ then; what a restart must never do is lose, duplicate or resurrect an
        event, hence the multiset as the general expectation.
        """
        ends = list(ends)
        note("restart: %d open transactions had taken events" % sum(1 for t in self.txns if t.ref.takes))
        while self.txns:
            idx, commit = ends.pop(0) if ends else (0, False)
            t = self._pick(idx)
            if not commit or self._commit(t) != ("ok", None):
                self._rollback(t)
            else:
                t.mem.close()
                t.file.close()
            self.txns.remove(t)
        self.file.config.checkpointOnClose = checkpoint_on_close
        self.file.stop()
        self.file = FileChannel("c", file_config(self.tmp, self.capacity, self.tx_capacity))
        self.file.start()
        want = list(self.ref.queue)
        how = "after a restart (checkpointOnClose=%s)" % checkpoint_on_close
        self.check_file("(size, in_flight) " + how, (self.file.size, self.file.in_flight), (self.ref.size, 0))
        got = peek(self.file)
        self.check_file("(size, in_flight) after peek " + how, (self.file.size, self.file.in_flight), (self.ref.size, 0))
        self.check_file("committed, untaken events (as a multiset) " + how, multiset(got), multiset(want))
        seqs = [self.seq[id(e)] for e in want]
        in_order = seqs == sorted(seqs)
        note("restart: %s queue, %s, order %s" % ("non-empty" if want else "empty",
                                                    "checkpoint" if checkpoint_on_close else "replay",
                                                    "kept" if got == want else "changed"))
        note("restart: queue %s commit order" % ("in" if in_order else "out of"))
        if in_order or checkpoint_on_close:
            self.check_file("queue (in the order before the stop) " + how, got, want)
        # From here on the restarted order is the order of all three: the reference takes
        # it, and the memory channel (which keeps nothing across a restart) is rebuilt with
        # it; the commit order restarts from it too.
        self.ref.queue = collections.deque(got)
        self.seq = {id(e): next(self.seqs) for e in got}
        self.mem.stop()
        self.mem = make_memory(self.capacity, self.tx_capacity)
        for i in range(0, len(got), self.tx_capacity):
            with self.mem.transaction() as tx:
                tx.put(EventBatch.from_events(got[i:i + self.tx_capacity]))


# no explain phase: on a failure it re-runs the machine many times
STATEFUL = settings(max_examples=100, stateful_step_count=30, deadline=None, database=None,
                    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

TestChannelParity = ParityMachine.TestCase
TestChannelParity.pytestmark = [pytest.mark.slow]
TestChannelParity.settings = STATEFUL

TestChannelParityWithRestarts = RestartParityMachine.TestCase
TestChannelParityWithRestarts.pytestmark = [pytest.mark.slow]
TestChannelParityWithRestarts.settings = STATEFUL


# ======================================================================================
# (c) concurrency through a file channel
# ======================================================================================

def test_file_channel_concurrent_exactly_once(tmp_path):
    n_producers, per_producer, n_consumers = 2, 20000, 2
    root = str(tmp_path)
    ch = FileChannel("c", FileChannelConfig(
        checkpointDir=root + "/checkpoint", dataDirs=[root + "/data"], capacity=300, transactionCapacity=60,
        keepAlive=0.5, minimumRequiredSpace=0, checkpointInterval=200))   # checkpoints while it runs
    ch.start()
    total = n_producers * per_producer
    state = {"lock": threading.Lock(), "done": 0, "out": [], "producers_done": threading.Event()}
    errors = []
    threads = [threading.Thread(target=_producer, args=(ch, p, per_producer, 40, errors, random.Random(p), 0.2),
                                daemon=True) for p in range(n_producers)]
    threads += [threading.Thread(target=_consumer, args=(ch, total, state, 100 + c, errors, 0.25), daemon=True)
                for c in range(n_consumers)]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 40
        for t in threads[:n_producers]:
            t.join(max(0.1, deadline - time.monotonic()))
        state["producers_done"].set()
        for t in threads[n_producers:]:
            t.join(max(0.1, deadline - time.monotonic()))
        alive = [t for t in threads if t.is_alive()]
        if alive:
            ch.interrupt()
            for t in alive:
                t.join(2)
        assert not errors, errors
        assert not alive, "threads still running (delivered %d of %d)" % (state["done"], total)
        assert ch.size == 0 and ch.in_flight == 0
        out = state["out"]
        bodies = collections.Counter(row[0] for row in out)
        expected = collections.Counter(b"%d:%d" % (p, i) for p in range(n_producers) for i in range(per_producer))
        missing, extra = expected - bodies, bodies - expected
        assert bodies == expected, "not exactly once: %d missing (e.g. %r), %d extra (e.g. %r)" % (
            sum(missing.values()), list(missing)[:3], sum(extra.values()), list(extra)[:3])
        bad = [row for row in out if row[0] != ("%s:%s" % (row[1], row[2])).encode()]
        assert not bad[:5], "headers did not travel with their events"
    finally:
        ch.stop()
    # and nothing comes back after a restart: every take commit is in the log
    ch = FileChannel("c", ch.config)
    ch.start()
    try:
        assert ch.size == 0 and drain(ch) == []
    finally:
        ch.stop()
