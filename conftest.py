"""Test-run wiring shared by tests/ and bench/ (their fixtures are in tests/conftest.py and
bench/conftest.py).

scripts/test.sh runs the suite on several pytest-xdist workers (`-n 4`). The scheduler below
hands out whole test files: a file's tests run in order on one worker, as they do without
xdist (several files reuse fixed names between their tests, and module fixtures load a table
once). Files that must not run at the same time as each other form one group in
SHARED_GROUPS and run on one worker, one after the other.
"""
from __future__ import annotations

from pathlib import Path

import pytest

SHARED_GROUPS = {
    # both read the session's TPC-H table (bench/conftest.py): on one worker it is loaded once
    "bench_tpch_import.py": "tpch",
    "bench_tpch_export.py": "tpch",
    # the files that use the shared broker run on one worker (test_kafka_faults stops only
    # brokers of its own, tests/kafka_broker.py, and runs beside them)
    **dict.fromkeys(["test_kafka.py", "test_kafka_flume_format.py", "test_kafka_sasl.py",
                     "test_jdbc_sink.py", "test_examples.py", "bench_kafka.py", "bench_kafka_source.py"], "kafka"),
}


# the longest groups (durations of a full run), handed out first so that none starts last
LONGEST_FIRST = ["kafka", "tests/test_kafka_faults.py", "tests/test_zk_metastore.py", "tests/test_export.py",
                 "tests/test_import.py", "tests/test_cluster.py", "tests/test_avro_sink.py", "tests/test_merge.py",
                 "tests/test_avro_source.py", "tests/test_zk_ha.py", "tests/test_zk_config.py",
                 "tests/test_import_sqlite.py", "tests/test_export_faults.py", "tests/test_channel_parity.py",
                 "tests/test_file_channel_crash.py", "tpch"]


def group_of(nodeid: str) -> str:
    path = nodeid.split("::", 1)[0]
    return SHARED_GROUPS.get(Path(path).name, path)


def pytest_collection_modifyitems(config, items):
    # on an xdist worker: the scheduler queues the groups in the order the tests come in
    if hasattr(config, "workerinput"):
        rank = {g: i for i, g in enumerate(LONGEST_FIRST)}
        items.sort(key=lambda item: rank.get(group_of(item.nodeid), len(rank)))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Whole files (or SHARED_GROUPS) per worker. (xdist's own --dist loadgroup would do, but
    with pytest 9 it no longer sees its group marks, and --dist loadfile has no groups.)"""
    from xdist.scheduler import LoadScopeScheduling

    class FileGroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid)

    return FileGroupScheduling(config, log)
