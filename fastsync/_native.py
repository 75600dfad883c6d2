"""The compiled extensions, imported in one place so a missing build fails clearly."""
import importlib

from fastsync import NOT_BUILT

try:
    _framing = importlib.import_module("fastsync._framing")
    _ringbuf = importlib.import_module("fastsync._ringbuf")
    _wal = importlib.import_module("fastsync._wal")
    _pgcopy = importlib.import_module("fastsync._pgcopy")
    _mysqlrows = importlib.import_module("fastsync._mysqlrows")
    _avro = importlib.import_module("fastsync._avro")
except ImportError as exc:
    raise ImportError(NOT_BUILT % exc) from None

RingBuffer = _ringbuf.RingBuffer
decimal_bodies = _framing.decimal_bodies
split_lines = _framing.split_lines
join_lines = _framing.join_lines
line_starts = _framing.line_starts
bodies_list = _framing.bodies_list
Segment = _wal.Segment
Log = _wal.Log
fdatasync_baseline = _wal.fdatasync_baseline
CopyDecoder = _pgcopy.CopyDecoder
CopyReader = _pgcopy.CopyReader
COPY_ARRAY = _pgcopy.ARRAY                # CopyDecoder kind flag: a one-dimensional array
CopyOutOfRange = _pgcopy.OutOfRange       # a value its Arrow type cannot hold
OUT_OF_RANGE = _pgcopy.OUT_OF_RANGE       # what OutOfRange says, by .what
INTERVAL_RANGE = _pgcopy.INTERVAL_RANGE   # the microseconds an interval may come to
RowDecoder = _mysqlrows.RowDecoder
RowError = _mysqlrows.RowError
decode_flume_events = _avro.decode_flume_events
encode_flume_events = _avro.encode_flume_events
avro_interleave = _avro.interleave
avro_decode_block = _avro.decode_block
AVRO_KINDS = _avro.KINDS                  # Avro type name -> decode_block kind
