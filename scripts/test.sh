#!/usr/bin/env bash
# The whole test suite: installs everything it needs (and, as they are added, starts the
# servers the tests use), then runs pytest. Extra arguments go to pytest.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
if [ -x scripts/services.sh ]; then
    scripts/services.sh up
fi
# Apache Flume's jars for bench/bench_peers.py, once, from Maven Central
bash scripts/flume.sh >/dev/null
exec python -m pytest "$@"
