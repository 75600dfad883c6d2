"""Lines without end in the line-reading sources `exec` and `TAILDIR`: a line longer than
maxLineLength bytes is cut into several events as it is read, none of it dropped, so memory
stays bounded whatever the input; TAILDIR's positions stay right across the cuts. (syslogtcp,
netcat and spooldir: see their own test files.)"""
from __future__ import annotations

import collections
import json
import os
import re
import signal
from pathlib import Path

import numpy as np

from e2e_support import poll, read_dir_lines, write_config
from socket_clients import peak_rss_kib
from fastsync.agent.sources.linecut import cut_lines
from test_taildir import taildir_config

MIB = 1 << 20


def printable(n: int, seed: int) -> bytes:
    """n random printable ASCII bytes (no newline): a reordered or lost piece shows."""
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 64, n, dtype=np.uint8) + 48).tobytes()


def tokens(n: int) -> bytes:
    """n distinct 16-byte tokens: every piece of a cut (a multiple of 16 bytes) is unique."""
    return b"".join(b"%015d," % i for i in range(n))


def pieces(line: bytes, size: int) -> list[bytes]:
    return [line[i:i + size] for i in range(0, len(line), size)]


def stored(out: Path) -> list[bytes]:
    """The lines file_roll wrote so far ([] while a large batch is caught mid-write)."""
    try:
        return read_dir_lines(out) if out.exists() else []
    except AssertionError:
        return []


def exec_agent_config(out: Path, command: str, **source) -> dict:
    cfg = {
        "a1.sources": "r1", "a1.channels": "c1", "a1.sinks": "k1",
        "a1.sources.r1.type": "exec", "a1.sources.r1.shell": "/bin/sh -c", "a1.sources.r1.command": command,
        "a1.sources.r1.channels": "c1", "a1.sources.r1.batchTimeout": 100,
        # a small channel: what it holds stays small next to the 64 MiB going through
        "a1.channels.c1.type": "memory", "a1.channels.c1.capacity": 8, "a1.channels.c1.transactionCapacity": 8,
        "a1.sinks.k1.type": "file_roll", "a1.sinks.k1.channel": "c1", "a1.sinks.k1.sink.directory": out,
        "a1.sinks.k1.sink.rollInterval": 0, "a1.sinks.k1.sink.batchSize": 4,
    }
    cfg.update({"a1.sources.r1." + k: v for k, v in source.items()})
    return cfg


def test_exec_cuts_a_line_without_newline_in_bounded_memory(tmp_path, agent):
    """A command printing 64 MiB without a newline used to be buffered whole (and the buffer
    scanned again at every read); now it arrives as 256 events of maxLineLength (256 KiB)
    bytes, every byte in order, while the agent's memory grows by far less."""
    out, big, go = tmp_path / "out", tmp_path / "big", tmp_path / "go"
    line = printable(64 * MIB, 1)
    big.write_bytes(line)
    cmd = "echo first; while [ ! -e '%s' ]; do sleep 0.05; done; cat '%s'; echo; echo last" % (go, big)
    p = agent("a1", write_config(tmp_path, exec_agent_config(out, cmd, batchSize=4, maxLineLength=MIB // 4)))
    poll(lambda: stored(out) == [b"first"], 30, message="the first line stored")
    before = peak_rss_kib(p.pid)
    go.touch()
    poll(lambda: stored(out)[-1:] == [b"last"] or not p.alive(), 60, message="the last line stored")
    grew = peak_rss_kib(p.pid) - before
    print("peak RSS grew by %d KiB" % grew)
    assert p.stop(timeout=20) == 0, p.stderr
    got = read_dir_lines(out)
    assert got[0] == b"first" and got[-1] == b"last"
    assert b"".join(got[1:-1]) == line, "the cut line's bytes are not all there, in order"
    assert [len(x) for x in got[1:-1]] == [MIB // 4] * 256
    assert grew < 32 << 10, "peak RSS grew by %d KiB while a 64 MiB line went through" % grew


def test_exec_cuts_before_a_utf8_character_and_a_line_of_the_limit_is_one_event(tmp_path, run_agent):
    out, text = tmp_path / "out", tmp_path / "text"
    text.write_bytes(b"abcdefghijkl\nabcd\xc3\xa9fghijk\nfives\nx\r\nlast one")
    cmd = "cat '%s'" % text
    p = run_agent("a1", write_config(tmp_path, exec_agent_config(out, cmd, maxLineLength=5, batchSize=4)), "--exit-when-done")
    assert p.returncode == 0, p.stderr
    assert read_dir_lines(out) == [b"abcde", b"fghij", b"kl", b"abcd", "\u00e9fgh".encode(), b"ijk", b"fives", b"x",
                                   b"last ", b"one"]


def test_taildir_cuts_a_line_without_newline_in_bounded_memory(tmp_path, agent):
    """A 64 MiB line used to be read whole (the read block doubling until it held it); now
    it is read in pieces of maxLineLength (1 MiB), every byte in order."""
    log = tmp_path / "logs" / "app.log"
    cfg = taildir_config(tmp_path, r"app\.log", channel={"capacity": 8, "transactionCapacity": 8},
                         sink={"type": "file_roll", "sink.directory": tmp_path / "out", "sink.rollInterval": 0,
                               "sink.batchSize": 4}, batchSize=4, maxLineLength=MIB)
    # '\r\n': the first line goes the way of the cut ones (numpy and pyarrow, which the
    # usual path never loads, are then in memory before the baseline is taken)
    log.write_bytes(b"first\r\n")
    out = tmp_path / "out"
    p = agent("a1", write_config(tmp_path, cfg))
    poll(lambda: stored(out) == [b"first"], 30, message="the first line stored")
    before = peak_rss_kib(p.pid)
    line = printable(64 * MIB + 7, 2)
    with open(log, "ab") as f:
        f.write(line)
    poll(lambda: len(stored(out)) == 65 or not p.alive(), 60, message="the pieces before the unfinished rest")
    with open(log, "ab") as f:
        f.write(b"\nlast\n")
    poll(lambda: stored(out)[-1:] == [b"last"] or not p.alive(), 60, message="the last line stored")
    grew = peak_rss_kib(p.pid) - before
    print("peak RSS grew by %d KiB" % grew)
    assert p.stop(timeout=20) == 0, p.stderr
    got = read_dir_lines(out)
    assert got[0] == b"first" and got[-1] == b"last"
    assert b"".join(got[1:-1]) == line, "the cut line's bytes are not all there, in order"
    assert [len(x) for x in got[1:-1]] == [MIB] * 64 + [7]
    assert grew < 40 << 10, "peak RSS grew by %d KiB while a 64 MiB line went through" % grew


def test_taildir_positions_across_cuts_survive_sigkill_and_restarts(tmp_path, agent):
    """A 16 MiB line cut in 4 KiB pieces, the agent SIGKILLed in the middle of it (file
    channel: positions recorded after every commit) and restarted: the position file then
    points into the line, at the rest still waiting for its newline; once it comes, a third
    agent delivers the rest. Every piece arrives, at most one batch twice."""
    logs, out = tmp_path / "logs", tmp_path / "out"
    channel = {"type": "file", "checkpointDir": tmp_path / "ckpt", "dataDirs": tmp_path / "data",
               "capacity": 100000, "transactionCapacity": 1000, "minimumRequiredSpace": 0}
    size, batch, sink_batch = 4096, 10, 100
    cfg = taildir_config(tmp_path, r"app\.log", channel=channel, maxLineLength=size, batchSize=batch,
                         sink={"type": "file_roll", "sink.directory": out, "sink.rollInterval": 0,
                               "sink.batchSize": sink_batch})
    conf = write_config(tmp_path, cfg)
    line = tokens(1 << 20) + b"tail of the line"          # 16 MiB + 16 bytes
    first = b"first\n"
    (logs / "app.log").write_bytes(first + line[:-500])    # not all of it yet, no newline
    whole, waiting = pieces(line[:-500], size), len(line[:-500]) % size or size

    p = agent("a1", conf)
    poll(lambda: len(stored(out)) > 300 or not p.alive(), 30, message="progress before the kill")
    os.kill(p.pid, signal.SIGKILL)
    assert p.wait(10) == -signal.SIGKILL

    p = agent("a1", conf)
    expected = [first[:-1]] + whole[:-1]      # the last piece waits for the rest of the line
    poll(lambda: set(stored(out)) >= set(expected) or not p.alive(), 60, message="the pieces delivered")
    pos_file = tmp_path / "pos" / "taildir_position.json"
    assert json.loads(pos_file.read_text())[0]["pos"] == len(first) + len(line) - 500 - waiting
    assert p.stop(timeout=20) == 0, p.stderr
    assert set(read_dir_lines(out)) == set(expected), "the unfinished rest must wait for its newline"

    with open(logs / "app.log", "ab") as f:
        f.write(line[-500:] + b"\nlast\n")
    p = agent("a1", conf)
    poll(lambda: stored(out)[-1:] == [b"last"] or not p.alive(), 30, message="the last line stored")
    assert p.stop(timeout=20) == 0, p.stderr
    got = read_dir_lines(out)
    rest = line[len(line) - 500 - waiting:]
    want = expected + pieces(rest, size) + [b"last"]
    assert list(dict.fromkeys(got)) == want, "pieces lost or out of order"
    duplicated = sum(c - 1 for c in collections.Counter(got).values())
    assert duplicated <= batch + sink_batch, "%d pieces twice after one kill" % duplicated


def test_exec_logs_a_stderr_line_without_newline_in_pieces(tmp_path, agent):
    """With logStdErr, 64 MiB on stderr without a newline used to be read as one line (and
    decoded and formatted whole); now it is logged in pieces of maxLineLength bytes."""
    out, go = tmp_path / "out", tmp_path / "go"
    cmd = ("echo first; while [ ! -e '%s' ]; do sleep 0.05; done; head -c %d /dev/zero | tr -c e e >&2; "
           "echo done >&2; echo last" % (go, 64 * MIB))
    p = agent("a1", write_config(tmp_path, exec_agent_config(out, cmd, batchSize=4, logStdErr="true",
                                                             maxLineLength=MIB // 4)))
    poll(lambda: stored(out) == [b"first"], 30, message="the first line stored")
    before = peak_rss_kib(p.pid)
    go.touch()
    poll(lambda: "= 'done'" in p.stderr[-2000:] or not p.alive(), 60, message="the end of stderr logged")
    grew = peak_rss_kib(p.pid) - before
    print("peak RSS grew by %d KiB" % grew)
    assert p.stop(timeout=20) == 0, p.stderr[-2000:]
    logged = [len(m) for m in re.findall(r"StderrLogger\[\d+\] = '(e*)'", p.stderr)]
    assert logged == [MIB // 4] * 256, logged[:5]
    assert grew < 32 << 10, "peak RSS grew by %d KiB while 64 MiB went to stderr" % grew


def test_cut_lines_fed_in_random_chunks_gives_every_byte_back_in_bounded_pieces():
    """linecut.cut_lines as the sources call it, on random text fed in random chunks: every
    piece at most `limit` bytes, its position right, the pieces and the newlines (and the
    stripped '\\r's) together are the input, and what waits for a newline stays small."""
    rng = np.random.default_rng(3)
    for _ in range(300):
        limit, strip = int(rng.integers(1, 20)), bool(rng.integers(2))
        src = bytes(rng.choice(list(b"ab\n\r\xc3\xa9"), int(rng.integers(0, 300))).astype(np.uint8))
        buf, rebuilt, read = b"", b"", 0
        while True:
            k = int(rng.integers(0, 40))
            buf, read = buf + src[read:read + k], read + k
            final = read >= len(src)
            data, offs, n, used, starts = cut_lines(buf, limit, final, strip_cr=strip, positions=True)
            data = bytes(data)
            for i in range(n):
                piece = data[offs[i]:offs[i + 1]]
                assert len(piece) <= limit and buf[starts[i]:starts[i] + len(piece)] == piece
            ends = list(starts[1:]) + [used]
            rebuilt += b"".join(buf[s:e] for s, e in zip(starts, ends))
            buf = buf[used:]
            assert len(buf) <= limit + 1 + 40
            if final:
                break
        assert rebuilt == src and not buf
