"""fastsync: Flume-style agents and Sqoop-style transfers on columnar event batches."""
import importlib.util

__version__ = "0.1.0"
# the public API, each name loaded from its module on first use (`import fastsync` stays cheap:
# `fastsync --help` must not pay for pyarrow, SQLAlchemy or the agent runtime)
_PUBLIC = {
    "Event": "fastsync.event",
    "EventBatch": "fastsync.event",
    # agents built and run from Python (the same runtime as `fastsync agent`)
    "Agent": "fastsync.agent.builder",
    "ConfigError": "fastsync.agent.errors",
    # custom components: subclass one, name it in a config as `type = mypkg.mod:Class`
    "Source": "fastsync.plugins",
    "Sink": "fastsync.plugins",
    "Interceptor": "fastsync.plugins",
    "setting": "fastsync.plugins",
    # transfers as functions (the same code as `fastsync import|export|merge|list-tables|eval`)
    "import_table": "fastsync.transfer.api",
    "export_files": "fastsync.transfer.api",
    "merge": "fastsync.transfer.api",
    "list_tables": "fastsync.transfer.api",
    "eval": "fastsync.transfer.api",
    "read_table": "fastsync.transfer.api",
    "TransferError": "fastsync.transfer.api",
    "TransferResult": "fastsync.transfer.api",
}
__all__ = [*_PUBLIC, "__version__"]

TYPE_CHECKING = False      # (typing's, without importing typing: mypy knows the name)
if TYPE_CHECKING:          # what type checkers see of the names loaded lazily below
    from fastsync.agent.builder import Agent as Agent
    from fastsync.agent.errors import ConfigError as ConfigError
    from fastsync.event import Event as Event, EventBatch as EventBatch
    from fastsync.plugins import Interceptor as Interceptor, Sink as Sink, Source as Source, setting as setting
    from fastsync.transfer.api import (TransferError as TransferError, TransferResult as TransferResult,
                                       eval as eval, export_files as export_files, import_table as import_table,
                                       list_tables as list_tables, merge as merge, read_table as read_table)

NATIVE = ("_framing", "_ringbuf", "_wal", "_pgcopy", "_mysqlrows", "_avro", "_treewalk")
NOT_BUILT = ("fastsync's native extensions are not built (%s); install the package with "
             "`pip install .` (or `pip install -e .` in a checkout), which compiles ext/ "
             "with Cython and a C compiler")

# Fail clearly when the extensions are not built, but only look for them: importing them
# (fastsync._native) loads pyarrow, which `fastsync --help` does not need.
_missing = [m for m in NATIVE if importlib.util.find_spec("fastsync." + m) is None]
if _missing:
    raise ImportError(NOT_BUILT % ("no module named fastsync." + _missing[0])) from None


def __getattr__(name):
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError("module 'fastsync' has no attribute %r" % name)
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value      # looked up once
    return value
