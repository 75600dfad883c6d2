#!/usr/bin/env bash
# Apache Sqoop 1.4.7 (hadoop260) with Hadoop 2.6.5's client jars and the JDBC drivers, for the
# differential tests (tests/sqoop_support.py runs it in Hadoop's local mode), from Maven Central
# via scripts/sqoop/pom.xml, cached like Flume's in scripts/flume.sh:
#   bash scripts/sqoop.sh        fetch once (again only when the pom changed); prints the jar
#                                directory, then a command line running Sqoop from it
# Needs java and javac (17: Sqoop's codegen compiles a class per table) and mvn; installs them
# with apt-get when missing (root or sudo).
set -euo pipefail

SQOOP_HOME="${FASTSYNC_SQOOP_HOME:-$HOME/.cache/fastsync-sqoop}"
LOG_DIR="${FASTSYNC_SERVICES_LOG:-/tmp/fastsync-services}"
SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mkdir -p "$SQOOP_HOME" "$LOG_DIR"

say() { echo "sqoop.sh: $*" >&2; }
# shellcheck source=common.sh
. "$SCRIPTS/common.sh"

command -v javac >/dev/null || apt_install openjdk-17-jdk-headless
maven_jars "$SCRIPTS/sqoop/pom.xml" "$SQOOP_HOME/libs" sqoop
# Java 17: Hadoop 2.6 calls System.setSecurityManager and reflects into java.base
say "run: java -Djava.security.manager=allow --add-opens java.base/java.lang=ALL-UNNAMED" \
    "--add-opens java.base/java.net=ALL-UNNAMED --add-opens java.base/java.io=ALL-UNNAMED" \
    "--add-opens java.base/java.util=ALL-UNNAMED --add-opens java.base/sun.nio.ch=ALL-UNNAMED" \
    "-cp '$SQOOP_HOME/libs/*' org.apache.sqoop.Sqoop import -fs file:/// -jt local --connect jdbc:..."
echo "$SQOOP_HOME/libs"
