"""`fastsync bench agent`: runs an agent from a Flume properties file in this process (the
same Agent as `fastsync agent`), samples its counters every `interval` s for `seconds` s or
until its finite sources are exhausted and its channels drained, and summarises per
component events/s, MB/s and channel fill."""
from __future__ import annotations

import os
import sys
import threading
import time

from fastsync.bench import versions
from fastsync.progress import Progress
from fastsync.signals import SignalFlag, stop_on_signals

# the counters read per component kind: (events, bytes)
RATES = {"SOURCE": ("EventAcceptedCount", "EventAcceptedBytes"),
         "SINK": ("EventDrainSuccessCount", "EventDrainSuccessBytes")}


def _sample(agent, t: float) -> dict:
    """The counters that matter here, as numbers, at time t (s since start)."""
    out = {"t": round(t, 4)}
    for comp, values in agent.metrics().items():
        kind = values["Type"]
        if kind in RATES:
            ev, by = RATES[kind]
            out[comp] = {"events": int(values.get(ev, 0)), "bytes": int(values.get(by, 0))}
        else:
            fill = values.get("ChannelFillPercentage")
            out[comp] = {"size": int(values.get("ChannelSize", 0)),
                         "fill_pct": float(fill) if fill is not None else None,
                         "put": int(values.get("EventPutSuccessCount", 0)),
                         "take": int(values.get("EventTakeSuccessCount", 0))}
    return out


def bench_agent(agent, seconds: float, interval: float = 0.5, progress: bool = False,
                drain_timeout: float = 5.0, stop: threading.Event | SignalFlag | None = None) -> dict:
    """Start `agent`, sample it, stop it; the summary and the samples as a dict."""
    stop = stop or threading.Event()
    samples: list[dict] = []
    t0 = time.perf_counter()
    agent.start()       # a failed start stops what started, then raises
    finished = False
    status = Progress(lambda: _progress_text(samples), interval, show=progress).start()
    try:
        next_at = t0 + interval
        while not stop.is_set():
            now = time.perf_counter()
            finished = agent.done()
            if finished or now - t0 >= seconds:
                break
            if now >= next_at:
                samples.append(_sample(agent, now - t0))
                next_at += interval
            stop.wait(min(0.01, max(0.0, next_at - now)))
        elapsed = time.perf_counter() - t0
        last = _sample(agent, elapsed)
    finally:
        drained = agent.stop(drain_timeout)
        status.stop()
    if finished:
        # a sink counts its batch just after committing it: read the final counts once stopped
        last = _sample(agent, elapsed)
    samples.append(last)
    return {"agent": agent.config.name, "seconds": elapsed, "interval": interval, "finished": finished,
            "drained": drained, "components": summarise(samples), "samples": samples, "versions": versions()}


def summarise(samples: list[dict]) -> dict:
    last = samples[-1]
    secs = last["t"] or 1e-9
    out = {}
    for comp, v in last.items():
        if comp == "t":
            continue
        if "events" in v:
            out[comp] = {"events": v["events"], "bytes": v["bytes"], "events_per_s": v["events"] / secs,
                         "mb_per_s": v["bytes"] / 1e6 / secs}
        else:
            fills = [s[comp]["fill_pct"] for s in samples if comp in s and s[comp]["fill_pct"] is not None]
            out[comp] = {"put": v["put"], "take": v["take"],
                         "size_max": max(s[comp]["size"] for s in samples if comp in s),
                         "fill_pct_min": min(fills) if fills else None,
                         "fill_pct_mean": sum(fills) / len(fills) if fills else None,
                         "fill_pct_max": max(fills) if fills else None}
    return out


def _progress_text(samples: list[dict]) -> str:
    """The status line: the last sample's rates (since the one before) and channel fill."""
    if not samples:
        return ""
    s = samples[-1]
    prev = samples[-2] if len(samples) > 1 else {"t": 0.0}
    dt = (s["t"] - prev["t"]) or 1e-9
    parts = []
    for comp, v in s.items():
        if comp == "t":
            continue
        name = comp.split(".", 1)[1]
        if "events" in v:
            before = prev.get(comp, {"events": 0})["events"]
            parts.append("%s %.0f ev/s" % (name, (v["events"] - before) / dt))
        elif v["fill_pct"] is not None:
            parts.append("%s %.0f%%" % (name, v["fill_pct"]))
    return "%6.1f s  %s" % (s["t"], "  ".join(parts))


def format_agent_result(r: dict) -> str:
    lines = ["agent %s: %.2f s, %s" % (r["agent"], r["seconds"], "finished (sources exhausted, channels drained)"
                                       if r["finished"] else "stopped after --seconds")]
    rows = [("component", "events", "events/s", "MB/s", "fill % min/mean/max")]
    for comp, v in r["components"].items():
        if "events" in v:
            rows.append((comp, str(v["events"]), "%.0f" % v["events_per_s"], "%.1f" % v["mb_per_s"], ""))
        else:
            fill = "-" if v["fill_pct_min"] is None else "%.1f / %.1f / %.1f" % (
                v["fill_pct_min"], v["fill_pct_mean"], v["fill_pct_max"])
            rows.append((comp, "%d in, %d out" % (v["put"], v["take"]), "", "", fill))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        lines.append("  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip())
    return "\n".join(lines)


def plot_agent_result(r: dict, path: str) -> None:
    """Events/s of every source and sink, and every channel's fill, over time, as a PNG."""
    import matplotlib
    matplotlib.use("Agg")       # no display needed
    import matplotlib.pyplot as plt

    samples = r["samples"]
    fig, (rates, fill) = plt.subplots(2, 1, sharex=True, figsize=(9, 6))
    for comp in samples[-1]:
        if comp == "t":
            continue
        pts = [s for s in samples if comp in s]
        ts = [s["t"] for s in pts]
        if "events" in samples[-1][comp]:
            prev = [{"t": 0.0, comp: {"events": 0}}] + pts[:-1]
            ys = [(s[comp]["events"] - p[comp]["events"]) / ((s["t"] - p["t"]) or 1e-9) for s, p in zip(pts, prev)]
            rates.plot(ts, ys, marker=".", label=comp)
        elif samples[-1][comp]["fill_pct"] is not None:
            fill.plot(ts, [s[comp]["fill_pct"] for s in pts], marker=".", label=comp)
    rates.set_ylabel("events/s")
    rates.set_ylim(bottom=0)
    fill.set_ylim(0, 100)
    rates.set_title("agent %s" % r["agent"])
    fill.set_ylabel("channel fill %")
    fill.set_xlabel("seconds")
    for ax in (rates, fill):
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    try:
        fig.savefig(path, format="png", dpi=100)
    finally:
        plt.close(fig)


def run(conf_file: str, name: str, seconds: float, interval: float = 0.5, json_out: bool = False,
        plot: str | None = None) -> int:
    """The command: load, run, print the summary (text, or JSON with the samples), plot."""
    import json

    from fastsync.agent import Agent, ConfigError, load_agent_config
    from fastsync.agent.errors import ChannelException
    from fastsync.cli import EXIT_CONFIG, CliError

    if seconds <= 0 or interval <= 0:
        raise CliError("--seconds and --interval must be positive", EXIT_CONFIG)
    if plot:
        if not os.path.isdir(os.path.dirname(os.path.abspath(plot))):    # fail before the run, not after
            raise CliError("--plot %s: No such file or directory" % plot)
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise CliError("--plot needs matplotlib: pip install matplotlib") from None
    try:
        agent = Agent(load_agent_config(conf_file, name))
    except ConfigError as exc:
        raise CliError(str(exc), EXIT_CONFIG) from None
    stop = stop_on_signals()        # stop early, still summarise
    try:
        r = bench_agent(agent, seconds, interval, progress=sys.stderr.isatty(), stop=stop)
    except ConfigError as exc:      # found only when starting, e.g. a sink's table does not exist
        raise CliError(str(exc), EXIT_CONFIG) from None
    except (OSError, ChannelException) as exc:
        raise CliError(str(exc)) from None
    if plot:
        try:
            plot_agent_result(r, plot)
        except OSError as exc:
            raise CliError("--plot %s: %s" % (plot, exc.strerror or exc)) from None
    if json_out:
        print(json.dumps(r))
    else:
        print(format_agent_result(r) + ("\n  plot: %s" % plot if plot else ""))
    return 0
