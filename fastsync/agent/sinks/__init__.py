"""Sinks, one module each; a module is imported (and registers its sink) when a config uses
it: see fastsync.agent.component.Registry."""
