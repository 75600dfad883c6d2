"""A finite pollable source: events `<prefix>0`, `<prefix>1`, ... made as Arrow arrays."""
import pyarrow as pa
import pyarrow.compute as pc

import fastsync
from fastsync import EventBatch


class CounterSource(fastsync.Source):
    """Makes `total` events, `<prefix><n>` for n = 0, 1, ..., `batchSize` per poll, then stops."""

    total: int = fastsync.setting(doc="events to make", min=0)
    batch_size: int = fastsync.setting("batchSize", 100, "events per poll", min=1)
    prefix: str = fastsync.setting(default="event-", doc="put before each number")

    def start(self) -> None:
        self.next = 0

    def poll(self) -> EventBatch | None:
        n = min(self.batch_size, self.total - self.next)
        numbers = pa.array(range(self.next, self.next + n), pa.int64()).cast(pa.string())
        self.next += n
        self.finished = self.next >= self.total
        return EventBatch.from_arrow(pc.binary_join_element_wise(self.prefix, numbers, "")) if n else None
