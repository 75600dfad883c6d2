"""End-to-end tests of the TAILDIR source: real files appended, renamed and truncated while
a real `fastsync agent` follows them."""
from __future__ import annotations

import collections
import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from e2e_support import (count_lines, free_port, get_json, line_of, lines_so_far, multiset_problems, poll, read_dir_lines,
                          sequence_problems, wait_for_json, write_config)

BATCH = 50           # source batchSize
SINK_BATCH = 100


def taildir_config(tmp_path: Path, pattern: str, channel: dict | None = None, sink: dict | None = None,
                   **source) -> dict:
    """TAILDIR (group f1: logs/<pattern>) -> memory (or `channel`) -> file_roll into out/."""
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    cfg = {
        "a1.sources": "r1", "a1.channels": "c1", "a1.sinks": "k1",
        "a1.sources.r1.type": "TAILDIR", "a1.sources.r1.channels": "c1",
        "a1.sources.r1.filegroups": "f1", "a1.sources.r1.filegroups.f1": "%s/%s" % (logs, pattern),
        "a1.sources.r1.positionFile": tmp_path / "pos" / "taildir_position.json",
        "a1.sources.r1.batchSize": BATCH,
        # poll quickly when idle (Flume's defaults wait 1 s, 2 s ... up to 5 s)
        "a1.sources.r1.backoffSleepIncrement": 50, "a1.sources.r1.maxBackOffSleep": 200,
        "a1.channels.c1.type": "memory", "a1.channels.c1.capacity": 100000, "a1.channels.c1.transactionCapacity": 1000,
        "a1.sinks.k1.channel": "c1",
    }
    for k, v in source.items():
        cfg["a1.sources.r1." + k] = v
    for k, v in (channel or {}).items():
        cfg["a1.channels.c1." + k] = v
    sink = sink or {"type": "file_roll", "sink.directory": tmp_path / "out", "sink.rollInterval": 0,
                    "sink.batchSize": SINK_BATCH}
    for k, v in sink.items():
        cfg["a1.sinks.k1." + k] = v
    return cfg


def lines(tag: str, start: int, n: int) -> list[bytes]:
    # 100-byte lines that say where they come from
    return [(b"%s-%07d " % (tag.encode(), i)).ljust(100, b"x") for i in range(start, start + n)]


def append(path: Path, items: list[bytes], raw: bytes = b"") -> None:
    with open(path, "ab") as f:
        f.write(b"".join(l + b"\n" for l in items) + raw)


def wait_for_lines(out: Path, n: int, proc, timeout: float = 30.0) -> list[bytes]:
    def enough():
        assert proc.alive(), "agent exited (%s):\n%s" % (proc.returncode, proc.stderr[-3000:])
        try:
            got = read_dir_lines(out)
        except AssertionError:    # a large batch caught mid-write: not there yet (the final read stays strict)
            return None
        return got if len(got) >= n else None
    poll(enough, timeout, interval=0.05, message="%d lines in %s" % (n, out))
    time.sleep(0.3)   # anything extra (a duplicate) would show up by now
    return read_dir_lines(out)


# -- reading ----------------------------------------------------------------------------------

def test_appended_lines_arrive_in_order_with_partial_last_line(tmp_path, agent):
    log = tmp_path / "logs" / "app.log"
    cfg = taildir_config(tmp_path, r"app\.log")
    append(log, lines("a", 0, 1000))                     # there before the agent starts
    p = agent("a1", write_config(tmp_path, cfg))
    out = tmp_path / "out"
    expected = lines("a", 0, 1000)
    assert wait_for_lines(out, 1000, p) == expected
    for k in range(1, 6):                                 # appended over time
        append(log, lines("a", k * 1000, 1000))
        expected += lines("a", k * 1000, 1000)
        time.sleep(0.1)
    # a line written in two pieces is one event, sent once its newline is there
    append(log, [], b"partial-")
    got = wait_for_lines(out, len(expected), p)
    assert not sequence_problems(got, expected), sequence_problems(got, expected)
    time.sleep(0.5)
    assert read_dir_lines(out) == expected, "a line without its newline was sent"
    append(log, [], b"line\r\ncrlf line\r\n")             # CRLF: the \r is not in the body
    expected += [b"partial-line", b"crlf line"]
    got = wait_for_lines(out, len(expected), p)
    assert not sequence_problems(got, expected), sequence_problems(got, expected)
    assert p.stop(timeout=20) == 0, p.stderr


@pytest.mark.parametrize("pattern", [r"app\.log.*", r"app\.log"], ids=["rotated-name-matches", "rotated-name-does-not"])
def test_rotation_by_rename_mid_stream(tmp_path, agent, pattern):
    logs = tmp_path / "logs"
    cfg = taildir_config(tmp_path, pattern)
    out = tmp_path / "out"
    append(logs / "app.log", lines("a", 0, 2000))
    p = agent("a1", write_config(tmp_path, cfg))
    wait_for_lines(out, 2000, p)
    # more lines, then at once (before the agent polls again) the rotation and a new file
    append(logs / "app.log", lines("a", 2000, 3000))
    os.rename(logs / "app.log", logs / "app.log.1")
    append(logs / "app.log", lines("b", 0, 1500))
    append(logs / "app.log.1", lines("a", 5000, 10))     # a late write to the rotated file (it is still open)
    expected = lines("a", 0, 5010) + lines("b", 0, 1500)
    got = wait_for_lines(out, len(expected), p)
    assert not multiset_problems(got, expected), multiset_problems(got, expected)
    for tag in (b"a-", b"b-"):
        mine = [l for l in got if l.startswith(tag)]
        assert mine == [l for l in expected if l.startswith(tag)], "lines of one file out of order"
    # keeps following the new app.log
    append(logs / "app.log", lines("b", 1500, 500))
    got = wait_for_lines(out, len(expected) + 500, p)
    assert not multiset_problems(got, expected + lines("b", 1500, 500))
    assert p.stop(timeout=20) == 0, p.stderr


def test_rotation_of_an_idle_closed_file_with_an_unfinished_last_line(tmp_path, agent):
    logs = tmp_path / "logs"
    cfg = taildir_config(tmp_path, r"app\.log", idleTimeout=300)
    append(logs / "app.log", lines("a", 0, 100))
    p = agent("a1", write_config(tmp_path, cfg))
    out = tmp_path / "out"
    wait_for_lines(out, 100, p)
    p.wait_for_stderr(r"closing idle file .*app\.log$", timeout=10)
    # written while it was closed, then renamed to a name that does not match, before a poll
    append(logs / "app.log", lines("a", 100, 50), b"unfinished")
    os.rename(logs / "app.log", logs / "app-old")
    append(logs / "app.log", lines("b", 0, 20))
    expected = lines("a", 0, 150) + [b"unfinished"] + lines("b", 0, 20)
    got = wait_for_lines(out, len(expected), p)
    assert not multiset_problems(got, expected), multiset_problems(got, expected)
    p.wait_for_stderr(r"app-old \(inode \d+\) is no longer in the file groups", timeout=10)
    assert p.stop(timeout=20) == 0, p.stderr
    records = json.loads((tmp_path / "pos" / "taildir_position.json").read_text())
    assert [r["file"] for r in records] == [str(logs / "app.log")]


def test_copytruncate_restarts_from_zero(tmp_path, agent):
    log = tmp_path / "logs" / "app.log"
    cfg = taildir_config(tmp_path, r"app\.log")
    append(log, lines("a", 0, 3000))
    p = agent("a1", write_config(tmp_path, cfg))
    out = tmp_path / "out"
    wait_for_lines(out, 3000, p)
    # logrotate's copytruncate: copy, then truncate in place; the writer goes on at 0
    (tmp_path / "app.log.1").write_bytes(log.read_bytes())
    with open(log, "r+b") as f:
        f.truncate(0)
    append(log, lines("b", 0, 200))
    expected = lines("a", 0, 3000) + lines("b", 0, 200)
    got = wait_for_lines(out, len(expected), p)
    assert not sequence_problems(got, expected), sequence_problems(got, expected)
    assert p.stop(timeout=20) == 0, p.stderr


def test_new_matching_file_is_picked_up(tmp_path, agent):
    logs = tmp_path / "logs"
    cfg = taildir_config(tmp_path, r".*\.log")
    append(logs / "one.log", lines("a", 0, 100))
    p = agent("a1", write_config(tmp_path, cfg))
    out = tmp_path / "out"
    wait_for_lines(out, 100, p)
    append(logs / "two.log", lines("b", 0, 300))
    append(logs / "two.txt", lines("x", 0, 10))            # does not match: not read
    (logs / "sub.log").mkdir()                             # a directory: not read
    append(logs / "three.log", [b"L" * 3_000_000, b"short"])   # a line longer than a read block
    expected = lines("a", 0, 100) + lines("b", 0, 300) + [b"L" * 3_000_000, b"short"]
    got = wait_for_lines(out, len(expected), p)
    assert not multiset_problems(got, expected), multiset_problems(got, expected)
    assert p.stop(timeout=20) == 0, p.stderr


def test_batches_the_channel_refused_are_sent_again(tmp_path, agent):
    # a small channel that refuses at once when full, and a sink taking one event at a time
    cfg = taildir_config(tmp_path, r"app\.log", channel={"capacity": 100, "transactionCapacity": 100, "keep-alive": 0},
                         sink={"type": "file_roll", "sink.directory": tmp_path / "out", "sink.rollInterval": 0,
                               "sink.batchSize": 1})
    append(tmp_path / "logs" / "app.log", lines("a", 0, 3000))
    mport = free_port()
    p = agent("a1", write_config(tmp_path, cfg), "--metrics-port", mport)
    got = wait_for_lines(tmp_path / "out", 3000, p, timeout=60)
    assert not sequence_problems(got, lines("a", 0, 3000)), sequence_problems(got, lines("a", 0, 3000))
    source = get_json("http://127.0.0.1:%d/metrics" % mport)["SOURCE.r1"]
    assert int(source["ChannelWriteFail"]) > 0, source
    assert p.stop(timeout=20) == 0, p.stderr


def test_skip_to_end_starts_new_files_at_their_end(tmp_path, agent):
    log = tmp_path / "logs" / "app.log"
    cfg = taildir_config(tmp_path, r"app\.log", skipToEnd="true")
    append(log, lines("a", 0, 100))
    p = agent("a1", write_config(tmp_path, cfg))
    p.wait_for_stderr(r"following .*app\.log", timeout=20)
    append(log, lines("a", 100, 5))
    assert wait_for_lines(tmp_path / "out", 5, p) == lines("a", 100, 5)
    assert p.stop(timeout=20) == 0, p.stderr


# -- positions --------------------------------------------------------------------------------

def test_position_file_is_flumes_json_and_a_flume_written_one_is_honoured(tmp_path, agent):
    logs = tmp_path / "logs"
    cfg = taildir_config(tmp_path, r".*\.log", writePosInterval=200)
    a, b = logs / "a.log", logs / "b.log"
    append(a, lines("a", 0, 100))
    append(b, lines("b", 0, 100))
    # as Flume's TaildirSource writes it: a has been read up to its line 40, b to its end
    pos_file = tmp_path / "pos" / "taildir_position.json"
    pos_file.parent.mkdir()
    pos_file.write_text('[{"inode":%d,"pos":%d,"file":"%s"},{"inode":%d,"pos":%d,"file":"%s"}]'
                        % (a.stat().st_ino, 40 * 101, a, b.stat().st_ino, 100 * 101, b))
    p = agent("a1", write_config(tmp_path, cfg))
    out = tmp_path / "out"
    got = wait_for_lines(out, 60, p)
    assert got == lines("a", 40, 60)
    append(b, lines("b", 100, 5))
    got = wait_for_lines(out, 65, p)
    assert got == lines("a", 40, 60) + lines("b", 100, 5)
    final = [
        {"inode": a.stat().st_ino, "pos": 100 * 101, "file": str(a)},
        {"inode": b.stat().st_ino, "pos": 105 * 101, "file": str(b)},
    ]
    # written while running (memory channel: every writePosInterval), and at stop
    poll(lambda: sorted(json.loads(pos_file.read_text()), key=lambda r: r["file"]) == final, 10,
         message="positions of everything delivered in %s" % pos_file)
    assert p.stop(timeout=20) == 0, p.stderr
    assert sorted(json.loads(pos_file.read_text()), key=lambda r: r["file"]) == final
    # a restart reads nothing again, only what is new
    append(a, lines("a", 100, 7))
    p2 = agent("a1", write_config(tmp_path, cfg))
    got = wait_for_lines(out, 72, p2)
    assert got[65:] == lines("a", 100, 7), got[65:]
    assert p2.stop(timeout=20) == 0, p2.stderr


def test_sigkill_and_restart_with_file_channel_each_line_once(tmp_path, agent):
    logs = tmp_path / "logs"
    channel = {"type": "file", "checkpointDir": tmp_path / "ckpt", "dataDirs": tmp_path / "data",
               "capacity": 100000, "transactionCapacity": 1000, "minimumRequiredSpace": 0}
    cfg = taildir_config(tmp_path, r"app\.log.*", channel=channel)
    conf = write_config(tmp_path, cfg)
    out = tmp_path / "out"
    total = 30000
    done = threading.Event()

    def writer():        # appends while the agent runs, is killed and restarts; rotates once
        for k in range(0, total, 500):
            if k == total // 2:
                os.rename(logs / "app.log", logs / "app.log.1")
            append(logs / "app.log", lines("a", k, 500))
            time.sleep(0.05)
        done.set()

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    kills = 0
    for _ in range(3):
        p = agent("a1", conf)
        before = count_lines(out)
        poll(lambda: count_lines(out) > before + 2000 or (done.is_set() and count_lines(out) > before),
             30, interval=0.02, message="progress before the kill")
        os.kill(p.pid, signal.SIGKILL)
        assert p.wait(10) == -signal.SIGKILL
        kills += 1
    t.join(30)
    p = agent("a1", conf)
    expected = lines("a", 0, total)

    def complete():
        assert p.alive(), p.stderr[-3000:]
        return set(lines_so_far(out)) >= set(expected)     # the sink still writes: whole lines only
    poll(complete, 60, interval=0.1, message="every line delivered after the restarts")
    assert p.stop(timeout=30) == 0, p.stderr
    got = read_dir_lines(out)
    counts = collections.Counter(got)
    assert set(counts) == set(expected), "unexpected lines"
    duplicated = sum(c - 1 for c in counts.values())
    # per kill: the source batch committed but not yet in the position file, and the sink
    # batch written but not yet taken
    print("%d kills, %d lines, %d duplicated" % (kills, len(got), duplicated))
    assert duplicated <= kills * (BATCH + SINK_BATCH), "%d duplicates for %d kills" % (duplicated, kills)


# -- headers --------------------------------------------------------------------------------

def logged_events(stderr: str) -> list[tuple[dict, str]]:
    out = []
    for m in re.finditer(r"Event: \{ headers:\{(.*?)\} body: (?:[0-9A-F]{2} )+\s*(.*?) \}", stderr):
        headers = dict(kv.split("=", 1) for kv in m.group(1).split(", ") if kv)
        out.append((headers, m.group(2)))
    return out


def test_file_offset_and_static_headers(tmp_path, agent):
    logs = tmp_path / "logs"
    cfg = taildir_config(tmp_path, r".*\.log", sink={"type": "logger"}, fileHeader="true", byteOffsetHeader="true",
                         **{"headers.f1.topic": "app", "headers.f1.dc": "eu"})
    append(logs / "x.log", [], b"one\r\ntwo\nthree\n")
    p = agent("a1", write_config(tmp_path, cfg))
    p.wait_for_stderr(r"(?s)(Event: .*){3}", timeout=20)
    assert logged_events(p.stderr) == [
        ({"topic": "app", "dc": "eu", "file": str(logs / "x.log"), "byteoffset": "0"}, "one"),
        ({"topic": "app", "dc": "eu", "file": str(logs / "x.log"), "byteoffset": "5"}, "two"),
        ({"topic": "app", "dc": "eu", "file": str(logs / "x.log"), "byteoffset": "9"}, "three"),
    ]
    assert p.stop(timeout=20) == 0


def test_file_header_key_and_defaults_off(tmp_path, agent):
    logs = tmp_path / "logs"
    cfg = taildir_config(tmp_path, r".*\.log", sink={"type": "logger"}, fileHeaderKey="path")
    append(logs / "x.log", [b"hello"])
    p = agent("a1", write_config(tmp_path, cfg))
    p.wait_for_stderr(r"Event: ", timeout=20)
    time.sleep(0.2)
    assert logged_events(p.stderr) == [({}, "hello")]
    assert p.stop(timeout=20) == 0
    cfg["a1.sources.r1.fileHeader"] = "true"
    append(logs / "y.log", [b"hi"])
    p = agent("a1", write_config(tmp_path, cfg))
    p.wait_for_stderr(r"Event: ", timeout=20)
    time.sleep(0.2)
    assert logged_events(p.stderr) == [({"path": str(logs / "y.log")}, "hi")]
    assert p.stop(timeout=20) == 0


# -- lines left in the read blocks (memory channel, file_roll) ----------------------------------

def test_file_roll_writes_the_lines_out_of_the_read_blocks_byte_for_byte(tmp_path, agent):
    """Lines of 0 - 300 bytes over several 1 MiB read blocks, a stretch of CRLF lines and
    lines longer than maxLineLength: the blocks of plain lines go through the channel as
    they were read and out of file_roll as they are, the others are split (CR stripped,
    long lines cut); the output is the input's lines, and the metrics count body bytes
    without newlines."""
    import random
    rng = random.Random(7)
    log = tmp_path / "logs" / "app.log"
    cfg = taildir_config(tmp_path, r"app\.log", maxLineLength=1000, batchSize=1000,
                         sink={"type": "file_roll", "sink.directory": tmp_path / "out", "sink.rollInterval": 0,
                               "sink.batchSize": 1000})
    plain = [b"p%06d-" % i + b"y" * rng.randrange(0, 300) for i in range(30000)]
    crlf = [b"c%06d" % i for i in range(500)]
    long = [b"L%d" % i + b"z" * 2500 for i in range(3)]
    more = [b"q%06d-" % i + b"w" * rng.randrange(0, 300) for i in range(10000)]
    append(log, plain[:20000])
    append(log, [], b"".join(l + b"\r\n" for l in crlf))
    append(log, plain[20000:] + long + more)
    expected = plain[:20000] + crlf + plain[20000:] + [piece for l in long for piece in (l[:1000], l[1000:2000], l[2000:])] + more
    mport = free_port()
    p = agent("a1", write_config(tmp_path, cfg), "--metrics-port", mport)
    got = wait_for_lines(tmp_path / "out", len(expected), p)
    assert not sequence_problems(got, expected), sequence_problems(got, expected)
    url = "http://127.0.0.1:%d/metrics" % mport
    m = poll(lambda: (lambda m: m if int(m["SINK.k1"]["EventDrainSuccessCount"]) == len(expected) else None)(
        get_json(url)), timeout=10, message="the sink's counts")
    assert int(m["SINK.k1"]["EventDrainSuccessBytes"]) == sum(len(l) for l in expected)
    assert int(m["CHANNEL.c1"]["EventTakeSuccessCount"]) == len(expected)
    assert p.stop(timeout=20) == 0, p.stderr


def test_reused_read_blocks_and_copytruncate_deliver_every_line_byte_for_byte(tmp_path, agent):
    """25 MB of lines go through in 4 MiB blocks from a pool of reused memory, the memory
    channel holding about two blocks by reference while the next ones are read: a block's
    memory is read into again only once the channel let go of all its lines. Then the file
    is copytruncated and 3 MB more are written at its start: the lines already read are
    delivered as they were read (a copy, never the new bytes at their old offsets)."""
    log = tmp_path / "logs" / "app.log"
    cfg = taildir_config(tmp_path, r"app\.log", batchSize=1000,
                         sink={"type": "file_roll", "sink.directory": tmp_path / "out", "sink.rollInterval": 0,
                               "sink.batchSize": 1000})
    first, second = lines("a", 0, 250000), lines("b", 0, 30000)
    append(log, first)
    p = agent("a1", write_config(tmp_path, cfg))
    # truncated at once: the source has read (nearly) all of the file by now, most of its
    # lines still in its last blocks and in the channel (capacity 100 000)
    poll(lambda: (tmp_path / "out").exists() and count_lines(tmp_path / "out") > 0, 30, message="the first lines")
    with open(log, "r+b") as f:
        f.truncate(0)
    append(log, second)     # 3 MB: less than the 4 MiB read before, so seen as a truncation
    poll(lambda: sum(l.startswith(b"b-") for l in lines_so_far(tmp_path / "out")) >= len(second) or not p.alive(),
         60, message="the lines written after the truncation")
    assert p.stop(timeout=20) == 0, p.stderr
    got = read_dir_lines(tmp_path / "out")
    assert set(got) <= set(first) | set(second)
    # each file's lines in order; those of the first as far as they were read before the truncation
    assert [l for l in got if l.startswith(b"b-")] == second
    old = [l for l in got if l.startswith(b"a-")]
    assert old == first[:len(old)] and len(old) > 0


@pytest.mark.slow
def test_file_roll_on_a_full_disk_retries_and_loses_nothing(tmp_path, agent):
    """file_roll writes into a real 1 MB tmpfs: once it is full the writes fail, their
    transactions go back to the channel (counted in EventWriteFail, logged once), and when
    the disk grows every line is written, in order (a rolled-back write may leave the part
    it managed to write: at-least-once, as Flume)."""
    assert os.geteuid() == 0, "this test mounts a tmpfs and needs root (CI runs as root)"
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], check=True)
    try:
        log = tmp_path / "logs" / "app.log"
        cfg = taildir_config(tmp_path, r"app\.log", batchSize=1000,
                             sink={"type": "file_roll", "sink.directory": small / "out", "sink.rollInterval": 0,
                                   "sink.batchSize": 1000})
        expected = lines("a", 0, 30000)        # 3 MB
        append(log, expected)
        mport = free_port()
        p = agent("a1", write_config(tmp_path, cfg), "--metrics-port", mport)
        url = "http://127.0.0.1:%d/metrics" % mport
        wait_for_json(url, timeout=15, alive=p.alive)
        poll(lambda: int(get_json(url)["SINK.k1"]["EventWriteFail"]) >= 2, timeout=30, message="failed writes")
        assert int(get_json(url)["SINK.k1"]["EventDrainSuccessCount"]) < len(expected)
        subprocess.run(["mount", "-o", "remount,size=16m", str(small)], check=True)
        poll(lambda: int(get_json(url)["SINK.k1"]["EventDrainSuccessCount"]) == len(expected), timeout=30,
             message="every line drained")
        assert p.stop(timeout=20) == 0, p.stderr
        data = b"".join(f.read_bytes() for f in sorted((small / "out").iterdir()))
        # each line in order; a piece written by a failed try may come before its retry
        at = 0
        for line in expected:
            at = data.index(line + b"\n", at) + len(line) + 1
        assert len(data) - at == 0, "something after the last line"
        assert p.stderr.count("No space left on device") == 1, p.stderr[-3000:]
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


# -- configuration errors --------------------------------------------------------------------

@pytest.mark.parametrize("case", ["missing-filegroups", "group-without-path", "bad-regex", "no-directory",
                                  "headers-of-unknown-group"])
def test_config_errors_are_one_located_line(tmp_path, run_agent, case):
    cfg = taildir_config(tmp_path, r"app\.log")
    key, line_key, fragment = {
        "missing-filegroups": ("filegroups", "type", "missing"),
        "group-without-path": ("filegroups", "filegroups", "filegroups.f1"),
        "bad-regex": ("filegroups.f1", "filegroups.f1", "not a valid regex"),
        "no-directory": ("filegroups.f1", "filegroups.f1", "Directory does not exist"),
        "headers-of-unknown-group": ("headers.f9.topic", "headers.f9.topic", "f1"),
    }[case]
    if case == "missing-filegroups":
        del cfg["a1.sources.r1.filegroups"]
    elif case == "group-without-path":
        del cfg["a1.sources.r1.filegroups.f1"]
    elif case == "bad-regex":
        cfg["a1.sources.r1.filegroups.f1"] = "%s/app[.log" % (tmp_path / "logs")
    elif case == "no-directory":
        cfg["a1.sources.r1.filegroups.f1"] = "%s/app.log" % (tmp_path / "nowhere")
    else:
        cfg["a1.sources.r1.headers.f9.topic"] = "x"
    conf = write_config(tmp_path, cfg, "bad.properties")
    p = run_agent("a1", conf, timeout=20)
    assert p.returncode == 2, (p.returncode, p.stderr)
    err = p.stderr.strip()
    assert len(err.splitlines()) == 1, "expected one line on stderr, got:\n" + p.stderr
    prefix = "fastsync: error: %s:%d: a1.sources.r1.%s: " % (conf, line_of(conf.read_text(), "a1.sources.r1." + line_key), key)
    assert err.startswith(prefix), (err, prefix)
    assert fragment in err, err
    assert not (tmp_path / "out").exists()
