"""Every example of examples/ run as its header comment says, end to end against the servers
scripts/services.sh starts: the agents with the `fastsync agent ...` line of their header,
the transfer scripts with bash and a `fastsync` command on the PATH that runs this checkout.

The examples have readable fixed names (table example_orders, topic example-orders, port
44444); the tests give each run its own: the scripts take TABLE, DIR, TOPIC from the
environment, and the properties files are run from a copy whose few named keys are
replaced (each key must be in the file once, so a renamed key fails here, not silently).
Every table, topic and consumer group a test makes is dropped or deleted at its end."""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import uuid
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from e2e_support import PYTHON, LineClient, free_port, poll
from fastsync.transfer.connect import build_url

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
# the loopback servers of scripts/services.sh, which the examples name
PG_URL = "postgresql://fastsync:fastsync@127.0.0.1:5432/fastsync"
MYSQL_URL = "mysql://fastsync:fastsync@127.0.0.1:3306/fastsync"
BROKERS = "127.0.0.1:9092"
ROWS = 1000     # the orders the scripts create


def unique(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:10]


def example_copy(tmp_path: Path, name: str, keys: dict) -> Path:
    """examples/<name> with the value of each of `keys` replaced, written into tmp_path."""
    text = (EXAMPLES / name).read_text(encoding="utf-8")
    for key, value in keys.items():
        text, n = re.subn(r"^(%s\s*=\s*).*$" % re.escape(key), lambda m, v=value: m.group(1) + str(v), text, flags=re.M)
        assert n == 1, "%s: key %s defined %d times, expected once" % (name, key, n)
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def header_agent_argv(name: str, conf: Path) -> list[str]:
    """The `fastsync agent ...` command the example's header says to run, on `conf`."""
    lines = [m.group(1) for m in re.finditer(r"^#\s+(fastsync agent .*)$", (EXAMPLES / name).read_text(), re.M)]
    assert len(lines) == 1, "%s: expected one `fastsync agent` line in its header, found %r" % (name, lines)
    argv = shlex.split(lines[0])
    assert "examples/" + name in argv, "%s: its run line does not name it: %s" % (name, lines[0])
    return [PYTHON, "-m", "fastsync"] + [str(conf) if a == "examples/" + name else a for a in argv[1:]]


@pytest.fixture
def shell_env(tmp_path):
    """The environment a user's shell gives the scripts: `fastsync` on the PATH (this
    checkout's, through the test's interpreter)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "fastsync"
    shim.write_text('#!/bin/sh\nexec %s -m fastsync "$@"\n' % shlex.quote(PYTHON))
    shim.chmod(0o755)
    env = dict(os.environ)
    env["PATH"] = "%s%s%s" % (bin_dir, os.pathsep, env.get("PATH", ""))
    return env


def run_script(name: str, cwd: Path, env: dict, **variables: str) -> str:
    """bash examples/<name> with the given environment variables; its stdout."""
    r = subprocess.run(["bash", str(EXAMPLES / name)], cwd=cwd, env={**env, **variables},
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, "%s exited %d:\n%s\n%s" % (name, r.returncode, r.stdout, r.stderr)
    return r.stdout


class Tables:
    """Engines on the test databases; the tables named through them are dropped at the end."""

    def __init__(self):
        self.engines: dict[str, sa.Engine] = {}
        self.made: list[tuple[str, str]] = []

    def engine(self, url: str) -> sa.Engine:
        if url not in self.engines:
            self.engines[url] = sa.create_engine(build_url(url))
        return self.engines[url]

    def name(self, url: str, prefix: str = "ex_") -> str:
        table = unique(prefix)
        self.made.append((url, table))
        return table

    def rows(self, url: str, table: str) -> list[dict]:
        t = sa.Table(table, sa.MetaData(), autoload_with=self.engine(url))
        with self.engine(url).connect() as c:
            return [dict(r._mapping) for r in c.execute(sa.select(t).order_by(t.c.id))]

    def close(self) -> None:
        for url, table in self.made:
            with self.engine(url).begin() as c:
                c.exec_driver_sql("DROP TABLE IF EXISTS %s" % table)
        for e in self.engines.values():
            e.dispose()


@pytest.fixture
def tables():
    t = Tables()
    yield t
    t.close()


@pytest.fixture
def kafka_names():
    """unique(prefix) names for topics and consumer groups, deleted at the end."""
    topics: list[str] = []
    groups: list[str] = []

    def name(kind: str) -> str:
        n = unique("ex-%s-" % kind)
        (topics if kind == "topic" else groups).append(n)
        return n
    yield name
    admin = AdminClient({"bootstrap.servers": BROKERS})
    futures = list((admin.delete_consumer_groups(groups, request_timeout=30) if groups else {}).values())
    futures += (admin.delete_topics(topics, operation_timeout=30) if topics else {}).values()
    for f in futures:
        try:
            f.result()
        except KafkaException as e:    # one a failed test never created is fine
            if e.args[0].code() not in (KafkaError.GROUP_ID_NOT_FOUND, KafkaError.UNKNOWN_TOPIC_OR_PART):
                raise


def expected_orders() -> list[dict]:
    """The rows the scripts' setup SQL creates."""
    import datetime as dt
    return [{"id": i, "customer": None if i % 10 == 0 else "customer-%d" % (i % 97),
             "amount": Decimal(i) * Decimal("1.25"),
             "created": dt.datetime(2026, 1, 1) + dt.timedelta(minutes=i)} for i in range(1, ROWS + 1)]


# -- netcat -> memory -> logger (the Flume user guide's example.conf) ------------------------

def test_netcat_memory_logger_logs_every_line_sent(tmp_path, agent):
    name, port = "netcat-memory-logger.properties", free_port()
    conf = example_copy(tmp_path, name, {"a1.sources.r1.port": port})
    p = agent("a1", conf, argv=header_agent_argv(name, conf))
    p.wait_for_stderr(r"listening on localhost:%d" % port)
    with LineClient(port, host="localhost") as c:
        c.send(b"Hello world!\r\n")
        assert c.read_lines(1) == [b"OK"]
        c.send(b"second line\n")
        assert c.read_lines(1) == [b"OK"]
    # the user guide's output: the body in hex, then as text (at most 16 bytes)
    p.wait_for_stderr(r"Event: \{ headers:\{\} body: 48 65 6C 6C 6F 20 77 6F 72 6C 64 21 0D +Hello world!. \}")
    p.wait_for_stderr(r"Event: \{ headers:\{\} body: 73 65 63 6F 6E 64 20 6C 69 6E 65 +second line \}")
    assert p.stop() == 0, p.stderr[-3000:]


# -- Sqoop-style import and export ------------------------------------------------------------

@pytest.mark.parametrize("script, url", [("postgres-import-export.sh", PG_URL), ("mariadb-import-export.sh", MYSQL_URL)],
                         ids=["postgresql", "mariadb"])
def test_import_then_export_copies_every_row(tmp_path, shell_env, tables, script, url):
    table = tables.name(url)
    tables.made.append((url, table + "_copy"))
    out = run_script(script, tmp_path, shell_env, TABLE=table, DIR="parts")
    assert "imported %d rows from %s into %s (2 splits)" % (ROWS, table, tmp_path / "parts") in out, out
    assert "exported %d rows from 2 files in parts into %s_copy" % (ROWS, table) in out, out
    assert out.splitlines()[-1] == "%s: %d rows, %s_copy: %d rows, 0 rows differ" % (table, ROWS, table, ROWS)
    # checked here too, not only by the script's own SQL
    want = expected_orders()
    assert tables.rows(url, table) == want
    assert tables.rows(url, table + "_copy") == want
    files = sorted((tmp_path / "parts").glob("part-m-*.parquet"))
    assert len(files) == 2
    assert sorted(r["id"] for f in files for r in pq.read_table(f).to_pylist()) == list(range(1, ROWS + 1))


# -- into Kafka, and Kafka -> MariaDB ---------------------------------------------------------

def read_messages(topic: str, group: str, n: int) -> list:
    c = Consumer({"bootstrap.servers": BROKERS, "group.id": group, "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got: list = []
    try:
        poll(lambda: got.extend(m for m in c.consume(1000, 0.5) if m.error() is None) or len(got) >= n,
             60, message="%d messages on %s" % (n, topic))
    finally:
        c.close()
    return got


def test_postgres_to_kafka_sends_every_row_as_a_keyed_json_message(tmp_path, shell_env, tables, kafka_names):
    table, topic = tables.name(PG_URL), kafka_names("topic")
    out = run_script("postgres-to-kafka.sh", tmp_path, shell_env, TABLE=table, TOPIC=topic, BROKERS=BROKERS)
    assert "imported %d rows from %s into kafka topic %s" % (ROWS, table, topic) in out, out
    msgs = read_messages(topic, kafka_names("group"), ROWS)
    assert len(msgs) == ROWS
    got = sorted((json.loads(m.value()) for m in msgs), key=lambda r: r["id"])
    assert [int(m.key()) for m in sorted(msgs, key=lambda m: int(m.key()))] == [r["id"] for r in got]
    assert got == [json_message(r) for r in expected_orders()]


def json_message(row: dict) -> dict:
    """A row as `import --kafka-format json` sends it."""
    return {"id": row["id"], "customer": row["customer"], "amount": str(row["amount"]), "created": row["created"].isoformat()}


def test_kafka_to_mariadb_writes_every_message_as_a_row(tmp_path, tables, kafka_names, agent):
    # the messages postgres-to-kafka.sh sends (the test above checks that it does), produced
    # here directly: the import's run is the slow part and is tested once
    topic, group = kafka_names("topic"), kafka_names("group")
    producer = Producer({"bootstrap.servers": BROKERS})
    for r in expected_orders():
        producer.produce(topic, json.dumps(json_message(r)).encode(), key=str(r["id"]).encode())
    assert producer.flush(30) == 0
    # the setup step of the header: the .sql file through the mariadb client
    table = tables.name(MYSQL_URL)
    sql = (EXAMPLES / "kafka-to-mariadb.sql").read_text()
    assert "example_orders_from_kafka" in sql
    subprocess.run(["mariadb", "-h", "127.0.0.1", "-u", "fastsync", "fastsync"], input=sql.replace("example_orders_from_kafka", table),
                   text=True, check=True, env={**os.environ, "MYSQL_PWD": "fastsync"}, timeout=60)
    name = "kafka-to-mariadb.properties"
    conf = example_copy(tmp_path, name, {"a1.sources.r1.kafka.topics": topic, "a1.sources.r1.kafka.consumer.group.id": group,
                                         "a1.sinks.k1.table.name": table})
    p = agent("a1", conf, argv=header_agent_argv(name, conf))

    def count():
        assert p.alive(), p.stderr[-3000:]
        with tables.engine(MYSQL_URL).connect() as c:
            return c.exec_driver_sql("SELECT count(*) FROM %s" % table).scalar() >= ROWS
    poll(count, 60, interval=0.2, message="%d rows in %s" % (ROWS, table))
    assert p.stop() == 0, p.stderr[-3000:]
    assert tables.rows(MYSQL_URL, table) == expected_orders()


# -- TAILDIR -> file channel -> parquet -------------------------------------------------------

def test_taildir_file_channel_parquet_keeps_every_line(tmp_path, agent):
    name = "taildir-file-parquet.properties"
    conf = example_copy(tmp_path, name, {})
    logs = tmp_path / "out/taildir/logs"
    logs.mkdir(parents=True)
    first = ["line %d" % i for i in range(1, 501)]
    (logs / "app.log").write_text("".join(s + "\n" for s in first))
    p = agent("a1", conf, argv=header_agent_argv(name, conf), cwd=tmp_path)
    p.wait_for_stderr(r"agent a1 started")
    # lines appended while it runs, and a new file
    more = ["line %d" % i for i in range(501, 1001)]
    with open(logs / "app.log", "a") as f:
        f.write("".join(s + "\n" for s in more))
    other = ["other %d" % i for i in range(200)]
    (logs / "other.log").write_text("".join(s + "\n" for s in other))
    sizes = {str(Path("out/taildir/logs") / f): (logs / f).stat().st_size for f in ("app.log", "other.log")}

    def all_read():
        assert p.alive(), p.stderr[-3000:]
        try:
            pos = json.loads((tmp_path / "out/taildir/taildir_position.json").read_text())
        except (OSError, ValueError):
            return False
        return {e["file"]: e["pos"] for e in pos} == sizes
    poll(all_read, 30, interval=0.1, message="positions at the ends of the files")
    assert p.stop() == 0, p.stderr[-3000:]      # closes the open Parquet file
    files = sorted((tmp_path / "out/taildir/parquet").rglob("events.*.parquet"))
    assert files, sorted(p.name for p in (tmp_path / "out").rglob("*"))
    rows = [r for f in files for r in pq.read_table(f).to_pylist()]
    by_file = {}
    for r in rows:
        by_file.setdefault(r["file"], []).append(r["body"])
    assert by_file == {"out/taildir/logs/app.log": first + more, "out/taildir/logs/other.log": other}


# -- Python programs (examples/python/; tests/test_types.py also type-checks each) ----------------

def test_python_agent_from_code_delivers_every_event_and_prints_its_counters(tmp_path):
    """examples/python/agent_from_code.py, run as its header says (from a fresh directory)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(EXAMPLES.parent), os.environ.get("PYTHONPATH")]))}
    p = subprocess.run([PYTHON, str(EXAMPLES / "python/agent_from_code.py")], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert re.fullmatch(r"100000 events delivered in \d+\.\d{3} s", lines[0]), p.stdout
    assert [line.split()[0] for line in lines[1:]] == ["CHANNEL.c1", "SINK.k1", "SOURCE.r1"], p.stdout
    assert "'EventDrainSuccessCount': '100000'" in lines[2], p.stdout
    files = list((tmp_path / "out" / "seq-python").iterdir())
    assert [f.read_bytes() for f in files] == [b"".join(b"%d\n" % i for i in range(100_000))]


def test_python_import_with_api_imports_streams_and_reports_the_cli_error(tmp_path):
    """examples/python/import_with_api.py, run as its header says, into a work directory."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(EXAMPLES.parent), os.environ.get("PYTHONPATH")]))}
    p = subprocess.run([PYTHON, str(EXAMPLES / "python/import_with_api.py"), str(tmp_path / "work")], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert re.search(r"^imported 9979 rows into 2 files \(\d+ bytes\)", p.stdout, re.M), p.stdout
    assert "sum(amount) = 24997500.0" in p.stdout, p.stdout
    assert re.search(r"^error \(exit code 1\): --target-dir .* already exists", p.stdout, re.M), p.stdout
    parts = sorted(f.name for f in (tmp_path / "work" / "orders").glob("part-m-*"))
    assert parts == ["part-m-00000.parquet", "part-m-00001.parquet"], parts


# tests of their own for the examples in subdirectories, which name their files by path
EXAMPLE_TESTS = ["test_examples.py", "test_three_tier.py", "test_zk_config.py", "test_dirtree.py", "test_plugins.py"]


def test_every_example_is_run_by_a_test():
    """A new file in examples/ or a subdirectory of it needs a test here or in one of
    EXAMPLE_TESTS (or is the demo's, which scripts/demo.sh and tests/test_agent_cli.py run)."""
    tests = "".join((Path(__file__).parent / name).read_text() for name in EXAMPLE_TESTS)
    demo = (EXAMPLES.parent / "scripts/demo.sh").read_text()
    untested = [name for name in (p.relative_to(EXAMPLES).as_posix() for p in sorted(EXAMPLES.rglob("*")) if p.is_file())
                if name not in tests and name not in demo]
    assert not untested, "examples without a test in tests/%s: %s" % (" or ".join(EXAMPLE_TESTS), untested)
