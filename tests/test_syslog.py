"""Syslog sources: RFC 5424 and RFC 3164 parsed into Flume's headers (checked against
values worked out by hand from the RFCs' own examples), malformed messages stored with
flume.syslog.status=Invalid, over real TCP and UDP sockets through the agent CLI; a line
without end cut every eventSize bytes in bounded memory (Flume's Incomplete pieces), and the listener's limits (backlog,
maxConnections, idleTimeout)."""
from __future__ import annotations

import datetime as dt
from datetime import timedelta
import re
import socket
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from e2e_support import free_port, poll, read_dir_lines, wait_for_port, write_config
from socket_clients import hold_connections, listen_backlog, peak_rss_kib, simultaneous
from fastsync.agent.sources.syslog import parse_syslog

AGENT_TZ = "Asia/Kolkata"      # the agents run in this zone: RFC 3164 dates are local times
# RFC 3164 dates have no year: Flume puts them between 11 months ago and 1 month ahead, so a
# date 25 days ahead or 330 days back (clear of both edges) crosses New Year on most days
AHEAD, BEHIND = dt.date.today() + dt.timedelta(days=25), dt.date.today() - dt.timedelta(days=330)


def local_ms(tz: str | None, *fields) -> str:
    """ms since the epoch of a wall-clock time in zone tz (None: this process's zone)."""
    return str(round(dt.datetime(*fields, tzinfo=tz and ZoneInfo(tz)).timestamp() * 1000))


def rfc3164(day: dt.date) -> bytes:
    return ("%s %2d" % (day.strftime("%b"), day.day)).encode()


# (message, Flume 1.11's body, Flume 1.11's headers)
def messages(tz: str | None) -> list[tuple[bytes, bytes, dict]]:
    return [
        # RFC 5424's examples: the body is everything after the host, as in Flume
        (b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - BOM'su root' failed for lonvick on /dev/pts/8",
         b"su - ID47 - BOM'su root' failed for lonvick on /dev/pts/8",
         {"Facility": "4", "Severity": "2", "priority": "34", "version": "1", "timestamp": "1065910455003",
          "host": "mymachine.example.com"}),
        (b"<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time to make the do-nuts.",
         b"myproc 8710 - - %% It's time to make the do-nuts.",
         {"Facility": "20", "Severity": "5", "priority": "165", "version": "1", "timestamp": "1061727255000",
          "host": "192.0.2.1"}),
        (b'<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3"] An application event',
         b'evntslog - ID47 [exampleSDID@32473 iut="3"] An application event',
         {"Facility": "20", "Severity": "5", "priority": "165", "version": "1", "timestamp": "1065910455003",
          "host": "mymachine.example.com"}),
        # no offset: local time, as in Flume
        (b"<14>1 2003-10-11T22:14:15 web1 app - - - local", b"app - - - local",
         {"Facility": "1", "Severity": "6", "priority": "14", "version": "1", "timestamp": local_ms(tz, 2003, 10, 11, 22, 14, 15),
          "host": "web1"}),
        # RFC 3164's example, dated 25 days ahead and 330 days back
        (b"<34>" + rfc3164(AHEAD) + b" 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8",
         b"su: 'su root' failed for lonvick on /dev/pts/8",
         {"Facility": "4", "Severity": "2", "priority": "34",
          "timestamp": local_ms(tz, AHEAD.year, AHEAD.month, AHEAD.day, 22, 14, 15), "host": "mymachine"}),
        (b"<13>" + rfc3164(BEHIND) + b" 17:32:18 10.0.0.99 Use the BFG!", b"Use the BFG!",
         {"Facility": "1", "Severity": "5", "priority": "13",
          "timestamp": local_ms(tz, BEHIND.year, BEHIND.month, BEHIND.day, 17, 32, 18), "host": "10.0.0.99"}),
        # no pattern fits but the PRI is sound: valid, the whole line is the body
        (b"<13>", b"<13>", {"Facility": "1", "Severity": "5"}),
        (b"not syslog at all \xff", b"not syslog at all \xff",
         {"Facility": "0", "Severity": "0", "flume.syslog.status": "Invalid"}),
        (b"<999999>1 x", b"<999999>1 x", {"Facility": "0", "Severity": "0", "flume.syslog.status": "Invalid"}),
    ]


MESSAGES = messages(AGENT_TZ)       # as the agents, which run in AGENT_TZ, parse them


def test_parse_rfc5424_rfc3164_and_invalid():
    cases = messages(None)
    got = parse_syslog(pa.array([m for m, _, _ in cases], pa.large_binary())).events()
    assert [(e.body, e.headers) for e in got] == [(b, h) for _, b, h in cases]
    keep = parse_syslog(pa.array([cases[0][0]], pa.large_binary()), keep_fields=True).events()
    assert keep[0].body == cases[0][0] and keep[0].headers["Severity"] == "2"


def syslog_agent(tmp_path, agent, kind, args: tuple = (), **extra):
    port = free_port() if kind == "syslogtcp" else _free_udp_port()
    cfg = {"a1.sources": "r1", "a1.channels": "c1", "a1.sinks": "k1",
           "a1.sources.r1.type": kind, "a1.sources.r1.port": port, "a1.sources.r1.channels": "c1",
           "a1.channels.c1.type": "memory", "a1.sinks.k1.type": "logger", "a1.sinks.k1.channel": "c1",
           "a1.sinks.k1.maxBytesToLog": 200, **extra}
    p = agent("a1", write_config(tmp_path, cfg), *args, env={"TZ": AGENT_TZ})
    if kind == "syslogtcp":
        wait_for_port(port, timeout=15, alive=p.alive)
    else:
        p.wait_for_stderr("syslogudp source r1 listening", timeout=15)
    return p, port


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def logged(stderr: str) -> list[dict]:
    return [h for h, _ in logged_events(stderr)]


_ROW = re.compile(r"(?:\n[0-9A-F]{8})? ((?:[0-9A-F]{2} |   ){16})")


def logged_events(stderr: str) -> list[tuple[dict, bytes]]:
    """(headers, body) of each event the logger sink printed (its body's hex dump, so set
    maxBytesToLog above the longest body)."""
    out = []
    for m in re.finditer(r"Event: \{ headers:\{(.*?)\} body:", stderr):
        headers = dict(kv.split("=", 1) for kv in m.group(1).split(", ")) if m.group(1) else {}
        body, pos = b"", m.end()
        while row := _ROW.match(stderr, pos):
            chunk = bytes.fromhex(row.group(1))
            body += chunk
            pos = row.end() + len(chunk)       # past the printable column
        out.append((headers, body))
    return out


def test_syslogtcp_through_an_agent_keeps_running_after_garbage(tmp_path, agent):
    """Bodies and headers as Flume 1.11 gives them; an empty line is skipped, as in Flume."""
    cases = messages(AGENT_TZ)
    p, port = syslog_agent(tmp_path, agent, "syslogtcp")
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"".join(m + b"\n" for m, _, _ in cases) + b"\n")
    # (connections are served in parallel: the second is opened once the first is through)
    poll(lambda: p.stderr.count("Event: ") >= len(cases), 15, message="the first connection's events")
    with socket.create_connection(("127.0.0.1", port)) as s:     # a second connection after the garbage
        s.sendall(cases[0][0] + b"\r\n")
    poll(lambda: p.stderr.count("Event: ") >= len(cases) + 1, 15, message="events logged")
    assert p.stop(timeout=20) == 0, p.stderr
    assert logged_events(p.stderr) == [(h, b) for _, b, h in cases] + [(cases[0][2], cases[0][1])]


def test_syslogudp_one_message_per_datagram(tmp_path, agent):
    cases = messages(AGENT_TZ)[:7]
    p, port = syslog_agent(tmp_path, agent, "syslogudp")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for m, _, _ in cases:
            s.sendto(m, ("127.0.0.1", port))
    poll(lambda: p.stderr.count("Event: ") >= len(cases), 15, message="events logged")
    assert p.stop(timeout=20) == 0, p.stderr
    key = lambda e: (sorted(e[0].items()), e[1])      # noqa: E731 (datagrams may be reordered)
    assert sorted(logged_events(p.stderr), key=key) == sorted(((h, b) for _, b, h in cases), key=key)


# -- fuzzing: whatever arrives, the parser returns one event per non-empty message --
FUZZ = settings(max_examples=60, deadline=timedelta(seconds=10), database=None,
                suppress_health_check=[HealthCheck.too_slow])
_TOKENS = [b"<13>", b"<165>", b"<", b">", b"1", b"999", b" ", b"  ", b"\t", b"-", b"2003-10-11T22:14:15.003Z",
           b"2003-10-11T22:14:15", b"2003-02-30T25:61:61+99:99", b"Oct 11 22:14:15", b"Feb 29 00:00:00", b"Jan  0 99:99:99",
           b"host", b"a.b@c-d", b"[id k=\"v\\]\"]", b"msg", "\u00e9\u2028".encode(), b"\xff\xfe", b"\r", b"\x85", b"\x00"]
messages_strategy = st.one_of(st.binary(max_size=300), st.lists(st.sampled_from(_TOKENS), max_size=14).map(b"".join))


@FUZZ
@given(st.lists(messages_strategy, max_size=20), st.booleans())
def test_fuzz_parse_syslog_never_raises(raw, keep):
    got = parse_syslog(pa.array(raw, pa.large_binary()), keep).events()
    sent = [m for m in raw if m]
    assert len(got) == len(sent)
    for m, e in zip(sent, got):
        sound = re.match(rb"<\d{1,3}>", m) is not None
        assert (e.headers.get("flume.syslog.status") == "Invalid") == (not sound)
        assert e.headers["Facility"].isdigit() and e.headers["Severity"].isdigit()
        assert re.fullmatch(r"-?\d+", e.headers.get("timestamp", "0"))
        # the body is the message, or (the message as UTF-8 text) from some point on
        assert e.body == m or (not keep and m.decode("utf-8", "replace").encode().endswith(e.body))


def test_fuzzed_syslog_over_tcp_leaves_the_agent_up_and_answering(tmp_path, agent):
    """Fuzzed messages on TCP connections (one each, cut at random, some without their final
    newline), then a sound message: the agent is still up and delivers it."""
    p, port = syslog_agent(tmp_path, agent, "syslogtcp")

    @settings(max_examples=40, deadline=timedelta(seconds=10), database=None)
    @given(st.lists(messages_strategy, min_size=1, max_size=10), st.booleans())
    def send(msgs, final_newline):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"\n".join(msgs) + (b"\n" if final_newline else b""))

    send()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"<13>1 - still-up app - - - after the fuzz\n")
    poll(lambda: "host=still-up" in p.stderr or not p.alive(), 30, message="the message after the fuzz")
    assert p.alive() and "Traceback" not in p.stderr, p.stderr[-3000:]
    assert p.stop(timeout=20) == 0, p.stderr[-3000:]


def test_syslogtcp_cuts_a_line_without_end_in_bounded_memory(tmp_path, agent):
    """64 MiB without a newline used to be buffered whole (and copied at every read); now
    the line is cut every eventSize bytes as it is read, as Flume does, every piece stored
    in order, and the next messages on the same connection are intact."""
    out, size = tmp_path / "out", 1 << 16
    p, port = syslog_agent(tmp_path, agent, "syslogtcp", **{
        "a1.sources.r1.eventSize": size, "a1.sources.r1.keepFields": "true",
        "a1.sinks.k1.type": "file_roll", "a1.sinks.k1.sink.directory": out, "a1.sinks.k1.sink.rollInterval": 0})
    head = b"<34>1 2003-10-11T22:14:15.003Z host app - - - "
    body = (np.random.default_rng(1).integers(0, 64, 64 << 20, dtype=np.uint8) + 48).tobytes()    # no newline
    long = head + body
    pieces = [long[i:i + size] for i in range(0, len(long), size)]
    expected = [MESSAGES[1][0]] + pieces + [MESSAGES[0][0], b"y" * size, b"y" * 50]
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(MESSAGES[1][0] + b"\n")      # the first event loads what the path needs
        poll(lambda: len(stored(out)) >= 1, 30, message="the first event stored")
        before = peak_rss_kib(p.pid)
        s.sendall(head)
        for i in range(0, len(body), 1 << 20):
            s.sendall(body[i:i + (1 << 20)])
        s.sendall(b"\n" + MESSAGES[0][0] + b"\n" + b"y" * (size + 50) + b"\n")
    poll(lambda: len(stored(out)) >= len(expected), 30, message="%d events stored" % len(expected))
    grew = peak_rss_kib(p.pid) - before
    print("peak RSS grew by %d KiB" % grew)
    assert p.stop(timeout=20) == 0, p.stderr
    assert read_dir_lines(out) == expected
    assert grew < 32 << 10, "peak RSS grew by %d KiB while 64 MiB were sent" % grew


def stored(out) -> list[bytes]:
    """The lines file_roll wrote so far ([] while a batch is caught mid-write)."""
    try:
        return read_dir_lines(out) if out.exists() else []
    except AssertionError:
        return []


def test_syslogtcp_pieces_of_a_cut_line_are_flumes_incomplete_and_invalid_events(tmp_path, agent):
    """As Flume 1.11's SyslogUtils: a piece of eventSize bytes is an event with status
    Incomplete, parsed as far as it goes; the bytes after a cut are read as the next message
    (Invalid without a <PRI>, Invalid winning over Incomplete; valid with one); a line of
    exactly eventSize bytes is one Incomplete event."""
    p, port = syslog_agent(tmp_path, agent, "syslogtcp", **{"a1.sources.r1.eventSize": 40})
    head = b"<34>1 2003-10-11T22:14:15.003Z h "
    assert len(head) == 33
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(head + b"abcdefg" + b"0123456789" * 4 + b"<13>rest\n" + b"<13>" + b"z" * 36 + b"\n<13>\n")
    poll(lambda: p.stderr.count("Event: ") >= 5, 15, message="events logged")
    assert p.stop(timeout=20) == 0, p.stderr
    assert logged_events(p.stderr) == [
        ({"Facility": "4", "Severity": "2", "priority": "34", "version": "1", "timestamp": "1065910455003",
          "host": "h", "flume.syslog.status": "Incomplete"}, b"abcdefg"),
        ({"Facility": "0", "Severity": "0", "flume.syslog.status": "Invalid"}, b"0123456789" * 4),
        ({"Facility": "1", "Severity": "5"}, b"<13>rest"),
        ({"Facility": "1", "Severity": "5", "flume.syslog.status": "Incomplete"}, b"<13>" + b"z" * 36),
        ({"Facility": "1", "Severity": "5"}, b"<13>"),
    ]


def test_syslogtcp_500_simultaneous_clients(tmp_path, agent):
    p, port = syslog_agent(tmp_path, agent, "syslogtcp", **{"a1.channels.c1.capacity": 1000})
    assert listen_backlog(port) >= 1024
    n = 500
    answers = simultaneous(port, [b"<13>Feb  5 17:32:18 10.0.0.99 client %d\n" % i for i in range(n)])
    failed = [a for a in answers if a != b""]
    assert not failed, "%d of %d failed, e.g. %r" % (len(failed), n, failed[:3])
    poll(lambda: p.stderr.count("Event: ") >= n, 30, message="%d events logged" % n)
    assert p.stop(timeout=20) == 0, p.stderr
    assert sorted(map(int, re.findall(r"client (\d+) \}", p.stderr))) == list(range(n))


def test_syslogtcp_max_connections_and_idle_timeout(tmp_path, agent):
    mport = free_port()
    p, port = syslog_agent(tmp_path, agent, "syslogtcp", args=("--metrics-port", str(mport)),
                           **{"a1.sources.r1.maxConnections": 2, "a1.sources.r1.idleTimeout": 1000})
    held = hold_connections(mport, 2, lambda: socket.create_connection(("127.0.0.1", port), timeout=10))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:   # the third: closed at once
        assert s.recv(100) == b""
    for s in held:      # they sent nothing: closed after idleTimeout
        with s:
            assert s.recv(100) == b""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(MESSAGES[0][0] + b"\n")
    poll(lambda: p.stderr.count("Event: ") >= 1, 15, message="the event logged")
    assert p.stop(timeout=20) == 0, p.stderr
    assert logged(p.stderr) == [MESSAGES[0][2]]
    assert "refused 1 connection(s)" in p.stderr and "idle for 1000 ms (idleTimeout)" in p.stderr
