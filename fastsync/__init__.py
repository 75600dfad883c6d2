"""fastsync: Flume-style agents and Sqoop-style transfers on columnar event batches."""
import importlib.util

__version__ = "0.1.0"
__all__ = ["Event", "EventBatch", "__version__"]

NATIVE = ("_framing", "_ringbuf", "_wal", "_pgcopy", "_mysqlrows", "_avro")
NOT_BUILT = ("fastsync's native extensions are not built (%s); install the package with "
             "`pip install .` (or `pip install -e .` in a checkout), which compiles ext/ "
             "with Cython and a C compiler")

# Fail clearly when the extensions are not built, but only look for them: importing them
# (fastsync._native) loads pyarrow, which `fastsync --help` does not need.
_missing = [m for m in NATIVE if importlib.util.find_spec("fastsync." + m) is None]
if _missing:
    raise ImportError(NOT_BUILT % ("no module named fastsync." + _missing[0])) from None


def __getattr__(name):
    # Event and EventBatch on first use: they import pyarrow
    if name in ("Event", "EventBatch"):
        from fastsync import event
        return getattr(event, name)
    raise AttributeError("module 'fastsync' has no attribute %r" % name)
