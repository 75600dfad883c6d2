"""Sinks; importing this package registers them."""
from fastsync.agent.sinks import file_roll, hdfs, jdbc, kafka, logger, null, parquet  # noqa: F401
