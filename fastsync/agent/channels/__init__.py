"""Channels: where events wait between sources and sinks, under transactions."""
from fastsync.agent.channels.base import Channel, Transaction
from fastsync.agent.channels.memory import MemoryChannel
from fastsync.agent.channels.file import FileChannel
from fastsync.agent.channels.kafka import KafkaChannel

__all__ = ["Channel", "Transaction", "MemoryChannel", "FileChannel", "KafkaChannel"]
