"""An agent: channels, sinks and sources built from an AgentConfig, started and stopped
in Flume's order (channels, sinks, sources up; sources, then drained sinks, down)."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from fastsync.agent.config import AgentConfig
from fastsync.agent.runner import Runner
from fastsync.agent.source import ChannelProcessor

log = logging.getLogger("fastsync.agent")


def keys_of_group(group) -> tuple:
    return (group.processor, tuple(sorted(vars(group.config).items(), key=lambda kv: kv[0])) if group.config else ())


class Agent:
    def __init__(self, config: AgentConfig):
        self.config = config
        self.channels = {n: s.cls(n, s.config) for n, s in config.channels.items()}
        self.sources = {n: self._build_source(s) for n, s in config.sources.items()}
        grouped = self._grouped()
        self.sinks = {n: self._build_sink(s, grouped) for n, s in config.sinks.items()}
        self._runners: dict[tuple[str, str], Runner] = {}   # ("source"|"sink"|"group", name)
        self.started_at = 0.0
        # an HA standby (fastsync.agent.ha) runs channels and sinks only: its sources are built, not started
        self.ha = None
        self.sources_on = True

    def _build_source(self, s):
        chain = None
        if s.interceptors:      # their module is loaded (by the registry) only when a source has some
            from fastsync.agent.interceptors import InterceptorChain
            chain = InterceptorChain([i.cls(i.name, i.config) for i in s.interceptors])
        selector = s.selector([self.channels[c] for c in s.channels], [self.channels[c] for c in s.optional],
                              s.multiplexing)
        return s.cls(s.name, s.config, processor=ChannelProcessor(selector, chain))

    def _build_sink(self, s, grouped: dict[str, str]):
        group = grouped.get(s.name)
        per_process = self.config.sinkgroups[group].processor.transactions_per_sink if group else None
        return s.cls(s.name, s.config, channel=self.channels[s.channel], transactions_per_process=per_process)

    @property
    def _source_runners(self) -> list[Runner]:
        return [r for (kind, _), r in self._runners.items() if kind == "source"]

    @property
    def _sink_runners(self) -> list[Runner]:
        return [r for (kind, _), r in self._runners.items() if kind != "source"]

    def _grouped(self) -> dict[str, str]:
        """sink name -> its group, for groups with a processor of their own."""
        return {s: g.name for g in self.config.sinkgroups.values() if not g.processor.each_sink_alone for s in g.sinks}

    def _start_sinks(self, names) -> None:
        grouped = self._grouped()
        starting = set(names)      # once, not once per group: start-up stays linear
        for group in self.config.sinkgroups.values():
            if group.processor.each_sink_alone or starting.isdisjoint(group.sinks):
                continue
            members = [self.sinks[s] for s in group.sinks]
            for sink in members:
                sink.start()
            processor = group.processor(group.name, members, group.config)
            self._run(("group", group.name), Runner("SinkRunner-%s" % group.name, processor.process, waits_itself=True))
        for name in names:
            if name not in grouped:
                self.sinks[name].start()
                self._run(("sink", name), Runner("SinkRunner-%s" % name, self.sinks[name].process, waits_itself=True))

    def _start_sources(self, names) -> None:
        for name in names:
            src = self.sources[name]
            _interceptors(src, "start")
            src.start()
            if src.pollable:
                self._run(("source", name), Runner("PollableSourceRunner-%s" % name, src.process,
                                                   waits_itself=src.waits_itself, done=lambda s=src: s.finished))

    def _run(self, key, runner: Runner) -> None:
        self._runners[key] = runner
        runner.start()

    def start(self) -> None:
        """Start channels, sinks, then sources; a start that fails stops what started, then raises."""
        self.started_at = time.monotonic()
        try:
            for ch in self.channels.values():
                ch.start()
            self._start_sinks(list(self.sinks))
            if self.sources_on:
                self._start_sources(list(self.sources))
        except BaseException:
            self.stop(0)
            raise
        log.info("agent %s started: sources %s, channels %s, sinks %s", self.config.name,
                 " ".join(self.sources) or "-", " ".join(self.channels), " ".join(self.sinks) or "-")

    def reload(self, new: AgentConfig) -> list[str]:
        """Apply a changed configuration: only the components whose keys changed (and those
        bound to a changed channel, or in a changed sink group) are stopped, rebuilt and
        started; the rest keep running. Returns what was restarted, e.g. ["sink k1"]."""
        def keys(spec):
            return {k: p.value for k, p in spec.place.props.items()} if spec is not None else None

        old = self.config
        channels = {n for n in set(old.channels) | set(new.channels)
                    if keys(old.channels.get(n)) != keys(new.channels.get(n))}
        sources = {n for n in set(old.sources) | set(new.sources)
                   if keys(old.sources.get(n)) != keys(new.sources.get(n))
                   or set(getattr(new.sources.get(n), "channels", [])) & channels
                   or set(getattr(new.sources.get(n), "optional", [])) & channels}
        sinks = {n for n in set(old.sinks) | set(new.sinks)
                 if keys(old.sinks.get(n)) != keys(new.sinks.get(n))
                 or getattr(new.sinks.get(n), "channel", None) in channels}
        for g in set(old.sinkgroups) | set(new.sinkgroups):
            a, b = old.sinkgroups.get(g), new.sinkgroups.get(g)
            if (a and a.sinks, a and keys_of_group(a)) != (b and b.sinks, b and keys_of_group(b)) or \
                    (a and set(a.sinks) & sinks) or (b and set(b.sinks) & sinks):
                sinks |= set(a.sinks if a else []) | set(b.sinks if b else [])
        # down: sources, then sinks (and their groups' runners), then channels
        for n in sources & set(self.sources):
            self._stop_runner(("source", n))
            src = self.sources.pop(n)
            if self.sources_on:
                src.stop()
                _interceptors(src, "stop")
        groups = {g for g in old.sinkgroups if set(old.sinkgroups[g].sinks) & sinks}
        for g in groups:
            self._stop_runner(("group", g))
        for n in sinks & set(self.sinks):
            self.sinks[n].interrupt()
            self._stop_runner(("sink", n))
            self.sinks.pop(n).stop()
        for n in channels & set(self.channels):
            self.channels.pop(n).stop()
        # up, from the new configuration
        self.config = new
        for n in channels & set(new.channels):
            self.channels[n] = new.channels[n].cls(n, new.channels[n].config)
            self.channels[n].start()
        grouped = self._grouped()
        for n in sinks & set(new.sinks):
            self.sinks[n] = self._build_sink(new.sinks[n], grouped)
        self._start_sinks([n for n in new.sinks if n in sinks])
        for n in sources & set(new.sources):
            self.sources[n] = self._build_source(new.sources[n])
        if self.sources_on:
            self._start_sources([n for n in new.sources if n in sources])
        changed = (["channel %s" % n for n in sorted(channels)] + ["sink %s" % n for n in sorted(sinks)]
                   + ["source %s" % n for n in sorted(sources)])
        log.info("agent %s reloaded: %s", new.name, ", ".join(changed) or "nothing changed")
        return changed

    def _stop_runner(self, key) -> None:
        r = self._runners.pop(key, None)
        if r is not None:
            r.stop()

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
        self.stop_sources()
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

    def stop_sources(self) -> None:
        """Stop the running sources (at shutdown; an HA leader that is no longer sure it leads)."""
        if not self.sources_on:
            return
        self.sources_on = False
        for r in self._source_runners:
            r.stopping.set()
        for src in self.sources.values():
            src.stop()
        for key in [k for k in self._runners if k[0] == "source"]:
            self._stop_runner(key)
        for src in self.sources.values():
            _interceptors(src, "stop")

    def start_sources(self) -> None:
        """Start the sources of a standby that became the HA leader: built afresh (a stopped
        source is not restarted), keeping their counters, so /metrics counts for the process."""
        if self.sources_on:
            return
        for name, spec in self.config.sources.items():
            counters = self.sources[name].counters
            self.sources[name] = self._build_source(spec)
            self.sources[name].counters = counters
        self.sources_on = True
        self._start_sources(list(self.sources))

    def metrics(self) -> dict:
        out = {}
        for kind, comps in (("SOURCE", self.sources), ("CHANNEL", self.channels), ("SINK", self.sinks)):
            for name, comp in comps.items():
                out["%s.%s" % (kind, name)] = comp.counters.snapshot()
        if self.ha is not None:
            out["AGENT.%s" % self.config.name] = self.ha.snapshot()
        return out

    def delivered(self) -> int:
        """Events the sinks delivered so far."""
        return sum(s.counters["EventDrainSuccessCount"] for s in self.sinks.values())

    def run(self, stop, exit_when_done: bool = False, drain_timeout: float = 30.0,
            reload_interval: float | None = None, progress: bool | None = None, strict: bool = False,
            watcher=None) -> "Run":
        """Start, run until `stop` is set (or, with exit_when_done, until finite sources are
        exhausted and channels drained), stop. `stop` is a fastsync.signals.SignalFlag when
        signals set it (a signal handler must never call threading.Event.set()). With
        reload_interval, the configuration file is read again that often and changes are
        applied (ConfigWatcher; with `strict`, a file with keys nobody reads is rejected);
        `watcher`, if given, is polled instead (its poll(agent) applies changes; the znode's
        watcher of fastsync.agent.zkconfig); `progress` (default: on a terminal) shows events
        delivered and events/s on stderr.
        A start that fails stops what started, then raises."""
        from fastsync.progress import Progress, Rate
        status = Progress(Rate(self.delivered), interval=1.0, show=progress)
        t0 = time.perf_counter()
        self.start()
        status.start()
        if watcher is None and reload_interval is not None:
            from fastsync.agent.watcher import ConfigWatcher
            watcher = ConfigWatcher(self.config.path, self.config.name, reload_interval, strict)
        while not stop.is_set():
            if exit_when_done and self.done():
                break
            if watcher is not None:
                watcher.poll(self)
            if self.ha is not None:     # start or stop the sources as the role changed
                self.ha.poll(self)
            stop.wait(0.01)
        seconds = time.perf_counter() - t0
        if self.ha is not None:         # sources down first, then leave the group: a standby takes over at once
            self.stop_sources()
            self.ha.close()
        drained = self.stop(drain_timeout)
        status.stop()
        return Run(drained, seconds, self.delivered())


def _interceptors(source, hook: str) -> None:
    """Start or stop the hooks of a source's interceptors (around the source's own)."""
    chain = source.processor.interceptor if source.processor is not None else None
    if chain is not None:
        getattr(chain, hook)()


@dataclass(frozen=True)
class Run:
    """How a run ended: every channel drained, seconds it ran, events delivered."""
    drained: bool
    seconds: float
    delivered: int
