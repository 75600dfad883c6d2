"""spooldir source through the agent CLI with real files: order, completion (rename or
delete), headers, a file modified after pickup, and SIGKILL + restart with a file channel
(every line once, at most one batch twice)."""
from __future__ import annotations

import os
import re
import signal
import time

from e2e_support import count_lines, lines_so_far, multiset_problems, poll, read_dir_bytes, read_dir_lines, write_config


def spool_config(tmp_path, spool, sink: dict, channel: dict | None = None, **source):
    cfg = {"a1.sources": "r1", "a1.channels": "c1", "a1.sinks": "k1",
           "a1.sources.r1.type": "spooldir", "a1.sources.r1.spoolDir": spool, "a1.sources.r1.channels": "c1",
           "a1.sources.r1.batchSize": 100,
           "a1.channels.c1.type": "memory", "a1.channels.c1.capacity": 10000, "a1.sinks.k1.channel": "c1"}
    cfg.update({"a1.sources.r1." + k: v for k, v in source.items()})
    cfg.update({"a1.channels.c1." + k: v for k, v in (channel or {}).items()})
    cfg.update({"a1.sinks.k1." + k: v for k, v in sink.items()})
    return cfg


def file_roll(out):
    return {"type": "file_roll", "sink.directory": out, "sink.rollInterval": 0, "sink.batchSize": 100}


def drop(spool, name, lines, mtime):
    tmp = spool / ("." + name)           # written aside, then moved in complete, as Flume asks
    tmp.write_bytes(b"".join(l + b"\n" for l in lines))
    os.utime(tmp, (mtime, mtime))
    os.rename(tmp, spool / name)


def test_files_are_read_oldest_first_and_completed(tmp_path, agent):
    spool, out = tmp_path / "spool", tmp_path / "out"
    spool.mkdir()
    now = time.time()
    drop(spool, "b.log", [b"b%d" % i for i in range(250)], now - 10)
    drop(spool, "a.log", [b"a%d" % i for i in range(250)], now - 20)
    (spool / "skip.tmp").write_bytes(b"never\n")
    p = agent("a1", write_config(tmp_path, spool_config(tmp_path, spool, file_roll(out), ignorePattern=r"\.tmp$")))
    poll(lambda: count_lines(out) >= 500 or not p.alive(), 30, message="500 lines")
    poll(lambda: sorted(os.listdir(spool)) == [".flumespool", "a.log.COMPLETED", "b.log.COMPLETED", "skip.tmp"], 10,
         message="both files completed")
    assert p.stop(timeout=20) == 0, p.stderr
    assert read_dir_lines(out) == [b"a%d" % i for i in range(250)] + [b"b%d" % i for i in range(250)]


def test_delete_policy_headers_and_a_file_without_final_newline(tmp_path, agent):
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "x.log").write_bytes(b"one\ntwo\nlast without newline")
    p = agent("a1", write_config(tmp_path, spool_config(
        tmp_path, spool, {"type": "logger", "maxBytesToLog": 64}, deletePolicy="immediate",
        fileHeader="true", basenameHeader="true", basenameHeaderKey="name")))
    poll(lambda: p.stderr.count("Event: ") >= 3, 20, message="3 events")
    poll(lambda: os.listdir(spool) == [".flumespool"], 10, message="the file deleted")
    assert p.stop(timeout=20) == 0, p.stderr
    headers = re.findall(r"Event: \{ headers:\{(.*?)\} body:", p.stderr)
    assert headers == ["file=%s, name=x.log" % (spool / "x.log")] * 3
    # the last line, without its newline, is an event too (its hex dump spans two log lines)
    assert "6C 61 73 74 20 77 69 74 68 6F 75 74 20 6E 65 77" in p.stderr     # "last without new"


def test_a_file_changed_after_pickup_is_an_error(tmp_path, agent):
    spool, out = tmp_path / "spool", tmp_path / "out"
    spool.mkdir()
    drop(spool, "f.log", [b"%d" % i for i in range(200000)], time.time() - 5)
    cfg = spool_config(tmp_path, spool, dict(file_roll(out), **{"sink.batchSize": 1}),
                       {"capacity": 200, "transactionCapacity": 100})
    p = agent("a1", write_config(tmp_path, cfg))
    poll(lambda: lines_so_far(out) or not p.alive(), 20, message="reading started")
    with open(spool / "f.log", "ab") as f:
        f.write(b"appended later\n")
    p.wait_for_stderr("File has been modified since being read: %s" % (spool / "f.log"), timeout=30)
    assert p.alive()
    assert p.stop(timeout=30) == 0
    assert b"appended later" not in read_dir_lines(out) and (spool / "f.log").exists()


def test_sigkill_and_restart_resume_where_the_commits_ended(tmp_path, agent):
    spool, out = tmp_path / "spool", tmp_path / "out"
    spool.mkdir()
    n = 300_000
    drop(spool, "big.log", [b"line-%d" % i for i in range(n)], time.time() - 5)
    channel = {"type": "file", "checkpointDir": tmp_path / "ck", "dataDirs": tmp_path / "data",
               "minimumRequiredSpace": 0, "transactionCapacity": 1000, "capacity": 1000000}
    cfg = write_config(tmp_path, spool_config(tmp_path, spool, file_roll(out), channel, batchSize=1000))
    p = agent("a1", cfg)
    poll(lambda: count_lines(out) > 20000 or not p.alive(), 60, message="a part read")
    p.send_signal(signal.SIGKILL)
    p.wait(10)
    first = len(read_dir_lines(out))
    assert first < n, "the kill came too late to test anything"
    p2 = agent("a1", cfg)
    poll(lambda: count_lines(out) >= n or not p2.alive(), 120, message="all lines after the restart")
    poll(lambda: (spool / "big.log.COMPLETED").exists(), 30, message="completed")
    assert p2.stop(timeout=30) == 0, p2.stderr
    lines = read_dir_lines(out)
    assert multiset_problems(set(lines), [b"line-%d" % i for i in range(n)]) == ""
    # the kill may fall after a source commit whose position was not yet saved (one source
    # batch read again, 1000) and after a sink's write whose take was not yet committed (one
    # sink batch written again, 100): at most one batch on each side
    assert len(lines) - n <= 1000 + 100, "%d duplicates" % (len(lines) - n)


def test_missing_spool_dir_is_a_located_error(tmp_path, run_agent):
    p = run_agent("a1", write_config(tmp_path, spool_config(tmp_path, tmp_path / "nope", file_roll(tmp_path / "o"))),
                  "--validate", timeout=30)
    assert p.returncode == 2 and re.search(r"agent\.properties:\d+: a1\.sources\.r1\.spoolDir: not a directory", p.stderr)


def test_long_lines_are_cut_into_several_events_and_cr_is_kept_as_in_flume(tmp_path, agent):
    """Flume 1.11's LineDeserializer with maxLineLength = 5: `abcdefghijkl` -> abcde, fghij, kl
    (nothing dropped); a line of exactly 5 is followed by an empty event; `\\r\\n` keeps its
    `\\r`. With batchSize 2 the cut pieces span several channel transactions."""
    spool, out = tmp_path / "spool", tmp_path / "out"
    spool.mkdir()
    (spool / "x.log").write_bytes(b"abcdefghijkl\nok\r\nfives\nab\xc3\xa9cdefg\nlast one")
    cfg = spool_config(tmp_path, spool, file_roll(out), batchSize=2, **{"deserializer.maxLineLength": 5})
    p = agent("a1", write_config(tmp_path, cfg))
    poll(lambda: (spool / "x.log.COMPLETED").exists() or not p.alive(), 20, message="the file completed")
    assert p.stop(timeout=20) == 0, p.stderr
    assert read_dir_bytes(out).split(b"\n") == [
        b"abcde", b"fghij", b"kl", b"ok\r", b"fives", b"", b"ab\xc3\xa9cd", b"efg", b"last ", b"one", b""]
