"""What the `flight` source and sink share: the wire rules of our hop over Arrow Flight,
and the bearer token's settings.

An EventBatch travels as one Arrow record batch in a DoPut stream: `body` (large_binary,
the batch's own buffers, no copy) then one column per header: a string column, or a
one-value dictionary column for a header the whole batch shares (EventBatch.to_arrow and
from_arrow). Each record batch carries as app-metadata its 8-byte sequence number; the
source answers each, in order, once the batch is committed to its channels, with the same
8 bytes followed by `OK`, or `FAILED: reason` (then it ends the stream, so nothing sent
after a failed batch is committed). The token goes as an `authorization: Bearer ...`
header on every call and is checked before the call runs.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import struct
from dataclasses import dataclass

from fastsync.agent.component import Place, setting

ACTION_PING = "fastsync.ping"    # a call with no data: reaches the source and checks the token
DESCRIPTOR = b"fastsync.events"  # the DoPut descriptor's command
OK = b"OK"
FAILED = b"FAILED: "
_SEQ = struct.Struct("<Q")


# glibc's mallopt parameters, and the values keep_heap sets
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 16 << 20   # bytes: smaller blocks come from the heap, not a fresh mmap
TRIM_THRESHOLD = 8 << 20    # bytes of free heap kept before any is given back to the system
_heap_kept = False


def keep_heap() -> None:
    """Have glibc's malloc keep freed memory for the next message rather than unmap it.

    Each message of the hop (several 100 KB takes) is a few hundred KB, above malloc's
    default mmap threshold: gRPC's receive slices, the taken batch and the serialized stream
    would otherwise be fresh mmaps, each page faulted in and zeroed by the kernel and
    unmapped again per message (a third of the collector's gRPC thread time in a profile).
    Process-wide, once; a no-op where malloc is not glibc's."""
    global _heap_kept
    if _heap_kept:
        return
    _heap_kept = True
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return
    mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)


def seq_bytes(seq: int) -> bytes:
    return _SEQ.pack(seq)


def parse_ack(buf) -> tuple[int, bytes]:
    """(sequence number, OK or FAILED: reason) of an acknowledgement; ValueError if it is none."""
    data = bytes(buf)
    if len(data) < 8 + len(OK):
        raise ValueError("not an acknowledgement: %r" % data[:40])
    return _SEQ.unpack_from(data)[0], data[8:]


@dataclass(repr=False, kw_only=True)
class TokenSettings:
    """auth.token / auth.tokenFile; the token itself is never shown (repr, errors, logs)."""
    token: str = setting("auth.token", "", "bearer token the hop's calls carry and the source requires; "
                         "prefer auth.tokenFile (never logged)")
    tokenFile: str = setting("auth.tokenFile", "", "file holding the token (its first line)")

    def __repr__(self) -> str:
        shown = {k: ("***" if k == "token" and v else v) for k, v in vars(self).items()}
        return "%s(%s)" % (type(self).__name__, ", ".join("%s=%r" % kv for kv in shown.items()))

    def check_token(self, place: Place) -> None:
        if self.token and self.tokenFile:
            raise place.error("auth.tokenFile", "set auth.token or auth.tokenFile, not both")
        if self.tokenFile:
            self.secret(place)

    def secret(self, place: Place | None = None) -> bytes:
        """The token ("" for none), read from auth.tokenFile each time it is asked for."""
        if not self.tokenFile:
            return self.token.strip().encode()
        try:
            with open(self.tokenFile, "rb") as f:
                token = f.readline().strip()
        except OSError as exc:
            if place is None:
                raise
            raise place.error("auth.tokenFile", "cannot read %s: %s" % (self.tokenFile, exc.strerror)) from None
        if not token and place is not None:
            raise place.error("auth.tokenFile", "%s holds no token" % self.tokenFile)
        return token


def read_pem(place: Place, key: str, path: str) -> bytes:
    """The bytes of a PEM file named by setting `key`, or a config error naming it."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise place.error(key, "cannot read %s: %s" % (path, exc.strerror)) from None
    if b"-----BEGIN " not in data:
        raise place.error(key, "%s is not a PEM file" % path)
    return data
