"""Avro IPC as Flume's avro source and sink speak it: Avro's Netty framing, the Avro
handshake, and the calls of Flume's `AvroSourceProtocol` (append, appendBatch -> Status).

A frame (Avro's NettyTransportCodec) is a 4-byte big-endian serial, a 4-byte count of
buffers, then each buffer as a 4-byte big-endian length and its bytes; the receiver
concatenates the buffers into one message. A response carries its request's serial.

On a new connection the first request starts with a HandshakeRequest (the client's protocol
MD5, optionally its JSON text, the MD5 it thinks the server has) and its response with a
HandshakeResponse (match BOTH | CLIENT | NONE); later calls on the connection carry none.
A call request is: call metadata (map<bytes>), the message name (string), the parameters.
A call response: metadata, an error flag (boolean), then the response (the Status enum) or
the error (a union whose branch 0 is a string).

Only the small per-call parts are encoded here in Python; the events of a batch are
encoded by column (fastsync._avro.encode_flume_events) and framed as separate buffers, so a
batch's bodies are not copied into one message.
"""
from __future__ import annotations

import hashlib
import struct

# Flume's protocol (flume-ng-sdk flume.avdl) as JSON; its MD5 names it in the handshake.
PROTOCOL_JSON = (
    '{"protocol":"AvroSourceProtocol","namespace":"org.apache.flume.source.avro","types":['
    '{"type":"enum","name":"Status","symbols":["OK","FAILED","UNKNOWN"]},'
    '{"type":"record","name":"AvroFlumeEvent","fields":[{"name":"headers","type":{"type":"map",'
    '"values":"string"}},{"name":"body","type":"bytes"}]}],"messages":{"append":{"request":'
    '[{"name":"event","type":"AvroFlumeEvent"}],"response":"Status"},"appendBatch":{"request":'
    '[{"name":"events","type":{"type":"array","items":"AvroFlumeEvent"}}],"response":"Status"}}}')
PROTOCOL_MD5 = hashlib.md5(PROTOCOL_JSON.encode()).digest()

STATUS = ("OK", "FAILED", "UNKNOWN")        # the Status enum, by index
MATCH = ("BOTH", "CLIENT", "NONE")          # HandshakeMatch, by index
MAX_BUFFERS = 1 << 20                       # buffers in one frame we accept
MAX_FRAME = 1 << 31                         # bytes in one frame we accept

_HEAD = struct.Struct(">ii")
_LEN = struct.Struct(">i")


class ProtocolError(Exception):
    """The peer sent something that is not Avro IPC as Flume speaks it."""


# -- Avro binary encoding of the few values the calls need --

def write_long(n: int) -> bytes:
    """Avro's zig-zag varint of an int or long."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def write_bytes(b: bytes) -> bytes:
    return write_long(len(b)) + b


def write_string(s: str) -> bytes:
    return write_bytes(s.encode())


def write_map(m: dict[str, bytes] | None) -> bytes:
    """A map<bytes> (or <string> of already encoded values) in one block."""
    if not m:
        return b"\x00"
    return write_long(len(m)) + b"".join(write_string(k) + write_bytes(v) for k, v in m.items()) + b"\x00"


class Reader:
    """Reads Avro binary values from one message."""

    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes, pos: int = 0):
        self.buf, self.pos = buf, pos

    def long(self) -> int:
        buf, pos, shift, acc = self.buf, self.pos, 0, 0
        while True:
            if pos >= len(buf):
                raise ProtocolError("message ends inside a number")
            b = buf[pos]
            pos += 1
            acc |= (b & 0x7F) << shift
            if not b & 0x80:
                break
            shift += 7
            if shift > 63:
                raise ProtocolError("a number longer than 10 bytes")
        self.pos = pos
        return (acc >> 1) ^ -(acc & 1)

    def fixed(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.buf):
            raise ProtocolError("message ends inside a value of %d bytes" % n)
        out = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return out

    def bytes(self) -> bytes:
        return self.fixed(self.long())

    def string(self) -> str:
        return self.bytes().decode("utf-8", "replace")

    def boolean(self) -> bool:
        b = self.fixed(1)[0]
        if b > 1:
            raise ProtocolError("boolean byte %d" % b)
        return b == 1

    def map(self, value=None) -> dict:
        """A map (values read by `value`, bytes by default), all its blocks."""
        value = value or self.bytes
        out = {}
        while True:
            count = self.long()
            if count == 0:
                return out
            if count < 0:           # a block with its byte size after the count
                count = -count
                self.long()
            for _ in range(count):
                k = self.string()
                out[k] = value()

    def union_index(self, branches: int) -> int:
        i = self.long()
        if not 0 <= i < branches:
            raise ProtocolError("union branch %d of %d" % (i, branches))
        return i

    @property
    def rest(self) -> int:
        return len(self.buf) - self.pos


# -- Netty framing --

def frame(serial: int, buffers) -> list:
    """The pieces to send for one frame: its header, then each buffer after its length."""
    out: list = [_HEAD.pack(serial, len(buffers))]
    for b in buffers:
        out.append(_LEN.pack(memoryview(b).nbytes))
        out.append(b)
    return out


class FrameReader:
    """Frames from a byte stream fed in pieces: feed(data) -> [(serial, message bytes)]."""

    def __init__(self, max_frame: int = MAX_FRAME):
        self.buf = bytearray()
        self.max_frame = max_frame
        self.state: tuple | None = None     # (serial, buffers left, parts) of the frame being read

    def feed(self, data) -> list[tuple[int, bytes]]:
        self.buf += data
        out = []
        buf, pos = self.buf, 0
        while True:
            if self.state is None:
                if len(buf) - pos < 8:
                    break
                serial, count = _HEAD.unpack_from(buf, pos)
                if not 0 <= count <= MAX_BUFFERS:
                    raise ProtocolError("frame of %d buffers" % count)
                pos += 8
                self.state = (serial, count, [], 0)
            serial, left, parts, size = self.state
            while left:
                if len(buf) - pos < 4:
                    break
                (n,) = _LEN.unpack_from(buf, pos)
                if n < 0 or size + n > self.max_frame:
                    raise ProtocolError("frame buffer of %d bytes" % n)
                if len(buf) - pos - 4 < n:
                    break
                parts.append(bytes(buf[pos + 4:pos + 4 + n]))
                pos += 4 + n
                left -= 1
                size += n
            if left:
                self.state = (serial, left, parts, size)
                break
            self.state = None
            out.append((serial, b"".join(parts)))
        del buf[:pos]
        return out


# -- handshake --

def handshake_request(client_hash: bytes = PROTOCOL_MD5, server_hash: bytes = PROTOCOL_MD5,
                      protocol: str | None = PROTOCOL_JSON) -> bytes:
    """A HandshakeRequest. With the protocol's text the server needs no second round (a
    server that doesn't know `client_hash` would answer NONE)."""
    text = b"\x00" if protocol is None else b"\x02" + write_string(protocol)
    return client_hash + text + server_hash + b"\x00"      # meta: null


def read_handshake_response(r: Reader) -> tuple[str, str | None, bytes | None]:
    """(match, server protocol text or None, server hash or None) of a HandshakeResponse."""
    m = r.long()
    if not 0 <= m < len(MATCH):
        raise ProtocolError("handshake match %d" % m)
    protocol = r.string() if r.union_index(2) else None
    server_hash = r.fixed(16) if r.union_index(2) else None
    if r.union_index(2):
        r.map()
    return MATCH[m], protocol, server_hash


# -- calls --

def append_batch_request(n: int, handshake: bytes = b"") -> tuple[bytes, bytes]:
    """What goes before and after the n encoded AvroFlumeEvents of an appendBatch request."""
    head = handshake + b"\x00" + write_string("appendBatch")
    if n == 0:
        return head + b"\x00", b""
    return head + write_long(n), b"\x00"


def append_request(handshake: bytes = b"") -> bytes:
    """What goes before the one encoded AvroFlumeEvent of an append request."""
    return handshake + b"\x00" + write_string("append")


def read_call_response(r: Reader) -> str:
    """The Status of a call response (metadata, error flag, Status); a remote error raises."""
    r.map()
    if r.boolean():
        message = r.string() if r.union_index(1) == 0 else "?"
        raise RemoteError(message)
    s = r.long()
    if not 0 <= s < len(STATUS):
        raise ProtocolError("status %d" % s)
    return STATUS[s]


class RemoteError(Exception):
    """The server answered a call with an error (an exception in its handler)."""
