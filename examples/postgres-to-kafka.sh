#!/usr/bin/env bash
# A Sqoop-style import into Kafka instead of files: every row of a PostgreSQL table becomes
# one JSON message on a topic, keyed by its id. The servers are the ones scripts/services.sh
# starts (PostgreSQL on 127.0.0.1:5432, database, user and password `fastsync`; Kafka on
# 127.0.0.1:9092, which creates the topic on first use).
#   1. setup (psql): table $TABLE with 1000 orders;
#   2. import: $TABLE -> topic $TOPIC, read in 2 splits, one message per row
#      ({"id": 1, "customer": "customer-1", "amount": "1.25", "created": "2026-01-01T00:01:00"}).
# examples/kafka-to-mariadb.properties reads the topic on into a MariaDB table.
#
# Run:  bash examples/postgres-to-kafka.sh
#       TABLE=my_orders TOPIC=my-orders bash examples/postgres-to-kafka.sh
# Each run sends the rows again (a topic is a log, not a table). To see them, e.g. with Kafka's
# console consumer:  kafka-console-consumer.sh --bootstrap-server 127.0.0.1:9092 --topic example-orders --from-beginning
set -euo pipefail
TABLE=${TABLE:-example_kafka_orders}
TOPIC=${TOPIC:-example-orders}
BROKERS=${BROKERS:-127.0.0.1:9092}
CONNECT=jdbc:postgresql://127.0.0.1:5432/fastsync
# the password for psql and for fastsync (--password-file FILE or -P work too), kept off the command line
export PGPASSWORD=fastsync FASTSYNC_PASSWORD=fastsync
psql() { command psql -h 127.0.0.1 -U fastsync -d fastsync -v ON_ERROR_STOP=1 -q "$@"; }

psql <<SQL
SET client_min_messages = warning;
DROP TABLE IF EXISTS ${TABLE};
CREATE TABLE ${TABLE} (id integer PRIMARY KEY, customer text, amount numeric(12, 2), created timestamp);
INSERT INTO ${TABLE}
    SELECT i, CASE WHEN i % 10 = 0 THEN NULL ELSE 'customer-' || i % 97 END,
           i * 1.25, timestamp '2026-01-01' + i * interval '1 minute'
    FROM generate_series(1, 1000) AS i;
SQL

fastsync import --connect "$CONNECT" --username fastsync --table "$TABLE" -m 2 \
    --kafka-topic "$TOPIC" --kafka-brokers "$BROKERS" --kafka-format json --kafka-key id
