"""An agent's configuration from ZooKeeper (`fastsync agent -z HOSTS -p BASE -n a1`, as
flume-ng's -z/-p): the properties text of the znode BASE/a1, uploaded with `fastsync zk
put-config`, read at start and watched; a change reloads only what changed, as a changed
file does. Real ZooKeeper: the shared server of scripts/services.sh (never stopped here)
and ensembles of the tests' own, restarted or with their leader killed mid-run.

The pipeline is seq -> file channel -> two file_roll sinks: the lines are the seq's
counter, so a lost event is a gap, a duplicate a repeated number; every event the source
had accepted at the last metrics read (after everything a test does) must be there."""
from __future__ import annotations

import collections
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from e2e_support import AGENT_CMD, count_lines, free_port, get_json, http_get, poll, read_dir_lines, wait_for_json, write_config
from zk_support import Ensemble

FASTSYNC = [sys.executable, "-m", "fastsync"]
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "zookeeper"
EXAMPLE_HOSTS = "127.0.0.1:2191,127.0.0.1:2192,127.0.0.1:2193"
EXAMPLE_NODES = ["zookeeper/zoo1.cfg", "zookeeper/zoo2.cfg", "zookeeper/zoo3.cfg"]


def pipeline(tmp_path, k2_batch: int = 100) -> dict:
    return {"a1.sources": "r1", "a1.channels": "c1", "a1.sinks": "k1 k2",
            "a1.sources.r1.type": "seq", "a1.sources.r1.batchSize": 10, "a1.sources.r1.channels": "c1",
            "a1.channels.c1.type": "file", "a1.channels.c1.checkpointDir": tmp_path / "ck",
            "a1.channels.c1.dataDirs": tmp_path / "data", "a1.channels.c1.capacity": 20000,
            "a1.channels.c1.transactionCapacity": 1000,
            "a1.sinks.k1.type": "file_roll", "a1.sinks.k1.channel": "c1", "a1.sinks.k1.sink.directory": tmp_path / "out" / "k1",
            "a1.sinks.k1.sink.rollInterval": 0, "a1.sinks.k1.sink.batchSize": 100,
            "a1.sinks.k2.type": "file_roll", "a1.sinks.k2.channel": "c1", "a1.sinks.k2.sink.directory": tmp_path / "out" / "k2",
            "a1.sinks.k2.sink.rollInterval": 0, "a1.sinks.k2.sink.batchSize": k2_batch}


def zk_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(FASTSYNC + ["zk", *args], capture_output=True, text=True, timeout=timeout)


def put_config(hosts: str, base: str, conf, name: str = "a1") -> str:
    r = zk_cli("put-config", "-z", hosts, "-p", base, "-n", name, "-f", str(conf))
    assert r.returncode == 0, r.stderr
    return r.stdout


def start_from_zk(agent, tmp_path, hosts: str, base: str, *extra, argv=None) -> tuple:
    """An agent a1 on the znode base/a1 (or run with `argv`) with a metrics port, once its
    sinks deliver: (process, metrics URL)."""
    mport = free_port()
    argv = argv or AGENT_CMD + ["-n", "a1", "-z", hosts, "-p", base, *map(str, extra)]
    p = agent("a1", None, argv=argv + ["--metrics-port", str(mport)])
    url = "http://127.0.0.1:%d/metrics" % mport
    wait_for_json(url, timeout=20, alive=p.alive)
    poll(lambda: all(count_lines(d) for d in outs(tmp_path)), 20, message="both sinks delivering")
    return p, url


def outs(tmp_path) -> list:
    """The two sinks' directories (as in examples/zookeeper/agent.properties, run in tmp_path)."""
    return [tmp_path / "out" / "k1", tmp_path / "out" / "k2"]


def keeps_delivering(tmp_path, p, more: int = 2000, timeout: float = 30) -> None:
    """More lines arrive (the pipeline runs), the agent still alive."""
    start = sum(count_lines(d) for d in outs(tmp_path))
    poll(lambda: sum(count_lines(d) for d in outs(tmp_path)) >= start + more or not p.alive(),
         timeout, message="%d more lines" % more)
    assert p.alive(), p.stderr[-3000:]


def stop_and_check(tmp_path, p, url) -> tuple[int, int]:
    """Stops the agent after reading how many events its source had accepted; every one of
    them is in the output (no gap below that), each once. (accepted, lines)."""
    accepted = int(get_json(url)["SOURCE.r1"]["EventAcceptedCount"])
    assert p.stop(timeout=60) == 0, p.stderr[-3000:]
    lines = [x for d in outs(tmp_path) for x in read_dir_lines(d)]
    counts = collections.Counter(int(x) for x in lines)
    missing = [i for i in range(accepted) if i not in counts]
    twice = sorted(i for i, c in counts.items() if c > 1)
    assert not missing, "%d of the %d accepted events missing, e.g. %s" % (len(missing), accepted, missing[:10])
    assert not twice, "%d events delivered twice, e.g. %s" % (len(twice), twice[:10])
    assert sorted(counts) == list(range(len(counts))), "the delivered numbers have a gap"
    return accepted, len(lines)


def test_config_from_a_znode_reloads_only_the_changed_sink_and_loses_nothing(tmp_path, agent, zk):
    conf = write_config(tmp_path, pipeline(tmp_path))
    assert "uploaded to zk://%s%s/a1 (version 0)" % (zk.hosts, zk.base) in put_config(zk.hosts, zk.base, conf)
    r = zk_cli("get-config", "-z", zk.hosts, "-p", zk.base, "-n", "a1")
    assert r.returncode == 0 and r.stdout == conf.read_text(), r.stderr
    p, url = start_from_zk(agent, tmp_path, zk.hosts, zk.base)
    where = "zk://%s%s/a1" % (zk.hosts, zk.base)
    p.wait_for_stderr(r"agent a1: configuration from %s \(version 0\), watched for changes" % where)
    m = get_json(url)
    assert m["AGENT.a1"]["ConfigSource"] == where and m["AGENT.a1"]["ConfigVersion"] == "0", m["AGENT.a1"]
    started = {k: m[k]["StartTime"] for k in ("SOURCE.r1", "CHANNEL.c1", "SINK.k1", "SINK.k2")}

    # k2's batch size changes in the znode: k2 alone restarts
    put_config(zk.hosts, zk.base, write_config(tmp_path, pipeline(tmp_path, k2_batch=50), "v2.properties"))
    p.wait_for_stderr(r"agent a1: configuration changed in %s \(version 1\)" % where, timeout=20)
    p.wait_for_stderr("agent a1 reloaded: sink k2$", timeout=20)
    keeps_delivering(tmp_path, p)
    m = get_json(url)
    assert {k: m[k]["StartTime"] for k in started if k != "SINK.k2"} == {k: v for k, v in started.items() if k != "SINK.k2"}
    assert m["SINK.k2"]["StartTime"] != started["SINK.k2"]
    assert (m["AGENT.a1"]["ConfigVersion"], m["AGENT.a1"]["ConfigReloadCount"]) == ("1", "1"), m["AGENT.a1"]
    prom = http_get(url + "/prometheus")[2].decode()
    for sample in ('fastsync_agent_config_version{component="a1"} 1', 'fastsync_agent_config_reload_total{component="a1"} 1',
                   'fastsync_agent_zk_connected{component="a1"} 1'):
        assert sample in prom.splitlines(), prom
    assert "zk://" not in prom

    # an invalid text set behind put-config's back: rejected, the running configuration kept
    bad = write_config(tmp_path, pipeline(tmp_path, k2_batch=50), "v3.properties").read_text()
    zk.client.set(zk.base + "/a1", (bad + "a1.channels.c1.capacity = lots\n").encode())
    line = p.wait_for_stderr("configuration change rejected, the running configuration is kept: (.*)", timeout=20)
    assert line.group(1).startswith("%s:%d: a1.channels.c1.capacity" % (where, bad.count("\n") + 1)), line.group(0)
    keeps_delivering(tmp_path, p)
    m = get_json(url)["AGENT.a1"]
    assert (m["ConfigVersion"], m["ConfigRejectedCount"]) == ("1", "1"), m
    stop_and_check(tmp_path, p, url)
    assert p.stderr.count("agent a1 reloaded:") == 1


def test_the_agent_carries_on_while_its_zookeeper_restarts(tmp_path, agent, zk_ensemble):
    ens = zk_ensemble(1)
    conf = write_config(tmp_path, pipeline(tmp_path))
    put_config(ens.hosts, "/flume", conf)
    p, url = start_from_zk(agent, tmp_path, ens.hosts, "/flume", "--zk-session-timeout", "2")
    ens.kill(0)
    p.wait_for_stderr("ZooKeeper connection lost; agent a1 runs on its last good configuration", timeout=20)
    keeps_delivering(tmp_path, p)                  # ZooKeeper down: events still flow
    assert get_json(url)["AGENT.a1"]["ZkConnected"] == "0"
    ens.restart(0)
    p.wait_for_stderr("ZooKeeper connection back; zk://%s/flume/a1 read and watched again" % ens.hosts, timeout=30)
    put_config(ens.hosts, "/flume", write_config(tmp_path, pipeline(tmp_path, k2_batch=50), "v2.properties"))
    p.wait_for_stderr("agent a1 reloaded: sink k2$", timeout=20)
    keeps_delivering(tmp_path, p)
    assert get_json(url)["AGENT.a1"]["ZkConnected"] == "1"
    stop_and_check(tmp_path, p, url)


def test_a_change_made_while_the_session_expired_is_read_by_the_new_session(tmp_path, agent, zk):
    """The agent is frozen (SIGSTOP, as a long pause) past its 2 s session timeout: the server
    expires the session and its watch; the znode changes meanwhile. Thawed, the agent gets a
    new session, reads the znode again and applies the change."""
    conf = write_config(tmp_path, pipeline(tmp_path))
    put_config(zk.hosts, zk.base, conf)
    p, url = start_from_zk(agent, tmp_path, zk.hosts, zk.base, "--zk-session-timeout", "2")
    p.send_signal(signal.SIGSTOP)
    try:
        put_config(zk.hosts, zk.base, write_config(tmp_path, pipeline(tmp_path, k2_batch=50), "v2.properties"))
        time.sleep(6)       # well past the session timeout: the server expires the frozen agent's session
    finally:
        p.send_signal(signal.SIGCONT)
    p.wait_for_stderr("ZooKeeper session expired; agent a1 runs on its last good configuration", timeout=30)
    p.wait_for_stderr("agent a1 reloaded: sink k2$", timeout=30)
    keeps_delivering(tmp_path, p)
    stop_and_check(tmp_path, p, url)


class ExampleEnsemble(Ensemble):
    """The ensemble of EXAMPLE_NODES, each file as it is but for its ports
    and dataDir (free ones, the test's), each of which it must define once."""

    def _config(self, i: int) -> Path:
        text = (EXAMPLE.parent / EXAMPLE_NODES[i]).read_text()
        data = self.root / ("node%d" % i) / "data"
        data.mkdir(parents=True, exist_ok=True)
        (data / "myid").write_text("%d\n" % (i + 1))
        values = {"dataDir": data, "clientPort": self.client_ports[i]}
        values.update({"server.%d" % (j + 1): "127.0.0.1:%d:%d" % peer for j, peer in enumerate(self.peer_ports)})
        for key, value in values.items():
            text, n = re.subn(r"^(%s\s*=\s*).*$" % re.escape(key), lambda m, v=value: m.group(1) + str(v), text, flags=re.M)
            assert n == 1, "%s: %s defined %d times, expected once" % (EXAMPLE_NODES[i], key, n)
        cfg = self.root / ("node%d" % i) / "zoo.cfg"
        cfg.write_text(text)
        return cfg


def readme_commands(hosts: str) -> dict[str, list[str]]:
    """examples/zookeeper/README.md's `fastsync ...` lines on `hosts`, by their first two words."""
    readme = (EXAMPLE / "README.md").read_text()
    commands = {}
    for line in re.findall(r"^(fastsync .*)$", readme, re.M):
        assert EXAMPLE_HOSTS in line, line
        argv = [str(EXAMPLE.parent.parent / a) if a.startswith("examples/") else a
                for a in shlex.split(line.replace(EXAMPLE_HOSTS, hosts))]
        commands[" ".join(argv[1:3])] = FASTSYNC + argv[1:]
    assert sorted(commands) == ["agent -n", "zk get-config", "zk put-config"], commands
    return commands


@pytest.mark.slow
def test_the_example_ensemble_loses_its_leader_and_the_agent_carries_on(tmp_path, agent):
    """examples/zookeeper/: its three nodes, its agent uploaded and started as its README.md
    says; the leader is killed (-9) mid-run: the agent keeps delivering and still follows
    the znode."""
    ens = ExampleEnsemble(tmp_path / "zk", size=3)
    try:
        ens.start()
        cmd = readme_commands(ens.hosts)
        r = subprocess.run(cmd["zk put-config"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        r = subprocess.run(cmd["zk get-config"], capture_output=True, text=True, timeout=60)
        assert r.stdout == (EXAMPLE / "agent.properties").read_text(), r.stderr
        p, url = start_from_zk(agent, tmp_path, "", "", argv=cmd["agent -n"])
        leader = ens.leader()
        ens.kill(leader)
        # the followers drop their clients until they have a new leader: the agent's connection too
        p.wait_for_stderr("ZooKeeper connection lost; agent a1 runs on its last good configuration", timeout=20)
        keeps_delivering(tmp_path, p)
        ens.wait_serving(60, nodes=[i for i in range(3) if i != leader])
        p.wait_for_stderr("ZooKeeper connection back", timeout=30)
        text = (EXAMPLE / "agent.properties").read_text()
        assert text.count("a1.sinks.k2.sink.batchSize = 100\n") == 1
        put_config(ens.hosts, "/flume", write_config(tmp_path, text.replace("a1.sinks.k2.sink.batchSize = 100\n",
                                                                            "a1.sinks.k2.sink.batchSize = 50\n"), "v2.properties"))
        p.wait_for_stderr("agent a1 reloaded: sink k2$", timeout=30)
        keeps_delivering(tmp_path, p)
        stop_and_check(tmp_path, p, url)
    finally:
        ens.stop()


def test_put_config_refuses_an_invalid_file_and_leaves_the_znode(tmp_path, zk):
    good = write_config(tmp_path, pipeline(tmp_path))
    put_config(zk.hosts, zk.base, good)
    bad = write_config(tmp_path, {**pipeline(tmp_path), "a1.channels.c1.type": "filee"}, "bad.properties")
    r = zk_cli("put-config", "-z", zk.hosts, "-p", zk.base, "-n", "a1", "-f", str(bad))
    assert r.returncode == 2
    assert r.stderr.splitlines() == [r.stderr.strip()] and r.stderr.startswith("fastsync: error: %s:" % bad), r.stderr
    assert "a1.channels.c1.type: unknown channel type 'filee'" in r.stderr
    assert zk.client.get(zk.base + "/a1")[0].decode() == good.read_text()
    # --strict as agent --strict: a misspelt key is refused too
    typo = write_config(tmp_path, {**pipeline(tmp_path), "a1.sinks.k1.sink.rollInterva": 3}, "typo.properties")
    assert zk_cli("put-config", "-z", zk.hosts, "-p", zk.base, "-n", "a1", "-f", str(typo), "--strict").returncode == 2
    assert zk.client.get(zk.base + "/a1")[0].decode() == good.read_text()
    # the text validated is the text uploaded: a file read once (a pipe) arrives whole
    r = subprocess.run(FASTSYNC + ["zk", "put-config", "-z", zk.hosts, "-p", zk.base, "-n", "a1", "-f", "/dev/stdin"],
                       input=typo.read_text(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "(version 1)" in r.stdout, r.stderr
    assert zk.client.get(zk.base + "/a1")[0].decode() == typo.read_text()
    # a chroot after the hosts, as ZooKeeper's connection strings have it: BASE/NAME under it
    out = put_config(zk.hosts + zk.base, "/flume", good)
    assert "uploaded to zk://%s%s/flume/a1 (version 0)" % (zk.hosts, zk.base) in out
    assert zk.client.get(zk.base + "/flume/a1")[0].decode() == good.read_text()
    r = zk_cli("get-config", "-z", "127.0.0.1", "-n", "a1")
    assert r.returncode == 1 and r.stderr == ("fastsync: error: -z 127.0.0.1: '127.0.0.1' is not host:port "
                                              "(expected host:port[,host:port...][/path])\n"), r.stderr


def test_get_config_and_the_agent_name_a_missing_znode(tmp_path, zk, agent):
    where = "zk://%s%s/nobody" % (zk.hosts, zk.base)
    r = zk_cli("get-config", "-z", zk.hosts, "-p", zk.base, "-n", "nobody")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith("fastsync: error: %s: no such znode" % where) and r.stderr.count("\n") == 1, r.stderr
    p = agent("nobody", None, argv=AGENT_CMD + ["-n", "nobody", "-z", zk.hosts, "-p", zk.base])
    assert p.wait(30) == 1
    assert p.stderr.splitlines()[-1].startswith("fastsync: error: %s: no such znode" % where), p.stderr


def test_validate_and_no_reload_read_the_znode_once(tmp_path, zk):
    where = "zk://%s%s/a1" % (zk.hosts, zk.base)
    cfg = {**pipeline(tmp_path), "a1.sources.r1.totalEvents": 1000}
    put_config(zk.hosts, zk.base, write_config(tmp_path, cfg))
    r = subprocess.run(AGENT_CMD + ["-n", "a1", "-z", zk.hosts, "-p", zk.base, "--validate"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout == "%s: agent a1 is valid: sources r1, channels c1, sinks k1 k2\n" % where, r.stderr
    r = subprocess.run(AGENT_CMD + ["-n", "a1", "-z", zk.hosts, "-p", zk.base, "--no-reload-conf", "--exit-when-done"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "agent a1: 1000 events delivered" in r.stdout, r.stderr
    assert re.search(r"agent a1: configuration from %s \(version 0\)$" % re.escape(where), r.stderr, re.M), r.stderr
    assert sorted(int(x) for d in outs(tmp_path) for x in read_dir_lines(d)) == list(range(1000))
    # an invalid text at start: refused as an invalid file is, the znode named as a file would be
    text = zk.client.get(zk.base + "/a1")[0] + b"a1.sinks.k2.sink.batchSize = many\n"
    zk.client.set(zk.base + "/a1", text)
    r = subprocess.run(AGENT_CMD + ["-n", "a1", "-z", zk.hosts, "-p", zk.base], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.splitlines()[-1].startswith("fastsync: error: %s:%d: a1.sinks.k2.sink.batchSize" % (where, text.count(b"\n"))), r.stderr


def test_an_unreachable_zookeeper_is_waited_for_then_one_line(tmp_path, agent):
    port = free_port()
    p = agent("a1", None, argv=AGENT_CMD + ["-n", "a1", "-z", "127.0.0.1:%d" % port, "--zk-wait", "5"])
    assert p.wait(60) == 1
    err = p.stderr.splitlines()
    assert "-z: ZooKeeper at 127.0.0.1:%d does not answer; retrying for up to" % port in "\n".join(err), p.stderr
    assert err[-1] == "fastsync: error: -z: ZooKeeper at 127.0.0.1:%d unreachable (no answer within 5 s)" % port
    assert "Traceback" not in p.stderr


def test_exactly_one_of_a_file_or_a_znode(tmp_path, zk):
    conf = write_config(tmp_path, pipeline(tmp_path))
    r = subprocess.run(AGENT_CMD + ["-n", "a1", "-f", str(conf), "-z", zk.hosts], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == (
        "fastsync: error: agent: -f and -z name two configurations: give one (both only with --ha-group, whose "
        "ZooKeeper -z is then)"), r.stderr
    r = subprocess.run(AGENT_CMD + ["-n", "a1"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == (
        "fastsync: error: agent: give the configuration: -f FILE, or -z HOSTS for ZooKeeper's znode BASE/NAME"), r.stderr


def test_an_ha_member_on_a_znode_reports_its_config_and_its_role(tmp_path, agent, zk):
    """-z is both the configuration's ZooKeeper and the HA group's: /metrics' AGENT entry
    holds the keys of both (they once replaced each other)."""
    conf = write_config(tmp_path, pipeline(tmp_path))
    put_config(zk.hosts, zk.base, conf)
    p, url = start_from_zk(agent, tmp_path, zk.hosts, zk.base, "--ha-group", "g1")
    m = get_json(url)["AGENT.a1"]
    assert m["HaRole"] == "leader" and m["HaGroup"] == "g1", m
    assert m["ConfigSource"] == "zk://%s%s/a1" % (zk.hosts, zk.base) and m["ZkConnected"] == "1", m
    assert zk.client.get_children(zk.base + "/ha/g1"), "no election node under the base"
