"""Flume's durable `file` channel on the write-ahead log (fastsync._wal + channels/wal.py).

A transaction's puts are staged (references, no copy) and its takes are pointers into
the log; commit appends all of its records at once — put records carrying the batches,
a take record listing the taken (segment, record, first event, count) ranges, and a
commit record — then waits until one group fdatasync covers them (fsyncPolicy = commit)
or returns at once and lets a flusher sync every fsyncIntervalMs (interval). A rollback
writes nothing: the staged puts are dropped and the taken ranges go back to the head.
Framing and writing are one native call (Log.append_txn) that keeps the GIL for a
transaction of ordinary size, so a put commit lets go of the GIL once, for its
fdatasync, and a take commit not at all.

Committed events wait in an in-memory queue of ranges over put records in the mapped
segments, so a take copies nothing: the batch it returns views the map. A checkpoint
(every checkpointInterval ms and at stop) saves that queue and the log position, so a
restart replays only what came after it; segments nothing points into are then deleted.
"""
from __future__ import annotations

import errno
import fcntl
import itertools
import logging
import os
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from fastsync._native import Log, Segment
from fastsync.agent.channels import wal
from fastsync.agent.channels.base import Channel, Transaction
from fastsync.agent.component import CHANNELS, ComponentConfig, Place, setting
from fastsync.agent.errors import ChannelException, ChannelFullException
from fastsync.agent.metrics import CHANNEL_COUNTERS, Counters
from fastsync.event import EventBatch

log = logging.getLogger("fastsync.channel.file")

PREFILL = 64 << 20       # bytes of zeros kept written ahead of the log's end
LOCK_NAME = "in_use.lock"
SPACE_RECHECK = 1.0      # s: free space is read again this often (Flume's CachedFSUsableSpace), or sooner
_RANGE = struct.Struct("<QQII")     # one wal.TAKE_RANGE entry of a take record
DRAIN_TXS = 64           # take transactions drain_each runs per call, so a stop is seen soon
_HOME = os.path.join(os.path.expanduser("~"), ".fastsync", "file-channel")
FILE_CHANNEL_COUNTERS = CHANNEL_COUNTERS + (
    "CheckpointWriteErrorCount", "CheckpointBackupWriteErrorCount", "EventPutErrorCount",
    "CorruptRecordsSkipped",
)


@dataclass
class FileChannelConfig(ComponentConfig):
    checkpointDir: str = setting("checkpointDir", os.path.join(_HOME, "checkpoint"), "where checkpoints are written")
    dataDirs: list = setting("dataDirs", [os.path.join(_HOME, "data")],
                             "comma-separated directories for log segments; new segments go to each in turn")
    capacity: int = setting("capacity", 1000000, "most events the channel holds", min=1)
    transactionCapacity: int = setting("transactionCapacity", 10000, "most events put or taken in one transaction", min=1)
    keepAlive: float = setting("keep-alive", 3.0, "seconds a put commit waits for room, and a take for an event", min=0)
    maxFileSize: int = setting("maxFileSize", 2146435071, "largest segment file, in bytes", min=65536)
    minimumRequiredSpace: int = setting("minimumRequiredSpace", 524288000,
                                        "puts fail while a directory has less free space than this (bytes)", min=0)
    checkpointInterval: int = setting("checkpointInterval", 30000, "milliseconds between checkpoints", min=100)
    checkpointOnClose: bool = setting("checkpointOnClose", True, "write a checkpoint when the channel stops")
    useDualCheckpoints: bool = setting("useDualCheckpoints", False, "also write every checkpoint to backupCheckpointDir")
    backupCheckpointDir: str = setting("backupCheckpointDir", "", "where the backup checkpoint goes (with useDualCheckpoints)")
    fsyncPerTransaction: bool = setting("fsyncPerTransaction", True, "Flume's switch: false = fsyncPolicy interval")
    fsyncInterval: float = setting("fsyncInterval", 5.0, "Flume's sync interval in seconds, used when fsyncPerTransaction = false",
                                   min=0.001)
    fsyncPolicy: str = setting("fsyncPolicy", "",
                               "commit: a commit returns once durable (group commit); interval: sync every fsyncIntervalMs",
                               choices=("commit", "interval"))
    fsyncIntervalMs: int = setting("fsyncIntervalMs", 0,
                                   "milliseconds between background syncs: of everything with fsyncPolicy = interval "
                                   "(default: Flume's fsyncInterval), of take-only commits otherwise (default 1000)", min=1)
    syncTakes: bool = setting("syncTakes", False,
                              "fsyncPolicy = commit: take-only commits also wait for their fdatasync "
                              "(by default they ride on the next one, at most fsyncIntervalMs later)")
    repair: bool = setting("repair", False, "at start-up, skip (and count) corrupt records in committed data instead of failing")
    # Flume's replay strategies (expert switches), with no effect here: accepted so that a Flume configuration passes --strict
    useLogReplayV1: bool = setting("use-log-replay-v1", False, "accepted for compatibility: Flume's old replay logic")
    useFastReplay: bool = setting("use-fast-replay", False, "accepted for compatibility: Flume's replay without its queue")

    @property
    def policy(self) -> str:
        return self.fsyncPolicy or ("commit" if self.fsyncPerTransaction else "interval")

    @property
    def sync_interval(self) -> float:
        if self.fsyncIntervalMs:
            return self.fsyncIntervalMs / 1000.0
        return self.fsyncInterval if not self.fsyncPerTransaction else 1.0

    def validate(self, place: Place) -> None:
        for key in place.props:
            if key.startswith("encryption."):
                raise place.error(key, "file channel encryption is not supported; remove the encryption.* keys")
        if not self.dataDirs:
            raise place.error("dataDirs", "must name at least one directory")
        if self.transactionCapacity > self.capacity:
            raise place.error("transactionCapacity", "Transaction Capacity of File Channel (%d) cannot be higher than the capacity (%d)"
                              % (self.transactionCapacity, self.capacity))
        ck = os.path.abspath(self.checkpointDir)
        for d in self.dataDirs:
            if os.path.abspath(d) == ck:
                raise place.error("dataDirs", "%s is also the checkpointDir; they must differ" % d)
        if self.useDualCheckpoints:
            if not self.backupCheckpointDir:
                raise place.error("useDualCheckpoints", "needs backupCheckpointDir")
            if os.path.abspath(self.backupCheckpointDir) in [ck] + [os.path.abspath(d) for d in self.dataDirs]:
                raise place.error("backupCheckpointDir", "must differ from checkpointDir and every data directory")


class _Replay:
    """The queue rebuilt from a checkpoint and the log after it, in the checkpoint's order
    (which keeps any reordering by rollbacks), then in commit order."""

    def __init__(self):
        self.order: list = []          # entries [PutRecord, [[start, count], ...]], head first
        self.live: dict[tuple[int, int], list] = {}   # (segment, offset) -> its entries
        self.next_txn = 1
        self.records = 0
        self.transactions = 0
        self.skipped: list[tuple[str, int, str]] = []
        self.torn: list[tuple[str, int, int]] = []    # (file, offset, bytes cut)
        self.unmatched_takes = 0

    def add(self, rec, start: int, count: int) -> None:
        entry = [rec, [[start, count]]]
        self.order.append(entry)
        self.live.setdefault((rec.seg.id, rec.off), []).append(entry)

    def remove(self, seg: int, off: int, start: int, count: int) -> None:
        entries = self.live.get((seg, off))
        if entries is None:
            self.unmatched_takes += count
            return
        stop = start + count
        for entry in entries:
            kept = []
            for s, c in entry[1]:
                e = s + c
                if e <= start or s >= stop:
                    kept.append([s, c])
                    continue
                if s < start:
                    kept.append([s, start - s])
                if e > stop:
                    kept.append([stop, e - stop])
            entry[1] = kept
        entries[:] = [e for e in entries if e[1]]
        if not entries:
            del self.live[(seg, off)]

    def queue(self) -> deque:
        q = deque()
        for rec, ivs in self.order:
            for s, c in ivs:
                q.append([rec, s, c])
        return q


class _CheckpointMismatch(wal.CorruptLogError):
    """The checkpoint points at a record or segment the log does not hold intact."""

    def __init__(self, msg: str, record: tuple | None = None):
        super().__init__(msg)
        self.record = record      # (file, offset, reason) of a corrupt record it points at


def _record_at(seg: Segment, off: int) -> wal.PutRecord:
    mv = memoryview(seg.view(0, seg.end))
    got = wal._check_record(mv, off, seg.end)
    if isinstance(got, str) or got[0] != wal.PUT:
        why = got if isinstance(got, str) else "a %s record" % wal.KIND_NAMES[got[0]]
        raise _CheckpointMismatch("%s: the checkpoint points at byte %d, which is not a valid put record (%s)"
                                  % (seg.path, off, why), (str(seg.path), off, why))
    try:
        return wal.PutRecord(seg, off, seg.view(off + wal.RECORD_HEADER, off + wal.RECORD_HEADER + got[2]))
    except ValueError as exc:
        raise _CheckpointMismatch("%s: the put record at byte %d, which the checkpoint points at, is damaged (%s)"
                                  % (seg.path, off, exc), (str(seg.path), off, str(exc))) from None


def recover(checkpoint_dirs, data_dirs, repair: bool, readonly: bool) -> tuple[_Replay, dict, "wal.Checkpoint | None"]:
    """Rebuild the queue: newest valid checkpoint, then every record after it.
    Returns (replay, {segment id: Segment}, checkpoint used). With readonly, a torn tail is
    reported but not truncated."""
    ck, warnings = wal.load_checkpoint(checkpoint_dirs)
    for w in warnings:
        log.warning("damaged checkpoint ignored: %s", w)
    paths = wal.list_segments(data_dirs)
    segments: dict[int, Segment] = {}

    def segment(sid: int) -> Segment:
        if sid not in segments:
            if sid not in paths:
                raise _CheckpointMismatch("the checkpoint points into segment log-%d, which is missing from %s"
                                          % (sid, ", ".join(data_dirs)))
            segments[sid] = wal.open_segment_file(paths[sid], sid)
        return segments[sid]

    for sid in paths:
        segment(sid)
    r = _Replay()
    start_seg, start_off = (min(paths) if paths else 1), wal.SEGMENT_HEADER
    bad = None
    if ck is not None:
        try:
            r.next_txn = ck.next_txn
            records: dict[tuple[int, int], wal.PutRecord] = {}
            for e in ck.entries:
                key = (int(e["seg"]), int(e["off"]))
                rec = records.get(key)
                if rec is None:
                    rec = records[key] = _record_at(segment(key[0]), key[1])
                r.add(rec, int(e["start"]), int(e["count"]))
            if ck.segment not in paths and any(sid >= ck.segment for sid in paths):
                raise _CheckpointMismatch("the checkpoint resumes in segment log-%d, which is missing from %s"
                                          % (ck.segment, ", ".join(data_dirs)))
            start_seg, start_off = ck.segment, ck.offset
        except _CheckpointMismatch as exc:
            if not repair:
                raise wal.CorruptLogError("%s; set repair = true on the channel to skip it and replay the segments without "
                                          "the checkpoint" % exc) from None
            # every segment still holds what the queue needs; only takes recorded in segments
            # already deleted are lost, so those events may be delivered again (never lost)
            log.warning("%s; repair = true: replaying every segment from log-%d instead of the checkpoint",
                        exc, start_seg)
            bad = exc.record
            r = _Replay()
            r.next_txn = ck.next_txn
    elif warnings and paths:
        log.warning("no valid checkpoint: replaying every segment from log-%d", min(paths))
    newest = max(paths) if paths else 0
    pending: dict[int, list] = {}
    for sid in [s for s in paths if s >= start_seg]:
        seg = segment(sid)
        if seg.end < wal.SEGMENT_HEADER:
            continue
        res = wal.scan_segment(seg, start_off if sid == start_seg else wal.SEGMENT_HEADER, sid == newest, repair)
        r.skipped.extend((str(seg.path), off, why) for off, why in res.skipped)
        for rec in res.records:
            r.records += 1
            r.next_txn = max(r.next_txn, rec.txn + 1)
            if rec.kind == wal.PUT:
                pending.setdefault(rec.txn, []).append(wal.PutRecord(seg, rec.off, rec.payload))
            elif rec.kind == wal.TAKE:
                pending.setdefault(rec.txn, []).append(np.frombuffer(rec.payload, dtype=wal.TAKE_RANGE))
            elif rec.kind == wal.COMMIT:
                r.transactions += 1
                for item in pending.pop(rec.txn, ()):
                    if isinstance(item, wal.PutRecord):
                        r.add(item, 0, item.n)
                    else:
                        for t in item:
                            r.remove(int(t["seg"]), int(t["off"]), int(t["start"]), int(t["count"]))
            else:
                pending.pop(rec.txn, None)
        if res.torn_at is not None:
            cut = seg.end - res.torn_at
            r.torn.append((str(seg.path), res.torn_at, cut))
            if not readonly:
                log.warning("%s: truncating a torn tail of %d bytes at byte %d (never committed)", seg.path, cut, res.torn_at)
                os.truncate(seg.path, res.torn_at)
        elif sid == newest and res.end < seg.end and not readonly:
            # the zeros preallocated past its data: no run appends to it again (each start
            # opens a new segment), and on a full disk they are the space a restart needs
            os.truncate(seg.path, res.end)
    if bad is not None and bad[:2] not in [s[:2] for s in r.skipped]:
        r.skipped.append(bad)     # at a segment's tail the scan took it for a torn tail
    return r, segments, ck


@CHANNELS.register("file", "org.apache.flume.channel.file.FileChannel")
class FileChannel(Channel):
    Config = FileChannelConfig
    durable = True

    def __init__(self, name: str, config: FileChannelConfig | None = None):
        super().__init__(name)
        self.config = config = config or FileChannelConfig()
        self.counters = Counters("CHANNEL", FILE_CHANNEL_COUNTERS, self._gauges)
        self._cond = threading.Condition(threading.Lock())
        self._append_lock = threading.Lock()
        self._queue: deque = deque()     # [PutRecord, first event, count], head first
        self._queued = 0                 # committed events waiting
        self._inflight = 0               # taken, not yet committed or rolled back
        self._reserved = 0               # room held by commits on their way into the log
        self._open_takes: dict[int, list] = {}   # id(transaction) -> its taken ranges
        self._waiting_takes = 0          # threads waiting in _take for events
        self._waiting_puts = 0           # threads waiting in _reserve for room
        self._segments: dict[int, Segment] = {}
        self._log: Log | None = None
        self._txn_ids = None
        self._interrupted = False
        self._lockfiles: list = []
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self.last_checkpoint = 0.0
        self.replay: _Replay | None = None
        self._space_until = (0.0, 0)     # (monotonic time, log LSN) up to which the last free-space check holds

    # -- lifecycle --
    def start(self) -> None:
        if self._log is None:
            self._open()
        self._interrupted = False
        self._stopping.clear()
        self._threads = [threading.Thread(target=self._every, args=(self.config.checkpointInterval / 1000.0, self._checkpoint_quietly),
                                          name="checkpoint-%s" % self.name, daemon=True)]
        self._threads.append(threading.Thread(target=self._every, args=(0.02, self._prefill_quietly),
                                              name="prefill-%s" % self.name, daemon=True))
        if self.config.policy == "interval" or not self.config.syncTakes:
            self._threads.append(threading.Thread(target=self._every, args=(self.config.sync_interval, self._sync_quietly),
                                                  name="fsync-%s" % self.name, daemon=True))
        for t in self._threads:
            t.start()
        self.counters.started()

    def stop(self) -> None:
        self.interrupt()
        self._stopping.set()
        for t in self._threads:
            t.join()
        self._threads = []
        if self._log is not None:
            try:
                if self.config.checkpointOnClose:
                    self.checkpoint()
                else:
                    self._log.sync()
            except (OSError, ChannelException) as exc:
                log.error("channel %s: final checkpoint failed: %s", self.name, exc)
            self._log = None
            self._queue.clear()
            self._queued = self._inflight = 0
            self._open_takes.clear()
            self._segments.clear()
        self._unlock()
        self.counters.stopped()

    def interrupt(self) -> None:
        with self._cond:
            self._interrupted = True
            self._cond.notify_all()

    def _every(self, seconds: float, fn) -> None:
        while not self._stopping.wait(seconds):
            fn()

    def _open(self) -> None:
        cfg = self.config
        dirs = [cfg.checkpointDir] + list(cfg.dataDirs) + ([cfg.backupCheckpointDir] if cfg.useDualCheckpoints else [])
        for d in dirs:
            try:
                os.makedirs(d, exist_ok=True)
            except OSError as exc:
                raise ChannelException("channel %s: cannot create directory %s: %s" % (self.name, d, exc.strerror)) from None
        # one channel per directory: a second channel replaying our data directories would
        # deliver our events again and delete our live segments
        locked = [("checkpointDir", cfg.checkpointDir)] + [("dataDirs", d) for d in cfg.dataDirs]
        if cfg.useDualCheckpoints:
            locked.append(("backupCheckpointDir", cfg.backupCheckpointDir))
        self._lockfiles = []
        try:
            seen = set()
            for key, d in locked:
                if os.path.realpath(d) not in seen:
                    seen.add(os.path.realpath(d))
                    self._lockfiles.append(self._lock_dir(key, d))
            self._recover()
        except BaseException:
            self._unlock()
            raise

    def _lock_dir(self, key: str, d: str):
        """flock d/in_use.lock, holding our pid; refused (naming the holder) when taken."""
        path = os.path.join(d, LOCK_NAME)
        try:
            f = open(path, "a+")
        except OSError as exc:
            raise ChannelException("channel %s: cannot open the lock file %s: %s" % (self.name, path, exc.strerror)) from None
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            f.close()
            raise ChannelException("channel %s: %s %s is in use by another file channel (pid %s, lock %s); "
                                   "every channel needs its own directories" % (self.name, key, d, holder, path)) from None
        f.seek(0)
        f.truncate()
        f.write("%d\n" % os.getpid())
        f.flush()
        return f

    def _unlock(self) -> None:
        for f in self._lockfiles:
            f.close()     # releases the flock
        self._lockfiles = []

    def _recover(self) -> None:
        cfg = self.config
        t0 = time.perf_counter()
        ck_dirs = [cfg.checkpointDir] + ([cfg.backupCheckpointDir] if cfg.useDualCheckpoints else [])
        try:
            r, segments, _ = recover(ck_dirs, cfg.dataDirs, cfg.repair, readonly=False)
        except wal.CorruptLogError as exc:
            raise ChannelException("channel %s: %s" % (self.name, exc)) from None
        self._segments = segments
        self._queue = r.queue()
        # kept for its counts only: its records would keep deleted segments mapped, and
        # their disk space taken, for the channel's life
        r.order, r.live = [], {}
        self.replay = r
        self._queued = sum(e[2] for e in self._queue)
        if r.skipped:
            self.counters.add(CorruptRecordsSkipped=len(r.skipped))
        if self._queued > cfg.capacity:
            log.warning("channel %s: %d events recovered, more than its capacity %d", self.name, self._queued, cfg.capacity)
        self._txn_ids = itertools.count(r.next_txn)
        paths = wal.list_segments(cfg.dataDirs)
        self._log = Log(self._new_segment(max(list(paths) + [0]) + 1), chunk=min(1 << 24, cfg.maxFileSize))
        log.info("channel %s: replayed %d records (%d transactions) in %.3f s: %d events waiting",
                 self.name, r.records, r.transactions, time.perf_counter() - t0, self._queued)
        try:
            self.checkpoint()
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            # the previous checkpoint and the log still describe the queue: start, so the
            # sinks can drain it and free space; the next interval checkpoints again
            log.warning("channel %s: no space for a checkpoint (%s); starting without one", self.name, exc)

    def _new_segment(self, sid: int) -> Segment:
        d = self.config.dataDirs[sid % len(self.config.dataDirs)]
        path = os.path.join(d, "log-%d" % sid)
        try:
            try:
                seg = self._create_segment(path, sid, 1 << 16)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                # a nearly full disk: start the segment with no space reserved, so that a
                # restarted channel can still record takes and its sinks can free space
                log.warning("channel %s: %s: %s; creating the segment without preallocating", self.name, path, exc.strerror)
                seg = self._create_segment(path, sid, 0)
        except OSError as exc:
            hint = "; free some space in %s" % d if exc.errno == errno.ENOSPC else ""
            raise ChannelException("channel %s: cannot create log segment %s: %s%s"
                                   % (self.name, path, exc.strerror or exc, hint)) from None
        self._segments[sid] = seg
        return seg

    def _create_segment(self, path: str, sid: int, prealloc: int) -> Segment:
        try:
            return Segment(path, sid, self.config.maxFileSize, True, min(1 << 24, self.config.maxFileSize), prealloc)
        except OSError as exc:
            if exc.errno != errno.EEXIST:     # don't leave a stub that would block the next try
                try:
                    os.unlink(path)
                except OSError:
                    pass
            raise

    # -- state --
    @property
    def size(self) -> int:
        return self._queued

    @property
    def in_flight(self) -> int:
        return self._inflight

    @property
    def transaction_capacity(self) -> int:
        return self.config.transactionCapacity

    def _gauges(self) -> dict:
        size = self._queued
        return {"ChannelSize": size, "ChannelCapacity": self.config.capacity,
                "ChannelFillPercentage": 100.0 * size / self.config.capacity,
                "Open": str(self._log is not None).lower()}

    def transaction(self) -> "FileTransaction":
        return FileTransaction(self)

    def put_each(self, batch: EventBatch, per_tx: int) -> int:
        """Channel.put_each (each slice its own transaction: put record, commit record,
        fdatasync), staging slices of the batch's offsets rather than building a batch
        per transaction."""
        if batch.headers:
            return super().put_each(batch, per_tx)
        offsets, data, done = batch.offsets, batch.data, 0
        for start in range(0, len(batch), per_tx):
            part = offsets[start:start + per_tx + 1]
            try:
                with FileTransaction(self) as tx:
                    tx._put(part, data, None)
            except ChannelException as exc:
                exc.committed = done
                raise
            done += len(part) - 1
        return done

    def drain_each(self, per_tx: int, timeout: float, max_txs: int | None = None):
        """Take transactions of up to per_tx events (up to max_txs of them), each committed
        at once, for a sink that discards what it takes (null): (events, transactions,
        transactions of per_tx events, body bytes). Each is in the log as a sink's take
        transaction is (its take record and commit record, synced as take-only commits
        are); no batch is made. The first waits up to `timeout` s for events, the others
        take only what is there."""
        if self._log is None:
            raise ChannelException("channel %s is not started" % self.name)
        cap = min(per_tx, self.config.transactionCapacity)
        key = -threading.get_ident()     # this thread's open take (transactions use id(tx) > 0)
        events = txs = full = nbytes = 0
        lsn = None
        try:
            while txs < (DRAIN_TXS if max_txs is None else min(DRAIN_TXS, max_txs)):
                got = self._take(key, cap, 0 if txs else timeout)
                if got is None:
                    break
                ranges, n = got
                try:
                    lsn = self._commit(key, [], _take_payload(ranges), 0, n)
                except BaseException as exc:
                    self._unget(key, n)
                    if isinstance(exc, OSError):
                        raise self._write_failed(exc) from None
                    raise
                for rec, s, k in ranges:
                    o = rec.offsets
                    nbytes += int(o[s + k] - o[s])
                _drop_taken_pages(ranges)
                events += n
                txs += 1
                full += n == per_tx
        finally:    # Flume counts the attempt that found fewer than per_tx too
            self.counters.add(EventTakeAttemptCount=events + txs - full if txs else 1, EventTakeSuccessCount=events)
        if lsn is not None and self.config.policy == "commit" and self.config.syncTakes:
            self._sync_commit(lsn)
        return events, txs, full, nbytes

    def _write_failed(self, exc: OSError) -> ChannelException:
        if exc.errno == errno.ENOSPC:
            return ChannelException("channel %s: the disk of %s is full; commits fail until space is freed"
                                    % (self.name, self._log.current.path))
        return ChannelException("channel %s: writing the log failed: %s" % (self.name, exc))

    def _sync_commit(self, lsn: int) -> None:
        try:
            self._log.sync(lsn)
        except OSError as exc:
            raise ChannelException("channel %s: the commit is in the log but not durable: %s; restart the channel"
                                   % (self.name, exc)) from None

    # -- checkpoints --
    def checkpoint(self) -> None:
        """Write the queue and the log position atomically; then delete dead segments."""
        if self._log is None:
            raise ChannelException("channel %s is not open" % self.name)
        with self._append_lock:
            with self._cond:
                ranges = [r for taken in self._open_takes.values() for r in taken]
                ranges.extend(self._queue)
                cur = self._log.current
                pos = (cur.id, cur.end)
                next_txn = next(self._txn_ids)
            lsn = self._log.written
        entries = np.array([(r[0].seg.id, r[0].off, r[1], r[2]) for r in ranges], dtype=wal.TAKE_RANGE)
        # everything the checkpoint points at must be durable before the checkpoint is
        self._log.sync(lsn)
        data = wal.Checkpoint(wal.now_ns(), pos[0], pos[1], next_txn, entries).encode()
        try:
            wal.write_atomically(os.path.join(self.config.checkpointDir, wal.CHECKPOINT_NAME), data)
        except OSError:
            self.counters.add(CheckpointWriteErrorCount=1)
            raise
        if self.config.useDualCheckpoints:
            try:
                wal.write_atomically(os.path.join(self.config.backupCheckpointDir, wal.CHECKPOINT_NAME), data)
            except OSError:
                self.counters.add(CheckpointBackupWriteErrorCount=1)
                raise
        self.last_checkpoint = time.time()
        live = set(int(s) for s in np.unique(entries["seg"])) if len(entries) else set()
        for sid in sorted(self._segments):
            if sid < pos[0] and sid not in live:
                seg = self._segments.pop(sid)
                try:
                    os.unlink(seg.path)
                except FileNotFoundError:
                    pass

    def _checkpoint_quietly(self) -> None:
        try:
            self.checkpoint()
        except Exception as exc:    # the next interval tries again; the log still has everything
            log.error("channel %s: checkpoint failed: %s", self.name, exc)

    def _prefill_quietly(self) -> None:
        # keep PREFILL bytes of written zeros ahead of the log's end
        lg = self._log
        if lg is None:
            return
        seg = lg.current
        ahead = min(PREFILL, self.config.maxFileSize)
        room = seg.allocated - seg.end
        if seg.writable and room < ahead // 2:
            try:
                # never into the space minimumRequiredSpace keeps free: on a small disk the
                # zeros would refuse puts (and fill it) although the log holds little
                st = os.statvfs(os.path.dirname(seg.path))
                ahead = min(ahead, room + st.f_bavail * st.f_frsize - self.config.minimumRequiredSpace)
                if ahead > room:
                    seg.prefill(ahead)
            except OSError as exc:      # a full disk: appends fall back to posix_fallocate and fail cleanly
                log.debug("channel %s: prefill: %s", self.name, exc)

    def _sync_quietly(self) -> None:
        try:
            if self._log is not None:
                self._log.sync()
        except OSError as exc:
            log.error("channel %s: %s", self.name, exc)

    # -- used by transactions --
    def _take(self, tx_key: int, want: int, timeout: float):
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._queue:
                left = deadline - time.monotonic()
                if left <= 0 or self._interrupted:
                    return None
                self._waiting_takes += 1
                try:
                    self._cond.wait(left)
                finally:
                    self._waiting_takes -= 1
            ranges, got = [], 0
            q = self._queue
            while q and got < want:
                rec, s, c = e = q[0]
                k = min(c, want - got)
                if k == c:
                    q.popleft()
                else:
                    e[1] += k
                    e[2] -= k
                ranges.append([rec, s, k])
                got += k
            self._queued -= got
            self._inflight += got
            self._open_takes.setdefault(tx_key, []).extend(ranges)
        return ranges, got

    def _unget(self, tx_key: int, n: int) -> None:
        with self._cond:
            ranges = self._open_takes.pop(tx_key, [])
            self._queue.extendleft(reversed(ranges))
            self._queued += n
            self._inflight -= n
            self._cond.notify_all()

    def _reserve(self, put_n: int, take_credit: int) -> None:
        cfg = self.config
        deadline = time.monotonic() + cfg.keepAlive
        with self._cond:
            while self._queued + self._inflight + self._reserved + put_n - take_credit > cfg.capacity:
                left = deadline - time.monotonic()
                if left <= 0 or self._interrupted:
                    raise ChannelFullException(
                        "The channel has reached it's capacity. This might be the result of a sink on the channel having "
                        "too low of batch size, a downstream system running slower than normal, or that the channel "
                        "capacity is just too low. [channel=%s, capacity=%d]" % (self.name, cfg.capacity))
                self._waiting_puts += 1
                try:
                    self._cond.wait(left)
                finally:
                    self._waiting_puts -= 1
            self._reserved += put_n

    def _check_space(self) -> None:
        """Refuse puts while a directory has less than minimumRequiredSpace free. As Flume's
        cached usable space: statvfs once a second, or sooner once the log has grown by half
        the smallest headroom seen (the log's growth stands for what it took)."""
        need = self.config.minimumRequiredSpace
        if not need:
            return
        until_t, until_lsn = self._space_until
        written = self._log.written
        now = time.monotonic()
        if now < until_t and written < until_lsn:
            return
        headroom = None
        for d in [self.config.checkpointDir] + list(self.config.dataDirs):
            st = os.statvfs(d)
            free = st.f_bavail * st.f_frsize
            if free < need:
                raise ChannelException("channel %s: only %d bytes free in %s, below minimumRequiredSpace = %d; "
                                       "puts fail until space is freed" % (self.name, free, d, need))
            headroom = free - need if headroom is None else min(headroom, free - need)
        self._space_until = (now + SPACE_RECHECK, written + headroom // 2)

    def _commit(self, tx_key: int, puts: list, take: bytes | None, put_n: int, take_n: int) -> int:
        """Append a transaction's records (puts: (offsets, data, encoded headers) per
        batch; take: the take record's payload) and apply it to the queue; returns its LSN."""
        lg = self._log
        with self._append_lock:
            txn = next(self._txn_ids)
            at = lg.append_txn(txn, puts, take)
            if at is None:
                lg.roll(self._new_segment(lg.current.id + 1))
                at = lg.append_txn(txn, puts, take)
                if at is None:
                    raise ChannelException("channel %s: one transaction needs %d bytes of log, more than maxFileSize = %d allows"
                                           % (self.name, wal.txn_bytes(puts, take), self.config.maxFileSize))
            seg = lg.current
            lsn = lg.written
            recs = [wal.PutRecord.written(seg, off, len(p[0]) - 1, len(p[2]), int(p[0][-1] - p[0][0]))
                    for off, p in zip(at, puts)]
            with self._cond:
                for rec in recs:
                    self._queue.append([rec, 0, rec.n])
                self._queued += put_n
                self._reserved -= put_n
                self._inflight -= take_n
                self._open_takes.pop(tx_key, None)
                # wake only whom this commit can help: takers of its puts, putters of the room its takes freed
                if (put_n and self._waiting_takes) or (take_n and self._waiting_puts):
                    self._cond.notify_all()
        return lsn

    def _release(self, put_n: int) -> None:
        with self._cond:
            self._reserved -= put_n
            self._cond.notify_all()


def _take_payload(taken) -> bytes:
    """A take record's payload: a wal.TAKE_RANGE entry per taken [PutRecord, first, count]."""
    return b"".join([_RANGE.pack(rec.seg.id, rec.off, s, k) for rec, s, k in taken])


def _drop_taken_pages(taken) -> None:
    """Committed takes are never read through the map again: their pages leave the
    process's memory (RSS stays what is being read, not what the log holds)."""
    for rec, s, k in taken:
        o = rec.offsets
        if s + k == rec.n:      # the record's last events: all of it, its offsets too
            start = rec.seg.address + rec.off
            rec.seg.drop_pages(start, rec.body.address + int(o[-1]) - start)
        else:
            rec.seg.drop_pages(rec.body.address + int(o[s]), int(o[s + k] - o[s]))


class FileTransaction(Transaction):
    FLUME_NAME = "FileBackedTransaction"
    __slots__ = ("ch", "puts", "put_n", "take_n", "taken", "take_tries", "sync_failed")

    def __init__(self, channel: FileChannel):
        super().__init__()
        self.ch = channel
        self.puts: list[tuple] = []     # (offsets, data, encoded headers) per batch put
        self.put_n = 0
        self.take_n = 0
        self.taken: list = []           # [PutRecord, first event, count] per range taken
        self.take_tries = 0             # EventTakeAttemptCount, counted with the outcome (one counter update)
        self.sync_failed = False

    def begin(self) -> None:
        if self.ch._log is None:
            raise ChannelException("channel %s is not started" % self.ch.name)
        super().begin()

    def put(self, batch: EventBatch) -> None:
        self._put(batch.offsets, batch.data, batch.headers)

    def _put(self, offsets, data, headers: dict | None) -> None:
        """Stage a batch given as its parts (put_each stages slices without making batches)."""
        self._check_open("put")
        n = len(offsets) - 1
        self._check_put_room(self.put_n, n, self.ch.config.transactionCapacity, self.ch.name)
        if n:
            if not offsets.flags.c_contiguous:      # the native framing reads them as one block
                offsets = np.ascontiguousarray(offsets)
            self.puts.append((offsets, data, wal.encode_headers(headers, n) if headers else b""))
            self.put_n += n

    def take(self, max_events: int | None = None, timeout: float | None = None) -> EventBatch | None:
        """Up to max_events (default: what the transaction still allows), waiting up to
        `timeout` s (default keep-alive) for the first; None when nothing came."""
        self._check_open("take")
        ch = self.ch
        room = self._take_room(self.take_n, ch.config.transactionCapacity, ch.name)
        want = room if max_events is None else min(max_events, room)
        got = ch._take(id(self), want, ch.config.keepAlive if timeout is None else timeout)
        if got is None:
            self.take_tries += 1
            return None
        ranges, n = got
        self.take_n += n
        self.take_tries += n + (n < want)
        self.taken += ranges
        parts = [EventBatch(rec.body, rec.offsets[s:s + k + 1], rec.headers_slice(s, k)) for rec, s, k in ranges]
        return parts[0] if len(parts) == 1 else EventBatch.concat(parts)

    def commit(self) -> None:
        self._check_open("commit")
        ch = self.ch
        if not self.puts and not self.take_n:
            if self.take_tries:
                ch.counters.add(EventTakeAttemptCount=self.take_tries)
            self._done()
            return
        taken = self.taken
        take = _take_payload(taken) if self.take_n else None
        if self.put_n:
            ch._check_space()
            ch._reserve(self.put_n, self.take_n)
            ch.counters.add(EventPutAttemptCount=self.put_n, EventPutSuccessCount=self.put_n)
        try:
            lsn = ch._commit(id(self), self.puts, take, self.put_n, self.take_n)
        except OSError as exc:
            if self.put_n:
                ch._release(self.put_n)
                ch.counters.add(EventPutSuccessCount=-self.put_n, EventPutErrorCount=1)
            raise ch._write_failed(exc) from None
        except BaseException:
            if self.put_n:
                ch._release(self.put_n)
                ch.counters.add(EventPutSuccessCount=-self.put_n)
            raise
        if self.take_n:
            ch.counters.add(EventTakeAttemptCount=self.take_tries, EventTakeSuccessCount=self.take_n)
            _drop_taken_pages(taken)
        had_puts = self.put_n
        self._done()    # in the log and applied: a failed sync below cannot be rolled back
        # A take-only commit need not wait (unless syncTakes): it is in the page cache, so
        # it survives a crash of the process, and losing it to a power cut before the
        # next sync can only deliver its events again, never lose one.
        if ch.config.policy == "commit" and (had_puts or ch.config.syncTakes):
            try:
                ch._sync_commit(lsn)
            except ChannelException:
                self.sync_failed = True
                raise

    def rollback(self) -> None:
        if self.sync_failed:
            return      # a commit that failed only at its fdatasync: already applied
        self._check_open("rollback")
        if self.put_n or self.take_tries:
            self.ch.counters.add(EventPutAttemptCount=self.put_n, EventTakeAttemptCount=self.take_tries)
        if self.take_n:
            self.ch._unget(id(self), self.take_n)
        self._done()

    def _done(self) -> None:
        self.puts = []
        self.taken = []
        self.put_n = self.take_n = self.take_tries = 0
        self.state = Transaction.COMPLETED


def inspect(checkpoint_dir: str, data_dirs: list[str], backup_checkpoint_dir: str | None = None) -> dict:
    """What `fastsync channel inspect` prints: the committed events waiting, the segments,
    the checkpoint, and the check of every record's CRC. Reads only; safe on a live channel."""
    for d in [checkpoint_dir] + list(data_dirs):
        if not os.path.isdir(d):
            raise FileNotFoundError(errno.ENOENT, "no such directory", d)
    ck_dirs = [checkpoint_dir] + ([backup_checkpoint_dir] if backup_checkpoint_dir else [])
    r, segments, ck = recover(ck_dirs, data_dirs, repair=True, readonly=True)
    newest = max(segments) if segments else 0
    segs, corrupt, torn, records = [], [], [], 0
    for sid, seg in sorted(segments.items()):
        segs.append({"id": sid, "path": str(seg.path), "bytes": seg.end})
        if seg.end < wal.SEGMENT_HEADER:
            continue
        res = wal.scan_segment(seg, wal.SEGMENT_HEADER, sid == newest, repair=True)
        records += len(res.records)
        corrupt += [{"file": str(seg.path), "offset": off, "reason": why} for off, why in res.skipped]
        if res.torn_at is not None:
            torn.append({"file": str(seg.path), "offset": res.torn_at, "bytes": seg.end - res.torn_at})
    queue = r.queue()
    return {
        "events": sum(e[2] for e in queue),
        "segments": len(segs),
        "bytes": sum(s["bytes"] for s in segs),
        "segment_files": segs,
        "checkpoint": ck.path if ck else None,
        "last_checkpoint": ck.created_ns / 1e9 if ck else None,
        "records_checked": records,
        "corrupt_records": corrupt,
        "torn_tail": torn,
        "ok": not corrupt,
    }
