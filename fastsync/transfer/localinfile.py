"""LOAD DATA LOCAL INFILE without trusting the server.

With `local_infile` PyMySQL sends whatever file the server's LOCAL INFILE request names,
in reply to any statement: a hostile or impersonated server could read any file the client
can. A `GuardedConnection` answers such a request only with the file its own LOAD DATA
statement names (`allow()`), only once and only while that statement runs; any other
request closes the connection and fails with LocalInfileRefused, nothing sent."""
from __future__ import annotations

import contextlib
import os

import pymysql
from pymysql.connections import Connection
from pymysql.protocol import MysqlPacket


class LocalInfileRefused(pymysql.err.OperationalError):
    pass


class GuardedConnection(Connection):
    _allowed: bytes | None = None        # the file the running LOAD DATA names
    _first_reply = False                 # the next packet read is a statement's first reply

    @contextlib.contextmanager
    def allow(self, path: str):
        """While the block runs, one LOCAL INFILE request for `path` is answered."""
        self._allowed = os.fsencode(path)
        try:
            yield
        finally:
            self._allowed = None

    def _read_query_result(self, unbuffered=False):
        self._first_reply = True
        try:
            return super()._read_query_result(unbuffered)
        finally:
            self._first_reply = False

    def _read_packet(self, packet_type=MysqlPacket):
        packet = super()._read_packet(packet_type)
        if self._first_reply:
            # only a statement's first reply can be a LOCAL INFILE request (later 0xFB
            # packets are rows starting with a NULL)
            self._first_reply = False
            if packet.is_load_local_packet():
                asked = packet.get_all_data()[1:]
                if self._allowed is None or asked != self._allowed:
                    self._force_close()
                    raise LocalInfileRefused(
                        2000, "the server asked for the local file %r, which no LOAD DATA of this export "
                              "names: refused, connection closed" % os.fsdecode(asked))
                self._allowed = None          # once
        return packet


def guard(engine) -> None:
    """The engine's PyMySQL connections become GuardedConnections."""
    import sqlalchemy as sa

    @sa.event.listens_for(engine, "do_connect")
    def _connect(dialect, conn_rec, cargs, cparams):
        return GuardedConnection(*cargs, **cparams)
