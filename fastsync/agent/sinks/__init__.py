"""Sinks; importing this package registers them."""
from fastsync.agent.sinks import file_roll, jdbc, kafka, logger, null  # noqa: F401
