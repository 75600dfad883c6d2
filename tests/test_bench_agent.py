"""`fastsync bench agent`: runs an agent, samples its counters, summarises events/s, MB/s
and channel fill per component; --json and --plot, through the CLI."""
from __future__ import annotations

import json
import struct
import subprocess
import sys

import pytest

from e2e_support import run_on_terminal, write_config

CMD = [sys.executable, "-m", "fastsync", "bench", "agent"]


def seq_memory_null(tmp_path, total: int | None, batch: int):
    cfg = {"a1.sources": "r1", "a1.channels": "c1", "a1.sinks": "k1",
           "a1.sources.r1.type": "seq", "a1.sources.r1.batchSize": batch, "a1.sources.r1.channels": "c1",
           "a1.channels.c1.type": "memory", "a1.channels.c1.capacity": 100 * batch,
           "a1.channels.c1.transactionCapacity": batch,
           "a1.sinks.k1.type": "null", "a1.sinks.k1.batchSize": batch, "a1.sinks.k1.channel": "c1"}
    if total is not None:
        cfg["a1.sources.r1.totalEvents"] = total
    return write_config(tmp_path, cfg)


def bench(*args, timeout=120):
    return subprocess.run(CMD + [str(a) for a in args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("total, batch", [(5_000, 1), (300_000, 1000)])
def test_json_summary_counts_every_event_and_byte(tmp_path, total, batch):
    conf = seq_memory_null(tmp_path, total, batch)
    out = bench("-n", "a1", "-f", conf, "--seconds", 120, "--json")
    assert out.returncode == 0, out.stderr
    assert "\r" not in out.stderr          # no progress line in a pipe
    r = json.loads(out.stdout)
    assert r["agent"] == "a1" and r["finished"] and r["drained"]
    comps = r["components"]
    body_bytes = sum(len(str(i)) for i in range(total))    # seq's bodies: "0", "1", ...
    for comp in ("SOURCE.r1", "SINK.k1"):
        assert comps[comp]["events"] == total, comp
        assert comps[comp]["bytes"] == body_bytes, comp
        assert comps[comp]["events_per_s"] > 0 and comps[comp]["mb_per_s"] > 0
    ch = comps["CHANNEL.c1"]
    assert ch["put"] == ch["take"] == total
    assert 0 <= ch["fill_pct_min"] <= ch["fill_pct_mean"] <= ch["fill_pct_max"] <= 100
    assert r["samples"][-1]["SINK.k1"]["events"] == total
    ts = [s["t"] for s in r["samples"]]
    assert ts == sorted(ts)


def test_text_summary_and_plot(tmp_path):
    conf = seq_memory_null(tmp_path, None, 100)      # endless: stops after --seconds
    png = tmp_path / "out.png"
    out = bench("-n", "a1", "-f", conf, "--seconds", 1.5, "--interval", 0.25, "--plot", png)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("agent a1: ") and "stopped after --seconds" in lines[0]
    rows = {line.split()[0]: line.split() for line in lines[2:] if line.strip().startswith(("SOURCE", "SINK", "CHANNEL"))}
    assert set(rows) == {"SOURCE.r1", "CHANNEL.c1", "SINK.k1"}
    assert int(rows["SINK.k1"][1]) > 0 and float(rows["SINK.k1"][2]) > 0
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (900, 600)
    assert len(data) > 10_000          # axes, labels and lines, not an empty canvas


def test_progress_line_on_a_terminal(tmp_path):
    conf = seq_memory_null(tmp_path, None, 100)
    code, text = run_on_terminal(CMD + ["-n", "a1", "-f", str(conf), "--seconds", "1", "--interval", "0.2"])
    assert code == 0, text
    assert "\r" in text and "ev/s" in text and "c1 " in text
    assert "SINK.k1" in text


@pytest.mark.parametrize("args, message", [
    (["-n", "a1", "-f", "{dir}/missing.properties"], "missing.properties: cannot read the configuration file"),
    (["-n", "zz", "-f", "{conf}"], "no keys for agent 'zz'"),
    (["-n", "a1", "-f", "{conf}", "--seconds", "0"], "--seconds and --interval must be positive"),
    (["-n", "a1", "-f", "{conf}", "--plot", "{dir}/no/such/dir/out.png"], "--plot {dir}/no/such/dir/out.png: No such file or directory"),
])
def test_bad_input_is_one_line(tmp_path, args, message):
    conf = seq_memory_null(tmp_path, 1000, 100)
    subst = {"dir": tmp_path, "conf": conf}
    out = bench(*[a.format(**subst) for a in args])
    assert out.returncode != 0
    assert out.stderr.count("\n") == 1, out.stderr
    assert out.stderr.startswith("fastsync: error: ") and message.format(**subst) in out.stderr, out.stderr
    assert out.stdout == ""
