"""Syslog sources: RFC 5424 and RFC 3164 parsed into Flume's headers (checked against
values worked out by hand from the RFCs' own examples), malformed messages stored with
flume.syslog.status=Invalid, over real TCP and UDP sockets through the agent CLI; a line
without end cut at eventSize in bounded memory, and the listener's limits (backlog,
maxConnections, idleTimeout)."""
from __future__ import annotations

import datetime as dt
import re
import socket

import pyarrow as pa

from e2e_support import free_port, poll, read_dir_lines, wait_for_port, write_config
from socket_clients import hold_connections, listen_backlog, peak_rss_kib, simultaneous
from fastsync.agent.sources.syslog import parse_syslog

YEAR = dt.datetime.now(dt.timezone.utc).year
MESSAGES = [
    # RFC 5424's examples
    (b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - BOM'su root' failed for lonvick on /dev/pts/8",
     b"BOM'su root' failed for lonvick on /dev/pts/8",
     {"Facility": "4", "Severity": "2", "host": "mymachine.example.com", "timestamp": "1065910455003"}),
    (b"<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time to make the do-nuts.",
     b"%% It's time to make the do-nuts.",
     {"Facility": "20", "Severity": "5", "host": "192.0.2.1", "timestamp": "1061727255000"}),
    (b'<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application"] An application event',
     b"An application event",
     {"Facility": "20", "Severity": "5", "host": "mymachine.example.com", "timestamp": "1065910455003"}),
    # RFC 3164's example (no year: the current one, UTC)
    (b"<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8",
     b"su: 'su root' failed for lonvick on /dev/pts/8",
     {"Facility": "4", "Severity": "2", "host": "mymachine",
      "timestamp": str(int(dt.datetime(YEAR, 10, 11, 22, 14, 15, tzinfo=dt.timezone.utc).timestamp() * 1000))}),
    (b"<13>Feb  5 17:32:18 10.0.0.99 Use the BFG!", b"Use the BFG!",
     {"Facility": "1", "Severity": "5", "host": "10.0.0.99",
      "timestamp": str(int(dt.datetime(YEAR, 2, 5, 17, 32, 18, tzinfo=dt.timezone.utc).timestamp() * 1000))}),
    (b"not syslog at all \xff", b"not syslog at all \xff", {"flume.syslog.status": "Invalid"}),
    (b"<999999>1 x", b"<999999>1 x", {"flume.syslog.status": "Invalid"}),
]


def test_parse_rfc5424_rfc3164_and_invalid():
    got = parse_syslog(pa.array([m for m, _, _ in MESSAGES], pa.large_binary())).events()
    assert [(e.body, e.headers) for e in got] == [(b, h) for _, b, h in MESSAGES]
    keep = parse_syslog(pa.array([MESSAGES[0][0]], pa.large_binary()), keep_fields=True).events()
    assert keep[0].body == MESSAGES[0][0] and keep[0].headers["Severity"] == "2"


def syslog_agent(tmp_path, agent, kind, args: tuple = (), **extra):
    port = free_port() if kind == "syslogtcp" else _free_udp_port()
    cfg = {"a1.sources": "r1", "a1.channels": "c1", "a1.sinks": "k1",
           "a1.sources.r1.type": kind, "a1.sources.r1.port": port, "a1.sources.r1.channels": "c1",
           "a1.channels.c1.type": "memory", "a1.sinks.k1.type": "logger", "a1.sinks.k1.channel": "c1",
           "a1.sinks.k1.maxBytesToLog": 200, **extra}
    p = agent("a1", write_config(tmp_path, cfg), *args)
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
    return [dict(kv.split("=", 1) for kv in h.split(", ")) if h else {}
            for h in re.findall(r"Event: \{ headers:\{(.*?)\} body:", stderr)]


def test_syslogtcp_through_an_agent_keeps_running_after_garbage(tmp_path, agent):
    p, port = syslog_agent(tmp_path, agent, "syslogtcp")
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"".join(m + b"\n" for m, _, _ in MESSAGES))
    # (connections are served in parallel: the second is opened once the first is through)
    poll(lambda: p.stderr.count("Event: ") >= len(MESSAGES), 15, message="the first connection's events")
    with socket.create_connection(("127.0.0.1", port)) as s:     # a second connection after the garbage
        s.sendall(MESSAGES[0][0] + b"\r\n")
    poll(lambda: p.stderr.count("Event: ") >= len(MESSAGES) + 1, 15, message="events logged")
    assert p.stop(timeout=20) == 0, p.stderr
    assert logged(p.stderr) == [h for _, _, h in MESSAGES] + [MESSAGES[0][2]]


def test_syslogudp_one_message_per_datagram(tmp_path, agent):
    p, port = syslog_agent(tmp_path, agent, "syslogudp")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for m, _, _ in MESSAGES[:5]:
            s.sendto(m, ("127.0.0.1", port))
    poll(lambda: p.stderr.count("Event: ") >= 5, 15, message="events logged")
    assert p.stop(timeout=20) == 0, p.stderr
    got = logged(p.stderr)
    assert sorted(map(sorted, map(dict.items, got))) == sorted(map(sorted, (h.items() for _, _, h in MESSAGES[:5])))


def test_syslogtcp_cuts_a_line_without_end_in_bounded_memory(tmp_path, agent):
    """64 MiB without a newline used to be buffered whole (and copied at every read); now
    the line is cut at eventSize as it is read, the rest of it skipped, and the next
    messages on the same connection are intact."""
    out = tmp_path / "out"
    p, port = syslog_agent(tmp_path, agent, "syslogtcp", **{
        "a1.sources.r1.eventSize": 200, "a1.sources.r1.keepFields": "true",
        "a1.sinks.k1.type": "file_roll", "a1.sinks.k1.sink.directory": out, "a1.sinks.k1.sink.rollInterval": 0})
    head = b"<34>1 2003-10-11T22:14:15.003Z host app - - - "
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(MESSAGES[1][0] + b"\n")      # the first event loads what the path needs
        poll(lambda: len(read_dir_lines(out)) >= 1, 30, message="the first event stored")
        before = peak_rss_kib(p.pid)
        s.sendall(head)
        block = b"x" * (1 << 20)
        for _ in range(64):
            s.sendall(block)
        s.sendall(b"\n" + MESSAGES[0][0] + b"\n" + b"y" * 250 + b"\n")
    poll(lambda: len(read_dir_lines(out)) >= 4, 30, message="4 events stored")
    grew = peak_rss_kib(p.pid) - before
    assert p.stop(timeout=20) == 0, p.stderr
    assert read_dir_lines(out) == [MESSAGES[1][0], (head + block)[:200], MESSAGES[0][0], b"y" * 200]
    assert grew < 32 << 10, "peak RSS grew by %d KiB while 64 MiB were sent" % grew


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
