"""fastsync.Agent, agents built in Python: the same properties as a file, the same events
delivered as `fastsync agent`, the same located errors as `fastsync agent --validate`, and
start/stop, `with`, run() and metrics() on real sockets and files."""
from __future__ import annotations

import re
import threading
from collections import Counter
from pathlib import Path

import pytest

from e2e_support import LineClient, free_port, get_json, poll, read_dir_lines, wait_for_port, write_config
from fastsync import Agent, ConfigError
from fastsync.agent.channels.memory import MemoryChannel
from fastsync.agent.config import KINDS
from fastsync.agent.metrics import CHANNEL_COUNTERS, SINK_COUNTERS, SOURCE_COUNTERS
from fastsync.agent.properties import parse_properties

REPO = Path(__file__).resolve().parents[1]
N = 20_000

# a hand-written file: Flume's usual order, comments, another agent's keys
SEQ_FILE = """\
# seq -> memory -> file_roll
a1.sources = r1
a1.sinks = k1
a1.channels = c1

a1.sinks.k1.type = file_roll
a1.sinks.k1.sink.directory = out
a1.sinks.k1.sink.rollInterval = 0
a1.sinks.k1.channel = c1

a1.sources.r1.type = seq
a1.sources.r1.totalEvents = %d
a1.sources.r1.batchSize = 500
a1.sources.r1.channels = c1
a1.sources.r1.interceptors = i1
a1.sources.r1.interceptors.i1.type = static
a1.sources.r1.interceptors.i1.key = origin
a1.sources.r1.interceptors.i1.value = seq

a1.channels.c1.type = memory
a1.channels.c1.capacity = 10000
a1.channels.c1.transactionCapacity = 500
a2.channels = other
""" % N


def seq_agent(directory: str = "out", events: int = N) -> Agent:
    return (Agent("a1")
            .source("r1", "seq", channels=["c1"], totalEvents=events, batchSize=500)
            .interceptor("r1", "i1", "static", key="origin", value="seq")
            .channel("c1", MemoryChannel, capacity=10000, transactionCapacity=500)     # a class: its alias
            .sink("k1", "file_roll", channel="c1", keys={"sink.directory": directory, "sink.rollInterval": 0}))


def test_an_agent_built_in_python_is_the_file_and_delivers_what_the_cli_delivers(tmp_path, monkeypatch, agent):
    conf = write_config(tmp_path, SEQ_FILE)
    built = seq_agent()
    assert built.to_properties() == Agent.from_properties(conf, "a1").to_properties()
    assert built.to_properties().splitlines()[:5] == ["a1.sources = r1", "a1.channels = c1", "a1.sinks = k1", "",
                                                      "a1.sources.r1.type = seq"]
    # the same file run by the CLI and by Agent.run, each in a directory of its own ("out" is relative)
    (tmp_path / "cli").mkdir()
    (tmp_path / "py").mkdir()
    cli = agent("a1", conf, "--exit-when-done", cwd=tmp_path / "cli")
    monkeypatch.chdir(tmp_path / "py")
    run = built.run(until_done=True)
    assert cli.wait(30) == 0, cli.stderr
    assert run.drained and run.delivered == N
    expected = Counter(b"%d" % i for i in range(N))
    assert Counter(read_dir_lines(tmp_path / "cli" / "out")) == expected
    assert Counter(read_dir_lines(tmp_path / "py" / "out")) == expected
    assert not built.running and built.metrics()["SINK.k1"]["EventDrainSuccessCount"] == str(N)


def agents_of(props: dict) -> list[str]:
    return sorted({k.split(".")[0] for k in props if k.count(".") == 1 and k.split(".")[1] in KINDS})


def test_to_properties_and_back_over_the_examples(tmp_path):
    """For every agent of every examples/**/*.properties: to_properties() has the file's keys and
    values for that agent (the same set: what "the same properties" means), and reading it back,
    as text or as a file, gives the same text. (Not validated here: a jdbc sink's validation
    reflects its table on the server.)"""
    files = sorted(REPO.glob("examples/**/*.properties"))
    assert len(files) >= 8
    seen = 0
    for path in files:
        props = parse_properties(path.read_text(), str(path))
        for name in agents_of(props):
            seen += 1
            text = Agent.from_properties(path, name).to_properties()
            mine = {k: p.value for k, p in props.items() if k.startswith(name + ".")}
            assert {k: p.value for k, p in parse_properties(text).items()} == mine, path
            assert Agent.from_properties(text, name).to_properties() == text, path
            written = write_config(tmp_path, text)
            assert Agent.from_properties(str(written), name).to_properties() == text, path
    assert seen >= 10


def test_keys_and_values_that_need_escaping_come_back_the_same():
    odd = {"sinks.k1.sink.directory": "  /tmp/a b\\c  ", "sinks.k1.x=y:z": "#not a comment\n\tline two\x01",
           "sinks.k1.unicode": "h\u00e9llo \u2028 \U0001F600", "sinks.k1.empty": ""}
    a = Agent("a1").channel("c1", "memory").sink("k1", "file_roll", channel="c1", keys={**odd, "sink.rollInterval": 0})
    for key, value in odd.items():
        a.set(key, value)
    text = a.to_properties()
    values = {k: p.value for k, p in parse_properties(text).items()}
    assert {k: values["a1." + k] for k in odd} == odd
    assert Agent.from_properties(text, "a1").to_properties() == text
    # None removes a key; a list of names is written space-separated, a bool as true/false
    a.set("sinks.k1.empty", None).set("sinks.k1.sink.serializer.appendNewline", False)
    a.sinkgroup("g1", sinks=["k1"], processor="failover", keys={"priority.k1": 5})
    props = {k: p.value for k, p in parse_properties(a.to_properties()).items()}
    assert "a1.sinks.k1.empty" not in props
    assert props["a1.sinks.k1.sink.serializer.appendNewline"] == "false"
    assert props["a1.sinkgroups.g1.processor.priority.k1"] == "5"
    assert props["a1.sinkgroups"] == "g1" and props["a1.sinkgroups.g1.sinks"] == "k1"
    # wrong Python arguments: TypeError at the call, and nothing written
    b = Agent("a1").channel("c1", "memory")
    before = b.to_properties()
    with pytest.raises(TypeError):
        b.channel("c2", "memory", capacity={"not": "a value"})
    with pytest.raises(TypeError, match="'type' given twice"):
        b.channel("c2", "memory", keys={"type": "file"})
    assert b.to_properties() == before
    # a class that is no built-in component is named by its import path (loaded as plugins are)
    assert "a1.sinks.k2.type = test_agent_builder:Custom\n" in Agent("a1").sink("k2", Custom, channel="c1").to_properties()
    assert Agent("a1").to_properties() == ""


class Custom:
    """Stands for a custom component's class."""


# (what the agent lacks, the change that makes it wrong, --strict)
BAD = {
    "bad value": (lambda a: a.set("channels.c1.capacity", "lots"), False),
    "missing key": (lambda a: a.set("sinks.k1.sink.directory", None), False),
    "misspelt key": (lambda a: a.set("sinks.k1.sink.rolInterval", 0), True),
    "unknown type": (lambda a: a.channel("c2", "memroy"), False),
}


def test_errors_are_the_located_messages_the_cli_prints(tmp_path, agent):
    built, procs = {}, {}
    for case, (spoil, strict) in BAD.items():
        a = seq_agent(str(tmp_path / "out"))
        spoil(a)
        with pytest.raises(ConfigError) as err:
            a.validate(strict=strict)
        d = tmp_path / case.replace(" ", "_")
        d.mkdir()
        conf = write_config(d, a.to_properties())
        built[case] = (str(err.value), conf, strict)
        procs[case] = agent("a1", conf, "--validate", *(["--strict"] if strict else []))
    for case, (message, conf, strict) in built.items():
        p = procs[case]
        assert p.wait(30) != 0
        printed = [line for line in p.stderr.splitlines() if line.startswith("fastsync: error: ")]
        # a built agent's errors name `<Agent a1>` and the line of to_properties(): here written to `conf`
        assert message.startswith("<Agent a1>:"), message
        assert printed == ["fastsync: error: " + message.replace("<Agent a1>", str(conf), 1)], (case, p.stderr)
        # read from that file, the agent's errors name it, as the CLI's do
        with pytest.raises(ConfigError) as err:
            Agent.from_properties(conf, "a1").validate(strict=strict)
        assert "fastsync: error: " + str(err.value) == printed[0]
    with pytest.raises(ConfigError, match="^nowhere.properties: cannot read the configuration file"):
        Agent.from_properties("nowhere.properties", "a1")
    with pytest.raises(ConfigError, match=r"^<string>: no keys for agent 'a9' \(agents in this file: a1, a2\)$"):
        Agent.from_properties(SEQ_FILE, "a9")


def netcat_agent(port: int, out: Path) -> Agent:
    return (Agent("a1")
            .source("r1", "netcat", channels="c1", bind="127.0.0.1", port=port)
            .channel("c1", "memory", capacity=1000, transactionCapacity=100)
            .sink("k1", "file_roll", channel="c1", keys={"sink.directory": str(out), "sink.rollInterval": 0,
                                                         "sink.batchSize": 10}))


def send_lines(port: int, lines: list[bytes]) -> None:
    client = LineClient(port)
    client.send(b"".join(line + b"\n" for line in lines))
    assert client.read_lines(len(lines)) == [b"OK"] * len(lines)
    client.sock.close()


def test_start_and_stop_do_not_block_and_run_stops_from_another_thread(tmp_path):
    port = free_port()
    a = netcat_agent(port, tmp_path / "out")
    assert a.start() is a and a.running
    wait_for_port(port)
    send_lines(port, [b"one", b"two"])
    poll(lambda: a.metrics()["SINK.k1"]["EventDrainSuccessCount"] == "2", 10)
    assert a.stop() is True and not a.running
    assert read_dir_lines(tmp_path / "out") == [b"one", b"two"]
    assert a.stop() is True         # nothing running: nothing to do

    # the same Agent again (a new runtime), run() blocking on this thread, stopped from another
    def feed():
        wait_for_port(port)
        send_lines(port, [b"three"])
        poll(lambda: a.metrics()["SINK.k1"]["EventDrainSuccessCount"] == "1", 10)
        a.stop()
    t = threading.Thread(target=feed)
    t.start()
    run = a.run(until_done=False)
    t.join(10)
    assert run.drained and run.delivered == 1 and not a.running
    assert read_dir_lines(tmp_path / "out") == [b"one", b"two", b"three"]


def test_with_starts_and_stops_and_metrics_are_the_endpoint_s(tmp_path):
    with seq_agent(str(tmp_path / "out"), 1000) as a:
        assert a.running
        poll(lambda: a.metrics()["SINK.k1"]["EventDrainSuccessCount"] == "1000", 10)
        with pytest.raises(RuntimeError, match="already running"):
            a.start()
    assert not a.running
    m = a.metrics()
    assert set(m) == {"SOURCE.r1", "CHANNEL.c1", "SINK.k1"}
    for component, names in (("SOURCE.r1", SOURCE_COUNTERS), ("CHANNEL.c1", CHANNEL_COUNTERS), ("SINK.k1", SINK_COUNTERS)):
        assert set(names) <= set(m[component]), component
    assert m["SOURCE.r1"]["EventAcceptedCount"] == m["CHANNEL.c1"]["EventTakeSuccessCount"] == "1000"
    assert len(read_dir_lines(tmp_path / "out")) == 1000

    # served over HTTP as `--metrics-port` serves it: the same dict
    b = seq_agent(str(tmp_path / "out2"), 1000).start(metrics_port=0)
    try:
        url = b.metrics_url
        assert url is not None
        poll(lambda: get_json(url)["SINK.k1"]["EventDrainSuccessCount"] == "1000", 10)
        served, mine = get_json(url), b.metrics()
        assert {k: set(v) for k, v in served.items()} == {k: set(v) for k, v in mine.items()}
        assert served["SOURCE.r1"] == mine["SOURCE.r1"]      # finished: its counters no longer move
    finally:
        b.stop()
    assert b.metrics_url is None


def test_the_examples_of_docs_python_agents_md_run_as_written(tmp_path, monkeypatch, capsys):
    """Each ```python block of the page, run in a fresh directory (the netcat one on a free port)."""
    page = (REPO / "docs" / "python" / "agents.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", page, re.S)
    assert len(blocks) == 2
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks[0], "agents.md[0]", "exec"), {})
    assert capsys.readouterr().out.splitlines()[-1] == "10000"
    assert len(read_dir_lines(tmp_path / "out" / "seq")) == 10_000
    assert "44444" in blocks[1]
    exec(compile(blocks[1].replace("44444", str(free_port())), "agents.md[1]", "exec"), {})
    assert capsys.readouterr().out.splitlines()[-1] == "1"
