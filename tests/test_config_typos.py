"""Configuration typos caught (issue 15 item 5), end to end through `python -m fastsync agent`:
an unknown key names the declared key it probably misspells, a missing required key names
the misspelling present and its line, and --strict (with --validate or a running agent)
makes every unknown key an error, exit 2, one line per key; a real Flume configuration,
with keys only Flume reads (accepted, passed through), still passes --strict."""
from __future__ import annotations

import subprocess

from e2e_support import AGENT_CMD, line_of, write_config

# seq -> memory -> file_roll: a finite pipeline a running agent drains and exits
PIPELINE = """\
a1.sources = r1
a1.channels = c1
a1.sinks = k1
a1.sources.r1.type = seq
a1.sources.r1.totalEvents = 500
a1.sources.r1.batchSize = 100
a1.sources.r1.channels = c1
a1.channels.c1.type = memory
a1.channels.c1.transactionCapacity = 100
a1.sinks.k1.type = file_roll
a1.sinks.k1.channel = c1
a1.sinks.k1.sink.directory = {out}
a1.sinks.k1.sink.rollInterval = 0
a1.sinks.k1.sink.batchSize = 100
"""


def validate(conf, *extra: str, name: str = "a1") -> subprocess.CompletedProcess:
    return subprocess.run(AGENT_CMD + ["-n", name, "-f", str(conf), "--validate", *extra],
                          capture_output=True, text=True, timeout=60)


def located(conf, text: str, key: str, message: str) -> str:
    return "%s:%d: %s: %s" % (conf, line_of(text, key), key, message)


def warnings(stderr: str) -> list[str]:
    """The messages of the WARNING log lines (after `fastsync.config: `)."""
    return [line.split("fastsync.config: ", 1)[1] for line in stderr.splitlines() if " WARNING " in line and "fastsync.config: " in line]


def test_misspelt_key_is_a_warning_with_a_suggestion_and_strict_refuses_it(tmp_path):
    text = PIPELINE.format(out=tmp_path / "out") + "a1.channels.c1.capacty = 1000\n"
    conf = write_config(tmp_path, text)
    p = validate(conf)        # as Flume: a warning, the configuration is valid
    assert p.returncode == 0, p.stderr
    assert warnings(p.stderr) == [located(conf, text, "a1.channels.c1.capacty",
                                          "unknown key, ignored — did you mean `capacity`?")]
    p = validate(conf, "--strict")
    assert p.returncode == 2 and p.stdout == "", (p.returncode, p.stdout, p.stderr)
    assert p.stderr.splitlines() == [
        "fastsync: error: " + located(conf, text, "a1.channels.c1.capacty", "unknown key — did you mean `capacity`?")]


def test_strict_gives_one_line_per_unknown_key_in_file_order(tmp_path):
    # every kind of key the reader sees and nobody uses
    text = PIPELINE.format(out=tmp_path / "out") + """\
a1.sinkgroups = g1
a1.sinkgroups.g1.sinks = k1
a1.sinkgroups.g1.processor.type = failover
a1.sinkgroups.g1.processor.maxpenalti = 1000
a1.sinkgroups.g1.procesor.backoff = true
a1.sourcs = r1
a1.sinkz.k1.type = null
a1.channels.c2.type = memory
a1.sinks.k1.sink.rollIntervall = 5
a1.sources.r1.batchsize = 10
a1.sources.r1.selector.typ = multiplexing
a1.sources.r1.selector.mapping.US = c1
a1.sources.r1.interceptors = i1
a1.sources.r1.interceptors.i1.type = timestamp
a1.sources.r1.interceptors.i1.headerNme = ts
a1.sources.r1.interceptors.i2.type = host
"""
    conf = write_config(tmp_path, text)
    expected = [
        ("a1.sinkgroups.g1.processor.maxpenalti", "unknown key — did you mean `maxpenalty`?"),
        ("a1.sinkgroups.g1.procesor.backoff", "unknown key — did you mean `processor.backoff`?"),
        ("a1.sourcs", "unknown key — did you mean `a1.sources`?"),
        ("a1.sinkz.k1.type", "unknown key — did you mean `a1.sinks.k1.type`?"),
        ("a1.channels.c2.type", "component 'c2' is not listed in a1.channels"),
        ("a1.sinks.k1.sink.rollIntervall", "unknown key — did you mean `sink.rollInterval`?"),
        ("a1.sources.r1.batchsize", "unknown key — did you mean `batchSize`?"),
        ("a1.sources.r1.selector.typ", "not a key of the replicating channel selector — did you mean `selector.type`?"),
        ("a1.sources.r1.selector.mapping.US", "not a key of the replicating channel selector"),
        ("a1.sources.r1.interceptors.i1.headerNme", "unknown key — did you mean `headerName`?"),
        ("a1.sources.r1.interceptors.i2.type", "interceptor 'i2' is not listed in a1.sources.r1.interceptors"),
    ]
    p = validate(conf, "--strict")
    assert p.returncode == 2, p.stderr
    assert p.stderr.splitlines() == ["fastsync: error: " + located(conf, text, k, m) for k, m in expected]
    # without --strict: the same problems as warnings, the configuration valid as before
    p = validate(conf)
    assert p.returncode == 0, p.stderr
    assert warnings(p.stderr) == [located(conf, text, k, m.replace(" — ", ", ignored — ", 1) if " — " in m else m + ", ignored")
                                  for k, m in expected]


def test_missing_required_key_names_its_misspelling(tmp_path):
    text = PIPELINE.format(out=tmp_path / "out").replace("a1.sources.r1.type = seq", """\
a1.sources.r1.type = netcat
a1.sources.r1.bind = 127.0.0.1
a1.sources.r1.prot = 44444""")
    conf = write_config(tmp_path, text)
    p = validate(conf)
    assert p.returncode == 2
    # the error is at the source's type line (where the source is defined), the hint names the misspelling's
    assert p.stderr.splitlines()[-1] == ("fastsync: error: %s:%d: a1.sources.r1.port: required key is missing"
                                         " — did you mean `prot` on line %d?"
                                         % (conf, line_of(text, "a1.sources.r1.type"), line_of(text, "a1.sources.r1.prot")))


def test_missing_structural_keys_name_their_misspellings(tmp_path):
    # a source's `channels` written as a sink's `channel`, a misspelt type, a misspelt file_roll directory
    base = PIPELINE.format(out=tmp_path / "out")
    cases = [
        (base.replace("a1.sources.r1.channels = c1", "a1.sources.r1.channel = c1"), "a1.sources.r1.type",
         "source 'r1' has no channels: set a1.sources.r1.channels — did you mean `channel` on line %d?", "a1.sources.r1.channel"),
        (base.replace("a1.channels.c1.type = memory", "a1.channels.c1.typ = memory"), "a1.channels",
         "required key is missing (channel 'c1' is listed at line 2) — did you mean `typ` on line %d?", "a1.channels.c1.typ"),
        (base.replace("a1.sinks.k1.sink.directory", "a1.sinks.k1.sink.directroy"), "a1.sinks.k1.type",
         "required key is missing — did you mean `sink.directroy` on line %d?", "a1.sinks.k1.sink.directroy"),
        (base.replace("a1.channels.c1.type = memory", "a1.channels.c1.type = memroy"), "a1.channels.c1.type",
         "unknown channel type 'memroy' (known: file, kafka, memory) — did you mean `memory`?", None),
        (base.replace("a1.sources = r1", "a1.sourcs = r1").replace("a1.sinks = k1", "a1.sink = k1"), "a1.channels",
         "agent 'a1' has no sources and no sinks — did you mean `sourcs` on line %d?", "a1.sourcs"),
    ]
    for text, at, message, misspelt in cases:
        conf = write_config(tmp_path, text)
        p = validate(conf)
        assert p.returncode == 2, p.stderr
        err = p.stderr.splitlines()[-1]
        assert err.startswith("fastsync: error: %s:%d: " % (conf, line_of(text, at))), err
        assert err.endswith(message % line_of(text, misspelt) if misspelt else message), err


FLUME = """\
# As the Flume user guide writes them: netcat and TAILDIR in, a memory and a file channel,
# logger, file_roll, HDFS and Kafka out, a failover sink group
agent.sources = netcat tail
agent.channels = mem file
agent.sinks = log roll hdfs kafka
agent.sinkgroups = g1

agent.sources.netcat.type = netcat
agent.sources.netcat.bind = 127.0.0.1
agent.sources.netcat.port = 44444
agent.sources.netcat.max-line-length = 1024
agent.sources.netcat.ack-every-event = false
agent.sources.netcat.channels = mem file
agent.sources.netcat.selector.type = multiplexing
agent.sources.netcat.selector.header = state
agent.sources.netcat.selector.mapping.CZ = mem
agent.sources.netcat.selector.mapping.US = mem file
agent.sources.netcat.selector.optional.CZ = file
agent.sources.netcat.selector.default = mem
agent.sources.netcat.interceptors = ts host static
agent.sources.netcat.interceptors.ts.type = timestamp
agent.sources.netcat.interceptors.host.type = host
agent.sources.netcat.interceptors.host.hostHeader = hostname
agent.sources.netcat.interceptors.static.type = static
agent.sources.netcat.interceptors.static.key = datacenter
agent.sources.netcat.interceptors.static.value = NEW_YORK

agent.sources.tail.type = TAILDIR
agent.sources.tail.channels = mem
agent.sources.tail.positionFile = {tmp}/taildir_position.json
agent.sources.tail.filegroups = f1 f2
agent.sources.tail.filegroups.f1 = {tmp}/test1/example.log
agent.sources.tail.headers.f1.headerKey1 = value1
agent.sources.tail.filegroups.f2 = {tmp}/test2/.*log.*
agent.sources.tail.headers.f2.headerKey1 = value2
agent.sources.tail.fileHeader = true
# Flume's, with no effect here (accepted)
agent.sources.tail.cachePatternMatching = true
agent.sources.tail.maxBatchCount = 1000

agent.channels.mem.type = memory
agent.channels.mem.capacity = 10000
agent.channels.mem.transactionCapacity = 10000
agent.channels.mem.byteCapacityBufferPercentage = 20
agent.channels.mem.byteCapacity = 800000
agent.channels.mem.keep-alive = 3

agent.channels.file.type = file
agent.channels.file.checkpointDir = {tmp}/checkpoint
agent.channels.file.dataDirs = {tmp}/data
agent.channels.file.useDualCheckpoints = false
agent.channels.file.checkpointInterval = 30000
# Flume's, with no effect here (accepted)
agent.channels.file.use-fast-replay = false

agent.sinks.log.type = logger
agent.sinks.log.channel = mem
agent.sinks.log.maxBytesToLog = 32
agent.sinks.roll.type = file_roll
agent.sinks.roll.channel = mem
agent.sinks.roll.sink.directory = {tmp}/roll
agent.sinks.roll.sink.rollInterval = 30
agent.sinks.roll.sink.serializer = TEXT
agent.sinks.roll.sink.serializer.appendNewline = true
agent.sinks.hdfs.type = hdfs
agent.sinks.hdfs.channel = file
agent.sinks.hdfs.hdfs.path = {tmp}/flume/events/%y-%m-%d/%H%M/%S
agent.sinks.hdfs.hdfs.filePrefix = events-
agent.sinks.hdfs.hdfs.round = true
agent.sinks.hdfs.hdfs.roundValue = 10
agent.sinks.hdfs.hdfs.roundUnit = minute
agent.sinks.hdfs.hdfs.fileType = DataStream
# Flume's, with no effect here (accepted)
agent.sinks.hdfs.hdfs.writeFormat = Text
agent.sinks.hdfs.hdfs.callTimeout = 10000
agent.sinks.hdfs.hdfs.threadsPoolSize = 10
agent.sinks.kafka.type = org.apache.flume.sink.kafka.KafkaSink
agent.sinks.kafka.channel = file
agent.sinks.kafka.kafka.topic = mytopic
agent.sinks.kafka.kafka.bootstrap.servers = localhost:9092
agent.sinks.kafka.flumeBatchSize = 20
# passed through to the Kafka producer
agent.sinks.kafka.kafka.producer.acks = 1
agent.sinks.kafka.kafka.producer.linger.ms = 1
agent.sinks.kafka.kafka.producer.compression.type = snappy

agent.sinkgroups.g1.sinks = log roll
agent.sinkgroups.g1.processor.type = failover
agent.sinkgroups.g1.processor.priority.log = 5
agent.sinkgroups.g1.processor.priority.roll = 10
agent.sinkgroups.g1.processor.maxpenalty = 10000
"""


def test_flume_configuration_passes_strict(tmp_path):
    (tmp_path / "test1").mkdir()
    (tmp_path / "test2").mkdir()
    text = FLUME.format(tmp=tmp_path)
    conf = write_config(tmp_path, text)
    p = validate(conf, "--strict", name="agent")
    assert (p.returncode, p.stderr) == (0, ""), p.stderr
    assert p.stdout == "%s: agent agent is valid: sources netcat tail, channels mem file, sinks log roll hdfs kafka\n" % conf
    # the user guide's Kafka sink example sets kafka.flumeBatchSize, which Flume itself does not read;
    # a file group not listed in filegroups is read by nobody either
    text += "agent.sinks.kafka.kafka.flumeBatchSize = 20\nagent.sources.tail.filegroups.f22 = %s/x.log\n" % tmp_path
    conf = write_config(tmp_path, text)
    p = validate(conf, "--strict", name="agent")
    assert p.returncode == 2
    assert p.stderr.splitlines() == [
        "fastsync: error: " + located(conf, text, "agent.sinks.kafka.kafka.flumeBatchSize", "unknown key — did you mean `flumeBatchSize`?"),
        "fastsync: error: " + located(conf, text, "agent.sources.tail.filegroups.f22",
                                      "not a group of filegroups — did you mean `filegroups.f2`?")]


def test_running_agent_strict_refuses_a_typo_before_starting(tmp_path, run_agent):
    out = tmp_path / "out"
    text = PIPELINE.format(out=out) + "a1.channels.c1.capacty = 1000\n"
    conf = write_config(tmp_path, text)
    p = run_agent("a1", conf, "--strict", "--exit-when-done")
    assert p.returncode == 2
    assert p.stderr.splitlines() == [
        "fastsync: error: " + located(conf, text, "a1.channels.c1.capacty", "unknown key — did you mean `capacity`?")]
    assert not out.exists()     # nothing started
    # without --strict it runs as Flume would, on the default capacity, and says what it ignored
    p = run_agent("a1", conf, "--exit-when-done")
    assert p.returncode == 0, p.stderr
    assert warnings(p.stderr) == [located(conf, text, "a1.channels.c1.capacty", "unknown key, ignored — did you mean `capacity`?")]
    assert sum(len(f.read_bytes().splitlines()) for f in out.iterdir()) == 500
    # and a clean configuration runs with --strict
    conf = write_config(tmp_path, PIPELINE.format(out=tmp_path / "out2"))
    p = run_agent("a1", conf, "--strict", "--exit-when-done")
    assert p.returncode == 0 and warnings(p.stderr) == [], p.stderr
    assert sum(len(f.read_bytes().splitlines()) for f in (tmp_path / "out2").iterdir()) == 500
