"""End-to-end tests of the `dirtree` source (and HdfsSource's configuration): a real `fastsync
agent` following a local tree and one on the real HDFS while files are added, appended,
deleted and truncated; kill -9 and restart on the position file; the positions in ZooKeeper
carried over to an agent started in another working directory. The example
examples/dirtree/hdfs-source.properties runs here, against a local tree and against HDFS."""
from __future__ import annotations

import collections
import json
import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest

from e2e_support import (count_lines, free_port, get_json, lines_so_far, multiset_problems, poll, read_dir_lines,
                          write_config)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
EXAMPLE = "dirtree/hdfs-source.properties"
BATCH = 50
SINK_BATCH = 100


def dirtree_config(tmp_path: Path, tree: Path, sink: dict | None = None, channel: dict | None = None, **source) -> dict:
    """dirtree (tree, quick polls) -> memory (or `channel`) -> file_roll into out/ (or `sink`)."""
    cfg = {"a1.sources": "r1", "a1.channels": "c1", "a1.sinks": "k1",
           "a1.sources.r1.type": "dirtree", "a1.sources.r1.path": tree, "a1.sources.r1.channels": "c1",
           "a1.sources.r1.batchSize": BATCH, "a1.sources.r1.pollInterval": 100, "a1.sources.r1.idleTimeout": 400,
           "a1.sources.r1.positionFile": tmp_path / "pos" / "positions.json",
           "a1.channels.c1.type": "memory", "a1.channels.c1.capacity": 100000, "a1.channels.c1.transactionCapacity": 1000,
           "a1.sinks.k1.channel": "c1"}
    cfg.update({"a1.sources.r1." + k: v for k, v in source.items()})
    cfg.update({"a1.channels.c1." + k: v for k, v in (channel or {}).items()})
    sink = sink or {"type": "file_roll", "sink.directory": tmp_path / "out", "sink.rollInterval": 0,
                    "sink.batchSize": SINK_BATCH}
    cfg.update({"a1.sinks.k1." + k: v for k, v in sink.items()})
    return cfg


def lines(tag: str, start: int, n: int) -> list[bytes]:
    return [b"%s-%06d" % (tag.encode(), i) for i in range(start, start + n)]


def append(path: Path, items: list[bytes], raw: bytes = b"") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as f:
        f.write(b"".join(x + b"\n" for x in items) + raw)


def wait_lines(out: Path, n: int, proc, timeout: float = 30.0) -> list[bytes]:
    def enough():
        assert proc.alive(), "agent exited (%s):\n%s" % (proc.returncode, proc.stderr[-3000:])
        return len(lines_so_far(out)) >= n
    poll(enough, timeout, interval=0.05, message="%d lines in %s" % (n, out))
    time.sleep(0.5)      # anything extra (a duplicate, an ignored file) would show up by now
    return lines_so_far(out)


def in_file_order(got: list[bytes], tag: str) -> list[bytes]:
    return [x for x in got if x.startswith(tag.encode() + b"-")]


def example_copy(tmp_path: Path, keys: dict, extra: str = "") -> Path:
    """examples/dirtree/hdfs-source.properties with `keys` replaced (each there once) and
    `extra` lines added."""
    text = (EXAMPLES / EXAMPLE).read_text(encoding="utf-8")
    for key, value in keys.items():
        text, n = re.subn(r"^(%s\s*=\s*).*$" % re.escape(key), lambda m, v=value: m.group(1) + str(v), text, flags=re.M)
        assert n == 1, "%s: key %s defined %d times" % (EXAMPLE, key, n)
    path = tmp_path / "hdfs-source.properties"
    path.write_text(text + extra, encoding="utf-8")
    return path


# -- a local tree -------------------------------------------------------------------------------

def test_new_files_appends_subdirectories_and_patterns(tmp_path, agent):
    tree, out = tmp_path / "tree", tmp_path / "out"
    append(tree / "a.log", lines("a", 0, 120))
    append(tree / "skip-me.log", lines("skip", 0, 10))         # ignorePattern
    append(tree / "notes.txt", lines("txt", 0, 10))            # not includePattern
    append(tree / ".hidden.log", lines("hidden", 0, 10))       # hidden files never
    mport = free_port()
    p = agent("a1", write_config(tmp_path, dirtree_config(tmp_path, tree, includePattern=r"\.log$",
                                                           ignorePattern=r"^skip")), "--metrics-port", mport)
    assert wait_lines(out, 120, p) == lines("a", 0, 120)
    append(tree / "a.log", lines("a", 120, 80))                 # appended while followed
    append(tree / "sub" / "deeper" / "b.log", lines("b", 0, 60), raw=b"b-last-without-newline")
    got = wait_lines(out, 261, p)
    assert in_file_order(got, "a") == lines("a", 0, 200)
    # the last line without its newline is a line once the file stayed unchanged idleTimeout ms
    assert in_file_order(got, "b") == lines("b", 0, 60) + [b"b-last-without-newline"]
    assert multiset_problems(got, lines("a", 0, 200) + lines("b", 0, 60) + [b"b-last-without-newline"]) == ""
    pos = json.loads((tmp_path / "pos" / "positions.json").read_text())
    assert {r["file"]: r["offset"] for r in pos} == {str(tree / "a.log"): (tree / "a.log").stat().st_size,
                                                     str(tree / "sub/deeper/b.log"): (tree / "sub/deeper/b.log").stat().st_size}
    source = get_json("http://127.0.0.1:%d/metrics" % mport)["SOURCE.r1"]
    assert int(source["EventAcceptedCount"]) == int(source["EventReceivedCount"]) == 261, source
    assert p.stop(timeout=20) == 0, p.stderr


def test_a_full_channel_is_retried_without_loss(tmp_path, agent):
    tree = tmp_path / "tree"
    append(tree / "a.log", lines("a", 0, 3000))
    # a logger sink is slow enough that a channel of one batch is found full again and again
    cfg = dirtree_config(tmp_path, tree, {"type": "logger", "maxBytesToLog": 16},
                         {"capacity": 100, "transactionCapacity": 100, "keep-alive": 0}, batchSize=100)
    mport = free_port()
    p = agent("a1", write_config(tmp_path, cfg), "--metrics-port", mport)
    poll(lambda: p.stderr.count("Event: ") >= 3000 or not p.alive(), 60, message="3000 events")
    time.sleep(0.5)
    source = get_json("http://127.0.0.1:%d/metrics" % mport)["SOURCE.r1"]
    assert p.stop(timeout=20) == 0, p.stderr
    assert p.stderr.count("Event: ") == 3000
    bodies = re.findall(r"Event: \{ headers:\{\} body: .*?(a-\d{6})", p.stderr)
    assert bodies == [x.decode() for x in lines("a", 0, 3000)]
    assert int(source["ChannelWriteFail"]) > 0 and int(source["EventAcceptedCount"]) == 3000, source


@pytest.mark.parametrize("keys, message", [
    ({}, r"a1\.sources\.r1\.path: the tree to follow is missing"),
    ({"path": "nope"}, r"a1\.sources\.r1\.path: Directory does not exist: nope"),
    ({"hdfs.path": "/data"}, r"a1\.sources\.r1\.hdfs\.uri: hdfs\.path /data needs hdfs\.uri"),
    ({"path": ".", "hdfs.path": "/data"}, r"a1\.sources\.r1\.path: give either path or hdfs\.uri"),
    ({"path": ".", "hdfs.zkQuorum": "zk1"}, r"a1\.sources\.r1\.hdfs\.zkQuorum: .*'zk1' is not host:port"),
    ({"path": ".", "includePattern": "("}, r"a1\.sources\.r1\.includePattern: not a valid regex"),
    ({"path": ".", "deserializer": "AVRO"}, r"a1\.sources\.r1\.deserializer: must be one of line, blob"),
])
def test_config_errors_are_one_line_naming_the_key(tmp_path, run_agent, keys, message):
    cfg = dirtree_config(tmp_path, tmp_path, **keys)
    del cfg["a1.sources.r1.path"]
    cfg.update({"a1.sources.r1." + k: v for k, v in keys.items()})
    p = run_agent("a1", write_config(tmp_path, cfg), timeout=20)
    assert p.returncode == 2, (p.returncode, p.stderr)
    errors = [x for x in p.stderr.splitlines() if "error" in x]
    assert len(errors) == 1 and re.search(r"agent\.properties:\d+: " + message, errors[0]), p.stderr


def test_not_recursive_and_long_lines_are_cut_not_lost(tmp_path, agent):
    tree, out = tmp_path / "tree", tmp_path / "out"
    append(tree / "top.log", [b"x" * 25, b"short"])
    append(tree / "sub" / "below.log", [b"never"])
    p = agent("a1", write_config(tmp_path, dirtree_config(tmp_path, tree, recursive="false",
                                                           **{"deserializer.maxLineLength": 10})))
    # as spooldir (Flume's LineDeserializer): pieces of 10 characters, none dropped
    assert wait_lines(out, 4, p) == [b"x" * 10, b"x" * 10, b"x" * 5, b"short"]
    assert p.stop(timeout=20) == 0, p.stderr


def test_blob_events_with_file_and_basename_headers(tmp_path, agent):
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "one.bin").write_bytes(b"hello\nworld\n")
    (tree / "sub" / "two.bin").write_bytes(b"\x00\x01two")
    cfg = dirtree_config(tmp_path, tree, {"type": "logger", "maxBytesToLog": 64}, deserializer="BLOB",
                         fileHeader="true", basenameHeader="true", basenameHeaderKey="name")
    p = agent("a1", write_config(tmp_path, cfg))
    poll(lambda: p.stderr.count("Event: ") >= 2 or not p.alive(), 20, message="2 events")
    with open(tree / "one.bin", "ab") as f:
        f.write(b"more")
    poll(lambda: p.stderr.count("Event: ") >= 3 or not p.alive(), 20, message="3 events")
    time.sleep(0.6)
    assert p.stop(timeout=20) == 0, p.stderr
    headers = re.findall(r"Event: \{ headers:\{(.*?)\} body:", p.stderr)
    assert sorted(headers) == sorted(["file=%s, name=one.bin" % (tree / "one.bin"),
                                      "file=%s, name=two.bin" % (tree / "sub" / "two.bin"),
                                      "file=%s, name=one.bin" % (tree / "one.bin")])
    assert "68 65 6C 6C 6F 0A 77 6F 72 6C 64 0A" in p.stderr      # hello\nworld\n, one event
    assert "6D 6F 72 65" in p.stderr                                # the appended bytes, the next


def test_lines_of_several_small_files_in_one_batch_keep_their_own_headers(tmp_path, agent):
    tree = tmp_path / "tree"
    append(tree / "a.log", [b"a-1", b"a-2"])
    append(tree / "sub" / "b.log", [b"b-1"])
    append(tree / "sub" / "c.log", [b"c-1", b"c-2", b"c-3"])
    cfg = dirtree_config(tmp_path, tree, {"type": "logger", "maxBytesToLog": 16}, fileHeader="true", basenameHeader="true")
    p = agent("a1", write_config(tmp_path, cfg))
    poll(lambda: p.stderr.count("Event: ") >= 6 or not p.alive(), 20, message="6 events")
    time.sleep(0.3)
    assert p.stop(timeout=20) == 0, p.stderr
    events = re.findall(r"Event: \{ headers:\{file=(.*?), basename=(.*?)\} body: .*?([abc]-\d) \}", p.stderr)
    assert sorted(events) == sorted((str(path), path.name, body) for path, bodies in
                                    [(tree / "a.log", ["a-1", "a-2"]), (tree / "sub/b.log", ["b-1"]),
                                     (tree / "sub/c.log", ["c-1", "c-2", "c-3"])] for body in bodies)


def test_deleted_and_truncated_files_are_reported_and_followed_on(tmp_path, agent):
    tree, out = tmp_path / "tree", tmp_path / "out"
    append(tree / "d.log", lines("d", 0, 100))
    append(tree / "t.log", lines("t", 0, 100))
    p = agent("a1", write_config(tmp_path, dirtree_config(tmp_path, tree)))
    wait_lines(out, 200, p)
    os.unlink(tree / "d.log")
    (tree / "t.log").write_bytes(b"new-1\nnew-2\n")              # truncated and rewritten, shorter
    p.wait_for_stderr(r"d\.log is gone .*forgetting it", 10)
    p.wait_for_stderr(r"t\.log shrank to 12 bytes below its position 900 .*from the start", 10)
    got = wait_lines(out, 202, p)
    assert got[200:] == [b"new-1", b"new-2"]
    append(tree / "d.log", lines("d2", 0, 5))                      # a new file under the old name
    assert wait_lines(out, 207, p)[202:] == lines("d2", 0, 5)
    assert p.alive()
    assert p.stop(timeout=20) == 0, p.stderr


def test_sigkill_and_restart_with_the_position_file(tmp_path, agent):
    tree, out = tmp_path / "tree", tmp_path / "out"
    channel = {"type": "file", "checkpointDir": tmp_path / "ckpt", "dataDirs": tmp_path / "data",
               "minimumRequiredSpace": 0}
    conf = write_config(tmp_path, dirtree_config(tmp_path, tree, channel=channel))
    total, files = 20000, 4
    done = threading.Event()

    def writer():       # appends to four files (two in a subdirectory made meanwhile) while kills happen
        for k in range(0, total, 500):
            append(tree / ("d%d" % (k // 500 % 2)) / ("f%d.log" % (k // 500 % files)), lines("f", k, 500))
            time.sleep(0.03)
        done.set()

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    kills = 0
    for _ in range(2):
        p = agent("a1", conf)
        before = count_lines(out)
        poll(lambda: count_lines(out) > before + 1500 or (done.is_set() and count_lines(out) > before),
             30, interval=0.02, message="progress before the kill")
        os.kill(p.pid, signal.SIGKILL)
        assert p.wait(10) == -signal.SIGKILL
        kills += 1
    t.join(30)
    p = agent("a1", conf)
    expected = lines("f", 0, total)

    def complete():
        assert p.alive(), p.stderr[-3000:]
        return set(lines_so_far(out)) >= set(expected)
    poll(complete, 60, interval=0.1, message="every line after the restarts")
    assert p.stop(timeout=30) == 0, p.stderr
    counts = collections.Counter(read_dir_lines(out))
    assert set(counts) == set(expected)
    duplicated = sum(c - 1 for c in counts.values())
    # per kill: the source batch committed but not yet in the position file, and the sink's
    # batch written but not yet taken
    print("%d kills, %d duplicated" % (kills, duplicated))
    assert duplicated <= kills * (BATCH + SINK_BATCH), "%d duplicates for %d kills" % (duplicated, kills)


# -- ZooKeeper state, the example ---------------------------------------------------------------

def test_example_on_a_local_tree_positions_in_zookeeper_survive_another_working_directory(tmp_path, agent, zk):
    tree = tmp_path / "tree"
    append(tree / "a.log", lines("a", 0, 1000))
    append(tree / "x" / "b.log", lines("b", 0, 300))
    quorum = zk.hosts + zk.base
    conf = example_copy(tmp_path, {"agent.sources.hdfsSrc.hdfs.uri": "file://",
                                   "agent.sources.hdfsSrc.hdfs.path": tree,
                                   "agent.sources.hdfsSrc.hdfs.zkQuorum": quorum},
                        "agent.sources.hdfsSrc.pollInterval = 200\n")
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    p = agent("agent", conf, cwd=first)
    got = wait_lines(first / "out/dirtree", 1300, p)
    assert multiset_problems(got, lines("a", 0, 1000) + lines("b", 0, 300)) == ""
    assert p.stop(timeout=20) == 0, p.stderr
    data, _ = zk.client.get(zk.base + "/fastsync/dirtree/agent/hdfsSrc")
    assert {r["file"]: r["offset"] for r in json.loads(data)} == {
        str(tree / "a.log"): (tree / "a.log").stat().st_size, str(tree / "x/b.log"): (tree / "x/b.log").stat().st_size}
    # while no agent runs: more lines, a new file; then an agent with nothing local, elsewhere
    append(tree / "a.log", lines("a", 1000, 200))
    append(tree / "x" / "y" / "c.log", lines("c", 0, 100))
    p = agent("agent", conf, cwd=second)
    got = wait_lines(second / "out/dirtree", 300, p)
    assert multiset_problems(got, lines("a", 1000, 200) + lines("c", 0, 100)) == ""
    assert not (second / "out/positions.json").exists() and not list(second.rglob("*.json"))
    # killed while reading: a third agent, elsewhere again, loses nothing and repeats at most a batch
    append(tree / "big.log", lines("big", 0, 200000))
    poll(lambda: count_lines(second / "out/dirtree") > 300 + 20000 or not p.alive(), 30, message="reading big.log")
    os.kill(p.pid, signal.SIGKILL)
    assert p.wait(10) == -signal.SIGKILL
    written = len(in_file_order(lines_so_far(second / "out/dirtree"), "big"))
    data, _ = zk.client.get(zk.base + "/fastsync/dirtree/agent/hdfsSrc")
    at = {r["file"]: r["offset"] for r in json.loads(data)}[str(tree / "big.log")]
    skipped = at // len(b"big-000000\n")                  # lines committed to the channel before the kill
    third = tmp_path / "third"
    third.mkdir()
    p = agent("agent", conf, cwd=third)
    got = wait_lines(third / "out/dirtree", 200000 - skipped, p, timeout=60)
    assert got == lines("big", skipped, 200000 - skipped)
    # the killed agent's sink wrote at most the one batch (hdfs.batchSize) committed after the last
    # recorded position; what its memory channel held, committed but not yet written, is lost with
    # it, as with Flume's memory channel: at most the channel's capacity (100 000 in the example)
    assert -100000 <= written - skipped <= 1000, (written, skipped)
    assert p.stop(timeout=20) == 0, p.stderr


def test_example_follows_a_tree_on_the_real_hdfs(tmp_path, agent, hdfs, zk):
    local = tmp_path / "local"
    append(local / "one.log", lines("one", 0, 500))
    append(local / "two.log", lines("two", 0, 300))
    append(local / "more.log", lines("one", 500, 200))
    hdfs.dfs("-mkdir", "-p", hdfs.dir + "/sub")
    hdfs.dfs("-put", str(local / "one.log"), hdfs.dir + "/")
    conf = example_copy(tmp_path, {"agent.sources.hdfsSrc.hdfs.uri": hdfs.url,
                                   "agent.sources.hdfsSrc.hdfs.path": hdfs.dir,
                                   "agent.sources.hdfsSrc.hdfs.zkQuorum": zk.hosts + zk.base},
                        "agent.sources.hdfsSrc.pollInterval = 500\n")
    p = agent("agent", conf, cwd=tmp_path)
    out = tmp_path / "out/dirtree"
    assert wait_lines(out, 500, p, timeout=60) == lines("one", 0, 500)
    hdfs.dfs("-put", str(local / "two.log"), hdfs.dir + "/sub/")          # a new file in a subdirectory
    hdfs.dfs("-appendToFile", str(local / "more.log"), hdfs.dir + "/one.log")   # appended while followed
    got = wait_lines(out, 1000, p, timeout=60)
    assert in_file_order(got, "one") == lines("one", 0, 700)
    assert in_file_order(got, "two") == lines("two", 0, 300)
    assert len(got) == 1000
    assert p.stop(timeout=20) == 0, p.stderr
    data, _ = zk.client.get(zk.base + "/fastsync/dirtree/agent/hdfsSrc")
    assert {r["file"]: r["offset"] for r in json.loads(data)} == {hdfs.dir + "/one.log": 700 * 11,
                                                                  hdfs.dir + "/sub/two.log": 300 * 11}


def test_the_ha_standby_goes_on_from_the_leaders_positions_in_zookeeper(tmp_path, agent, zk):
    """Two agents of an --ha-group, each in its own directory with its own file channel, follow
    one tree with the positions in ZooKeeper; the leader is killed while a file grows: the
    standby takes over from the recorded positions, the killed one restarted (a standby now)
    drains its channel, and every line arrives, at most a source and a sink batch twice."""
    tree = tmp_path / "tree"
    tree.mkdir()
    total = 20000
    members = {}

    def start(tag: str):
        d = tmp_path / tag
        d.mkdir(exist_ok=True)
        channel = {"type": "file", "checkpointDir": d / "ck", "dataDirs": d / "data", "minimumRequiredSpace": 0}
        cfg = dirtree_config(d, tree, channel=channel, **{"hdfs.zkQuorum": zk.hosts + zk.base, "zkPath": "/positions"})
        del cfg["a1.sources.r1.positionFile"]
        port = free_port()
        p = agent("a1", write_config(d, cfg), "--ha-group", "g1", "-z", zk.hosts, "-p", zk.base + "/ha",
                  "--zk-session-timeout", "2", "--metrics-port", port, "--no-reload-conf", cwd=d)
        members[tag] = (p, port, d / "out")

    def role(tag: str) -> str:
        try:
            return get_json("http://127.0.0.1:%d/metrics" % members[tag][1], timeout=2).get("AGENT.a1", {}).get("HaRole", "")
        except OSError:
            return ""

    start("a")
    poll(lambda: role("a") == "leader", 30, 0.05, message="a leads")
    start("b")
    poll(lambda: role("b") == "standby", 30, 0.05, message="b stands by")
    done = threading.Event()

    def writer():
        for k in range(0, total, 250):
            append(tree / ("d%d" % (k // 5000)) / "f.log", lines("f", k, 250))
            time.sleep(0.02)
        done.set()

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    poll(lambda: count_lines(members["a"][2]) > 3000, 30, message="the leader delivers")
    assert count_lines(members["b"][2]) == 0, "the standby read the tree"
    members["a"][0].kill()
    poll(lambda: role("b") == "leader", 30, 0.05, message="b takes over")
    t.join(30)
    start("a")      # a standby now: its sinks drain what its file channel kept
    poll(lambda: role("a") == "standby", 30, 0.05, message="a restarted as standby")
    expected = set(lines("f", 0, total))
    poll(lambda: set(lines_so_far(members["a"][2]) + lines_so_far(members["b"][2])) >= expected, 60, 0.1,
         message="every line in one output or the other")
    for p, _, _ in members.values():
        assert p.stop(timeout=30) == 0, p.stderr[-3000:]
    got = read_dir_lines(members["a"][2]) + read_dir_lines(members["b"][2])
    assert set(got) == expected
    assert read_dir_lines(members["b"][2]), "the new leader read nothing"
    duplicated = sum(c - 1 for c in collections.Counter(got).values())
    print("%d duplicated" % duplicated)
    assert duplicated <= BATCH + SINK_BATCH, "%d duplicates" % duplicated
    data, _ = zk.client.get(zk.base + "/positions")
    assert sum(r["offset"] for r in json.loads(data)) == sum(f.stat().st_size for f in tree.rglob("*.log"))
