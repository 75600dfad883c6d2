"""The compiled extensions, imported in one place so a missing build fails clearly.

Each extension is loaded on first use of one of its names (a module __getattr__): an agent
of a memory channel does not map the PostgreSQL, MySQL, Avro and WAL code (~0.7 MB resident).
"""
import importlib

from fastsync import NOT_BUILT

_NAMES = {      # name -> (extension, attribute; None: the extension module itself)
    "_framing": ("_framing", None),
    "_ringbuf": ("_ringbuf", None),
    "_wal": ("_wal", None),
    "_pgcopy": ("_pgcopy", None),
    "_mysqlrows": ("_mysqlrows", None),
    "_avro": ("_avro", None),
    "RingBuffer": ("_ringbuf", "RingBuffer"),
    "decimal_bodies": ("_framing", "decimal_bodies"),
    "split_lines": ("_framing", "split_lines"),
    "join_lines": ("_framing", "join_lines"),
    "line_starts": ("_framing", "line_starts"),
    "read_block": ("_framing", "read_block"),
    "Block": ("_framing", "Block"),
    "bodies_list": ("_framing", "bodies_list"),
    "Segment": ("_wal", "Segment"),
    "Log": ("_wal", "Log"),
    "fdatasync_baseline": ("_wal", "fdatasync_baseline"),
    "CopyDecoder": ("_pgcopy", "CopyDecoder"),
    "CopyReader": ("_pgcopy", "CopyReader"),
    "COPY_ARRAY": ("_pgcopy", "ARRAY"),                 # CopyDecoder kind flag: a one-dimensional array
    "CopyOutOfRange": ("_pgcopy", "OutOfRange"),        # a value its Arrow type cannot hold
    "OUT_OF_RANGE": ("_pgcopy", "OUT_OF_RANGE"),        # what OutOfRange says, by .what
    "INTERVAL_RANGE": ("_pgcopy", "INTERVAL_RANGE"),    # the microseconds an interval may come to
    "RowDecoder": ("_mysqlrows", "RowDecoder"),
    "RowError": ("_mysqlrows", "RowError"),
    "decode_flume_events": ("_avro", "decode_flume_events"),
    "encode_flume_events": ("_avro", "encode_flume_events"),
    "decode_flume_array": ("_avro", "decode_flume_array"),
    "avro_interleave": ("_avro", "interleave"),
    "avro_decode_block": ("_avro", "decode_block"),
    "AVRO_KINDS": ("_avro", "KINDS"),                   # Avro type name -> decode_block kind
}


def __getattr__(name):
    if name not in _NAMES:
        raise AttributeError("module %r has no attribute %r" % (__name__, name))
    ext, attr = _NAMES[name]
    try:
        module = importlib.import_module("fastsync." + ext)
    except ImportError as exc:
        raise ImportError(NOT_BUILT % exc) from None
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value      # the next lookup is a plain module attribute
    return value
