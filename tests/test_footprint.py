"""The agent's footprint (hot-path issue 14): a running agent maps only the code its
configuration uses. Checked on the process's /proc/PID/maps, not on a memory figure:
bench/peers/run.py measures the peak RSS against Flume's."""
from __future__ import annotations

import os

from e2e_support import free_port, wait_for_json, write_config

SEQ_MEMORY_NULL = {"a1.sources": "r1", "a1.channels": "c1", "a1.sinks": "k1",
                   "a1.sources.r1.type": "seq", "a1.sources.r1.totalEvents": 1000, "a1.sources.r1.channels": "c1",
                   "a1.channels.c1.type": "memory", "a1.sinks.k1.type": "null", "a1.sinks.k1.channel": "c1"}


def mapped_files(pid: int) -> set[str]:
    """The base names of the files mapped into process pid."""
    with open("/proc/%d/maps" % pid) as f:
        return {os.path.basename(parts[5]) for parts in map(str.split, f) if len(parts) > 5}


def test_seq_memory_null_agent_with_metrics_maps_no_tls_and_no_unused_decoders(tmp_path, agent):
    """The metrics server answers without http.server (which loads ssl: libssl, libcrypto,
    ~4 MB resident), and of the native extensions only the ring buffer and the framing
    (the memory channel's and the seq source's) are loaded."""
    mport = free_port()
    p = agent("a1", write_config(tmp_path, SEQ_MEMORY_NULL), "--metrics-port", mport)
    m = wait_for_json("http://127.0.0.1:%d/metrics" % mport, timeout=15, alive=p.alive)
    assert m["SINK.k1"]["Type"] == "SINK"
    names = mapped_files(p.pid)
    ours = {n.split(".")[0] for n in names if n.startswith("_") and ".cpython-" in n}
    assert {"_ringbuf", "_framing"} <= ours, names            # the maps are read right
    assert not ours & {"_wal", "_pgcopy", "_mysqlrows", "_avro"}, sorted(ours)
    assert not [n for n in names if n.startswith(("libssl", "libcrypto", "_ssl."))], sorted(names)
    assert p.stop(timeout=20) == 0
