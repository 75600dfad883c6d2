"""A sink that appends every event to a SQLite table: its body, and the value of one header."""
import sqlite3

import fastsync
from fastsync import EventBatch


def identifier(name: str) -> None:
    if not name.isidentifier():
        raise ValueError("not a table name: %r" % name)


class SQLiteSink(fastsync.Sink):
    """Appends each event to a SQLite table (body BLOB, header TEXT), one transaction per batch."""

    path: str = fastsync.setting(doc="the SQLite database file")
    table: str = fastsync.setting(default="events", doc="the table, created if missing", check=identifier)
    header: str = fastsync.setting(default="host", doc="the header whose value goes to column `header`")

    def start(self) -> None:
        # opened here, used by the sink's thread: one thread at a time, so not checked
        self.db = sqlite3.connect(self.path, check_same_thread=False)
        self.db.execute("CREATE TABLE IF NOT EXISTS %s (body BLOB, header TEXT)" % self.table)

    def deliver(self, batch: EventBatch) -> None:
        rows = zip(batch.bodies().to_pylist(), batch.header_array(self.header).to_pylist())
        with self.db:       # committed when it returns; rolled back if it raises (the take is too)
            self.db.executemany("INSERT INTO %s VALUES (?, ?)" % self.table, rows)

    def stop(self) -> None:
        self.db.close()
