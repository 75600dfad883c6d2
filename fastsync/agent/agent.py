"""An agent: channels, sinks and sources built from an AgentConfig, started and stopped
in Flume's order (channels, sinks, sources up; sources, then drained sinks, down)."""
from __future__ import annotations

import logging
import threading
import time

from fastsync.agent.config import AgentConfig
from fastsync.agent.interceptors import InterceptorChain
from fastsync.agent.runner import Runner
from fastsync.agent.source import ChannelProcessor

log = logging.getLogger("fastsync.agent")


class Agent:
    def __init__(self, config: AgentConfig):
        self.config = config
        self.channels = {n: s.cls(n, s.config) for n, s in config.channels.items()}
        self.sources = {}
        for n, s in config.sources.items():
            src = s.cls(n, s.config)
            chain = InterceptorChain([i.cls(i.name, i.config) for i in s.interceptors]) if s.interceptors else None
            src.processor = ChannelProcessor([self.channels[c] for c in s.channels],
                                             [self.channels[c] for c in s.optional], chain, s.multiplexing)
            self.sources[n] = src
        self.sinks = {}
        for n, s in config.sinks.items():
            sink = s.cls(n, s.config)
            sink.channel = self.channels[s.channel]
            self.sinks[n] = sink
        self._source_runners: list[Runner] = []
        self._sink_runners: list[Runner] = []
        self.started_at = 0.0

    def start(self) -> None:
        self.started_at = time.monotonic()
        for ch in self.channels.values():
            ch.start()
        grouped = set()
        for group in self.config.sinkgroups.values():
            if group.processor is None:
                continue
            members = [self.sinks[s] for s in group.sinks]
            for sink in members:
                sink.start()
            grouped.update(group.sinks)
            processor = group.processor(group.name, members, group.config)
            r = Runner("SinkRunner-%s" % group.name, processor.process, waits_itself=True)
            self._sink_runners.append(r)
            r.start()
        for name, sink in self.sinks.items():
            if name in grouped:
                continue
            sink.start()
            r = Runner("SinkRunner-%s" % name, sink.process, waits_itself=True)
            self._sink_runners.append(r)
            r.start()
        for name, src in self.sources.items():
            src.start()
            if src.pollable:
                r = Runner("PollableSourceRunner-%s" % name, src.process, waits_itself=src.waits_itself,
                           done=lambda s=src: s.finished)
                self._source_runners.append(r)
                r.start()
        log.info("agent %s started: sources %s, channels %s, sinks %s", self.config.name,
                 " ".join(self.sources) or "-", " ".join(self.channels), " ".join(self.sinks) or "-")

    def sources_finished(self) -> bool:
        return all(s.finished for s in self.sources.values())

    def drained(self) -> bool:
        # a channel without sinks is never drained by this agent; don't wait for it
        fed = {s.channel for s in self.sinks.values()}
        return all(ch.size == 0 and ch.in_flight == 0 for ch in fed)

    def done(self) -> bool:
        return self.sources_finished() and self.drained()

    def stop(self, drain_timeout: float = 30.0) -> bool:
        """Stop sources, let sinks drain for up to drain_timeout s, stop the rest.
        Returns True if every channel was drained."""
        for r in self._source_runners:
            r.stopping.set()
        for src in self.sources.values():
            src.stop()
        for r in self._source_runners:
            r.stop()
        deadline = time.monotonic() + drain_timeout
        while not self.drained() and time.monotonic() < deadline:
            time.sleep(0.02)
        drained = self.drained()
        if not drained:
            left = sum(ch.size + ch.in_flight for ch in self.channels.values())
            log.warning("agent %s: %d events still in channels after %gs of draining", self.config.name, left, drain_timeout)
        for r in self._sink_runners:
            r.stopping.set()
        for ch in self.channels.values():
            ch.interrupt()
        for sink in self.sinks.values():
            sink.interrupt()
        for r in self._sink_runners:
            r.stop()
        for sink in self.sinks.values():
            sink.stop()
        for ch in self.channels.values():
            ch.stop()
        log.info("agent %s stopped", self.config.name)
        return drained

    def metrics(self) -> dict:
        out = {}
        for kind, comps in (("SOURCE", self.sources), ("CHANNEL", self.channels), ("SINK", self.sinks)):
            for name, comp in comps.items():
                out["%s.%s" % (kind, name)] = comp.counters.snapshot()
        return out

    def run(self, stop: threading.Event, exit_when_done: bool = False, drain_timeout: float = 30.0) -> bool:
        """Start, wait for `stop` (or, with exit_when_done, for the work to be done), stop."""
        self.start()
        while not stop.is_set():
            if exit_when_done and self.done():
                break
            stop.wait(0.02)
        return self.stop(drain_timeout)
