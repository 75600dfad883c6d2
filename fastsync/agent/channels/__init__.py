"""Channels: where events wait between sources and sinks, under transactions. Each channel's
module is imported when first used (a Kafka channel needs confluent_kafka, a memory one not)."""
import importlib

from fastsync.agent.channels.base import Channel, Transaction

_LAZY = {"MemoryChannel": "memory", "FileChannel": "file", "KafkaChannel": "kafka"}
__all__ = ["Channel", "Transaction", "MemoryChannel", "FileChannel", "KafkaChannel"]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module("fastsync.agent.channels." + _LAZY[name]), name)
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
