#!/usr/bin/env bash
# The real servers the tests use, on loopback: PostgreSQL and MariaDB from Debian's packages.
#   bash scripts/services.sh up       install what is missing, start, create the test database and user
#   bash scripts/services.sh down     stop them
#   bash scripts/services.sh status   say what runs
# Idempotent: `up` on a machine where everything runs does nothing but check. Needs root
# (or sudo) for apt-get and the service accounts. Each server gets database `fastsync`,
# user `fastsync`, password `fastsync`; the URLs are printed and are the tests' defaults:
#   FASTSYNC_TEST_PG_URL=postgresql://fastsync:fastsync@127.0.0.1:5432/fastsync
#   FASTSYNC_TEST_MYSQL_URL=mysql://fastsync:fastsync@127.0.0.1:3306/fastsync
set -euo pipefail

PG_PORT="${FASTSYNC_PG_PORT:-5432}"
MYSQL_PORT="${FASTSYNC_MYSQL_PORT:-3306}"
LOG_DIR="${FASTSYNC_SERVICES_LOG:-/tmp/fastsync-services}"
mkdir -p "$LOG_DIR"

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo -n "$@"; else
        echo "services.sh: need root or sudo to run: $*" >&2; exit 1; fi
}

say() { echo "services.sh: $*" >&2; }

apt_install() {
    local missing=()
    for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "installing ${missing[*]} (log: $LOG_DIR/apt.log)"
    export DEBIAN_FRONTEND=noninteractive
    # the package lists may be missing or stale on a fresh machine
    if ! as_root apt-get install -y -q --no-install-recommends "${missing[@]}" >"$LOG_DIR/apt.log" 2>&1; then
        as_root apt-get update -q >>"$LOG_DIR/apt.log" 2>&1
        as_root apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$LOG_DIR/apt.log" 2>&1 || {
            tail -20 "$LOG_DIR/apt.log" >&2; say "apt-get install ${missing[*]} failed"; exit 1; }
    fi
}

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
SQL
    wait_until 10 "MariaDB (as fastsync over TCP)" mysql_ready
    say "MariaDB up: mysql://fastsync:fastsync@127.0.0.1:$MYSQL_PORT/fastsync"
}

mysql_down() {
    mysql_root_ready >/dev/null 2>&1 && as_root /etc/init.d/mariadb stop >>"$LOG_DIR/mariadb.log" 2>&1 || true
}

case "${1:-}" in
    up) pg_up; mysql_up ;;
    down) pg_down; mysql_down ;;
    status)
        if pg_ready 2>/dev/null; then echo "postgresql: up (127.0.0.1:$PG_PORT)"; else echo "postgresql: down"; fi
        if mysql_ready >/dev/null 2>&1; then echo "mariadb: up (127.0.0.1:$MYSQL_PORT)"; else echo "mariadb: down"; fi ;;
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
