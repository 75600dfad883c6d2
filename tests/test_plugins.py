"""Custom components (fastsync.plugins, issue 20 item 2): sources, sinks and interceptors from
modules outside the package, named by import path (examples/plugins on PYTHONPATH) or by the
entry points of an installed package, run by the agent's runtime: real files, real SQLite,
real transactions. Their keys are validated, located and documented as the built-ins' are."""
from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from e2e_support import PYTHON, line_of, poll
from fastsync.agent.agent import Agent
from fastsync.agent.config import agent_config_from_text
from fastsync.agent.errors import ConfigError, UnknownKeysError

REPO = Path(__file__).resolve().parent.parent
PLUGINS = REPO / "examples" / "plugins"
CONF = "plugins/plugins.properties"     # examples/plugins/plugins.properties, run as its header says
EXAMPLE = (REPO / "examples" / CONF).read_text()
KEPT = ["event-%d" % i for i in range(100, 1000)]   # the bodies of at least minLength = 9 bytes
PKG = "fastsync_example_plugins"
# the files of the example package (under examples/), each run here
PACKAGE_FILES = ["plugins/pyproject.toml", "plugins/fastsync_example_plugins/__init__.py",
                 "plugins/fastsync_example_plugins/counter_source.py", "plugins/fastsync_example_plugins/length_interceptor.py",
                 "plugins/fastsync_example_plugins/sqlite_sink.py"]

# Components written by a test, in a module of its own outside the package: a sink that fails its
# first deliveries, a sink that waits for a gate, an event-driven source, each recording its hooks.
TEST_PLUGINS = '''
import threading

import fastsync
from fastsync import EventBatch

HOOKS = []                  # (component name, hook) in the order they ran
GATE = threading.Event()    # GatedSink delivers nothing before it is set


class FlakySink(fastsync.Sink):
    """Fails its first `failures` deliveries; appends the bodies of the others to `path`."""

    path: str = fastsync.setting(doc="file the bodies are appended to, one a line")
    failures: int = fastsync.setting(default=1, doc="deliveries that raise first", min=0)

    def start(self):
        self.failed = []        # the size of each batch whose delivery failed
        HOOKS.append((self.name, "start"))

    def deliver(self, batch: EventBatch) -> None:
        if len(self.failed) < self.failures:
            self.failed.append(len(batch))
            raise OSError("destination down (failure %d)" % len(self.failed))
        with open(self.path, "ab") as f:
            f.write(b"".join(b + b"\\n" for b in batch.bodies().to_pylist()))

    def stop(self):
        HOOKS.append((self.name, "stop"))


class GatedSink(FlakySink):
    def deliver(self, batch: EventBatch) -> None:
        GATE.wait()
        super().deliver(batch)


class PushSource(fastsync.Source):
    """Event driven: a thread of its own puts `batches` batches of `size` events with self.put()."""

    batches: int = fastsync.setting(doc="batches to put", min=1)
    size: int = fastsync.setting(default=10, doc="events per batch", min=1)

    def start(self):
        HOOKS.append((self.name, "start"))
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def run(self):
        for b in range(self.batches):
            self.put(EventBatch.from_bodies(b"push-%d" % (b * self.size + i) for i in range(self.size)))
        self.finished = True

    def stop(self):
        self.thread.join()
        HOOKS.append((self.name, "stop"))


class Tagger(fastsync.Interceptor):
    tag: str = fastsync.setting(doc="value of header tag")

    def start(self):
        HOOKS.append((self.name, "start"))

    def intercept(self, batch: EventBatch) -> EventBatch:
        return batch.with_headers(tag=self.tag)

    def stop(self):
        HOOKS.append((self.name, "stop"))


class NotASink:
    pass


class NoDeliver(fastsync.Sink):
    pass
'''


def env_with(*paths: Path) -> dict:
    """The environment of a `python -m fastsync` child: this checkout, then `paths`."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *map(str, paths)])}


def fastsync(*args: str, cwd: Path, env: dict, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "fastsync", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def table_rows(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as c:
        return c.execute("SELECT body, header FROM events").fetchall()


def check_example_output(db: Path) -> None:
    rows = table_rows(db)
    bodies = sorted(r[0].decode() for r in rows)
    assert bodies == sorted(KEPT), "%d rows, expected %d (each once)" % (len(bodies), len(KEPT))
    assert {r[1] for r in rows} == {rows[0][1]} and rows[0][1], "every row has the host header"


def installed(site: Path) -> Path:
    """examples/plugins installed into `site` by pip itself (its pyproject.toml builds the
    package and the dist-info whose entry points importlib.metadata reads); ~10 s, most of it
    pip's build isolation fetching setuptools."""
    source = site.parent / "plugins-source"      # a copy: pip's build leaves build/ and egg-info beside the sources
    shutil.copytree(PLUGINS, source, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    r = subprocess.run([PYTHON, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(source)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (site / PKG).is_dir() and list(site.glob("*.dist-info/entry_points.txt")), sorted(p.name for p in site.iterdir())
    return site


def test_example_plugins_by_import_path_through_the_cli(tmp_path):
    """examples/plugins/plugins.properties, run as its header says (the package on PYTHONPATH):
    the counter source's 1000 events, less the 100 short ones the interceptor drops, are rows of
    the SQLite table, each once, with the host interceptor's header; --validate and --strict
    accept it."""
    env = env_with(PLUGINS)
    (tmp_path / "out").mkdir()
    shutil.copy(PLUGINS / "plugins.properties", tmp_path)
    assert "# Run:  PYTHONPATH=examples/plugins fastsync agent -n a1 -f examples/%s --exit-when-done" % CONF in EXAMPLE
    r = fastsync("agent", "-n", "a1", "-f", "plugins.properties", "--validate", "--strict", cwd=tmp_path, env=env)
    assert r.returncode == 0 and "agent a1 is valid: sources r1, channels c1, sinks k1" in r.stdout, r.stderr
    r = fastsync("agent", "-n", "a1", "-f", "plugins.properties", "--exit-when-done", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "agent a1: 900 events delivered" in r.stdout
    check_example_output(tmp_path / "out" / "events.db")


def test_example_plugins_installed_by_entry_point(tmp_path):
    """The same agent with the types written as the installed package's entry-point aliases;
    the package is found in the install directory only (not in examples/)."""
    site = installed(tmp_path / "site")
    conf = EXAMPLE.replace("%s.counter_source:CounterSource" % PKG, "counter") \
        .replace("%s.length_interceptor.LengthInterceptor" % PKG, "length_filter") \
        .replace("%s.sqlite_sink:SQLiteSink" % PKG, "sqlite_rows")
    assert conf.count("= counter\n") == conf.count("= length_filter\n") == conf.count("= sqlite_rows\n") == 1
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "out").mkdir()
    (tmp_path / "run" / "a.properties").write_text(conf)
    r = fastsync("agent", "-n", "a1", "-f", "a.properties", "--exit-when-done", cwd=tmp_path / "run", env=env_with(site))
    assert r.returncode == 0, r.stderr[-3000:]
    check_example_output(tmp_path / "run" / "out" / "events.db")
    # the reference of a plug-in, as the docs pages give a built-in's
    r = subprocess.run([PYTHON, "-m", "fastsync.docref", "--component", "sqlite_rows"], capture_output=True, text=True,
                       env=env_with(site), timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("## sqlite_rows\n\nAppends each event to a SQLite table")
    assert "| `path` | **required** | the SQLite database file |" in r.stdout
    assert "| `table` | `events` | the table, created if missing |" in r.stdout


@pytest.fixture
def plugins_on_path(tmp_path, monkeypatch):
    """examples/plugins and a module of test components (fastsync_test_plugins) importable in
    this process, forgotten afterwards."""
    (tmp_path / "fastsync_test_plugins.py").write_text(TEST_PLUGINS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(PLUGINS))
    yield
    for name in [m for m in sys.modules if m.startswith((PKG, "fastsync_test_plugins"))]:
        del sys.modules[name]


def config_error(text: str, strict: bool = False) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        agent_config_from_text(text, "plugins.properties", "a1", strict)
    return info.value


# (what is changed in the example, the key of the error, its message)
BAD = [
    # a source's value of the wrong type, and its required key missing
    ("a1.sources.r1.total = 1000", "a1.sources.r1.total = many", "a1.sources.r1.total", "expected an integer, got 'many'"),
    ("a1.sources.r1.total = 1000\n", "", "a1.sources.r1.total", "required key is missing"),
    ("a1.sources.r1.batchSize = 250", "a1.sources.r1.batchSize = 0", "a1.sources.r1.batchSize", "must be at least 1, got 0"),
    # an interceptor's
    ("a1.sources.r1.interceptors.i1.minLength = 9", "a1.sources.r1.interceptors.i1.minLength = nine",
     "a1.sources.r1.interceptors.i1.minLength", "expected an integer, got 'nine'"),
    ("a1.sources.r1.interceptors.i1.minLength = 9\n", "", "a1.sources.r1.interceptors.i1.minLength", "required key is missing"),
    # a sink's: a value its check() refuses, its required key missing
    ("a1.sinks.k1.table = events", "a1.sinks.k1.table = drop table", "a1.sinks.k1.table", "not a table name: 'drop table'"),
    ("a1.sinks.k1.path = out/events.db\n", "", "a1.sinks.k1.path", "required key is missing"),
    ("a1.sinks.k1.batchSize = 100", "a1.sinks.k1.batchSize = lots", "a1.sinks.k1.batchSize", "expected an integer, got 'lots'"),
    # types that cannot be loaded
    ("%s.sqlite_sink:SQLiteSink" % PKG, "%s.sqlite_sink:SqliteSink" % PKG, "a1.sinks.k1.type",
     "module %s.sqlite_sink has no class 'SqliteSink'" % PKG),
    ("%s.sqlite_sink:SQLiteSink" % PKG, "%s.sqlite:SQLiteSink" % PKG, "a1.sinks.k1.type",
     "cannot import %s.sqlite: no module named '%s.sqlite'" % (PKG, PKG)),
    ("%s.counter_source:CounterSource" % PKG, "mypkg.sources.Counter", "a1.sources.r1.type",
     "cannot import mypkg.sources: no module named 'mypkg' (is it installed, or on PYTHONPATH?)"),
    ("%s.sqlite_sink:SQLiteSink" % PKG, "%s.counter_source:CounterSource" % PKG, "a1.sinks.k1.type",
     "%s.counter_source:CounterSource is a source, not a sink: a sink subclasses fastsync.Sink" % PKG),
    ("%s.length_interceptor.LengthInterceptor" % PKG, "%s.sqlite_sink.SQLiteSink" % PKG, "a1.sources.r1.interceptors.i1.type",
     "%s.sqlite_sink.SQLiteSink is a sink, not an interceptor: an interceptor subclasses fastsync.Interceptor" % PKG),
    ("%s.sqlite_sink:SQLiteSink" % PKG, "fastsync_test_plugins:NotASink", "a1.sinks.k1.type",
     "fastsync_test_plugins:NotASink is a class, not a sink: a sink subclasses fastsync.Sink"),
    ("%s.sqlite_sink:SQLiteSink" % PKG, "fastsync_test_plugins:NoDeliver", "a1.sinks.k1.type",
     "fastsync_test_plugins:NoDeliver does not implement deliver()"),
    ("%s.sqlite_sink:SQLiteSink" % PKG, "no_such_alias", "a1.sinks.k1.type", "unknown sink type 'no_such_alias' (known: "),
]


@pytest.mark.parametrize("old, new, key, message", BAD, ids=[b[2].rsplit(".", 1)[-1] + "-" + b[3][:24] for b in BAD])
def test_bad_plugin_keys_are_located_errors(plugins_on_path, old, new, key, message):
    assert EXAMPLE.count(old) == 1
    text = EXAMPLE.replace(old, new)
    err = config_error(text)
    line = line_of(text, key) if new else line_of(text, key.rsplit(".", 1)[0] + ".type")
    assert str(err).startswith("plugins.properties:%d: %s: %s" % (line, key, message)), str(err)
    assert "\n" not in str(err)


def test_validate_and_strict_on_a_plugin_config(tmp_path):
    """Through the command line: a plugin's bad key exits 2 with its located line, a misspelt
    key is a warning naming the key it meant, an error with --strict."""
    env = env_with(PLUGINS)
    bad = EXAMPLE.replace("a1.sinks.k1.batchSize = 100", "a1.sinks.k1.batchSize = lots")
    (tmp_path / "bad.properties").write_text(bad)
    r = fastsync("agent", "-n", "a1", "-f", "bad.properties", "--validate", cwd=tmp_path, env=env)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1] == ("fastsync: error: bad.properties:%d: a1.sinks.k1.batchSize: expected an "
                                                 "integer, got 'lots'" % line_of(bad, "a1.sinks.k1.batchSize"))
    typo = EXAMPLE.replace("a1.sinks.k1.table = events", "a1.sinks.k1.tabel = events")
    (tmp_path / "typo.properties").write_text(typo)
    where = "typo.properties:%d: a1.sinks.k1.tabel: unknown key" % line_of(typo, "a1.sinks.k1.tabel")
    r = fastsync("agent", "-n", "a1", "-f", "typo.properties", "--validate", cwd=tmp_path, env=env)
    assert r.returncode == 0 and where + ", ignored — did you mean `table`?" in r.stderr, r.stderr
    r = fastsync("agent", "-n", "a1", "-f", "typo.properties", "--validate", "--strict", cwd=tmp_path, env=env)
    assert r.returncode == 2 and "fastsync: error: " + where + " — did you mean `table`?" in r.stderr, r.stderr


def run_in_process(text: str, timeout: float = 30.0) -> Agent:
    """The agent of `text` run by the runtime (as `--exit-when-done`) in this process, for its
    counters and its components' state; a `stop` it never sets."""
    agent = Agent(agent_config_from_text(text, "test.properties", "a1", strict=True))
    done = threading.Event()
    result = {}

    def run():
        result["run"] = agent.run(threading.Event(), exit_when_done=True, drain_timeout=timeout)
        done.set()
    threading.Thread(target=run, daemon=True).start()
    assert done.wait(timeout + 10), "the agent did not finish"
    assert result["run"].drained
    return agent


def seq_into(sink: str, n: int, **keys) -> str:
    lines = ["a1.sources = r1", "a1.channels = c1", "a1.sinks = k1",
             "a1.sources.r1.type = seq", "a1.sources.r1.totalEvents = %d" % n, "a1.sources.r1.batchSize = 50",
             "a1.sources.r1.channels = c1",
             "a1.channels.c1.type = memory", "a1.channels.c1.capacity = 10000", "a1.channels.c1.transactionCapacity = 100",
             "a1.sinks.k1.type = " + sink, "a1.sinks.k1.channel = c1"]
    return "\n".join(lines + ["a1.sinks.k1.%s = %s" % kv for kv in keys.items()]) + "\n"


def test_a_sink_that_raises_is_rolled_back_and_redelivered(plugins_on_path, tmp_path):
    """deliver() raising: the take is rolled back and delivered again after the backoff (nothing
    lost, nothing twice: the failing delivery wrote nothing, and the order is kept), counted in
    EventWriteFail and EventDrainAttemptCount."""
    out = tmp_path / "out.txt"
    agent = run_in_process(seq_into("fastsync_test_plugins.FlakySink", 1000, path=out, failures=1, batchSize=100))
    assert out.read_bytes().split() == [b"%d" % i for i in range(1000)]
    sink = agent.metrics()["SINK.k1"]
    failed = agent.sinks["k1"].failed
    assert len(failed) == 1 and sink["EventWriteFail"] == "1"
    assert sink["EventDrainSuccessCount"] == "1000"
    assert int(sink["EventDrainAttemptCount"]) == 1000 + failed[0]       # the failed batch tried again
    assert agent.metrics()["CHANNEL.c1"]["ChannelSize"] == "0"
    hooks = importlib.import_module("fastsync_test_plugins").HOOKS
    assert hooks == [("k1", "start"), ("k1", "stop")]
    assert sink["StartTime"] != "0" and sink["StopTime"] != "0"


def test_a_source_keeps_what_a_full_channel_refused(plugins_on_path, tmp_path):
    """CounterSource returns its 3000 events from one poll into a channel of 1000 whose sink is
    held: the put fails part way (ChannelWriteFail), the events it did not put are put again
    once the sink drains, before any new poll: each event delivered once."""
    mod = importlib.import_module("fastsync_test_plugins")
    out = tmp_path / "out.txt"
    text = ("a1.sources = r1\na1.channels = c1\na1.sinks = k1\n"
            "a1.sources.r1.type = %s.counter_source:CounterSource\na1.sources.r1.total = 3000\n"
            "a1.sources.r1.batchSize = 3000\na1.sources.r1.prefix = \na1.sources.r1.channels = c1\n"
            "a1.channels.c1.type = memory\na1.channels.c1.capacity = 1000\na1.channels.c1.transactionCapacity = 100\n"
            "a1.channels.c1.keep-alive = 0.1\n"
            "a1.sinks.k1.type = fastsync_test_plugins:GatedSink\na1.sinks.k1.channel = c1\na1.sinks.k1.path = %s\n"
            "a1.sinks.k1.failures = 0\n" % (PKG, out))
    agent = Agent(agent_config_from_text(text, "test.properties", "a1", strict=True))
    stop = threading.Event()
    result = {}
    runner = threading.Thread(target=lambda: result.setdefault("run", agent.run(stop, exit_when_done=True)), daemon=True)
    runner.start()
    try:
        poll(lambda: agent.sources["r1"].counters["ChannelWriteFail"] >= 1, 20, message="the put never found the channel full")
        assert 1000 <= agent.sources["r1"].counters["EventAcceptedCount"] < 3000
    finally:
        mod.GATE.set()
    runner.join(30)
    assert result["run"].drained
    assert out.read_bytes().split() == [b"%d" % i for i in range(3000)]
    assert agent.metrics()["SOURCE.r1"]["EventAcceptedCount"] == "3000"


def test_an_event_driven_source_and_an_interceptor_with_hooks(plugins_on_path, tmp_path):
    """A source with no poll() whose own thread calls self.put() (batches of 250 into a channel
    whose transactions hold 100), through a custom interceptor: every event delivered, with the
    interceptor's header; hooks run in order: interceptor, source and sink started, the source
    stopped before its interceptor."""
    out = tmp_path / "out.txt"
    text = ("a1.sources = r1\na1.channels = c1\na1.sinks = k1\n"
            "a1.sources.r1.type = fastsync_test_plugins:PushSource\na1.sources.r1.batches = 8\na1.sources.r1.size = 250\n"
            "a1.sources.r1.channels = c1\na1.sources.r1.interceptors = t\n"
            "a1.sources.r1.interceptors.t.type = fastsync_test_plugins.Tagger\na1.sources.r1.interceptors.t.tag = pushed\n"
            "a1.channels.c1.type = memory\na1.channels.c1.capacity = 10000\na1.channels.c1.transactionCapacity = 100\n"
            "a1.sinks.k1.type = fastsync_test_plugins:FlakySink\na1.sinks.k1.channel = c1\na1.sinks.k1.path = %s\n"
            "a1.sinks.k1.failures = 0\n" % out)
    with pytest.raises(UnknownKeysError):
        agent_config_from_text(text + "a1.sources.r1.interceptors.t.tga = x\n", "test.properties", "a1", strict=True)
    agent = run_in_process(text)
    assert sorted(out.read_bytes().split()) == sorted(b"push-%d" % i for i in range(2000))
    assert agent.metrics()["SOURCE.r1"]["EventAcceptedCount"] == "2000"
    hooks = importlib.import_module("fastsync_test_plugins").HOOKS
    assert hooks == [("k1", "start"), ("t", "start"), ("r1", "start"), ("r1", "stop"), ("t", "stop"), ("k1", "stop")]


def test_settings_are_declared_once_and_checked_when_the_class_is_defined():
    """A setting's type must be one the parser knows, and must not hide the runtime's names."""
    import fastsync
    with pytest.raises(TypeError, match=r"a setting's type is int, float, bool, str or list\[str\], not dict"):
        type("Bad", (fastsync.Sink,), {"__annotations__": {"m": "dict"}, "m": fastsync.setting()})
    with pytest.raises(TypeError, match="a setting cannot be called name: the sink base uses that name"):
        type("Bad", (fastsync.Sink,), {"__annotations__": {"name": "str"}, "name": fastsync.setting()})

    class Words(fastsync.Interceptor):
        words: list[str] = fastsync.setting(default=["a"], doc="words")
        flag: bool = fastsync.setting("some.flag", False)

    assert [(f.name, f.metadata["key"]) for f in __import__("dataclasses").fields(Words.Config)] == \
        [("words", "words"), ("flag", "some.flag")]

    class Forgetful(fastsync.Interceptor):
        def intercept(self, batch):
            batch.with_headers(seen="yes")      # the new batch not returned

    with pytest.raises(TypeError, match=r"interceptor i1 \(test_plugins.*Forgetful\): intercept\(\) gave a NoneType, not an EventBatch"):
        Forgetful("i1", Forgetful.Config()).intercept(fastsync.EventBatch.from_bodies([b"x"]))


def test_the_docs_show_the_example_code_as_it_is():
    """docs/python/plugins.md quotes each file of the example package whole, as it is in examples/."""
    page = (REPO / "docs" / "python" / "plugins.md").read_text()
    quoted = dict(re.findall(r"^`examples/(\S+\.py)`:\n\n```python\n(.*?)\n```$", page, re.M | re.S))
    assert sorted(quoted) == sorted(f for f in PACKAGE_FILES if f.endswith(".py") and not f.endswith("__init__.py"))
    for name, code in quoted.items():
        assert code + "\n" == (REPO / "examples" / name).read_text(), "docs/python/plugins.md quotes %s as it was" % name


# -- through the Python builder, fastsync.Agent ------------------------------------------------

def example_agent(out: Path, by_class: bool):
    """examples/plugins/plugins.properties built with fastsync.Agent: the types as import paths,
    or as the classes themselves."""
    from fastsync import Agent
    if by_class:
        from fastsync_example_plugins.counter_source import CounterSource
        from fastsync_example_plugins.length_interceptor import LengthInterceptor
        from fastsync_example_plugins.sqlite_sink import SQLiteSink
        source, interceptor, sink = CounterSource, LengthInterceptor, SQLiteSink
    else:
        source, interceptor, sink = ("%s.counter_source:CounterSource" % PKG, "%s.length_interceptor.LengthInterceptor" % PKG,
                                     "%s.sqlite_sink:SQLiteSink" % PKG)
    return (Agent("a1")
            .source("r1", source, channels=["c1"], total=1000, batchSize=250, prefix="event-")
            .interceptor("r1", "i1", interceptor, minLength=9)
            .interceptor("r1", "i2", "host")
            .channel("c1", "memory", capacity=10000, transactionCapacity=100)
            .sink("k1", sink, channel="c1", path=out, table="events", batchSize=100))


def test_plugins_through_the_python_agent(plugins_on_path, tmp_path):
    """The example agent built in Python, its types given as import paths: the same properties as
    the example file, the same rows; given as the classes: named by their import path, the same
    rows again; a bad key: the CLI's located error, raised."""
    from fastsync import Agent, ConfigError as PublicConfigError
    agent = example_agent(tmp_path / "a.db", by_class=False)
    same = Agent.from_properties(EXAMPLE.replace("out/events.db", str(tmp_path / "a.db")), "a1")
    assert agent.to_properties() == same.to_properties()
    run = agent.run(until_done=True)
    assert run.drained and run.delivered == 900
    check_example_output(tmp_path / "a.db")
    assert agent.metrics()["SINK.k1"]["EventDrainSuccessCount"] == "900"

    agent = example_agent(tmp_path / "b.db", by_class=True)
    assert "a1.sinks.k1.type = %s.sqlite_sink:SQLiteSink\n" % PKG in agent.to_properties()
    assert agent.run(until_done=True).delivered == 900
    check_example_output(tmp_path / "b.db")

    bad = example_agent(tmp_path / "c.db", by_class=True).set("sinks.k1.table", "drop table")
    with pytest.raises(PublicConfigError) as info:
        bad.run(until_done=True)
    text = bad.to_properties()
    assert str(info.value) == "<Agent a1>:%d: a1.sinks.k1.table: not a table name: 'drop table'" % line_of(text, "a1.sinks.k1.table")
    assert not (tmp_path / "c.db").exists()


def test_python_custom_sink_example(tmp_path):
    """examples/python/custom_sink.py, run as its header says: its CountSink (a class of the
    program itself, given to Agent.sink) counts 1000 events per last digit."""
    (tmp_path / "out").mkdir()
    r = subprocess.run([PYTHON, str(REPO / "examples" / "python/custom_sink.py")], cwd=tmp_path, env=env_with(),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "a1.sinks.k1.type = __main__:CountSink\n" in r.stdout
    assert json.loads((tmp_path / "out" / "counts.json").read_text()) == {str(d): 1000 for d in range(10)}
    assert r.stdout.splitlines()[-1].startswith("10000 events delivered; per digit: {'0': 1000, ")
