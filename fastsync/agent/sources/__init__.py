"""Sources; importing this package registers them."""
from fastsync.agent.sources import exec as exec_source, http, kafka, netcat, seq, spooldir, syslog, taildir  # noqa: F401
