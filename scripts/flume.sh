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
as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo -n "$@"; else
        say "need root or sudo to run: $*"; exit 1; fi
}
apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get install -y -q --no-install-recommends "$@" >"$LOG_DIR/flume-apt.log" 2>&1 || {
        as_root apt-get update -q >>"$LOG_DIR/flume-apt.log" 2>&1
        as_root apt-get install -y -q --no-install-recommends "$@" >>"$LOG_DIR/flume-apt.log" 2>&1 || {
            tail -20 "$LOG_DIR/flume-apt.log" >&2; say "apt-get install $* failed"; exit 1; }; }
}

command -v java >/dev/null || apt_install openjdk-17-jre-headless
command -v mvn >/dev/null || apt_install maven
want="$(sha256sum "$SCRIPTS/flume/pom.xml" | cut -d' ' -f1)"
if [ "$(cat "$FLUME_HOME/libs/.pom.sha256" 2>/dev/null)" != "$want" ]; then
    say "fetching Flume's jars from Maven Central (log: $LOG_DIR/flume-mvn.log)"
    rm -rf "$FLUME_HOME/libs"
    mvn -B -q -f "$SCRIPTS/flume/pom.xml" dependency:copy-dependencies \
        -DoutputDirectory="$FLUME_HOME/libs" >"$LOG_DIR/flume-mvn.log" 2>&1 || {
        tail -20 "$LOG_DIR/flume-mvn.log" >&2; say "mvn dependency:copy-dependencies failed"; exit 1; }
    echo "$want" > "$FLUME_HOME/libs/.pom.sha256"
fi
echo "$FLUME_HOME/libs"
