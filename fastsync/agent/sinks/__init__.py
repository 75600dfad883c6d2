"""Sinks; importing this package registers them."""
from fastsync.agent.sinks import file_roll, logger, null  # noqa: F401
