"""Flume's sink processors: how the sinks of one sink group share a runner.

`failover`: the highest-`priority.<sink>` sink that is not penalised takes every batch; a
sink whose batch failed (its take was rolled back, so nothing is lost) is penalised for
1 s, 2 s, 4 s ... up to `maxpenalty` ms, and the next one takes over; when its penalty is
over it is tried again. `load_balance`: each batch goes to the next sink in `round_robin`
order (or a `random` one); a failing sink is skipped for that batch and, with `backoff`,
left out for 1 s, 2 s ... up to `selector.maxTimeOut` ms. Either raises when every sink
failed, so the runner backs off. A member that starts failing is logged once; while it
keeps failing, a reason its sink already logged (a sink logs each distinct reason once, not
on every retry) is not logged again here.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from fastsync.agent.component import SINK_PROCESSORS, ComponentConfig, Place, setting
from fastsync.agent.errors import EventDeliveryException
from fastsync.agent.source import Status

log = logging.getLogger("fastsync.sinkprocessor")
BASE_PENALTY = 1.0   # seconds, doubled per failure in a row


@dataclass
class SinkProcessorConfig(ComponentConfig):
    STRUCTURAL = ("type",)
    PASSTHROUGH = ("priority.",)
    maxpenalty: int = setting("maxpenalty", 30000, "failover: longest penalty of a failed sink, ms", min=0)
    backoff: bool = setting("backoff", False, "load_balance: leave a failed sink out for a while")
    selector: str = setting("selector", "round_robin", "load_balance: order of the sinks", choices=("round_robin", "random"))
    maxTimeOut: int = setting("selector.maxTimeOut", 30000, "load_balance: longest backoff of a failed sink, ms", min=0)

    def validate(self, place: Place) -> None:
        self.priorities = {}
        for key, prop in place.props.items():
            if key.startswith("priority."):
                try:
                    self.priorities[key[len("priority."):]] = int(prop.value.strip())
                except ValueError:
                    raise place.error(key, "expected an integer, got %r" % prop.value) from None


class _Penalties:
    """When each failed sink may be tried again: 1 s, 2 s, 4 s ... up to `cap` s."""

    def __init__(self, cap: float):
        self.cap = cap
        self.until: dict[str, float] = {}
        self.failures: dict[str, int] = {}

    def ok(self, name: str) -> bool:
        return time.monotonic() >= self.until.get(name, 0.0)

    def fail(self, name: str) -> float:
        k = self.failures.get(name, 0)
        self.failures[name] = k + 1
        penalty = min(self.cap, BASE_PENALTY * (2 ** k))
        self.until[name] = time.monotonic() + penalty
        return penalty

    def clear(self, name: str) -> None:
        self.failures.pop(name, None)
        self.until.pop(name, None)


class _Failing:
    """The members failing since their last delivered batch, so each failover is logged
    when it starts rather than on every retry."""

    def __init__(self, group: str):
        self.group = group
        self.names: set[str] = set()

    def failed(self, sink: str, exc: Exception, what: str, errors: list[str]) -> None:
        new = sink not in self.names
        self.names.add(sink)
        level = logging.WARNING if new or not getattr(exc, "logged", False) else logging.DEBUG
        log.log(level, "sink group %s: sink %s failed, %s: %s", self.group, sink, what, exc)
        errors.append("%s: %s" % (sink, exc))

    def delivered(self, sink: str) -> None:
        self.names.discard(sink)


def _all_failed(message: str, logged: bool) -> EventDeliveryException:
    exc = EventDeliveryException(message)
    exc.logged = logged       # the runner logs it only if no member's failure was logged
    return exc


class SinkProcessor:
    """Base of sink processors: built with the group's sinks, process() runs one of them."""
    Config = SinkProcessorConfig
    each_sink_alone = False    # True: no processor runs, each sink of the group has its own runner
    transactions_per_sink: int | None = None   # take transactions a member's process() may run (None: its own limit)

    def __init__(self, group: str, sinks: list, config: SinkProcessorConfig):
        self.group, self.sinks = group, list(sinks)

    def process(self) -> Status:
        raise NotImplementedError


@SINK_PROCESSORS.register("default", "org.apache.flume.sink.DefaultSinkProcessor")
class DefaultSinkProcessor(SinkProcessor):
    """Flume's default: each sink of the group runs on its own."""
    each_sink_alone = True


@SINK_PROCESSORS.register("failover", "org.apache.flume.sink.FailoverSinkProcessor")
class FailoverSinkProcessor(SinkProcessor):
    """The highest-priority sink that is not penalised takes every batch; a sink whose batch
    failed is penalised (1 s, 2 s, 4 s ... up to `maxpenalty`) and the next one takes over."""

    def __init__(self, group: str, sinks: list, config: SinkProcessorConfig):
        self.group = group
        prio = getattr(config, "priorities", {})
        # highest priority first; the listed order breaks ties
        self.sinks = sorted(sinks, key=lambda s: -prio.get(s.name, 0))
        self.penalties = _Penalties(config.maxpenalty / 1000.0)
        self.failing = _Failing(group)

    def process(self) -> Status:
        errors, logged = [], True
        for sink in self.sinks:
            if not self.penalties.ok(sink.name):
                continue
            try:
                status = sink.process()
            except Exception as exc:
                penalty = self.penalties.fail(sink.name)
                self.failing.failed(sink.name, exc, "penalised for %gs, failing over" % penalty, errors)
                logged = logged and getattr(exc, "logged", False)
                continue
            self.penalties.clear(sink.name)
            self.failing.delivered(sink.name)
            return status
        raise _all_failed("sink group %s: all sinks failed or are penalised (%s)"
                          % (self.group, "; ".join(errors) or "waiting for penalties to end"), logged)


@SINK_PROCESSORS.register("load_balance", "org.apache.flume.sink.LoadBalancingSinkProcessor")
class LoadBalancingSinkProcessor(SinkProcessor):
    """Each batch goes to the next sink in turn (or a random one); a failing sink is skipped
    for that batch and, with `backoff`, left out for a while."""

    transactions_per_sink = 1       # a turn is one take transaction, as in Flume
    def __init__(self, group: str, sinks: list, config: SinkProcessorConfig):
        self.group = group
        self.sinks = list(sinks)
        self.sample = None          # random.sample, with selector = random
        if config.selector == "random":
            import random           # here, not at the top: every agent imports this module, few pick random
            self.sample = random.sample
        self.backoff = config.backoff
        self.penalties = _Penalties(config.maxTimeOut / 1000.0)
        self.failing = _Failing(group)
        self.next = 0

    def _order(self) -> list:
        if self.sample:
            return self.sample(self.sinks, len(self.sinks))
        start, self.next = self.next, (self.next + 1) % len(self.sinks)
        return self.sinks[start:] + self.sinks[:start]

    def process(self) -> Status:
        errors, logged = [], True
        for sink in self._order():
            if self.backoff and not self.penalties.ok(sink.name):
                continue
            try:
                status = sink.process()
            except Exception as exc:
                if self.backoff:
                    self.penalties.fail(sink.name)
                self.failing.failed(sink.name, exc, "trying the next", errors)
                logged = logged and getattr(exc, "logged", False)
                continue
            self.penalties.clear(sink.name)
            self.failing.delivered(sink.name)
            return status
        raise _all_failed("sink group %s: all sinks failed (%s)" % (self.group, "; ".join(errors) or "all backed off"),
                          logged)
