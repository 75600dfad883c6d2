"""The Dask cluster import comparison (bench/cluster_import.py) and the HDFS one
(bench/hdfs_import.py) as checks: at scale factor 0.01 every variant runs once and the rows
it published are counted against the table's (the harness stops on a mismatch). The figures
come from `python bench/cluster_import.py --sf 1` (see bench/README.md)."""
import json

import cluster_import
import hdfs_import
import pytest

ROWS = 60175        # TPC-H lineitem at scale factor 0.01


@pytest.mark.slow
def test_cluster_import_comparison_runs(tmp_path, tpch_check_table):
    out = tmp_path / "results.json"
    variants = "raw2,m2,local2,tcp2,m2-fixed,local2-fixed,tcp2-fixed"
    assert cluster_import.main(["--sf", "0.01", "--table", tpch_check_table, "--variants", variants, "--rounds", "1",
                                "--scratch", str(tmp_path), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["rows"] == ROWS
    ran = {r["variant"]: r for r in report["results"]}
    assert set(ran) == set(variants.split(","))
    for name, r in ran.items():
        assert r["rows"] == ROWS if not name.endswith("-fixed") else 0 < r["rows"] < ROWS
        if not name.startswith("raw"):
            assert r["splits"] >= 1 and r["peak_mb"] > 0
    assert ran["tcp2"]["cluster_idle_mb"] > 0          # the external cluster's processes were sampled
    assert {r["variant"] for r in report["ratios"]} == {"local2", "tcp2", "local2-fixed", "tcp2-fixed"}
    assert not list(tmp_path.glob("cluster-bench-*"))  # scratch and the external cluster cleaned up


@pytest.mark.slow
def test_hdfs_import_comparison_runs_on_the_local_target(tmp_path, tpch_check_table):
    out = tmp_path / "results.json"
    assert hdfs_import.main(["--sf", "0.01", "--table", tpch_check_table, "--targets", "local", "--mappers", "1,2",
                             "--rounds", "2", "--scratch", str(tmp_path), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert sorted((r["variant"], r["round"]) for r in report["results"]) == [
        ("local-m1", 0), ("local-m1", 1), ("local-m2", 0), ("local-m2", 1)]
    assert all(r["rows"] == ROWS and r["splits"] >= 1 for r in report["results"])
