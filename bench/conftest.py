import sys

import pytest

from fastsync.bench import versions


def pytest_report_header(config):
    return "fastsync bench versions: %s" % versions()


@pytest.fixture
def fastsync_cmd():
    return [sys.executable, "-m", "fastsync"]


@pytest.fixture(scope="session")
def tpch_check_table():
    """The lineitem table the TPC-H checks (bench_tpch_*.py, scale factor 0.01) load and
    share: one per session (runs on a shared server don't collide), dropped at its end (the
    real benchmark keeps its own, bigger table)."""
    import os

    from tpch_export import _sql
    name = "tpch_check_%d" % os.getpid()
    yield name
    for source in ("postgresql", "mariadb"):
        _sql(source, "DROP TABLE IF EXISTS %s" % name)
