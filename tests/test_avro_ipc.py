"""The Avro IPC codec of fastsync.rpc.avro_wire on its own: Netty frames, the handshake and
call encodings, as Flume's peers read them (the end-to-end checks against the real Flume
are in test_avro_sink.py and test_avro_client.py)."""
from __future__ import annotations

import pytest

from fastsync.rpc import avro_wire
from fastsync.rpc.avro_wire import FrameReader, ProtocolError, Reader


def test_frames_split_anywhere_come_back_whole_in_order():
    wire = b"".join(bytes(p) for p in avro_wire.frame(7, [b"abc", b"", b"x" * 70000]) + avro_wire.frame(8, [b"z"]))
    assert wire[:8] == b"\x00\x00\x00\x07\x00\x00\x00\x03" and wire[8:15] == b"\x00\x00\x00\x03abc"
    r = FrameReader()
    got = []
    for i in range(0, len(wire), 997):
        got += r.feed(wire[i:i + 997])
    assert got == [(7, b"abc" + b"x" * 70000), (8, b"z")]


def test_a_frame_too_large_or_with_a_negative_count_is_refused():
    with pytest.raises(ProtocolError, match="frame of -1 buffers"):
        FrameReader().feed(b"\x00\x00\x00\x01\xff\xff\xff\xff")
    with pytest.raises(ProtocolError, match="a request of more than 99 bytes"):
        FrameReader(max_bytes=99).feed(b"\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x64")


def test_longs_and_maps_round_trip():
    for n in (0, -1, 1, 63, -64, 64, 2**31, -2**63, 2**63 - 1):
        assert Reader(avro_wire.write_long(n)).long() == n
    m = {"a": b"1", "\u00e9": b""}
    assert Reader(avro_wire.write_map(m)).map() == m
    with pytest.raises(ProtocolError, match="ends inside"):
        Reader(b"\x80").long()


def test_handshake_and_append_batch_request_layout():
    hs = avro_wire.handshake_request()
    r = Reader(hs)
    assert r.fixed(16) == avro_wire.PROTOCOL_MD5 and r.union_index(2) == 1 and r.string() == avro_wire.PROTOCOL_TEXT
    assert r.fixed(16) == avro_wire.PROTOCOL_MD5 and r.union_index(2) == 0 and r.rest == 0
    head, tail = avro_wire.append_batch_request(3)
    r = Reader(head)
    assert r.map() == {} and r.string() == "appendBatch" and r.long() == 3 and r.rest == 0 and tail == b"\x00"
    assert avro_wire.append_batch_request(0) == (b"\x00" + avro_wire.write_string("appendBatch") + b"\x00", b"")


def test_call_responses():
    # handshake BOTH (null protocol, null hash, null meta), empty meta, no error, Status FAILED
    r = Reader(b"\x00\x00\x00\x00" + b"\x00\x00" + b"\x02")
    assert avro_wire.read_handshake_response(r) == ("BOTH", None, None)
    assert avro_wire.read_call_response(r) == "FAILED"
    with pytest.raises(avro_wire.RemoteError, match="boom"):
        avro_wire.read_call_response(Reader(b"\x00\x01\x00" + avro_wire.write_string("boom")))


def test_what_one_side_writes_the_other_reads():
    """The server's and the client's halves of the codec agree: handshake records, calls,
    Status and error replies; a stream ending inside a frame is refused."""
    hs = avro_wire.handshake_request(protocol=None)
    head, _ = avro_wire.append_batch_request(0, hs)
    client_hash, text, server_hash, meta, pos = avro_wire.decode_handshake_request(head)
    assert (client_hash, text, server_hash, meta) == (avro_wire.PROTOCOL_MD5, None, avro_wire.PROTOCOL_MD5, None)
    assert avro_wire.decode_call(head, pos) == ("appendBatch", len(head) - 1)
    r = Reader(avro_wire.handshake_response(avro_wire.CLIENT, avro_wire.PROTOCOL_TEXT, avro_wire.PROTOCOL_MD5)
               + avro_wire.encode_status(avro_wire.OK))
    assert avro_wire.read_handshake_response(r) == ("CLIENT", avro_wire.PROTOCOL_TEXT, avro_wire.PROTOCOL_MD5)
    assert avro_wire.read_call_response(r) == "OK" and r.rest == 0
    with pytest.raises(avro_wire.RemoteError, match="No such remote message: x"):
        avro_wire.read_call_response(Reader(avro_wire.encode_error("No such remote message: x")))
    chunks = [avro_wire.encode_frame(3, [b"ab", b"c"]), avro_wire.encode_frame(4, [b"d"])[:9], b""]
    frames = FrameReader()
    assert frames.next_frame(lambda: chunks.pop(0)) == (3, b"abc")
    with pytest.raises(ProtocolError, match="ended inside a frame"):
        frames.next_frame(lambda: chunks.pop(0))
