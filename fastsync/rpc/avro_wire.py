"""Avro IPC as Flume's avro source and sink speak it, both directions: Avro's Netty framing,
the Avro handshake records, and the calls of Flume's `AvroSourceProtocol` (append,
appendBatch -> Status). The client (fastsync/client.py) and the server
(fastsync/rpc/avro_server.py, fastsync/agent/sources/avro.py) share this one codec.

A frame (Avro's NettyTransportCodec; its integers 4 bytes, big-endian) is a serial, a count
of buffers, then each buffer as its length and its bytes; the buffers put end to end are
one Avro message. A reply carries the serial of its request.

On a new connection the first request starts with a HandshakeRequest (the client's protocol
MD5, maybe its JSON text, the MD5 it believes the server's to be, meta) and its reply with a
HandshakeResponse (match BOTH | CLIENT | NONE, maybe the server's protocol and hash, meta);
later calls on the connection carry none. A call request is: call metadata (map<bytes>),
the message name (string; "" is a handshake ping), the parameters (`append` an
AvroFlumeEvent, `appendBatch` an array<AvroFlumeEvent>). A call response: metadata, an
error flag (boolean), then the response (the Status enum) or the error (a union whose
branch 0 is a string).

Only the small per-call parts are encoded here in Python; the events of a batch are encoded
and decoded by column (fastsync._native encode_flume_events / decode_flume_array), and sent
as separate frame buffers, so a batch's bodies are not copied into one message.
"""
from __future__ import annotations

import hashlib
import json
import struct
from collections import deque
from typing import Callable

# AvroSourceProtocol as Flume's SDK defines it (flume-ng-sdk flume.avdl), without its doc;
# its MD5 names it in the handshake
PROTOCOL = {
    "protocol": "AvroSourceProtocol", "namespace": "org.apache.flume.source.avro",
    "types": [{"type": "enum", "name": "Status", "symbols": ["OK", "FAILED", "UNKNOWN"]},
              {"type": "record", "name": "AvroFlumeEvent",
               "fields": [{"name": "headers", "type": {"type": "map", "values": "string"}},
                          {"name": "body", "type": "bytes"}]}],
    "messages": {"append": {"request": [{"name": "event", "type": "AvroFlumeEvent"}], "response": "Status"},
                 "appendBatch": {"request": [{"name": "events", "type": {"type": "array", "items": "AvroFlumeEvent"}}],
                                 "response": "Status"}},
}
PROTOCOL_TEXT = json.dumps(PROTOCOL, separators=(",", ":"))
PROTOCOL_MD5 = hashlib.md5(PROTOCOL_TEXT.encode()).digest()
# what Flume 1.11's SDK (NettyAvroRpcClient, so Flume's avro sink and avro-client) sends as
# its clientHash: the MD5 of AvroSourceProtocol.PROTOCOL's text, doc included
FLUME_SDK_MD5 = bytes.fromhex("86aadae2c45474c0fe93ffd0f2350a65")

STATUS = ("OK", "FAILED", "UNKNOWN")        # the Status enum, by index
OK, FAILED, UNKNOWN = range(3)
MATCH = ("BOTH", "CLIENT", "NONE")          # HandshakeMatch, by index
BOTH, CLIENT, NONE = range(3)
MAX_BUFFERS = 1 << 20                       # buffers of one frame (Avro's client cuts 8 KiB buffers)
MAX_FRAME = 1 << 31                         # bytes of one message, unless the reader is given less

_HEAD = struct.Struct(">ii")
_LEN = struct.Struct(">i")


class ProtocolError(ValueError):
    """The peer's bytes are not Avro IPC as Flume speaks it: the connection is to be closed."""


class RemoteError(Exception):
    """The server answered a call with an error (an exception in its handler)."""


# -- Avro binary encoding of the few values the handshake and calls need --

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
    """Reads Avro binary values from one message, from `pos` on."""

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


def encode_frame(serial: int, buffers) -> bytes:
    """One frame as one bytes object (for a transport that sends one piece)."""
    return b"".join(frame(serial, buffers))


class FrameReader:
    """Frames from a byte stream: pushed, feed(data) -> [(serial, message bytes)]; or pulled,
    next_frame(recv) -> (serial, message bytes), None at the stream's end between frames.
    ProtocolError on a frame header no client sends, a message over `max_bytes` (refused
    before it is read; `limit` names the setting in the message), or a stream ending inside
    a frame."""

    def __init__(self, max_bytes: int = MAX_FRAME, limit: str = ""):
        self.buf = bytearray()
        self.max_bytes, self.limit = max_bytes, limit
        self.state: tuple | None = None     # (serial, buffers left, parts, size) of the frame being read
        self.ready: deque = deque()         # frames read, not yet taken by next_frame

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
                    raise ProtocolError("not an Avro RPC frame: a frame of %d buffers" % count)
                pos += 8
                self.state = (serial, count, [], 0)
            serial, left, parts, size = self.state
            while left:
                if len(buf) - pos < 4:
                    break
                (n,) = _LEN.unpack_from(buf, pos)
                if n < 0:
                    raise ProtocolError("not an Avro RPC frame: a frame buffer of %d bytes" % n)
                if size + n > self.max_bytes:
                    raise ProtocolError("a request of more than %d bytes%s"
                                        % (self.max_bytes, " (%s)" % self.limit if self.limit else ""))
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

    def next_frame(self, recv: Callable[[], bytes | None]) -> tuple[int, bytes] | None:
        while not self.ready:
            chunk = recv()
            if not chunk:
                if self.buf or self.state is not None:
                    raise ProtocolError("the connection ended inside a frame")
                return None
            self.ready.extend(self.feed(chunk))
        return self.ready.popleft()


# -- handshake --

def handshake_request(client_hash: bytes = PROTOCOL_MD5, server_hash: bytes = PROTOCOL_MD5,
                      protocol: str | None = PROTOCOL_TEXT) -> bytes:
    """A HandshakeRequest. With the protocol's text the server needs no second round (a
    server that doesn't know `client_hash` would answer NONE)."""
    text = b"\x00" if protocol is None else b"\x02" + write_string(protocol)
    return client_hash + text + server_hash + b"\x00"      # meta: null


def read_handshake_request(r: Reader) -> tuple[bytes, str | None, bytes, dict | None]:
    """(clientHash, clientProtocol or None, serverHash, meta or None) of a HandshakeRequest."""
    client_hash = r.fixed(16)
    text = r.string() if r.union_index(2) else None
    server_hash = r.fixed(16)
    meta = r.map() if r.union_index(2) else None
    return client_hash, text, server_hash, meta


def decode_handshake_request(message: bytes, pos: int = 0) -> tuple[bytes, str | None, bytes, dict | None, int]:
    """read_handshake_request at `pos` of a message, and the position after it."""
    r = Reader(message, pos)
    return (*read_handshake_request(r), r.pos)


def handshake_response(match: int, server_protocol: str | None = None, server_hash: bytes | None = None) -> bytes:
    """A HandshakeResponse (no meta)."""
    out = write_long(match)
    out += b"\x00" if server_protocol is None else b"\x02" + write_string(server_protocol)
    out += b"\x00" if server_hash is None else b"\x02" + server_hash
    return out + b"\x00"


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


# -- calls: requests (client -> server) --

def append_batch_request(n: int, handshake: bytes = b"") -> tuple[bytes, bytes]:
    """What goes before and after the n encoded AvroFlumeEvents of an appendBatch request."""
    head = handshake + b"\x00" + write_string("appendBatch")
    if n == 0:
        return head + b"\x00", b""
    return head + write_long(n), b"\x00"


def append_request(handshake: bytes = b"") -> bytes:
    """What goes before the one encoded AvroFlumeEvent of an append request."""
    return handshake + b"\x00" + write_string("append")


def decode_call(message: bytes, pos: int) -> tuple[str, int]:
    """The call metadata (ignored) and message name: (name, position of its parameters)."""
    r = Reader(message, pos)
    r.map()
    return r.string(), r.pos


# -- calls: responses (server -> client) --

def encode_status(status: int) -> bytes:
    """A reply's body for a Status: no metadata, no error, the enum index."""
    return b"\x00\x00" + write_long(status)


def encode_error(text: str) -> bytes:
    """A reply's body for a system error (Avro's union of string): the client raises it."""
    return b"\x00\x01\x00" + write_string(text)


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
