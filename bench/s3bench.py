#!/usr/bin/env python3
"""Throughput benchmark for any S3 endpoint, against a same-run disk baseline.

Prints figures; never asserts timing. See bench/README.md and docs/adr/0001-bench-method.md.
The code lives in the package beside this script, bench/s3bench_lib/.

    python3 bench/s3bench.py --start-andromede            # start `andromede serve` on a temp dir
    python3 bench/s3bench.py --peer ceph --quick          # start a peer from ../shared/peers
    python3 bench/s3bench.py --endpoint http://127.0.0.1:9000 --access-key AK --secret-key SK
    python3 bench/s3bench.py --compare andromede,swift,ceph --json out.json
    python3 bench/s3bench.py --compare andromede,ceph --interleave  # runs alternated, no baseline
    python3 bench/s3bench.py --audit-compare              # audit trail vs no-op sink, 4 KiB
    python3 bench/s3bench.py --encryption-compare         # encrypted vs plaintext, 64 MiB
    python3 bench/s3bench.py --placement-compare          # 1 copy vs 3 replicas vs EC 4+2, repair
"""

from s3bench_lib.cli import entry

if __name__ == "__main__":
    entry()
