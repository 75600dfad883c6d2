"""End-to-end tests of `fastsync agent`: real child processes, files, sockets and signals."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

from e2e_support import (AGENT_CMD, LineClient, count_lines, free_port, get_json, http_get, line_of, multiset_problems,
                      poll, read_dir_bytes, read_dir_lines, sequence_problems, wait_for_json,
                      wait_for_port, write_config)
from socket_clients import hold_connections, listen_backlog, peak_rss_kib, simultaneous

REPO = Path(__file__).resolve().parents[1]
SUMMARY = re.compile(r"^agent (\S+): (\d+) events delivered in (\d+\.\d+) s: (\d+) events/s$")


def summary(stdout: str, name: str = "a1") -> int:
    """The N of the one `agent NAME: N events delivered ...` line on stdout."""
    lines = [l for l in stdout.splitlines() if l.strip()]
    matches = [SUMMARY.match(l) for l in lines]
    ok = [m for m in matches if m and m.group(1) == name]
    assert len(ok) == 1, "expected one summary line for agent %s on stdout, got %r" % (name, stdout)
    return int(ok[0].group(2))


def decimal_lines(n: int, start: int = 0) -> list[bytes]:
    return [b"%d" % i for i in range(start, start + n)]


def seq_config(out: Path, n: int, batch: int = 1000, capacity: int = 100000, tx: int = 1000,
               sink_batch: int = 1000, **extra) -> dict:
    cfg = {
        "a1.sources": "r1", "a1.channels": "c1", "a1.sinks": "k1",
        "a1.sources.r1.type": "seq", "a1.sources.r1.totalEvents": n, "a1.sources.r1.batchSize": batch,
        "a1.sources.r1.channels": "c1",
        "a1.channels.c1.type": "memory", "a1.channels.c1.capacity": capacity,
        "a1.channels.c1.transactionCapacity": tx,
        "a1.sinks.k1.type": "file_roll", "a1.sinks.k1.channel": "c1",
        "a1.sinks.k1.sink.directory": out, "a1.sinks.k1.sink.rollInterval": 0,
        "a1.sinks.k1.sink.batchSize": sink_batch,
    }
    cfg.update(extra)
    return cfg


def netcat_config(port: int, sink: dict, max_line: int | None = None, capacity: int = 1000, tx: int = 100) -> dict:
    cfg = {
        "a1.sources": "r1", "a1.channels": "c1", "a1.sinks": "k1",
        "a1.sources.r1.type": "netcat", "a1.sources.r1.bind": "127.0.0.1", "a1.sources.r1.port": port,
        "a1.sources.r1.channels": "c1",
        "a1.channels.c1.type": "memory", "a1.channels.c1.capacity": capacity,
        "a1.channels.c1.transactionCapacity": tx,
        "a1.sinks.k1.channel": "c1",
    }
    if max_line is not None:
        cfg["a1.sources.r1.max-line-length"] = max_line
    cfg.update({"a1.sinks.k1." + k: v for k, v in sink.items()})
    return cfg


def file_roll(out: Path, batch: int = 100) -> dict:
    return {"type": "file_roll", "sink.directory": out, "sink.rollInterval": 0, "sink.batchSize": batch}


def start_netcat_agent(agent, tmp_path, sink: dict, *extra: str, **kw):
    port = free_port()
    conf = write_config(tmp_path, netcat_config(port, sink, **kw))
    proc = agent("a1", conf, *extra)
    wait_for_port(port, timeout=15, alive=proc.alive)
    return proc, port


def send_and_ack(client: LineClient, lines: list[bytes], chunk: int = 50) -> None:
    """Send lines in sends of `chunk` lines, each time reading one OK per line."""
    for i in range(0, len(lines), chunk):
        part = lines[i:i + chunk]
        client.send(b"".join(l + b"\n" for l in part))
        replies = client.read_lines(len(part))
        assert replies == [b"OK"] * len(part), replies[:5]


# -- 1. seq -> memory -> file_roll ----------------------------------------------------------

def test_seq_to_file_roll_exit_when_done(tmp_path, run_agent):
    n = 200_000
    out = tmp_path / "out"
    conf = write_config(tmp_path, seq_config(out, n))
    p = run_agent("a1", conf, "--exit-when-done", timeout=30)
    assert p.returncode == 0, p.stderr
    assert summary(p.stdout) == n
    lines = read_dir_lines(out)
    # one source, one channel, one sink: every number exactly once, in order
    assert not multiset_problems(lines, decimal_lines(n)), multiset_problems(lines, decimal_lines(n))
    assert not sequence_problems(lines, decimal_lines(n)), sequence_problems(lines, decimal_lines(n))


def test_file_roll_cuts_the_torn_line_a_killed_agent_left(tmp_path, run_agent):
    """The files an earlier run left (as a SIGKILL mid-write leaves them): the last file of
    each series loses its torn last line at start, complete lines and other files stay."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "1000-1").write_bytes(b"a\nb\n")                 # an earlier file of the series: whole
    (out / "1000-2").write_bytes(b"c\nd\nhalf-writ")        # the one open at the kill: torn
    (out / "2000-1").write_bytes(b"no newline at all")      # torn in its first line
    (out / "3000-1").write_bytes(b"e\n")
    (out / "notes.txt").write_bytes(b"not ours")            # not a file_roll name: untouched
    conf = write_config(tmp_path, seq_config(out, 10))
    p = run_agent("a1", conf, "--exit-when-done", timeout=30)
    assert p.returncode == 0, p.stderr
    assert (out / "1000-1").read_bytes() == b"a\nb\n"
    assert (out / "1000-2").read_bytes() == b"c\nd\n"
    assert (out / "2000-1").read_bytes() == b""
    assert (out / "3000-1").read_bytes() == b"e\n"
    assert (out / "notes.txt").read_bytes() == b"not ours"
    assert p.stderr.count("torn line") == 2, p.stderr
    (out / "notes.txt").unlink()
    assert sorted(read_dir_lines(out)) == sorted([b"a", b"b", b"c", b"d", b"e"] + decimal_lines(10))


def test_status_line_on_a_terminal_only(tmp_path, run_agent):
    """On a terminal the agent redraws `N events delivered, R events/s` on stderr (the last
    time when it stops, so even a short run shows its total); in a pipe only the summary."""
    from e2e_support import run_on_terminal
    n = 20_000
    conf = write_config(tmp_path, seq_config(tmp_path / "out", n))
    code, text = run_on_terminal(AGENT_CMD + ["-n", "a1", "-f", str(conf), "--exit-when-done", "--log-level", "WARNING"])
    assert code == 0, text
    assert "\r%d events delivered, " % n in text and " events/s   \r\n" in text, text
    p = run_agent("a1", write_config(tmp_path, seq_config(tmp_path / "out2", n), "pipe.properties"), "--exit-when-done",
                  "--log-level", "WARNING")
    assert p.returncode == 0 and summary(p.stdout) == n and "events delivered," not in p.stderr, p.stderr


def test_sigquit_prints_the_threads_stacks_and_the_agent_goes_on(tmp_path, agent):
    out = tmp_path / "out"
    p = agent("a1", write_config(tmp_path, seq_config(out, 10**12)))
    poll(lambda: any(f.stat().st_size for f in out.glob("*")), 30, message="first events")  # (still being written)
    p.send_signal(signal.SIGQUIT)
    p.wait_for_stderr(r"Thread 0x[0-9a-f]+ .*\n(.*\n)*.*SinkRunner|File .*runner.py", timeout=10)
    assert p.alive()
    assert p.stop(timeout=30) == 0, p.stderr[-3000:]


def test_example_config_with_console_script(tmp_path):
    """The shipped example, run as its header says, with the `fastsync` script."""
    script = Path(sys.executable).parent / "fastsync"
    if not script.exists():
        script = shutil.which("fastsync")
    assert script, "the fastsync console script is not installed next to %s" % sys.executable
    shutil.copy(REPO / "examples" / "seq-file_roll.properties", tmp_path / "ex.properties")
    r = subprocess.run([str(script), "agent", "-n", "a1", "-f", "ex.properties", "--exit-when-done"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert summary(r.stdout) == 5_000_000
    data = read_dir_bytes(tmp_path / "out" / "seq")   # sink.directory = out/seq, relative to the cwd
    assert data.count(b"\n") == 5_000_000
    assert data.startswith(b"0\n1\n2\n") and data.endswith(b"\n4999999\n")


# -- 2. several sinks / several channels ----------------------------------------------------

def test_two_sinks_on_one_channel_each_event_once(tmp_path, run_agent):
    n = 200_000
    d1, d2 = tmp_path / "k1", tmp_path / "k2"
    cfg = seq_config(d1, n, sink_batch=500)
    cfg["a1.sinks"] = "k1 k2"
    cfg.update({"a1.sinks.k2.type": "file_roll", "a1.sinks.k2.channel": "c1", "a1.sinks.k2.sink.directory": d2,
                "a1.sinks.k2.sink.rollInterval": 0, "a1.sinks.k2.sink.batchSize": 500})
    p = run_agent("a1", write_config(tmp_path, cfg), "--exit-when-done", timeout=30)
    assert p.returncode == 0, p.stderr
    assert summary(p.stdout) == n
    l1, l2 = read_dir_lines(d1), read_dir_lines(d2)
    problems = multiset_problems(l1 + l2, decimal_lines(n))
    assert not problems, problems
    # each sink takes from the head of one FIFO: its own lines are increasing
    for lines in (l1, l2):
        nums = [int(x) for x in lines]
        assert nums == sorted(nums)


def test_replicating_source_into_two_channels(tmp_path, run_agent):
    n = 150_000
    d1, d2 = tmp_path / "k1", tmp_path / "k2"
    cfg = seq_config(d1, n)
    cfg.update({
        "a1.channels": "c1 c2", "a1.sinks": "k1 k2",
        "a1.sources.r1.channels": "c1 c2", "a1.sources.r1.selector.type": "replicating",
        "a1.channels.c2.type": "memory", "a1.channels.c2.capacity": 100000, "a1.channels.c2.transactionCapacity": 1000,
        "a1.sinks.k2.type": "file_roll", "a1.sinks.k2.channel": "c2", "a1.sinks.k2.sink.directory": d2,
        "a1.sinks.k2.sink.rollInterval": 0, "a1.sinks.k2.sink.batchSize": 1000,
    })
    p = run_agent("a1", write_config(tmp_path, cfg), "--exit-when-done", timeout=30)
    assert p.returncode == 0, p.stderr
    summary(p.stdout)
    for d in (d1, d2):
        lines = read_dir_lines(d)
        assert not sequence_problems(lines, decimal_lines(n)), (d.name, sequence_problems(lines, decimal_lines(n)))


# -- 3. exec source ---------------------------------------------------------------------------

def exec_config(out: Path, command: str, shell: str | None, batch: int = 100, timeout_ms: int | None = None) -> dict:
    cfg = {
        "a1.sources": "r1", "a1.channels": "c1", "a1.sinks": "k1",
        "a1.sources.r1.type": "exec", "a1.sources.r1.command": command, "a1.sources.r1.batchSize": batch,
        "a1.sources.r1.restart": "false", "a1.sources.r1.channels": "c1",
        "a1.channels.c1.type": "memory", "a1.channels.c1.capacity": 10000, "a1.channels.c1.transactionCapacity": 1000,
        "a1.sinks.k1.type": "file_roll", "a1.sinks.k1.channel": "c1", "a1.sinks.k1.sink.directory": out,
        "a1.sinks.k1.sink.rollInterval": 0, "a1.sinks.k1.sink.batchSize": 1000,
    }
    if shell is not None:
        cfg["a1.sources.r1.shell"] = shell
    if timeout_ms is not None:
        cfg["a1.sources.r1.batchTimeout"] = timeout_ms
    return cfg


@pytest.mark.parametrize("shell", ["/bin/sh -c", None], ids=["shell", "no-shell"])
def test_exec_seq_command(tmp_path, run_agent, shell):
    out = tmp_path / "out"
    conf = write_config(tmp_path, exec_config(out, "seq 1 5000", shell, batch=100))
    p = run_agent("a1", conf, "--exit-when-done", timeout=30)
    assert p.returncode == 0, p.stderr
    assert summary(p.stdout) == 5000
    lines = read_dir_lines(out)
    assert not sequence_problems(lines, decimal_lines(5000, start=1)), sequence_problems(lines, decimal_lines(5000, start=1))


def test_exec_shell_pipeline_and_unterminated_last_line(tmp_path, run_agent):
    # a real shell pipeline; CRLF endings are stripped (as readLine); the last line has no newline
    out = tmp_path / "out"
    cmd = "printf 'x\\r\\ny\\n' && seq 3 | tr 0-9 a-j && printf 'tail'"
    conf = write_config(tmp_path, exec_config(out, cmd, "/bin/sh -c", batch=2))
    p = run_agent("a1", conf, "--exit-when-done", timeout=30)
    assert p.returncode == 0, p.stderr
    assert read_dir_lines(out) == [b"x", b"y", b"b", b"c", b"d", b"tail"]
    assert summary(p.stdout) == 6


def test_exec_slow_command_flushes_on_batch_timeout(tmp_path, agent):
    """A partial batch must reach the sink after batchTimeout ms, while the command still runs."""
    out = tmp_path / "out"
    marker = tmp_path / "printed-first"
    cmd = "echo first; touch '%s'; sleep 3; echo second" % marker
    conf = write_config(tmp_path, exec_config(out, cmd, "/bin/sh -c", batch=1000, timeout_ms=200))
    p = agent("a1", conf, "--exit-when-done")
    poll(marker.exists, timeout=20, message="the command started")
    t0 = time.monotonic()
    # batchTimeout is 200 ms; the command prints its next line 3 s later (the default
    # batchTimeout, 3000 ms, would not be in time either)
    poll(lambda: read_dir_lines(out) == [b"first"], timeout=2.0, message="'first' in the output before the command ends")
    assert time.monotonic() - t0 < 2.5
    assert p.alive(), "the agent must still be running: the command sleeps 3 s"
    assert p.wait(20) == 0, p.stderr
    assert read_dir_lines(out) == [b"first", b"second"]
    assert summary(p.stdout) == 2


# -- 4. netcat source ---------------------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_netcat_to_file_roll_acks_and_stop(tmp_path, agent, sig):
    out = tmp_path / "out"
    p, port = start_netcat_agent(agent, tmp_path, file_roll(out))
    acked: list[bytes] = []
    with LineClient(port) as c:
        # two whole lines and the start of a third in one send
        c.send(b"alpha\nbeta\ngam")
        assert c.read_lines(2) == [b"OK", b"OK"]
        acked += [b"alpha", b"beta"]
        assert c.read_available(0.3) == b"", "a line without its newline must not be acknowledged"
        # the rest of it, split across sends
        c.send(b"m")
        time.sleep(0.05)
        c.send(b"a\ndelta\n")
        assert c.read_lines(2) == [b"OK", b"OK"]
        acked += [b"gamma", b"delta"]
        # empty lines are events too; many lines per send
        many = [b"line-%03d" % i for i in range(60)] + [b""]
        c.send(b"".join(l + b"\n" for l in many))
        assert c.read_lines(len(many)) == [b"OK"] * len(many)
        acked += many
    # a second connection works too
    with LineClient(port) as c2:
        send_and_ack(c2, [b"second-%d" % i for i in range(10)], chunk=3)
        acked += [b"second-%d" % i for i in range(10)]
    assert p.stop(sig, timeout=20) == 0, p.stderr
    assert p.stdout == ""   # no summary without --exit-when-done
    assert read_dir_lines(out) == acked


def test_netcat_line_too_long(tmp_path, agent):
    out = tmp_path / "out"
    p, port = start_netcat_agent(agent, tmp_path, file_roll(out), max_line=10)
    with LineClient(port) as c:
        # exactly 10 bytes including the newline is fine; 11 is not. Lines before it are kept.
        c.send(b"123456789\nok\n1234567890\nafter\n")
        data = c.read_until_closed(timeout=10)
        assert data == b"OK\nOK\nFAILED: Event exceeds the maximum length (10 chars, including newline)\n"
    with LineClient(port) as c:
        # a partial line that can no longer fit fails too, without waiting for its newline
        c.send(b"ok2\n0123456789")
        data = c.read_until_closed(timeout=10)
        assert data == b"OK\nFAILED: Event exceeds the maximum length (10 chars, including newline)\n"
    with LineClient(port) as c:   # the source still serves new connections
        send_and_ack(c, [b"x", b"y"])
    assert p.stop(timeout=20) == 0, p.stderr
    assert read_dir_lines(out) == [b"123456789", b"ok", b"ok2", b"x", b"y"]


def test_netcat_many_lines_in_one_send_with_default_channel(tmp_path, agent):
    """BUG (fails): with Flume's default memory channel (transactionCapacity 100), a client
    that sends more than 100 lines in one write gets FAILED for every line and nothing is
    stored. Flume's netcat source puts each event in its own transaction, so all 150 are
    acknowledged with OK. fastsync's netcat source puts all lines of one recv() into one
    transaction, which exceeds transactionCapacity ("Put queue for MemoryTransaction of
    capacity 100 full ... 150 events in this put").
    Reproduce: netcat source -> memory channel (defaults) -> any sink;
      python -c "import socket;s=socket.create_connection(('127.0.0.1',PORT));\
s.sendall(b''.join(b'%d\\n'%i for i in range(150)));import time;time.sleep(1);print(s.recv(99999))"
    """
    out = tmp_path / "out"
    port = free_port()
    cfg = netcat_config(port, file_roll(out))
    del cfg["a1.channels.c1.capacity"], cfg["a1.channels.c1.transactionCapacity"]   # Flume's defaults: 100 / 100
    p = agent("a1", write_config(tmp_path, cfg))
    wait_for_port(port, timeout=15, alive=p.alive)
    lines = [b"event-%d" % i for i in range(150)]
    with LineClient(port) as c:
        c.send(b"".join(l + b"\n" for l in lines))
        replies = c.read_lines(150, timeout=15)
        assert replies.count(b"OK") == 150, "%d of 150 OK; first reply: %r" % (replies.count(b"OK"), replies[0])
    assert p.stop(timeout=20) == 0, p.stderr
    assert read_dir_lines(out) == lines


def test_netcat_500_simultaneous_clients(tmp_path, agent):
    out = tmp_path / "out"
    p, port = start_netcat_agent(agent, tmp_path, file_roll(out), capacity=1000, tx=10)
    assert listen_backlog(port) >= 1024
    n = 500
    answers = simultaneous(port, [b"client-%03d\n" % i for i in range(n)])
    failed = [a for a in answers if a != b"OK\n"]
    assert not failed, "%d of %d failed, e.g. %r" % (len(failed), n, failed[:3])
    poll(lambda: count_lines(out) >= n, 30, message="%d events stored" % n)
    assert p.stop(timeout=20) == 0, p.stderr
    assert sorted(read_dir_lines(out)) == [b"client-%03d" % i for i in range(n)]


def test_netcat_max_connections_idle_timeout_and_a_line_without_end(tmp_path, agent):
    out = tmp_path / "out"
    port = free_port()
    cfg = netcat_config(port, file_roll(out))
    cfg.update({"a1.sources.r1.maxConnections": 2, "a1.sources.r1.idleTimeout": 1000})
    mport = free_port()
    p = agent("a1", write_config(tmp_path, cfg), "--metrics-port", str(mport))
    wait_for_port(port, timeout=15, alive=p.alive)
    held = hold_connections(mport, 2, lambda: LineClient(port))
    with LineClient(port) as c:     # past maxConnections: told so and closed
        assert c.read_until_closed() == b"FAILED: too many connections (maxConnections 2)\n"
    for c in held:                  # they sent nothing: closed after idleTimeout
        with c:
            assert c.read_until_closed() == b""
    # 32 MiB without a newline: refused after max-line-length, never buffered whole
    with LineClient(port) as c:
        send_and_ack(c, [b"first"])
        before = peak_rss_kib(p.pid)
        try:
            for _ in range(32):
                c.send(b"x" * (1 << 20))
        except OSError:             # the source closed the connection while we were still sending
            pass
        assert c.read_until_closed().startswith(b"FAILED: Event exceeds the maximum length (512 chars")
    assert peak_rss_kib(p.pid) - before < 16 << 10
    with LineClient(port) as c:
        send_and_ack(c, [b"after"])
    assert p.stop(timeout=20) == 0, p.stderr
    assert read_dir_lines(out) == [b"first", b"after"]
    assert "refused 1 connection(s)" in p.stderr


# -- 5. logger sink ---------------------------------------------------------------------------

def test_logger_sink_flume_format(tmp_path, agent):
    p, port = start_netcat_agent(agent, tmp_path, {"type": "logger"})
    with LineClient(port) as c:
        c.send(b"hello\na\tb\n0123456789abcdefXYZ\n")
        assert c.read_lines(3) == [b"OK"] * 3
    m = p.wait_for_stderr(r"(?s)Event: .*Event: .*Event: .*\}$", timeout=10)
    assert m
    events = [l[l.index("Event: "):] for l in p.stderr.splitlines() if "Event: " in l]
    # Flume's EventHelper.dumpEvent: "XX " per byte, three spaces per missing byte up to 16,
    # then the bytes as ASCII ('.' if not printable); at most maxBytesToLog (16) bytes.
    assert events == [
        "Event: { headers:{} body: 68 65 6C 6C 6F " + "   " * 11 + "hello }",
        "Event: { headers:{} body: 61 09 62 " + "   " * 13 + "a.b }",
        "Event: { headers:{} body: 30 31 32 33 34 35 36 37 38 39 61 62 63 64 65 66 0123456789abcdef }",
    ]
    assert p.stop(timeout=20) == 0


# -- 6. configuration errors --------------------------------------------------------------------

BASE = """\
# a valid agent, broken one way per case
a1.sources = r1
a1.channels = c1
a1.sinks = k1
a1.sources.r1.type = seq
a1.sources.r1.totalEvents = 10
a1.sources.r1.channels = c1
a1.channels.c1.type = memory
a1.channels.c1.capacity = 100
a1.channels.c1.transactionCapacity = 10
a1.sinks.k1.type = file_roll
a1.sinks.k1.channel = c1
a1.sinks.k1.sink.directory = {out}
"""


def _sub(old, new):
    return lambda text: text.replace(old, new)


BAD_CONFIGS = [
    # id, edit of BASE, key named in the error, line of, message fragments
    ("unknown-source-type", _sub("r1.type = seq", "r1.type = bogus"), "a1.sources.r1.type", "a1.sources.r1.type",
     ["unknown source type 'bogus'", "exec", "netcat", "seq"]),
    ("unknown-channel-type", _sub("c1.type = memory", "c1.type = jdbcx"), "a1.channels.c1.type", "a1.channels.c1.type",
     ["unknown channel type 'jdbcx'", "memory"]),
    ("sink-missing-channel", _sub("k1.channel = c1", "k1.channel = c9"), "a1.sinks.k1.channel", "a1.sinks.k1.channel",
     ["c9"]),
    ("source-missing-channel", _sub("r1.channels = c1", "r1.channels = c1 c9"), "a1.sources.r1.channels",
     "a1.sources.r1.channels", ["c9"]),
    ("bad-number", _sub("capacity = 100", "capacity = abc"), "a1.channels.c1.capacity", "a1.channels.c1.capacity",
     ["abc"]),
    ("tx-over-capacity", _sub("transactionCapacity = 10", "transactionCapacity = 1000"),
     "a1.channels.c1.transactionCapacity", "a1.channels.c1.transactionCapacity", ["1000", "100"]),
    ("netcat-without-port", _sub("r1.type = seq", "r1.type = netcat\na1.sources.r1.bind = 127.0.0.1"),
     "a1.sources.r1.port", "a1.sources.r1.type", ["missing"]),
]


@pytest.mark.parametrize("case", BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config(tmp_path, run_agent, case):
    _, edit, key, line_key, fragments = case
    out = tmp_path / "out"
    text = edit(BASE.format(out=out))
    assert text != BASE.format(out=out)
    conf = write_config(tmp_path, text, "bad.properties")
    p = run_agent("a1", conf, "--exit-when-done", timeout=20)
    assert p.returncode == 2, (p.returncode, p.stderr)
    err = p.stderr.strip()
    assert len(err.splitlines()) == 1, "expected one line on stderr, got:\n" + p.stderr
    expected_prefix = "fastsync: error: %s:%d: %s: " % (conf, line_of(text, line_key), key)
    assert err.startswith(expected_prefix), (err, expected_prefix)
    for frag in fragments:
        assert frag in err, (frag, err)
    assert p.stdout == ""
    assert not out.exists(), "nothing may start on a config error"


def test_unknown_agent_name(tmp_path, run_agent):
    out = tmp_path / "out"
    conf = write_config(tmp_path, BASE.format(out=out), "ok.properties")
    p = run_agent("nosuch", conf, timeout=20)
    assert p.returncode == 2
    err = p.stderr.strip()
    assert len(err.splitlines()) == 1, p.stderr
    assert err.startswith("fastsync: error: %s: " % conf), err
    assert "nosuch" in err and "a1" in err, err
    assert not out.exists()


def test_config_file_not_found(tmp_path, run_agent):
    missing = tmp_path / "nope.properties"
    p = run_agent("a1", missing, timeout=20)
    assert p.returncode == 2
    err = p.stderr.strip()
    assert len(err.splitlines()) == 1, p.stderr
    assert err.startswith("fastsync: error: %s: " % missing), err
    assert "No such file" in err


# -- 7. SIGTERM drains the channels ------------------------------------------------------------

def _drain_config(out: Path) -> dict:
    # a fast source and a slow sink, so the channel holds a backlog: one event per take,
    # and with a header, so not file_roll's native loop (which writes 64 takes at once)
    return seq_config(out, 10**12, batch=1000, capacity=50000, tx=1000, sink_batch=1,
                      **{"a1.channels.c1.keep-alive": 0.5, "a1.sources.r1.interceptors": "i1",
                         "a1.sources.r1.interceptors.i1.type": "static"})


def test_sigterm_drains_channel(tmp_path, agent):
    out = tmp_path / "out"
    mport = free_port()
    p = agent("a1", write_config(tmp_path, _drain_config(out)), "--metrics-port", mport)
    url = "http://127.0.0.1:%d/metrics" % mport
    wait_for_json(url, timeout=15, alive=p.alive)
    # the test needs a backlog to drain
    poll(lambda: int(get_json(url)["CHANNEL.c1"]["ChannelSize"]) > 20000, timeout=15, message="a backlog")
    before = get_json(url)
    p.send_signal(signal.SIGTERM)
    assert p.wait(30) == 0, p.stderr
    lines = read_dir_lines(out)
    k = len(lines)
    assert not sequence_problems(lines, decimal_lines(k)), sequence_problems(lines, decimal_lines(k))
    # everything committed to the channel before the signal reached the files
    assert k >= int(before["CHANNEL.c1"]["EventPutSuccessCount"]), (k, before["CHANNEL.c1"])
    assert "still in channels" not in p.stderr


def test_sigterm_drain_timeout_cuts_drain_short(tmp_path, agent):
    out = tmp_path / "out"
    mport = free_port()
    p = agent("a1", write_config(tmp_path, _drain_config(out)), "--metrics-port", mport, "--drain-timeout", "0.2")
    url = "http://127.0.0.1:%d/metrics" % mport
    wait_for_json(url, timeout=15, alive=p.alive)
    poll(lambda: int(get_json(url)["CHANNEL.c1"]["ChannelSize"]) > 40000, timeout=10, message="a large backlog")
    before = get_json(url)
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    assert p.wait(30) == 0, p.stderr
    assert time.monotonic() - t0 < 8
    lines = read_dir_lines(out)
    k = len(lines)
    # no gaps or duplicates even when the drain is cut short, and it was cut short
    assert not sequence_problems(lines, decimal_lines(k)), sequence_problems(lines, decimal_lines(k))
    assert k < int(before["CHANNEL.c1"]["EventPutSuccessCount"])
    assert "still in channels" in p.stderr


# -- 8. metrics -----------------------------------------------------------------------------------

SOURCE_KEYS = {"EventReceivedCount", "EventAcceptedCount", "AppendReceivedCount", "AppendAcceptedCount",
               "AppendBatchReceivedCount", "AppendBatchAcceptedCount", "OpenConnectionCount", "Type",
               "StartTime", "StopTime"}
CHANNEL_KEYS = {"ChannelSize", "ChannelCapacity", "ChannelFillPercentage", "EventPutAttemptCount",
                "EventPutSuccessCount", "EventTakeAttemptCount", "EventTakeSuccessCount", "Type", "StartTime", "StopTime"}
SINK_KEYS = {"ConnectionCreatedCount", "ConnectionClosedCount", "ConnectionFailedCount", "BatchEmptyCount",
             "BatchUnderflowCount", "BatchCompleteCount", "EventDrainAttemptCount", "EventDrainSuccessCount",
             "Type", "StartTime", "StopTime"}


def check_metrics_shape(m: dict) -> None:
    assert set(m) == {"SOURCE.r1", "CHANNEL.c1", "SINK.k1"}, sorted(m)
    for comp, keys, kind in (("SOURCE.r1", SOURCE_KEYS, "SOURCE"), ("CHANNEL.c1", CHANNEL_KEYS, "CHANNEL"),
                             ("SINK.k1", SINK_KEYS, "SINK")):
        group = m[comp]
        assert keys <= set(group), (comp, sorted(keys - set(group)))
        for k, v in group.items():
            assert isinstance(v, str), (comp, k, v)
        assert group["Type"] == kind
        assert int(group["StartTime"]) > 0 and group["StopTime"] == "0"


def check_within_component(m: dict) -> list[str]:
    """Invariants that hold inside one component's group at any instant."""
    c, so, si = m["CHANNEL.c1"], m["SOURCE.r1"], m["SINK.k1"]
    i = lambda g, k: int(g[k])  # noqa: E731
    bad = []
    checks = [
        ("channel put success <= put attempt", i(c, "EventPutSuccessCount") <= i(c, "EventPutAttemptCount")),
        ("channel take success <= take attempt", i(c, "EventTakeSuccessCount") <= i(c, "EventTakeAttemptCount")),
        ("channel take success <= put success", i(c, "EventTakeSuccessCount") <= i(c, "EventPutSuccessCount")),
        ("channel size <= capacity", i(c, "ChannelSize") <= i(c, "ChannelCapacity")),
        ("source accepted <= received", i(so, "EventAcceptedCount") <= i(so, "EventReceivedCount")),
        ("sink drain success <= attempt", i(si, "EventDrainSuccessCount") <= i(si, "EventDrainAttemptCount")),
    ]
    for name, ok in checks:
        if not ok:
            bad.append("%s: channel %s source %s sink %s" % (name, c, so, si))
    return bad


@pytest.mark.parametrize("style", ["--metrics-port", "-D"])
def test_metrics_netcat_driven(tmp_path, agent, style):
    out = tmp_path / "out"
    mport = free_port()
    if style == "--metrics-port":
        extra = ["--metrics-port", str(mport)]
    else:
        extra = ["-Dflume.monitoring.type=http", "-Dflume.monitoring.port=%d" % mport]
    p, port = start_netcat_agent(agent, tmp_path, file_roll(out, batch=40), *extra)
    url = "http://127.0.0.1:%d/metrics" % mport
    m0 = wait_for_json(url, timeout=10, alive=p.alive)
    check_metrics_shape(m0)
    assert m0["CHANNEL.c1"]["ChannelCapacity"] == "1000"
    assert m0["SOURCE.r1"]["EventAcceptedCount"] == "0"

    n = 250
    lines = [b"m%d" % i for i in range(n)]
    with LineClient(port) as c:
        send_and_ack(c, lines, chunk=50)
        m_open = get_json(url)
        assert m_open["SOURCE.r1"]["OpenConnectionCount"] == "1"
    m = poll(lambda: (lambda x: x if x["SINK.k1"]["EventDrainSuccessCount"] == str(n)
                      and x["SOURCE.r1"]["OpenConnectionCount"] == "0" else None)(get_json(url)),
             timeout=10, message="all %d events drained" % n)
    check_metrics_shape(m)
    assert not check_within_component(m)
    so, ch, si = m["SOURCE.r1"], m["CHANNEL.c1"], m["SINK.k1"]
    assert so["EventReceivedCount"] == so["EventAcceptedCount"] == str(n)
    assert ch["EventPutAttemptCount"] == ch["EventPutSuccessCount"] == ch["EventTakeSuccessCount"] == str(n)
    assert ch["ChannelSize"] == "0"
    assert si["EventDrainAttemptCount"] == si["EventDrainSuccessCount"] == str(n)
    assert int(si["BatchCompleteCount"]) + int(si["BatchUnderflowCount"]) >= n // 40
    assert int(si["ConnectionCreatedCount"]) >= 1
    assert so["ChannelWriteFail"] == so["EventReadFail"] == "0"
    status, _, _ = http_get("http://127.0.0.1:%d/nothing-here" % mport)
    assert status == 404
    assert p.stop(timeout=20) == 0
    assert read_dir_lines(out) == lines


def test_metrics_counters_consistent_while_busy(tmp_path, agent):
    """BUG (fails): under load, CHANNEL EventTakeSuccessCount is sometimes larger than
    EventPutSuccessCount in one /metrics answer (seen in ~2% of polls: e.g. take 1783900,
    put 1783800). The memory channel publishes a commit's events to the ring before it adds
    them to EventPutSuccessCount, and counts a take as successful at take time, so a sink
    can take and count events whose put is not counted yet. A channel can never have given
    out more events than were put into it.
    Reproduce: seq (batchSize 100) -> memory (capacity 10000, tx 1000) -> null sink with
    --metrics-port P; poll /metrics for a few seconds comparing the two counters."""
    mport = free_port()
    cfg = seq_config(tmp_path / "unused", 10**12, batch=100, capacity=10000, tx=1000)
    cfg.update({"a1.sinks.k1.type": "null", "a1.sinks.k1.batchSize": 100})
    for k in [k for k in cfg if k.startswith("a1.sinks.k1.sink.")]:
        del cfg[k]
    p = agent("a1", write_config(tmp_path, cfg), "--metrics-port", mport)
    url = "http://127.0.0.1:%d/metrics" % mport
    wait_for_json(url, timeout=15, alive=p.alive)
    problems, polls, last = [], 0, None
    t_end = time.monotonic() + 2.5
    while time.monotonic() < t_end:
        last = get_json(url)
        polls += 1
        check_metrics_shape(last)
        problems += check_within_component(last)
    assert p.alive()
    assert int(last["SINK.k1"]["EventDrainSuccessCount"]) > 0, "the agent must be busy for this test"
    assert p.stop(timeout=20) == 0
    assert not problems, "%d of %d polls inconsistent, e.g. %s" % (len(problems), polls, problems[0])


# -- 9. Flume class names and aliases ---------------------------------------------------------

@pytest.mark.parametrize("types", [
    ("org.apache.flume.source.SequenceGeneratorSource", "org.apache.flume.channel.MemoryChannel",
     "org.apache.flume.sink.RollingFileSink"),
    ("SEQ", "MEMORY", "FILE_ROLL"),
    ("Seq", "Memory", "File_Roll"),
], ids=["fqcn", "upper", "mixed"])
def test_type_names(tmp_path, run_agent, types):
    out = tmp_path / "out"
    n = 3000
    cfg = seq_config(out, n, batch=100, capacity=1000, tx=100, sink_batch=100)
    cfg["a1.sources.r1.type"], cfg["a1.channels.c1.type"], cfg["a1.sinks.k1.type"] = types
    p = run_agent("a1", write_config(tmp_path, cfg), "--exit-when-done", timeout=30)
    assert p.returncode == 0, p.stderr
    assert summary(p.stdout) == n
    assert read_dir_lines(out) == decimal_lines(n)


def test_fqcn_exec_and_null_sink(tmp_path, run_agent):
    cfg = exec_config(tmp_path / "unused", "seq 1 777", "/bin/sh -c")
    cfg["a1.sources.r1.type"] = "org.apache.flume.source.ExecSource"
    cfg["a1.sinks.k1.type"] = "org.apache.flume.sink.NullSink"
    for k in [k for k in cfg if k.startswith("a1.sinks.k1.sink.")]:
        del cfg[k]
    p = run_agent("a1", write_config(tmp_path, cfg), "--exit-when-done", timeout=30)
    assert p.returncode == 0, p.stderr
    assert summary(p.stdout) == 777


# -- 10. no compiled extensions -------------------------------------------------------------

def test_import_without_native_extensions_fails_clearly(tmp_path):
    pkg_root = tmp_path / "src"
    shutil.copytree(REPO / "fastsync", pkg_root / "fastsync",
                    ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"))
    assert not list((pkg_root / "fastsync").rglob("*.so"))
    assert (pkg_root / "fastsync" / "_native.py").exists()
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    # -S: no site processing, so the editable install's import hook (which would find the
    # built extensions in the checkout) is not installed; numpy & co. stay importable
    # through PYTHONPATH.
    site_packages = sysconfig.get_paths()["purelib"]

    def run(root: Path):
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": "%s:%s" % (root, site_packages)}
        return subprocess.run([sys.executable, "-S", "-c", "import fastsync; print(fastsync.__file__)"],
                              cwd=cwd, env=env, capture_output=True, text=True, timeout=60)

    r = run(pkg_root)
    assert r.returncode != 0, "imported without extensions: %s" % r.stdout
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError:"), r.stderr
    assert "native extensions are not built" in last
    assert "pip install" in last
    # control: the same command with the built checkout imports fine, so the failure above
    # is about the missing extensions and not about how the test runs Python
    ok = run(REPO)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == str(REPO / "fastsync" / "__init__.py")


def test_python_m_fastsync_version():
    r = subprocess.run(AGENT_CMD[:3] + ["--version"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0
    assert re.fullmatch(r"fastsync \d+\.\d+\.\d+\n", r.stdout), r.stdout


@pytest.mark.parametrize("columns", [60, 200])
def test_help_is_wrapped_to_the_terminal_width(columns):
    """The help formatter's width is $COLUMNS less 2, as argparse's default (which the CLI
    reproduces without importing shutil); every subcommand's flags are still there."""
    env = dict(os.environ, COLUMNS=str(columns))
    r = subprocess.run(AGENT_CMD[:3] + ["agent", "--help"], capture_output=True, text=True, timeout=30, env=env)
    assert r.returncode == 0, r.stderr
    widest = max(len(line) for line in r.stdout.splitlines())
    assert widest <= columns - 2 and (columns < 100 or widest > 100), widest
    assert "--metrics-port" in r.stdout and "--exit-when-done" in r.stdout
    top = subprocess.run(AGENT_CMD[:3] + ["--help"], capture_output=True, text=True, timeout=30, env=env).stdout
    for command in ("agent", "bench", "list-tables", "list-databases", "eval", "import", "export", "merge",
                    "import-all-tables", "job", "channel"):
        assert re.search(r"^\s+%s\s" % re.escape(command), top, re.M), (command, top)
    imp = subprocess.run(AGENT_CMD[:3] + ["import", "--help"], capture_output=True, text=True, timeout=30, env=env).stdout
    assert "--split-by" in imp and "--connect" in imp
