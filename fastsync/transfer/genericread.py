"""The generic reader of an import split: SQLAlchemy's rows (streamed, --fetch-size at a
time) into Arrow arrays, for any database and for what the native readers (pgread,
mysqlread, sqliteread) can't read exactly. Its result is the reference they match."""
from __future__ import annotations

import pyarrow as pa

from fastsync.transfer import typemap
from fastsync.transfer.spec import SplitSpec


def read_table(spec: SplitSpec, engine, q, cols, part) -> int:
    """The split's rows of the reflected columns `cols`, in typemap's types (a column without
    one: typed from its values)."""
    from fastsync._native import OUT_OF_RANGE
    from fastsync.transfer.pgvalues import out_of_range, use_loaders
    known = [typemap.arrow_type(c) for c in cols]
    convert = [typemap.column_plan(c)[1] for c in cols]
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            use_loaders(conn.connection.driver_connection)
        result = conn.execution_options(stream_results=True, yield_per=spec.job.fetch_size).execute(q)
        for chunk in result.partitions(spec.job.fetch_size):
            columns = list(zip(*chunk))
            arrays = []
            for i, c in enumerate(cols):
                values = columns[i]
                if convert[i] is not None:
                    values = [None if v is None else convert[i](v) for v in values]
                try:
                    arrays.append(pa.array(values, type=known[i]) if known[i] else pa.array(values))
                except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
                    what = out_of_range(values)
                    raise spec.cannot(c.name, OUT_OF_RANGE[what] if what else exc) from None
            part.write(pa.RecordBatch.from_arrays(arrays, names=[c.name for c in cols]))
    return part.close(pa.schema([pa.field(c.name, k or pa.string()) for c, k in zip(cols, known)]))


def read_query(spec: SplitSpec, engine, stmt, schema: pa.Schema | None, part) -> int:
    """A --query split, in the types the sample gave (`schema`; a column all NULL there, or
    no sample: typed from the values)."""
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=spec.job.fetch_size).execute(stmt)
        names = list(result.keys())
        for chunk in result.partitions(spec.job.fetch_size):
            columns = list(zip(*chunk))
            arrays = []
            for i, name in enumerate(names):
                want = schema.field(i).type if schema is not None and not pa.types.is_null(schema.field(i).type) else None
                try:
                    arrays.append(pa.array(columns[i], type=want))
                except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
                    raise spec.cannot(name, exc) from None
            part.write(pa.RecordBatch.from_arrays(arrays, names=names))
    return part.close(schema or pa.schema([pa.field(n, pa.string()) for n in names]))
