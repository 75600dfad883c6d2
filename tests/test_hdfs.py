"""HDFS through fastsync: the test HDFS of scripts/services.sh (Hadoop 3.4.1, one NameNode and
one DataNode on loopback), reached through fastsync.filesystems.resolve (WebHDFS here: the
machine has no libhdfs), and every result checked with Hadoop's own client (FsShell, Java)
rather than with fastsync's: files and directories made, read, listed, renamed and deleted;
the `hdfs` and `parquet` sinks of real agents writing to it; a NameNode that is not there.
"""
from __future__ import annotations

import gzip
import re
import signal
import socket
import subprocess
import urllib.error
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from e2e_support import LineClient, free_port, poll, wait_for_port, write_config
from hdfs_support import HDFS_URL, WEBHDFS, dfs, exists, ls_recursive, webhdfs
from fastsync.filesystems import FilesystemError, resolve
from fastsync.hdfs import output_stream

ROOT = Path(__file__).resolve().parent.parent


def test_services_run_hdfs(hdfs):
    """services.sh's status names it; WebHDFS lists /; the NameNode counts a live DataNode and
    is out of safe mode; FsShell sees the test's directory."""
    status = subprocess.run(["bash", str(ROOT / "scripts" / "services.sh"), "status"], capture_output=True, text=True, timeout=60)
    assert "hdfs: up (%s" % HDFS_URL in status.stdout, status.stdout + status.stderr
    names = [s["pathSuffix"] for s in webhdfs("GET", "/", "LISTSTATUS")["FileStatuses"]["FileStatus"]]
    assert "fastsync-test" in names
    import json
    import urllib.request
    with urllib.request.urlopen(WEBHDFS + "/jmx?qry=Hadoop:service=NameNode,name=FSNamesystemState", timeout=10) as r:
        state = json.loads(r.read())["beans"][0]
    assert state["NumLiveDataNodes"] >= 1 and state["FSState"] == "Operational", state
    assert hdfs.dir in dfs("-ls", "/fastsync-test")


def test_files_and_directories_checked_with_fsshell(hdfs, tmp_path):
    loc = resolve(hdfs.dir_url + "/t")
    fs = loc.fs
    assert loc.renames and loc.path == hdfs.dir + "/t"

    # files written by fastsync, fetched by FsShell; what output_stream's flush wrote (a sink's
    # take) is on HDFS while the file is open
    fs.create_dir(loc.join("a", "b"))
    data = bytes(range(256)) * 12_289          # 3 MB and a bit: more than one read-ahead
    f, flush = output_stream(fs, loc.join("a", "b", "one.bin"))
    with f:
        f.write(data[:1000])
        flush()
        dfs("-get", loc.join("a", "b", "one.bin"), tmp_path / "flushed.bin")
        assert (tmp_path / "flushed.bin").read_bytes() == data[:1000]
        f.write(data[1000:])
    files = {"one.bin": data, "three.bin": data[:5], "with space": b"1", "pct%2E": b"2", "\u00fcn\u00efcode": b"3", "empty": b""}
    for name, content in files.items():
        if name != "one.bin":
            with fs.open_output_stream(loc.join("a", "b", name)) as f:
                f.write(content)
    (tmp_path / "got").mkdir()
    dfs("-get", *[loc.join("a", "b", name) for name in files], tmp_path / "got")
    assert {p.name: p.read_bytes() for p in (tmp_path / "got").iterdir()} == files

    # a file put by FsShell, read by fastsync, sequentially and at random offsets
    (tmp_path / "two.bin").write_bytes(data[::-1])
    dfs("-put", tmp_path / "two.bin", loc.join("a", "two.bin"))
    assert fs.open_input_stream(loc.join("a", "two.bin")).read() == data[::-1]
    with fs.open_input_file(loc.join("a", "two.bin")) as f:
        assert f.size() == len(data)
        assert f.read_at(10, len(data) - 10) == data[::-1][-10:]
        f.seek(5)
        assert f.read(7) == data[::-1][5:12]

    # the recursive listing is FsShell's
    infos = fs.get_file_info(pafs.FileSelector(loc.path, recursive=True))
    mine = {i.path: (i.size if i.type == pafs.FileType.File else None) for i in infos}
    assert mine == ls_recursive(loc.path)
    assert [i.base_name for i in fs.get_file_info(pafs.FileSelector(loc.path))] == ["a"]
    assert fs.get_file_info(loc.join("nope")).type == pafs.FileType.NotFound
    with pytest.raises(FileNotFoundError, match=re.escape(hdfs.dir_url + "/t/nope")):
        fs.get_file_info(pafs.FileSelector(loc.join("nope")))

    # a directory renamed at once (one RENAME), with what is under it
    fs.move(loc.join("a"), loc.join("c"))
    after = ls_recursive(loc.path)
    assert {p.replace(loc.join("c"), loc.join("a"), 1) for p in after} == set(mine)
    # a rename onto a non-empty directory fails and changes nothing; onto an empty one replaces it
    fs.create_dir(loc.join("d", "x"))
    with pytest.raises(OSError, match=re.escape(hdfs.dir_url + "/t/c")):
        fs.move(loc.join("c"), loc.join("d"))
    assert ls_recursive(loc.path) == dict(after, **{loc.join("d"): None, loc.join("d", "x"): None})
    fs.move(loc.join("c"), loc.join("d", "x"))
    assert {p.replace(loc.join("d", "x"), loc.join("a"), 1) for p in ls_recursive(loc.join("d"))} == set(mine)

    # Parquet written through fastsync, fetched by FsShell, read locally
    table = pa.table({"id": pa.array(range(50_000), pa.int64()), "name": ["n%d" % i for i in range(50_000)]})
    pq.write_table(table, loc.join("t.parquet"), filesystem=fs)
    dfs("-get", loc.join("t.parquet"), tmp_path / "t.parquet")
    assert pq.read_table(tmp_path / "t.parquet").equals(table)
    assert pq.read_table(loc.join("t.parquet"), filesystem=fs).equals(table)

    # deletions
    fs.delete_dir_contents(loc.join("d"))
    fs.delete_file(loc.join("t.parquet"))
    assert ls_recursive(loc.path) == {loc.join("d"): None}
    fs.delete_dir(loc.path)
    assert not exists(loc.path)
    with pytest.raises(FileNotFoundError):
        fs.delete_dir(loc.path)


def test_dead_namenode_is_one_line_naming_it(tmp_path, agent, monkeypatch):
    """Nothing listens on the NameNode's ports: resolve fails at once with one line naming
    the URL; an hdfs sink logs that line and retries (no stack trace, no event dead-lettered)."""
    rpc, http = free_port(), free_port()
    url = "hdfs://127.0.0.1:%d/flume/x" % rpc
    monkeypatch.setenv("FASTSYNC_WEBHDFS_PORT", str(http))
    with pytest.raises(FilesystemError) as e:
        resolve(url)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(url + ": ") and "127.0.0.1:%d" % http in msg and "connection refused" in msg, msg

    # viewfs:// has no WebHDFS to fall back on: without libhdfs it is refused, saying so
    with pytest.raises(FilesystemError, match=r"^viewfs://cluster/x: viewfs:// needs libhdfs"):
        resolve("viewfs://cluster/x")

    cfg = {"a1.sources": "r1", "a1.channels": "c1", "a1.sinks": "k1",
           "a1.sources.r1.type": "seq", "a1.sources.r1.totalEvents": 10, "a1.sources.r1.channels": "c1",
           "a1.channels.c1.type": "memory", "a1.sinks.k1.type": "hdfs", "a1.sinks.k1.channel": "c1",
           "a1.sinks.k1.hdfs.path": url + "/%Y", "a1.sinks.k1.hdfs.useLocalTimeStamp": "true",
           "a1.sinks.k1.deadLetterFile": tmp_path / "dead.jsonl"}
    p = agent("a1", write_config(tmp_path, cfg), env={"FASTSYNC_WEBHDFS_PORT": str(http)})
    line = p.wait_for_stderr(r"^.*%s.*$" % re.escape(url), timeout=30).group(0)
    assert "connection refused" in line, line
    p.kill()    # (a stop would wait for the channel to drain, in vain)
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    assert not (tmp_path / "dead.jsonl").exists() or (tmp_path / "dead.jsonl").read_text() == ""


def test_namenode_that_never_answers_times_out(monkeypatch):
    """A server that accepts connections and says nothing: the request gives up after
    FASTSYNC_WEBHDFS_TIMEOUT and the error is one line naming the URL."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        port = server.getsockname()[1]
        monkeypatch.setenv("FASTSYNC_WEBHDFS_TIMEOUT", "1")
        url = "webhdfs://127.0.0.1:%d/x" % port
        with pytest.raises(FilesystemError) as e:
            resolve(url)
    msg = str(e.value)
    assert msg.startswith(url + ": ") and "did not answer within 1s" in msg and "\n" not in msg, msg


def test_permission_denied_is_one_line_naming_the_path(hdfs, monkeypatch):
    """Another user (HADOOP_USER_NAME) may not write into the superuser's directory: the
    NameNode's refusal, one line, naming the path; from the NameNode (MKDIRS) and from the
    DataNode it redirected the CREATE to."""
    monkeypatch.setenv("HADOOP_USER_NAME", "etl")
    loc = resolve(hdfs.dir_url)
    for op, path in ((loc.fs.create_dir, loc.join("d")), (loc.fs.open_output_stream, loc.join("f"))):
        with pytest.raises(PermissionError) as e:
            op(path)
        msg = str(e.value)
        assert msg.startswith(hdfs.url + path + ": Permission denied: user=etl, access=WRITE") and "\n" not in msg, msg
        assert " at org.apache" not in msg, msg
    assert ls_recursive(hdfs.dir) == {}


def seq_agent(sink_type: str, path: str, n: int, sink: dict) -> dict:
    prefix = "parquet" if sink_type == "parquet" else "hdfs"
    cfg = {"a1.sources": "r1", "a1.channels": "c1", "a1.sinks": "k1",
           "a1.sources.r1.type": "seq", "a1.sources.r1.totalEvents": n, "a1.sources.r1.batchSize": 500,
           "a1.sources.r1.channels": "c1",
           "a1.channels.c1.type": "memory", "a1.channels.c1.capacity": 20000, "a1.channels.c1.transactionCapacity": 2000,
           "a1.sinks.k1.type": sink_type, "a1.sinks.k1.channel": "c1"}
    sink = {"path": path, "useLocalTimeStamp": "true", "batchSize": 1000, "rollSize": 0, "rollInterval": 0, **sink}
    cfg.update({"a1.sinks.k1.%s.%s" % (prefix, k): v for k, v in sink.items()})
    return cfg


def written(hdfs, pattern: str) -> list[str]:
    """The files below the test's directory matching the regex, by FsShell, in name order; none in use."""
    paths = ls_recursive(hdfs.dir)
    assert not [p for p in paths if p.endswith(".tmp")], paths
    return sorted(p for p, size in paths.items() if size is not None and re.search(pattern, p))


@pytest.mark.parametrize("codec", ["", "gzip"])
def test_hdfs_sink_seq_to_real_hdfs(hdfs, run_agent, tmp_path, codec):
    """seq -> memory -> hdfs sink on hdfs://...%Y: rolled files, renamed from .tmp, every
    event once, in order; read by FsShell (-cat, or -text for gzip) and by pyarrow."""
    n, roll = 20_000, 7_000
    sink = {"rollCount": roll, "filePrefix": "ev"}
    if codec:
        sink.update(fileType="CompressedStream", codeC=codec)
    cfg = seq_agent("hdfs", hdfs.dir_url + "/flume/events/%Y", n, sink)
    p = run_agent("a1", write_config(tmp_path, cfg), "--exit-when-done", timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    assert re.search(r"hdfs://127.0.0.1:8020: through (WebHDFS at http://127.0.0.1:9870 as user \S+ \(no libhdfs here|libhdfs)",
                     p.stderr), p.stderr[-3000:]
    files = written(hdfs, r"/flume/events/\d{4}/ev\.\d+" + (r"\.gz$" if codec else "$"))
    assert len(files) == -(-n // roll), files
    expected = "".join("%d\n" % i for i in range(n))
    assert dfs("-text" if codec else "-cat", *files) == expected
    fs = resolve(hdfs.url).fs
    # (pyarrow decompresses a .gz by its name)
    assert b"".join(fs.open_input_stream(f).read() for f in files) == expected.encode()
    if codec:
        raw = b"".join(fs.open_input_stream(f, compression=None).read() for f in files)
        assert gzip.decompress(raw) == expected.encode()


def test_parquet_sink_seq_to_real_hdfs(hdfs, run_agent, tmp_path):
    """seq -> memory -> parquet sink on HDFS: complete Parquet files (fetched with FsShell
    -get, read locally) holding every event once, in order; the same through pyarrow."""
    n, roll = 20_000, 7_000
    cfg = seq_agent("parquet", hdfs.dir_url + "/pq/%Y", n, {"rollCount": roll, "rowGroupSize": 3000, "bodyType": "utf8"})
    p = run_agent("a1", write_config(tmp_path, cfg), "--exit-when-done", timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    files = written(hdfs, r"/pq/\d{4}/FlumeData\.\d+\.parquet$")
    assert len(files) == -(-n // roll), files
    local = tmp_path / "got"
    local.mkdir()
    dfs("-get", *files, local)
    bodies = [b for f in files for b in pq.read_table(local / f.rsplit("/", 1)[1]).column("body").to_pylist()]
    assert bodies == [str(i) for i in range(n)]
    loc = resolve(hdfs.dir_url + "/pq")
    assert ds.dataset(loc.path, filesystem=loc.fs, format="parquet").count_rows() == n


def test_in_use_file_is_flushed_then_renamed_at_stop(hdfs, agent, tmp_path):
    """netcat -> memory -> hdfs sink: what a committed take wrote is on HDFS (in the .tmp
    file, read by FsShell) while the agent runs; at stop the file is renamed to its final name."""
    port = free_port()
    cfg = {"a1.sources": "r1", "a1.channels": "c1", "a1.sinks": "k1",
           "a1.sources.r1.type": "netcat", "a1.sources.r1.bind": "127.0.0.1", "a1.sources.r1.port": port,
           "a1.sources.r1.channels": "c1", "a1.channels.c1.type": "memory",
           "a1.sinks.k1.type": "hdfs", "a1.sinks.k1.channel": "c1",
           "a1.sinks.k1.hdfs.path": hdfs.dir_url + "/nc", "a1.sinks.k1.hdfs.batchSize": 10,
           "a1.sinks.k1.hdfs.rollCount": 0, "a1.sinks.k1.hdfs.rollSize": 0, "a1.sinks.k1.hdfs.rollInterval": 0}
    p = agent("a1", write_config(tmp_path, cfg))
    wait_for_port(port, timeout=30, alive=p.alive)
    lines = [b"line %d" % i for i in range(100)]
    with LineClient(port) as c:
        c.send(b"".join(l + b"\n" for l in lines))
        assert c.read_lines(len(lines), timeout=30) == [b"OK"] * len(lines)

    def in_use():
        try:
            st = webhdfs("GET", hdfs.dir + "/nc", "LISTSTATUS")["FileStatuses"]["FileStatus"]
        except urllib.error.HTTPError:     # the sink has not made the directory yet
            return None
        return len(st) == 1 and st[0]["pathSuffix"].endswith(".tmp") and st[0]["length"] == sum(len(l) + 1 for l in lines) and st[0]
    tmp = poll(in_use, timeout=30, interval=0.2, message="the in-use file holding every line")
    assert dfs("-cat", "%s/nc/%s" % (hdfs.dir, tmp["pathSuffix"])).encode() == b"".join(l + b"\n" for l in lines)
    assert p.stop(signal.SIGTERM, timeout=60) == 0, p.stderr[-3000:]
    files = written(hdfs, r"/nc/")
    assert [f.rsplit("/", 1)[1] for f in files] == [tmp["pathSuffix"][:-len(".tmp")]]
    assert dfs("-cat", files[0]).encode() == b"".join(l + b"\n" for l in lines)
