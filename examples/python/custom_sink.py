"""A custom sink in a user's program, run by an agent built in Python: it counts the events per
value of a header with pyarrow.compute and writes the counts to a JSON file when it stops.

Run:  python examples/python/custom_sink.py [COUNTS_FILE]    (default: out/counts.json)

The seq source's events 0, 1, 2, ... get header `digit` (their last digit) from a regex_extractor
interceptor; CountSink counts them: 1000 events per digit.
"""
from __future__ import annotations

import json
import sys
from collections import Counter

import pyarrow.compute as pc

from fastsync import Agent, ConfigError, EventBatch, Sink, setting


class CountSink(Sink):
    """Counts the events per value of a header; writes {value: count} to `path` when it stops."""

    path: str = setting(doc="the JSON file the counts are written to")
    header: str = setting(default="host", doc="the header whose values are counted")

    def start(self) -> None:
        self.counts: Counter[str] = Counter()

    def deliver(self, batch: EventBatch) -> None:
        for row in pc.value_counts(batch.header_array(self.header)).to_pylist():
            self.counts[row["values"] or "(none)"] += row["counts"]

    def stop(self) -> None:
        with open(self.path, "w") as f:
            json.dump(dict(sorted(self.counts.items())), f)


def build(path: str, events: int = 10_000) -> Agent:
    return (Agent("a1")
            .source("r1", "seq", channels=["c1"], totalEvents=events, batchSize=1000)
            .interceptor("r1", "i1", "regex_extractor", regex=r"(\d)$", serializers="s1", keys={"serializers.s1.name": "digit"})
            .channel("c1", "memory", capacity=10_000, transactionCapacity=1000)
            .sink("k1", CountSink, channel="c1", path=path, header="digit", batchSize=1000))


def main(argv: list[str]) -> int:
    path = argv[1] if len(argv) > 1 else "out/counts.json"
    agent = build(path)
    print(agent.to_properties(), end="")       # the sink's type: __main__:CountSink
    try:
        run = agent.run(until_done=True)
    except ConfigError as exc:      # e.g. a bad value of CountSink's keys, located in to_properties()'s text
        print("error: %s" % exc, file=sys.stderr)
        return 2
    with open(path) as f:
        print("%d events delivered; per digit: %s" % (run.delivered, json.load(f)))
    return 0 if run.drained else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
