"""`python3 -m s3bench_lib ...` from bench/: the same as `python3 bench/s3bench.py ...`."""

from .cli import entry

entry()
