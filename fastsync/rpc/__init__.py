"""RPC hops between agents: Avro IPC as Flume speaks it (avro_ipc), its client and server."""
