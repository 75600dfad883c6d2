"""Builds the Cython extensions in ext/fastsync/ into the fastsync package.

Each native module is ext/fastsync/_<name>.pyx with its .pxd contract beside it; shared
extern declarations and helpers are _sync.pxd and _owned.pxi.
"""
import os
from setuptools import Extension, setup
from Cython.Build import cythonize

NATIVE = ["_ringbuf", "_framing", "_wal", "_pgcopy", "_mysqlrows", "_avro", "_treewalk"]

extensions = [
    Extension(
        f"fastsync.{name}",
        [f"ext/fastsync/{name}.pyx"],
        extra_compile_args=["-O3"],
    )
    for name in NATIVE
]

# the modules translate and compile one per core (half the build time on two cores)
JOBS = os.cpu_count() or 1

setup(
    ext_modules=cythonize(
        extensions,
        include_path=["ext"],
        compiler_directives={"language_level": 3, "embedsignature": True},
        annotate=bool(os.environ.get("FASTSYNC_ANNOTATE")),
        nthreads=JOBS,
    ),
    options={"build_ext": {"parallel": JOBS}},
)
