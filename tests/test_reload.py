"""Live reload through the agent CLI: the configuration file changes while the agent runs;
only the changed component restarts (the netcat source keeps its connection and its
counters), and a broken file is rejected with the pipeline untouched."""
from __future__ import annotations

from e2e_support import LineClient, free_port, get_json, poll, read_dir_lines, wait_for_json, wait_for_port, write_config


def config(port, out):
    return {"a1.sources": "r1", "a1.channels": "c1", "a1.sinks": "k1",
            "a1.sources.r1.type": "netcat", "a1.sources.r1.bind": "127.0.0.1", "a1.sources.r1.port": port,
            "a1.sources.r1.channels": "c1", "a1.channels.c1.type": "memory",
            "a1.sinks.k1.type": "file_roll", "a1.sinks.k1.channel": "c1", "a1.sinks.k1.sink.directory": out,
            "a1.sinks.k1.sink.rollInterval": 0, "a1.sinks.k1.sink.batchSize": 1}


def test_changed_sink_restarts_alone_and_a_broken_file_is_rejected(tmp_path, agent):
    port, mport = free_port(), free_port()
    out1, out2 = tmp_path / "out1", tmp_path / "out2"
    conf = write_config(tmp_path, config(port, out1))
    p = agent("a1", conf, "--reload-interval", "0.3", "--metrics-port", mport)
    wait_for_port(port, timeout=15, alive=p.alive)
    wait_for_json("http://127.0.0.1:%d/metrics" % mport, timeout=10, alive=p.alive)
    with LineClient(port) as c:
        c.send(b"before\n")
        assert c.read_lines(1) == [b"OK"]
        poll(lambda: read_dir_lines(out1) == [b"before"], 10, message="first line in out1")
        # the sink's directory changes: the sink restarts, the source does not
        write_config(tmp_path, config(port, out2))
        p.wait_for_stderr("agent a1 reloaded: sink k1", timeout=15)
        c.send(b"after\n")                          # the same connection still works
        assert c.read_lines(1) == [b"OK"]
        poll(lambda: read_dir_lines(out2) == [b"after"], 10, message="second line in out2")
        accepted = int(get_json("http://127.0.0.1:%d/metrics" % mport)["SOURCE.r1"]["EventAcceptedCount"])
        assert accepted == 2                        # the source's counters survived: it was not restarted
        # a broken file: logged, ignored, the pipeline keeps running as it was
        conf.write_text(conf.read_text() + "a1.channels.c1.capacity = lots\n")
        p.wait_for_stderr("configuration change rejected, the running configuration is kept", timeout=15)
        c.send(b"still\n")
        assert c.read_lines(1) == [b"OK"]
        poll(lambda: read_dir_lines(out2) == [b"after", b"still"], 10, message="third line in out2")
    assert read_dir_lines(out1) == [b"before"]
    assert p.stop(timeout=20) == 0, p.stderr


def test_a_changed_channel_restarts_what_is_bound_to_it(tmp_path):
    from fastsync.agent import Agent
    from fastsync.agent.config import parse_agent_config
    from fastsync.agent.properties import parse_properties
    from e2e_support import properties_text

    def parse(cfg):
        return parse_agent_config(parse_properties(properties_text(cfg), "x.properties"), "a1", "x.properties")
    cfg = {"a1.sources": "r1 r2", "a1.channels": "c1 c2", "a1.sinks": "k1 k2",
           "a1.sources.r1.type": "seq", "a1.sources.r1.channels": "c1", "a1.sources.r1.totalEvents": 10,
           "a1.sources.r2.type": "seq", "a1.sources.r2.channels": "c2", "a1.sources.r2.totalEvents": 10,
           "a1.channels.c1.type": "memory", "a1.channels.c2.type": "memory",
           "a1.sinks.k1.type": "null", "a1.sinks.k1.channel": "c1", "a1.sinks.k2.type": "null", "a1.sinks.k2.channel": "c2"}
    agent = Agent(parse(cfg))
    agent.start()
    try:
        kept = agent.sources["r2"], agent.sinks["k2"], agent.channels["c2"]
        cfg["a1.channels.c1.capacity"] = 500
        assert agent.reload(parse(cfg)) == ["channel c1", "sink k1", "source r1"]
        assert (agent.sources["r2"], agent.sinks["k2"], agent.channels["c2"]) == kept
        assert agent.channels["c1"].config.capacity == 500 and agent.sinks["k1"].channel is agent.channels["c1"]
        assert agent.reload(parse(cfg)) == []
    finally:
        agent.stop(1)


def test_strict_agent_rejects_a_reloaded_file_with_a_misspelt_key(tmp_path, agent):
    port = free_port()
    out1, out2 = tmp_path / "out1", tmp_path / "out2"
    conf = write_config(tmp_path, config(port, out1))
    p = agent("a1", conf, "--reload-interval", "0.3", "--strict")
    wait_for_port(port, timeout=15, alive=p.alive)
    # the sink's directory changes and a channel key is misspelt: under --strict the whole
    # change is rejected, the sink keeps writing into out1
    cfg = config(port, out2)
    cfg["a1.channels.c1.capacty"] = 1000
    write_config(tmp_path, cfg)
    m = p.wait_for_stderr("configuration change rejected, the running configuration is kept: .*", timeout=15)
    assert "a1.channels.c1.capacty" in m.group(0) and "did you mean `capacity`" in m.group(0), m.group(0)
    with LineClient(port) as c:
        c.send(b"still\n")
        assert c.read_lines(1) == [b"OK"]
    poll(lambda: read_dir_lines(out1) == [b"still"], 10, message="the line in out1")
    assert not out2.exists()
