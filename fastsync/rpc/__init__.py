"""RPC hops between agents: Avro IPC as Flume speaks it (avro_wire: the wire format both sides share,
avro_server: the server's transport and handshake state; the client is fastsync/client.py)."""
