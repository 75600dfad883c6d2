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
