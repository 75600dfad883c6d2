"""Test-run wiring shared by tests/ and bench/ (their fixtures are in tests/conftest.py and
bench/conftest.py).

scripts/test.sh runs the suite on several pytest-xdist workers with `--dist loadgroup`: each
test file is one group, so a file's tests run in order on one worker, as they do without
xdist (several files reuse fixed table names between their tests, and module fixtures load a table
once). Files that had better share a worker name one group in SHARED_GROUPS.
"""
from __future__ import annotations

from pathlib import Path

import pytest

SHARED_GROUPS = {
    # both read the session's TPC-H table (bench/conftest.py): on one worker it is loaded once
    "bench_tpch_import.py": "tpch",
    "bench_tpch_export.py": "tpch",
}


def pytest_collection_modifyitems(items):
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            name = Path(str(item.fspath)).name
            item.add_marker(pytest.mark.xdist_group(SHARED_GROUPS.get(name, name)))
