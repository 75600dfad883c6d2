"""Crash safety of the durable `file` channel: real agents killed with SIGKILL.

1. test_kill_9_netcat_file_channel_no_acked_event_lost
   netcat (ack-every-event) -> file channel -> file_roll. A client sends `id-N` lines in
   bursts and records every id the agent answered OK (an OK comes only after the channel
   commit). The agent is killed with SIGKILL at random (seeded) moments, 20+ times,
   sometimes mid-traffic, sometimes while only the sink is still draining, sometimes
   during start-up (replay), and restarted on the same directories. A last run drains
   the channel and stops with SIGTERM. Then: every acknowledged id is in the output;
   every output line is an id that was sent; duplicates only come from the batch the
   sink had written but not committed when it was killed (at most sink.batchSize per
   kill, and only as the first lines of a later run, copying lines from just before).
2. test_kill_9_seq_under_load_recovers_a_clean_prefix
   seq (batchSize 1000) -> file channel, no sink, killed under load: `fastsync channel
   inspect --json` finds no corrupt record, and an agent with a file_roll sink restarted
   on the same directories delivers exactly 0..K-1, K a multiple of 1000 and at least
   what the source had reported committed before the kill. Repeated with other moments.

The seed can be changed with FASTSYNC_CRASH_SEED=<int> to explore other kill moments.
"""
from __future__ import annotations

import bisect
import collections
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from e2e_support import (AgentProcess, agent_argv, dir_files, free_port, get_json, poll, read_dir_bytes,
                         wait_for_json, write_config)

SEED = int(os.environ.get("FASTSYNC_CRASH_SEED", "20240611"))
SINK_BATCH = 100          # file_roll sink.batchSize: the most one kill can redeliver
CYCLES = 26               # kill/restart cycles in test 1 (>= 20 required)
# Kill moments of test 1, by cycle (None: "traffic" or "drain" at random):
#   traffic        SIGKILL while lines are being sent and acknowledged
#   drain          stop sending, wait for every answer, SIGKILL 0-150 ms later
#   backlog        a run without the sink (downstream down): the channel fills, SIGKILL
#                  mid-traffic; the next runs start with a backlog of ~200k events
#   backlog-drain  SIGKILL while the sink drains that backlog (full batches back to
#                  back, so the kill often lands between a batch's write and its commit)
#   startup        SIGKILL during start-up, before the port opens
MODES = [None, None, "backlog", "backlog-drain", "backlog-drain", "startup"]
MAX_INFLIGHT = 3000       # lines sent but not yet answered, per connection
LINE = re.compile(rb"id-(\d+)")
# what a write cut short by SIGKILL can leave as the unterminated last line of a file:
# a proper prefix of a well-formed line
PARTIAL = re.compile(rb"(i(d(-\d*)?)?)?")


# -- configuration --------------------------------------------------------------------------

def file_channel_props(root: Path, **overrides) -> dict:
    props = {
        "a1.channels": "c1",
        "a1.channels.c1.type": "file",
        "a1.channels.c1.checkpointDir": root / "checkpoint",
        "a1.channels.c1.dataDirs": "%s,%s" % (root / "data1", root / "data2"),
        "a1.channels.c1.capacity": 5_000_000,
        "a1.channels.c1.transactionCapacity": 1000,
        "a1.channels.c1.maxFileSize": 1 << 20,          # segments roll every MB
        "a1.channels.c1.checkpointInterval": 200,        # checkpoints (and segment deletes) mid-run
        "a1.channels.c1.minimumRequiredSpace": 0,
        "a1.channels.c1.keep-alive": 1,
    }
    props.update({"a1.channels.c1." + k: v for k, v in overrides.items()})
    return props


def channel_dirs(root: Path) -> list[str]:
    return ["--checkpoint-dir", str(root / "checkpoint"), "--data-dirs", "%s,%s" % (root / "data1", root / "data2")]


def inspect_channel(root: Path) -> tuple[int, dict | None, str]:
    """(exit code, parsed JSON or None, raw output) of `fastsync channel inspect --json`."""
    r = subprocess.run([sys.executable, "-m", "fastsync", "channel", "inspect", *channel_dirs(root), "--json"],
                       capture_output=True, text=True, timeout=120)
    try:
        report = json.loads(r.stdout)
    except ValueError:
        report = None
    return r.returncode, report, r.stdout[-3000:] + r.stderr[-3000:]


def netcat_conf(root: Path, port: int, sink: bool = True) -> Path:
    """netcat -> file channel [-> file_roll]. Without the sink (the downstream "down"),
    a run only fills the channel, so that the next run starts with a backlog to drain."""
    props = {
        "a1.sources": "r1",
        "a1.sources.r1.type": "netcat",
        "a1.sources.r1.bind": "127.0.0.1",
        "a1.sources.r1.port": port,
        "a1.sources.r1.ack-every-event": "true",
        "a1.sources.r1.channels": "c1",
    }
    if sink:
        props.update({
            "a1.sinks": "k1",
            "a1.sinks.k1.type": "file_roll",
            "a1.sinks.k1.channel": "c1",
            "a1.sinks.k1.sink.directory": root / "out",
            "a1.sinks.k1.sink.rollInterval": 0,
            "a1.sinks.k1.sink.batchSize": SINK_BATCH,
        })
    props.update(file_channel_props(root))
    return write_config(root, props, "netcat-%d%s.properties" % (port, "" if sink else "-nosink"))


def wait_for_port_fast(port: int, agent: AgentProcess, timeout: float = 30.0) -> None:
    """wait_for_port with a 5 ms step (a backlog of 200k events drains in ~80 ms) and the
    agent's stderr in the message if it died while starting."""
    deadline = time.monotonic() + timeout
    while True:
        assert agent.alive(), "agent exited while starting (code %s):\n%s" % (agent.returncode, agent.stderr[-3000:])
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            assert time.monotonic() < deadline, "nothing listening on port %d after %gs" % (port, timeout)
            time.sleep(0.005)


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as the netcat source binds
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# -- the client -----------------------------------------------------------------------------

class Sender:
    """Sends `id-N` lines in random bursts over one connection per agent run, reading the
    replies on a second thread; every id answered OK goes into `acked`. Ids are never
    re-sent, so the source side cannot create duplicates."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.next_id = 0
        self.sent: set[int] = set()
        self.acked: set[int] = set()
        self.failed = 0                  # FAILED replies (e.g. channel full): not acked
        self.protocol_errors: list[str] = []
        self._lock = threading.Lock()

    def connect(self, port: int) -> "Connection":
        return Connection(self, port)


class Connection:
    def __init__(self, sender: Sender, port: int):
        self.s = sender
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.pending: collections.deque[int] = collections.deque()   # sent, reply not read yet
        self.cond = threading.Condition()
        self.stop_sending = threading.Event()
        self.reader_done = threading.Event()
        self.writer = threading.Thread(target=self._write, name="sender-write", daemon=True)
        self.reader = threading.Thread(target=self._read, name="sender-read", daemon=True)
        self.reader.start()
        self.writer.start()

    def _write(self) -> None:
        s = self.s
        try:
            while not self.stop_sending.is_set() and not self.reader_done.is_set():
                with self.cond:
                    if len(self.pending) >= MAX_INFLIGHT:
                        self.cond.wait(0.05)
                        continue
                    with s._lock:       # ids are shared by all connections
                        n = s.rng.randint(1, 300)
                        burst = range(s.next_id, s.next_id + n)
                        s.next_id += n
                        s.sent.update(burst)
                        pause = s.rng.random() < 0.3
                    # recorded before the bytes leave: a reply can never precede its id
                    self.pending.extend(burst)
                self.sock.sendall(b"".join(b"id-%d\n" % i for i in burst))
                if pause:
                    time.sleep(0.005)
        except OSError:
            pass       # the agent was killed under us

    def _read(self) -> None:
        s = self.s
        buf = b""
        try:
            while True:
                try:
                    chunk = self.sock.recv(1 << 16)
                except socket.timeout:
                    if self.stop_sending.is_set():
                        break
                    continue
                if not chunk:
                    break
                buf += chunk
                *lines, buf = buf.split(b"\n")
                with self.cond:
                    for line in lines:
                        if not self.pending:
                            s.protocol_errors.append("reply %r with no line outstanding" % line)
                            continue
                        i = self.pending.popleft()
                        if line == b"OK":
                            with s._lock:
                                s.acked.add(i)
                        elif line.startswith(b"FAILED"):
                            s.failed += 1
                        else:
                            s.protocol_errors.append("reply %r for id-%d" % (line, i))
                    self.cond.notify_all()
        except OSError:
            pass       # connection reset by the kill: what was read is recorded
        finally:
            self.reader_done.set()
            with self.cond:
                self.cond.notify_all()

    def finish_sending(self, timeout: float = 15.0) -> None:
        """Stop sending and wait until every line sent was answered (the agent is alive)."""
        self.stop_sending.set()
        self.writer.join(timeout)
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.pending and not self.reader_done.is_set():
                left = deadline - time.monotonic()
                assert left > 0, "%d lines still unanswered after %gs" % (len(self.pending), timeout)
                self.cond.wait(left)

    def close(self) -> None:
        self.stop_sending.set()
        self.writer.join(10)
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.reader.join(10)
        self.sock.close()


# -- the output -----------------------------------------------------------------------------

class Output:
    """The sink's files, parsed: ids per file in file order, plus what was wrong."""

    def __init__(self, out_dir: Path, final_files: set[str]):
        self.files: list[tuple[str, list[int]]] = []
        self.garbled: list[str] = []
        self.partial: list[str] = []
        for p in dir_files(out_dir):
            data = p.read_bytes()
            pieces = data.split(b"\n")
            tail = pieces.pop()          # b"" when the file ends with a newline
            if tail:
                # A file_roll write is one write(2) of whole lines; SIGKILL can cut it only
                # between bytes, so an unterminated last line may exist in a file an agent
                # was writing when killed -- but it must be a prefix of a good line, and
                # never in a file of the last run, which was stopped cleanly.
                if p.name in final_files or not PARTIAL.fullmatch(tail):
                    self.garbled.append("%s: unterminated last line %r" % (p.name, tail[:60]))
                else:
                    self.partial.append("%s: %r" % (p.name, tail))
            ids = []
            for n, line in enumerate(pieces, 1):
                m = LINE.fullmatch(line)
                if m is None:
                    self.garbled.append("%s line %d: %r" % (p.name, n, line[:60]))
                else:
                    ids.append(int(m.group(1)))
            self.files.append((p.name, ids))

    @property
    def ids(self) -> list[int]:
        return [i for _, ids in self.files for i in ids]

    def redelivered_batches(self) -> int:
        """Files that start with lines already delivered before (one per kill that hit the
        sink between a batch's write and its commit)."""
        seen: set[int] = set()
        n = 0
        for _, ids in self.files:
            n += bool(ids) and ids[0] in seen
            seen.update(ids)
        return n

    def misplaced_duplicates(self) -> list[str]:
        """Duplicates that are not a redelivery of the last uncommitted batch: a run's
        redelivered lines are the first lines of its file (the batch goes back to the
        channel's head) and copy lines from the last sink batch written before it."""
        seen: set[int] = set()
        before: list[int] = []          # every id delivered so far, in order
        bad = []
        for name, ids in self.files:
            dup_at = [k for k, i in enumerate(ids) if i in seen]
            if dup_at:
                recent = set(before[-SINK_BATCH:])
                if dup_at != list(range(len(dup_at))):
                    bad.append("%s: duplicates at lines %s, not a prefix of the file" % (name, [k + 1 for k in dup_at][:10]))
                elif len(dup_at) > SINK_BATCH:
                    bad.append("%s: %d duplicated lines at its start, more than one batch (%d)" % (name, len(dup_at), SINK_BATCH))
                not_recent = [ids[k] for k in dup_at if ids[k] not in recent]
                if not_recent:
                    bad.append("%s: duplicates not among the last %d lines written before: %s"
                               % (name, SINK_BATCH, not_recent[:10]))
            seen.update(ids)
            before.extend(ids)
        return bad


def line_count(out_dir: Path) -> int:
    return sum(p.read_bytes().count(b"\n") for p in dir_files(out_dir))


def kill9(agent: AgentProcess) -> None:
    """SIGKILL by PID, then wait for it; the process must have died of that signal."""
    os.kill(agent.pid, signal.SIGKILL)
    rc = agent.wait(15)
    assert rc == -signal.SIGKILL, "agent %d exited with %s, not by SIGKILL; stderr:\n%s" % (agent.pid, rc, agent.stderr[-2000:])


# -- test 1 ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_kill_9_netcat_file_channel_no_acked_event_lost(tmp_path, capsys):
    t_start = time.monotonic()
    rng = random.Random(SEED)
    out = tmp_path / "out"
    sender = Sender(random.Random(SEED + 1))
    kills = collections.Counter()
    startup_times = []
    cycle_ids = []                    # (first id a run could send, its name): to place a loss
    port = free_port()
    for cycle in range(CYCLES):
        if not port_is_free(port):
            port = free_port()
        mode = MODES[cycle % len(MODES)] or rng.choice(["traffic", "traffic", "drain"])
        conf = netcat_conf(tmp_path, port, sink=(mode != "backlog"))
        cycle_ids.append((sender.next_id, "run %d (%s)" % (cycle, mode)))
        agent = AgentProcess(agent_argv("a1", conf, "--log-level", "WARNING"), tmp_path, tag="run%02d-%s" % (cycle, mode))
        conns = []
        try:
            if mode == "startup":
                # during start-up (replay of the log, truncation of a torn tail, first
                # checkpoint), at a random fraction of the measured start-up time
                time.sleep(rng.uniform(0.3, 1.0) * sorted(startup_times)[len(startup_times) // 2])
            elif mode == "backlog-drain":
                # the sink starts draining the backlog just before the port opens, and a
                # backlog of ~200k events is gone in ~80 ms: kill early in that
                wait_for_port_fast(port, agent)
                conns = [sender.connect(port)]
                time.sleep(rng.uniform(0.0, 0.025))
            else:
                wait_for_port_fast(port, agent)
                startup_times.append(time.monotonic() - agent.started_at)
                conns = [sender.connect(port) for _ in range(2)]
                time.sleep(rng.uniform(0.05, 0.5) if mode != "backlog" else rng.uniform(0.8, 1.2))
                if mode == "drain":
                    for c in conns:
                        c.finish_sending()       # every line answered; the sink may still be busy
                    time.sleep(rng.uniform(0.0, 0.15))
                # "traffic", "backlog": killed while lines are in flight
            assert agent.alive(), "agent exited on its own (code %s):\n%s" % (agent.returncode, agent.stderr[-3000:])
            kill9(agent)
            kills[mode] += 1
        finally:
            for c in conns:
                c.close()
            agent.kill()
    files_before_final = {p.name for p in dir_files(out)}

    # the last run: no traffic; drain the channel, then stop cleanly
    if not port_is_free(port):
        port = free_port()
    mport = free_port()
    conf = netcat_conf(tmp_path, port)
    agent = AgentProcess(agent_argv("a1", conf, "--log-level", "WARNING", "--metrics-port", mport), tmp_path, tag="final")
    try:
        url = "http://127.0.0.1:%d/metrics" % mport
        try:
            wait_for_json(url, timeout=30, alive=agent.alive)
        except AssertionError as exc:
            raise AssertionError("%s; stderr:\n%s" % (exc, agent.stderr[-3000:])) from None
        state = {"last": None}

        def drained():
            m = get_json(url)
            now = (m["CHANNEL.c1"]["ChannelSize"], m["SINK.k1"]["EventDrainSuccessCount"], line_count(out))
            done = now[0] == "0" and now == state["last"]
            state["last"] = now
            return done
        poll(drained, 60, interval=0.3, message="the channel to drain (ChannelSize, drained, lines)")
        assert agent.stop(signal.SIGTERM, 30) == 0, agent.stderr[-3000:]
    finally:
        agent.kill()
    rc, report, raw = inspect_channel(tmp_path)
    assert rc == 0 and report is not None, "channel inspect after the final run: exit %d\n%s" % (rc, raw)

    o = Output(out, {p.name for p in dir_files(out)} - files_before_final)
    ids = o.ids
    counts = collections.Counter(ids)
    acked, sent = sender.acked, sender.sent
    missing = sorted(acked - counts.keys())
    unknown = sorted(counts.keys() - sent)
    duplicates = sum(c - 1 for c in counts.values() if c > 1)
    dup_ids = sum(1 for c in counts.values() if c > 1)
    n_kills = sum(kills.values())
    elapsed = time.monotonic() - t_start
    figures = ("crash test (seed %d): %d kills %s; sent %d, acked %d, FAILED replies %d, delivered lines %d "
          "(%d distinct, %d sent-but-unacked ids delivered), duplicates %d (%d ids, %d redelivered batches), "
          "partial last lines %d, files %d, channel events left %d, %.1f s"
          % (SEED, n_kills, dict(kills), len(sent), len(acked), sender.failed, len(ids), len(counts),
             len(counts.keys() - acked), duplicates, dup_ids, o.redelivered_batches(), len(o.partial), len(o.files),
             report["events"], elapsed))
    with capsys.disabled():           # in the log even with -q and a pass
        print("\n" + figures)

    assert n_kills >= 20, kills
    assert len(acked) >= 5000, "too little traffic to mean anything: %d acked" % len(acked)
    assert not sender.protocol_errors, sender.protocol_errors[:10]
    assert not o.garbled, "garbled output lines: %s; %s" % (o.garbled[:10], figures)
    if missing:
        firsts = [f for f, _ in cycle_ids]
        runs = collections.Counter(cycle_ids[bisect.bisect_right(firsts, i) - 1][1] for i in missing)
    assert not missing, "LOSS: %d acknowledged events are not in the output, e.g. %s; acked in: %s; %s" % (
        len(missing), missing[:20], dict(runs), figures)
    assert not unknown, "events that were never sent appeared in the output: %s" % unknown[:20]
    assert duplicates <= n_kills * SINK_BATCH, \
        "%d duplicates for %d kills: more than one sink batch (%d) per kill" % (duplicates, n_kills, SINK_BATCH)
    bad = o.misplaced_duplicates()
    assert not bad, "duplicates that are not the last uncommitted batch of a kill: %s; %s" % (bad[:10], figures)
    assert report["events"] == 0 and report["ok"], "channel not empty / not ok after the drain: %s" % report
    assert elapsed < 90, "the test took %.1f s" % elapsed


# -- test 2 ---------------------------------------------------------------------------------

SEQ_BATCH = 1000


def seq_conf(root: Path, total: int, with_sink: bool) -> Path:
    props = {
        "a1.sources": "r1",
        "a1.sources.r1.type": "seq",
        "a1.sources.r1.totalEvents": total,
        "a1.sources.r1.batchSize": SEQ_BATCH,
        "a1.sources.r1.channels": "c1",
    }
    if with_sink:
        props.update({"a1.sinks": "k1", "a1.sinks.k1.type": "file_roll", "a1.sinks.k1.channel": "c1",
                      "a1.sinks.k1.sink.directory": root / "out", "a1.sinks.k1.sink.rollInterval": 0,
                      "a1.sinks.k1.sink.batchSize": SEQ_BATCH})
    props.update(file_channel_props(root, capacity=100_000_000, transactionCapacity=SEQ_BATCH))
    return write_config(root, props, "seq-%s.properties" % ("sink" if with_sink else "nosink"))


def first_sequence_problem(data: bytes, k: int) -> str:
    """'' if data is exactly b"0\\n1\\n...\\n<k-1>\\n"; else where it first differs.
    Compared in chunks, so millions of lines need no giant lists."""
    pos, step = 0, 100_000
    for lo in range(0, k, step):
        chunk = b"".join(b"%d\n" % i for i in range(lo, min(k, lo + step)))
        got = data[pos:pos + len(chunk)]
        if got != chunk:
            exp_lines, got_lines = chunk.split(b"\n"), got.split(b"\n")
            j = next((j for j, (a, b) in enumerate(zip(got_lines, exp_lines)) if a != b), len(got_lines) - 1)
            if pos + len(got) == len(data) and exp_lines[j].startswith(got_lines[j]):
                return "the output ends at line %d (%r), expected %d lines" % (lo + j, got_lines[j], k)
            return "line %d is %r, expected %r (next lines %r)" % (lo + j, got_lines[j], exp_lines[j], got_lines[j + 1:j + 4])
        pos += len(chunk)
    if pos != len(data):
        return "%d extra bytes after line %d: %r" % (len(data) - pos, k - 1, data[pos:pos + 60])
    return ""


@pytest.mark.slow
def test_kill_9_seq_under_load_recovers_a_clean_prefix(tmp_path, capsys):
    rng = random.Random(SEED + 2)
    figures = []
    for attempt in range(4):
        root = tmp_path / ("run%d" % attempt)
        root.mkdir()
        mport = free_port()
        load = AgentProcess(agent_argv("a1", seq_conf(root, 10**10, with_sink=False), "--log-level", "WARNING",
                                       "--metrics-port", mport), root, tag="load")
        try:
            url = "http://127.0.0.1:%d/metrics" % mport
            wait_for_json(url, timeout=30, alive=load.alive)
            poll(lambda: int(get_json(url)["SOURCE.r1"]["EventAcceptedCount"]) > 0, 30, message="the first commit")
            time.sleep(rng.uniform(0.0, 1.5))
            # EventAcceptedCount grows only after a put was committed (and synced): a lower
            # bound on what the channel must hold after the kill
            accepted = int(get_json(url)["SOURCE.r1"]["EventAcceptedCount"])
            assert load.alive(), load.stderr[-3000:]
            kill9(load)
        finally:
            load.kill()

        rc, report, raw = inspect_channel(root)
        assert rc == 0, "attempt %d: channel inspect exit %d after kill -9 (corrupt committed data?):\n%s" % (attempt, rc, raw)
        assert report is not None and report["ok"] and not report["corrupt_records"], report
        waiting = report["events"]
        assert waiting % SEQ_BATCH == 0, "attempt %d: %d events waiting, not whole batches of %d" % (attempt, waiting, SEQ_BATCH)
        assert waiting >= accepted, "attempt %d: LOSS: %d events waiting, but %d were committed before the kill" % (
            attempt, waiting, accepted)

        # restart on the same directories with a sink; the new source has nothing to send,
        # so exactly what the channel recovered comes out
        drain = AgentProcess(agent_argv("a1", seq_conf(root, 0, with_sink=True), "--exit-when-done",
                                        "--log-level", "WARNING"), root, tag="drain")
        try:
            assert drain.wait(120) == 0, "attempt %d: drain agent failed:\n%s" % (attempt, drain.stderr[-3000:])
        finally:
            drain.kill()
        data = read_dir_bytes(root / "out")
        k = data.count(b"\n")
        problem = first_sequence_problem(data, k)
        assert not problem, "attempt %d: output is not the sequence 0..%d: %s" % (attempt, k - 1, problem)
        assert k == waiting, "attempt %d: %d events delivered, inspect reported %d waiting" % (attempt, k, waiting)
        assert k % SEQ_BATCH == 0 and k >= accepted, (k, accepted)
        rc2, report2, raw2 = inspect_channel(root)
        assert rc2 == 0 and report2["events"] == 0, "attempt %d: after the drain: %s" % (attempt, raw2)
        figures.append("K=%d (>= %d committed before the kill; %d segments, torn tail %s)"
                       % (k, accepted, report["segments"], "yes" if report["torn_tail"] else "no"))
        for d in ("out", "data1", "data2"):      # up to ~100 MB per attempt; kept only on failure
            shutil.rmtree(root / d)
    with capsys.disabled():
        print("\nkill -9 under load (seed %d): %s" % (SEED + 2, "; ".join(figures)))
