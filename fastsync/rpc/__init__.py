"""RPC between agents: Flume's Avro RPC (avro_server.py: the server side)."""
