"""The generic import path's interval and time loaders (fastsync.transfer.pgvalues) against
psycopg's own, on a real PostgreSQL: the same values wherever psycopg's are right, an
OutOfRange marker where the Arrow type cannot hold the value."""
import os
import random

import psycopg
import pytest

from fastsync.transfer.pgvalues import OutOfRange, out_of_range, use_loaders

PG_URL = os.environ.get("FASTSYNC_TEST_PG_URL", "postgresql://fastsync:fastsync@127.0.0.1:5432/fastsync")


@pytest.fixture
def conns():
    with psycopg.connect(PG_URL, autocommit=True) as theirs, psycopg.connect(PG_URL, autocommit=True) as ours:
        use_loaders(ours)
        yield theirs, ours


def both(conns, sql, params=None):
    theirs, ours = conns
    return theirs.execute(sql, params).fetchall(), ours.execute(sql, params).fetchall()


def test_in_range_intervals_and_times_load_as_psycopg_loads_them(conns):
    rng = random.Random(5)
    intervals = ["0", "1 mon -30 days", "-1 year -1 mon", "13 mons 2 days 00:00:00.000001", "-00:00:00.000001",
                 "-1 days +00:00:00.5", "1 day -25:00:00", "-100:00:00.25", "2562047788:00:54.775807", "-106751991 days"]
    intervals += ["%d mons %d days %d microseconds" % (rng.randint(-3 * 10**6, 3 * 10**6), rng.randint(-10**7, 10**7),
                                                       rng.randint(-10**16, 10**16)) for _ in range(2000)]
    times = ["00:00:00", "23:59:59.999999", "12:00:00.5"] + ["%02d:%02d:%02d.%06d" % (
        rng.randrange(24), rng.randrange(60), rng.randrange(60), rng.randrange(10**6)) for _ in range(1000)]
    for sql, values in (("SELECT v::interval FROM unnest(%s::text[]) v", intervals),
                        ("SELECT array_agg(v::interval) FROM unnest(%s::text[]) v", intervals),
                        ("SELECT v::time FROM unnest(%s::text[]) v", times),
                        ("SELECT array_agg(v::time) FROM unnest(%s::text[]) v", times)):
        theirs, ours = both(conns, sql, (values,))
        assert theirs == ours and len(theirs) in (1, len(values))


@pytest.mark.parametrize("sql, what", [
    ("SELECT '24:00:00'::time", "time"),
    ("SELECT '{12:00, 24:00}'::time[]", "time"),
    ("SELECT '106751991 days 04:00:54.775808'::interval", "interval"),
    ("SELECT '-106751991 days -00:00:00.000001'::interval", "interval"),
    ("SELECT '{1 day, 2147483647 days}'::interval[]", "interval"),
    ("SELECT '{{1,2},{3,4}}'::int[]", "array"),
])
def test_values_arrow_cannot_hold_are_marked(conns, sql, what):
    [(v,)] = conns[1].execute(sql).fetchall()
    assert out_of_range([None, v]) == what


def test_intervals_psycopg_wraps_around_are_marked_not_wrapped(conns):
    # psycopg 3.3's C loader adds the days in 32 bits: -251 days here
    [(v,)] = conns[1].execute("SELECT '11767033 years'::interval").fetchall()
    assert isinstance(v, OutOfRange) and v.what == "interval"
