"""Crash safety of the file channel with real processes: agents killed with SIGKILL.

1. netcat (ack-every-event) -> file channel -> file_roll, killed at random moments 20+
   times and restarted on the same directories while a client keeps sending: every line
   the agent acknowledged with OK reaches the output; duplicates only from the batch a
   sink had taken but not committed when it was killed.
2. seq -> file channel (no sink) killed mid-run: `fastsync channel inspect` finds no
   corrupt record, and a restarted agent with a sink delivers exactly 0..K-1 for a K that
   is a whole number of source batches (seq commits whole batches in order).
"""
import collections
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time

from e2e_support import AgentProcess, agent_argv, dir_files, free_port, poll, wait_for_port, write_config

SINK_BATCH = 100
KILLS = 22


def file_channel_props(root, **extra):
    props = {
        "a1.channels": "c1",
        "a1.channels.c1.type": "file",
        "a1.channels.c1.checkpointDir": root / "checkpoint",
        "a1.channels.c1.dataDirs": "%s,%s" % (root / "data1", root / "data2"),
        "a1.channels.c1.capacity": 1000000,
        "a1.channels.c1.transactionCapacity": 10000,
        "a1.channels.c1.maxFileSize": 1 << 20,
        "a1.channels.c1.checkpointInterval": 200,
        "a1.channels.c1.minimumRequiredSpace": 0,
    }
    props.update({"a1.channels.c1." + k: v for k, v in extra.items()})
    return props


def netcat_config(root, port):
    props = {
        "a1.sources": "r1",
        "a1.sinks": "k1",
        "a1.sources.r1.type": "netcat",
        "a1.sources.r1.bind": "127.0.0.1",
        "a1.sources.r1.port": port,
        "a1.sources.r1.channels": "c1",
        "a1.sinks.k1.type": "file_roll",
        "a1.sinks.k1.channel": "c1",
        "a1.sinks.k1.sink.directory": root / "out",
        "a1.sinks.k1.sink.rollInterval": 0,
        "a1.sinks.k1.sink.batchSize": SINK_BATCH,
    }
    props.update(file_channel_props(root))
    return write_config(root, props, "netcat.properties")


class Sender:
    """Sends `id-N` lines in bursts and records every id the agent acknowledged."""

    def __init__(self, port, rng):
        self.port, self.rng = port, rng
        self.next_id = 0
        self.sent = set()
        self.acked = set()

    def run_until(self, deadline):
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=2)
        except OSError:
            return
        buf = b""
        pending = collections.deque()
        try:
            sock.settimeout(2)
            while time.monotonic() < deadline:
                burst = [self.next_id + i for i in range(self.rng.randint(1, 200))]
                self.next_id += len(burst)
                sock.sendall(b"".join(b"id-%d\n" % i for i in burst))
                self.sent.update(burst)
                pending.extend(burst)
                while pending:       # one reply line per line sent, in order
                    while b"\n" not in buf:
                        chunk = sock.recv(65536)
                        if not chunk:
                            return
                        buf += chunk
                    line, buf = buf.split(b"\n", 1)
                    i = pending.popleft()
                    if line == b"OK":
                        self.acked.add(i)
        except OSError:
            return       # the agent was killed under us: what was acked is recorded
        finally:
            sock.close()


def output_ids(out_dir):
    ids = []
    for p in dir_files(out_dir):
        data = p.read_bytes()
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        elif lines:
            # a write cut by SIGKILL can leave a partial last line in the file it was in
            lines.pop()
        for line in lines:
            m = re.fullmatch(rb"id-(\d+)", line)
            assert m, "garbled line %r in %s" % (line, p)
            ids.append(int(m.group(1)))
    return ids


def start_agent(root, conf, port, tag):
    agent = AgentProcess(agent_argv("a1", conf, "--log-level", "WARNING"), root, tag=tag)
    wait_for_port(port, timeout=30, alive=agent.alive)
    return agent


def test_kill_9_twenty_times_loses_no_acknowledged_event(tmp_path):
    rng = random.Random(20261124)
    port = free_port()
    conf = netcat_config(tmp_path, port)
    (tmp_path / "out").mkdir()
    sender = Sender(port, rng)
    kills = 0
    for cycle in range(KILLS):
        agent = start_agent(tmp_path, conf, port, "agent-%d" % cycle)
        try:
            send_for = rng.uniform(0.05, 0.5)
            t = threading.Thread(target=sender.run_until, args=(time.monotonic() + send_for,))
            t.start()
            if cycle % 3 == 2:
                t.join()                                 # stop sending: kill while the sink drains
                time.sleep(rng.uniform(0.0, 0.1))
            else:
                time.sleep(send_for * rng.uniform(0.3, 1.0))  # kill mid-burst
            os.kill(agent.pid, signal.SIGKILL)
            assert agent.wait(10) == -signal.SIGKILL
            kills += 1
            t.join()
        finally:
            agent.kill()
    # a last run drains everything, then stops cleanly
    agent = start_agent(tmp_path, conf, port, "agent-final")
    try:
        def drained():
            n = len(output_ids(tmp_path / "out"))
            time.sleep(0.3)
            return n == len(output_ids(tmp_path / "out")) and n >= len(sender.acked)
        poll(drained, 60, message="output to stop growing")
        assert agent.stop(signal.SIGTERM, 30) == 0, agent.stderr[-2000:]
    finally:
        agent.kill()
    ids = output_ids(tmp_path / "out")
    counts = collections.Counter(ids)
    missing = sorted(sender.acked - set(counts))
    unknown = sorted(set(counts) - sender.sent)
    duplicates = sum(c - 1 for c in counts.values() if c > 1)
    print("crash test: %d kills, %d lines sent, %d acked, %d delivered (%d distinct), %d duplicates"
          % (kills, len(sender.sent), len(sender.acked), len(ids), len(counts), duplicates))
    assert kills >= 20
    assert len(sender.acked) > 1000, "too little traffic to mean anything: %d acked" % len(sender.acked)
    assert not missing, "%d acknowledged events lost, e.g. %s" % (len(missing), missing[:10])
    assert not unknown, "events never sent appeared: %s" % unknown[:10]
    assert duplicates <= kills * SINK_BATCH, "%d duplicates for %d kills" % (duplicates, kills)


def seq_config(root, n, sink):
    props = {
        "a1.sources": "r1",
        "a1.sources.r1.type": "seq",
        "a1.sources.r1.totalEvents": n,
        "a1.sources.r1.batchSize": 1000,
        "a1.sources.r1.channels": "c1",
    }
    if sink:
        props.update({"a1.sinks": "k1", "a1.sinks.k1.type": "file_roll", "a1.sinks.k1.channel": "c1",
                      "a1.sinks.k1.sink.directory": root / "out", "a1.sinks.k1.sink.rollInterval": 0,
                      "a1.sinks.k1.sink.batchSize": 1000})
    props.update(file_channel_props(root, maxFileSize=4 << 20))
    return write_config(root, props, "seq-%s.properties" % ("sink" if sink else "nosink"))


def test_kill_9_under_load_leaves_a_clean_prefix(tmp_path):
    rng = random.Random(7)
    for attempt in range(4):
        root = tmp_path / ("run%d" % attempt)
        root.mkdir()
        (root / "out").mkdir()
        conf = seq_config(root, 50_000_000, sink=False)
        agent = AgentProcess(agent_argv("a1", conf, "--log-level", "WARNING"), root, tag="load")
        try:
            # wait until the log has data, then kill at a random moment
            poll(lambda: any(p.stat().st_size > 100_000 for d in ("data1", "data2")
                             for p in (root / d).glob("log-*")) or not agent.alive(), 30, message="log data")
            time.sleep(rng.uniform(0.0, 0.8))
            os.kill(agent.pid, signal.SIGKILL)
            assert agent.wait(10) == -signal.SIGKILL, agent.stderr[-2000:]
        finally:
            agent.kill()
        out = subprocess.run([sys.executable, "-m", "fastsync", "channel", "inspect", "--checkpoint-dir", str(root / "checkpoint"),
                              "--data-dirs", "%s,%s" % (root / "data1", root / "data2"), "--json"],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
        report = json.loads(out.stdout)
        assert report["ok"] and not report["corrupt_records"], report
        waiting = report["events"]
        assert waiting > 0 and waiting % 1000 == 0, waiting
        # drain with a sink (a new source of 0 events: only what the channel holds comes out)
        conf2 = seq_config(root, 0, sink=True)
        drain = AgentProcess(agent_argv("a1", conf2, "--exit-when-done", "--log-level", "WARNING"), root, tag="drain")
        try:
            assert drain.wait(120) == 0, drain.stderr[-2000:]
        finally:
            drain.kill()
        data = b"".join(p.read_bytes() for p in dir_files(root / "out"))
        got = data.split()
        assert len(got) == waiting, (len(got), waiting)
        assert got == [b"%d" % i for i in range(waiting)], "not the prefix 0..%d in order" % (waiting - 1)
        print("kill under load %d: %d events recovered as 0..%d" % (attempt, waiting, waiting - 1))
