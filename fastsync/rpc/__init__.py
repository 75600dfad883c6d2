"""RPC hops between agents: Avro IPC as Flume speaks it (avro_ipc: the client side,
avro_server: the server side)."""
