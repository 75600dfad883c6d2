"""The ZooKeeper test support itself (tests/zk_support.py) and fastsync.zk's connecting: a
three-node ensemble elects a leader, survives its leader's kill -9, and a killed node rejoins."""
from __future__ import annotations

import subprocess
import sys

from zk_support import mode


def test_ensemble_survives_its_leader_and_a_node_rejoins(zk_ensemble):
    from fastsync.zk import connect

    ens = zk_ensemble(3)
    client = connect(ens.hosts, "test")
    try:
        client.create("/x", b"1")
        old = ens.leader()
        ens.kill(old)
        ens.wait_serving(60, nodes=[i for i in range(3) if i != old])
        assert ens.leader() != old
        client.set("/x", b"2")                   # the client moved to a live node by itself
        ens.restart(old)
        assert mode(ens.client_ports[old]) == "follower"
        assert client.get("/x")[0] == b"2"
    finally:
        client.stop()
        client.close()


def test_connect_to_a_dead_server_says_so_in_one_line(tmp_path):
    from e2e_support import free_port
    port = free_port()
    r = subprocess.run([sys.executable, "-c",
                        "import sys\nfrom fastsync.zk import connect, ZkError\n"
                        "try: connect('127.0.0.1:%d', '-z', wait=2)\n"
                        "except ZkError as e: sys.exit(str(e))" % port],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1] == "-z: ZooKeeper at 127.0.0.1:%d unreachable (no answer within 2 s)" % port


def test_the_zk_fixture_gives_each_test_its_own_path(zk):
    zk.client.create(zk.base + "/mine", b"v")
    assert zk.client.get_children(zk.base) == ["mine"]
