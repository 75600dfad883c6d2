"""The TPC-H import comparison (bench/tpch_import.py) as a check: at scale factor 0.01 every
reader runs once and its row count is compared with the table's. The figures come from
`python bench/tpch_import.py --sf 1` (see bench/README.md)."""
import json

import pytest
import tpch_import


@pytest.mark.slow
def test_tpch_import_comparison_runs(tmp_path, tpch_check_table):
    out = tmp_path / "results.json"
    assert tpch_import.main(["--sf", "0.01", "--table", tpch_check_table, "--mappers", "1,2", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["rows"] == 60175        # TPC-H lineitem at scale factor 0.01
    seen = {(r["source"], r["tool"].split()[0], r["mappers"]) for r in report["results"]}
    for source in ("postgresql", "mariadb"):
        for m in (1, 2):
            assert {(source, "fastsync", m), (source, "ConnectorX", m)} <= seen
        assert (source, "raw", 1) in seen and (source, "pandas.read_sql", 1) in seen
    assert ("postgresql", "ADBC", 1) in seen
