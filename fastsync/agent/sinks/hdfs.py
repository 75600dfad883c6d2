"""Flume's HDFS sink: events into rolled files under time/header bucket paths, on the local
disk or any pyarrow filesystem URL (`file://`, `hdfs://`, `s3://`, ...).

`DataStream` writes each body followed by a newline (a batch's share of a file is joined
natively and written at once); `CompressedStream` writes the same bytes through a
compressor, each file one complete stream. Paths and rolling: see rolling.py. rollSize
counts body bytes, as Flume's processSize does.
"""
from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from fastsync._native import join_lines
from fastsync.agent.component import SINKS, Place, setting
from fastsync.agent.sinks.rolling import FileWriter, RollingSink, rolling_config

CODECS = {"gzip": ("gzip", ".gz"), "zstd": ("zstd", ".zst"), "lz4": ("lz4", ".lz4"), "bzip2": ("bz2", ".bz2")}

_HdfsBase = rolling_config("hdfs", "_HdfsBase")


@dataclass
class HDFSSinkConfig(_HdfsBase):
    fileType: str = setting("hdfs.fileType", "DataStream", "DataStream or CompressedStream",
                            choices=("datastream", "compressedstream"))
    codeC: str = setting("hdfs.codeC", "", "CompressedStream codec", choices=("",) + tuple(CODECS))
    # Flume's, with no effect here: accepted so that a Flume configuration passes --strict
    writeFormat: str = setting("hdfs.writeFormat", "Writable", "accepted for compatibility: Flume's SequenceFile record format")
    callTimeout: int = setting("hdfs.callTimeout", 10000, "accepted for compatibility: Flume's timeout of HDFS calls, ms; not applied")
    threadsPoolSize: int = setting("hdfs.threadsPoolSize", 10, "accepted for compatibility: Flume's HDFS IO threads per sink")
    rollTimerPoolSize: int = setting("hdfs.rollTimerPoolSize", 1, "accepted for compatibility: Flume's roll timer threads per sink")

    def validate(self, place: Place) -> None:
        _HdfsBase.validate(self, place)
        if self.fileType == "compressedstream" and not self.codeC:
            raise place.error("hdfs.codeC", "fileType CompressedStream needs hdfs.codeC (%s)" % ", ".join(CODECS))


class StreamWriter(FileWriter):
    def __init__(self, fs, path, codec: str | None):
        super().__init__(fs, path)
        self.out = pa.CompressedOutputStream(self.raw, codec) if codec else self.raw

    def sizes(self, events):
        return events.offsets[1:] - events.offsets[:-1]

    def write(self, events):
        self.out.write(join_lines(events.data, events.offsets))
        self.bytes += events.nbytes

    def flush(self):
        self.out.flush()
        self.sync()

    def close(self):
        self.out.close()
        if not self.raw.closed:
            self.raw.close()


@SINKS.register("hdfs", "org.apache.flume.sink.hdfs.HDFSEventSink")
class HDFSEventSink(RollingSink):
    Config = HDFSSinkConfig
    KIND = "hdfs"

    def __init__(self, name, config, **wiring):
        super().__init__(name, config, **wiring)
        codec = CODECS[config.codeC] if config.fileType == "compressedstream" else None
        self.codec = codec[0] if codec else None
        self.DEFAULT_EXTENSION = codec[1] if codec else ""

    def new_writer(self, fs, path):
        return StreamWriter(fs, path, self.codec)
