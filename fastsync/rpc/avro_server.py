"""The server side of Flume's Avro RPC (AvroSourceProtocol over Avro's Netty transport):
the per-connection handshake state and the byte stream under the frames. The wire format
itself (frames, handshake records, calls and replies) is fastsync/rpc/avro_wire.py's.

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

import json
import ssl
import zlib
from typing import Callable

from fastsync.rpc.avro_wire import (BOTH, CLIENT, FLUME_SDK_MD5, NONE, PROTOCOL, PROTOCOL_MD5, PROTOCOL_TEXT,
                                    ProtocolError, decode_handshake_request, handshake_response)


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
            return handshake_response(NONE, PROTOCOL_TEXT, PROTOCOL_MD5), pos
        self.done = True
        if server_hash == PROTOCOL_MD5:
            return handshake_response(BOTH), pos
        return handshake_response(CLIENT, PROTOCOL_TEXT, PROTOCOL_MD5), pos


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
