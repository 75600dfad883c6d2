#!/usr/bin/env bash
# Apache Flume 1.11.0's jars for bench/peers (the peer benchmark), from Maven Central via
# scripts/flume/pom.xml, cached like Kafka's in scripts/services.sh:
#   bash scripts/flume.sh        fetch once (again only when the pom changed); prints the jar directory
# Needs java (17) and mvn; installs them with apt-get when missing (root or sudo).
set -euo pipefail

FLUME_HOME="${FASTSYNC_FLUME_HOME:-$HOME/.cache/fastsync-flume}"
LOG_DIR="${FASTSYNC_SERVICES_LOG:-/tmp/fastsync-services}"
SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mkdir -p "$FLUME_HOME" "$LOG_DIR"

say() { echo "flume.sh: $*" >&2; }
# shellcheck source=common.sh
. "$SCRIPTS/common.sh"

maven_jars "$SCRIPTS/flume/pom.xml" "$FLUME_HOME/libs" flume
echo "$FLUME_HOME/libs"
