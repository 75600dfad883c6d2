"""The TPC-H export comparison (bench/tpch_export.py) as a check: at scale factor 0.01 each
loader runs once into a new table, whose row count is checked. The figures come from
`python bench/tpch_export.py --sf 1` (see bench/README.md)."""
import json

import pytest
import tpch_export


@pytest.mark.slow
def test_tpch_export_comparison_runs(tmp_path, tpch_check_table):
    out = tmp_path / "results.json"
    assert tpch_export.main(["--sf", "0.01", "--table", tpch_check_table, "--mappers", "1,2", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["rows"] == 60175        # TPC-H lineitem at scale factor 0.01
    seen = {(r["source"], r["tool"].split()[0], r["mappers"]) for r in report["results"]}
    for source in ("postgresql", "mariadb"):
        assert {(source, "raw", 1), (source, "fastsync", 1), (source, "fastsync", 2)} <= seen
