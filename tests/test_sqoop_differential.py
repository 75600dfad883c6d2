"""The same Sqoop 1.4.7 command line run by the real Sqoop (tests/sqoop_support.py: Hadoop
2.6.5 local mode, Java 17) and by `fastsync import`, on tables of every common type of
PostgreSQL and MariaDB: the text part files must be the same bytes, in Sqoop's default mode
and in its enclosed / escaped modes (NULL string included).

Four Sqoop runs in all (its JVM and codegen are the cost): each database's values in the
default mode, and one escaping mode each; the table whole (-m 1) or in two splits on the
key (-m 2), as fastsync does with the same flags."""
import concurrent.futures
import datetime
import decimal
import os
import subprocess
import sys

import psycopg
import pymysql
import pytest

from e2e_support import drop_tables
from sqoop_support import jdbc, run_sqoop

PG_URL = os.environ.get("FASTSYNC_TEST_PG_URL", "postgresql://fastsync:fastsync@127.0.0.1:5432/fastsync")
MYSQL_URL = os.environ.get("FASTSYNC_TEST_MYSQL_URL", "mysql://fastsync:fastsync@127.0.0.1:3306/fastsync")
TABLE = "sqoopdiff_%d" % os.getpid()
# what a client in another zone sees: Sqoop's JVM writes timestamptz in its zone (TZ)
ZONE = "America/New_York"

# values that meet every escaping rule: delimiters, quotes, the escape, the NULL string's text
STRINGS = ["plain", "a,b", 'say "hi"', "back\\slash", "null", "tab\there", "pipe|bar", "", "caf\u00e9 \u2603",
           "'single'", "\\N", "new\nline"]

PG_DDL = """CREATE TABLE {t} (
  id int PRIMARY KEY, i2 smallint, i4 integer, i8 bigint, f4 real, f8 double precision,
  num numeric(20, 4), numx numeric, b boolean, c char(5), vc varchar(40), t text, by bytea,
  d date, tm time, ts timestamp, tstz timestamptz)"""
PG_ROWS = [
    (1, -32768, 2147483647, -9223372036854775808, 1 / 7, 1.0, decimal.Decimal("1234567890123456.5"),
     decimal.Decimal("3.14159265358979323846"), True, "ab", STRINGS[0], STRINGS[1], b"\xde\xad\xbe\xef",
     datetime.date(2020, 2, 29), datetime.time(23, 59, 59, 999999), datetime.datetime(2020, 1, 1),
     datetime.datetime(2010, 6, 1, 12, 0, 13, 500000, tzinfo=datetime.timezone.utc)),
    (2, 0, 0, 0, 3.4e38, 2.5e-7, decimal.Decimal("0"), decimal.Decimal("-0.001"), False, "abcde", STRINGS[2],
     STRINGS[3], b"", datetime.date(1999, 12, 31), datetime.time(0, 0), datetime.datetime(2020, 1, 1, 0, 0, 0, 123456),
     datetime.datetime(2026, 1, 15, 23, 30, tzinfo=datetime.timezone.utc)),
    (3, None, None, None, float("nan"), float("inf"), None, None, None, None, None, None, None, None, None, None, None),
    (4, 1, -1, 9007199254740993, -0.0, float("-inf"), decimal.Decimal("-99.9900"), decimal.Decimal("1E+5"), True,
     None, STRINGS[4], STRINGS[5], b"\x00\x0a\xff", datetime.date(1970, 1, 1), datetime.time(12, 0, 0, 500000),
     datetime.datetime(1969, 12, 31, 23, 59, 59, 990000), datetime.datetime(2000, 2, 29, 0, 0, 0, 1, tzinfo=datetime.timezone.utc)),
    (5, 7, 8, 9, 1e-4, 1e7, decimal.Decimal("0.0001"), decimal.Decimal("123"), False, "x", STRINGS[6], STRINGS[7],
     b"a,b", None, None, None, None),
    (6, 2, 3, 4, 123456.7, 1e-3, None, None, None, ",", STRINGS[8], STRINGS[9], None, None, None,
     datetime.datetime(2021, 7, 4, 1, 2, 3, 450000), None),
    (7, 5, 6, 7, 0.1, 0.1 + 0.2, None, None, None, "\\", STRINGS[10], STRINGS[11], None, None, None, None, None),
    (8, 9, 9, 9, 16777216.0, 9999999.999, None, None, None, '"', '"quoted"', "x,\"y\"\\z", None, None, None, None, None),
]

MY_DDL = """CREATE TABLE {t} (
  id int PRIMARY KEY, flag tinyint(1), ti tinyint, si smallint, mi mediumint, i int, bi bigint,
  ubi bigint unsigned, f float, db double, dec1 decimal(10, 3), bt bit(1), c char(5), vc varchar(40), tx text,
  d date, dt datetime, dt6 datetime(6), ts timestamp NULL, tm time, y year, bl blob, vb varbinary(10),
  en enum('sad', 'happy'))"""
MY_ROWS = [
    (1, 1, -128, -32768, -8388608, -2147483648, -9223372036854775808, 0, 1 / 7, 1.0, decimal.Decimal("1.5"), 1,
     "ab", STRINGS[0], STRINGS[1], datetime.date(2020, 2, 29), datetime.datetime(2020, 1, 1),
     datetime.datetime(2020, 1, 1, 0, 0, 0, 123456), datetime.datetime(2010, 6, 1, 12, 0, 13),
     datetime.timedelta(hours=23, minutes=59, seconds=59), 2024, b"\xde\xad\xbe\xef", b"\x00\x01", "happy"),
    (2, 0, 127, 32767, 8388607, 2147483647, 9223372036854775807, 9223372036854775807, 3.4e38, 2.5e-7,
     decimal.Decimal("-0.001"), 0, "abcde", STRINGS[2], STRINGS[3], datetime.date(1999, 12, 31),
     datetime.datetime(1999, 12, 31, 23, 59, 59), datetime.datetime(2021, 7, 4, 1, 2, 3, 450000),
     datetime.datetime(2038, 1, 19, 3, 14, 7), datetime.timedelta(0), 1999, b"", b"a,b", "sad"),
    (3,) + (None,) * 23,
    (4, 1, 0, 0, 0, 0, 0, 1, -0.5, float("1e300"), decimal.Decimal("9999999.999"), 1, None, STRINGS[4], STRINGS[5],
     datetime.date(1970, 1, 1), datetime.datetime(2000, 2, 29, 12, 30), datetime.datetime(2000, 1, 1, 0, 0, 0, 1),
     None, datetime.timedelta(hours=12, seconds=5), 1901, b"\x00\x0a\xff", None, None),
    (5, 0, 1, 2, 3, 4, 5, 6, 1e-4, 1e7, decimal.Decimal("0.000"), 0, ",", STRINGS[6], STRINGS[7], None, None, None,
     None, None, None, None, None, "happy"),
    (6, None, 2, 3, 4, 5, 6, 7, 123456.7, 1e-3, None, None, "x", STRINGS[8], STRINGS[9], None, None, None, None, None,
     None, None, None, None),
    (7, 1, 3, 4, 5, 6, 7, 8, 0.1, 0.1 + 0.2, None, None, "\\", STRINGS[10], STRINGS[11], None, None, None, None, None,
     None, None, None, None),
    (8, 0, 4, 5, 6, 7, 8, 9, 16777216.0, 9999999.999, None, None, '"', '"quoted"', "x,\"y\"\\z", None, None, None, None,
     None, None, None, None, None),
]

# Sqoop command lines (after --connect/--table/--target-dir): the values of each database in
# the default mode, the escaping rules (the same code for every database) in one mode each
MODES = {
    "default": ["-m", "1"],
    "enclosed-escaped": ["-m", "2", "--enclosed-by", '"', "--escaped-by", "\\\\", "--fields-terminated-by", "|"],
    "optional-nullstring": ["-m", "1", "--optionally-enclosed-by", '"', "--escaped-by", "\\\\", "--null-string", "\\\\N",
                            "--null-non-string", "\\\\N", "--fields-terminated-by", "\\t"],
}
RUNS = {"postgresql": (PG_URL, ["default", "enclosed-escaped"]), "mariadb": (MYSQL_URL, ["default", "optional-nullstring"])}


@pytest.fixture(scope="module")
def tables():
    with psycopg.connect(PG_URL) as conn:
        conn.execute("DROP TABLE IF EXISTS %s" % TABLE)
        conn.execute(PG_DDL.format(t=TABLE))
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO %s VALUES (%s)" % (TABLE, ", ".join(["%s"] * len(PG_ROWS[0]))), PG_ROWS)
    my = pymysql.connect(host="127.0.0.1", port=3306, user="fastsync", password="fastsync", database="fastsync",
                         autocommit=True)
    try:
        with my.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS %s" % TABLE)
            cur.execute(MY_DDL.format(t=TABLE))
            cur.executemany("INSERT INTO %s VALUES (%s)" % (TABLE, ", ".join(["%s"] * len(MY_ROWS[0]))), MY_ROWS)
    finally:
        my.close()
    yield
    drop_tables(PG_URL, TABLE)
    drop_tables(MYSQL_URL, TABLE)


def _parts(directory):
    return {p: open(os.path.join(directory, p), "rb").read() for p in sorted(os.listdir(directory))
            if not p.startswith((".", "_"))}


def _differences(mode, theirs, ours):
    if sorted(ours) != sorted(theirs):
        return ["%s: part files %s from Sqoop, %s from fastsync" % (mode, sorted(theirs), sorted(ours))]
    out = []
    for name in theirs:
        if ours[name] != theirs[name]:
            out += ["%s %s line %d:\n  sqoop    %r\n  fastsync %r" % (mode, name, i + 1, a, b)
                    for i, (a, b) in enumerate(zip(theirs[name].split(b"\n"), ours[name].split(b"\n"))) if a != b]
            out.append("%s %s: %d bytes from Sqoop, %d from fastsync" % (mode, name, len(theirs[name]), len(ours[name])))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("db", list(RUNS))
def test_text_import_is_byte_identical_to_sqoop(tmp_path, tables, db):
    url, modes = RUNS[db]
    connect, user, password = jdbc(url)

    def both(mode):
        """The mode's Sqoop run and fastsync run, side by side: (Sqoop's parts, fastsync's)."""
        common = ["--connect", connect, "--username", user, "--password", password, "--table", TABLE,
                  "--split-by", "id", *MODES[mode]]
        sqoop_dir, ours_dir = tmp_path / ("sqoop-" + mode), tmp_path / ("fastsync-" + mode)
        ours = subprocess.Popen([sys.executable, "-m", "fastsync", "import", *common, "--target-dir", str(ours_dir)],
                                stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env={**os.environ, "TZ": ZONE})
        try:
            run_sqoop("import", *common, "--target-dir", str(sqoop_dir), workdir=tmp_path / ("work-" + mode), tz=ZONE)
        finally:
            _, err = ours.communicate(timeout=300)
        assert ours.returncode == 0, err
        return _parts(sqoop_dir), _parts(ours_dir)

    # the modes' runs at once: a Sqoop run mostly waits on its JVM's start and codegen
    with concurrent.futures.ThreadPoolExecutor(len(modes)) as pool:
        results = dict(zip(modes, pool.map(both, modes)))
    differences = [d for mode, (theirs, ours) in results.items() for d in _differences(mode, theirs, ours)]
    assert not differences, "\n".join(differences)


JAVA_TO_STRING = """
import java.io.*;
public class ToString { public static void main(String[] a) throws Exception {
  BufferedReader r = new BufferedReader(new InputStreamReader(System.in));
  StringBuilder sb = new StringBuilder();
  for (String l; (l = r.readLine()) != null; ) {
    long bits = Long.parseUnsignedLong(l.substring(2), 16);
    sb.append(l.startsWith("d ") ? Double.toString(Double.longBitsToDouble(bits))
                                 : Float.toString(Float.intBitsToFloat((int) bits))).append('\\n');
  }
  System.out.print(sb);
} }
"""


@pytest.mark.slow
def test_floats_are_written_as_javas_to_string(tmp_path):
    """Sqoop writes a double with Double.toString and a real with Float.toString: the machine's
    Java prints 31 k random values of every magnitude, fastsync's text must be the same (Java
    8-17's digits: integers below 2**63 exactly, e.g. the float 2.03091857E12). Past 1e22
    (doubles) and 1e23 (floats) Java's older algorithm picks another last digit for about one
    value in a thousand: not compared (docs/compatibility/sqoop.md)."""
    import random
    import struct

    import numpy as np
    import pyarrow as pa

    from fastsync.transfer.textfile import sqoop_text
    rnd = random.Random(7)
    doubles = [rnd.uniform(-1, 1) * 10 ** rnd.randint(-300, 22) for _ in range(10000)]
    doubles += [float(rnd.randint(-2 ** 62, 2 ** 62)) for _ in range(3000)] + [rnd.uniform(-1e7, 1e7) for _ in range(3000)]
    doubles += [0.0, -0.0, float("nan"), float("inf"), float("-inf"), 1e7, 9999999.999999999, 1e-3, 0.000999999, 5e-324, -5e-324]
    floats = [float(np.float32(rnd.uniform(-1, 1) * 10 ** rnd.randint(-40, 23))) for _ in range(10000)]
    floats += [float(np.float32(rnd.randint(-2 ** 40, 2 ** 40))) for _ in range(5000)] + [1 / 7, 3.4e38 / 1e15, 0.1, 1.401298464324817e-45]
    (tmp_path / "ToString.java").write_text(JAVA_TO_STRING)
    subprocess.run(["javac", "-d", str(tmp_path), str(tmp_path / "ToString.java")], check=True, timeout=120)
    lines = ["d %016x" % struct.unpack("<Q", struct.pack("<d", d))[0] for d in doubles]
    lines += ["f %08x" % struct.unpack("<I", struct.pack("<f", f))[0] for f in floats]
    java = subprocess.run(["java", "-cp", str(tmp_path), "ToString"], input="\n".join(lines) + "\n",
                          capture_output=True, text=True, check=True, timeout=120).stdout.splitlines()
    ours = sqoop_text(pa.array(doubles, pa.float64())).to_pylist() + sqoop_text(pa.array(floats, pa.float64()), "float32").to_pylist()
    wrong = [(v, j, o) for v, j, o in zip(doubles + floats, java, ours) if j != o]
    assert len(java) == len(ours) and not wrong, "%d of %d differ, e.g. %s" % (len(wrong), len(ours), wrong[:5])
