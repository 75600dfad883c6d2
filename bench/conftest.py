import sys

import pytest

from fastsync.bench import versions


def pytest_report_header(config):
    return "fastsync bench versions: %s" % versions()


@pytest.fixture
def fastsync_cmd():
    return [sys.executable, "-m", "fastsync"]
