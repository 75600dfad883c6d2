"""An interceptor computed on the columns with pyarrow.compute: no loop over events."""
import pyarrow.compute as pc

import fastsync
from fastsync import EventBatch


class LengthInterceptor(fastsync.Interceptor):
    """Drops the events whose body is shorter than `minLength` bytes; sets header `length` on the others."""

    min_length: int = fastsync.setting("minLength", doc="the shortest body kept, in bytes", min=0)

    def intercept(self, batch: EventBatch) -> EventBatch:
        lengths = pc.binary_length(batch.bodies())
        kept = batch.with_headers(length=lengths.cast("string")).to_arrow()
        return EventBatch.from_arrow(kept.filter(pc.greater_equal(lengths, self.min_length)))
