"""The jdbc sink's events/s for JSON bodies into PostgreSQL and MariaDB (the servers
scripts/services.sh starts): the sink reading a batch column by column (the default), the
same sink reading row by row (json.loads and the per-value converters, the path of every
batch before), and the raw bulk write of the same rows already converted (PostgreSQL: COPY
of their CSV text; MariaDB: PyMySQL executemany of tuples), in one run, rounds alternating.
Each mode writes N events in batches into an empty table; the row count is checked.

    python bench/bench_jdbc_sink.py [--events 200000] [--batch 1000] [--rounds 3] [--db postgresql,mariadb]

The sink is driven in-process (JdbcSink.deliver on EventBatches), so the figures are the
sink's own cost: no source or channel.
"""
from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import statistics
import time
import uuid

URLS = {"postgresql": os.environ.get("FASTSYNC_TEST_PG_URL", "postgresql://fastsync:fastsync@127.0.0.1:5432/fastsync"),
        "mariadb": os.environ.get("FASTSYNC_TEST_MYSQL_URL", "mysql://fastsync:fastsync@127.0.0.1:3306/fastsync")}
DDL = {"postgresql": "CREATE TABLE %s (id bigint PRIMARY KEY, name varchar(100), price numeric(12,2), qty integer, "
                     "ts timestamp, ok boolean, score double precision)",
       "mariadb": "CREATE TABLE %s (id bigint PRIMARY KEY, name varchar(100), price decimal(12,2), qty int, "
                  "ts datetime(6), ok boolean, score double) DEFAULT CHARSET=utf8mb4"}
COLUMNS = ["id", "name", "price", "qty", "ts", "ok", "score"]


def make_rows(n: int) -> list[dict]:
    """Rows as `import --kafka-format json` writes them (decimals and timestamps as text)."""
    t0 = dt.datetime(2026, 1, 1)
    return [{"id": i, "name": "name %d" % i, "price": "%d.%02d" % (i % 100000, i % 100), "qty": i % 1000,
             "ts": (t0 + dt.timedelta(seconds=i, microseconds=i % 1000000)).isoformat() + ("Z" if i % 2 else ""),
             "ok": i % 3 == 0, "score": i / 8} for i in range(n)]


def batches(rows: list[dict], size: int):
    from fastsync.event import EventBatch
    bodies = [json.dumps(r).encode() for r in rows]
    return [EventBatch.from_bodies(bodies[i:i + size]) for i in range(0, len(bodies), size)]


class Table:
    def __init__(self, kind: str):
        import sqlalchemy as sa
        from fastsync.transfer.connect import build_url
        self.kind, self.name = kind, "bench_jdbc_" + uuid.uuid4().hex[:10]
        self.engine = sa.create_engine(build_url(URLS[kind]))
        with self.engine.begin() as c:
            c.exec_driver_sql(DDL[kind] % self.name)

    def empty(self) -> None:
        with self.engine.begin() as c:
            c.exec_driver_sql("TRUNCATE TABLE %s" % self.name)

    def count(self) -> int:
        with self.engine.connect() as c:
            return c.exec_driver_sql("SELECT count(*) FROM %s" % self.name).scalar()

    def drop(self) -> None:
        with self.engine.begin() as c:
            c.exec_driver_sql("DROP TABLE %s" % self.name)
        self.engine.dispose()


def sink_for(table: Table, columnar: bool):
    from fastsync.agent.component import Place, parse_config
    from fastsync.agent.properties import Prop
    from fastsync.agent.sinks.jdbc import JdbcSink, JdbcSinkConfig
    props = {"connection.url": Prop(URLS[table.kind], 1), "table.name": Prop(table.name, 2)}
    sink = JdbcSink("k1", parse_config(JdbcSinkConfig, Place("<bench>", "a1.sinks.k1", props)))
    sink.start()
    if not columnar:
        sink.json_columns, sink.copy = None, False      # the per-row path, as before
    return sink


def run_sink(table: Table, bs, columnar: bool) -> float:
    sink = sink_for(table, columnar)
    try:
        start = time.perf_counter()
        for b in bs:
            sink.deliver(b)
        return time.perf_counter() - start
    finally:
        sink.stop()


def run_raw(table: Table, rows: list[dict], size: int) -> float:
    """The database's bulk write of the rows, converted beforehand (not timed)."""
    conv = [(r["id"], r["name"], r["price"], r["qty"], dt.datetime.fromisoformat(r["ts"].rstrip("Z")), r["ok"], r["score"])
            for r in rows]
    raw = table.engine.raw_connection()
    try:
        if table.kind == "postgresql":
            chunks = []
            for i in range(0, len(conv), size):
                buf = io.StringIO()
                for t in conv[i:i + size]:
                    buf.write("%d,%s,%s,%d,%s,%s,%r\n" % (t[0], t[1], t[2], t[3], t[4].isoformat(), "t" if t[5] else "f", t[6]))
                chunks.append(buf.getvalue().encode())
            start = time.perf_counter()
            for chunk in chunks:
                with raw.driver_connection.cursor() as cur, cur.copy("COPY %s FROM STDIN (FORMAT csv)" % table.name) as copy:
                    copy.write(chunk)
                raw.commit()
        else:
            sql = "INSERT INTO %s (%s) VALUES (%s)" % (table.name, ", ".join(COLUMNS), ", ".join(["%s"] * len(COLUMNS)))
            start = time.perf_counter()
            for i in range(0, len(conv), size):
                with raw.cursor() as cur:
                    cur.executemany(sql, conv[i:i + size])
                raw.commit()
        return time.perf_counter() - start
    finally:
        raw.close()


def compare(kind: str, events: int, size: int, rounds: int) -> dict:
    rows = make_rows(events)
    bs = batches(rows, size)
    table = Table(kind)
    times: dict = {"columnar": [], "per-row": [], "raw": []}
    try:
        for _ in range(rounds):
            for mode in times:
                table.empty()
                took = run_raw(table, rows, size) if mode == "raw" else run_sink(table, bs, mode == "columnar")
                got = table.count()
                assert got == events, (kind, mode, got, events)
                times[mode].append(events / took)
    finally:
        table.drop()
    return times


def test_jdbc_sink_columnar_vs_per_row_vs_raw(benchmark):
    events = 200_000 if benchmark.enabled else 3000
    results = {}

    def once():
        for kind in URLS:
            results[kind] = compare(kind, events, 1000, 1)
    benchmark.pedantic(once, rounds=3 if benchmark.enabled else 1, iterations=1)
    benchmark.extra_info.update({"%s %s" % (k, m): v for k, r in results.items() for m, v in r.items()})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--db", default="postgresql,mariadb")
    a = ap.parse_args()
    print("load average before: %.2f %.2f %.2f" % os.getloadavg())
    for kind in a.db.split(","):
        times = compare(kind, a.events, a.batch, a.rounds)
        raw = statistics.median(times["raw"])
        for mode, v in times.items():
            print("%-10s %-9s events/s %s  median %8.0f  ratio to raw %.2f" % (
                kind, mode, " ".join("%.0f" % x for x in v), statistics.median(v), statistics.median(v) / raw))
    print("load average after: %.2f %.2f %.2f" % os.getloadavg())


if __name__ == "__main__":
    main()
