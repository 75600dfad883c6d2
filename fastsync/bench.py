"""`fastsync bench channel`: producer and consumer threads moving events through a
channel in transactions, against a same-run baseline for the same bytes: for the memory
channel (which keeps the producers' buffers by reference, copying nothing) making the
batches and reading their bodies in one thread with no channel; for the file channel
appending them to a file with an fdatasync per batch."""
from __future__ import annotations

import gc
import os
import platform
import shutil
import tempfile
import threading
import time

import numpy as np
import pyarrow as pa

import fastsync
from fastsync._native import fdatasync_baseline
from fastsync.agent.channels.file import FileChannel, FileChannelConfig
from fastsync.agent.channels.memory import MemoryChannel, MemoryChannelConfig
from fastsync.event import EventBatch


def make_batch(batch: int, size: int, seed: int = 0) -> EventBatch:
    rng = np.random.default_rng(seed)
    body = rng.integers(0, 256, batch * size, dtype=np.uint8)
    return EventBatch(pa.py_buffer(body), np.arange(0, batch * size + 1, size, dtype=np.int64))


def make_channel(kind: str, batch: int, size: int, capacity: int, directory: str | None = None,
                 fsync_policy: str = "commit"):
    if kind == "memory":
        return MemoryChannel("bench", MemoryChannelConfig(
            capacity=capacity, transactionCapacity=batch, keepAlive=10.0,
            byteCapacity=capacity * size * 2, byteCapacityBufferPercentage=0))
    if kind == "file":
        return FileChannel("bench", FileChannelConfig(
            checkpointDir=os.path.join(directory, "checkpoint"), dataDirs=[os.path.join(directory, "data")],
            capacity=capacity, transactionCapacity=batch, keepAlive=10.0, minimumRequiredSpace=0,
            fsyncPolicy=fsync_policy, fsyncIntervalMs=100))
    raise ValueError("unknown channel kind %r (supported: memory, file)" % kind)


def bench_channel(kind: str = "memory", events: int = 10_000_000, batch: int = 1000, size: int = 100,
                  producers: int = 1, consumers: int = 1, capacity: int | None = None,
                  directory: str | None = None, fsync_policy: str = "commit") -> dict:
    """Throughput of a channel; a file channel works in a fresh directory under `directory`
    (default: the system's temp dir), removed afterwards."""
    if events < 1 or batch < 1 or size < 1 or producers < 1 or consumers < 1:
        raise ValueError("events, batch, size, producers and consumers must be at least 1")
    capacity = capacity or max(100 * batch, 10 * batch * producers)
    workdir = tempfile.mkdtemp(prefix="fastsync-bench-", dir=directory) if kind == "file" else None
    try:
        return _bench_channel(kind, events, batch, size, producers, consumers, capacity, workdir, fsync_policy)
    finally:
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)


def _bench_channel(kind, events, batch, size, producers, consumers, capacity, workdir, fsync_policy) -> dict:
    ch = make_channel(kind, batch, size, capacity, workdir, fsync_policy)
    ch.start()
    template = make_batch(batch, size)
    raw = memoryview(template.data)
    offsets = template.offsets

    def generate(k: int) -> EventBatch:
        # a fresh immutable buffer per batch, as a source reading or making its events
        return EventBatch(pa.py_buffer(bytes(raw[:k * size])), offsets[:k + 1])

    sinks = [bytearray(batch * size) for _ in range(consumers)]
    share = [events // producers + (1 if i < events % producers else 0) for i in range(producers)]
    received = [0] * consumers
    received_bytes = [0] * consumers
    errors: list[BaseException] = []
    lock = threading.Lock()
    left = [events]

    def produce(n: int) -> None:
        try:
            while n:
                b = generate(min(n, batch))
                with ch.transaction() as tx:
                    tx.put(b)
                n -= len(b)
        except BaseException as exc:  # reported below
            errors.append(exc)

    def consume(i: int) -> None:
        try:
            while True:
                with lock:
                    if left[0] <= 0:
                        return
                with ch.transaction() as tx:
                    got = tx.take(batch, 1.0)
                if got is not None:
                    consume_bytes(got, sinks[i])
                    received[i] += len(got)
                    received_bytes[i] += got.nbytes
                    with lock:
                        left[0] -= len(got)
                elif errors:
                    return
        except BaseException as exc:
            errors.append(exc)

    batches = -(-events // batch)
    base_before = 0.0
    if kind == "file":
        # the disk's speed drifts: half the baseline runs just before the channel, half after
        base_before = fdatasync_baseline(os.path.join(workdir, "baseline-1"), template.data, batches // 2)
    threads = [threading.Thread(target=produce, args=(n,)) for n in share]
    threads += [threading.Thread(target=consume, args=(i,)) for i in range(consumers)]
    gc.collect()
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    ch_syncs = ch._log.syncs if kind == "file" else 0
    ch.stop()
    if errors:
        raise errors[0]
    if sum(received) != events or sum(received_bytes) != events * size:
        raise RuntimeError("bench: %d events / %d bytes arrived, %d / %d expected"
                           % (sum(received), sum(received_bytes), events, events * size))
    gc.collect()
    extra = {}
    if kind == "file":
        syncs = ch_syncs
        base_seconds = base_before + fdatasync_baseline(os.path.join(workdir, "baseline-2"), template.data, batches - batches // 2)
        baseline = ("append the same bytes to a file, fdatasync once per batch (%d batches, half before the channel, half after)"
                    % batches)
        extra = {"fsync_policy": fsync_policy, "fdatasyncs": syncs, "directory": workdir}
    else:
        base_seconds = produce_consume_baseline(generate, sinks[0], events, batch)
        baseline = ("one thread making each batch's buffer and copying its bodies out, as the producers and "
                    "consumers do, without a channel between them")
    mb = events * size / 1e6
    return {
        "channel": kind, "events": events, "batch": batch, "size": size,
        "producers": producers, "consumers": consumers, "capacity": capacity,
        "seconds": seconds,
        "events_per_s": events / seconds,
        "mb_per_s": mb / seconds,
        **extra,
        "baseline": baseline,
        "baseline_mb_per_s": mb / base_seconds,
        "ratio": base_seconds / seconds,
        "versions": versions(),
    }


def consume_bytes(got: EventBatch, out: bytearray) -> None:
    """What a sink does at least: read every body once (copied into `out`)."""
    start, n = int(got.offsets[0]), got.nbytes
    memoryview(out)[:n] = memoryview(got.data).cast("B")[start:start + n]


def produce_consume_baseline(generate, out: bytearray, events: int, batch: int) -> float:
    """Seconds to make and consume `events` in batches in one thread, with no channel."""
    gc.collect()
    t0 = time.perf_counter()
    left = events
    while left:
        b = generate(min(left, batch))
        consume_bytes(b, out)
        left -= len(b)
    return time.perf_counter() - t0


def versions() -> dict:
    return {"fastsync": fastsync.__version__, "python": platform.python_version(),
            "pyarrow": pa.__version__, "numpy": np.__version__, "machine": platform.machine()}


def format_channel_result(r: dict) -> str:
    return ("%s channel: %d events of %d bytes, batches of %d, %d producer(s), %d consumer(s)\n"
            "  %.2f s  %.2f M events/s  %.0f MB/s\n"
            "  baseline (%s): %.0f MB/s\n"
            "  ratio ours/baseline: %.3f" % (
                r["channel"], r["events"], r["size"], r["batch"], r["producers"], r["consumers"],
                r["seconds"], r["events_per_s"] / 1e6, r["mb_per_s"], r["baseline"], r["baseline_mb_per_s"], r["ratio"]))
