"""A sink's `deadLetterFile`: events it can never write, one JSON line each, with the
`reason`, the event's `headers` and its `body` (or `body_base64` when not UTF-8), appended
and fsynced before the sink's take commits. Shared by the jdbc, hdfs, parquet, file_roll
and kafka sinks; used only on the rare path, so one Python dict per dead event is fine."""
from __future__ import annotations

import os

from fastsync.agent.component import setting


def dead_letter_setting(key: str = "deadLetterFile"):
    return setting(key, "", "events that can never be written go here as JSON lines; unset: they fail the batch, "
                            "retried (as Flume)")


class DeadLetterFile:
    def __init__(self, path: str):
        self.path = path
        self.file = None

    def open(self) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        # events may hold anything: readable by the agent's user only (an existing file keeps its mode)
        self.file = os.fdopen(os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab")

    def write(self, batch, items, **common) -> int:
        """Append one line per (event index in `batch`, reason, extra fields or None) in
        `items`, each with the `common` fields; fsync. Returns the lines written."""
        items = list(items)
        if not items:
            return 0
        # here, on the rare path: every sink that has a deadLetterFile key imports this module
        # (base64 and datetime: ~8 ms of an agent's start-up)
        import base64
        import datetime as dt
        import json

        from fastsync.transfer.kafkaout import json_default
        now = dt.datetime.now(dt.timezone.utc).isoformat()
        headers = batch.to_arrow().drop_columns(["body"]).take([i for i, _, _ in items]).to_pylist()
        lines = []
        for (i, reason, extra), h in zip(items, headers):
            entry = {"time": now, **common, "reason": reason}
            entry.update(extra or {})
            h = {k: v for k, v in h.items() if v is not None}
            if h:
                entry["headers"] = h
            if "row" not in entry:
                body = batch.body(i)
                try:
                    entry["body"] = body.decode("utf-8")
                except UnicodeDecodeError:
                    entry["body_base64"] = base64.b64encode(body).decode()
            lines.append(json.dumps(entry, ensure_ascii=False, default=json_default))
        self.file.write(("\n".join(lines) + "\n").encode("utf-8"))
        self.file.flush()
        os.fsync(self.file.fileno())
        return len(lines)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
