"""fastsync: Flume-style agents and Sqoop-style transfers on columnar event batches."""
__version__ = "0.1.0"

__all__ = ["Event", "EventBatch", "__version__"]


def __getattr__(name):
    # Event and EventBatch on first use, not here: they import pyarrow, which `fastsync --help`
    # does not need. The native extensions are checked (with a clear message) by fastsync._native.
    if name in ("Event", "EventBatch"):
        from fastsync import event
        return getattr(event, name)
    raise AttributeError("module 'fastsync' has no attribute %r" % name)
