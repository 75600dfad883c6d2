-- The table examples/kafka-to-mariadb.properties writes into (the jdbc sink needs it to exist).
-- Run:  mariadb -h 127.0.0.1 -u fastsync -p fastsync < examples/kafka-to-mariadb.sql
DROP TABLE IF EXISTS example_orders_from_kafka;
CREATE TABLE example_orders_from_kafka (
    id int PRIMARY KEY,
    customer varchar(40),
    amount decimal(12, 2),
    created datetime
);
