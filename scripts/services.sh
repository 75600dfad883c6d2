#!/usr/bin/env bash
# The real servers the tests use, on loopback: PostgreSQL and MariaDB from Debian's packages,
# Apache Kafka (one KRaft node, jars from Maven Central via scripts/kafka/pom.xml), Apache
# ZooKeeper 3.9 (one standalone server, jars from Maven Central via scripts/zookeeper/pom.xml).
#   bash scripts/services.sh up       install what is missing, start, create the test database and user
#   bash scripts/services.sh down     stop them
#   bash scripts/services.sh status   say what runs
# Idempotent: `up` on a machine where everything runs does nothing but check. Needs root
# (or sudo) for apt-get and the service accounts. Each server gets database `fastsync`,
# user `fastsync`, password `fastsync`; the URLs are printed and are the tests' defaults:
#   FASTSYNC_TEST_PG_URL=postgresql://fastsync:fastsync@127.0.0.1:5432/fastsync
#   FASTSYNC_TEST_MYSQL_URL=mysql://fastsync:fastsync@127.0.0.1:3306/fastsync
#   FASTSYNC_TEST_KAFKA=127.0.0.1:9092
#   FASTSYNC_TEST_KAFKA_SASL=127.0.0.1:9094   (SASL_PLAINTEXT, mechanism PLAIN, user fastsync, password fastsync)
#   FASTSYNC_TEST_ZK=127.0.0.1:2181
set -euo pipefail

PG_PORT="${FASTSYNC_PG_PORT:-5432}"
MYSQL_PORT="${FASTSYNC_MYSQL_PORT:-3306}"
KAFKA_PORT="${FASTSYNC_KAFKA_PORT:-9092}"
KAFKA_SASL_PORT="${FASTSYNC_KAFKA_SASL_PORT:-$((KAFKA_PORT + 2))}"   # +1 is the controller's
KAFKA_HOME="${FASTSYNC_KAFKA_HOME:-$HOME/.cache/fastsync-kafka}"   # jars, storage, config, pid
ZK_PORT="${FASTSYNC_ZK_PORT:-2181}"
ZK_HOME="${FASTSYNC_ZK_HOME:-$HOME/.cache/fastsync-zookeeper}"   # jars, data, config, pid
LOG_DIR="${FASTSYNC_SERVICES_LOG:-/tmp/fastsync-services}"
SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mkdir -p "$LOG_DIR"

say() { echo "services.sh: $*" >&2; }
# shellcheck source=common.sh
. "$SCRIPTS/common.sh"

wait_until() {  # seconds, description, command...
    local secs="$1" what="$2"; shift 2
    for _ in $(seq $((secs * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
    say "$what did not come up within ${secs}s"; return 1
}

# ---- PostgreSQL ----
pg_version() { ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -1; }
pg_ready() { pg_isready -q -h 127.0.0.1 -p "$PG_PORT"; }

pg_up() {
    apt_install postgresql postgresql-client
    local v; v="$(pg_version)"
    if ! pg_lsclusters -h 2>/dev/null | awk '{print $1" "$2}' | grep -qx "$v main"; then
        as_root pg_createcluster "$v" main -p "$PG_PORT" >>"$LOG_DIR/pg.log" 2>&1
    fi
    if ! pg_ready; then
        as_root pg_ctlcluster "$v" main start >>"$LOG_DIR/pg.log" 2>&1 || { tail -20 "$LOG_DIR/pg.log" >&2; exit 1; }
        wait_until 30 "PostgreSQL" pg_ready
    fi
    as_root runuser -u postgres -- psql -q -p "$PG_PORT" -v ON_ERROR_STOP=1 >>"$LOG_DIR/pg.log" 2>&1 <<'SQL'
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'fastsync') THEN
    CREATE ROLE fastsync LOGIN PASSWORD 'fastsync' CREATEDB;
  END IF;
  -- the benchmarks start every load from a checkpoint, so none pays for the one before
  IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'pg_checkpoint') THEN
    GRANT pg_checkpoint TO fastsync;
  END IF;
END $$;
SQL
    if ! as_root runuser -u postgres -- psql -p "$PG_PORT" -tAc "SELECT 1 FROM pg_database WHERE datname = 'fastsync'" | grep -q 1; then
        as_root runuser -u postgres -- createdb -p "$PG_PORT" -O fastsync fastsync
    fi
    say "PostgreSQL $v up: postgresql://fastsync:fastsync@127.0.0.1:$PG_PORT/fastsync"
}

pg_down() {
    local v; v="$(pg_version)"
    [ -n "$v" ] && pg_ready && as_root pg_ctlcluster "$v" main stop || true
}

# ---- MariaDB ----
MYSQL_CNF=/etc/mysql/mariadb.conf.d/60-fastsync.cnf
mysql_ready() { mariadb-admin --protocol=tcp -h 127.0.0.1 -P "$MYSQL_PORT" -ufastsync -pfastsync ping; }
mysql_root_ready() { as_root mariadb-admin ping; }

mysql_up() {
    apt_install mariadb-server mariadb-client
    if ! mysql_root_ready >/dev/null 2>&1; then
        # no systemd here: the init script starts mysqld_safe in the background
        as_root /etc/init.d/mariadb start >>"$LOG_DIR/mariadb.log" 2>&1 || { tail -20 "$LOG_DIR/mariadb.log" >&2; exit 1; }
        wait_until 60 "MariaDB" mysql_root_ready
    fi
    as_root mariadb -uroot >>"$LOG_DIR/mariadb.log" 2>&1 <<'SQL'
CREATE DATABASE IF NOT EXISTS fastsync CHARACTER SET utf8mb4;
CREATE USER IF NOT EXISTS 'fastsync'@'127.0.0.1' IDENTIFIED BY 'fastsync';
CREATE USER IF NOT EXISTS 'fastsync'@'localhost' IDENTIFIED BY 'fastsync';
GRANT ALL ON fastsync.* TO 'fastsync'@'127.0.0.1';
GRANT ALL ON fastsync.* TO 'fastsync'@'localhost';
GRANT FILE ON *.* TO 'fastsync'@'127.0.0.1';
FLUSH PRIVILEGES;
-- flush dirty pages when idle: with the default 0 a stock MariaDB 10.11 keeps them for good,
-- and the benchmarks' settle() (bench/tpch_export.py) waits for them to be written out
SET GLOBAL innodb_max_dirty_pages_pct_lwm = 0.001;
SQL
    # the same for the next start of the server
    [ -f "$MYSQL_CNF" ] || printf '%s\n' "# scripts/services.sh: flush dirty pages when idle" \
        "[mariadbd]" "innodb_max_dirty_pages_pct_lwm = 0.001" | as_root tee "$MYSQL_CNF" >/dev/null
    wait_until 10 "MariaDB (as fastsync over TCP)" mysql_ready
    say "MariaDB up: mysql://fastsync:fastsync@127.0.0.1:$MYSQL_PORT/fastsync"
}

mysql_down() {
    mysql_root_ready >/dev/null 2>&1 && as_root /etc/init.d/mariadb stop >>"$LOG_DIR/mariadb.log" 2>&1 || true
}

# ---- Kafka ----
kafka_cp() { echo "$KAFKA_HOME/libs/*"; }
kafka_pid() { cat "$KAFKA_HOME/broker.pid" 2>/dev/null; }
kafka_alive() { local p; p="$(kafka_pid)"; [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }
kafka_port_open() { (exec 3<>"/dev/tcp/127.0.0.1/${1:-$KAFKA_PORT}") 2>/dev/null; }
# ready: answers an ApiVersions request, asked by Kafka's own admin tool
kafka_ready() {
    java -cp "$(kafka_cp)" org.apache.kafka.tools.BrokerApiVersionsCommand \
        --bootstrap-server "127.0.0.1:$KAFKA_PORT" 2>/dev/null | grep -q "127.0.0.1:$KAFKA_PORT"
}

kafka_jars() {
    maven_jars "$SCRIPTS/kafka/pom.xml" "$KAFKA_HOME/libs" kafka
}

kafka_config() {  # writes server.properties.new
    local controller=$((KAFKA_PORT + 1))
    # a second client listener, SASL_PLAINTEXT with mechanism PLAIN and one user (fastsync /
    # fastsync), for the tests of the Kafka components' security.protocol / sasl.* passthrough
    printf '%s\n' \
        "process.roles=broker,controller" "node.id=1" \
        "controller.quorum.voters=1@127.0.0.1:$controller" \
        "listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$controller,SASL_PLAINTEXT://127.0.0.1:$KAFKA_SASL_PORT" \
        "advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,SASL_PLAINTEXT://127.0.0.1:$KAFKA_SASL_PORT" \
        "controller.listener.names=CONTROLLER" "inter.broker.listener.name=PLAINTEXT" \
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT" \
        "listener.name.sasl_plaintext.sasl.enabled.mechanisms=PLAIN" \
        'listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_fastsync="fastsync";' \
        "log.dirs=$KAFKA_HOME/data" "num.partitions=1" \
        "offsets.topic.replication.factor=1" \
        "transaction.state.log.replication.factor=1" "transaction.state.log.min.isr=1" \
        "share.coordinator.state.topic.replication.factor=1" "share.coordinator.state.topic.min.isr=1" \
        "group.initial.rebalance.delay.ms=0" > "$KAFKA_HOME/server.properties.new"
    printf '%s\n' \
        "appender.out.type=Console" "appender.out.name=out" "appender.out.layout.type=PatternLayout" \
        "appender.out.layout.pattern=[%d] %p %m (%c)%n" \
        "rootLogger.level=WARN" "rootLogger.appenderRef.out.ref=out" > "$KAFKA_HOME/log4j2.properties"
}

kafka_up() {
    mkdir -p "$KAFKA_HOME"
    kafka_jars
    kafka_config
    if kafka_alive && kafka_port_open; then
        if cmp -s "$KAFKA_HOME/server.properties.new" "$KAFKA_HOME/server.properties"; then
            rm -f "$KAFKA_HOME/server.properties.new"
            say "Kafka up: 127.0.0.1:$KAFKA_PORT, SASL_PLAINTEXT 127.0.0.1:$KAFKA_SASL_PORT"; return 0
        fi
        say "Kafka's configuration changed (scripts/services.sh is newer): restarting the broker"
        kafka_down
    fi
    if kafka_port_open; then say "port $KAFKA_PORT is taken by a process services.sh did not start"; exit 1; fi
    mv "$KAFKA_HOME/server.properties.new" "$KAFKA_HOME/server.properties"
    if [ ! -f "$KAFKA_HOME/data/meta.properties" ]; then     # KRaft storage, formatted once
        java -cp "$(kafka_cp)" kafka.tools.StorageTool format -c "$KAFKA_HOME/server.properties" \
            -t "$(java -cp "$(kafka_cp)" kafka.tools.StorageTool random-uuid)" >>"$LOG_DIR/kafka.log" 2>&1 || {
            tail -20 "$LOG_DIR/kafka.log" >&2; say "formatting Kafka's storage failed"; exit 1; }
    fi
    # setsid: the broker outlives this script and the test run's process group
    setsid nohup java -Xms256m -Xmx768m -Dlog4j2.configurationFile="$KAFKA_HOME/log4j2.properties" \
        -cp "$(kafka_cp)" kafka.Kafka "$KAFKA_HOME/server.properties" >>"$LOG_DIR/kafka.log" 2>&1 </dev/null &
    echo $! > "$KAFKA_HOME/broker.pid"
    wait_until 90 "Kafka" kafka_ready || { tail -20 "$LOG_DIR/kafka.log" >&2; exit 1; }
    wait_until 30 "Kafka's SASL listener" kafka_port_open "$KAFKA_SASL_PORT" || exit 1
    say "Kafka up: 127.0.0.1:$KAFKA_PORT, SASL_PLAINTEXT 127.0.0.1:$KAFKA_SASL_PORT"
}

# stop_pidfile FILE SECONDS: SIGTERM to the process FILE names, SIGKILL if it is still there
# after SECONDS; FILE removed
stop_pidfile() {
    local p; p="$(cat "$1" 2>/dev/null)"
    if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then
        kill "$p"
        for _ in $(seq $(($2 * 5))); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
        if kill -0 "$p" 2>/dev/null; then kill -9 "$p"; fi
    fi
    rm -f "$1"
}

kafka_down() { stop_pidfile "$KAFKA_HOME/broker.pid" 30; }

# ---- ZooKeeper ----
# 3.9 from Maven Central rather than Debian's 3.8 package: the same fetch-and-run path as
# Kafka's (no service account, no init script), and tests/zk_support.py starts its
# three-node ensembles from the same jars.
zk_cp() { echo "$ZK_HOME/libs/*"; }
zk_pid() { cat "$ZK_HOME/server.pid" 2>/dev/null; }
zk_alive() { local p; p="$(zk_pid)"; [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }
zk_port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$ZK_PORT") 2>/dev/null; }
# ready: serving requests, as the four-letter word srvr tells (ruok answers imok before that)
zk_ready() {
    local reply
    reply="$(exec 3<>"/dev/tcp/127.0.0.1/$ZK_PORT" && printf srvr >&3 && timeout 2 cat <&3)"
    [[ "$reply" == *"Mode: "* ]]
}

zk_up() {
    maven_jars "$SCRIPTS/zookeeper/pom.xml" "$ZK_HOME/libs" zookeeper
    mkdir -p "$ZK_HOME/data"
    # tickTime 1000: sessions may be as short as 2 s, so the tests see an expiry quickly
    printf '%s\n' "tickTime=1000" "initLimit=10" "syncLimit=5" "dataDir=$ZK_HOME/data" \
        "clientPort=$ZK_PORT" "clientPortAddress=127.0.0.1" "admin.enableServer=false" \
        "4lw.commands.whitelist=ruok,srvr,stat,mntr" "autopurge.purgeInterval=1" > "$ZK_HOME/zoo.cfg"
    if zk_alive && zk_ready; then return 0; fi
    if zk_port_open; then say "port $ZK_PORT is taken by a process services.sh did not start"; exit 1; fi
    nohup java -Xmx256m -cp "$(zk_cp)" org.apache.zookeeper.server.quorum.QuorumPeerMain "$ZK_HOME/zoo.cfg" \
        >>"$LOG_DIR/zookeeper.log" 2>&1 </dev/null &
    echo $! > "$ZK_HOME/server.pid"
    wait_until 60 "ZooKeeper" zk_ready || { tail -20 "$LOG_DIR/zookeeper.log" >&2; exit 1; }
    say "ZooKeeper up: 127.0.0.1:$ZK_PORT"
}

zk_down() { stop_pidfile "$ZK_HOME/server.pid" 10; }

case "${1:-}" in
    # the tests also read listen backlogs with ss (iproute2)
    up) command -v ss >/dev/null || apt_install iproute2; pg_up; mysql_up; kafka_up; zk_up ;;
    down) pg_down; mysql_down; kafka_down; zk_down ;;
    status)
        if pg_ready 2>/dev/null; then echo "postgresql: up (127.0.0.1:$PG_PORT)"; else echo "postgresql: down"; fi
        if mysql_ready >/dev/null 2>&1; then echo "mariadb: up (127.0.0.1:$MYSQL_PORT)"; else echo "mariadb: down"; fi
        if kafka_alive && kafka_port_open; then
            if kafka_port_open "$KAFKA_SASL_PORT"; then echo "kafka: up (127.0.0.1:$KAFKA_PORT, SASL_PLAINTEXT 127.0.0.1:$KAFKA_SASL_PORT)"
            else echo "kafka: up (127.0.0.1:$KAFKA_PORT; no SASL listener: an older configuration, 'up' restarts it)"; fi
        else echo "kafka: down"; fi
        if zk_alive && zk_ready; then echo "zookeeper: up (127.0.0.1:$ZK_PORT)"; else echo "zookeeper: down"; fi ;;
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
