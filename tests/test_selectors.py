"""Channel selectors through the agent CLI: multiplexing on a header set per event by an
interceptor (seq bodies' last digit), with mapped, optional and default channels."""
from __future__ import annotations

import pytest

from e2e_support import read_dir_lines, write_config


def config(tmp_path, n, **selector):
    cfg = {
        "a1.sources": "r1", "a1.channels": "c1 c2 c3", "a1.sinks": "k1 k2 k3",
        "a1.sources.r1.type": "seq", "a1.sources.r1.totalEvents": n, "a1.sources.r1.batchSize": 100,
        "a1.sources.r1.channels": "c1 c2 c3",
        "a1.sources.r1.interceptors": "x",
        "a1.sources.r1.interceptors.x.type": "regex_extractor", "a1.sources.r1.interceptors.x.regex": "([0-9])$",
        "a1.sources.r1.interceptors.x.serializers": "d", "a1.sources.r1.interceptors.x.serializers.d.name": "digit",
        "a1.sources.r1.selector.type": "multiplexing", "a1.sources.r1.selector.header": "digit",
    }
    cfg.update({"a1.sources.r1.selector." + k.replace("__", "."): v for k, v in selector.items()})
    for i in (1, 2, 3):
        cfg.update({"a1.channels.c%d.type" % i: "memory", "a1.channels.c%d.capacity" % i: 10000,
                    "a1.channels.c%d.transactionCapacity" % i: 1000,
                    "a1.sinks.k%d.type" % i: "file_roll", "a1.sinks.k%d.channel" % i: "c%d" % i,
                    "a1.sinks.k%d.sink.directory" % i: tmp_path / ("out%d" % i), "a1.sinks.k%d.sink.rollInterval" % i: 0})
    return cfg


def test_multiplexing_mapping_optional_and_default(tmp_path, run_agent):
    n = 5000
    cfg = config(tmp_path, n, mapping__0="c1", mapping__1="c1 c2", mapping__2="c2", optional__2="c3", default="c3")
    p = run_agent("a1", write_config(tmp_path, cfg), "--exit-when-done", timeout=60)
    assert p.returncode == 0, p.stderr
    got = [sorted(int(x) for x in read_dir_lines(tmp_path / ("out%d" % i))) for i in (1, 2, 3)]
    assert got[0] == [i for i in range(n) if i % 10 in (0, 1)]
    assert got[1] == [i for i in range(n) if i % 10 in (1, 2)]
    assert got[2] == [i for i in range(n) if i % 10 not in (0, 1)]     # default (3..9) and optional for 2


@pytest.mark.parametrize("key,value,words", [
    ("mapping__0", "c9", "channel 'c9' is not in a1.sources.r1.channels"),
    ("optional", "c1", "optional channels are per value"),
])
def test_multiplexing_config_errors(tmp_path, run_agent, key, value, words):
    p = run_agent("a1", write_config(tmp_path, config(tmp_path, 10, **{key: value})), "--validate", timeout=30)
    assert p.returncode == 2 and words in p.stderr and "agent.properties:" in p.stderr, p.stderr


# -- sink groups --------------------------------------------------------------------------

DEAD_KAFKA = {"type": "kafka", "kafka.bootstrap.servers": "127.0.0.1:1", "kafka.topic": "nowhere",
              "kafka.producer.message.timeout.ms": 1000, "flumeBatchSize": 100}


def group_config(tmp_path, n, processor: dict, k1: dict):
    cfg = {
        "a1.sources": "r1", "a1.channels": "c1", "a1.sinks": "k1 k2", "a1.sinkgroups": "g1",
        "a1.sources.r1.type": "seq", "a1.sources.r1.totalEvents": n, "a1.sources.r1.batchSize": 100,
        "a1.sources.r1.channels": "c1",
        "a1.channels.c1.type": "memory", "a1.channels.c1.capacity": 100000, "a1.channels.c1.transactionCapacity": 100,
        "a1.sinks.k2.type": "file_roll", "a1.sinks.k2.channel": "c1", "a1.sinks.k2.sink.directory": tmp_path / "out2",
        "a1.sinks.k2.sink.rollInterval": 0, "a1.sinks.k2.sink.batchSize": 100,
        "a1.sinkgroups.g1.sinks": "k1 k2",
    }
    cfg.update({"a1.sinks.k1." + k: v for k, v in k1.items()})
    cfg["a1.sinks.k1.channel"] = "c1"
    cfg.update({"a1.sinkgroups.g1.processor." + k: v for k, v in processor.items()})
    return cfg


def file_roll(tmp_path, name):
    return {"type": "file_roll", "sink.directory": tmp_path / name, "sink.rollInterval": 0, "sink.batchSize": 100}


def test_failover_moves_to_the_backup_while_the_primary_fails(tmp_path, run_agent):
    n = 3000
    cfg = group_config(tmp_path, n, {"type": "failover", "priority.k1": 10, "priority.k2": 5, "maxpenalty": 60000}, DEAD_KAFKA)
    p = run_agent("a1", write_config(tmp_path, cfg), "--exit-when-done", timeout=120)
    assert p.returncode == 0, p.stderr
    assert sorted(int(x) for x in read_dir_lines(tmp_path / "out2")) == list(range(n))
    assert "sink group g1: sink k1 failed, penalised for 1s, failing over" in p.stderr


def test_failover_prefers_the_higher_priority_sink(tmp_path, run_agent):
    n = 2000
    cfg = group_config(tmp_path, n, {"type": "failover", "priority.k1": 1, "priority.k2": 5}, file_roll(tmp_path, "out1"))
    p = run_agent("a1", write_config(tmp_path, cfg), "--exit-when-done", timeout=60)
    assert p.returncode == 0, p.stderr
    assert read_dir_lines(tmp_path / "out1") == [] and len(read_dir_lines(tmp_path / "out2")) == n


def test_load_balance_round_robin_spreads_batches(tmp_path, run_agent):
    n = 20000
    cfg = group_config(tmp_path, n, {"type": "load_balance", "selector": "round_robin"}, file_roll(tmp_path, "out1"))
    p = run_agent("a1", write_config(tmp_path, cfg), "--exit-when-done", timeout=60)
    assert p.returncode == 0, p.stderr
    one, two = read_dir_lines(tmp_path / "out1"), read_dir_lines(tmp_path / "out2")
    assert len(one) > n // 4 and len(two) > n // 4
    assert sorted(int(x) for x in one + two) == list(range(n))


def test_load_balance_with_backoff_skips_a_failing_sink(tmp_path, run_agent):
    n = 3000
    cfg = group_config(tmp_path, n, {"type": "load_balance", "selector": "random", "backoff": "true",
                                     "selector.maxTimeOut": 60000}, DEAD_KAFKA)
    p = run_agent("a1", write_config(tmp_path, cfg), "--exit-when-done", timeout=120)
    assert p.returncode == 0, p.stderr
    assert sorted(int(x) for x in read_dir_lines(tmp_path / "out2")) == list(range(n))


def test_sink_group_config_errors(tmp_path, run_agent):
    cfg = group_config(tmp_path, 10, {"type": "failover", "priority.k9": 1}, file_roll(tmp_path, "o"))
    p = run_agent("a1", write_config(tmp_path, cfg), "--validate", timeout=30)
    assert p.returncode == 2 and "a1.sinkgroups.g1.processor.priority.k9: sink 'k9' is not in sink group 'g1'" in p.stderr
    cfg = group_config(tmp_path, 10, {"type": "fastest"}, file_roll(tmp_path, "o"))
    p = run_agent("a1", write_config(tmp_path, cfg), "--validate", timeout=30)
    assert p.returncode == 2 and "unknown sink processor 'fastest' (known: default, failover, load_balance)" in p.stderr


def test_selectors_and_processors_by_flume_class_name_or_unknown(tmp_path, run_agent):
    """Selector and sink processor types resolve as every other plug-in's: Flume's alias or
    class name, any case; an unknown one names the known ones."""
    cfg = group_config(tmp_path, 10, {"type": "org.apache.flume.sink.FailoverSinkProcessor"}, file_roll(tmp_path, "o"))
    cfg["a1.sources.r1.selector.type"] = "org.apache.flume.channel.ReplicatingChannelSelector"
    p = run_agent("a1", write_config(tmp_path, cfg), "--validate", timeout=30)
    assert p.returncode == 0, p.stderr
    cfg["a1.sources.r1.selector.type"] = "broadcast"
    p = run_agent("a1", write_config(tmp_path, cfg), "--validate", timeout=30)
    assert p.returncode == 2 and ("a1.sources.r1.selector.type: unknown channel selector 'broadcast' "
                                  "(known: multiplexing, replicating)") in p.stderr, p.stderr
