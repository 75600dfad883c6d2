"""The rsync comparison (bench/sync_vs_rsync.py) as a check: small trees, one round; every
scenario ran for both tools and each target was checked (file count, bytes, changed files).
The figures come from `python bench/sync_vs_rsync.py` (see bench/README.md)."""
import json

import sync_vs_rsync


def test_sync_vs_rsync_runs(tmp_path):
    out = tmp_path / "results.json"
    assert sync_vs_rsync.main(["--dir", str(tmp_path / "trees"), "--files", "300", "--big", "1", "--big-mb", "20",
                               "--rounds", "1", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["files"] == 301 and report["bytes"] > 20 << 20
    assert report["tools"] == ["rsync", "fastsync-j4", "fastsync-j1"]
    assert [(r["scenario"], r["tool"]) for r in report["results"]] == [
        (s, t) for s in sync_vs_rsync.SCENARIOS for t in report["tools"]]
    for r in report["results"]:
        assert len(r["wall_s"]) == len(r["cpu_s"]) == 1 and r["cpu_s"][0] > 0 and r["peak"] > 0
    assert not (tmp_path / "trees").exists()
