#!/usr/bin/env bash
# A Sqoop-style import and export with PostgreSQL (the server scripts/services.sh starts:
# 127.0.0.1:5432, database, user and password `fastsync`):
#   1. setup (psql): table $TABLE with 1000 orders, and an empty $TABLE_copy of the same shape;
#   2. import (as `sqoop import`): $TABLE -> Parquet files in $DIR, read in 2 splits;
#   3. export (as `sqoop export`): those files -> $TABLE_copy, all rows in one transaction;
#   4. check (psql): row counts, and the rows of either table missing from the other (0).
#
# Run:  bash examples/postgres-import-export.sh
#       TABLE=my_orders DIR=/tmp/my_orders bash examples/postgres-import-export.sh
# It drops and recreates $TABLE and ${TABLE}_copy; drop them when done:
#       psql -h 127.0.0.1 -U fastsync fastsync -c 'DROP TABLE example_orders, example_orders_copy'
set -euo pipefail
TABLE=${TABLE:-example_orders}
DIR=${DIR:-out/$TABLE}
CONNECT=jdbc:postgresql://127.0.0.1:5432/fastsync
# the password for psql and for fastsync (--password-file FILE or -P work too), kept off the command line
export PGPASSWORD=fastsync FASTSYNC_PASSWORD=fastsync
psql() { command psql -h 127.0.0.1 -U fastsync -d fastsync -v ON_ERROR_STOP=1 -q "$@"; }

psql <<SQL
SET client_min_messages = warning;
DROP TABLE IF EXISTS ${TABLE}, ${TABLE}_copy;
CREATE TABLE ${TABLE} (id integer PRIMARY KEY, customer text, amount numeric(12, 2), created timestamp);
INSERT INTO ${TABLE}
    SELECT i, CASE WHEN i % 10 = 0 THEN NULL ELSE 'customer-' || i % 97 END,
           i * 1.25, timestamp '2026-01-01' + i * interval '1 minute'
    FROM generate_series(1, 1000) AS i;
CREATE TABLE ${TABLE}_copy (LIKE ${TABLE} INCLUDING ALL);
SQL

fastsync import --connect "$CONNECT" --username fastsync --table "$TABLE" -m 2 \
    --target-dir "$DIR" --delete-target-dir --as-parquetfile
fastsync export --connect "$CONNECT" --username fastsync --table "${TABLE}_copy" --export-dir "$DIR"

psql -tA -F ' ' -c "SELECT (SELECT count(*) FROM ${TABLE}) AS source_rows,
                           (SELECT count(*) FROM ${TABLE}_copy) AS copied_rows,
                           (SELECT count(*) FROM (TABLE ${TABLE} EXCEPT TABLE ${TABLE}_copy) a)
                         + (SELECT count(*) FROM (TABLE ${TABLE}_copy EXCEPT TABLE ${TABLE}) b) AS differing_rows" |
    { read -r n copied diff; echo "$TABLE: $n rows, ${TABLE}_copy: $copied rows, $diff rows differ"; }
