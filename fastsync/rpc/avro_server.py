"""The server side of Flume's Avro RPC: AvroSourceProtocol over Avro's Netty transport.

On the wire (every integer of the framing big-endian, 4 bytes):

    frame     serial, buffer count, then per buffer its length and bytes; the buffers put
              end to end are one Avro message. A reply carries the serial of its request.
    request   [HandshakeRequest, once per connection] + call metadata (map<bytes>) + the
              message name (string) + its parameters: `append` an AvroFlumeEvent,
              `appendBatch` an array<AvroFlumeEvent>. The name "" is a handshake ping.
    reply     [HandshakeResponse, to a request that had one] + metadata (map<bytes>) +
              a boolean "is an error" + the Status enum (OK 0, FAILED 1, UNKNOWN 2), or for
              an error a union index 0 and a string.

The handshake: the client sends the MD5 of its protocol text, maybe the text itself, and
the MD5 it believes the server's to be. A client protocol we know (by hash, or whose text
declares our messages) is answered BOTH (the client guessed our hash) or CLIENT (we send
ours); one we cannot tell is answered NONE with our protocol, and the client then repeats
its request with its protocol text. Flume's SDK protocol carries a long doc string; ours
is the same protocol without it, so the two hashes differ and Flume's is known by value.

With `compression-type = deflate` each direction of the TCP stream is one zlib stream
(flushed at every message); TLS, when on, runs inside it (Flume puts its zlib codec
before its TLS handler, next to the socket). `Transport` stacks these layers.
"""
from __future__ import annotations

import hashlib
import json
import ssl
import struct
import zlib
from typing import Callable

# AvroSourceProtocol as Flume's SDK defines it (flume-ng-sdk flume.avdl), without its doc
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

OK, FAILED, UNKNOWN = 0, 1, 2               # Status symbols, by index
BOTH, CLIENT, NONE = 0, 1, 2                # HandshakeMatch symbols, by index
MAX_BUFFERS = 1 << 20                       # buffers of one frame (Avro's client cuts 8 KiB buffers)
MAX_BUFFER = (1 << 31) - 1


class ProtocolError(ValueError):
    """The peer's bytes are not Flume's Avro RPC: the connection is to be closed."""


# -- Avro binary primitives (the few the handshake and replies need) --

def write_long(v: int) -> bytes:
    z = (v << 1) ^ (v >> 63)
    out = bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def write_bytes(b: bytes) -> bytes:
    return write_long(len(b)) + b


def read_long(buf, pos: int) -> tuple[int, int]:
    acc = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ProtocolError("a truncated or overlong Avro long at byte %d" % pos)
        b = buf[pos]
        pos += 1
        acc |= (b & 0x7F) << shift
        if not b & 0x80:
            return (acc >> 1) ^ -(acc & 1), pos
        shift += 7


def read_bytes(buf, pos: int) -> tuple[bytes, int]:
    n, pos = read_long(buf, pos)
    if n < 0 or pos + n > len(buf):
        raise ProtocolError("a bytes value of %d bytes at byte %d runs past the message" % (n, pos))
    return bytes(buf[pos:pos + n]), pos + n


def read_fixed(buf, pos: int, n: int) -> tuple[bytes, int]:
    if pos + n > len(buf):
        raise ProtocolError("a fixed(%d) at byte %d runs past the message" % (n, pos))
    return bytes(buf[pos:pos + n]), pos + n


def read_meta(buf, pos: int) -> tuple[dict, int]:
    """A map<bytes> (call or handshake metadata)."""
    out = {}
    while True:
        count, pos = read_long(buf, pos)
        if count == 0:
            return out, pos
        if count < 0:
            count = -count
            _, pos = read_long(buf, pos)           # the block's byte size
        for _ in range(count):
            key, pos = read_bytes(buf, pos)
            value, pos = read_bytes(buf, pos)
            out[key.decode("utf-8", "replace")] = value


# -- frames --

def encode_frame(serial: int, buffers: list[bytes]) -> bytes:
    """A Netty transport frame of `buffers` (one Avro message cut anywhere)."""
    parts = [struct.pack(">ii", serial, len(buffers))]
    for b in buffers:
        parts += [struct.pack(">i", len(b)), b]
    return b"".join(parts)


class FrameReader:
    """Frames from a byte stream: next_frame(recv) -> (serial, message bytes), or None at
    the stream's end between frames; ProtocolError at its end inside one (truncated) or
    on a frame header no client sends."""

    def __init__(self, max_bytes: int = 1 << 62):
        self.buf = bytearray()
        self.max_bytes = max_bytes          # of one message: larger is refused before it is read

    def _need(self, n: int, recv: Callable[[], bytes | None]) -> bool:
        while len(self.buf) < n:
            chunk = recv()
            if not chunk:
                return False
            self.buf += chunk
        return True

    def next_frame(self, recv: Callable[[], bytes | None]) -> tuple[int, bytes] | None:
        if not self._need(8, recv):
            if self.buf:
                raise ProtocolError("the connection ended inside a frame header (%d bytes)" % len(self.buf))
            return None
        serial, count = struct.unpack_from(">ii", self.buf)
        if not 0 <= count <= MAX_BUFFERS:
            raise ProtocolError("not an Avro RPC frame: a frame of %d buffers" % count)
        pos, spans, total = 8, [], 0
        for _ in range(count):
            if not self._need(pos + 4, recv):
                raise ProtocolError("the connection ended inside a frame (%d of its bytes)" % len(self.buf))
            (length,) = struct.unpack_from(">i", self.buf, pos)
            if length < 0:
                raise ProtocolError("not an Avro RPC frame: a buffer of %d bytes" % length)
            total += length
            if total > self.max_bytes:
                raise ProtocolError("a request of more than %d bytes (maxRequestSize)" % self.max_bytes)
            if not self._need(pos + 4 + length, recv):
                raise ProtocolError("the connection ended inside a frame (%d of its bytes)" % len(self.buf))
            spans.append((pos + 4, pos + 4 + length))
            pos += 4 + length
        with memoryview(self.buf) as view:
            message = b"".join(view[a:b] for a, b in spans)
        del self.buf[:pos]
        return serial, message


# -- handshake --

def decode_handshake_request(buf, pos: int = 0) -> tuple[bytes, str | None, bytes, dict | None, int]:
    """HandshakeRequest: (clientHash, clientProtocol or None, serverHash, meta or None, end)."""
    client_hash, pos = read_fixed(buf, pos, 16)
    branch, pos = read_long(buf, pos)
    text = None
    if branch == 1:
        raw, pos = read_bytes(buf, pos)
        text = raw.decode("utf-8", "replace")
    elif branch != 0:
        raise ProtocolError("not an Avro handshake: clientProtocol branch %d" % branch)
    server_hash, pos = read_fixed(buf, pos, 16)
    branch, pos = read_long(buf, pos)
    meta = None
    if branch == 1:
        meta, pos = read_meta(buf, pos)
    elif branch != 0:
        raise ProtocolError("not an Avro handshake: meta branch %d" % branch)
    return client_hash, text, server_hash, meta, pos


def encode_handshake_response(match: int, server_protocol: str | None = None, server_hash: bytes | None = None) -> bytes:
    out = write_long(match)
    out += b"\x00" if server_protocol is None else b"\x02" + write_bytes(server_protocol.encode())
    out += b"\x00" if server_hash is None else b"\x02" + server_hash
    return out + b"\x00"                        # no meta


def speaks_our_protocol(text: str) -> bool:
    """Whether a client's protocol text is AvroSourceProtocol (its messages ours)."""
    try:
        doc = json.loads(text)
    except ValueError:
        return False
    messages = doc.get("messages") if isinstance(doc, dict) else None
    return isinstance(messages, dict) and doc.get("protocol") == PROTOCOL["protocol"] and (
        "appendBatch" in messages or "append" in messages)


class Handshake:
    """One connection's handshake state, as Avro's Responder keeps it per connection."""

    def __init__(self):
        self.done = False

    def answer(self, message: bytes) -> tuple[bytes, int]:
        """The handshake at the start of a request, when one is due: (HandshakeResponse
        bytes, the position after the handshake request); (b"", 0) once done. A NONE
        answer leaves self.done False: the caller replies with it alone."""
        if self.done:
            return b"", 0
        client_hash, text, server_hash, _, pos = decode_handshake_request(message)
        known = client_hash in (PROTOCOL_MD5, FLUME_SDK_MD5) or (text is not None and speaks_our_protocol(text))
        if not known:
            return encode_handshake_response(NONE, PROTOCOL_TEXT, PROTOCOL_MD5), pos
        self.done = True
        if server_hash == PROTOCOL_MD5:
            return encode_handshake_response(BOTH), pos
        return encode_handshake_response(CLIENT, PROTOCOL_TEXT, PROTOCOL_MD5), pos


# -- calls and replies --

def decode_call(message: bytes, pos: int) -> tuple[str, int]:
    """The call metadata (ignored) and message name: (name, position of its parameters)."""
    _, pos = read_meta(message, pos)
    name, pos = read_bytes(message, pos)
    return name.decode("utf-8", "replace"), pos


def encode_status(status: int) -> bytes:
    """A reply's body for a Status: no metadata, no error, the enum index."""
    return b"\x00\x00" + write_long(status)


def encode_error(text: str) -> bytes:
    """A reply's body for a system error (Avro's union of string): the client raises it."""
    return b"\x00\x01\x00" + write_bytes(text.encode())


# -- the byte stream under the frames: TCP, maybe zlib, maybe TLS inside it --

class Transport:
    """recv() -> plain bytes (b"" or None at the end), send(bytes); over `raw_recv` /
    `raw_send` (the socket's), with zlib and/or TLS (server side) as configured."""

    def __init__(self, raw_recv: Callable[[], bytes | None], raw_send: Callable[[bytes], None],
                 deflate: bool = False, tls: ssl.SSLContext | None = None):
        self._raw_recv, self._raw_send = raw_recv, raw_send
        self._inflate = zlib.decompressobj() if deflate else None
        self._deflate = zlib.compressobj(6) if deflate else None
        self._tls = None
        if tls is not None:
            self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
            self._tls = tls.wrap_bio(self._in, self._out, server_side=True)

    # the layer under TLS
    def _lower_recv(self) -> bytes | None:
        while True:
            data = self._raw_recv()
            if not data or self._inflate is None:
                return data
            try:
                out = self._inflate.decompress(data)
            except zlib.error as exc:
                raise ProtocolError("not a deflate stream: %s" % exc) from None
            if out:
                return out

    def _lower_send(self, data: bytes) -> None:
        if self._deflate is not None:
            data = self._deflate.compress(data) + self._deflate.flush(zlib.Z_SYNC_FLUSH)
        self._raw_send(data)

    def _flush_tls(self) -> None:
        pending = self._out.read()
        if pending:
            self._lower_send(pending)

    def handshake(self) -> bool:
        """The TLS handshake (if TLS is on): False when the peer went away; ssl.SSLError
        on a peer that does not speak TLS."""
        if self._tls is None:
            return True
        while True:
            try:
                self._tls.do_handshake()
                self._flush_tls()
                return True
            except ssl.SSLWantReadError:
                self._flush_tls()
                data = self._lower_recv()
                if not data:
                    return False
                self._in.write(data)

    def recv(self) -> bytes | None:
        if self._tls is None:
            return self._lower_recv()
        while True:
            try:
                return self._tls.read(1 << 16)
            except ssl.SSLWantReadError:
                self._flush_tls()
                data = self._lower_recv()
                if not data:
                    return data
                self._in.write(data)
            except ssl.SSLZeroReturnError:
                return b""

    def send(self, data: bytes) -> None:
        if self._tls is None:
            self._lower_send(data)
            return
        self._tls.write(data)
        self._flush_tls()
