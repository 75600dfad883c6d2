"""bench/peers/run.py (Apache Flume 1.11.0 against fastsync on the same properties files) in
its smoke mode: one row (seq -> memory -> null, batches of 1000), few events, one round, both
engines, through its command line. The run itself checks every count on both sides; here the
results file, the table and the plots are checked. Flume's jars are fetched once from Maven
Central by scripts/flume.sh (scripts/test.sh fetches them before the suite).

The hop rows (agent a2 listening, then agent a1 sending to it) run here on Flume with a
few thousand events: their three Flume configs (plain, deflate, SSL with keystores made by
keytool) and the two-process orchestration, counts checked on both agents; and fastsync's
side of the plain avro and the flight rows (plain and TLS).

The full suite is `python bench/peers/run.py` (see bench/README.md)."""
import json
import os
import subprocess
import sys

import pytest

RUN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "peers", "run.py")


@pytest.mark.slow
def test_peers_smoke(tmp_path):
    out = subprocess.run([sys.executable, RUN, "--quick", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    result = json.loads((tmp_path / "results.json").read_text())
    [row] = result["rows"]
    assert row["row"] == "null-1000"
    assert sorted(r["engine"] for r in row["runs"]) == ["fastsync", "flume"]
    for run in row["runs"]:
        assert run["counts"] == {"source accepted": run["events"], "channel put": run["events"],
                                 "channel take": run["events"], **(
                                     {"sink drained": run["events"]} if "sink drained" in run["counts"] else {})}
        assert run["cpu_s"] > 0 and run["peak_rss_mb"] > 0
    assert "| null-1000 | flume | 200,000 |" in out.stdout
    assert "| null-1000 | fastsync | 200,000 |" in out.stdout
    for png in ("events_per_s_vs_batch.png", "cpu_per_event.png", "peak_rss.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # nothing left behind but the results
    assert sorted(os.listdir(tmp_path)) == ["cpu_per_event.png", "events_per_s_vs_batch.png", "peak_rss.png",
                                            "results.json"]


def test_peers_unknown_row(tmp_path):
    out = subprocess.run([sys.executable, RUN, "--rows", "nope", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "--rows: unknown row nope" in out.stderr and "Traceback" not in out.stderr


HOP_COUNTS = ("up source accepted", "up channel put", "up channel take", "up sink drained",
              "down source accepted", "down channel put", "down channel take")


@pytest.mark.slow
def test_peers_hop_flume(tmp_path):
    rows = ["avro-hop-1000", "avro-hop-deflate", "avro-hop-ssl"]
    out = subprocess.run([sys.executable, RUN, "--rows", ",".join(rows), "--engines", "flume", "--events", "3000",
                          "--rounds", "1", "--java-opts=-Xmx256m -XX:TieredStopAtLevel=1", "--stall", "60",
                          "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stdout + out.stderr
    result = json.loads((tmp_path / "results.json").read_text())
    assert [r["row"] for r in result["rows"]] == rows
    for row in result["rows"]:
        [run] = row["runs"]
        assert run["engine"] == "flume" and run["events"] == 3000
        # both agents' counters, each the N events once (a2's null sink keeps none on Flume)
        assert {k: v for k, v in run["counts"].items() if k != "down sink drained"} == dict.fromkeys(HOP_COUNTS, 3000)
        assert run["peak_rss_mb"] == run["peak_rss_mb_up"] + run["peak_rss_mb_down"]
        assert run["peak_rss_mb_up"] > 0 and run["peak_rss_mb_down"] > 0 and run["cpu_s"] > 0
        assert run["downstream_ready_s"] > 0 and run["seconds"] > 0
        assert "| %s | flume | 3,000 |" % row["row"] in out.stdout
    # nothing left behind but the results (the keystores were in the scratch directory)
    assert sorted(os.listdir(tmp_path)) == ["cpu_per_event.png", "peak_rss.png", "results.json"]


@pytest.mark.parametrize("row", ["avro-hop-1000", "flight-hop-1000", "flight-hop-ssl"])
def test_peers_hop_fastsync(tmp_path, row):
    """fastsync's side of a hop row, both agents' counts checked (the run itself refuses
    any count other than N)."""
    out = subprocess.run([sys.executable, RUN, "--rows", row, "--engines", "fastsync", "--events", "20000",
                          "--rounds", "1", "--stall", "60", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    [run] = json.loads((tmp_path / "results.json").read_text())["rows"][0]["runs"]
    assert run["engine"] == "fastsync" and run["events"] == 20000
    assert {k: v for k, v in run["counts"].items() if k != "down sink drained"} == dict.fromkeys(HOP_COUNTS, 20000)
    assert run["peak_rss_mb_up"] > 0 and run["peak_rss_mb_down"] > 0 and run["cpu_s"] > 0
    assert "| %s | fastsync | 20,000 |" % row in out.stdout


def test_peers_flight_row_needs_fastsync(tmp_path):
    out = subprocess.run([sys.executable, RUN, "--rows", "flight-hop-1000", "--engines", "flume", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.splitlines()[-1] == ("run.py: error: --rows: flight-hop-1000 runs on fastsync only "
                                           "(no Flume peer); --engines has none of them")
