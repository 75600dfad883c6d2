"""End-to-end tests of the `hdfs` and `parquet` sinks: real agents, real files."""
from __future__ import annotations

import bz2
import gzip
import re
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from e2e_support import line_of, poll, write_config

UTC = {"TZ": "UTC"}     # the agent renders path times in its local time zone


def agent_config(sink_type: str, sink: dict, source: dict, interceptors: dict | None = None,
                 sink_batch: int = 100) -> dict:
    prefix = "parquet" if sink_type == "parquet" else "hdfs"
    cfg = {
        "a1.sources": "r1", "a1.channels": "c1", "a1.sinks": "k1",
        "a1.sources.r1.channels": "c1",
        "a1.channels.c1.type": "memory", "a1.channels.c1.capacity": 10000,
        "a1.channels.c1.transactionCapacity": 1000,
        "a1.sinks.k1.type": sink_type, "a1.sinks.k1.channel": "c1",
        "a1.sinks.k1.%s.batchSize" % prefix: sink_batch,
    }
    cfg.update({"a1.sources.r1." + k: v for k, v in source.items()})
    if interceptors:
        cfg["a1.sources.r1.interceptors"] = " ".join(sorted({k.split(".")[0] for k in interceptors}))
        cfg.update({"a1.sources.r1.interceptors." + k: v for k, v in interceptors.items()})
    cfg.update({"a1.sinks.k1.%s.%s" % (prefix, k): v for k, v in sink.items()})
    return cfg


def seq(n: int, batch: int = 100) -> dict:
    return {"type": "seq", "totalEvents": n, "batchSize": batch}


def exec_lines(lines: list[str], batch: int = 100, then: str = "") -> dict:
    script = "printf '%s'" % "".join(l + "\\n" for l in lines)
    return {"type": "exec", "command": script + then, "shell": "/bin/sh -c", "batchSize": batch,
            "batchTimeout": 100}


# `<ms> <kind> <text>` lines: the timestamp and kind headers come from the body
EXTRACT = {"i1.type": "regex_extractor", "i1.regex": "^([0-9]+) ([a-z]+)", "i1.serializers": "s1 s2",
           "i1.serializers.s1.name": "timestamp", "i1.serializers.s2.name": "kind"}
NO_ROLL = {"rollCount": 0, "rollSize": 0, "rollInterval": 0}


def files(root: Path, pattern: str = "*") -> list[Path]:
    """Files below root, ordered by path (names end in their counter, of equal width)."""
    return sorted(p for p in Path(root).rglob(pattern) if p.is_file())


def lines_of(paths) -> list[bytes]:
    out = []
    for p in paths:
        data = p.read_bytes()
        assert data.endswith(b"\n"), p
        out.extend(data[:-1].split(b"\n"))
    return out


def run(run_agent, tmp_path, cfg, timeout=30):
    p = run_agent("a1", write_config(tmp_path, cfg), "--exit-when-done", timeout=timeout, env=UTC)
    assert p.returncode == 0, p.stderr
    return p


# -- paths -------------------------------------------------------------------------------------

def test_time_and_header_escapes_file_url(tmp_path, run_agent):
    out = tmp_path / "out"
    stamps = [1700000000000, 1700000001500, 1700003600000, 1712345678000]
    lines = ["%d %s e%d" % (ts, kind, i) for i, (ts, kind) in enumerate(zip(stamps, "abab"))]
    lines.append("%d a e4" % stamps[0])
    sink = dict(NO_ROLL, path="file://%s/%%Y/%%m/%%d/%%H%%M%%S-%%y-%%j-%%s/%%{kind}" % out,
                filePrefix="ev-%{kind}", fileSuffix=".log")
    run(run_agent, tmp_path, agent_config("hdfs", sink, exec_lines(lines), EXTRACT))
    expected = {}
    for line in lines:
        ts, kind, _ = line.split()
        secs = int(ts) // 1000
        d = time.strftime("%Y/%m/%d/%H%M%S-%y-%j-", time.gmtime(secs)) + "%d/%s" % (secs, kind)
        expected.setdefault(d, []).append(line.encode())
    got = {}
    for p in files(out):
        assert re.fullmatch(r"ev-[ab]\.\d{13}\.log", p.name), p.name
        assert p.name.startswith("ev-" + p.parent.name)
        got.setdefault(str(p.parent.relative_to(out)), []).extend(lines_of([p]))
    assert got == expected


def test_round_down_to_ten_minutes(tmp_path, run_agent):
    out = tmp_path / "out"
    base = 1700000000000 - 1700000000000 % 3600000       # a whole hour
    minute = 60000
    lines = ["%d x m%d" % (base + m * minute, m) for m in (3, 7, 13, 59)]
    sink = dict(NO_ROLL, path="%s/%%H%%M" % out, round="true", roundValue=10, roundUnit="minute")
    run(run_agent, tmp_path, agent_config("hdfs", sink, exec_lines(lines), EXTRACT))
    hh = time.strftime("%H", time.gmtime(base / 1000))
    got = {p.parent.name: lines_of([p]) for p in files(out)}
    assert got == {hh + "00": [b"%d x m3" % (base + 3 * minute), b"%d x m7" % (base + 7 * minute)],
                   hh + "10": [b"%d x m13" % (base + 13 * minute)],
                   hh + "50": [b"%d x m59" % (base + 59 * minute)]}


def test_time_zone(tmp_path, run_agent):
    out = tmp_path / "out"
    ts = 1700000000000      # 2023-11-14 22:13:20 UTC = 2023-11-15 07:13:20 in Tokyo
    sink = dict(NO_ROLL, path="%s/%%Y%%m%%d-%%H" % out, timeZone="Asia/Tokyo", round="true", roundUnit="hour",
                roundValue=12)
    run(run_agent, tmp_path, agent_config("hdfs", sink, exec_lines(["%d a x" % ts]), EXTRACT))
    assert [p.parent.name for p in files(out)] == ["20231115-00"]


def test_timestamp_interceptor_and_local_time(tmp_path, run_agent):
    for name, extra, interceptors in (("ts", {}, {"i1.type": "timestamp"}),
                                      ("local", {"useLocalTimeStamp": "true"}, None)):
        before = time.gmtime()
        out = tmp_path / name
        cfg = agent_config("hdfs", dict(NO_ROLL, path="%s/%%Y-%%m-%%d" % out, **extra), seq(50), interceptors)
        run(run_agent, tmp_path, cfg)
        days = {time.strftime("%Y-%m-%d", before), time.strftime("%Y-%m-%d", time.gmtime())}
        fs = files(out)
        assert fs and {p.parent.name for p in fs} <= days
        assert lines_of(fs) == [b"%d" % i for i in range(50)]


def test_event_without_timestamp_is_an_error(tmp_path, agent):
    out = tmp_path / "out"
    cfg = agent_config("hdfs", dict(NO_ROLL, path="%s/%%Y" % out), seq(5))
    p = agent("a1", write_config(tmp_path, cfg), "--drain-timeout", "1", env=UTC)
    p.wait_for_stderr(r"Expected timestamp in the Flume event headers, but it wasn't found", timeout=20)
    assert p.stop(timeout=60) == 0     # the events stay in the channel (retried, as Flume does)
    assert not out.exists() or not files(out), "nothing may be written without a timestamp"


def test_relative_path_and_fsync(tmp_path, run_agent):
    cfg = agent_config("hdfs", dict(NO_ROLL, path="rel/%{kind}/", fsync="true", inUseSuffix=""),
                       exec_lines(["1 a x", "2 b y"]), EXTRACT)
    run(run_agent, tmp_path, cfg)     # the agent runs in tmp_path
    assert {p.parent.name: lines_of([p]) for p in files(tmp_path / "rel")} == {"a": [b"1 a x"], "b": [b"2 b y"]}


# -- rolling -----------------------------------------------------------------------------------

def test_roll_count(tmp_path, run_agent):
    out = tmp_path / "out"
    cfg = agent_config("org.apache.flume.sink.hdfs.HDFSEventSink", {"path": out, "rollCount": 10, "rollSize": 0,
                                                                     "rollInterval": 0}, seq(95, batch=7), sink_batch=13)
    run(run_agent, tmp_path, cfg)     # Flume's class name
    fs = files(out)
    assert [len(lines_of([p])) for p in fs] == [10] * 9 + [5]
    assert lines_of(fs) == [b"%d" % i for i in range(95)]
    assert all(re.fullmatch(r"FlumeData\.\d{13}", p.name) for p in fs), [p.name for p in fs]


def test_roll_size_counts_body_bytes(tmp_path, run_agent):
    out = tmp_path / "out"
    n, roll = 120, 50
    run(run_agent, tmp_path, agent_config("hdfs", {"path": out, "rollSize": roll, "rollCount": 0,
                                                   "rollInterval": 0}, seq(n, batch=30), sink_batch=45))
    expected, current, size = [], [], 0     # reference: roll once a file's bodies reach rollSize
    for i in range(n):
        body = b"%d" % i
        current.append(body)
        size += len(body)
        if size >= roll:
            expected.append(current)
            current, size = [], 0
    if current:
        expected.append(current)
    assert [lines_of([p]) for p in files(out)] == expected


def test_roll_interval_and_in_use_names(tmp_path, agent):
    out = tmp_path / "out"
    src = exec_lines(["a", "b"], batch=1, then="; sleep 1.6; printf 'c\\n'; sleep 30")
    sink = {"path": out, "rollInterval": 1, "rollCount": 0, "rollSize": 0, "inUsePrefix": "_",
            "inUseSuffix": ".busy"}
    p = agent("a1", write_config(tmp_path, agent_config("hdfs", sink, src, sink_batch=1)), env=UTC)
    in_use = poll(lambda: files(out, "_*.busy"), 15, message="an in-use file")
    assert not files(out, "FlumeData.*"), "no file is final while in use"
    assert re.fullmatch(r"_FlumeData\.\d{13}\.busy", in_use[0].name)
    # rolled after 1 s (the sink checks on each take and when a take finds nothing)
    first = poll(lambda: [f for f in files(out) if not f.name.startswith("_")], 15, message="rolled file")
    assert lines_of(first[:1]) == [b"a", b"b"]
    poll(lambda: len(files(out)) >= 2, 15)
    assert p.stop(timeout=60) == 0
    fs = files(out)
    assert all(not f.name.startswith("_") and not f.name.endswith(".busy") for f in fs), fs
    assert lines_of(fs) == [b"a", b"b", b"c"] and len(fs) == 2


def test_max_open_files_closes_least_recent(tmp_path, run_agent):
    out = tmp_path / "out"
    lines = ["1 a x", "2 b y", "3 a z", "4 c w"]
    sink = dict(NO_ROLL, path="%s/%%{kind}" % out, maxOpenFiles=2)
    p = run(run_agent, tmp_path, agent_config("hdfs", sink, exec_lines(lines, batch=1), EXTRACT, sink_batch=1))
    # a, b open; a written again; c closes b (least recent); stop closes a and c
    assert re.findall(r"closed \S+/(\w)/FlumeData\.\d+ \(maxOpenFiles", p.stderr) == ["b"], p.stderr
    got = sorted((p.parent.name, lines_of([p])) for p in files(out))
    assert got == [("a", [b"1 a x", b"3 a z"]), ("b", [b"2 b y"]), ("c", [b"4 c w"])]


def test_parquet_roll_size_counts_written_row_groups(tmp_path, run_agent):
    out = tmp_path / "out"
    sink = {"path": out, "rollSize": 1, "rollCount": 0, "rollInterval": 0, "rowGroupSize": 10}
    run(run_agent, tmp_path, agent_config("parquet", sink, seq(35, batch=5), sink_batch=5))
    tables = [pq.read_table(p) for p in files(out)]
    assert [t.num_rows for t in tables] == [10, 10, 10, 5]
    assert pa.concat_tables(tables).column("body").to_pylist() == [b"%d" % i for i in range(35)]


def test_idle_timeout_closes_file(tmp_path, agent):
    out = tmp_path / "out"
    src = exec_lines(["1", "2", "3"], then="; sleep 30")
    sink = dict(NO_ROLL, path=out, idleTimeout=1)
    p = agent("a1", write_config(tmp_path, agent_config("hdfs", sink, src)), env=UTC)
    done = poll(lambda: [f for f in files(out) if not f.name.endswith(".tmp")], 15, message="closed on idle")
    assert not files(out, "*.tmp")
    assert lines_of(done) == [b"1", b"2", b"3"]
    assert p.stop(timeout=60) == 0
    assert files(out) == done


def _read_gzip(p):
    with gzip.open(p) as f:             # fails unless the stream is complete
        return f.read()


@pytest.mark.parametrize("codec,ext,read", [
    ("gzip", ".gz", _read_gzip),
    ("bzip2", ".bz2", lambda p: bz2.decompress(p.read_bytes())),
    ("zstd", ".zst", lambda p: pa.input_stream(str(p), compression="zstd").read()),
    ("lz4", ".lz4", lambda p: pa.input_stream(str(p), compression="lz4").read()),
])
def test_compressed_stream(tmp_path, run_agent, codec, ext, read):
    out = tmp_path / "out"
    sink = {"path": out, "fileType": "CompressedStream", "codeC": codec, "rollCount": 300, "rollSize": 0,
            "rollInterval": 0}
    run(run_agent, tmp_path, agent_config("hdfs", sink, seq(1000, batch=64), sink_batch=100))
    fs = files(out)
    assert [p.suffix for p in fs] == [ext] * 4
    lines = []
    for p in fs:
        data = read(p)
        assert data.endswith(b"\n")
        lines.extend(data[:-1].split(b"\n"))
    assert lines == [b"%d" % i for i in range(1000)]


# -- parquet -----------------------------------------------------------------------------------

def test_parquet_read_back_with_pyarrow_and_duckdb(tmp_path, run_agent):
    duckdb = pytest.importorskip("duckdb")
    out = tmp_path / "out"
    n = 250
    sink = {"path": "%s/%%{host}" % out, "rollCount": 100, "rollSize": 0, "rollInterval": 0,
            "bodyType": "utf8", "rowGroupSize": 40}
    inter = {"i1.type": "static", "i1.key": "host", "i1.value": "h1"}
    run(run_agent, tmp_path, agent_config("parquet", sink, seq(n, batch=30), inter, sink_batch=70))
    fs = files(out)
    assert [p.parent.name for p in fs] == ["h1"] * 3
    assert all(re.fullmatch(r"FlumeData\.\d{13}\.parquet", p.name) for p in fs)
    counts = [pq.ParquetFile(p).metadata.num_rows for p in fs]
    assert counts == [100, 100, 50]
    assert pq.ParquetFile(fs[0]).metadata.num_row_groups == 3       # 40 + 40 + 20
    table = pa.concat_tables([pq.read_table(p) for p in fs])
    assert table.schema.names == ["body", "host"]
    assert table.column("body").to_pylist() == [str(i) for i in range(n)]
    assert set(table.column("host").to_pylist()) == {"h1"}
    rows = duckdb.sql("select body, host from read_parquet('%s/*/*.parquet') order by cast(body as int)" % out).fetchall()
    assert rows == [(str(i), "h1") for i in range(n)]


def test_parquet_utf8_replaces_invalid_bytes(tmp_path, run_agent):
    out = tmp_path / "out"
    # backslashes doubled for the properties file: printf gets an octal 377 byte (not UTF-8)
    src = {"type": "exec", "command": "printf 'ok\\n\\\\377x\\n'", "shell": "/bin/sh -c", "batchTimeout": 100}
    run(run_agent, tmp_path, agent_config("parquet", dict(NO_ROLL, path=out, bodyType="utf8"), src))
    assert pq.read_table(files(out)[0]).column("body").to_pylist() == ["ok", "\ufffdx"]


def test_parquet_new_header_rolls_file(tmp_path, run_agent):
    out = tmp_path / "out"
    src = exec_lines(["a1", "a2", "xb", "a3"], batch=2)
    inter = {"i1.type": "regex_extractor", "i1.regex": "^x(.)", "i1.serializers": "s1",
             "i1.serializers.s1.name": "tag"}
    run(run_agent, tmp_path, agent_config("parquet", dict(NO_ROLL, path=out), src, inter, sink_batch=2))
    tables = [pq.read_table(p) for p in files(out)]
    assert [t.to_pylist() for t in tables] == [
        [{"body": b"a1"}, {"body": b"a2"}],
        [{"body": b"xb", "tag": "b"}, {"body": b"a3", "tag": None}],
    ]
    assert tables[0].schema.field("body").type in (pa.binary(), pa.large_binary())


def test_parquet_readable_only_after_close(tmp_path, agent):
    out = tmp_path / "out"
    src = exec_lines(["p1", "p2", "p3"], then="; sleep 30")
    sink = dict(NO_ROLL, path="file://%s" % out, compression="zstd", bodyType="utf8")
    p = agent("a1", write_config(tmp_path, agent_config("parquet", sink, src)), env=UTC)
    tmp = poll(lambda: files(out, "*.parquet.tmp"), 15, message="in-use parquet file")
    time.sleep(0.5)
    assert not files(out, "*.parquet")
    with pytest.raises(pa.ArrowInvalid):
        pq.read_table(tmp[0])             # no footer yet
    assert p.stop(timeout=60) == 0
    final = files(out)
    assert [f.name for f in final] == [tmp[0].name[:-len(".tmp")]]
    assert pq.read_table(final[0]).to_pylist() == [{"body": "p1"}, {"body": "p2"}, {"body": "p3"}]
    assert pq.ParquetFile(final[0]).metadata.row_group(0).column(0).compression == "ZSTD"


# -- configuration errors ----------------------------------------------------------------------

BAD = [
    # id, sink type, keys, key named in the error, message fragment
    ("no-path", "hdfs", {"hdfs.rollCount": 1}, "a1.sinks.k1.hdfs.path", "missing"),
    ("bad-escape", "hdfs", {"hdfs.path": "/x/%Q"}, "a1.sinks.k1.hdfs.path", "%Q"),
    ("sequencefile", "hdfs", {"hdfs.path": "/x", "hdfs.fileType": "SequenceFile"}, "a1.sinks.k1.hdfs.fileType",
     "SequenceFile"),
    ("no-codec", "hdfs", {"hdfs.path": "/x", "hdfs.fileType": "CompressedStream"}, "a1.sinks.k1.hdfs.codeC", "codeC"),
    ("bad-codec", "hdfs", {"hdfs.path": "/x", "hdfs.fileType": "CompressedStream", "hdfs.codeC": "lzo"},
     "a1.sinks.k1.hdfs.codeC", "lzo"),
    ("round-value", "hdfs", {"hdfs.path": "/x", "hdfs.round": "true", "hdfs.roundValue": 99},
     "a1.sinks.k1.hdfs.roundValue", "99"),
    ("time-zone", "hdfs", {"hdfs.path": "/x", "hdfs.timeZone": "Mars/Olympus"}, "a1.sinks.k1.hdfs.timeZone", "Mars"),
    ("round-unit", "hdfs", {"hdfs.path": "/x", "hdfs.roundUnit": "week"}, "a1.sinks.k1.hdfs.roundUnit", "week"),
    ("bad-url", "hdfs", {"hdfs.path": "nosuchfs://host/x/%Y"}, "a1.sinks.k1.hdfs.path", "nosuchfs"),
    ("negative-roll", "parquet", {"parquet.path": "/x", "parquet.rollSize": -1}, "a1.sinks.k1.parquet.rollSize", "-1"),
    ("body-type", "parquet", {"parquet.path": "/x", "parquet.bodyType": "json"}, "a1.sinks.k1.parquet.bodyType",
     "json"),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_config_errors(tmp_path, run_agent, case):
    _, kind, keys, key, fragment = case
    cfg = {
        "a1.sources": "r1", "a1.channels": "c1", "a1.sinks": "k1",
        "a1.sources.r1.type": "seq", "a1.sources.r1.channels": "c1", "a1.channels.c1.type": "memory",
        "a1.sinks.k1.type": kind, "a1.sinks.k1.channel": "c1",
    }
    cfg.update({"a1.sinks.k1." + k: v for k, v in keys.items()})
    conf = write_config(tmp_path, cfg, "bad.properties")
    p = run_agent("a1", conf, "--exit-when-done", timeout=20)
    assert p.returncode == 2, (p.returncode, p.stderr)
    err = p.stderr.strip()
    assert len(err.splitlines()) == 1, p.stderr
    text = conf.read_text()
    line_key = key if key.split("a1.sinks.k1.")[1] in keys else "a1.sinks.k1.type"
    assert err.startswith("fastsync: error: %s:%d: %s: " % (conf, line_of(text, line_key), key)), err
    assert fragment in err, err


# -- event data in paths, events that can never be written (issue 13) --------------------------

def http_config(port: int, sink_type: str, sink: dict, mport: int | None = None) -> dict:
    """http source -> memory channel -> an hdfs or parquet sink (small batches)."""
    return agent_config(sink_type, dict(NO_ROLL, **sink), {"type": "http", "port": port}, sink_batch=10)


def start_http_agent(agent, tmp_path, cfg, *extra):
    from e2e_support import wait_for_port
    p = agent("a1", write_config(tmp_path, cfg), *extra, env=UTC)
    wait_for_port(cfg["a1.sources.r1.port"], timeout=15, alive=p.alive)
    return p


def post_events(port: int, events: list) -> None:
    import json
    from test_http_source import post
    assert post(port, json.dumps(events).encode()) == (200, "")


def read_events(sink_type: str, paths) -> list[bytes]:
    if sink_type == "hdfs":
        return lines_of(paths)
    return [b for p in paths for b in pq.read_table(p).column("body").to_pylist()]


@pytest.mark.parametrize("sink_type", ["hdfs", "parquet"])
def test_header_values_cannot_leave_the_base_directory(tmp_path, agent, sink_type):
    from e2e_support import free_port
    root = tmp_path / "data"
    base = root / "a" / "b" / "base"
    port = free_port()
    cfg = http_config(port, sink_type, {"path": "%s/%%{dir}" % base, "filePrefix": "%{name}"})
    p = start_http_agent(agent, tmp_path, cfg)
    post_events(port, [{"headers": {"dir": "../../x", "name": "n"}, "body": "dir up"},
                       {"headers": {"dir": "d", "name": "../../../x"}, "body": "name up"},
                       {"headers": {"dir": "..", "name": ".."}, "body": "dot dot"},
                       {"headers": {"dir": "/etc", "name": "a\\b\u0000c\nd%"}, "body": "odd"}])
    poll(lambda: len(files(base)) >= 4, 20, message="4 files")
    assert p.stop(timeout=60) == 0, p.stderr
    written = {str(f.relative_to(base)): read_events(sink_type, [f]) for f in files(base)}
    assert all(f.is_relative_to(base) for f in files(root)), files(root)
    names = {re.sub(r"\.\d{13}(\.parquet)?$", "", k): v for k, v in written.items()}
    assert names == {"..%2F..%2Fx/n": [b"dir up"], "d/..%2F..%2F..%2Fx": [b"name up"],
                     "%2E%2E/..": [b"dot dot"], "%2Fetc/a%5Cb%00c%0Ad%25": [b"odd"]}


@pytest.mark.parametrize("sink_type", ["hdfs", "parquet"])
def test_bad_timestamps_go_to_the_dead_letter_file_and_the_rest_is_written(tmp_path, agent, sink_type):
    import json
    from e2e_support import free_port
    out, dead = tmp_path / "out", tmp_path / "dead" / "letters.jsonl"
    port = free_port()
    cfg = http_config(port, sink_type, {"path": "%s/%%Y/%%{dir}" % out})
    cfg["a1.sinks.k1.deadLetterFile"] = dead
    p = start_http_agent(agent, tmp_path, cfg)
    ts = "1700000000000"
    post_events(port, [{"headers": {"timestamp": ts, "dir": "a"}, "body": "good 1"},
                       {"headers": {"timestamp": "yesterday", "dir": "a"}, "body": "bad stamp"},
                       {"headers": {"timestamp": ts, "dir": "nul\u0000here"}, "body": "good 2"},
                       {"headers": {"dir": "a"}, "body": "no stamp"},
                       {"headers": {"timestamp": ts, "dir": "a"}, "body": "\u00e9 good 3"}])
    post_events(port, [{"headers": {"timestamp": ts, "dir": "a"}, "body": "later"}])
    poll(lambda: dead.exists() and len(dead.read_text().splitlines()) == 2, 20, message="2 dead letters")
    assert p.stop(timeout=60) == 0, p.stderr
    got = {str(f.parent.relative_to(out)): read_events(sink_type, [f]) for f in files(out)}
    assert got == {"2023/a": [b"good 1", "\u00e9 good 3".encode(), b"later"], "2023/nul%00here": [b"good 2"]}
    assert dead.stat().st_mode & 0o777 == 0o600, "the events are readable by the agent's user only"
    letters = [json.loads(line) for line in dead.read_text().splitlines()]
    assert [(d["body"], d["headers"], d["reason"], d["sink"]) for d in letters] == [
        ("bad stamp", {"timestamp": "yesterday", "dir": "a"},
         "invalid timestamp header 'yesterday': not a number of milliseconds", "k1"),
        ("no stamp", {"dir": "a"}, "Expected timestamp in the Flume event headers, but it wasn't found", "k1")]


@pytest.mark.parametrize("group", [None, "failover", "load_balance"])
def test_without_dead_letter_file_a_bad_timestamp_is_retried_logged_once_and_counted(tmp_path, agent, group):
    """Alone or in a sink group: each sink logs the reason once (the group and the runner do
    not repeat it on every retry), every failed try counts in EventWriteFail."""
    from e2e_support import free_port, get_json, wait_for_json
    out = tmp_path / "out"
    port, mport = free_port(), free_port()
    cfg = http_config(port, "hdfs", {"path": "%s/%%Y" % out})
    sinks = ["k1"]
    if group:
        sinks.append("k2")
        cfg.update({k.replace(".k1.", ".k2."): v for k, v in cfg.items() if k.startswith("a1.sinks.k1.")})
        cfg.update({"a1.sinks": "k1 k2", "a1.sinkgroups": "g1", "a1.sinkgroups.g1.sinks": "k1 k2",
                    "a1.sinkgroups.g1.processor.type": group})
    p = start_http_agent(agent, tmp_path, cfg, "--metrics-port", mport, "--drain-timeout", "1")
    post_events(port, [{"headers": {"timestamp": "1700000000000"}, "body": "good"},
                       {"headers": {"timestamp": "soon"}, "body": "bad"}])
    url = "http://127.0.0.1:%d/metrics" % mport
    wait_for_json(url, timeout=10, alive=p.alive)
    # the runner waits 5 s between tries: two failed tries take about 5 s
    poll(lambda: all(int(get_json(url)["SINK." + k]["EventWriteFail"]) >= 2 for k in sinks), 30, interval=0.2,
         message="two failed tries")
    metrics = get_json(url)
    assert p.stop(timeout=60) == 0
    # the sink logs the reason once; a group also once, when the sink starts failing
    logged = len(sinks) * (2 if group else 1)
    assert p.stderr.count("invalid timestamp header 'soon'") == logged, p.stderr
    assert p.stderr.count("1 of 2 events can never be written and no deadLetterFile") == logged
    assert "Traceback" not in p.stderr and "Unable to process" not in p.stderr
    assert all(metrics["SINK." + k]["EventDrainSuccessCount"] == "0" for k in sinks)
    assert metrics["CHANNEL.c1"]["ChannelSize"] == "2"
    assert not files(out), "as Flume: nothing of the batch is written, it is retried"
