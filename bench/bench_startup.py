"""Start-up time (hot-path issue item 4): `fastsync --help` and an agent from exec until its
source ran, against same-run baselines `python -c pass` and `python -c "import pyarrow"`.

The agent is `seq -> memory -> null` with totalEvents=1 and --exit-when-done, timed from exec
until its log line "agent a1 started" (its source is running), and also to exit. Targets: agent <= 0.25 s, --help <= 0.15 s; figures in
bench/README.md.

Run: `pytest bench/bench_startup.py --benchmark-enable`; in the normal test run each body
runs once as a check. `python bench/bench_startup.py [runs]` prints the medians of all four.
"""
import statistics
import subprocess
import sys
import time

import pytest

AGENT = """a1.sources = r1
a1.channels = c1
a1.sinks = k1
a1.sources.r1.type = seq
a1.sources.r1.totalEvents = 1
a1.sources.r1.channels = c1
a1.channels.c1.type = memory
a1.sinks.k1.type = null
a1.sinks.k1.channel = c1
"""


def commands(conf) -> dict[str, list[str]]:
    py = [sys.executable]
    return {"python -c pass": py + ["-c", "pass"],
            "python -c 'import pyarrow'": py + ["-c", "import pyarrow"],
            "fastsync --help": py + ["-m", "fastsync", "--help"],
            "fastsync agent (seq->memory->null, 1 event) to started": py + ["-m", "fastsync", "agent", "-n", "a1", "-f", str(conf),
                                                                 "--exit-when-done"]}


def run(cmd) -> None:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr[-2000:]


def start_agent(cmd) -> subprocess.Popen:
    """Runs the agent until it logs that it started; the caller waits for its exit."""
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in p.stderr:
        if "agent a1 started" in line:
            return p
    raise AssertionError("the agent exited with %s before starting" % p.wait())


def finish(p: subprocess.Popen) -> None:
    p.stderr.read()
    assert p.wait(60) == 0


@pytest.mark.parametrize("name", ["python -c pass", "python -c 'import pyarrow'", "fastsync --help",
                                  "fastsync agent (seq->memory->null, 1 event) to started"])
def test_startup(benchmark, tmp_path, name):
    conf = tmp_path / "seq.properties"
    conf.write_text(AGENT)
    cmd = commands(conf)[name]
    if not name.startswith("fastsync agent"):
        benchmark.pedantic(run, args=(cmd,), rounds=10, iterations=1, warmup_rounds=1)
        return
    started = []
    benchmark.pedantic(lambda: started.append(start_agent(cmd)), rounds=10, iterations=1, warmup_rounds=1)
    for p in started:
        finish(p)


def main(runs: int) -> None:
    import tempfile
    from pathlib import Path
    with tempfile.TemporaryDirectory() as d:
        conf = Path(d) / "seq.properties"
        conf.write_text(AGENT)
        cmds = commands(conf)
        agent = [name for name in cmds if name.startswith("fastsync agent")][0]
        to_exit = agent.replace("to started", "to exit")
        times = {name: [] for name in [*cmds, to_exit]}
        for name, cmd in cmds.items():   # warm the page cache
            run(cmd)
        for _ in range(runs):             # interleaved, so load changes hit every command alike
            for name, cmd in cmds.items():
                t = time.perf_counter()
                if name == agent:
                    p = start_agent(cmd)
                    times[name].append(time.perf_counter() - t)
                    finish(p)
                    times[to_exit].append(time.perf_counter() - t)
                else:
                    run(cmd)
                    times[name].append(time.perf_counter() - t)
        for name, ts in times.items():
            print("%-60s median %.3f s  (min %.3f, max %.3f, %d runs)" % (name, statistics.median(ts), min(ts), max(ts), runs))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 15)
