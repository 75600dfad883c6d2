"""Sinks; importing this package registers them."""
from fastsync.agent.sinks import file_roll, kafka, logger, null  # noqa: F401
