#!/usr/bin/env bash
# A Sqoop-style import and export with MariaDB/MySQL (the server scripts/services.sh starts:
# 127.0.0.1:3306, database, user and password `fastsync`):
#   1. setup (mariadb client): table $TABLE with 1000 orders, and an empty $TABLE_copy like it;
#   2. import (as `sqoop import`): $TABLE -> Parquet files in $DIR, read in 2 splits;
#   3. export (as `sqoop export`): those files -> $TABLE_copy, all rows in one transaction;
#   4. check: row counts, and the rows of either table missing from the other (0).
#
# Run:  bash examples/mariadb-import-export.sh
#       TABLE=my_orders DIR=/tmp/my_orders bash examples/mariadb-import-export.sh
# It drops and recreates $TABLE and ${TABLE}_copy; drop them when done:
#       mariadb -h 127.0.0.1 -u fastsync -p fastsync -e 'DROP TABLE example_orders, example_orders_copy'
set -euo pipefail
TABLE=${TABLE:-example_orders}
DIR=${DIR:-out/$TABLE}
CONNECT=jdbc:mysql://127.0.0.1:3306/fastsync
# the password for the client and for fastsync (--password-file FILE or -P work too), kept off the command line
export MYSQL_PWD=fastsync FASTSYNC_PASSWORD=fastsync
mariadb() { command mariadb -h 127.0.0.1 -u fastsync fastsync "$@"; }

mariadb <<SQL
DROP TABLE IF EXISTS ${TABLE}, ${TABLE}_copy;
CREATE TABLE ${TABLE} (id int PRIMARY KEY, customer varchar(40), amount decimal(12, 2), created datetime);
INSERT INTO ${TABLE}
    WITH RECURSIVE n (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
    SELECT i, IF(i % 10 = 0, NULL, CONCAT('customer-', i % 97)), i * 1.25,
           TIMESTAMP '2026-01-01 00:00:00' + INTERVAL i MINUTE
    FROM n;
CREATE TABLE ${TABLE}_copy LIKE ${TABLE};
SQL

fastsync import --connect "$CONNECT" --username fastsync --table "$TABLE" -m 2 \
    --target-dir "$DIR" --delete-target-dir --as-parquetfile
fastsync export --connect "$CONNECT" --username fastsync --table "${TABLE}_copy" --export-dir "$DIR"

mariadb -N -e "SELECT (SELECT count(*) FROM ${TABLE}), (SELECT count(*) FROM ${TABLE}_copy),
                      (SELECT count(*) FROM (SELECT * FROM ${TABLE} EXCEPT SELECT * FROM ${TABLE}_copy) a)
                    + (SELECT count(*) FROM (SELECT * FROM ${TABLE}_copy EXCEPT SELECT * FROM ${TABLE}) b)" |
    { read -r n copied diff; echo "$TABLE: $n rows, ${TABLE}_copy: $copied rows, $diff rows differ"; }
