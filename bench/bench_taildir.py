"""Log ingestion: `TAILDIR -> memory -> file_roll` and `TAILDIR -> file -> parquet` lines/s on
an access log of 100-200-byte lines, next to `cat FILE > /dev/null` measured in the same run.

    python bench/bench_taildir.py [--lines 2000000] [--rounds 3]

Each agent is timed from its start until its sink's EventDrainSuccessCount (read from
--metrics-port) reaches the number of lines; every line is checked to have arrived. In the
test run the body runs once on few lines as a check.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

AGENT = [sys.executable, "-m", "fastsync", "agent", "-n", "a1", "--log-level", "WARNING", "--no-reload-conf"]


def access_log(path: str, n: int) -> int:
    """n Apache combined-format lines of 100-200 bytes; returns the file's size."""
    rng = random.Random(42)
    paths = ["/", "/index.html", "/api/v1/items?id=%d", "/static/app.js", "/images/logo.png", "/login"]
    agents = ["curl/8.5.0", "Mozilla/5.0 (X11; Linux x86_64)", "python-requests/2.32"]
    with open(path, "w") as f:
        for i in range(n):
            p = rng.choice(paths)
            line = '10.%d.%d.%d - - [27/Nov/2026:10:%02d:%02d +0000] "GET %s HTTP/1.1" %d %d "-" "%s"' % (
                rng.randrange(256), rng.randrange(256), rng.randrange(256), (i // 60) % 60, i % 60,
                p % i if "%d" in p else p, rng.choice((200, 200, 200, 304, 404, 500)), rng.randrange(100, 99999),
                rng.choice(agents))
            f.write(line[:200].ljust(100) + "\n")
    return os.path.getsize(path)


def cat_seconds(path: str) -> float:
    subprocess.run(["cat", path], stdout=subprocess.DEVNULL, check=True)      # warm the page cache
    t = time.perf_counter()
    subprocess.run(["cat", path], stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config(work: str, logdir: str, sink: str) -> str:
    lines = [
        "a1.sources = r1", "a1.channels = c1", "a1.sinks = k1",
        "a1.sources.r1.type = TAILDIR", "a1.sources.r1.channels = c1",
        "a1.sources.r1.filegroups = f1", "a1.sources.r1.filegroups.f1 = %s/.*\\\\.log" % logdir,
        "a1.sources.r1.positionFile = %s/taildir_position.json" % work,
        "a1.sources.r1.batchSize = 10000",
        "a1.sinks.k1.channel = c1",
    ]
    if sink == "file_roll":
        lines += ["a1.channels.c1.type = memory", "a1.channels.c1.capacity = 200000",
                  "a1.channels.c1.transactionCapacity = 10000",
                  "a1.sinks.k1.type = file_roll", "a1.sinks.k1.sink.directory = %s/out" % work,
                  "a1.sinks.k1.sink.rollInterval = 0", "a1.sinks.k1.sink.batchSize = 10000"]
    else:
        lines += ["a1.channels.c1.type = file", "a1.channels.c1.checkpointDir = %s/ck" % work,
                  "a1.channels.c1.dataDirs = %s/data" % work, "a1.channels.c1.capacity = 1000000",
                  "a1.channels.c1.transactionCapacity = 10000", "a1.channels.c1.minimumRequiredSpace = 0",
                  "a1.sinks.k1.type = parquet", "a1.sinks.k1.parquet.path = %s/out" % work,
                  "a1.sinks.k1.parquet.useLocalTimeStamp = true", "a1.sinks.k1.parquet.batchSize = 10000",
                  "a1.sinks.k1.parquet.rollInterval = 0", "a1.sinks.k1.parquet.rollSize = 0",
                  "a1.sinks.k1.parquet.rollCount = 0"]
    path = os.path.join(work, "agent.properties")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def run_agent(logdir: str, n: int, sink: str) -> tuple[float, float]:
    """Seconds from the agent's start until its sink drained n events, and the steady
    rate: lines/s between 10 % and 90 % drained (start-up excluded)."""
    work = tempfile.mkdtemp(prefix="taildir-bench-")
    port = free_port()
    conf = config(work, logdir, sink)
    t0 = time.perf_counter()
    proc = subprocess.Popen(AGENT + ["-f", conf, "--metrics-port", str(port)], stderr=subprocess.PIPE, text=True)
    marks = {}
    try:
        drained = 0
        while drained < n:
            if proc.poll() is not None:
                raise SystemExit("bench: the agent exited: %s" % proc.stderr.read()[-2000:])
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
                    drained = int(json.load(r)["SINK.k1"]["EventDrainSuccessCount"])
            except (OSError, KeyError, ValueError):
                pass
            for frac in (0.1, 0.9):
                if drained >= frac * n and frac not in marks:
                    marks[frac] = (time.perf_counter(), drained)
            if time.perf_counter() - t0 > 600:
                raise SystemExit("bench: %d of %d lines after 600 s" % (drained, n))
            time.sleep(0.02)
        seconds = time.perf_counter() - t0
        if drained != n:
            raise SystemExit("bench: the sink drained %d events for %d lines" % (drained, n))
        (t1, d1), (t2, d2) = marks[0.1], marks[0.9]
        return seconds, (d2 - d1) / (t2 - t1) if t2 > t1 else float("nan")
    finally:
        proc.terminate()
        proc.wait(60)
        if sink == "file_roll" and proc.returncode == 0:
            out = os.path.join(work, "out")
            got = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
            want = sum(os.path.getsize(os.path.join(logdir, f)) for f in os.listdir(logdir))
            assert got == want, "file_roll wrote %d bytes for %d" % (got, want)
        shutil.rmtree(work, ignore_errors=True)


def measure(n: int, rounds: int) -> list[dict]:
    logdir = tempfile.mkdtemp(prefix="taildir-logs-")
    try:
        size = access_log(os.path.join(logdir, "access.log"), n)
        out = []
        for r in range(rounds):
            cat = cat_seconds(os.path.join(logdir, "access.log"))
            mem, mem_steady = run_agent(logdir, n, "file_roll")
            pq, pq_steady = run_agent(logdir, n, "parquet")
            out.append(dict(round=r + 1, lines=n, bytes=size, cat_lines_per_s=n / cat,
                            memory_file_roll_lines_per_s=n / mem, memory_file_roll_steady=mem_steady,
                            ratio_to_cat=cat / mem, file_parquet_lines_per_s=n / pq, file_parquet_steady=pq_steady))
        return out
    finally:
        shutil.rmtree(logdir, ignore_errors=True)


def test_taildir_pipelines(benchmark):
    n = 2_000_000 if benchmark.enabled else 20_000
    result = {}

    def once():
        result.update(measure(n, 1)[0])
    benchmark.pedantic(once, rounds=3 if benchmark.enabled else 1, iterations=1)
    benchmark.extra_info.update(result)
    assert result["lines"] == n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, default=2_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    print("| round | lines | MB | cat lines/s | TAILDIR -> memory -> file_roll lines/s (steady) | ratio to cat | "
          "TAILDIR -> file -> parquet lines/s (steady) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in measure(args.lines, args.rounds):
        print("| %d | %d | %.0f | %s | %s (%s) | %.3f | %s (%s) |" % (
            r["round"], r["lines"], r["bytes"] / 1e6, format(round(r["cat_lines_per_s"]), ","),
            format(round(r["memory_file_roll_lines_per_s"]), ","), format(round(r["memory_file_roll_steady"]), ","),
            r["ratio_to_cat"], format(round(r["file_parquet_lines_per_s"]), ","),
            format(round(r["file_parquet_steady"]), ",")))
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
