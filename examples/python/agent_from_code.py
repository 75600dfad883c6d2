"""An agent built in Python: a sequence generator into a memory channel, written to rolling
files, run until every event is delivered; then its counters.

Run:  python examples/python/agent_from_code.py [OUTPUT_DIR]    (default: out/seq-python)

It is examples/seq-file_roll.properties in code (with fewer events):
`agent.to_properties()` prints the same keys.
"""
from __future__ import annotations

import sys

from fastsync import Agent, ConfigError


def build(directory: str, events: int = 100_000) -> Agent:
    return (Agent("a1")
            .source("r1", "seq", channels=["c1"], totalEvents=events, batchSize=1000)
            .channel("c1", "memory", capacity=100_000, transactionCapacity=1000)
            .sink("k1", "file_roll", channel="c1",
                  keys={"sink.directory": directory, "sink.rollInterval": 0, "sink.batchSize": 1000}))


def main(argv: list[str]) -> int:
    agent = build(argv[1] if len(argv) > 1 else "out/seq-python")
    try:
        run = agent.run(until_done=True)     # as `fastsync agent ... --exit-when-done`
    except ConfigError as exc:               # located: `<Agent a1>:LINE: KEY: message`
        print("error: %s" % exc, file=sys.stderr)
        return 2
    print("%d events delivered in %.3f s" % (run.delivered, run.seconds))
    for component, counters in sorted(agent.metrics().items()):
        counts = {k: v for k, v in counters.items() if k.endswith("Count") and v != "0"}
        print(component, counts)
    return 0 if run.drained else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
