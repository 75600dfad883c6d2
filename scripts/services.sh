#!/usr/bin/env bash
# The real servers the tests use, on loopback: PostgreSQL and MariaDB from Debian's packages,
# Apache Kafka (one KRaft node, jars from Maven Central via scripts/kafka/pom.xml), Apache
# ZooKeeper 3.9 (one standalone server, jars from Maven Central via scripts/zookeeper/pom.xml),
# Apache Hadoop 3.4's HDFS (one NameNode and one DataNode, jars via scripts/hadoop/pom.xml).
#   bash scripts/services.sh up       install what is missing, start, create the test database and user
#   bash scripts/services.sh down     stop them
#   bash scripts/services.sh status   say what runs
#   bash scripts/services.sh hdfs-shell ARGS...   Hadoop's FsShell on the test HDFS (-ls -R /, -cat FILE, ...)
# Idempotent: `up` on a machine where everything runs does nothing but check. Needs root
# (or sudo) for apt-get and the service accounts. Each server gets database `fastsync`,
# user `fastsync`, password `fastsync`; the URLs are printed and are the tests' defaults:
#   FASTSYNC_TEST_PG_URL=postgresql://fastsync:fastsync@127.0.0.1:5432/fastsync
#   FASTSYNC_TEST_MYSQL_URL=mysql://fastsync:fastsync@127.0.0.1:3306/fastsync
#   FASTSYNC_TEST_KAFKA=127.0.0.1:9092
#   FASTSYNC_TEST_KAFKA_SASL=127.0.0.1:9094   (SASL_PLAINTEXT, mechanism PLAIN, user fastsync, password fastsync)
#   FASTSYNC_TEST_ZK=127.0.0.1:2181
#   FASTSYNC_TEST_HDFS=hdfs://127.0.0.1:8020   (WebHDFS on 127.0.0.1:9870; configuration in
#                                               ~/.cache/fastsync-hadoop/conf, for HADOOP_CONF_DIR)
set -euo pipefail

PG_PORT="${FASTSYNC_PG_PORT:-5432}"
MYSQL_PORT="${FASTSYNC_MYSQL_PORT:-3306}"
KAFKA_PORT="${FASTSYNC_KAFKA_PORT:-9092}"
KAFKA_SASL_PORT="${FASTSYNC_KAFKA_SASL_PORT:-$((KAFKA_PORT + 2))}"   # +1 is the controller's
KAFKA_HOME="${FASTSYNC_KAFKA_HOME:-$HOME/.cache/fastsync-kafka}"   # jars, storage, config, pid
ZK_PORT="${FASTSYNC_ZK_PORT:-2181}"
ZK_HOME="${FASTSYNC_ZK_HOME:-$HOME/.cache/fastsync-zookeeper}"   # jars, data, config, pid
HDFS_PORT="${FASTSYNC_HDFS_PORT:-8020}"             # the NameNode's RPC
HDFS_HTTP_PORT="${FASTSYNC_HDFS_HTTP_PORT:-9870}"   # the NameNode's HTTP: WebHDFS
HDFS_HOME="${FASTSYNC_HADOOP_HOME:-$HOME/.cache/fastsync-hadoop}"   # jars, conf, name and data dirs, pids
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

# ---- HDFS ----
# Hadoop 3.4.1's NameNode and DataNode from Maven Central's jars (no Hadoop distribution, no
# bin/hdfs script): the classpath is conf/ (the *-site.xml, log4j.properties, and the empty
# webapps/ directories the HTTP servers look up as resources) and the jars. Both bind to
# 127.0.0.1 only, and the DataNode calls itself 127.0.0.1, so WebHDFS redirects a client's
# writes and reads to http://127.0.0.1:9864.
hdfs_cp() { echo "$HDFS_HOME/conf:$HDFS_HOME/libs/*"; }
# what every Hadoop JVM here needs; Java 17 closes the JDK internals Hadoop 3.4 reaches into
HDFS_JAVA_OPTS=(-Xmx256m -Dhadoop.home.dir="$HDFS_HOME" -Dhadoop.log.dir="$LOG_DIR"
    --add-opens java.base/java.lang=ALL-UNNAMED --add-opens java.base/java.util=ALL-UNNAMED
    --add-opens java.base/java.nio=ALL-UNNAMED)
hdfs_java() { java "${HDFS_JAVA_OPTS[@]}" -cp "$(hdfs_cp)" "$@"; }   # main class and its args
# alive: the pid file's process is still that server (a pid the kernel gave to another process since is not)
hdfs_alive() {
    local p; p="$(cat "$HDFS_HOME/$1.pid" 2>/dev/null)"
    [ -n "$p" ] && kill -0 "$p" 2>/dev/null && tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qi "\.$1\.[A-Za-z]*$1 *$"
}
hdfs_port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
hdfs_webhdfs() { curl -sf -m 5 "http://127.0.0.1:$HDFS_HTTP_PORT/webhdfs/v1/?op=LISTSTATUS&user.name=$(id -un)"; }
# the NameNode's own view, from its JMX servlet: live DataNodes and safe mode
hdfs_jmx() { curl -sf -m 5 "http://127.0.0.1:$HDFS_HTTP_PORT/jmx?qry=Hadoop:service=NameNode,name=$1"; }
# (the JSON read whole first: with pipefail, grep -q quitting early would fail curl's side)
hdfs_datanode_live() { local j; j="$(hdfs_jmx FSNamesystemState)" && [[ "$j" =~ \"NumLiveDataNodes\"\ *:\ *[1-9] ]]; }
hdfs_out_of_safemode() { local j; j="$(hdfs_jmx NameNodeInfo)" && [[ "$j" =~ \"Safemode\"\ *:\ *\"\" ]]; }
# ready: WebHDFS lists /, a DataNode is live and the NameNode is out of safe mode (it takes writes)
hdfs_ready() { hdfs_webhdfs && hdfs_datanode_live && hdfs_out_of_safemode; }

hdfs_prop() { printf '  <property><name>%s</name><value>%s</value></property>\n' "$1" "$2"; }
hdfs_config() {  # conf/ (written every time; a change restarts the servers)
    local c="$HDFS_HOME/conf"
    mkdir -p "$c/webapps/hdfs" "$c/webapps/datanode" "$c/webapps/static"
    { echo '<?xml version="1.0"?>'; echo '<configuration>'
      hdfs_prop fs.defaultFS "hdfs://127.0.0.1:$HDFS_PORT"
      hdfs_prop hadoop.tmp.dir "$HDFS_HOME/tmp"
      echo '</configuration>'; } > "$c/core-site.xml"
    { echo '<?xml version="1.0"?>'; echo '<configuration>'
      hdfs_prop dfs.replication 1
      hdfs_prop dfs.namenode.name.dir "file://$HDFS_HOME/data/name"
      hdfs_prop dfs.datanode.data.dir "file://$HDFS_HOME/data/data"
      hdfs_prop dfs.namenode.rpc-address "127.0.0.1:$HDFS_PORT"
      hdfs_prop dfs.namenode.http-address "127.0.0.1:$HDFS_HTTP_PORT"
      hdfs_prop dfs.namenode.secondary.http-address "127.0.0.1:0"
      hdfs_prop dfs.datanode.address 127.0.0.1:9866
      hdfs_prop dfs.datanode.http.address 127.0.0.1:9864
      hdfs_prop dfs.datanode.ipc.address 127.0.0.1:9867
      # the name the NameNode gives clients (WebHDFS redirects) for the DataNode
      hdfs_prop dfs.datanode.hostname 127.0.0.1
      hdfs_prop dfs.namenode.datanode.registration.ip-hostname-check false
      # permissions checked (as on a real cluster); the user who runs services.sh is the superuser
      hdfs_prop dfs.permissions.enabled true
      # one DataNode: out of safe mode at once, and an append never looks for another DataNode
      hdfs_prop dfs.namenode.safemode.extension 0
      hdfs_prop dfs.namenode.safemode.min.datanodes 0
      hdfs_prop dfs.client.block.write.replace-datanode-on-failure.enable false
      hdfs_prop dfs.heartbeat.interval 1
      # a file's close (every WebHDFS write and append ends with one) asks the NameNode to
      # complete it and, when the DataNode's block report is not in yet, asks again after this
      # many ms, doubling: Hadoop's 400 made each append take half a second
      hdfs_prop dfs.client.block.write.locateFollowingBlock.initial.delay.ms 20
      echo '</configuration>'; } > "$c/hdfs-site.xml"
    printf '%s\n' "log4j.rootLogger=WARN, out" "log4j.appender.out=org.apache.log4j.ConsoleAppender" \
        "log4j.appender.out.target=System.err" "log4j.appender.out.layout=org.apache.log4j.PatternLayout" \
        "log4j.appender.out.layout.ConversionPattern=%d{ISO8601} %p %c{2}: %m%n" \
        "log4j.logger.org.apache.hadoop.util.NativeCodeLoader=ERROR" > "$c/log4j.properties"
    cat "$c/core-site.xml" "$c/hdfs-site.xml" "$c/log4j.properties" | sha256sum | cut -d' ' -f1 > "$HDFS_HOME/conf.sha256.new"
}

hdfs_start() {  # namenode|datanode, main class
    # setsid: the servers outlive this script and the test run's process group
    setsid nohup java "${HDFS_JAVA_OPTS[@]}" -cp "$(hdfs_cp)" "$2" >>"$LOG_DIR/hdfs-$1.log" 2>&1 </dev/null &
    echo $! > "$HDFS_HOME/$1.pid"
}

hdfs_up() {
    maven_jars "$SCRIPTS/hadoop/pom.xml" "$HDFS_HOME/libs" hadoop
    hdfs_config
    if hdfs_alive namenode || hdfs_alive datanode; then
        if ! cmp -s "$HDFS_HOME/conf.sha256.new" "$HDFS_HOME/conf.sha256"; then
            say "HDFS's configuration changed (scripts/services.sh is newer): restarting the NameNode and DataNode"
            hdfs_down
        fi
    fi
    mv "$HDFS_HOME/conf.sha256.new" "$HDFS_HOME/conf.sha256"
    if ! hdfs_alive namenode; then
        for port in "$HDFS_PORT" "$HDFS_HTTP_PORT"; do
            if hdfs_port_open "$port"; then say "port $port is taken by a process services.sh did not start"; exit 1; fi
        done
        if [ ! -f "$HDFS_HOME/data/name/current/VERSION" ]; then     # formatted once
            # a DataNode directory of an earlier format has another cluster id and would refuse to start
            rm -rf "$HDFS_HOME/data/data"
            hdfs_java org.apache.hadoop.hdfs.server.namenode.NameNode -format -nonInteractive -clusterId fastsync-test \
                >>"$LOG_DIR/hdfs-namenode.log" 2>&1 || { tail -20 "$LOG_DIR/hdfs-namenode.log" >&2; say "formatting HDFS failed"; exit 1; }
        fi
        hdfs_start namenode org.apache.hadoop.hdfs.server.namenode.NameNode
        wait_until 90 "the HDFS NameNode (WebHDFS)" hdfs_webhdfs || { tail -20 "$LOG_DIR/hdfs-namenode.log" >&2; exit 1; }
    fi
    if ! hdfs_alive datanode; then
        for port in 9866 9864 9867; do
            if hdfs_port_open "$port"; then say "port $port is taken by a process services.sh did not start"; exit 1; fi
        done
        hdfs_start datanode org.apache.hadoop.hdfs.server.datanode.DataNode
    fi
    wait_until 90 "HDFS (a live DataNode, out of safe mode)" hdfs_ready || { tail -20 "$LOG_DIR/hdfs-datanode.log" >&2; exit 1; }
    say "HDFS up: hdfs://127.0.0.1:$HDFS_PORT, WebHDFS http://127.0.0.1:$HDFS_HTTP_PORT (HADOOP_CONF_DIR=$HDFS_HOME/conf)"
}

hdfs_down() { stop_pidfile "$HDFS_HOME/datanode.pid" 20; stop_pidfile "$HDFS_HOME/namenode.pid" 20; }

# Hadoop's own client on the test HDFS, for looking at what fastsync wrote
hdfs_shell() {
    [ -f "$HDFS_HOME/libs/.pom.sha256" ] || { say "no Hadoop jars in $HDFS_HOME/libs: run '$0 up' first"; exit 1; }
    hdfs_java org.apache.hadoop.fs.FsShell -fs "hdfs://127.0.0.1:$HDFS_PORT" "$@"
}

case "${1:-}" in
    # the tests also read listen backlogs with ss (iproute2)
    up) command -v ss >/dev/null || apt_install iproute2; pg_up; mysql_up; kafka_up; zk_up; hdfs_up ;;
    down) pg_down; mysql_down; kafka_down; zk_down; hdfs_down ;;
    hdfs-shell) shift; hdfs_shell "$@" ;;
    status)
        if pg_ready 2>/dev/null; then echo "postgresql: up (127.0.0.1:$PG_PORT)"; else echo "postgresql: down"; fi
        if mysql_ready >/dev/null 2>&1; then echo "mariadb: up (127.0.0.1:$MYSQL_PORT)"; else echo "mariadb: down"; fi
        if kafka_alive && kafka_port_open; then
            if kafka_port_open "$KAFKA_SASL_PORT"; then echo "kafka: up (127.0.0.1:$KAFKA_PORT, SASL_PLAINTEXT 127.0.0.1:$KAFKA_SASL_PORT)"
            else echo "kafka: up (127.0.0.1:$KAFKA_PORT; no SASL listener: an older configuration, 'up' restarts it)"; fi
        else echo "kafka: down"; fi
        if zk_alive && zk_ready; then echo "zookeeper: up (127.0.0.1:$ZK_PORT)"; else echo "zookeeper: down"; fi
        if hdfs_alive namenode && hdfs_alive datanode && hdfs_ready >/dev/null 2>&1; then
            echo "hdfs: up (hdfs://127.0.0.1:$HDFS_PORT, WebHDFS 127.0.0.1:$HDFS_HTTP_PORT)"
        elif hdfs_alive namenode || hdfs_alive datanode; then echo "hdfs: starting or half up ('up' completes it)"
        else echo "hdfs: down"; fi ;;
    *) echo "usage: $0 up|down|status|hdfs-shell ARGS..." >&2; exit 2 ;;
esac
