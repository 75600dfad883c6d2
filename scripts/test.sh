#!/usr/bin/env bash
# The whole test suite: installs everything it needs, starts the servers the tests use, then
# runs pytest; one line per phase (venv, build, services, tests) on stderr. Extra arguments go
# to pytest, e.g. scripts/test.sh -m "not slow" (the fast subset) or scripts/test.sh
# tests/test_wal.py -k torn. See docs/development/testing.md.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
if [ -x scripts/services.sh ]; then
    phase services "PostgreSQL, MariaDB, Kafka, ZooKeeper, HDFS on loopback (scripts/services.sh up)"
    scripts/services.sh up
fi
# Apache Flume's jars for bench/bench_peers.py, once, from Maven Central
bash scripts/flume.sh >/dev/null
# Apache Sqoop 1.4.7's jars for the differential tests (tests/sqoop_support.py), once
bash scripts/sqoop.sh >/dev/null 2>&1 || bash scripts/sqoop.sh >/dev/null
# several workers (pytest-xdist), one test file per worker at a time (conftest.py): the tests
# wait on processes and servers much of the time, so even 2 cores run 4 of them well;
# FASTSYNC_TEST_WORKERS=0 runs them in this process, one after the other
workers="${FASTSYNC_TEST_WORKERS:-4}"
phase tests "python -m pytest -n $workers $*"
exec python -m pytest -n "$workers" "$@"
