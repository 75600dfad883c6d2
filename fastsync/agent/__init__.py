"""The Flume half: agents of sources, channels and sinks."""
from fastsync.agent.agent import Agent
from fastsync.agent.config import AgentConfig, load_agent_config, parse_agent_config
from fastsync.agent.errors import ChannelException, ChannelFullException, ConfigError

__all__ = ["Agent", "AgentConfig", "ChannelException", "ChannelFullException", "ConfigError",
           "load_agent_config", "parse_agent_config"]
