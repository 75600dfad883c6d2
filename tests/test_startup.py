"""Start-up imports only what a command uses (hot-path issue item 4): `fastsync --help` and a
seq -> memory -> null agent load none of the heavy libraries of components they have not got.
A correctness check of sys.modules at exit, not a timing one (`-X importtime` misses modules
imported with importlib.import_module, as the component registry does)."""
from __future__ import annotations

import json
import os
import re
import subprocess

from e2e_support import PYTHON, free_port, lines_so_far, poll, read_dir_lines, wait_for_json

HEAVY = ("confluent_kafka", "sqlalchemy", "pyarrow.parquet", "cryptography", "pyarrow.compute", "http.server")
# runs `python -m fastsync ARGS` and writes the names in sys.modules at exit to the file argv[1]
WRAPPER = ("import atexit, json, runpy, sys\n"
           "out = sys.argv.pop(1)\n"
           "atexit.register(lambda: open(out, 'w').write(json.dumps(sorted(sys.modules))))\n"
           "runpy.run_module('fastsync', run_name='__main__', alter_sys=True)\n")
SEQ_NULL = """a1.sources = r1
a1.channels = c1
a1.sinks = k1
a1.sources.r1.type = seq
a1.sources.r1.totalEvents = 1
a1.sources.r1.channels = c1
a1.channels.c1.type = org.apache.flume.channel.MemoryChannel
a1.sinks.k1.type = null
a1.sinks.k1.channel = c1
"""


def fastsync_argv(tmp_path, *args: str) -> list[str]:
    return [PYTHON, "-c", WRAPPER, str(tmp_path / "modules.json"), *args]


def imported(tmp_path) -> set[str]:
    return set(json.loads((tmp_path / "modules.json").read_text()))


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


def test_help_imports_neither_pyarrow_nor_component_libraries(tmp_path):
    p = subprocess.run(fastsync_argv(tmp_path, "--help"), capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "agent" in p.stdout
    modules = imported(tmp_path)
    assert "fastsync.cli" in modules
    assert heavy(modules) == []
    assert "pyarrow" not in modules and "fastsync.agent" not in modules


def test_local_sync_imports_neither_pyarrow_nor_logging(tmp_path):
    """`fastsync sync` between two local trees (issue 19's benchmark against rsync, where start-up
    is a third of a re-sync): no pyarrow nor numpy, and not even logging, typing or the agent's
    signal helpers; the tree walk is the native _treewalk."""
    (tmp_path / "src" / "d").mkdir(parents=True)
    (tmp_path / "src" / "d" / "f").write_text("x")
    p = subprocess.run(fastsync_argv(tmp_path, "sync", "-a", str(tmp_path / "src") + "/", str(tmp_path / "dst")),
                       capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    assert (tmp_path / "dst" / "d" / "f").read_text() == "x"
    modules = imported(tmp_path)
    assert "fastsync._treewalk" in modules and heavy(modules) == []
    assert not modules & {"pyarrow", "numpy", "logging", "typing", "fastsync.signals", "fastsync.sync.procs"}


def test_seq_memory_null_agent_imports_only_its_components(tmp_path, run_agent):
    conf = tmp_path / "seq.properties"
    conf.write_text(SEQ_NULL)
    p = run_agent("a1", conf, "--exit-when-done", argv=fastsync_argv(tmp_path, "agent", "-n", "a1", "-f", str(conf), "--exit-when-done"))
    assert p.returncode == 0, p.stderr[-2000:]
    assert "1 events delivered" in p.stdout
    modules = imported(tmp_path)
    # the components it uses (the channel by its Flume class name), and no other component
    assert {"fastsync.agent.sources.seq", "fastsync.agent.channels.memory", "fastsync.agent.sinks.null"} <= modules
    others = sorted(m for m in modules if re.match(r"fastsync\.agent\.(sources|channels|sinks)\.", m))
    assert others == ["fastsync.agent.channels.base", "fastsync.agent.channels.memory",
                      "fastsync.agent.sinks.null", "fastsync.agent.sources.seq"]
    assert heavy(modules) == []
    # nor what only some configurations use: interceptors, a load_balance group's random
    # order, the extensions of the WAL and of the database and Avro decoders
    assert not modules & {"random", "fastsync._wal", "fastsync._pgcopy", "fastsync._mysqlrows", "fastsync._avro",
                          "fastsync.agent.interceptors"}


def test_file_roll_agent_imports_nothing_of_the_transfer_half(tmp_path, run_agent):
    """The agent half and the transfer (Sqoop) half share event.py and kafkaio.py and never
    import each other (DESIGN.md): file_roll's deadLetterFile needs the transfer half's JSON
    encoder only when it writes a dead event."""
    conf = tmp_path / "roll.properties"
    conf.write_text(SEQ_NULL.replace("sinks.k1.type = null", "sinks.k1.type = file_roll\n"
                                     "a1.sinks.k1.sink.directory = %s" % tmp_path))
    p = run_agent("a1", conf, "--exit-when-done", argv=fastsync_argv(tmp_path, "agent", "-n", "a1", "-f", str(conf), "--exit-when-done"))
    assert p.returncode == 0, p.stderr[-2000:]
    modules = imported(tmp_path)
    assert "fastsync.agent.sinks.file_roll" in modules and "fastsync.agent.deadletter" in modules
    assert sorted(m for m in modules if m == "fastsync.transfer" or m.startswith("fastsync.transfer.")) == []


def test_file_channel_agent_does_not_import_package_metadata(tmp_path, run_agent):
    """The file channel's CRC32C comes from the crc32c package's extension, without the
    package's __init__, which imports importlib.metadata (email, zipfile, csv, tempfile: ~3 MB
    and tens of ms of start-up) for its __version__; the events still go through."""
    conf = tmp_path / "file.properties"
    conf.write_text(SEQ_NULL.replace("a1.sources.r1.totalEvents = 1", "a1.sources.r1.totalEvents = 1000")
                    .replace("channels.c1.type = org.apache.flume.channel.MemoryChannel",
                             "channels.c1.type = file\na1.channels.c1.checkpointDir = %s/cp\n"
                             "a1.channels.c1.dataDirs = %s/data" % (tmp_path, tmp_path)))
    p = run_agent("a1", conf, "--exit-when-done", argv=fastsync_argv(tmp_path, "agent", "-n", "a1", "-f", str(conf), "--exit-when-done"))
    assert p.returncode == 0, p.stderr[-2000:]
    assert "1000 events delivered" in p.stdout
    modules = imported(tmp_path)
    assert "fastsync.agent.channels.file" in modules
    assert not modules & {"importlib.metadata", "email", "zipfile", "crc32c"}, sorted(modules)


def test_validate_names_every_known_type_without_importing_them(tmp_path):
    conf = tmp_path / "bad.properties"
    conf.write_text(SEQ_NULL.replace("sinks.k1.type = null", "sinks.k1.type = nul"))
    p = subprocess.run(fastsync_argv(tmp_path, "agent", "-n", "a1", "-f", str(conf), "--validate"), capture_output=True,
                       text=True, timeout=60, cwd=tmp_path)
    assert p.returncode == 2
    assert ("fastsync: error: %s:8: a1.sinks.k1.type: unknown sink type 'nul' (known: avro, file_roll, flight, hdfs, "
            "jdbc, kafka, logger, null, parquet)" % conf) in p.stderr
    assert heavy(imported(tmp_path)) == []


def test_every_declared_type_name_finds_its_class():
    """The registry's table of names -> modules and the names each module registers are
    written in two places: every declared name must resolve to the class its module
    registers, and every registered name must be declared (else it is found only once its
    module happens to be imported). Every kind of plug-in has such a registry, channel
    selectors and sink processors too, and every class has its Config (its keys)."""
    from fastsync.agent.component import REGISTRIES, ComponentConfig
    assert sorted(r.kind for r in REGISTRIES) == ["channel", "channel selector", "interceptor", "sink", "sink processor",
                                                   "source"]
    for registry in REGISTRIES:
        declared = dict(registry._modules)
        registered = registry.load_all()
        assert set(declared) == set(registered), (registry.kind, set(declared) ^ set(registered))
        for name, module in declared.items():
            cls = registry.lookup(name)
            assert cls is not None and cls.__module__ == module, (registry.kind, name, module, cls)
            assert registry.kind == "channel selector" or issubclass(cls.Config, ComponentConfig), (registry.kind, name)


def mapped_files(pid: int) -> set[str]:
    """The base names of the files mapped into process pid: what its resident memory is
    made of, besides the heap."""
    with open("/proc/%d/maps" % pid) as f:
        return {os.path.basename(parts[5]) for parts in map(str.split, f) if len(parts) > 5}


def test_seq_memory_null_agent_with_metrics_maps_no_tls_and_no_unused_decoders(tmp_path, agent):
    """The metrics server answers without http.server (which loads ssl: libssl, libcrypto,
    ~4 MB resident); of the native extensions only the ring buffer and the framing (the
    memory channel's and the seq source's) are loaded; the command line is parsed without
    shutil (argparse asks it the terminal's width; it loads bz2 and lzma)."""
    conf = tmp_path / "seq.properties"
    conf.write_text(SEQ_NULL)
    mport = free_port()
    p = agent("a1", conf, "--metrics-port", mport)
    m = wait_for_json("http://127.0.0.1:%d/metrics" % mport, timeout=15, alive=p.alive)
    assert m["SINK.k1"]["Type"] == "SINK"
    names = mapped_files(p.pid)
    ours = {n.split(".")[0] for n in names if n.startswith("_") and ".cpython-" in n}
    assert {"_ringbuf", "_framing"} <= ours, names            # the maps are read right
    assert not ours & {"_wal", "_pgcopy", "_mysqlrows", "_avro"}, sorted(ours)
    assert not [n for n in names if n.startswith(("libssl", "libcrypto", "_ssl."))], sorted(names)
    assert not [n for n in names if n.startswith(("_bz2.", "_lzma.", "liblzma", "libbz2"))], sorted(names)
    assert p.stop(timeout=20) == 0


def test_taildir_memory_file_roll_agent_loads_neither_numpy_nor_pyarrow(tmp_path, agent):
    """TAILDIR's lines stay in the bytes it read (a LineBatch over a memoryview of offsets),
    the memory channel keeps them and file_roll writes them natively: nothing on that path
    needs numpy or pyarrow, whose imports were ~0.1 s of the agent's start-up."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "app.log").write_bytes(b"".join(b"line %d\n" % i for i in range(1000)))
    out = tmp_path / "out"
    conf = tmp_path / "taildir.properties"
    conf.write_text("\n".join([
        "a1.sources = r1", "a1.channels = c1", "a1.sinks = k1",
        "a1.sources.r1.type = TAILDIR", "a1.sources.r1.channels = c1", "a1.sources.r1.filegroups = f1",
        "a1.sources.r1.filegroups.f1 = %s/.*\\\\.log" % logs, "a1.sources.r1.positionFile = %s/pos.json" % tmp_path,
        "a1.channels.c1.type = memory", "a1.sinks.k1.type = file_roll", "a1.sinks.k1.channel = c1",
        "a1.sinks.k1.sink.directory = %s" % out, "a1.sinks.k1.sink.rollInterval = 0", ""]))
    p = agent("a1", conf)
    poll(lambda: len(lines_so_far(out)) == 1000 if out.exists() else False, timeout=20, message="1000 lines in %s" % out)
    names = mapped_files(p.pid)
    assert {"_ringbuf", "_framing"} <= {n.split(".")[0] for n in names if ".cpython-" in n}, names
    assert not [n for n in names if n.startswith(("libarrow", "_multiarray_umath", "lib.cpython"))], sorted(names)
    assert p.stop(timeout=20) == 0
    assert read_dir_lines(out) == [b"line %d" % i for i in range(1000)]
