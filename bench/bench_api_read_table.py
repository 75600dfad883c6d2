"""bench/api_read_table.py as a check: on a small table, `read_table(...).to_pandas()` and
`pandas.read_sql` each run once in a process of their own and their rows are counted against
the table's (main returns 1 on a difference). The figures come from
`python bench/api_read_table.py` (1 M rows; see bench/README.md)."""
import json

import api_read_table


def test_read_table_against_read_sql_runs(tmp_path):
    out = tmp_path / "results.json"
    assert api_read_table.main(["--rows", "20000", "--rounds", "1", "--db", "sqlite,postgresql", "--scratch", str(tmp_path),
                                "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert sorted((r["db"], r["variant"]) for r in report["results"]) == [
        ("postgresql", "read_sql"), ("postgresql", "read_table"), ("sqlite", "read_sql"), ("sqlite", "read_table")]
    assert all(r["rows"] == 20000 and r["peak"] >= r["base"] > 0 and r["frame"] > 0 for r in report["results"])
