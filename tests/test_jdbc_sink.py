"""The jdbc sink through the agent CLI, against the real PostgreSQL, MariaDB and Kafka that
scripts/services.sh starts (and SQLite files): upserts from Kafka, exact types, dead
letters, a database that fails and comes back, configuration errors. Every table, topic
and database is new (uuid names), so runs sharing the servers don't collide."""
from __future__ import annotations

import base64
import datetime as dt
import json
import os
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from confluent_kafka import Producer

from e2e_support import free_port, get_json, line_of, poll, properties_text, wait_for_json, write_config
from fastsync.transfer.connect import build_url
from fastsync.transfer.kafkaout import json_default
from test_kafka import BROKERS, fastsync_cli, new_topic

PG_URL = os.environ.get("FASTSYNC_TEST_PG_URL", "postgresql://fastsync:fastsync@127.0.0.1:5432/fastsync")
MYSQL_URL = os.environ.get("FASTSYNC_TEST_MYSQL_URL", "mysql://fastsync:fastsync@127.0.0.1:3306/fastsync")
UTC = dt.timezone.utc


class Db:
    """A test's view of one database: its tables (dropped at teardown) and their rows."""

    def __init__(self, url: str):
        self.url = url
        self.engine = sa.create_engine(build_url(url))
        self.made: list[str] = []

    def table(self, ddl: str) -> str:
        name = "jdbc_" + uuid.uuid4().hex[:12]
        with self.engine.begin() as c:
            c.exec_driver_sql(ddl.format(t=name))
        self.made.append(name)
        return name

    def sql(self, text: str) -> None:
        with self.engine.begin() as c:
            c.exec_driver_sql(text)

    def rows(self, table: str) -> list[dict]:
        t = sa.Table(table, sa.MetaData(), autoload_with=self.engine)
        with self.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(sa.select(t).order_by(t.c.id))]

    def close(self) -> None:
        for name in self.made:
            with self.engine.begin() as c:
                c.exec_driver_sql("DROP TABLE IF EXISTS %s" % name)
        self.engine.dispose()


@pytest.fixture
def dbs(tmp_path):
    opened: dict[str, Db] = {}

    def get(kind: str) -> Db:
        if kind not in opened:
            opened[kind] = Db({"postgresql": PG_URL, "mariadb": MYSQL_URL, "sqlite": "sqlite:///%s/test.db" % tmp_path}[kind])
        return opened[kind]
    yield get
    for db in opened.values():
        db.close()


def body(row: dict) -> bytes:
    """A row as `import --kafka-format json` writes it."""
    return json.dumps(row, ensure_ascii=False, default=json_default).encode()


def produce(topic: str, bodies: list[bytes]) -> None:
    p = Producer({"bootstrap.servers": BROKERS})
    for b in bodies:
        p.produce(topic, b)
    assert p.flush(30) == 0


def agent_config(source: dict, sink: dict) -> dict:
    cfg = {
        "a1.sources": "r1", "a1.channels": "c1", "a1.sinks": "k1", "a1.sources.r1.channels": "c1",
        "a1.channels.c1.type": "memory", "a1.channels.c1.capacity": 10000, "a1.channels.c1.transactionCapacity": 1000,
        "a1.sinks.k1.type": "jdbc", "a1.sinks.k1.channel": "c1",
    }
    cfg.update({"a1.sources.r1." + k: v for k, v in source.items()})
    cfg.update({"a1.sinks.k1." + k: v for k, v in sink.items()})
    return cfg


def kafka_source(topic: str) -> dict:
    return {"type": "kafka", "kafka.bootstrap.servers": BROKERS, "kafka.topics": topic,
            "kafka.consumer.group.id": "g-" + topic, "batchSize": 500, "batchDurationMillis": 100}


def exec_source(path: Path) -> dict:
    return {"type": "exec", "command": "cat %s" % path, "batchSize": 200, "restart": "false"}


def wait_rows(db: Db, table: str, want: list[dict], p, timeout: float = 90) -> None:
    poll(lambda: db.rows(table) == want or not p.alive(), timeout, interval=0.3, message="rows of %s" % table)
    assert p.alive(), p.stderr[-3000:]


# -- 1. Kafka -> PostgreSQL, upserts ----------------------------------------------------------

def test_kafka_to_postgres_upsert_keeps_the_latest_row_per_id(tmp_path, agent, dbs):
    pg = dbs("postgresql")
    # (no NOT NULL column without a default: PostgreSQL checks the row an upsert would insert
    # before it finds the conflict, so a partial update would be refused)
    table = pg.table("CREATE TABLE {t} (id integer PRIMARY KEY, name text, price numeric(14,2), "
                     "ts timestamptz, raw bytea, qty bigint)")
    topic = new_topic()

    def row(i: int, v: int) -> dict:
        return {"id": i, "name": None if i % 50 == 7 else "n\u00e9 %d v%d \"q\" \U0001f600" % (i, v),
                "price": Decimal("%d.%02d" % (i * 1000003, v)),
                "ts": dt.datetime(2026, 1, 1, tzinfo=UTC) + dt.timedelta(seconds=i, minutes=v),
                "raw": bytes([i % 256, v, 0, 255]), "qty": i * 10 ** 12 + v}

    latest = {i: row(i, 0) for i in range(600)}
    produce(topic, [body(r) for r in latest.values()])
    cfg = agent_config(kafka_source(topic), {"connection.url": PG_URL, "table.name": table, "insert.mode": "upsert",
                                             "pk.fields": "id", "batchSize": 100})
    p = agent("a1", write_config(tmp_path, cfg))
    wait_rows(pg, table, [latest[i] for i in sorted(latest)], p)

    # updates: every 3rd id a new version of every column; every 5th only its qty (the other
    # columns must stay); every 10th twice more, so the last one must win
    updates = []
    for i in range(0, 600, 3):
        latest[i] = row(i, 1)
        updates.append(latest[i])
    for i in range(0, 600, 5):
        updates.append({"id": i, "qty": -i})
        latest[i] = dict(latest[i], qty=-i)
    for i in range(0, 600, 10):
        updates += [row(i, 2), row(i, 3)]
        latest[i] = row(i, 3)
    before = {r["id"]: r for r in pg.rows(table)}
    produce(topic, [body(r) for r in updates])
    want = [latest[i] for i in sorted(latest)]
    wait_rows(pg, table, want, p)
    assert p.stop(timeout=60) == 0, p.stderr[-3000:]
    got = pg.rows(table)
    assert got == want
    untouched = [i for i in range(600) if i % 3 and i % 5]
    assert untouched and all(before[i] == {r["id"]: r for r in got}[i] for i in untouched)


# -- 2. insert: exact types into MariaDB and SQLite ------------------------------------------

DDL = {
    "mariadb": "CREATE TABLE {t} (id int PRIMARY KEY, name varchar(200), price decimal(20,6), ts datetime(6), "
               "raw varbinary(300), note text) DEFAULT CHARSET=utf8mb4",
    "sqlite": "CREATE TABLE {t} (id integer PRIMARY KEY, name varchar(200), price numeric(20,6), ts timestamp, "
              "raw blob, note text)",
}


@pytest.mark.parametrize("kind", ["mariadb", "sqlite"])
def test_exec_to_database_insert_keeps_every_value_exactly(tmp_path, run_agent, dbs, kind):
    db = dbs(kind)
    table = db.table(DDL[kind])
    sent, want = [], []
    for i in range(2000):
        price = Decimal("%d.%06d" % (i * 7919, i * 37 % 10 ** 6))
        if kind == "mariadb" and i % 100 == 0:
            price = Decimal("12345678901234.%06d" % i)        # 20 digits: exact only as DECIMAL
        ts = dt.datetime(2026, 3, 1, 12, 0, 0, i * 173 % 10 ** 6) + dt.timedelta(hours=i)
        # an offset is stored as UTC in a column without time zone
        sent_ts = ts.replace(tzinfo=UTC).astimezone(dt.timezone(dt.timedelta(hours=2))) if i % 2 else ts
        name = None if i % 97 == 0 else "zo\u00eb \u6771\u4eac \U0001f600 \"q\" back\\slash\ttab %d" % i
        raw = bytes((i + k) % 256 for k in range(i % 300))
        note = None if i % 3 else "line one\nline two " * (i % 20)
        sent.append({"id": i, "name": name, "price": price, "ts": sent_ts, "raw": raw, "note": note})
        want.append({"id": i, "name": name, "price": price, "ts": ts, "raw": raw, "note": note})
    rows = tmp_path / "rows.jsonl"
    rows.write_bytes(b"".join(body(r) + b"\n" for r in sent))
    sink = {"table.name": table, "batchSize": 300, "deadLetterFile": tmp_path / "dead.jsonl"}
    if kind == "mariadb":   # a JDBC URL with the user and a password file, as Kafka Connect takes them
        (tmp_path / "pw").write_text("fastsync\n")
        sink.update({"connection.url": "jdbc:mariadb://127.0.0.1:3306/fastsync", "connection.user": "fastsync",
                     "connection.password.file": tmp_path / "pw"})
    else:
        sink["connection.url"] = "jdbc:sqlite:%s" % (tmp_path / "test.db")
    p = run_agent("a1", write_config(tmp_path, agent_config(exec_source(rows), sink)), "--exit-when-done", timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    assert not (tmp_path / "dead.jsonl").read_bytes()
    got = db.rows(table)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g == w, (g, w)


@pytest.mark.parametrize("kind", ["mariadb", "postgresql"])
def test_column_names_with_backticks_and_quotes_are_written(tmp_path, run_agent, dbs, kind):
    """MariaDB's reflection left a backtick in a column name doubled (a column that does not
    exist); every name is quoted by the dialect, never by hand."""
    db = dbs(kind)
    q = "`" if kind == "mariadb" else '"'
    odd = ["we`ird", 'dq"name', "sp ace", "dot.ted"]
    cols = ", ".join("%s%s%s TEXT" % (q, n.replace(q, q + q), q) for n in odd)
    table = db.table("CREATE TABLE {t} (id INT PRIMARY KEY, %s)" % cols)
    rows = [dict({"id": i}, **{n: "%s-%d" % (n, i) for n in odd}) for i in range(5)]
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b"".join(body(r) + b"\n" for r in rows))
    sink = {"table.name": table, "batchSize": 10, "connection.url": db.url}
    p = run_agent("a1", write_config(tmp_path, agent_config(exec_source(path), sink)), "--exit-when-done", timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    with db.engine.connect() as c:
        got = c.exec_driver_sql("SELECT * FROM %s ORDER BY id" % table).all()
    assert [tuple(r) for r in got] == [(r["id"], *(r[n] for n in odd)) for r in rows]


@pytest.mark.slow
def test_import_arrow_messages_through_kafka_into_mariadb(tmp_path, agent, dbs):
    """`fastsync import --kafka-format arrow` (PostgreSQL -> Kafka, Arrow IPC messages of many
    rows), then kafka source -> jdbc sink with format=arrow -> MariaDB: the same rows."""
    pg, maria = dbs("postgresql"), dbs("mariadb")
    src = pg.table("CREATE TABLE {t} (id integer PRIMARY KEY, name text, price numeric(12,2), ts timestamptz, raw bytea)")
    rows = [{"id": i, "name": None if i % 11 == 0 else "\u00e9t\u00e9 %d" % i, "price": Decimal("%d.%02d" % (i, i % 100)),
             "ts": dt.datetime(2026, 1, 1, 0, 0, 0, i, tzinfo=UTC) + dt.timedelta(seconds=i), "raw": bytes([i % 256, 0, 255])}
            for i in range(3000)]
    with pg.engine.begin() as c:
        c.execute(sa.Table(src, sa.MetaData(), autoload_with=c).insert(), rows)
    dst = maria.table("CREATE TABLE {t} (id int PRIMARY KEY, name text, price decimal(12,2), ts datetime(6), raw blob) "
                      "DEFAULT CHARSET=utf8mb4")
    topic = new_topic(partitions=2)
    r = fastsync_cli("import", "--connect", PG_URL, "--table", src, "-m", 2, "--kafka-topic", topic,
                     "--kafka-brokers", BROKERS, "--kafka-format", "arrow")
    assert r.returncode == 0, r.stderr
    cfg = agent_config(kafka_source(topic), {"connection.url": MYSQL_URL, "table.name": dst, "format": "arrow",
                                             "batchSize": 10, "deadLetterFile": tmp_path / "dead.jsonl"})
    p = agent("a1", write_config(tmp_path, cfg))
    want = [dict(r, ts=r["ts"].replace(tzinfo=None)) for r in rows]   # DATETIME keeps UTC, naive
    wait_rows(maria, dst, want, p)
    assert p.stop(timeout=60) == 0, p.stderr[-3000:]
    assert not (tmp_path / "dead.jsonl").read_bytes()


# -- 3. dead letters --------------------------------------------------------------------------

def test_bad_rows_go_to_the_dead_letter_file_and_the_rest_is_written(tmp_path, agent, dbs):
    pg = dbs("postgresql")
    table = pg.table("CREATE TABLE {t} (id integer PRIMARY KEY, name text NOT NULL, qty integer CHECK (qty >= 0), "
                     "price numeric(10,2))")
    good = [{"id": i, "name": "good %d" % i, "qty": i, "price": Decimal("%d.50" % i)} for i in range(200)]
    bad = [  # body, where it goes among the good ones, what the reason must say, the column it names
        (b"{not json", 10, "malformed JSON", None),
        (body({"id": 1000, "name": "x", "qty": "abc"}), 20, "expected an integer", "qty"),
        (body({"id": 1001, "name": None}), 30, "NULL into a NOT NULL column", "name"),
        (body({"id": 5, "name": "duplicate of 5"}), 40, "duplicate key", None),            # refused by the database
        (body({"id": 1002, "name": "negative", "qty": -1}), 50, "check constraint", None),  # refused by the database
        (body({"id": 1003, "name": "big", "qty": 5000000000}), 60, "out of range", None),  # refused by the database
        (body({"id": 1004, "name": "p", "price": "1.234"}), 70, "more than 2 decimal places", "price"),
        (body({"id": 1005, "nmae": "typo"}), 80, "no column %s.nmae" % table, "nmae"),
        (b"\xff\xfe not utf-8", 90, "malformed JSON", None),
    ]
    bodies = [body(r) for r in good]
    for b, at, _, _ in sorted(bad, key=lambda x: -x[1]):
        bodies.insert(at, b)
    topic = new_topic()
    produce(topic, bodies)
    dead = tmp_path / "dead" / "k1.jsonl"
    cfg = agent_config(kafka_source(topic), {"connection.url": PG_URL, "table.name": table, "batchSize": 50,
                                             "deadLetterFile": dead})
    p = agent("a1", write_config(tmp_path, cfg))
    wait_rows(pg, table, good, p)
    poll(lambda: dead.exists() and dead.read_bytes().count(b"\n") >= len(bad), 30, message="dead letters")
    letters = [json.loads(line) for line in dead.read_text().splitlines()]
    assert len(letters) == len(bad)

    def original(letter):
        return letter["body"].encode() if "body" in letter else base64.b64decode(letter["body_base64"])
    by_body = {original(letter): letter for letter in letters}
    for b, _, reason, column in bad:
        letter = by_body[b]
        assert reason in letter["reason"], letter
        if column is not None:
            assert letter["column"] == column, letter
        assert letter["table"] == table and letter["sink"] == "k1"
        assert letter["headers"]["topic"] == topic and "offset" in letter["headers"]
    assert "body_base64" in by_body[bad[8][0]]

    # the agent goes on: more good rows arrive
    more = [{"id": i, "name": "later %d" % i, "qty": None, "price": None} for i in range(200, 260)]
    produce(topic, [body(r) for r in more])
    wait_rows(pg, table, good + more, p)
    assert p.stop(timeout=60) == 0, p.stderr[-3000:]
    assert len(dead.read_text().splitlines()) == len(bad)


COLUMNAR_DDL = {
    "postgresql": "CREATE TABLE {t} (id integer PRIMARY KEY, name varchar(12) NOT NULL DEFAULT 'dflt', "
                  "qty smallint CHECK (qty >= 0), price numeric(8,2), amount numeric, ts timestamp(3), tstz timestamptz, "
                  "d date, ok boolean, raw bytea, score double precision)",
    "mariadb": "CREATE TABLE {t} (id int PRIMARY KEY, name varchar(12) NOT NULL DEFAULT 'dflt', "
               "qty smallint CHECK (qty >= 0), price decimal(8,2), amount decimal(30,10), ts datetime(3), tstz datetime(6), "
               "d date, ok boolean, raw varbinary(20), score double) DEFAULT CHARSET=utf8mb4",
}


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_columnar_json_batches_keep_every_rule_of_the_per_row_path(tmp_path, run_agent, dbs, kind):
    """JSON bodies are read a batch at a time (pyarrow.json, then checks per column, COPY on
    PostgreSQL): missing keys leave the column to its default, explicit nulls write NULL,
    offsets become UTC, and every row a check or the database refuses is dead-lettered
    with the per-row path's reason while the rest of its batch is written. A batch with a
    malformed body is read row by row, with the same result."""
    db = dbs(kind)
    table = db.table(COLUMNAR_DDL[kind])
    sent, want = [], []
    for i in range(300):
        ts = dt.datetime(2026, 5, 1, 8, 30, 0, (i % 1000) * 1000) + dt.timedelta(minutes=i)
        wire_ts = (ts.isoformat() if i % 3 == 0 else ts.isoformat() + "Z" if i % 3 == 1
                   else (ts + dt.timedelta(hours=2)).isoformat() + "+02:00")
        name = ("o'\\%d" % i if i % 4 == 1 else "n\u0000%d" % i if i % 4 == 3 and kind == "mariadb" else "n%d" % i)
        row = {"id": i, "name": name, "qty": i % 50, "price": "%d.%02d" % (i, i % 100),
               "amount": "%d.%010d" % (i * 1000003, i), "ts": wire_ts, "tstz": "2026-01-02T03:04:05.%06d" % i,
               "d": "2026-02-%02d" % (i % 28 + 1), "ok": i % 2 == 0, "raw": base64.b64encode(bytes([i % 256, 0, 255])).decode(),
               "score": i / 8}   # (the test's MariaDB reflection reads DOUBLE as a decimal of 10 places)
        out = dict(row, price=Decimal(row["price"]), amount=Decimal(row["amount"]), ts=ts, d=dt.date(2026, 2, i % 28 + 1),
                   tstz=dt.datetime(2026, 1, 2, 3, 4, 5, i, tzinfo=UTC if kind == "postgresql" else None),
                   raw=bytes([i % 256, 0, 255]))
        if i % 7 == 0:                 # a key left out: the column's default
            del row["name"]
            out["name"] = "dflt"
        if i % 5 == 0:                 # an explicit null: NULL
            row["price"] = out["price"] = None
        sent.append(json.dumps(row).encode())
        want.append(out)
    bad = [  # body, what the reason says, the column it names
        (b'{"id": 1000, "qty": 40000}', "out of range", "qty"),
        (b'{"id": 1001, "name": "thirteen char"}', "13 characters do not fit 12", "name"),
        (b'{"id": 1002, "price": "1.234"}', "more than 2 decimal places", "price"),
        (b'{"id": 1003, "price": "1234567.5"}', "does not fit NUMERIC(8, 2)", "price"),
        (b'{"id": 1004, "ts": "2026-01-01T00:00:00.1234"}', "more fractional second digits", "ts"),
        (b'{"id": 1005, "name": null}', "NULL into a NOT NULL column", "name"),
        (b'{"id": 5, "name": "again 5"}', "uplicate", "?"),                          # refused by the database
        (b'{"id": 1006, "qty": -1}', "onstraint", "?"),                               # refused by the database
        (b'{"id": 1007, "raw": "not base64!"}', "expected base64 text", "raw"),
        (b'{}', "no fields to write", None),
        (b'{"id": 1008, "d": "2026-02-30"}', "expected an ISO 8601 date", "d"),     # this batch is read row by row
    ]
    if kind == "postgresql":
        bad.append((b'{"id": 1009, "name": "a\\u0000b"}', "NUL character", "name"))
    bodies = list(sent)
    for k, (b, _, _) in enumerate(bad):
        bodies.insert(10 + 23 * k, b)
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b"\n".join(bodies) + b"\n")
    dead = tmp_path / "dead.jsonl"
    sink = {"connection.url": db.url, "table.name": table, "batchSize": 40, "deadLetterFile": dead}
    p = run_agent("a1", write_config(tmp_path, agent_config(exec_source(path), sink)), "--exit-when-done", timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "JSON bodies read a column at a time, written " + (
        "with COPY" if kind == "postgresql" else "as INSERT text built by Arrow") in p.stderr
    got = db.rows(table)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g == w, (g, w)
    letters = {letter["body"].encode(): letter for letter in map(json.loads, dead.read_text().splitlines())}
    assert len(letters) == len(bad)
    for b, reason, column in bad:
        assert reason.lower() in letters[b]["reason"].lower(), letters[b]
        assert column == "?" or letters[b].get("column") == column, letters[b]


def test_columnar_upsert_merges_rows_of_a_batch_in_order(tmp_path, run_agent, dbs):
    """Upserts read a column at a time: rows of one batch with the same key merge in event
    order, a partial row updates only its keys, and a row without its key is refused."""
    pg = dbs("postgresql")
    table = pg.table("CREATE TABLE {t} (id integer PRIMARY KEY, v text, n integer)")
    lines = [json.dumps({"id": i % 10, "v": "v%d" % i, "n": i}) for i in range(100)]
    lines += [json.dumps({"id": 3, "n": -3}), json.dumps({"id": 4, "v": None}), json.dumps({"v": "no key"}),
              json.dumps({"id": None, "v": "null key"})]
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(lines) + "\n")
    dead = tmp_path / "dead.jsonl"
    sink = {"connection.url": PG_URL, "table.name": table, "batchSize": 1000, "insert.mode": "upsert", "pk.fields": "id",
            "deadLetterFile": dead}
    cfg = agent_config(exec_source(path), sink)
    cfg["a1.sources.r1.batchSize"] = 1000
    p = run_agent("a1", write_config(tmp_path, cfg), "--exit-when-done", timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "JSON bodies read a column at a time" in p.stderr
    want = {i: {"id": i, "v": "v%d" % (90 + i), "n": 90 + i} for i in range(10)}
    want[3]["n"] = -3
    want[4]["v"] = None
    assert pg.rows(table) == [want[i] for i in range(10)]
    reasons = sorted(json.loads(line)["reason"] for line in dead.read_text().splitlines())
    assert reasons == ["column %s.id: NULL into a NOT NULL column" % table, "column %s.id: an upsert needs its key value" % table]


def test_columnar_whitelist_ignores_other_fields(tmp_path, run_agent, dbs):
    """fields.whitelist with bodies read a column at a time: keys that are no column and
    columns left out of the list are ignored, as row by row."""
    pg = dbs("postgresql")
    table = pg.table("CREATE TABLE {t} (id integer PRIMARY KEY, v text, secret text DEFAULT 'kept')")
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps({"id": i, "v": "v%d" % i, "secret": "leak", "extra": [i]}) for i in range(50)) + "\n")
    sink = {"connection.url": PG_URL, "table.name": table, "fields.whitelist": "id, v"}
    p = run_agent("a1", write_config(tmp_path, agent_config(exec_source(path), sink)), "--exit-when-done", timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "JSON bodies read a column at a time, written with COPY" in p.stderr
    assert pg.rows(table) == [{"id": i, "v": "v%d" % i, "secret": "kept"} for i in range(50)]


@pytest.mark.slow
def test_without_dead_letter_file_a_bad_row_fails_the_batch(tmp_path, agent, dbs):
    pg = dbs("postgresql")
    table = pg.table("CREATE TABLE {t} (id integer PRIMARY KEY, qty integer)")
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"id": 1, "qty": 1}\n{"id": 2, "qty": "two"}\n{"id": 3, "qty": 3}\n')
    cfg = agent_config(exec_source(rows), {"connection.url": PG_URL, "table.name": table})
    mport = free_port()
    p = agent("a1", write_config(tmp_path, cfg), "--drain-timeout", "1", "--metrics-port", str(mport))
    # rolled back and retried (the runner waits 5 s between tries): counted each time, logged once
    url = "http://127.0.0.1:%d/metrics" % mport
    wait_for_json(url, timeout=10, alive=p.alive)
    poll(lambda: int(get_json(url)["SINK.k1"]["EventWriteFail"]) >= 2, 30, interval=0.2, message="two failed tries")
    assert p.stderr.count("1 of 3 rows rejected and no deadLetterFile") == 1, p.stderr
    assert "column %s.qty: expected an integer" % table in p.stderr
    assert pg.rows(table) == []
    assert p.stop(timeout=60) == 0


# -- 4. the database fails and comes back ------------------------------------------------------

def test_database_created_later_nothing_lost_nothing_dead_lettered(tmp_path, agent, dbs):
    """The URL names a database that does not exist yet: the agent starts, every batch is
    rolled back and retried until the database and its table are created, then all rows
    arrive once."""
    pg = dbs("postgresql")
    name = "fs_jdbc_" + uuid.uuid4().hex[:12]
    url = PG_URL.rsplit("/", 1)[0] + "/" + name
    rows = [{"id": i, "v": "value %d" % i} for i in range(500)]
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b"".join(body(r) + b"\n" for r in rows))
    dead = tmp_path / "dead.jsonl"
    cfg = agent_config(exec_source(path), {"connection.url": url, "table.name": "items", "deadLetterFile": dead,
                                           "batchSize": 100})
    p = agent("a1", write_config(tmp_path, cfg), "--exit-when-done")
    later = Db(url)
    try:
        p.wait_for_stderr(r"database \"%s\" does not exist.*batch rolled back" % name, timeout=30)
        assert p.alive()
        with pg.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.exec_driver_sql("CREATE DATABASE %s" % name)
        later.sql("CREATE TABLE items (id integer PRIMARY KEY, v text NOT NULL)")
        assert p.wait(90) == 0, p.stderr[-3000:]
        assert later.rows("items") == rows
        assert dead.read_bytes() == b""
    finally:
        later.engine.dispose()
        p.kill()
        with pg.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.exec_driver_sql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)


@pytest.mark.slow
def test_permission_revoked_mid_run_is_retried_not_dead_lettered(tmp_path, agent, dbs):
    pg = dbs("postgresql")
    table = pg.table("CREATE TABLE {t} (id integer PRIMARY KEY, v text)")
    topic = new_topic()
    first = [{"id": i, "v": "first %d" % i} for i in range(100)]
    second = [{"id": i, "v": "second %d" % i} for i in range(100, 300)]
    dead = tmp_path / "dead.jsonl"
    cfg = agent_config(kafka_source(topic), {"connection.url": PG_URL, "table.name": table, "deadLetterFile": dead})
    p = agent("a1", write_config(tmp_path, cfg))
    produce(topic, [body(r) for r in first])
    wait_rows(pg, table, first, p)
    pg.sql("REVOKE INSERT ON %s FROM CURRENT_USER" % table)   # the table's owner: we can grant it back
    try:
        produce(topic, [body(r) for r in second])
        p.wait_for_stderr("permission denied for table %s.*batch rolled back" % table, timeout=30)
        assert pg.rows(table) == first
    finally:
        pg.sql("GRANT INSERT ON %s TO CURRENT_USER" % table)
    wait_rows(pg, table, first + second, p)
    assert p.stop(timeout=60) == 0, p.stderr[-3000:]
    assert dead.read_bytes() == b""


@pytest.mark.slow
def test_password_is_never_logged(tmp_path, agent):
    secret = "not-the-password-" + uuid.uuid4().hex
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"id": 1}\n')
    cfg = agent_config(exec_source(rows), {"connection.url": "jdbc:postgresql://127.0.0.1:5432/fastsync",
                                           "connection.user": "fastsync", "connection.password": secret,
                                           "table.name": "whatever"})
    p = agent("a1", write_config(tmp_path, cfg))
    p.wait_for_stderr("password authentication failed.*batch rolled back", timeout=30)
    assert p.stop(timeout=60) == 0
    assert secret not in p.stderr and "fastsync:***@127.0.0.1" in p.stderr


# -- 5. configuration errors --------------------------------------------------------------------

def _cases(table: str, tmp: Path) -> list:
    # id, sink keys, key named in the error (the line is that key's, or type's if it is absent), fragments
    return [
        ("missing-table", {"table.name": None}, "table.name", ["required key is missing"]),
        ("upsert-without-pk", {"insert.mode": "upsert"}, "insert.mode", ["needs pk.fields"]),
        ("unknown-table", {"table.name": "no_such_table_x"}, "table.name", ["no table no_such_table_x"]),
        ("unknown-pk-column", {"insert.mode": "upsert", "pk.fields": "id,nope"}, "pk.fields",
         ["no column %s.nope" % table, "columns: id, v"]),
        ("unknown-whitelist-column", {"fields.whitelist": "v, w"}, "fields.whitelist", ["no column %s.w" % table]),
        ("whitelist-without-pk", {"insert.mode": "upsert", "pk.fields": "id", "fields.whitelist": "v"}, "fields.whitelist",
         ["must include the pk.fields"]),
        ("pk-not-unique", {"insert.mode": "upsert", "pk.fields": "v"}, "pk.fields", ["primary key or unique index", "(id)"]),
        ("bad-url", {"connection.url": "jdbc:oracle:thin:@db:1521:x"}, "connection.url", ["unsupported JDBC URL"]),
        ("bad-mode", {"insert.mode": "merge"}, "insert.mode", ["insert, upsert"]),
        ("password-file", {"connection.password.file": tmp / "nope"}, "connection.password.file", ["No such file"]),
    ]


CASE_IDS = [c[0] for c in _cases("t", Path("/"))]


@pytest.mark.parametrize("case", CASE_IDS)
def test_config_error_is_one_located_line(tmp_path, run_agent, dbs, case):
    pg = dbs("postgresql")
    table = pg.table("CREATE TABLE {t} (id integer PRIMARY KEY, v text)")
    _, keys, key, fragments = next(c for c in _cases(table, tmp_path) if c[0] == case)
    out = tmp_path / "rows.jsonl"
    out.write_text('{"id": 1}\n')
    sink = {"connection.url": PG_URL, "table.name": table}
    sink.update(keys)
    cfg = {k: v for k, v in agent_config(exec_source(out), sink).items() if v is not None}
    text = properties_text(cfg)
    conf = write_config(tmp_path, text)
    p = run_agent("a1", conf, "--exit-when-done", timeout=30)
    assert p.returncode == 2, (p.returncode, p.stderr)
    err = p.stderr.strip()
    assert len(err.splitlines()) == 1, "expected one line on stderr, got:\n" + p.stderr
    line_key = "a1.sinks.k1." + (key if sink.get(key) is not None else "type")
    prefix = "fastsync: error: %s:%d: a1.sinks.k1.%s: " % (conf, line_of(text, line_key), key)
    assert err.startswith(prefix), (err, prefix)
    for frag in fragments:
        assert frag in err, (frag, err)
    assert pg.rows(table) == []
