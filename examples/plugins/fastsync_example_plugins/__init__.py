"""Example custom components for fastsync (docs/python/plugins.md): CounterSource,
LengthInterceptor and SQLiteSink, named in a configuration by import path
(`fastsync_example_plugins.sqlite_sink:SQLiteSink`) or, installed, by entry point (`sqlite_rows`)."""
