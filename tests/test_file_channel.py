"""The file channel's recovery rules, checkpoints, segments, space limits and errors.

Expected results are computed independently of fastsync/agent/channels/wal.py: record
boundaries are parsed here with struct from the bytes on disk, per the layout comment at
the top of ext/fastsync/_wal.pyx."""
import gc
import json
import os
import random
import shutil
import struct
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from e2e_support import count_lines, LineClient, free_port, poll, read_dir_lines, wait_for_json, wait_for_port, write_config
from fastsync.agent.channels.file import FileChannel, FileChannelConfig
from fastsync.agent.errors import ChannelException
from fastsync.event import Event, EventBatch

COMMIT = 3


def cfg(root, **kw):
    base = dict(checkpointDir=str(root / "ck"), dataDirs=[str(root / "d1"), str(root / "d2")], capacity=100000,
                transactionCapacity=5000, keepAlive=0.05, minimumRequiredSpace=0, checkpointInterval=10 ** 7)
    base.update(kw)
    return FileChannelConfig(**base)


def open_channel(root, **kw):
    ch = FileChannel("c1", cfg(root, **kw))
    ch.start()
    return ch


def put(ch, batch):
    with ch.transaction() as tx:
        tx.put(batch)


def take_all(ch):
    out = []
    while True:
        with ch.transaction() as tx:
            b = tx.take(1000, 0.0)
        if b is None:
            return out
        out.extend(b.events())


def bodies(events):
    return [e.body for e in events]


def batch_of(tag, n, headers=None):
    return EventBatch.from_bodies([b"%s-%d" % (tag, i) for i in range(n)], headers=headers)


def segments(root):
    out = []
    for d in ("d1", "d2"):
        for p in (root / d).glob("log-*"):
            out.append((int(p.name[4:]), p))
    return [p for _, p in sorted(out)]


def parse_records(data):
    """[(offset, end, kind, txn)] of the records in a segment's bytes, by the documented layout."""
    recs, pos = [], 64
    while pos + 24 <= len(data):
        magic, crc, length, kind, txn = struct.unpack_from("<IIIB3xQ", data, pos)
        if magic == 0:
            break
        end = pos + 24 + length
        recs.append((pos, end, kind, txn))
        pos = (end + 7) & ~7
    return recs


def test_round_trip_across_restarts_with_headers_partial_takes_and_rollbacks(tmp_path):
    ch = open_channel(tmp_path)
    put(ch, batch_of(b"a", 10, {"host": "h1"}))
    put(ch, EventBatch.from_bodies([b"x", b"y", b"z"], headers={"k": pa.array(["1", None, "3"]), "s": "shared"}))
    with ch.transaction() as tx:
        assert bodies(tx.take(3).events()) == [b"a-0", b"a-1", b"a-2"]
    tx = ch.transaction()
    tx.begin()
    tx.take(2)
    tx.rollback()
    tx.close()
    tx = ch.transaction()
    tx.begin()
    tx.put(batch_of(b"never", 5))
    tx.rollback()
    tx.close()
    ch.stop()
    for checkpoint in (True, False):
        if not checkpoint:
            os.unlink(tmp_path / "ck" / "checkpoint")
        ch = open_channel(tmp_path)
        assert ch.size == 10
        events = ch.transaction()
        events.begin()
        got = events.take(100).events()
        events.rollback()
        events.close()
        assert got == [Event(b"a-%d" % i, {"host": "h1"}) for i in range(3, 10)] + [
            Event(b"x", {"k": "1", "s": "shared"}), Event(b"y", {"s": "shared"}), Event(b"z", {"k": "3", "s": "shared"})]
        ch.stop()


def test_segments_roll_across_data_dirs_and_dead_ones_are_deleted(tmp_path):
    ch = open_channel(tmp_path, maxFileSize=65536)
    for i in range(200):
        put(ch, batch_of(b"b%d" % i, 50))           # ~0.8 KB of bodies + offsets per batch
    segs = segments(tmp_path)
    assert len(segs) >= 3
    assert {p.parent.name for p in segs} == {"d1", "d2"}
    ch.stop()
    ch = open_channel(tmp_path, maxFileSize=65536)
    assert ch.size == 10000
    got = take_all(ch)
    assert bodies(got) == [b"b%d-%d" % (i, k) for i in range(200) for k in range(50)]
    ch.checkpoint()
    assert len(segments(tmp_path)) == 1             # only the current one is left
    ch.stop()
    ch = open_channel(tmp_path, maxFileSize=65536)
    assert ch.size == 0
    ch.stop()


def test_damaged_checkpoint_uses_the_backup_or_replays_everything(tmp_path):
    dual = dict(useDualCheckpoints=True, backupCheckpointDir=str(tmp_path / "backup"))
    ch = open_channel(tmp_path, **dual)
    for i in range(5):
        put(ch, batch_of(b"c%d" % i, 20))
    with ch.transaction() as tx:
        tx.take(30)
    ch.stop()
    want = [b"c%d-%d" % (i, k) for i in range(5) for k in range(20)][30:]
    main = tmp_path / "ck" / "checkpoint"
    raw = bytearray(main.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    main.write_bytes(bytes(raw))
    ch = open_channel(tmp_path, **dual)
    assert bodies(take_all(ch)) == want
    ch.stop()
    # both damaged: replay every segment
    ch = open_channel(tmp_path, **dual)
    put(ch, batch_of(b"d", 7))
    ch.stop()
    for p in (main, tmp_path / "backup" / "checkpoint"):
        p.write_bytes(b"garbage")
    ch = open_channel(tmp_path, **dual)
    assert bodies(take_all(ch)) == [b"d-%d" % i for i in range(7)]
    ch.stop()


def test_torn_tail_is_cut_at_random_offsets_and_only_whole_commits_survive(tmp_path):
    rng = random.Random(3)
    src = tmp_path / "src"
    ch = open_channel(src, checkpointOnClose=False)
    txns = []
    for i in range(25):
        b = batch_of(b"t%d" % i, rng.randint(1, 40))
        put(ch, b)
        txns.append(bodies(b.events()))
    ch.stop()
    seg = segments(src)[-1]
    data = seg.read_bytes()
    commits = [end for _, end, kind, _ in parse_records(data) if kind == COMMIT]
    assert len(commits) == 25
    last = max(commits)
    for trial in range(30):
        cut = rng.randint(64, last + 8)
        work = tmp_path / ("w%d" % trial)
        shutil.copytree(src, work)
        path = segments(work)[-1]
        os.truncate(path, cut)
        whole = sum(1 for end in commits if end <= cut)
        want = [b for t in txns[:whole] for b in t]
        ch = open_channel(work)
        assert ch.size == len(want), (cut, whole)
        torn = ch.replay.torn
        if torn:
            assert torn[0][0] == str(path)
            assert os.path.getsize(path) == torn[0][1] <= cut
        got = bodies(take_all(ch))
        ch.stop()
        assert got == want, "cut at %d: want the first %d transactions" % (cut, whole)
        shutil.rmtree(work)


def build_three_segments(root):
    ch = open_channel(root, checkpointOnClose=False)
    for i in range(6):
        put(ch, batch_of(b"f%d" % i, 10))
    ch.stop()
    return segments(root)[-1]


def test_bit_flip_in_committed_data_stops_start_up_unless_repair(tmp_path):
    src = tmp_path / "src"
    seg = build_three_segments(src)
    recs = parse_records(seg.read_bytes())
    victim = recs[4]             # the third transaction's put: committed, with records after it
    assert victim[2] == 1
    for name, offset in (("payload", victim[0] + 40), ("header", victim[0] + 9)):
        work = tmp_path / name
        shutil.copytree(src, work)
        path = segments(work)[-1]
        raw = bytearray(path.read_bytes())
        raw[offset] ^= 0x5A
        path.write_bytes(bytes(raw))
        with pytest.raises(ChannelException) as err:
            open_channel(work)
        msg = str(err.value)
        assert str(path) in msg and "at byte %d" % victim[0] in msg and "repair" in msg, msg
        # inspect reports the same place and exits 1
        out = subprocess.run([sys.executable, "-m", "fastsync", "channel", "inspect", "--checkpoint-dir", str(work / "ck"),
                              "--data-dirs", "%s,%s" % (work / "d1", work / "d2"), "--json"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 1, out.stderr
        report = json.loads(out.stdout)
        assert [(c["file"], c["offset"]) for c in report["corrupt_records"]] == [(str(path), victim[0])]
        text = subprocess.run([sys.executable, "-m", "fastsync", "channel", "inspect", "--checkpoint-dir", str(work / "ck"),
                               "--data-dirs", "%s,%s" % (work / "d1", work / "d2")], capture_output=True, text=True, timeout=60)
        assert text.returncode == 1 and "%s at byte %d" % (path, victim[0]) in text.stdout, text.stdout
        ch = open_channel(work, repair=True)
        assert [s[1] for s in ch.replay.skipped] == [victim[0]]
        assert ch.counters.snapshot()["CorruptRecordsSkipped"] == "1"
        got = bodies(take_all(ch))
        ch.stop()
        assert got == [b"f%d-%d" % (i, k) for i in (0, 1, 3, 4, 5) for k in range(10)]
    healthy = subprocess.run([sys.executable, "-m", "fastsync", "channel", "inspect", "--checkpoint-dir", str(src / "ck"),
                              "--data-dirs", "%s,%s" % (src / "d1", src / "d2"), "--json"],
                             capture_output=True, text=True, timeout=60)
    assert healthy.returncode == 0, healthy.stderr
    report = json.loads(healthy.stdout)
    assert report["events"] == 60 and report["ok"] and report["records_checked"] == 12


def test_minimum_required_space_fails_puts_cleanly(tmp_path):
    st = os.statvfs(tmp_path)
    free = st.f_bavail * st.f_frsize
    ch = open_channel(tmp_path)
    put(ch, batch_of(b"ok", 5))
    ch.stop()
    ch = open_channel(tmp_path, minimumRequiredSpace=free * 2)
    with pytest.raises(ChannelException, match="minimumRequiredSpace"):
        put(ch, batch_of(b"no", 5))
    assert ch.size == 5
    assert bodies(take_all(ch)) == [b"ok-%d" % i for i in range(5)]     # takes still work
    ch.stop()
    ch = open_channel(tmp_path, minimumRequiredSpace=1 << 20)
    put(ch, batch_of(b"again", 3))
    assert ch.size == 3
    ch.stop()


def test_real_disk_full_fails_puts_and_recovers_when_space_returns(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    assert os.geteuid() == 0, "this test mounts a tmpfs and needs root (CI runs as root)"
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], check=True)
    try:
        filler = mnt / "filler"
        filler.write_bytes(b"\0" * (1 << 20))
        root = mnt
        conf = dict(checkpointDir=str(tmp_path / "ck"), dataDirs=[str(mnt / "data")], maxFileSize=64 << 20)
        ch = FileChannel("c1", cfg(root, **conf))
        ch.start()
        committed, error = [], None
        for i in range(1000):
            b = EventBatch.from_bodies([b"full%d-%d-" % (i, k) + b"x" * 200 for k in range(100)], headers={"pad": "x" * 10})
            try:
                put(ch, b)
            except ChannelException as exc:
                error = str(exc)
                break
            committed.extend(bodies(b.events()))
        assert error and ("full" in error or "No space" in error), error
        assert ch.size == len(committed) > 0
        with pytest.raises(ChannelException):
            put(ch, EventBatch.from_bodies([b"y" * 300] * 100))
        assert ch.size == len(committed)
        os.unlink(filler)                     # space returns
        put(ch, batch_of(b"after", 10))
        assert ch.size == len(committed) + 10
        ch.stop()
        ch = FileChannel("c1", cfg(root, **conf))
        ch.start()
        assert bodies(take_all(ch)) == committed + [b"after-%d" % i for i in range(10)]
        ch.stop()
    finally:
        ch = None
        gc.collect()                           # drop the segments' maps so the mount is not busy
        if subprocess.run(["umount", str(mnt)]).returncode:
            subprocess.run(["umount", "-l", str(mnt)], check=True)


def test_a_checkpoint_dir_is_used_by_one_channel_at_a_time(tmp_path):
    first = open_channel(tmp_path)
    second = FileChannel("c2", cfg(tmp_path))
    with pytest.raises(ChannelException, match="in use"):
        second.start()
    first.stop()
    second.start()
    second.stop()


BASE = """a1.sources = r1
a1.channels = c1
a1.sinks = k1
a1.sources.r1.type = seq
a1.sources.r1.totalEvents = 10
a1.sources.r1.channels = c1
a1.sinks.k1.type = null
a1.sinks.k1.channel = c1
a1.channels.c1.type = file
a1.channels.c1.checkpointDir = {root}/ck
a1.channels.c1.dataDirs = {root}/d1
a1.channels.c1.minimumRequiredSpace = 0
"""


@pytest.mark.parametrize("extra,key,words", [
    ("a1.channels.c1.capacity = 10\na1.channels.c1.transactionCapacity = 20", "transactionCapacity", "cannot be higher"),
    ("a1.channels.c1.useDualCheckpoints = true", "useDualCheckpoints", "backupCheckpointDir"),
    ("a1.channels.c1.encryption.activeKey = key-0", "encryption.activeKey", "not supported"),
    ("a1.channels.c1.fsyncPolicy = sometimes", "fsyncPolicy", "must be one of"),
])
def test_config_errors_name_file_line_and_key(tmp_path, extra, key, words):
    conf = write_config(tmp_path, BASE.format(root=tmp_path) + extra + "\n")
    out = subprocess.run([sys.executable, "-m", "fastsync", "agent", "-n", "a1", "-f", str(conf)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    err = out.stderr.strip().splitlines()[-1]
    assert err.startswith("fastsync: error: %s:" % conf) and "a1.channels.c1.%s" % key in err and words in err, err


def test_agent_refuses_to_start_on_a_corrupt_log(tmp_path):
    seg = build_three_segments(tmp_path)
    recs = parse_records(seg.read_bytes())
    raw = bytearray(seg.read_bytes())
    raw[recs[2][0] + 30] ^= 1
    seg.write_bytes(bytes(raw))
    conf = write_config(tmp_path, BASE.format(root=tmp_path).replace("{root}/d1".format(root=tmp_path),
                                                                      "%s/d1,%s/d2" % (tmp_path, tmp_path)))
    out = subprocess.run([sys.executable, "-m", "fastsync", "agent", "-n", "a1", "-f", str(conf), "--exit-when-done"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    err = out.stderr.strip().splitlines()[-1]
    assert err.startswith("fastsync: error: channel c1: %s: corrupt WAL record at byte %d" % (seg, recs[2][0])), err


# -- end to end: real agents ---------------------------------------------------------------

def channel_props(ck, data_dirs, **extra):
    props = {"a1.channels": "c1", "a1.channels.c1.type": "file", "a1.channels.c1.checkpointDir": ck,
             "a1.channels.c1.dataDirs": ",".join(str(d) for d in data_dirs), "a1.channels.c1.minimumRequiredSpace": 0,
             "a1.channels.c1.keep-alive": 0.2}
    props.update({"a1.channels.c1." + k: v for k, v in extra.items()})
    return props


def netcat_props(port):
    """netcat that answers OK to a line only once the channel committed it."""
    return {"a1.sources": "r1", "a1.sources.r1.type": "netcat", "a1.sources.r1.bind": "127.0.0.1",
            "a1.sources.r1.port": port, "a1.sources.r1.ack-every-event": "true", "a1.sources.r1.channels": "c1"}


def file_roll_props(out):
    out.mkdir(exist_ok=True)
    return {"a1.sinks": "k1", "a1.sinks.k1.type": "file_roll", "a1.sinks.k1.channel": "c1",
            "a1.sinks.k1.sink.directory": out, "a1.sinks.k1.sink.rollInterval": 0}


def send_acked(port, lines):
    """Send lines to a netcat source; returns once every one was answered OK."""
    with LineClient(port) as c:
        c.send(b"".join(line + b"\n" for line in lines))
        answers = c.read_lines(len(lines), timeout=30)
    assert answers == [b"OK"] * len(lines), answers[:5]


def drain(run_agent, tmp_path, name, props, out):
    """An agent with only a file_roll sink on the channel, run until the channel is empty:
    the lines it delivered."""
    conf = write_config(tmp_path, {**props, **file_roll_props(out)}, name + ".properties")
    p = run_agent("a1", conf, "--exit-when-done", timeout=60)
    assert p.returncode == 0, p.stderr[-3000:]
    return read_dir_lines(out)


def test_two_agents_on_the_same_data_dirs_the_second_is_refused_and_nothing_is_lost(tmp_path, agent, run_agent):
    data = tmp_path / "data"
    port = free_port()
    first = agent("a1", write_config(tmp_path, {**netcat_props(port), **channel_props(tmp_path / "ck1", [data])}, "first.properties"))
    wait_for_port(port, alive=first.alive)
    sent = [b"ev-%d" % i for i in range(50)]
    send_acked(port, sent)
    # the second agent: its own checkpointDir, the same dataDirs, a sink that would deliver
    # (and then delete) what it replayed
    second = run_agent("a1", write_config(tmp_path, {**channel_props(tmp_path / "ck2", [data]), **file_roll_props(tmp_path / "out2")},
                                          "second.properties"), "--exit-when-done")
    assert second.returncode == 1, second.stderr[-3000:]
    err = second.stderr.strip().splitlines()[-1]
    assert err == ("fastsync: error: channel c1: dataDirs %s is in use by another file channel (pid %d, lock %s/in_use.lock); "
                   "every channel needs its own directories" % (data, first.pid, data)), err
    assert read_dir_lines(tmp_path / "out2") == []
    assert first.alive()
    send_acked(port, [b"late-%d" % i for i in range(5)])      # the first goes on undisturbed
    assert first.stop() == 0, first.stderr[-3000:]
    got = drain(run_agent, tmp_path, "drain", channel_props(tmp_path / "ck1", [data]), tmp_path / "out1")
    assert got == sent + [b"late-%d" % i for i in range(5)]


def put_bodies(data, off):
    """The event bodies of the put record at off, by the documented payload layout."""
    (length,) = struct.unpack_from("<I", data, off + 8)
    n, hlen = struct.unpack_from("<QQ", data, off + 24)
    offs = struct.unpack_from("<%dq" % (n + 1), data, off + 40)
    body = off + 40 + 8 * (n + 1) + ((hlen + 7) & ~7)
    return [bytes(data[body + offs[i]:body + offs[i + 1]]) for i in range(n)]


def test_repair_replays_the_segments_when_the_checkpoint_points_at_a_corrupt_record(tmp_path, agent, run_agent):
    ck, data = tmp_path / "ck", tmp_path / "data"
    port = free_port()
    first = agent("a1", write_config(tmp_path, {**netcat_props(port), **channel_props(ck, [data])}, "fill.properties"))
    wait_for_port(port, alive=first.alive)
    sent = []
    for g in range(6):                     # six acknowledged groups: several put records
        lines = [b"g%d-%d" % (g, i) for i in range(10)]
        send_acked(port, lines)
        sent += lines
    assert first.stop() == 0, first.stderr[-3000:]     # its checkpoint points at every put record
    seg = max(data.glob("log-*"), key=lambda p: int(p.name[4:]))
    raw = bytearray(seg.read_bytes())
    puts = [r for r in parse_records(raw) if r[2] == 1]
    assert len(puts) >= 3
    victim = puts[1][0]
    lost = put_bodies(raw, victim)
    raw[victim + 60] ^= 0x5A                # a flipped bit in its payload: CRC mismatch
    seg.write_bytes(bytes(raw))

    refused = run_agent("a1", write_config(tmp_path, {**channel_props(ck, [data]), **file_roll_props(tmp_path / "out0")},
                                           "norepair.properties"), "--exit-when-done")
    assert refused.returncode == 1, refused.stderr[-3000:]
    err = refused.stderr.strip().splitlines()[-1]
    assert err == ("fastsync: error: channel c1: %s: the checkpoint points at byte %d, which is not a valid put record "
                   "(CRC mismatch); set repair = true on the channel to skip it and replay the segments without the "
                   "checkpoint" % (seg, victim)), err

    mport = free_port()
    out = tmp_path / "out"
    repaired = agent("a1", write_config(tmp_path, {**channel_props(ck, [data], repair="true"), **file_roll_props(out)},
                                        "repair.properties"), "--metrics-port", mport)
    url = "http://127.0.0.1:%d/metrics" % mport
    expected = [b for b in sent if b not in lost]
    metrics = poll(lambda: (m := wait_for_json(url, alive=repaired.alive))["SINK.k1"]["EventDrainSuccessCount"] == str(len(expected)) and m,
                   timeout=30, message="the repaired channel drained")
    assert metrics["CHANNEL.c1"]["CorruptRecordsSkipped"] == "1", metrics
    assert repaired.stop() == 0, repaired.stderr[-3000:]
    assert read_dir_lines(out) == expected
    assert "skipping corrupt WAL record at byte %d" % victim in repaired.stderr


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def answer(port, line):
    with LineClient(port) as c:
        c.send(line + b"\n")
        return c.read_lines(1, timeout=30)[0]


def test_restart_on_a_full_disk_drains_and_refuses_puts_until_space_returns(tmp_path, agent):
    """A real 8 MB tmpfs holds the channel. It fills until puts are refused, something else
    fills the rest; the restarted agent starts anyway, its sink drains, and puts work again
    once minimumRequiredSpace is free."""
    assert os.geteuid() == 0, "this test mounts a tmpfs and needs root (CI runs as root)"
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(small)], check=True)
    procs = []
    try:
        # segments of 1 MB, so a restart's cut of the newest one's unused tail frees < 1 MB,
        # below minimumRequiredSpace = 2 MB
        chan = channel_props(small / "ck", [small / "data"], minimumRequiredSpace=2 << 20, maxFileSize=1 << 20,
                             checkpointInterval=200)
        port = free_port()
        procs.append(agent("a1", write_config(tmp_path, {**netcat_props(port), **chan}, "fill.properties")))
        wait_for_port(port, alive=procs[-1].alive)
        acked, refusal = [], None
        with LineClient(port) as c:
            for g in range(400):
                lines = [b"ev-%d-%d-" % (g, i) + b"x" * 400 for i in range(250)]
                c.send(b"".join(line + b"\n" for line in lines))
                answers = c.read_lines(len(lines), timeout=30)
                acked += [line for line, a in zip(lines, answers) if a == b"OK"]
                if any(a != b"OK" for a in answers):
                    refusal = next(a for a in answers if a != b"OK")
                    break
        assert refusal is not None and b"minimumRequiredSpace = 2097152" in refusal, refusal
        assert len(acked) > 3000
        assert procs[-1].stop() == 0, procs[-1].stderr[-3000:]

        # something else takes the rest of the disk: too little left to preallocate a segment
        with open(small / "filler", "wb") as f:
            f.write(b"\1" * (free_bytes(small) - (16 << 10)))
        assert free_bytes(small) == 16 << 10

        # the agent starts anyway; with no sink nothing frees space, so puts are refused
        port = free_port()
        procs.append(agent("a1", write_config(tmp_path, {**netcat_props(port), **chan}, "nosink.properties")))
        wait_for_port(port, alive=procs[-1].alive)
        got = answer(port, b"refused-0")
        assert got.startswith(b"FAILED: ") and b"below minimumRequiredSpace = 2097152" in got, got
        assert procs[-1].stop() == 0, procs[-1].stderr[-3000:]

        # with its sink: the backlog drains, drained segments are deleted, puts work again
        out = tmp_path / "out"
        port = free_port()
        procs.append(agent("a1", write_config(tmp_path, {**netcat_props(port), **chan, **file_roll_props(out)},
                                              "drain.properties")))
        wait_for_port(port, alive=procs[-1].alive)
        poll(lambda: count_lines(out) >= len(acked), timeout=30, message="the backlog drained")
        late = []

        def accepted():
            line = b"late-%d" % len(late)
            late.append((line, answer(port, line)))
            return late[-1][1] == b"OK"
        poll(accepted, timeout=30, interval=0.1, message="puts accepted again")
        assert free_bytes(small) >= 2 << 20
        assert procs[-1].stop() == 0, procs[-1].stderr[-3000:]
        assert read_dir_lines(out) == acked + [line for line, a in late if a == b"OK"]
        assert all(a == b"OK" or b"minimumRequiredSpace" in a for _, a in late), late
    finally:
        for p in procs:
            p.kill()
        gc.collect()
        if subprocess.run(["umount", str(small)]).returncode:
            subprocess.run(["umount", "-l", str(small)], check=True)


def test_committed_takes_leave_the_processs_memory(tmp_path):
    """The log is read through a map: what committed takes read must not stay resident
    (peak RSS would grow with the log). 24 MB put and taken; the map keeps under 2 MB."""
    from test_wal import _rss_of_mapping
    ch = open_channel(tmp_path)
    batch = EventBatch.from_bodies([b"%099d" % i for i in range(1000)])
    segs = set()
    for _ in range(240):
        put(ch, batch)
        with ch.transaction() as tx:
            got = tx.take(1000, 0)
            assert got.bodies().to_pylist()[1] == b"%099d" % 1     # read through the map
            segs.add(ch._log.current)
    resident = sum(_rss_of_mapping(seg.address) for seg in segs)
    ch.stop()
    assert resident < 2 << 20, resident


TAKE = 2


def take_records(root):
    return take_records_in(root / "d1", root / "d2")


def take_records_in(*dirs):
    """[(txn, taken events)] of the take records in the segments of dirs, and the txn ids
    of the commit records, by the documented layout (a take payload: seg u64, off u64,
    start u32, count u32 per range)."""
    takes, commits = [], set()
    paths = sorted((int(p.name[4:]), p) for d in dirs for p in d.glob("log-*"))
    for _, path in paths:
        data = path.read_bytes()
        for pos, end, kind, txn in parse_records(data):
            if kind == TAKE:
                counts = [c for _, _, _, c in struct.iter_unpack("<QQII", data[pos + 24:end])]
                takes.append((txn, sum(counts)))
            elif kind == COMMIT:
                commits.add(txn)
    return takes, commits


def test_drain_each_commits_one_take_transaction_per_batch_in_the_log(tmp_path):
    """FileChannel.drain_each (the null sink's loop, no batch made): transactions of up to
    per_tx events, each with its take record and commit record, counted as a sink's takes;
    a replay of the log alone (no checkpoint) gives back only what it did not drain."""
    ch = open_channel(tmp_path)
    put(ch, batch_of(b"a", 700))
    put(ch, batch_of(b"b", 700, headers={"h": "v", "i": [str(i) for i in range(700)]}))
    put(ch, batch_of(b"c", 700))
    assert ch.drain_each(1000, 0) == (2100, 3, 2, sum(len(b"%s-%d" % (t, i)) for t in (b"a", b"b", b"c") for i in range(700)))
    snap = ch.counters.snapshot()
    # Flume counts the attempt that found fewer than the batch too
    assert (snap["EventTakeSuccessCount"], snap["EventTakeAttemptCount"]) == ("2100", "2101")
    assert ch.size == 0 and ch.in_flight == 0
    assert ch.drain_each(1000, 0) == (0, 0, 0, 0)
    put(ch, batch_of(b"d", 5))
    ch.stop()
    takes, commits = take_records(tmp_path)
    assert [n for _, n in takes] == [1000, 1000, 100]
    assert all(txn in commits for txn, _ in takes)
    shutil.rmtree(tmp_path / "ck")
    ch = open_channel(tmp_path)
    assert bodies(take_all(ch)) == [b"d-%d" % i for i in range(5)]
    ch.stop()


def test_null_sink_on_the_file_channel_logs_a_take_transaction_per_batch(tmp_path, run_agent):
    """seq -> file -> null through the CLI: the null sink drains the channel, every event is
    taken once in take transactions of at most its batchSize, and the channel is empty
    after a replay."""
    conf = tmp_path / "null.properties"
    conf.write_text(BASE.format(root=tmp_path).replace("totalEvents = 10", "totalEvents = 5000")
                    + "a1.sources.r1.batchSize = 100\na1.sinks.k1.batchSize = 300\n")
    p = run_agent("a1", conf, "--exit-when-done", timeout=60)
    assert p.returncode == 0, p.stderr[-3000:]
    takes, commits = take_records_in(tmp_path / "d1")
    assert sum(n for _, n in takes) == 5000 and max(n for _, n in takes) <= 300
    assert all(txn in commits for txn, _ in takes)
    out = subprocess.run([sys.executable, "-m", "fastsync", "channel", "inspect", "--checkpoint-dir", str(tmp_path / "ck"),
                          "--data-dirs", str(tmp_path / "d1"), "--json"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["events"] == 0 and report["ok"]


def test_a_batch_whose_offsets_are_a_strided_view_round_trips(tmp_path):
    """The native framing reads a put's offsets as one block: a strided view is made
    contiguous first, not refused or misread."""
    ch = open_channel(tmp_path)
    offs = np.repeat(np.arange(4, dtype=np.int64), 2)[::2]      # [0, 1, 2, 3], not contiguous
    assert not offs.flags.c_contiguous
    put(ch, EventBatch(b"abc", offs))
    assert bodies(take_all(ch)) == [b"a", b"b", b"c"]
    ch.stop()
