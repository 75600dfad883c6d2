"""`fastsync export` under real faults, against the real PostgreSQL and MariaDB servers (no
mocks): the export's database connections killed by the server (`pg_terminate_backend`,
`KILL CONNECTION`) while the writers load the staging table and while the rows are moved,
and the export process itself killed with SIGKILL. Whatever happens the target must be
exactly as it was (compared with a copy filled alike before the export).

Also round trips of the types the first export tests did not try: PostgreSQL time with
time zone and unconstrained numeric, MariaDB BIT(n) and SET.

Faults are timed by polling the server for the export's own connections (matched by the
client ports the export process holds), never by sleeping a fixed time."""
import datetime
import decimal
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from test_export import cleanup, engine_for, insert, leftover_stage, name, ok, sql, tables_equal
from test_import import fastsync
from test_import_types import MYSQL_URL, PG_URL

D = decimal.Decimal
DB = {"pg": PG_URL, "mysql": MYSQL_URL}
DDL = "(id int PRIMARY KEY, vc varchar(60) NOT NULL, n numeric(12, 2), d date, f double precision)"
FILES, ROWS_PER_FILE = 4, 100_000        # enough that loading takes seconds on either path
DEADLINE = 240                           # seconds; the machine may be loaded


@pytest.fixture(scope="module")
def part_files(tmp_path_factory):
    """FILES Parquet part files (as import writes them) of ROWS_PER_FILE rows each."""
    out = tmp_path_factory.mktemp("faults") / "out"
    out.mkdir()
    for k in range(FILES):
        ids = pa.array(range(k * ROWS_PER_FILE, (k + 1) * ROWS_PER_FILE), pa.int64())
        n = len(ids)
        pq.write_table(pa.table({
            "id": ids,
            "vc": pa.array(["row %d \u00e9 %s" % (i, "x" * (i % 17)) for i in range(k * n, (k + 1) * n)]),
            "n": pa.array([D(i % 100000) / 100 for i in range(n)], pa.decimal128(12, 2)),
            "d": pa.array([datetime.date(2000, 1, 1) + datetime.timedelta(days=i % 9000) for i in range(n)], pa.date32()),
            "f": pa.array([i / 7 for i in range(n)], pa.float64()),
        }), out / ("part-m-%05d.parquet" % k), row_group_size=20_000)
    return out


def local_ports(pid):
    """The local TCP ports of the sockets process `pid` holds (from /proc)."""
    inodes = set()
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
        ports = set()
        for table in ("tcp", "tcp6"):
            with open("/proc/%d/net/%s" % (pid, table)) as f:
                for line in f.readlines()[1:]:
                    parts = line.split()
                    if parts[9] in inodes:
                        ports.add(int(parts[1].rsplit(":", 1)[1], 16))
        return ports
    except FileNotFoundError:          # the process is gone
        return set()


def sessions(db, ports):
    """[(session id, what it runs or None)] of the server sessions whose client port is one of `ports`."""
    if not ports:
        return []
    if db == "pg":
        return [(r[0], r[1]) for r in sql(PG_URL, "SELECT pid, CASE WHEN state = 'active' THEN query END FROM pg_stat_activity "
                                                  "WHERE client_port IN (%s)" % ", ".join(map(str, ports)))]
    # HOST is "localhost:PORT" or "127.0.0.1:PORT" (as the server resolved the loopback address)
    ports_in = ", ".join(map(str, ports))
    return [(r[0], r[1]) for r in sql(MYSQL_URL, "SELECT ID, INFO FROM information_schema.PROCESSLIST "
                                                 "WHERE SUBSTRING_INDEX(HOST, ':', -1) IN (%s)" % ports_in)]


def kill_sessions(db, ids):
    for i in ids:
        if db == "pg":
            sql(PG_URL, "SELECT pg_terminate_backend(%d)" % i)
        else:
            try:
                sql(MYSQL_URL, "KILL CONNECTION %d" % i)
            except Exception as exc:           # it ended on its own meanwhile
                assert "Unknown thread id" in str(exc), exc


def start_export(url, table, export_dir, *args):
    return subprocess.Popen([sys.executable, "-m", "fastsync", "export", "--connect", url, "--table", table,
                             "--export-dir", str(export_dir), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(proc, db, pattern):
    """Poll the server until one of `proc`'s sessions runs a statement matching `pattern`
    (a regex): [all of its session ids]. Fails if the export ends first."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail("the export ended (exit %s) before it ran %r: %s %s" % (proc.returncode, pattern, out, err))
        found = sessions(db, local_ports(proc.pid))
        if any(q and re.match(pattern, q, re.I | re.S) for _, q in found):
            return [i for i, _ in found]
        time.sleep(0.02)
    proc.kill()
    pytest.fail("no statement like %r within %d s" % (pattern, DEADLINE))


def finish(proc):
    try:
        out, err = proc.communicate(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return proc.returncode, out, err


def prefilled(url, n=3):
    """A target and a copy of it, both with the same few rows."""
    dst, before = name("dst"), name("before")
    sql(url, "CREATE TABLE %s %s" % (dst, DDL), "CREATE TABLE %s %s" % (before, DDL))
    rows = [dict(id=-i, vc="keep %d" % i, n=D("1.50"), d=datetime.date(1999, 1, i), f=0.5) for i in range(1, n + 1)]
    insert(url, dst, rows)
    insert(url, before, rows)
    return dst, before


# what the drivers say when the server killed the connection (psycopg, over TLS too; PyMySQL)
KILLED = re.compile(r"terminating connection due to administrator command|server closed the connection|"
                    r"SSL connection has been closed unexpectedly|"
                    r"Lost connection to (MySQL|MariaDB) server|server has gone away|Connection was killed|"
                    r"connection (is )?(closed|lost)|Query execution was interrupted", re.I)


def one_error_line(err, dst):
    lines = [l for l in err.splitlines() if l.startswith("fastsync: error:")]
    assert len(lines) == 1 and err.rstrip().endswith(lines[0]), err
    assert "Traceback" not in err and " ERROR " not in err, err        # nothing else logged about it
    assert lines[0].startswith("fastsync: error: export into %s failed: " % dst), err
    return lines[0]


# -- the database connections killed while the staging table loads --------------------------------------

@pytest.mark.parametrize("db", ["pg", "mysql"])
def test_connections_killed_while_loading_leave_the_target_as_it_was(part_files, db):
    url = DB[db]
    dst, before = prefilled(url)
    try:
        proc = start_export(url, dst, part_files, "-m", 2)
        # PostgreSQL: a COPY into the staging table; MariaDB: LOAD DATA (or, without local_infile, INSERT) into it
        loading = r"\s*(COPY|LOAD DATA LOCAL INFILE .* INTO TABLE|INSERT INTO)\s+\S*%s_stage_" % dst
        ids = wait_for(proc, db, loading)
        kill_sessions(db, ids)
        code, out, err = finish(proc)
        assert code == 1, (code, out, err)
        line = one_error_line(err, dst)
        assert KILLED.search(line), line
        assert "exported" not in out
        tables_equal(url, dst, before)
        assert not leftover_stage(url, dst), err          # dropped over a new connection
    finally:
        cleanup(url, dst, before, *leftover_stage(url, dst))


# -- the connection killed while the rows are moved into the target ----------------------------------------

SLOW_MOVE = {
    # a statement trigger that keeps the move's INSERT busy long enough to be seen and killed
    "pg": ["CREATE FUNCTION {t}_slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(120); RETURN NULL; END $$",
           "CREATE TRIGGER {t}_slow BEFORE INSERT ON {t} FOR EACH STATEMENT EXECUTE FUNCTION {t}_slow()"],
    "mysql": ["CREATE TRIGGER {t}_slow BEFORE INSERT ON {t} FOR EACH ROW BEGIN "
              "IF @fastsync_slept IS NULL THEN SET @fastsync_slept = 1; DO SLEEP(120); END IF; END"],
}


@pytest.mark.parametrize("db", ["pg", "mysql"])
def test_connection_killed_while_moving_leaves_the_target_as_it_was(tmp_path, db):
    url = DB[db]
    dst, before = prefilled(url)
    try:
        sql(url, *(s.format(t=dst) for s in SLOW_MOVE[db]))
        src = tmp_path / "out"
        src.mkdir()
        pq.write_table(pa.table({"id": pa.array(range(1, 2001), pa.int64()), "vc": pa.array(["v%d" % i for i in range(2000)])}),
                       src / "part-m-00000.parquet")
        proc = start_export(url, dst, src, "-m", 2)
        # (MariaDB shows the statement of the trigger the move is in)
        ids = wait_for(proc, db, r"\s*(INSERT INTO\s+\S*%s\S*\s*\(.*SELECT .* FROM \S*%s_stage_|DO SLEEP\(120\))" % (dst, dst))
        kill_sessions(db, ids)
        code, out, err = finish(proc)
        assert code == 1, (code, out, err)
        line = one_error_line(err, dst)
        assert re.search(r"failed: moving the rows from \S+ into %s: " % dst, line) and KILLED.search(line), line
        tables_equal(url, dst, before)
        assert not leftover_stage(url, dst), err
    finally:
        if db == "pg":
            sql(url, "DROP TABLE IF EXISTS %s" % dst, "DROP FUNCTION IF EXISTS %s_slow()" % dst)
        cleanup(url, dst, before, *leftover_stage(url, dst))


@pytest.mark.parametrize("db", ["pg", "mysql"])
def test_connection_killed_while_dropping_the_staging_table_drops_it_over_a_new_one(tmp_path, db):
    """The move killed (as above), then the DROP of the staging table killed too while it
    waits for a lock this test holds on that table: the export drops it over a new connection."""
    url = DB[db]
    dst, before = prefilled(url)
    engine = engine_for(url)
    try:
        sql(url, *(s.format(t=dst) for s in SLOW_MOVE[db]))
        src = tmp_path / "out"
        src.mkdir()
        pq.write_table(pa.table({"id": pa.array(range(1, 101), pa.int64()), "vc": pa.array(["v%d" % i for i in range(100)])}),
                       src / "part-m-00000.parquet")
        proc = start_export(url, dst, src)
        ids = wait_for(proc, db, r"\s*(INSERT INTO\s+\S*%s\S*\s*\(.*SELECT .* FROM \S*%s_stage_|DO SLEEP\(120\))" % (dst, dst))
        stage, = leftover_stage(url, dst)
        with engine.connect() as holder:
            # a lock on it until released below (MariaDB: the staging table is MyISAM, whose
            # metadata lock a plain read in a transaction does not keep)
            holder.execute(sa.text("SELECT COUNT(*) FROM %s" % stage if db == "pg" else "LOCK TABLES %s READ" % stage))
            kill_sessions(db, ids)
            for _ in range(2):     # the DROP, then the DROP over a new connection, each waiting for the lock
                ids = wait_for(proc, db, r"\s*DROP TABLE\s+\S*%s" % stage)
                assert stage in leftover_stage(url, dst)
                if _ == 0:
                    kill_sessions(db, ids)
            holder.rollback() if db == "pg" else holder.execute(sa.text("UNLOCK TABLES"))
        code, out, err = finish(proc)
        assert code == 1, (code, out, err)
        assert "moving the rows from %s into %s: " % (stage, dst) in one_error_line(err, dst)
        assert "could not drop" not in err, err
        tables_equal(url, dst, before)
        assert not leftover_stage(url, dst), err
    finally:
        engine.dispose()
        if db == "pg":
            sql(url, "DROP TABLE IF EXISTS %s" % dst, "DROP FUNCTION IF EXISTS %s_slow()" % dst)
        cleanup(url, dst, before, *leftover_stage(url, dst))


# -- the export process killed -----------------------------------------------------------------------------

@pytest.mark.parametrize("db", ["pg", "mysql"])
@pytest.mark.slow
def test_export_killed_with_sigkill_leaves_the_target_as_it_was(part_files, db):
    url = DB[db]
    dst, before = prefilled(url)
    try:
        proc = start_export(url, dst, part_files, "-m", 2)
        wait_for(proc, db, r"\s*(COPY|LOAD DATA LOCAL INFILE .* INTO TABLE|INSERT INTO)\s+\S*%s_stage_" % dst)
        proc.send_signal(signal.SIGKILL)
        assert finish(proc)[0] == -signal.SIGKILL
        tables_equal(url, dst, before)
        # the process could not drop its staging tables (one per part file being loaded): they
        # stay, with what was loaded into them (PostgreSQL: nothing committed; MyISAM keeps it)
        left = leftover_stage(url, dst)
        assert 1 <= len(left) <= 2, left
        if db == "pg":
            assert all(sql(url, "SELECT COUNT(*) FROM %s" % t)[0][0] == 0 for t in left)
        # the next export of the table is not confused by it (its own staging table has a new name)
        out = ok(fastsync("export", "--connect", url, "--table", dst, "--export-dir", part_files, "-m", 2))
        assert "exported %d rows" % (FILES * ROWS_PER_FILE) in out.stdout
        assert sql(url, "SELECT COUNT(*) FROM %s" % dst)[0][0] == FILES * ROWS_PER_FILE + 3
        assert leftover_stage(url, dst) == left
    finally:
        cleanup(url, dst, before, *leftover_stage(url, dst))


# -- types not tried before ------------------------------------------------------------------------------

def test_postgresql_timetz_and_unconstrained_numeric_round_trip(tmp_path):
    ddl = "(id int PRIMARY KEY, tz timetz, tz0 time(0) with time zone, n numeric)"
    src, dst = name("src"), name("dst")
    sql(PG_URL, "CREATE TABLE %s %s" % (src, ddl), "CREATE TABLE %s %s" % (dst, ddl))
    try:
        sql(PG_URL, "INSERT INTO %s VALUES "
            "(1, '23:59:59.999999+14', '00:00:00-12', 1.5),"
            "(2, '12:00:00+05:30', '01:02:03+00', 123456789012345678901234567890.123456789012345678901234567890),"
            "(3, '00:00:00.000001-05:45:30', NULL, -0.000000000000000000000000000000000000001),"
            "(4, NULL, NULL, NULL),"
            "(5, '10:00+00', '10:00+01', 1e29),"
            "(6, '00:00:00+00', '23:59:59-14:59', 0)" % src)   # 24:00:00 fails the import, as for time
        ok(fastsync("import", "--connect", PG_URL, "--table", src, "-m", 2, "--target-dir", tmp_path / "out"))
        ok(fastsync("export", "--connect", PG_URL, "--table", dst, "--export-dir", tmp_path / "out", "-m", 2))
        # the offsets kept: 12:00+05:30 is not 12:00+00 (timetz `=` also compares the zone)
        tables_equal(PG_URL, src, dst)
        tables_equal(PG_URL, src, dst, "id, tz::text, tz0::text")
        # numeric: the same numbers; import writes a batch with the largest scale in it, so
        # the display scale of the smaller ones grows (1.5 comes back as 1.500...)
        assert sql(PG_URL, "SELECT n::text FROM %s WHERE id = 1" % dst)[0][0].startswith("1.500")
    finally:
        cleanup(PG_URL, src, dst)


@pytest.mark.slow
def test_mariadb_bit_and_set_round_trip(tmp_path):
    ddl = "(id int PRIMARY KEY, b1 BIT(1), b8 BIT(8), b13 BIT(13), b64 BIT(64), s SET('a', 'b', 'c', 'd e'))"
    src, dst = name("src"), name("dst")
    sql(MYSQL_URL, "CREATE TABLE %s %s" % (src, ddl), "CREATE TABLE %s %s" % (dst, ddl))
    try:
        sql(MYSQL_URL, "INSERT INTO %s VALUES (1, b'1', b'11111111', b'1000000000001', 18446744073709551615, 'd e,a'),"
            "(2, 0, 0, 0, 0, ''), (3, NULL, NULL, NULL, NULL, NULL), (4, 1, 128, 4096, 9223372036854775808, 'a,b,c,d e'),"
            "(5, 0, 1, 1, 1, 'c')" % src)
        ok(fastsync("import", "--connect", MYSQL_URL, "--table", src, "-m", 2, "--target-dir", tmp_path / "out"))
        assert pq.read_table(tmp_path / "out").schema.field("b64").type == pa.uint64()
        out = ok(fastsync("export", "--connect", MYSQL_URL, "--table", dst, "--export-dir", tmp_path / "out", "-m", 2,
                          "--log-level", "INFO"))
        assert "column b1 is BIT, which LOAD DATA can't take as a number: multi-row inserts" in out.stderr
        tables_equal(MYSQL_URL, src, dst)
        tables_equal(MYSQL_URL, src, dst, "id, HEX(b1), HEX(b8), HEX(b13), HEX(b64), s")
        # SET alone takes LOAD DATA
        sql(MYSQL_URL, "DELETE FROM %s" % dst)
        out = ok(fastsync("export", "--connect", MYSQL_URL, "--table", dst, "--export-dir", tmp_path / "out",
                          "--columns", "id,s", "--log-level", "INFO"))
        assert "loading the staging table with load data" in out.stderr, out.stderr
        tables_equal(MYSQL_URL, src, dst, "id, s")
    finally:
        cleanup(MYSQL_URL, src, dst)


# -- a hostile server ------------------------------------------------------------------------------------

def _packet(seq, payload):
    return struct.pack("<I", len(payload))[:3] + bytes([seq]) + payload


class FakeMySQL:
    """A MySQL server on loopback (handshake, OK) that answers every statement but SET with
    a LOCAL INFILE request for `wanted`, and keeps every byte its clients send."""

    def __init__(self, wanted: str):
        self.wanted = wanted.encode()
        self.received = bytearray()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(c,), daemon=True).start()

    def _recv(self, c, n):
        data = b""
        while len(data) < n:
            chunk = c.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        self.received += data
        return data

    def _read(self, c):
        head = self._recv(c, 4)
        return head[3], self._recv(c, int.from_bytes(head[:3], "little"))

    def _session(self, c):
        caps = 0x1 | 0x8 | 0x80 | 0x200 | 0x2000 | 0x8000 | 0x80000   # LOCAL_FILES, PROTOCOL_41, PLUGIN_AUTH, ...
        salt = b"abcdefghijklmnopqrst"
        hello = (b"\x0a5.7.99-fake\x00" + struct.pack("<I", 7) + salt[:8] + b"\x00" + struct.pack("<H", caps & 0xFFFF)
                 + b"\x21" + struct.pack("<HH", 2, caps >> 16) + bytes([21]) + b"\x00" * 10 + salt[8:] + b"\x00"
                 + b"mysql_native_password\x00")

        def ok(seq):
            return _packet(seq, b"\x00\x00\x00\x02\x00\x00\x00")
        try:
            c.sendall(_packet(0, hello))
            seq, _ = self._read(c)                         # the handshake response
            c.sendall(ok(seq + 1))
            while True:
                seq, body = self._read(c)
                if body[:1] == b"\x01":                    # COM_QUIT
                    return
                if body[:1] != b"\x03" or body[1:4].upper() == b"SET":   # ping, SET NAMES (read as one packet)
                    c.sendall(ok(seq + 1))
                    continue
                c.sendall(_packet(seq + 1, b"\xfb" + self.wanted))
                while self._read(c)[1]:                    # the file, up to an empty packet
                    pass
                c.sendall(ok(seq + 1))
        except (EOFError, OSError):
            pass
        finally:
            c.close()


def test_export_sends_a_hostile_server_no_file_but_its_own(tmp_path):
    """PyMySQL with local_infile answers any LOCAL INFILE request: a server that asks for
    another file than the export's own LOAD DATA names gets nothing, the export fails."""
    canary = tmp_path / "canary.txt"
    canary.write_text("CANARY-%s\n" % uuid.uuid4().hex)
    server = FakeMySQL(str(canary))
    (tmp_path / "in").mkdir()
    pq.write_table(pa.table({"id": pa.array([1, 2], pa.int32())}), tmp_path / "in" / "part-m-00000.parquet")
    try:
        out = fastsync("export", "--connect", "mysql://u:p@127.0.0.1:%d/d" % server.port, "--table", "t",
                       "--export-dir", tmp_path / "in")
    finally:
        server.sock.close()
    line = out.stderr.strip()
    assert out.returncode == 1 and "\n" not in line, out.stderr
    assert "the server asked for the local file %r, which no LOAD DATA of this export names: refused" % str(canary) in line
    assert canary.read_bytes().strip() not in server.received
