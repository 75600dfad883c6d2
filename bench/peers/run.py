"""Apache Flume 1.11.0 against fastsync on the same Flume properties files, in alternating
rounds (Flume, fastsync, Flume, fastsync, ...), every count checked on both sides.

    python bench/peers/run.py [--rows null-1000,taildir-2m] [--rounds 2] [--scale 1] [--quick] [--out DIR]

Flume's jars come from Maven Central through scripts/flume.sh (cached); it runs as
`java -cp 'libs/*' org.apache.flume.node.Application -n a1 -f FILE` with its HTTP metrics
(-Dflume.monitoring.type=http), fastsync as `python -m fastsync agent -n a1 -f FILE
--metrics-port PORT`. Both are measured the same way: this script polls each one's /metrics
JSON every 20 ms and stops the process when its channel's EventTakeSuccessCount (committed
takes: Flume's null sink keeps no counters) reaches N.
- events/s (whole run): N / (time from spawning the process to the poll that saw N);
- steady events/s: events / time between the polls that first saw 10 % and 90 % of N;
- CPU µs/event: user + system CPU of the process tree at the poll that saw N, over N
  (start-up included), and the same between the 10 % and 90 % polls (steady);
- peak RSS: the largest VmHWM of the process tree at that poll, summed over its processes.
Then the source's accepted count, the channel's put and take counts and the sink's drain
count (where the sink keeps one) must all equal N, and for file_roll the lines and bytes in
the output files too. The seq source's bodies are decimal counters on both sides (1-8
bytes); TAILDIR rows read a file of 100-byte lines, next to `cat FILE > /dev/null` and
`cat FILE > OUT` (OUT in the scratch directory, where file_roll writes: the cost of reading
and writing the bytes once, with nothing else).

The hop rows (avro-hop-1000, avro-hop-deflate, avro-hop-ssl, flight-hop-1000, flight-hop-ssl)
run two agents each: a2 `HOP source -> memory -> null` first, until its port listens, then a1
`TAILDIR -> memory -> HOP sink` sending it N distinct 100-byte lines; N counted on a2, every count checked on both,
CPU and peak RSS of both together (see run_hop and bench/README.md, "Hop: agent to agent").
Rows whose components fastsync lacks are refused in one line before anything starts.

Writes DIR/results.json, DIR/events_per_s_vs_batch.png, DIR/cpu_per_event.png,
DIR/peak_rss.png and prints a markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
ENGINES = ("flume", "fastsync")
POLL = 0.02       # s between two reads of /metrics (--poll)
LINE = 100          # bytes per TAILDIR line, newline included
BODY = 100          # bytes per event body on the hop rows (their TAILDIR lines, without the newline)
PASSWORD = "hopbench"   # of the hop rows' keystore and truststore (scratch files, made per run)


@dataclass
class Row:
    name: str
    label: str
    source: str         # seq | taildir
    channel: str        # memory | file
    sink: str           # null | file_roll
    src_batch: int
    sink_batch: int
    n_flume: int        # events per run, chosen so that a run lasts a few seconds on this machine
    n_fastsync: int
    curve: bool = False  # a point of the events/s vs batch size curve (source and sink batch equal)
    # agent-to-agent rows: `TAILDIR -> memory -> HOP sink` => `HOP source -> memory -> null` (sink = null)
    hop: str = ""        # avro | flight
    deflate: bool = False    # compression-type = deflate on both ends
    ssl: bool = False        # ssl on both ends (keystore / truststore made by keytool)
    engines: tuple = ENGINES    # who runs the row (flight: fastsync only, Flume has none)
    ratio_to: str = ""   # its fastsync figures are compared with this row's fastsync ones (not Flume's)

    def events(self, engine: str) -> int:
        return self.n_flume if engine == "flume" else self.n_fastsync


def _curve(b: int, n_flume: int, n_fastsync: int) -> Row:
    return Row("null-%d" % b, "seq -> memory -> null, batches of %d" % b, "seq", "memory", "null", b, b,
               n_flume, n_fastsync, curve=True)


def _hop(name: str, hop: str, how: str, n_flume: int, n_fastsync: int, **kw) -> Row:
    return Row(name, "TAILDIR -> memory -> %s sink => %s source -> memory -> null, %d-byte events, batches of 1000%s"
               % (hop, hop, BODY, ", " + how if how else ""), "taildir", "memory", "null", 1000, 1000,
               n_flume, n_fastsync, hop=hop, **kw)


ROWS = {r.name: r for r in [
    _curve(1, 1_000_000, 20_000_000),
    _curve(10, 2_000_000, 30_000_000),
    _curve(100, 8_000_000, 30_000_000),
    _curve(1000, 30_000_000, 100_000_000),
    _curve(10000, 30_000_000, 200_000_000),
    Row("null-src1-sink100", "seq -> memory -> null, source batchSize 1, sink 100", "seq", "memory", "null",
        1, 100, 3_000_000, 20_000_000),
    Row("file_roll-1000", "seq -> memory -> file_roll, batches of 1000", "seq", "memory", "file_roll",
        1000, 1000, 15_000_000, 50_000_000),
    Row("filechannel-1000", "seq -> file channel -> null, batches of 1000", "seq", "file", "null",
        1000, 1000, 300_000, 30_000_000),
    Row("taildir-2m", "TAILDIR 2 M lines -> memory -> file_roll, batches of 1000", "taildir", "memory",
        "file_roll", 1000, 1000, 2_000_000, 2_000_000),
    Row("taildir-20m", "TAILDIR 20 M lines -> memory -> file_roll, batches of 1000", "taildir", "memory",
        "file_roll", 1000, 1000, 20_000_000, 20_000_000),
    # fastsync's N: a run of a few seconds (first run, load average ~3: avro 1.75 M events/s
    # steady, deflate 0.84 M, SSL 1.35 M, flight 2.5 M)
    _hop("avro-hop-1000", "avro", "", 2_000_000, 10_000_000),
    _hop("avro-hop-deflate", "avro", "deflate", 2_000_000, 5_000_000, deflate=True),
    _hop("avro-hop-ssl", "avro", "SSL", 2_000_000, 8_000_000, ssl=True),
    _hop("flight-hop-1000", "flight", "", 0, 20_000_000, engines=("fastsync",), ratio_to="avro-hop-1000"),
    _hop("flight-hop-ssl", "flight", "TLS", 0, 20_000_000, ssl=True, engines=("fastsync",), ratio_to="avro-hop-ssl"),
]}
DEFAULT_ROWS = list(ROWS)
QUICK_ROWS = ["null-1000"]
QUICK_EVENTS = 200_000


def config(row: Row, n: int, work: str, lines_file: str | None) -> str:
    """The properties file, identical for both engines but for the directories in `work`."""
    tc = max(row.src_batch, row.sink_batch)
    p = ["a1.sources = r1", "a1.channels = c1", "a1.sinks = k1",
         "a1.sources.r1.channels = c1", "a1.sources.r1.batchSize = %d" % row.src_batch]
    if row.source == "seq":
        p += ["a1.sources.r1.type = seq", "a1.sources.r1.totalEvents = %d" % n]
    else:
        p += ["a1.sources.r1.type = TAILDIR", "a1.sources.r1.filegroups = f1",
              "a1.sources.r1.filegroups.f1 = %s" % lines_file,
              "a1.sources.r1.positionFile = %s/taildir_position.json" % work]
    if row.channel == "memory":
        p += ["a1.channels.c1.type = memory", "a1.channels.c1.capacity = %d" % max(100_000, 10 * tc),
              "a1.channels.c1.transactionCapacity = %d" % tc]
    else:
        p += ["a1.channels.c1.type = file", "a1.channels.c1.checkpointDir = %s/checkpoint" % work,
              "a1.channels.c1.dataDirs = %s/data" % work, "a1.channels.c1.capacity = 1000000",
              "a1.channels.c1.transactionCapacity = %d" % max(tc, 10_000)]
    p += ["a1.sinks.k1.channel = c1"]
    if row.sink == "null":
        p += ["a1.sinks.k1.type = null", "a1.sinks.k1.batchSize = %d" % row.sink_batch]
    else:
        p += ["a1.sinks.k1.type = file_roll", "a1.sinks.k1.sink.directory = %s/out" % work,
              "a1.sinks.k1.sink.rollInterval = 0", "a1.sinks.k1.sink.batchSize = %d" % row.sink_batch]
        os.makedirs(os.path.join(work, "out"), exist_ok=True)
    path = os.path.join(work, "agent.properties")
    with open(path, "w") as f:
        f.write("\n".join(p) + "\n")
    return path


def hop_configs(row: Row, lines_file: str, work: str, port: int, tls: dict | None) -> tuple[str, str]:
    """The two properties files of a hop row, (downstream, upstream), identical for both
    engines but for the directories: agent a2 `HOP source -> memory -> null` listening on
    127.0.0.1:port, agent a1 `TAILDIR -> memory -> HOP sink` sending it the N distinct
    100-byte lines of lines_file. Flume's keys on both engines. (Not seq: its bodies are
    decimal counters, and the two search_replace interceptors that padded them to 100 bytes
    held fastsync's upstream to ~0.55 M events/s, RE2 with a capture group, so the row
    measured them rather than the hop.)"""
    memory = ["channels.c1.type = memory", "channels.c1.capacity = %d" % max(100_000, 10 * row.sink_batch),
              "channels.c1.transactionCapacity = %d" % row.sink_batch]
    down = ["sources = r1", "channels = c1", "sinks = k1", *memory,
            "sources.r1.type = %s" % row.hop, "sources.r1.channels = c1",
            "sources.r1.bind = 127.0.0.1", "sources.r1.port = %d" % port,
            "sinks.k1.type = null", "sinks.k1.channel = c1", "sinks.k1.batchSize = %d" % row.sink_batch]
    up = ["sources = r1", "channels = c1", "sinks = k1", *memory,
          "sources.r1.type = TAILDIR", "sources.r1.channels = c1", "sources.r1.filegroups = f1",
          "sources.r1.filegroups.f1 = %s" % lines_file, "sources.r1.positionFile = %s/taildir_position.json" % work,
          "sources.r1.batchSize = %d" % row.src_batch,
          "sinks.k1.type = %s" % row.hop, "sinks.k1.channel = c1", "sinks.k1.hostname = 127.0.0.1",
          "sinks.k1.port = %d" % port, "sinks.k1.batch-size = %d" % row.sink_batch]
    if row.deflate:
        down += ["sources.r1.compression-type = deflate"]
        up += ["sinks.k1.compression-type = deflate"]
    if row.ssl and row.hop == "flight":     # PEM files (gRPC's TLS), the same key and certificate
        down += ["sources.r1.ssl = true", "sources.r1.ssl.certificate = %s" % tls["cert"],
                 "sources.r1.ssl.key = %s" % tls["key"]]
        up += ["sinks.k1.ssl = true", "sinks.k1.ssl.trustedCertificates = %s" % tls["cert"]]
    elif row.ssl:
        down += ["sources.r1.ssl = true", "sources.r1.keystore = %s" % tls["keystore"],
                 "sources.r1.keystore-password = %s" % PASSWORD, "sources.r1.keystore-type = PKCS12"]
        up += ["sinks.k1.ssl = true", "sinks.k1.truststore = %s" % tls["truststore"],
               "sinks.k1.truststore-password = %s" % PASSWORD, "sinks.k1.truststore-type = PKCS12"]
    paths = []
    for agent, lines in (("a2", down), ("a1", up)):
        paths.append(os.path.join(work, "%s.properties" % agent))
        with open(paths[-1], "w") as f:
            f.write("".join("%s.%s\n" % (agent, line) for line in lines))
    return paths[0], paths[1]


def make_tls(scratch: str) -> dict:
    """A self-signed key pair for CN=localhost (PKCS12 keystore) and a truststore holding its
    certificate, made once per run by keytool (the JDK's) in the scratch directory; for the
    flight rows the same certificate and its key as PEM files (the key by openssl)."""
    tls = {k: os.path.join(scratch, k + ".p12") for k in ("keystore", "truststore")}
    cert = tls["cert"] = os.path.join(scratch, "hop-cert.pem")
    tls["key"] = os.path.join(scratch, "hop-key.pem")
    for cmd in (["-genkeypair", "-alias", "hop", "-keyalg", "RSA", "-keysize", "2048", "-validity", "7",
                 "-dname", "CN=localhost", "-ext", "SAN=dns:localhost,ip:127.0.0.1", "-keystore", tls["keystore"],
                 "-storetype", "PKCS12", "-storepass", PASSWORD, "-keypass", PASSWORD],
                ["-exportcert", "-rfc", "-alias", "hop", "-keystore", tls["keystore"], "-storetype", "PKCS12",
                 "-storepass", PASSWORD, "-file", cert],
                ["-importcert", "-noprompt", "-alias", "hop", "-file", cert, "-keystore", tls["truststore"],
                 "-storetype", "PKCS12", "-storepass", PASSWORD]):
        out = subprocess.run(["keytool", *cmd], capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit("bench/peers: keytool %s failed: %s" % (cmd[0], (out.stderr or out.stdout).strip()))
    out = subprocess.run(["openssl", "pkcs12", "-in", tls["keystore"], "-nocerts", "-nodes", "-passin",
                          "pass:" + PASSWORD, "-out", tls["key"]], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit("bench/peers: openssl pkcs12 (the key as PEM) failed: %s" % (out.stderr or out.stdout).strip())
    return tls


def fastsync_lacks(row: Row) -> list[str]:
    """The components of a row this fastsync has not got (e.g. `avro source`)."""
    from fastsync.agent.component import SINKS, SOURCES
    want = [(SOURCES, row.source, "source"), (SINKS, row.sink, "sink")]
    if row.hop:
        want += [(SOURCES, row.hop, "source"), (SINKS, row.hop, "sink")]
    return [name + " " + what for reg, name, what in want if reg.lookup(name) is None]


# ---- the processes ----

def flume_libs() -> str:
    """Flume's jar directory, fetched once from Maven Central by scripts/flume.sh."""
    out = subprocess.run(["bash", os.path.join(ROOT, "scripts", "flume.sh")], stdout=subprocess.PIPE, text=True)
    if out.returncode != 0:
        raise SystemExit("bench/peers: scripts/flume.sh failed (exit %d)" % out.returncode)
    return out.stdout.strip().splitlines()[-1]


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(k: int) -> list[int]:
    """k distinct free ports (their sockets held open together while picking)."""
    socks = [socket.socket() for _ in range(k)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Engines:
    def __init__(self, java_opts: list[str], scratch: str):
        self.libs = flume_libs()
        self.java_opts = java_opts
        self.log4j = os.path.join(scratch, "log4j2.properties")
        with open(self.log4j, "w") as f:     # Flume logs warnings only, to its stdout
            f.write("appender.out.type=Console\nappender.out.name=out\nappender.out.layout.type=PatternLayout\n"
                    "appender.out.layout.pattern=[%d] %p %m (%c)%n\nrootLogger.level=WARN\n"
                    "rootLogger.appenderRef.out.ref=out\n")

    def command(self, engine: str, conf: str, port: int, agent: str = "a1") -> list[str]:
        if engine == "flume":
            return ["java", *self.java_opts, "-Dlog4j2.configurationFile=" + self.log4j,
                    "-Dflume.monitoring.type=http", "-Dflume.monitoring.port=%d" % port,
                    "-cp", os.path.join(self.libs, "*"), "org.apache.flume.node.Application",
                    "-n", agent, "-f", conf, "--no-reload-conf"]
        return [sys.executable, "-m", "fastsync", "agent", "-n", agent, "-f", conf, "--metrics-port", str(port),
                "--no-reload-conf", "--log-level", "WARNING"]

    def versions(self) -> dict:
        java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()
        from fastsync.bench import versions
        return {"flume": "1.11.0", "java": java[0] if java else "?", "fastsync": versions()}


def _tree(pid: int) -> list[int]:
    """pid and its descendants (from /proc/PID/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for t in os.listdir("/proc/%d/task" % p):
                with open("/proc/%d/task/%s/children" % (p, t)) as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def cpu_seconds(pid: int) -> float:
    """user + system CPU of the process tree, in seconds."""
    total = 0
    for p in _tree(pid):
        try:
            with open("/proc/%d/stat" % p) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])      # utime, stime (fields 14 and 15)
        except (OSError, IndexError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    total = 0
    for p in _tree(pid):
        try:
            with open("/proc/%d/status" % p) as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
        except (OSError, StopIteration):
            pass
    return total / 1024


def metrics(port: int) -> dict | None:
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
            return json.load(r)
    except (OSError, ValueError):
        return None


def counts(m: dict) -> dict:
    """The counts checked, as ints (Flume's JSON has them as strings)."""
    out = {"source accepted": int(m["SOURCE.r1"]["EventAcceptedCount"]),
           "channel put": int(m["CHANNEL.c1"]["EventPutSuccessCount"]),
           "channel take": int(m["CHANNEL.c1"]["EventTakeSuccessCount"])}
    if "EventDrainSuccessCount" in m.get("SINK.k1", {}):
        out["sink drained"] = int(m["SINK.k1"]["EventDrainSuccessCount"])
    return out


def run_once(engines: Engines, engine: str, row: Row, n: int, scratch: str, lines_file: str | None,
             timeout: float) -> dict:
    work = tempfile.mkdtemp(prefix="%s-%s-" % (engine, row.name), dir=scratch)
    port = free_port()
    conf = config(row, n, work, lines_file)
    log = open(os.path.join(work, "engine.log"), "w+")
    t0 = time.perf_counter()
    proc = subprocess.Popen(engines.command(engine, conf, port), stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, cwd=work)
    first = None
    marks = {}
    trace = []      # (s since spawn, events taken) at each poll
    try:
        taken = 0
        while taken < n:
            if proc.poll() is not None:
                log.seek(0)
                raise SystemExit("bench/peers: %s exited (%s) on %s:\n%s" % (engine, proc.returncode, row.name,
                                                                         log.read()[-3000:]))
            m = metrics(port)
            now = time.perf_counter()
            if m and "CHANNEL.c1" in m:
                taken = int(m["CHANNEL.c1"]["EventTakeSuccessCount"])
                trace.append((round(now - t0, 3), taken))
                if taken and first is None:
                    first = now
                for frac in (0.1, 0.9):
                    if taken >= frac * n and frac not in marks:
                        marks[frac] = (now, taken, cpu_seconds(proc.pid))
            if now - t0 > timeout:
                raise SystemExit("bench/peers: %s on %s: %d of %d events after %.0f s" % (
                    engine, row.name, taken, n, timeout))
            if taken < n:
                time.sleep(POLL)
        done = time.perf_counter()
        cpu, rss = cpu_seconds(proc.pid), peak_rss_mb(proc.pid)
        # the sink counts its batch just after committing the take: let every counter settle
        deadline = time.monotonic() + 10
        while True:
            got = counts(metrics(port) or m)
            if all(v == n for v in got.values()) or time.monotonic() > deadline:
                break
            time.sleep(POLL)
    finally:
        stop(proc)
        log.close()
    bad = {k: v for k, v in got.items() if v != n}
    if bad:
        raise SystemExit("bench/peers: %s on %s: counts %s, want %d each" % (engine, row.name, got, n))
    if row.sink == "file_roll":
        got["output lines"], size = output_lines(os.path.join(work, "out"))
        want = os.path.getsize(lines_file) if lines_file else None
        if got["output lines"] != n or (want is not None and size != want):
            raise SystemExit("bench/peers: %s on %s: file_roll wrote %d lines, %d bytes, want %d lines%s" % (
                engine, row.name, got["output lines"], size, n, ", %d bytes" % want if want else ""))
    shutil.rmtree(work, ignore_errors=True)
    (t1, e1, c1), (t2, e2, c2) = marks[0.1], marks[0.9]
    seconds = done - t0
    return {"engine": engine, "row": row.name, "events": n, "seconds": seconds,
            "first_event_s": first - t0, "events_per_s": n / seconds,
            "steady_events_per_s": (e2 - e1) / (t2 - t1) if t2 > t1 and e2 > e1 else None,
            "cpu_s": cpu, "cpu_us_per_event": cpu / n * 1e6,
            "steady_cpu_us_per_event": (c2 - c1) / (e2 - e1) * 1e6 if e2 > e1 else None,
            "peak_rss_mb": rss, "counts": got, "trace": trace[::max(1, len(trace) // 200)] + trace[-1:]}


def listening(port: int) -> bool:
    """Whether a socket listens on this TCP port (read from /proc: no connection is made, so
    the source under test sees none)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    local, state = line.split()[1], line.split()[3]
                    if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                        return True
        except OSError:
            pass
    return False


def last_problem(path: str) -> str:
    """The last ERROR (else WARN, else any) line of an agent's log, for a one-line message,
    with the Java exception that follows it (`...Exception: why`), if one does."""
    with open(path, errors="replace") as f:
        lines = [x.strip() for x in f if x.strip()]
    for word in ("ERROR", "error", "WARN"):
        hits = [i for i, x in enumerate(lines) if word in x]
        if hits:
            i = hits[-1]
            cause = lines[i + 1] if i + 1 < len(lines) and re.match(r"[\w.$]+(Exception|Error)\b", lines[i + 1]) else ""
            return (lines[i] + (" " + cause if cause else ""))[:400]
    return lines[-1][:400] if lines else "(no output)"


# the counters a hop run checks: a1's four, a2's source and channel (null sinks may keep none)
COUNTERS = {"source accepted": ("SOURCE.r1", "EventAcceptedCount"), "channel put": ("CHANNEL.c1", "EventPutSuccessCount"),
            "channel take": ("CHANNEL.c1", "EventTakeSuccessCount"), "sink drained": ("SINK.k1", "EventDrainSuccessCount")}
HOP_COUNTED = {"up " + k for k in COUNTERS} | {"down " + k for k in COUNTERS if k != "sink drained"}


def hop_counts(side: str, m: dict | None) -> dict:
    """The counters one agent's /metrics has, of COUNTERS, as ints named `side counter`."""
    return {"%s %s" % (side, k): int(m[comp][key]) for k, (comp, key) in COUNTERS.items()
            if m and key in m.get(comp, {})}


def run_hop(engines: Engines, engine: str, row: Row, n: int, scratch: str, lines_file: str, tls: dict | None,
            timeout: float, stall: float) -> dict:
    """One run of a hop row: the downstream agent a2 first, until its port listens, then the
    upstream a1; N is counted on a2's channel takes (Flume's null sink keeps no counters).
    CPU and peak RSS are both agents' together; the whole run is timed from a1's spawn."""
    work = tempfile.mkdtemp(prefix="%s-%s-" % (engine, row.name), dir=scratch)
    port, down_port, up_port = free_ports(3)
    down_conf, up_conf = hop_configs(row, lines_file, work, port, tls)
    where = "bench/peers: %s on %s" % (engine, row.name)
    procs: dict[str, subprocess.Popen] = {}
    logs = {a: os.path.join(work, "%s.log" % a) for a in ("a2", "a1")}

    def spawn(agent: str, conf: str, metrics_port: int) -> None:
        with open(logs[agent], "w") as log:
            procs[agent] = subprocess.Popen(engines.command(engine, conf, metrics_port, agent), stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=work)

    def check_alive() -> None:
        for agent, proc in procs.items():
            if proc.poll() is not None:
                raise SystemExit("%s: %s agent %s exited (%s): %s" % (
                    where, "downstream" if agent == "a2" else "upstream", agent, proc.returncode,
                    last_problem(logs[agent])))

    def tree_cpu() -> float:
        return sum(cpu_seconds(p.pid) for p in procs.values())

    marks = {}
    trace = []
    try:
        t_down = time.perf_counter()
        spawn("a2", down_conf, down_port)
        while not listening(port):
            check_alive()
            if time.perf_counter() - t_down > stall:
                raise SystemExit("%s: downstream agent a2 not listening on port %d after %.0f s: %s" % (
                    where, port, stall, last_problem(logs["a2"])))
            time.sleep(POLL)
        t0 = time.perf_counter()
        spawn("a1", up_conf, up_port)
        taken, first, progress_at = 0, None, t0
        while taken < n:
            check_alive()
            m = metrics(down_port)
            now = time.perf_counter()
            if m and "CHANNEL.c1" in m:
                got = int(m["CHANNEL.c1"]["EventTakeSuccessCount"])
                if got > taken:
                    progress_at = now
                taken = got
                trace.append((round(now - t0, 3), taken))
                if taken and first is None:
                    first = now
                for frac in (0.1, 0.9):
                    if taken >= frac * n and frac not in marks:
                        marks[frac] = (now, taken, tree_cpu())
            if now - progress_at > stall or now - t0 > timeout:
                raise SystemExit("%s: %d of %d events after %.0f s, none for %.0f s: upstream: %s; downstream: %s"
                                 % (where, taken, n, now - t0, now - progress_at, last_problem(logs["a1"]),
                                    last_problem(logs["a2"])))
            if taken < n:
                time.sleep(POLL)
        done = time.perf_counter()
        cpu = tree_cpu()
        rss = {a: peak_rss_mb(p.pid) for a, p in procs.items()}
        # a1's sink counts its batch once a2 acknowledged it, a2's counters just after their commits
        deadline = time.monotonic() + 10
        while True:
            got = {**hop_counts("up", metrics(up_port)), **hop_counts("down", metrics(down_port))}
            if (HOP_COUNTED <= set(got) and all(v == n for v in got.values())) or time.monotonic() > deadline:
                break
            time.sleep(POLL)
    finally:
        for agent in ("a1", "a2"):
            if agent in procs:
                stop(procs[agent])
    bad = {k: v for k, v in got.items() if v != n}
    if bad or not HOP_COUNTED <= set(got):
        raise SystemExit("%s: counts %s, want %d each%s" % (where, got, n, "".join(
            "; no %s in the metrics" % k for k in sorted(HOP_COUNTED - set(got)))))
    shutil.rmtree(work, ignore_errors=True)
    (t1, e1, c1), (t2, e2, c2) = marks[0.1], marks[0.9]
    seconds = done - t0
    return {"engine": engine, "row": row.name, "events": n, "seconds": seconds,
            "downstream_ready_s": t0 - t_down, "first_event_s": first - t0, "events_per_s": n / seconds,
            "steady_events_per_s": (e2 - e1) / (t2 - t1) if t2 > t1 and e2 > e1 else None,
            "cpu_s": cpu, "cpu_us_per_event": cpu / n * 1e6,
            "steady_cpu_us_per_event": (c2 - c1) / (e2 - e1) * 1e6 if e2 > e1 else None,
            "peak_rss_mb": sum(rss.values()), "peak_rss_mb_up": rss["a1"], "peak_rss_mb_down": rss["a2"],
            "counts": got, "trace": trace[::max(1, len(trace) // 200)] + trace[-1:]}


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def output_lines(out: str) -> tuple[int, int]:
    lines = size = 0
    for name in os.listdir(out):
        with open(os.path.join(out, name), "rb") as f:
            while chunk := f.read(1 << 24):
                lines += chunk.count(b"\n")
                size += len(chunk)
    return lines, size


def write_lines(path: str, n: int, line: int = LINE) -> None:
    """n distinct lines of exactly `line` bytes, newline included."""
    pad = b"x" * (line - 21)
    with open(path, "wb") as f:
        for start in range(0, n, 100_000):
            f.write(b"".join(b"%020d%s\n" % (i, pad) for i in range(start, min(n, start + 100_000))))


def cat_seconds(path: str, out: str | None = None) -> float:
    """Seconds of `cat path > /dev/null` (page cache warm), or `cat path > out` (a new file,
    removed after)."""
    subprocess.run(["cat", path], stdout=subprocess.DEVNULL, check=True)      # warm the page cache
    with open(out or os.devnull, "wb") as sink:
        t = time.perf_counter()
        subprocess.run(["cat", path], stdout=sink, check=True)
        took = time.perf_counter() - t
    if out:
        os.unlink(out)
    return took


# ---- the suite ----

def run_row(engines: Engines, row: Row, rounds: int, n_of, scratch: str, timeout: float, progress,
            tls: dict | None = None, stall: float = 60) -> dict:
    lines_file = None
    hop_lines: dict[int, str] = {}
    out = {"row": row.name, "label": row.label, "src_batch": row.src_batch, "sink_batch": row.sink_batch,
           "curve": row.curve, "runs": []}
    try:
        if row.source == "taildir" and not row.hop:
            lines = n_of(row, "flume")
            logdir = tempfile.mkdtemp(prefix="lines-", dir=scratch)
            lines_file = os.path.join(logdir, "lines.log")
            write_lines(lines_file, lines)
            out["cat_runs"], out["cat_copy_runs"] = [], []
        for r in range(rounds):
            if lines_file:
                s = cat_seconds(lines_file)
                out["cat_runs"].append({"round": r + 1, "seconds": s, "events_per_s": lines / s})
                s = cat_seconds(lines_file, os.path.join(scratch, "cat-copy"))
                out["cat_copy_runs"].append({"round": r + 1, "seconds": s, "events_per_s": lines / s})
            for engine in row_engines(row, engines.order):
                n = n_of(row, engine)
                if row.hop:
                    if n not in hop_lines:      # the upstream's input: n lines, written once per row
                        hop_lines[n] = os.path.join(tempfile.mkdtemp(prefix="lines-", dir=scratch), "lines.log")
                        write_lines(hop_lines[n], n, BODY + 1)
                    res = run_hop(engines, engine, row, n, scratch, hop_lines[n], tls, timeout, stall)
                else:
                    res = run_once(engines, engine, row, n, scratch, lines_file, timeout)
                res["round"] = r + 1
                out["runs"].append(res)
                progress(res)
    finally:
        for path in [lines_file, *hop_lines.values()]:
            if path:
                shutil.rmtree(os.path.dirname(path), ignore_errors=True)
    out["summary"] = {e: summarise([x for x in out["runs"] if x["engine"] == e]) for e in row_engines(row, engines.order)}
    if lines_file:
        out["summary"]["cat"] = summarise(out["cat_runs"])
        out["summary"]["cat_copy"] = summarise(out["cat_copy_runs"])
    return out


def row_engines(row: Row, order: list[str]) -> list[str]:
    return [e for e in order if e in row.engines]


def summarise(runs: list[dict]) -> dict:
    s = {}
    for key in ("events_per_s", "steady_events_per_s", "cpu_us_per_event", "steady_cpu_us_per_event",
                "peak_rss_mb", "peak_rss_mb_up", "peak_rss_mb_down", "seconds", "first_event_s"):
        vals = [x[key] for x in runs if x.get(key) is not None]
        if vals:
            s[key] = {"median": statistics.median(vals), "min": min(vals), "max": max(vals)}
    if runs and "events" in runs[0]:
        s["events"] = runs[0]["events"]
    return s


def load_average() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def _rate(v: dict | None) -> str:
    if not v:
        return "-"
    def f(x):
        return "%.3g M" % (x / 1e6) if x >= 1e6 else "%.3g k" % (x / 1e3)
    return "%s (%s – %s)" % (f(v["median"]), f(v["min"]), f(v["max"])) if v["min"] != v["max"] else f(v["median"])


def _ratio(s: dict, base: dict) -> str:
    return ", ".join("%.2f" % (s[k]["median"] / base[k]["median"]) if k in s and k in base else "-"
                     for k in ("events_per_s", "steady_events_per_s"))


def table(result: dict) -> str:
    """Hop rows: events/s, CPU and RSS are both agents'; the flight row's ratio is to fastsync's
    avro hop of the same run (marked `/ avro-hop-1000`), not to Flume."""
    out = ["| row | engine | N | events/s whole run, median (range) | steady events/s | CPU µs/event "
           "(steady) | peak RSS MB | fastsync / Flume (whole, steady) |",
           "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    by_name = {r["row"]: r for r in result["rows"]}
    for row in result["rows"]:
        sm = row["summary"]
        base = ROWS[row["row"]].ratio_to
        for engine in [e for e in ("cat", "cat_copy", *ENGINES) if e in sm]:
            s = sm[engine]
            ratio = ""
            if engine == "fastsync" and base:
                if "fastsync" in by_name.get(base, {}).get("summary", {}):
                    ratio = "%s (/ %s)" % (_ratio(s, by_name[base]["summary"]["fastsync"]), base)
            elif engine == "fastsync" and "flume" in sm:
                ratio = _ratio(s, sm["flume"])
            if engine in ("cat", "cat_copy"):
                out.append("| %s | `cat FILE > %s` | | %s | | | | |" % (
                    row["row"], "/dev/null" if engine == "cat" else "OUT", _rate(s["events_per_s"])))
                continue
            out.append("| %s | %s | %s | %s | %s | %.3g (%.3g) | %.0f | %s |" % (
                row["row"], engine, format(s["events"], ","), _rate(s["events_per_s"]),
                _rate(s.get("steady_events_per_s")), s["cpu_us_per_event"]["median"],
                s.get("steady_cpu_us_per_event", {"median": float("nan")})["median"], s["peak_rss_mb"]["median"],
                ratio))
    return "\n".join(out + hop_targets(result))


def hop_targets(result: dict) -> list[str]:
    """issue 16's targets for the hop, from this run's medians (steady and whole run)."""
    sm = {r["row"]: r["summary"] for r in result["rows"]}
    avro, flight = sm.get("avro-hop-1000", {}), sm.get("flight-hop-1000", {}).get("fastsync")
    lines = []
    if "fastsync" in avro and "flume" in avro:
        lines.append("- fastsync avro hop / Flume avro hop (target >= 5): %s (whole, steady)"
                     % _ratio(avro["fastsync"], avro["flume"]))
    if flight and "fastsync" in avro:
        lines.append("- flight hop / fastsync avro hop (target >= 3): %s (whole, steady)"
                     % _ratio(flight, avro["fastsync"]))
    if flight:
        lines.append("- flight hop events/s (target >= 2 M): %s whole, %s steady" % (
            _rate(flight["events_per_s"]), _rate(flight.get("steady_events_per_s"))))
    return [""] + lines if lines else []


def plots(result: dict, out_dir: str) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    colors = {"flume": "tab:orange", "fastsync": "tab:blue"}
    title = "load average %s, %s" % (result["load_average_before"], result["when"])
    paths = []
    curve = sorted((r for r in result["rows"] if r["curve"]), key=lambda r: r["src_batch"])
    if curve:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for engine in ENGINES:
            pts = [(r["src_batch"], r["summary"][engine]) for r in curve if engine in r["summary"]]
            for key, style, what in (("steady_events_per_s", "-o", "steady"), ("events_per_s", "--.", "whole run")):
                xs = [b for b, s in pts if key in s]
                med = [s[key]["median"] for b, s in pts if key in s]
                err = [[m - s[key]["min"] for (b, s), m in zip(pts, med)],
                       [s[key]["max"] - m for (b, s), m in zip(pts, med)]]
                ax.errorbar(xs, med, yerr=err, fmt=style, color=colors[engine], capsize=3,
                            label="%s, %s" % ("Flume 1.11.0" if engine == "flume" else "fastsync", what))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("batch size (source batchSize = sink batchSize)")
        ax.set_ylabel("events/s")
        ax.set_title("seq -> memory -> null\n" + title, fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        paths.append(os.path.join(out_dir, "events_per_s_vs_batch.png"))
        fig.savefig(paths[-1], dpi=100)
        plt.close(fig)
    for key, ylabel, name, log in (("cpu_us_per_event", "CPU µs per event (whole run, start-up included)",
                                    "cpu_per_event.png", True),
                                   ("peak_rss_mb", "peak RSS, MB", "peak_rss.png", False)):
        rows = result["rows"]
        fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(rows)), 4.5))
        width = 0.4
        for i, engine in enumerate(ENGINES):
            xs = [j + (i - 0.5) * width for j, r in enumerate(rows) if engine in r["summary"]]
            ss = [r["summary"][engine][key] for r in rows if engine in r["summary"]]
            ax.bar(xs, [s["median"] for s in ss], width, color=colors[engine],
                   yerr=[[s["median"] - s["min"] for s in ss], [s["max"] - s["median"] for s in ss]], capsize=3,
                   label="Flume 1.11.0" if engine == "flume" else "fastsync")
        ax.set_xticks(range(len(rows)), [r["row"] for r in rows], rotation=30, ha="right", fontsize=8)
        if log:
            ax.set_yscale("log")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=9)
        ax.grid(True, axis="y", which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        paths.append(os.path.join(out_dir, name))
        fig.savefig(paths[-1], dpi=100)
        plt.close(fig)
    return paths


def main(argv=None) -> int:
    global POLL
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", help="comma-separated, of: %s (default all; --quick: %s)"
                    % (", ".join(ROWS), ", ".join(QUICK_ROWS)))
    ap.add_argument("--rounds", type=int, help="rounds per row, each engine once per round (default 2; --quick 1)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: %d events (TAILDIR: lines) per run, one round" % QUICK_EVENTS)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every row's N by this")
    ap.add_argument("--events", type=int, help="N for every row and engine (overrides the defaults)")
    ap.add_argument("--engines", default="flume,fastsync", help="which to run, in this order each round")
    ap.add_argument("--java-opts", default="-Xmx1g", help="the JVM's options for Flume")
    ap.add_argument("--poll", type=float, default=POLL, help="seconds between two reads of an engine's /metrics")
    ap.add_argument("--timeout", type=float, default=600, help="seconds a run may take")
    ap.add_argument("--stall", type=float, default=60,
                    help="hop rows: seconds without a new event (or before the downstream listens) that fail a run")
    ap.add_argument("--out", default=os.path.join(HERE, "results"), help="where results.json and the PNGs go")
    ap.add_argument("--scratch", help="directory for the agents' files (default: a temporary one in --out)")
    args = ap.parse_args(argv)
    names = args.rows.split(",") if args.rows else (QUICK_ROWS if args.quick else DEFAULT_ROWS)
    unknown = [n for n in names if n not in ROWS]
    if unknown:
        ap.error("--rows: unknown row %s (rows: %s)" % (", ".join(unknown), ", ".join(ROWS)))
    order = args.engines.split(",")
    if not order or any(e not in ENGINES for e in order):
        ap.error("--engines: flume and/or fastsync, comma-separated")
    alone = [n for n in names if not row_engines(ROWS[n], order)]
    if alone:
        ap.error("--rows: %s run%s on %s only (no Flume peer); --engines has none of them" % (
            ", ".join(alone), "s" if len(alone) == 1 else "", ", ".join(ROWS[alone[0]].engines)))
    if "fastsync" in order:
        lacking = {n: fastsync_lacks(ROWS[n]) for n in names}
        lacking = {n: what for n, what in lacking.items() if what}
        if lacking:
            what = sorted({w for ws in lacking.values() for w in ws})
            flume_too = all("flume" in ROWS[n].engines for n in lacking)
            raise SystemExit("bench/peers: fastsync has no %s (rows %s): leave the rows out%s" % (
                ", ".join(what), ", ".join(lacking), " or run them with --engines flume" if flume_too else ""))
    rounds = args.rounds or (1 if args.quick else 2)
    POLL = args.poll
    if rounds < 1:
        ap.error("--rounds: at least 1")

    def n_of(row: Row, engine: str) -> int:
        if args.events:
            return args.events
        if args.quick:
            return QUICK_EVENTS
        # the TAILDIR rows read one file for both engines: N is the row's line count (a hop
        # row writes a file per N, so each engine has its own)
        same = row.source == "taildir" and not row.hop
        return max(1000, int((row.n_flume if same else row.events(engine)) * args.scale))

    os.makedirs(args.out, exist_ok=True)
    if args.scratch:
        os.makedirs(args.scratch, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix="peers-", dir=args.scratch or args.out)
    try:
        engines = Engines(args.java_opts.split(), scratch)
        engines.order = order
        tls = make_tls(scratch) if any(ROWS[n].ssl for n in names) else None
        result = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_average_before": load_average(),
                  "cpus": os.cpu_count(), "java_opts": args.java_opts, "rounds": rounds,
                  "versions": engines.versions(), "rows": []}

        def progress(res):
            print("  %-18s %-8s round %d: %s events, %.2f s, %.0f events/s (steady %s), %.3g µs CPU/event, "
                  "%.0f MB" % (res["row"], res["engine"], res["round"], format(res["events"], ","), res["seconds"],
                               res["events_per_s"], "%.0f" % res["steady_events_per_s"]
                               if res["steady_events_per_s"] else "-", res["cpu_us_per_event"],
                               res["peak_rss_mb"]), file=sys.stderr, flush=True)

        for name in names:
            result["rows"].append(run_row(engines, ROWS[name], rounds, n_of, scratch, args.timeout, progress,
                                          tls, args.stall))
        result["load_average_after"] = load_average()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(result, f, indent=1)
    paths = plots(result, args.out)
    print("load average %s before, %s after; %d round(s)" % (result["load_average_before"],
                                                              result["load_average_after"], rounds))
    print(table(result))
    print("wrote %s" % ", ".join([os.path.join(args.out, "results.json")] + paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
