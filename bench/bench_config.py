"""`fastsync agent --validate` on configurations of many components (issue 13 item 12).

The file has n components in n/5 chains: a seq source with a timestamp interceptor, a
memory channel, a null sink and a failover sink group holding that sink. Validation time must grow
linearly with n: before the fix it was quadratic (10 k components: 30 s, 100 k: about 50 min);
figures in bench/README.md.

Run: `pytest bench/bench_config.py --benchmark-enable`; in the normal test run each body
runs once as a check.
"""
import re
import subprocess

import pytest


def config_text(components: int) -> str:
    """A valid agent `a1` of `components` components, in 5-component groups."""
    n = components // 5
    ids = range(n)
    lines = ["a1.sources = " + " ".join("r%d" % i for i in ids),
             "a1.channels = " + " ".join("c%d" % i for i in ids),
             "a1.sinks = " + " ".join("k%d" % i for i in ids),
             "a1.sinkgroups = " + " ".join("g%d" % i for i in ids)]
    for i in ids:
        lines += ["a1.sources.r%d.type = seq" % i,
                  "a1.sources.r%d.channels = c%d" % (i, i),
                  "a1.sources.r%d.interceptors = i1" % i,
                  "a1.sources.r%d.interceptors.i1.type = timestamp" % i,
                  "a1.channels.c%d.type = memory" % i,
                  "a1.channels.c%d.capacity = 1000" % i,
                  "a1.sinks.k%d.type = null" % i,
                  "a1.sinks.k%d.channel = c%d" % (i, i),
                  "a1.sinkgroups.g%d.sinks = k%d" % (i, i),
                  "a1.sinkgroups.g%d.processor.type = failover" % i,
                  "a1.sinkgroups.g%d.processor.priority.k%d = 5" % (i, i)]
    return "\n".join(lines) + "\n"


def validate(cmd, path) -> str:
    p = subprocess.run(cmd + ["agent", "-n", "a1", "-f", str(path), "--validate", "--log-level", "WARNING"],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    return p.stdout


@pytest.mark.parametrize("components", [10_000, 100_000])
def test_validate_many_components(benchmark, tmp_path, fastsync_cmd, components):
    conf = tmp_path / "many.properties"
    conf.write_text(config_text(components))
    out = benchmark.pedantic(validate, args=(fastsync_cmd, conf), rounds=3, iterations=1)
    n = components // 5
    m = re.search(r"is valid: sources (.*), channels (.*), sinks (.*)$", out)
    assert m, out[:2000]
    assert [len(g.split()) for g in m.groups()] == [n, n, n]
    benchmark.extra_info["components"] = components
