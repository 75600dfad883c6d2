"""bench/peers/run.py (Apache Flume 1.11.0 against fastsync on the same properties files) in
its smoke mode: one row (seq -> memory -> null, batches of 1000), few events, one round, both
engines, through its command line. The run itself checks every count on both sides; here the
results file, the table and the plots are checked. Flume's jars are fetched once from Maven
Central by scripts/flume.sh (scripts/test.sh fetches them before the suite).

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
