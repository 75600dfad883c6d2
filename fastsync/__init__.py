"""fastsync: Flume-style agents and Sqoop-style transfers on columnar event batches."""
__version__ = "0.1.0"

from fastsync import _native  # noqa: F401  (fails clearly when the extensions are not built)
from fastsync.event import Event, EventBatch

__all__ = ["Event", "EventBatch", "__version__"]
