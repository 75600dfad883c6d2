"""Sources; importing this package registers them."""
from fastsync.agent.sources import exec as exec_source, kafka, netcat, seq, taildir  # noqa: F401
