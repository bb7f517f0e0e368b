"""Build of the one compiled module; everything else about the package is in pyproject.toml.

buffer/_encode.c is the outbox's ingest encoder in C: about 3 us less per stored punch, which
brings batched durable inserts to the issue's target (docs/performance.md). It is optional:
without a C compiler and the Python headers (Debian: gcc, python3-dev) the build skips it and
buffer/ingest.py's Python path stores the same rows, slower. It adds no dependency. (setup.py
rather than pyproject's ext-modules table, which setuptools still calls experimental.)
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("buffer._encode", ["buffer/_encode.c"], optional=True, extra_compile_args=["-O2"])
    ]
)
