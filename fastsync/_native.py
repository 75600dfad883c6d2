"""The compiled extensions, imported in one place so a missing build fails clearly."""
try:
    from fastsync import _framing, _ringbuf  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised by a subprocess test
    raise ImportError(
        "fastsync's native extensions are not built (%s); install the package with "
        "`pip install .` (or `pip install -e .` in a checkout), which compiles ext/ "
        "with Cython and a C compiler" % exc
    ) from None

RingBuffer = _ringbuf.RingBuffer
decimal_bodies = _framing.decimal_bodies
split_lines = _framing.split_lines
join_lines = _framing.join_lines
copy_baseline = _framing.copy_baseline
